"""The learned predictors' building blocks: PyTorch Geometric layers run as plain sparse torch.

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

Speed: the convolutions *are* PyG's ``GraphConv`` / ``GCNConv`` / ``GINConv`` (same parameters,
initialisation and ``state_dict`` keys), but their forward runs on a per-batch :class:`Adjacency`:
the batch's edges as CSR matrices built once and shared by every layer, so neighbour sums are
one sparse-dense ``addmm`` (backward: the transposed CSR), not a gather + scatter per layer.
The maths is PyG's: ``GraphConv`` = ``lin_rel(sum_{j->i} x_j) + lin_root(x_i)`` (computed as
``A (x W_rel^T) + x W_root^T + b``), ``GCNConv`` = ``D^-1/2 (A + I) D^-1/2 (x W^T) + b`` with
PyG's own ``gcn_norm`` weights, ``GINConv`` = ``nn(A x + (1 + eps) x)``; mean pooling is a
``1 / n_g`` CSR. ``tests/test_predictors.py`` checks forward and gradients against PyG's layers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import GCNConv, GINConv, GraphConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from cgbench.cg.ops import OPS
from cgbench.predictors.features import N_KERNEL_IDS, GraphBatch, cont_dim, dense_ids, segment_rows

__all__ = ["Tensors", "Adjacency", "to_device", "NodeEmbedding", "Encoder", "Head", "Regressor", "CONVS"]

CONVS = ("graphconv", "gcn", "gin")
_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "none": nn.Identity}


def _csr(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], device
) -> torch.Tensor:
    """A CSR matrix from COO triplets (duplicates kept: they add up, as PyG's sum does),
    built with NumPy (a stable sort by row only where the rows are not sorted yet)."""
    rows, cols, values = np.asarray(rows), np.asarray(cols), np.asarray(values, dtype=np.float32)
    if len(rows) > 1 and (np.diff(rows) < 0).any():
        order = np.argsort(rows, kind="stable")
        cols, values = cols[order], values[order]
    crow = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=crow[1:])
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(t(crow), t(cols.astype(np.int64, copy=False)), t(values), shape)


class _Later:
    """A CSR matrix built on first use (transposes are needed only by the backward pass)."""

    def __init__(self, *args) -> None:
        self.args, self.value = args, None

    def get(self) -> torch.Tensor:
        if self.value is None:
            self.value = _csr(*self.args)
        return self.value


def _now(m: torch.Tensor | _Later) -> torch.Tensor:
    return m.get() if isinstance(m, _Later) else m


class _SpMM(torch.autograd.Function):
    """``m + a @ x`` for a constant sparse ``a`` (CSR) whose transpose ``at`` is given (or
    built on first use, :class:`_Later`)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, at: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        ctx.at = at
        ctx.m_shape = m.shape
        return torch.addmm(m, a, x)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        gx = gm = None
        if ctx.needs_input_grad[2]:
            at = _now(ctx.at)
            gx = torch.addmm(
                torch.empty(at.shape[0], g.shape[1], dtype=g.dtype, device=g.device), at, g, beta=0
            )
        if ctx.needs_input_grad[3]:
            gm = g if tuple(ctx.m_shape) == tuple(g.shape) else g.sum_to_size(ctx.m_shape)
        return None, None, gx, gm


@dataclass
class Adjacency:
    """One batch's directed edges ``src -> dst`` (batch-global node ids) as CSR matrices, built
    once per batch and shared by every layer: ``a`` sums over in-neighbours (row = dst),
    ``at`` is its transpose (the backward pass, or the reversed edges)."""

    edge_index: torch.Tensor  # (2, E)
    num_nodes: int
    a: torch.Tensor = field(init=False)
    at: torch.Tensor = field(init=False)
    _gcn: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        ei = self.edge_index.cpu().numpy()
        src, dst, dev = ei[0], ei[1], self.edge_index.device
        ones = np.ones(len(src), dtype=np.float32)
        n = self.num_nodes
        self.a = _csr(dst, src, ones, (n, n), dev)
        self.at = _csr(src, dst, ones, (n, n), dev)

    def reversed(self) -> Adjacency:
        """The same batch with every edge flipped (shares the CSR matrices)."""
        rev = object.__new__(Adjacency)
        rev.edge_index, rev.num_nodes = self.edge_index.flip(0), self.num_nodes
        rev.a, rev.at, rev._gcn = self.at, self.a, None
        return rev

    def sum(self, x: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
        """``plus_i + sum_{j -> i} x_j``."""
        return _SpMM.apply(self.a, self.at, x, plus)

    def layer(self, i: int) -> Adjacency:
        """The adjacency layer ``i`` uses (every layer the same one)."""
        return self

    def gcn(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``bias + D^-1/2 (A + I) D^-1/2 x`` with PyG's ``gcn_norm`` (self-loops added where
        missing, in-degree of the target)."""
        if self._gcn is None:
            ei, w = gcn_norm(self.edge_index, None, self.num_nodes, add_self_loops=True)
            n, dev = self.num_nodes, self.edge_index.device
            ei, w = ei.cpu().numpy(), w.detach().cpu().numpy()
            self._gcn = (_csr(ei[1], ei[0], w, (n, n), dev), _csr(ei[0], ei[1], w, (n, n), dev))
        a, at = self._gcn
        return _SpMM.apply(a, at, x, _rows(bias, a.shape[0], x))


def _rows(bias: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    """``bias`` (or 0) broadcast to ``n`` rows, without a copy."""
    return (bias if bias is not None else like.new_zeros(())).expand(n, like.shape[1])


class ClassAdjacency:
    """One layer of a class-compressed batch (see :func:`to_device` with ``classes``): rows are
    the layer's node classes, columns the previous layer's; ``prev`` maps a class to its own
    class one layer earlier."""

    def __init__(self, a, at, prev: torch.Tensor, gcn: tuple) -> None:
        self.a, self.at, self.prev, self._gcn_coo, self._gcn = a, at, prev, gcn, None

    def sum(self, x: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
        """``plus_i + sum_{j -> i} x_j`` (``plus`` given per previous-layer class)."""
        return _SpMM.apply(self.a, self.at, x, plus.index_select(0, self.prev))

    def gcn(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self._gcn is None:
            rows, cols, vals, (nu, nprev), device = self._gcn_coo
            self._gcn = (
                _csr(rows, cols, vals, (nu, nprev), device),
                _Later(cols, rows, vals, (nprev, nu), device),
            )
        a, at = self._gcn
        return _SpMM.apply(a, at, x, _rows(bias, a.shape[0], x))


class ClassLayers:
    """Per-layer :class:`ClassAdjacency` of a class-compressed batch."""

    def __init__(self, layers: list[ClassAdjacency]) -> None:
        self.layers = layers

    def layer(self, i: int) -> ClassAdjacency:
        if i >= len(self.layers):
            raise ValueError(f"batch compressed for {len(self.layers)} layers; layer {i} asked for")
        return self.layers[i]


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
    adj: Adjacency | ClassLayers | None = None
    _pool: tuple | None = field(default=None, repr=False)

    def adjacency(self) -> Adjacency | ClassLayers:
        if self.adj is None:
            self.adj = Adjacency(self.edge_index, int(self.batch.shape[0]))
        return self.adj

    def pool(self, x: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """Per-graph mean (or sum) of node rows ``x`` (PyG's ``global_mean_pool`` /
        ``global_add_pool``); 0 for a graph without nodes."""
        if self._pool is None:
            n, g, dev = int(self.batch.shape[0]), self.num_graphs, x.device
            batch = self.batch.cpu().numpy()
            nodes = np.arange(n)
            counts = np.bincount(batch, minlength=g)
            ones = np.ones(n, dtype=np.float32)
            inv = (1.0 / np.maximum(counts, 1).astype(np.float32))[batch]
            self._pool = (
                (_csr(batch, nodes, inv, (g, n), dev), _csr(nodes, batch, inv, (n, g), dev)),
                (_csr(batch, nodes, ones, (g, n), dev), _csr(nodes, batch, ones, (n, g), dev)),
            )
        p, pt = self._pool[0 if mean else 1]
        return _SpMM.apply(p, pt, x, x.new_zeros(()).expand(self.num_graphs, x.shape[1]))


def to_device(
    gb: GraphBatch, device: str | torch.device = "cpu", classes: np.ndarray | None = None
) -> Tensors:
    """Move a graph batch to ``device`` as tensors (edge index with batch-global node ids).

    With ``classes`` (:func:`~cgbench.predictors.features.node_classes` of these nodes,
    ``(layers + 1, N)``) the batch is *compressed*: node features are those of one node per
    class 0, layer ``l`` computes one state per class ``l`` (its in-edges those of one member,
    pointing at classes ``l - 1``), and pooling counts every node through its last class. The
    same function of the weights (so the same scores and gradients, up to float rounding) with
    far fewer rows: repeated cells and shared stems are computed once. Only for models whose
    layers pass messages along in-edges with no per-node randomness (no dropout)."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    batch = gb.graph_of_node()
    if classes is None:
        edges = gb.global_edges()
        return Tensors(
            op=t(gb.op),
            kernel=t(gb.kernel),
            weighted=t(gb.weighted),
            cont=t(gb.cont),
            edge_index=t(edges),
            batch=t(batch),
            num_graphs=len(gb),
        )
    g = len(gb)
    local, reps = [], []
    for row in classes:  # number the batch's classes 0..k-1 and pick each class's first node
        ids = dense_ids(row)
        local.append(ids)
        reps.append(_first_rows(ids))
    s_src, counts, starts, loops = gb.in_edges()
    dis = torch.from_numpy((counts + ~loops).astype(np.float32)).pow(-0.5).numpy()  # gcn_norm's D^-1/2
    layers = []
    for lay in range(1, len(classes)):
        rep, nu, nprev = reps[lay], len(reps[lay]), len(reps[lay - 1])
        prev = local[lay - 1][rep]
        take, ptr = segment_rows(starts, rep)
        rows = np.repeat(np.arange(nu), np.diff(ptr))
        nbr = s_src[take]
        cols = local[lay - 1][nbr]
        ones = np.ones(len(rows), dtype=np.float32)
        a, at = _csr(rows, cols, ones, (nu, nprev), device), _Later(cols, rows, ones, (nprev, nu), device)
        # GCN: D^-1/2 (A + I) D^-1/2 restricted to the class representatives (built when used)
        add = ~loops[rep]
        gcn = (
            np.concatenate([rows, np.flatnonzero(add)]),
            np.concatenate([cols, prev[add]]),
            np.concatenate([dis[nbr] * dis[rep[rows]], dis[rep[add]] * dis[rep[add]]]),
            (nu, nprev),
            device,
        )
        layers.append(ClassAdjacency(a, at, t(prev), gcn))
    # pooling: graph g sums count(g, class) * state(class) / n_g over its last-layer classes
    nl = len(reps[-1])
    pair_ids = dense_ids(batch * nl + local[-1])  # (graph, class) pairs, graphs in order
    first = _first_rows(pair_ids)
    rows, cols = batch[first], local[-1][first]
    count = np.bincount(pair_ids, minlength=len(first)).astype(np.float32)
    mean = count / np.maximum(np.bincount(batch, minlength=g), 1).astype(np.float32)[rows]
    pool = (
        (_csr(rows, cols, mean, (g, nl), device), _Later(cols, rows, mean, (nl, g), device)),
        (_csr(rows, cols, count, (g, nl), device), _Later(cols, rows, count, (nl, g), device)),
    )
    r0 = reps[0]
    return Tensors(
        op=t(gb.op[r0]),
        kernel=t(gb.kernel[r0]),
        weighted=t(gb.weighted[r0]),
        cont=t(gb.cont[r0]),
        edge_index=torch.zeros((2, 0), dtype=torch.int64, device=device),  # held by ``adj``
        batch=t(batch),
        num_graphs=g,
        adj=ClassLayers(layers),
        _pool=pool,
    )


def _first_rows(ids: np.ndarray) -> np.ndarray:
    """For dense ids ``0..k-1`` (:func:`dense_ids`), the row where each id first occurs."""
    n = len(ids)
    first = np.empty(int(ids.max()) + 1 if n else 0, dtype=np.int64)
    first[ids[::-1]] = np.arange(n - 1, -1, -1)  # the last write (the first row) wins
    return first


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
        # ``table.weight.index_select`` = ``table(ids)``; its backward (index_add) is far faster
        # on CPU than ``nn.Embedding``'s
        k1, k2 = t.kernel[:, 0], t.kernel[:, 1]
        if self.gennape:
            shape = self.shape(t.cont[:, :6])
            regular = torch.cat([self.op_regular.weight.index_select(0, t.op), shape], dim=1)
            weighted = torch.cat(
                [
                    self.op_weighted.weight.index_select(0, t.op),
                    shape,
                    self.k1.weight.index_select(0, k1),
                    self.k2.weight.index_select(0, k2),
                    self.bias(t.cont[:, 6:8]),
                ],
                dim=1,
            )
            return torch.where(t.weighted[:, None], weighted, regular)
        return torch.cat(
            [
                self.op_regular.weight.index_select(0, t.op),
                self.k1.weight.index_select(0, k1),
                self.k2.weight.index_select(0, k2),
                self.shape(t.cont),
            ],
            dim=1,
        )


class FastGraphConv(GraphConv):
    """PyG ``GraphConv`` (sum aggregation) whose forward takes an :class:`Adjacency`."""

    def forward(self, x: torch.Tensor, adj: Adjacency) -> torch.Tensor:  # type: ignore[override]
        # lin_rel(A x) + lin_root(x) = A (x W_rel^T) + (x W_root^T + b_rel)
        rel = nn.functional.linear(x, self.lin_rel.weight)
        return adj.sum(rel, nn.functional.linear(x, self.lin_root.weight, self.lin_rel.bias))


class FastGCNConv(GCNConv):
    """PyG ``GCNConv`` (self-loops, symmetric normalisation) whose forward takes an :class:`Adjacency`."""

    def forward(self, x: torch.Tensor, adj: Adjacency) -> torch.Tensor:  # type: ignore[override]
        return adj.gcn(nn.functional.linear(x, self.lin.weight), self.bias)


class FastGINConv(GINConv):
    """PyG ``GINConv`` whose forward takes an :class:`Adjacency`."""

    def forward(self, x: torch.Tensor, adj: Adjacency) -> torch.Tensor:  # type: ignore[override]
        return self.nn(adj.sum(x, (1 + self.eps) * x))


def _conv(kind: str, hidden: int) -> nn.Module:
    if kind == "graphconv":
        return FastGraphConv(hidden, hidden)
    if kind == "gcn":
        return FastGCNConv(hidden, hidden)
    if kind == "gin":
        return FastGINConv(nn.Sequential(nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)), eps=0.0)
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

    def forward(self, x: torch.Tensor, adj: Adjacency | ClassLayers | torch.Tensor) -> torch.Tensor:
        """Node states after the last layer; ``adj`` an :class:`Adjacency`, a compressed batch's
        :class:`ClassLayers`, or a (2, E) edge index."""
        if isinstance(adj, torch.Tensor):
            adj = Adjacency(adj, x.shape[0])
        rev = adj.reversed() if self.back is not None else None
        for i, conv in enumerate(self.convs):
            h = conv(x, adj.layer(i))
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

    def compressible(self) -> bool:
        """Whether batches may be class-compressed (:func:`to_device` with ``classes``): in-edge
        message passing only (not ``bidirectional``) and no dropout while training."""
        return self.encoder.back is None and (self.encoder.dropout.p == 0 or not self.training)

    def class_layers(self) -> int | None:
        """Layers a compressed batch's node classes must cover, or None when not compressible."""
        return len(self.encoder.convs) if self.compressible() else None

    def embed_graphs(self, t: Tensors, node_dropout: float = 0.0) -> torch.Tensor:
        if isinstance(t.adj, ClassLayers) and (node_dropout > 0 or not self.compressible()):
            raise ValueError("a class-compressed batch needs in-edge layers without dropout")
        x = self.embed(t)
        if node_dropout > 0:
            x = nn.functional.dropout(x, node_dropout, training=True)
        x = self.encoder(x, t.adjacency())
        z = t.pool(x)
        if self.pooling == "mean+sum":
            z = torch.cat([z, torch.log1p(t.pool(x.abs(), mean=False))], dim=1)
        return z

    def forward(self, t: Tensors) -> torch.Tensor:
        return self.head(self.embed_graphs(t)).squeeze(-1)
