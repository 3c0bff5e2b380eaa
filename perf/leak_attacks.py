"""The leak attacks of issue 8 §1-2 on a built NB-201 store: before (splits over single arch
ids, ``cgbench-splits/2``; predictors handed the harness's data source) and now (splits over
groups of identical networks, ``cgbench-splits/3``; a label-free feature source).

Prints:

- in-family twins: test archs whose network (same ``unique_id``) is in train;
- twin-copy attack: SRCC of "predict the train label of the same ``unique_id``" on those archs;
- fine-tune twins: scored archs whose network is in the fine-tune-50 sample (seed 0);
- label theft: SRCC of a predictor reading ``graphs._source.raw_column(label)``.

Usage: python perf/leak_attacks.py [--root DIR]   (needs `cgbench build nb201`)
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from scipy.stats import spearmanr

from cgbench.benchmarks.store import open_dataset
from cgbench.benchmarks.tasks import arch_groups, fine_tune_sample, in_family_split
from cgbench.eval.predictor import BasePredictor, predictor_spec
from cgbench.eval.protocols import evaluate

LABEL = "val_acc_cifar10_valid"


def _twin_figures(ids, uid, acc, groups) -> tuple[int, int, float | None]:
    split = in_family_split(ids, "nb201", groups)
    train_label: dict[str, list[float]] = {}
    for a in split["train"]:
        train_label.setdefault(uid[a], []).append(acc[a])
    twins = [a for a in split["test"] if uid[a] in train_label]
    srcc = None
    if len(twins) > 2:
        guess = [np.mean(train_label[uid[a]]) for a in twins]
        srcc = float(spearmanr(guess, [acc[a] for a in twins])[0])
    return len(split["test"]), len(twins), srcc


def _fine_tune_twins(ids, uid, groups) -> int:
    sample = fine_tune_sample(ids, "nb201", 50, groups, seed=None if groups is None else 0)
    in_sample = {uid[a] for a in sample}
    if groups is None:
        scored = [a for a in ids if a not in set(sample)]
    else:
        taken = {groups[a] for a in sample}
        scored = [a for a in ids if groups[a] not in taken]
    return sum(uid[a] in in_sample for a in scored)


class Theft(BasePredictor):
    deterministic = True

    def predict(self, graphs):
        return graphs._source.raw_column(LABEL).take(graphs.row_indices).to_numpy(zero_copy_only=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    table = open_dataset("nb201", root=args.root).table(["arch_id", "cg_hash", "unique_id", LABEL])
    ids = table.column("arch_id").to_pylist()
    uid = dict(zip(ids, table.column("unique_id").to_pylist(), strict=True))
    acc = dict(zip(ids, table.column(LABEL).to_pylist(), strict=True))
    keys = {c: table.column(c).to_pylist() for c in ("cg_hash", "unique_id")}
    groups = arch_groups(ids, keys)
    n_hash, n_net = len(set(keys["cg_hash"])), len(set(groups.values()))
    print(f"NB-201: {len(ids):,} archs, {n_hash:,} distinct cg_hash, {n_net:,} networks")
    for name, g in (("before (splits/2, by arch id)", None), ("now (splits/3, by network)", groups)):
        n_test, n_twins, srcc = _twin_figures(ids, uid, acc, g)
        ft = _fine_tune_twins(ids, uid, g)
        srcc_text = "n/a (no twins)" if srcc is None else f"{srcc:.3f}"
        print(f"{name}:")
        print(f"  in-family: {n_twins:,} of {n_test:,} test archs have a twin in train")
        print(f"  twin-copy attack SRCC on those archs: {srcc_text}")
        print(f"  fine-tune-50 (seed 0): {ft:,} scored archs have a twin in the sample")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (res,) = evaluate(
            "nb201/cifar10-valid:zero-shot",
            [predictor_spec(Theft, name="theft")],
            root=args.root,
            keep_going=True,
        )
    outcome = f"refused ({res.error})" if res.error else f"SRCC {res.metrics['srcc'].value:.3f}"
    print(f"label theft via graphs._source.raw_column({LABEL!r}): {outcome}")


if __name__ == "__main__":
    main()
