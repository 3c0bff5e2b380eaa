"""How long to train cgb-rank: zero-shot SRCC from NB-101 on every offline target after each epoch.

    python perf/transfer_curve_cgb_rank.py [--seeds 0 1] [--epochs 12] [--max-train N]
                                           [--featuriser F] [--config JSON] [--out F.jsonl]

One cgb-rank member per seed (the defaults but one member and no ``max_steps`` cap; featuriser:
cgb-rank's unless ``--featuriser``) trains on the NB-101 in-family train split (all of it unless
``--max-train``: with ``--max-train 2000`` an epoch is 63 Adam steps, cgb-rank's default length);
after every epoch its network scores each target's
zero-shot population, alone (a = 0) and rank-blended with FLOPs (a in 0.25 ... 1), as in
``perf/ablate_cgb_rank.py``. The table averages the seeds per epoch and marks the (epochs, a)
with the best mean over the development targets (NB-Macro, ANB, OFA-MBv3): the rule that sets
cgb-rank's training length (``max_steps`` = epochs x steps per epoch) and ``flops_prior``.
NB-201 and NB-301 are printed, never used to choose.
Needs the six stores built under ``$CGBENCH_HOME``; about 20 s per epoch per seed and core.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
import warnings

from ablate_cgb_rank import BLENDS, DEV, TARGETS, _score, _targets


def run(job: tuple[int, argparse.Namespace]) -> list[dict]:
    """Train one member for ``epochs``; one row of target scores per epoch."""
    seed, a = job
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from cgbench.eval.protocols import prepare_task
    from cgbench.predictors.features import featurise
    from cgbench.predictors.ours import CgbRankMember

    targets = _targets()
    feats = {fam: featurise(t.archs, a.featuriser) for fam, (t, _) in targets.items()}
    rows: list[dict] = []
    t0 = time.perf_counter()

    class Probe(CgbRankMember):
        """Scores every target whenever the training loop scores its NB-101 dev set (each epoch)."""

        def _dev_score(self, model, gb, labels):
            dev = super()._dev_score(model, gb, labels)
            model.eval()
            pred = {f: self._scores(model, feats[f]).tolist() for f in feats}
            model.train()
            rows.append(
                {
                    "seed": seed,
                    "epoch": len(self.history) + 1,
                    "nb101_dev": dev,
                    "seconds": round(time.perf_counter() - t0, 1),
                    **_score(pred),
                }
            )
            print(
                json.dumps({k: v for k, v in rows[-1].items() if k in ("seed", "epoch", "nb101_dev")}),
                flush=True,
            )
            return dev

    src = prepare_task("nb101/cifar10:in-family")
    cfg = dict(epochs=a.epochs, max_steps=None, threads=1, featuriser=a.featuriser)
    cfg["max_train"] = a.max_train or None
    cfg.update(json.loads(a.config))
    Probe(seed=seed, **cfg).fit(
        src.train.archs, src.train.labels, valid_graphs=src.valid.archs, valid_labels=src.valid.labels
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--max-train", type=int, default=0, help="NB-101 train archs (0: all)")
    ap.add_argument("--featuriser", default=None, help="default: cgb-rank's")
    ap.add_argument("--config", default="{}", help="other config values as JSON, e.g. '{\"hidden\": 16}'")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--out", default=None, help="append one JSON line per (seed, epoch)")
    a = ap.parse_args()
    if a.featuriser is None:
        from cgbench.predictors.ours import CgbRankConfig

        a.featuriser = CgbRankConfig().featuriser
    with mp.get_context("spawn").Pool(a.procs) as pool:
        rows = [r for rs in pool.imap(run, [(s, a) for s in a.seeds]) for r in rs]
    if a.out:
        with open(a.out, "a") as fh:
            for r in rows:
                meta = {"featuriser": a.featuriser, "max_train": a.max_train, "config": a.config}
                fh.write(json.dumps({**r, **meta}) + "\n")
    fams = list(TARGETS)
    print(f"mean over seeds {a.seeds}; each cell: " + " / ".join(f"a={b}" for b in BLENDS))
    print("| epochs | NB-101 dev | " + " | ".join(fams) + " | dev mean |")
    print("|---" * (3 + len(fams)) + "|")
    best = (-2.0, 0, 0.0)
    for e in sorted({r["epoch"] for r in rows}):
        at = [r for r in rows if r["epoch"] == e]

        def mean(f, b, at=at):
            return sum(r[f][f"a={b}"] for r in at) / len(at)

        dev = {b: sum(mean(f, b) for f in DEV) / len(DEV) for b in BLENDS}
        for b, v in dev.items():
            if b < 1.0 and v > best[0]:  # a = 1 is FLOPs alone: no network to train
                best = (v, e, b)
        cells = " | ".join(" / ".join(f"{mean(f, b):.2f}" for b in BLENDS) for f in fams)
        nb101 = sum(r["nb101_dev"] for r in at) / len(at)
        print(f"| {e} | {nb101:.3f} | {cells} | " + " / ".join(f"{v:.3f}" for v in dev.values()) + " |")
    print(f"best development mean {best[0]:.3f}: epochs={best[1]}, flops_prior={best[2]}")


if __name__ == "__main__":
    main()
