"""The GNN baselines of GENNAPE's reference code: ``kgnn``, ``gcn``, ``gin``.

All three as ``run_cg_kgnn_predictor.py`` sets them (PREDICTORS.md §1.2, §2.1): GENNAPE's node
embedding (``feat/gennape-1``), 6 layers, hidden 32, tanh after every layer, the directed CG
edges, mean pooling, the 4-Linear head, MSE on the accuracy fraction, Adam lr 1e-4 (no weight
decay), grad-norm clip 5, batch 32, 40 epochs; fine-tuning with batch 1, 100 epochs, fresh Adam.
The kept checkpoint is the best dev SRCC (the paper's rule); ``select="mape"`` gives the
reference code's lowest dev MAPE. Batches are ordinary shuffled PyG-style batches, not the
reference's same-size buckets (same maths per graph, different batch composition).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from cgbench.predictors.base import LearnedPredictor, TrainConfig
from cgbench.predictors.nn import Regressor

__all__ = ["GNNPredictor", "KGNN", "GCN", "GIN"]


class GNNPredictor(LearnedPredictor):
    """A :class:`~cgbench.predictors.nn.Regressor` trained as configured."""

    name = "gnn"
    conv: ClassVar[str | None] = None  # the layer type a subclass fixes (None: the config's)

    @classmethod
    def default_config(cls) -> TrainConfig:
        cfg = cls.config_class()
        return dataclasses.replace(cfg, conv=cls.conv) if cls.conv else cfg

    def _build(self):
        c = self.config
        return Regressor(
            c.featuriser, c.conv, c.layers, c.hidden, c.activation, c.dropout, c.bidirectional, c.pooling
        )


class KGNN(GNNPredictor):
    """k-GNN (``GraphConv``), the reference code's default."""

    name = "kgnn"
    conv = "graphconv"


class GCN(GNNPredictor):
    """GCN (``GCNConv`` with PyG defaults: self-loops, symmetric normalisation)."""

    name = "gcn"
    conv = "gcn"


class GIN(GNNPredictor):
    """GIN (``GINConv(Sequential(Linear, Linear))``, no activation inside, eps 0 fixed)."""

    name = "gin"
    conv = "gin"


def config_for(name: str, **overrides) -> TrainConfig:
    """The reference config of ``kgnn`` / ``gcn`` / ``gin`` with ``overrides``."""
    cls = {"kgnn": KGNN, "gcn": GCN, "gin": GIN}[name]
    return dataclasses.replace(cls.default_config(), **overrides)
