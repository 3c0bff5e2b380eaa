"""``cgb-rank``: cgbench's own transfer predictor (our design, documented; not from a paper).

Aimed at zero-shot NB-101 -> NB-201/NB-301 ranking. What differs from k-GNN and why:

- **Features** ``feat/cgbench-1``: log-scaled resolution and channels (NB-101's 128-512 channel
  range and NB-201's 16-64 both land in the same feature range rather than near 0), the spatial
  stride, weight channels (grouped vs dense), each node's MACs and the graph's FLOPs.
- **Both edge directions** (``bidirectional``: a forward and a backward GraphConv per layer),
  so a node sees what consumes its output as well as what feeds it.
- **Pooling** mean plus ``log(1 + sum |h|)``: graph size information that mean pooling drops.
- **Target**: GENNAPE's FLOPs transform (archs < 80% dropped), trained with MSE plus a pairwise
  logistic ranking loss (``rank_loss``), since transfer is judged by rank.
- **Ensemble** of ``n_members`` seeds, equal weights zero-shot, ``softmax(KT)`` fine-tuned.
- Adam lr 1e-3 with weight decay 1e-5 (the baselines' 1e-4 converges too slowly in reduced runs).
"""

from __future__ import annotations

import dataclasses

from cgbench.predictors.ensemble import Ensemble, EnsembleConfig
from cgbench.predictors.gnn import GNNPredictor

__all__ = ["CgbRankConfig", "CgbRankMember", "CgbRank"]


@dataclasses.dataclass
class CgbRankConfig(EnsembleConfig):
    """Defaults of ``cgb-rank`` (see the module docstring)."""

    featuriser: str = "feat/cgbench-1"
    bidirectional: bool = True
    pooling: str = "mean+sum"
    layers: int = 4
    target: str = "flops"
    min_acc: float = 0.8
    rank_loss: float = 1.0
    lr: float = 1e-3
    weight_decay: float = 1e-5
    n_members: int = 3
    epochs: int = 40


class CgbRankMember(GNNPredictor):
    """One member of :class:`CgbRank`."""

    name = "cgb-rank-member"
    config_class = CgbRankConfig


class CgbRank(Ensemble):
    """``cgb-rank``: see the module docstring."""

    name = "cgb-rank"
    member_class = CgbRankMember
    config_class = CgbRankConfig
    paper_note = "cgbench's own design (not in the paper)"
