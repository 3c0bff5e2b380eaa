"""Learned predictors by name: what :data:`cgbench.eval.baselines.LEARNED` points at.

Each entry is a class whose constructor takes ``seed`` (the harness passes it), with the
reference / documented default config; ``$CGBENCH_PREDICTOR_CACHE`` makes ``fit`` reuse models
trained on the same data with the same config.
"""

from __future__ import annotations

from cgbench.predictors.gennape import Gennape
from cgbench.predictors.gnn import GCN, GIN, KGNN
from cgbench.predictors.ours import CgbRank

__all__ = ["PREDICTORS", "kgnn", "gcn", "gin", "gennape", "cgb_rank"]

kgnn, gcn, gin, gennape, cgb_rank = KGNN, GCN, GIN, Gennape, CgbRank

#: name -> class
PREDICTORS = {"kgnn": KGNN, "gcn": GCN, "gin": GIN, "gennape": Gennape, "cgb-rank": CgbRank}
