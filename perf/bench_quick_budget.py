"""Measure the quick profile's per-unit costs: train one learned predictor on NB-101's train
split (``--max-train`` archs, ``--epochs``) and report wall time, optimizer steps, steps/s and
the in-family test SRCC; optionally zero-shot SRCC on target tasks.

    python perf/bench_quick_budget.py kgnn --max-train 4000 --epochs 10 --targets nb201-nonone/cifar10-valid

Run it ``nice`` on a shared machine and state the load average with the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from cgbench.eval.protocols import prepare_task
from cgbench.predictors.registry import PREDICTORS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("predictor")
    ap.add_argument("--max-train", type=int, default=4000)
    ap.add_argument("--max-valid", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="config KEY=VALUE (python literal)")
    ap.add_argument("--targets", nargs="*", default=[])
    a = ap.parse_args()
    torch.set_num_threads(1)
    cls = PREDICTORS[a.predictor]
    over = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        over[k] = eval(v)  # noqa: S307 - a benchmark's own command line
    cfg = dataclasses.replace(
        cls.config_class() if a.predictor not in ("kgnn", "gcn", "gin") else cls().config,
        max_train=a.max_train,
        max_valid=a.max_valid,
        epochs=a.epochs,
        threads=1,
        **over,
    )
    prep = prepare_task("nb101/cifar10:in-family")
    model = cls(seed=a.seed, config=cfg)
    t0 = time.perf_counter()
    model.fit(
        prep.train.archs, prep.train.labels, valid_graphs=prep.valid.archs, valid_labels=prep.valid.labels
    )
    dt = time.perf_counter() - t0
    n = min(a.max_train, len(prep.train.labels))
    steps = a.epochs * int(np.ceil(n / cfg.batch_size))
    t1 = time.perf_counter()
    pred = model.predict(prep.scored.archs)
    dti = time.perf_counter() - t1
    srcc = spearmanr(pred, prep.scored.labels).statistic
    print(
        f"{a.predictor} {over} n_train={n} epochs={a.epochs} steps~{steps} train {dt:.0f}s "
        f"({steps / dt:.1f} steps/s) | test n={len(pred)} SRCC {srcc:.3f} predict {dti:.1f}s "
        f"| load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    print("  dev by epoch:", " ".join(f"{h.get('dev', float('nan')):.2f}" for h in model.history), flush=True)
    for t in a.targets:
        p = prepare_task(f"nb101->{t}:zero-shot")
        s = spearmanr(model.predict(p.scored.archs), p.scored.labels).statistic
        print(f"  zero-shot {t}: SRCC {s:.3f} (n={len(p.scored.labels)})", flush=True)


if __name__ == "__main__":
    main()
