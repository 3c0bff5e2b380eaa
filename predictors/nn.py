"""PyTorch Geometric building blocks shared by the learned predictors.

- :class:`NodeEmbedding`: GENNAPE's ``CGNodeEmbedding`` for ``feat/gennape-1`` (regular node =
  ``Embedding(ops, 24)(op) + Linear(6, 8)(res)``; weighted node = ``Embedding(ops, 14)(op) +
  Linear(6, 8)(res) + Embedding(8, 4)(k1) + Embedding(8, 4)(k2) + Linear(2, 2)(bias)``, the two
  op tables separate, the shape Linear shared), and a generic embedding for other featurisers;
- :class:`Encoder`: ``layers`` x conv (``graphconv`` = k-GNN ``GraphConv``, ``gcn`` = ``GCNConv``,
  ``gin`` = ``GINConv(Sequential(Linear, Linear))`` with eps 0, not trained) with the activation
  after every layer, on the directed edges as stored (or both directions, ``bidirectional``);
- :class:`Head`: GENNAPE's ``post_proj`` ``Linear-Linear-ReLU-Linear-Linear`` then ``Linear(.,1)``;
- :class:`Regressor`: embedding -> encoder -> mean pool -> head;
- :func:`to_device`: a :class:`~cgbench.predictors.features.GraphBatch` as tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import GCNConv, GINConv, GraphConv, global_add_pool, global_mean_pool

from cgbench.cg.ops import OPS
from cgbench.predictors.features import N_KERNEL_IDS, GraphBatch, cont_dim

__all__ = ["Tensors", "to_device", "NodeEmbedding", "Encoder", "Head", "Regressor", "CONVS"]

CONVS = ("graphconv", "gcn", "gin")
_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "none": nn.Identity}


@dataclass
class Tensors:
    """A :class:`GraphBatch` on a device."""

    op: torch.Tensor
    kernel: torch.Tensor
    weighted: torch.Tensor
    cont: torch.Tensor
    edge_index: torch.Tensor
    batch: torch.Tensor
    num_graphs: int


def to_device(gb: GraphBatch, device: str | torch.device = "cpu") -> Tensors:
    """Move a graph batch to ``device`` as tensors (edge index with batch-global node ids)."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    return Tensors(
        op=t(gb.op),
        kernel=t(gb.kernel),
        weighted=t(gb.weighted),
        cont=t(gb.cont),
        edge_index=t(gb.global_edges()),
        batch=t(gb.graph_of_node()),
        num_graphs=len(gb),
    )


class NodeEmbedding(nn.Module):
    """Node features -> ``out`` (32) dims; GENNAPE's layout for ``feat/gennape-1``."""

    def __init__(self, featuriser: str, out: int = 32) -> None:
        super().__init__()
        self.gennape = featuriser == "feat/gennape-1"
        n_ops = len(OPS)
        if self.gennape:
            if out != 32:
                raise ValueError("feat/gennape-1 embedding is 32 wide (GENNAPE's CGNodeEmbedding)")
            self.op_regular = nn.Embedding(n_ops, 24)
            self.op_weighted = nn.Embedding(n_ops, 14)
            self.shape = nn.Linear(6, 8)
            self.k1 = nn.Embedding(N_KERNEL_IDS, 4)
            self.k2 = nn.Embedding(N_KERNEL_IDS, 4)
            self.bias = nn.Linear(2, 2)
        else:
            d = cont_dim(featuriser)
            self.op_regular = nn.Embedding(n_ops, out // 2)
            self.k1 = nn.Embedding(N_KERNEL_IDS, 4)
            self.k2 = nn.Embedding(N_KERNEL_IDS, 4)
            self.shape = nn.Linear(d, out - out // 2 - 8)

    def forward(self, t: Tensors) -> torch.Tensor:
        if self.gennape:
            shape = self.shape(t.cont[:, :6])
            regular = torch.cat([self.op_regular(t.op), shape], dim=1)
            weighted = torch.cat(
                [
                    self.op_weighted(t.op),
                    shape,
                    self.k1(t.kernel[:, 0]),
                    self.k2(t.kernel[:, 1]),
                    self.bias(t.cont[:, 6:8]),
                ],
                dim=1,
            )
            return torch.where(t.weighted[:, None], weighted, regular)
        return torch.cat(
            [self.op_regular(t.op), self.k1(t.kernel[:, 0]), self.k2(t.kernel[:, 1]), self.shape(t.cont)],
            dim=1,
        )


def _conv(kind: str, hidden: int) -> nn.Module:
    if kind == "graphconv":
        return GraphConv(hidden, hidden)
    if kind == "gcn":
        return GCNConv(hidden, hidden)
    if kind == "gin":
        return GINConv(nn.Sequential(nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)), eps=0.0)
    raise ValueError(f"unknown conv {kind!r}; known: {', '.join(CONVS)}")


class Encoder(nn.Module):
    """``layers`` convolutions, the activation after each, dropout after the last."""

    def __init__(
        self,
        conv: str = "graphconv",
        layers: int = 6,
        hidden: int = 32,
        activation: str = "tanh",
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_conv(conv, hidden) for _ in range(layers))
        self.back = nn.ModuleList(_conv(conv, hidden) for _ in range(layers)) if bidirectional else None
        self.act = _ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        rev = edge_index.flip(0) if self.back is not None else None
        for i, conv in enumerate(self.convs):
            h = conv(x, edge_index)
            if self.back is not None:
                h = h + self.back[i](x, rev)
            x = self.act(h)
        return self.dropout(x)


class Head(nn.Module):
    """``Linear-Linear-ReLU-Linear-Linear`` (``hidden`` wide) then ``Linear(hidden, out)``."""

    def __init__(self, inp: int = 32, hidden: int = 32, out: int = 1) -> None:
        super().__init__()
        self.post_proj = nn.Sequential(
            nn.Linear(inp, hidden),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, hidden),
        )
        self.out = nn.Linear(hidden, out)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.post_proj(z))


class Regressor(nn.Module):
    """Embedding -> encoder -> pooling (``mean``, or ``mean+sum``) -> head: one score per graph."""

    def __init__(
        self,
        featuriser: str,
        conv: str = "graphconv",
        layers: int = 6,
        hidden: int = 32,
        activation: str = "tanh",
        dropout: float = 0.0,
        bidirectional: bool = False,
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        self.embed = NodeEmbedding(featuriser, hidden)
        self.encoder = Encoder(conv, layers, hidden, activation, dropout, bidirectional)
        self.pooling = pooling
        self.head = Head(hidden * (2 if pooling == "mean+sum" else 1), hidden)

    def embed_graphs(self, t: Tensors, node_dropout: float = 0.0) -> torch.Tensor:
        x = self.embed(t)
        if node_dropout > 0:
            x = nn.functional.dropout(x, node_dropout, training=True)
        x = self.encoder(x, t.edge_index)
        z = global_mean_pool(x, t.batch, size=t.num_graphs)
        if self.pooling == "mean+sum":
            z = torch.cat([z, torch.log1p(global_add_pool(x.abs(), t.batch, size=t.num_graphs))], dim=1)
        return z

    def forward(self, t: Tensors) -> torch.Tensor:
        return self.head(self.embed_graphs(t)).squeeze(-1)
