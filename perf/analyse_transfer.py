"""Decompose a trained transfer predictor's zero-shot ranking on target tasks: the SRCC of its
prediction, of its raw network score (before the FLOPs transform's inverse), of FLOPs alone,
and of rank blends ``(1-a) * rank(score) + a * rank(FLOPs)``.

    python perf/analyse_transfer.py OUT/cache/cgb-rank-XXXX nb201-nonone/cifar10-valid nb301/cifar10
"""

from __future__ import annotations

import sys

from scipy.stats import rankdata, spearmanr

from cgbench.eval.protocols import prepare_task
from cgbench.predictors.features import featurise
from cgbench.predictors.registry import PREDICTORS


def main() -> None:
    name = sys.argv[1].rsplit("/", 1)[-1].rsplit("-", 1)[0]
    model = PREDICTORS[name].load(sys.argv[1])
    for t in sys.argv[2:]:
        p = prepare_task(f"nb101->{t}:zero-shot")
        y = p.scored.labels
        gb = featurise(p.scored.archs, model.config.featuriser)
        raw = model._scores(model.model, gb)
        pred = model._to_label(gb, raw)

        def r(a, y=y):
            return spearmanr(a, y).statistic

        blends = " ".join(
            f"a={a:.2f}:{r((1 - a) * rankdata(pred) + a * rankdata(gb.flops)):.3f}" for a in (0.25, 0.5, 0.75)
        )
        print(
            f"{t} n={len(y)}: pred {r(pred):.3f} | raw score {r(raw):.3f} | FLOPs {r(gb.flops):.3f} "
            f"| raw vs FLOPs {spearmanr(raw, gb.flops).statistic:.3f} | blends {blends}",
            flush=True,
        )


if __name__ == "__main__":
    main()
