"""What GENNAPE's FLOPs transform does to zero-shot ranking when its normaliser sees the target.

    python perf/check_flops_transform.py [--draws 20]

The transform (PREDICTORS.md §1.3, AIO-P's normalizers.py; ``predictors.base.FlopsTransform``, which
cgbench's GENNAPE uses) trains on
``t = acc / f`` standardised, ``f = log10(GFLOPs + 1) + 1``, and predicts
``acc = (pred * sigma + mu) * f``. The reference code fits ``mu`` and ``sigma`` for a zero-shot
target on that target's own labelled archs. Because ``f`` differs per arch, the scale of
``sigma`` against the spread of ``f`` decides how much of the ranking is the network's and how
much is FLOPs'. So the fit is not a harmless rescale.

For every offline zero-shot target, this prints the SRCC of a network that outputs *pure noise*
(standard normal ``pred``, ``--draws`` draws), inverse-transformed with ``mu`` and ``sigma`` fitted
on the target's labels. Beside it: FLOPs alone and the paper's GENNAPE zero-shot SRCC. cgbench's
re-implementation fits them on the NB-101 training archs instead (a zero-shot predictor never
sees target labels). Needs the target stores built under ``$CGBENCH_HOME``.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from scipy.stats import spearmanr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=20)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    from cgbench.eval.protocols import prepare_task
    from cgbench.predictors.base import FlopsTransform
    from cgbench.predictors.reproduce import TARGETS, paper_table

    zero = {
        r["family"]: r["mean"]
        for r in paper_table()
        if (r["table"], r["setting"], r["method"], r["metric"]) == ("T5", "zero-shot", "gennape", "srcc")
    }
    rng = np.random.default_rng(0)
    head = "| target | f range | sigma/mu of acc/f | pure noise, target-fitted | FLOPs | paper GENNAPE |"
    print(head)
    print("|---|---|---|---|---|---|")
    for target in TARGETS:
        if target.stem is None:  # no labels offline
            continue
        scored = prepare_task(f"nb101->{target.stem}:zero-shot").scored
        acc = np.asarray(scored.labels, dtype=np.float64)
        flops = scored.archs.column("flops")
        fitted = FlopsTransform().fit(acc, flops)  # on the target's labels, as the reference does
        f = fitted.factor(flops)
        draws = (rng.standard_normal(len(acc)) for _ in range(a.draws))
        noise = [spearmanr(fitted.inverse(pred, flops), acc).statistic for pred in draws]
        ref = zero.get(target.family)
        print(
            f"| {target.family} | {f.min():.3f}-{f.max():.3f} | {fitted.sigma / fitted.mu:.4f} | "
            f"{np.mean(noise):.3f} ± {np.std(noise):.3f} | {spearmanr(flops, acc).statistic:.3f} | "
            f"{'–' if ref is None else f'{ref:.3f}'} |"
        )


if __name__ == "__main__":
    main()
