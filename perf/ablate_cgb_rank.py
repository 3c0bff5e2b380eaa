"""Ablation of cgb-rank's design choices: zero-shot SRCC from NB-101 on every offline target, of
the network alone and of its within-population rank blend with FLOPs.

    python perf/ablate_cgb_rank.py VARIANT [VARIANT ...] [--seeds 0 1] [--procs 2] [--out F.jsonl]

Each (variant, seed) trains one cgb-rank model on the NB-101 in-family train split (4,000 archs,
12 epochs, one member, ``feat/cgbench-2`` unless the variant says otherwise: the quick profile's
budget per member until stop 21; the training-length choice is ``transfer_curve_cgb_rank.py``'s),
then predicts the NB-101 test split and each target's zero-shot population. Printed per target:
``net`` (the network alone, prior a = 0), ``a=0.5`` / ``a=0.75`` (rank blends with FLOPs) and
FLOPs alone. Development targets (the prior is chosen on these): NB-Macro, ANB, OFA-MBv3; the
goal targets NB-201 and NB-301 are printed too. Needs the six stores built under
``$CGBENCH_HOME`` (README). About one minute per (variant, seed) per core.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
import warnings

VARIANTS: dict[str, dict] = {
    "flops-target": {"target": "flops", "featuriser": "feat/cgbench-1"},  # cgb-rank until stop 18
    "raw-target": {"target": "raw", "featuriser": "feat/cgbench-1"},
    "roles": {"target": "raw", "featuriser": "feat/cgbench-2"},  # the defaults of stops 19-21, one member
    "roles-2-members": {"target": "raw", "featuriser": "feat/cgbench-2", "n_members": 2},
    "scale-free": {"target": "raw", "featuriser": "feat/cgbench-3"},
    "population-flops": {"target": "raw", "featuriser": "feat/cgbench-4"},  # the default since stop 22
    # regularisers (feat/cgbench-2 otherwise): does a smoother network transfer further?
    "wd-1e-3": {"weight_decay": 1e-3},
    "wd-1e-2": {"weight_decay": 1e-2},
    "dropout-0.2": {"dropout": 0.2},
    "layers-2": {"layers": 2},
    "hidden-16": {"hidden": 16},
}
TARGETS = {
    "nb201": "nb201-nonone/cifar10-valid",
    "nb301": "nb301/cifar10",
    "ofa_mbv3": "ofa_mbv3-dynast/imagenet",
    "nb_macro": "nb_macro/cifar10",
    "anb": "anb/imagenet",
}
DEV = ("ofa_mbv3", "nb_macro", "anb")
BLENDS = (0.0, 0.25, 0.5, 0.75, 1.0)


def run(job: tuple[str, int]) -> dict:
    """Train one (variant, seed) and score every target; its predictions ride along in ``pred``."""
    variant, seed = job
    import torch
    from scipy.stats import spearmanr

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from cgbench.eval.protocols import prepare_task
    from cgbench.predictors.ours import CgbRank

    t0 = time.perf_counter()
    src = prepare_task("nb101/cifar10:in-family")
    base = dict(n_members=1, epochs=12, max_steps=None, max_train=4000, max_valid=500, threads=1)
    cfg = {**base, "featuriser": "feat/cgbench-2", **VARIANTS[variant]}
    p = CgbRank(seed=seed, **cfg)
    p.fit(src.train.archs, src.train.labels, valid_graphs=src.valid.archs, valid_labels=src.valid.labels)
    p.prior = 0.0  # the network alone; blends below
    out: dict = {"variant": variant, "seed": seed, "train_s": round(time.perf_counter() - t0, 1)}
    out["nb101_test"] = float(spearmanr(p.predict(src.scored.archs), src.scored.labels).statistic)
    out["pred"] = {fam: p.predict(target.archs).tolist() for fam, (target, _) in _targets().items()}
    out.update(_score(out["pred"]))
    return out


_TARGET_CACHE: dict = {}


def _targets() -> dict:
    """Each target's zero-shot population and its FLOPs, prepared once per process."""
    if not _TARGET_CACHE:
        from cgbench.eval.protocols import prepare_task

        for fam, task in TARGETS.items():
            scored = prepare_task(f"nb101->{task}:zero-shot").scored
            _TARGET_CACHE[fam] = (scored, scored.archs.column("flops"))
    return _TARGET_CACHE


def _score(pred: dict) -> dict:
    """SRCC of each target's predictions blended with its FLOPs rank at every weight in BLENDS."""
    from scipy.stats import rankdata, spearmanr

    out = {}
    for fam, (target, flops) in _targets().items():
        net = rankdata(pred[fam])
        blend = {a: (1 - a) * net + a * rankdata(flops) for a in BLENDS}
        out[fam] = {f"a={a}": float(spearmanr(b, target.labels).statistic) for a, b in blend.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variants", nargs="+", choices=list(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--out", default=None, help="append one JSON line per (variant, seed)")
    a = ap.parse_args()
    jobs = [(v, s) for v in a.variants for s in a.seeds]
    rows = []
    with mp.get_context("spawn").Pool(a.procs) as pool:
        for r in pool.imap(run, jobs):  # each row kept as it comes
            rows.append(r)
            line = json.dumps({k: v for k, v in r.items() if k != "pred"})
            print(line, flush=True)
            if a.out:
                with open(a.out, "a") as fh:
                    fh.write(line + "\n")
    if len(a.seeds) > 1:  # each variant's seeds as one equal-weight ensemble (cgb-rank's zero-shot rule)
        import numpy as np

        for v in a.variants:
            members = [r["pred"] for r in rows if r["variant"] == v]
            mean = {f: np.mean([m[f] for m in members], axis=0) for f in TARGETS}
            rows.append({"variant": v, "seed": "ensemble", "nb101_test": None, **_score(mean)})
            if a.out:
                with open(a.out, "a") as fh:
                    fh.write(json.dumps(rows[-1]) + "\n")
    fams = list(TARGETS)
    head = " | ".join(f"{f} net / a=.5 / a=.75" for f in fams)
    print(f"| variant | seed | NB-101 test | {head} | dev mean a=0/.5/.75/1 |")
    print("|---" * (4 + len(fams)) + "|")
    for r in rows:
        cells = " | ".join(f"{r[f]['a=0.0']:.2f} / {r[f]['a=0.5']:.2f} / {r[f]['a=0.75']:.2f}" for f in fams)
        dev = " / ".join(f"{sum(r[f][f'a={b}'] for f in DEV) / len(DEV):.3f}" for b in (0.0, 0.5, 0.75, 1.0))
        test = "-" if r["nb101_test"] is None else f"{r['nb101_test']:.3f}"
        print(f"| {r['variant']} | {r['seed']} | {test} | {cells} | {dev} |")
    print("FLOPs alone (a=1): " + ", ".join(f"{f} {rows[0][f]['a=1.0']:.3f}" for f in fams))


if __name__ == "__main__":
    main()
