"""Metric throughput: SRCC + Kendall tau-b + NDCG@10 on 10^6 items (target <= 3 s, DESIGN.md).

Run: ``python perf/bench_metrics.py [--n 1000000] [--repeat 3]``. Labels are
accuracy-like fractions rounded to 4 decimals (ties, as in real benchmarks); predictions are
noisy labels. Each metric goes through the public, validating API. Prints the best of
``--repeat`` runs per metric and in total.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cgbench.eval.metrics import kendall_tau, ndcg_at_k, spearman

TARGET_S = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    y_true = np.round(0.5 + 0.45 * rng.beta(8, 2, args.n), 4)
    y_pred = y_true + rng.normal(0.0, 0.05, args.n)
    runs = {
        "srcc": lambda: spearman(y_true, y_pred),
        "kendall_tau (b)": lambda: kendall_tau(y_true, y_pred),
        "ndcg@10": lambda: ndcg_at_k(y_true, y_pred, k=10),
    }
    best: dict[str, float] = {}
    values: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            values[name] = fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    total = sum(best.values())
    print(f"metrics on n = {args.n:,} items (best of {args.repeat})")
    for name, seconds in best.items():
        print(f"  {name:<16} {seconds:7.3f} s   value {values[name]:.4f}")
    verdict = "OK" if total <= TARGET_S else "SLOWER THAN TARGET"
    print(f"  {'total':<16} {total:7.3f} s   (target <= {TARGET_S:.0f} s: {verdict})")


if __name__ == "__main__":
    main()
