"""The ``ComputationGraph`` type: one node per atomic operator, directed data-flow edges.

Arrays, not objects: a CG is five NumPy arrays (ops, res, weight, bias, edges) plus the input
shape, so 15k graphs fit in memory and move to Parquet / PyTorch Geometric without loops.

Per node ``i``:
- ``ops[i]``: index into the vocabulary ``cgbench.cg.ops.OPS`` (version ``vocab_version``);
- ``res[i]``: ``[H_in, H_out, W_in, W_out, C_in, C_out]`` (H_in/W_in/C_in from the first input;
  a 2-D tensor (N, F) has H = W = 1, C = F);
- ``weight[i]``: weighted nodes: the weight tensor as ``[C_in, C_out, k1, k2]`` with the product of
  its non-zero entries = the weight's parameter count (conv ``[C_in/groups, C_out, k, k]``, depthwise
  ``[C_in, multiplier, k, k]`` as GENNAPE, linear ``[in, out, 0, 0]``); pooling nodes: their window
  ``[C, C, k1, k2]`` (no parameters); all other nodes zeros;
- ``bias[i]``: conv/depthwise/linear: has a bias vector; batchnorm/layernorm: has a learnable
  affine scale and shift.

Edges are ``(src, dst)`` node indices; nodes are numbered in a topological order (``src < dst``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cgbench.cg.ops import OPS, VOCAB_VERSION, op_index


class GraphError(ValueError):
    """A computation graph whose arrays are inconsistent."""


@dataclass(frozen=True, eq=False)
class ComputationGraph:
    """A computation graph: see the module docstring for the meaning of each array."""

    ops: np.ndarray  # (n,) int16
    res: np.ndarray  # (n, 6) int32
    weight: np.ndarray  # (n, 4) int32
    bias: np.ndarray  # (n,) bool
    edges: np.ndarray  # (m, 2) int32
    input_shape: tuple[int, ...]  # C, H, W
    vocab_version: str = VOCAB_VERSION
    # trainable parameters, each tensor once, recorded by the tracer (None: count from the arrays)
    num_params: int | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        ops: Sequence[int] | np.ndarray,
        res: Sequence[Sequence[int]] | np.ndarray,
        weight: Sequence[Sequence[int]] | np.ndarray,
        bias: Sequence[bool] | np.ndarray,
        edges: Sequence[Sequence[int]] | np.ndarray,
        input_shape: Sequence[int],
        *,
        check: bool = True,
        num_params: int | None = None,
    ) -> ComputationGraph:
        """Build a CG from array-likes, converting dtypes; ``check`` validates it; ``num_params``
        is the recorded parameter count (e.g. a store row's ``params``), if known."""
        n = len(ops)
        cg = cls(
            ops=np.asarray(ops, dtype=np.int16).reshape(n),
            res=np.asarray(res, dtype=np.int32).reshape(n, 6),
            weight=np.asarray(weight, dtype=np.int32).reshape(n, 4),
            bias=np.asarray(bias, dtype=bool).reshape(n),
            edges=np.asarray(edges, dtype=np.int32).reshape(-1, 2),
            input_shape=tuple(int(v) for v in input_shape),
            num_params=None if num_params is None else int(num_params),
        )
        if check:
            cg.validate()
        return cg

    @classmethod
    def from_op_names(
        cls, op_names: Sequence[str], res, weight, bias, edges, input_shape, *, num_params=None
    ):
        """Like :meth:`from_arrays` with op names instead of indices."""
        return cls.from_arrays(
            [op_index(o) for o in op_names], res, weight, bias, edges, input_shape, num_params=num_params
        )

    def validate(self) -> None:
        """Raise :class:`GraphError` naming the first inconsistency."""
        n = len(self.ops)
        if n == 0:
            raise GraphError("empty computation graph")
        if self.ops.min() < 0 or self.ops.max() >= len(OPS):
            raise GraphError(f"op index out of range 0..{len(OPS) - 1} ({self.vocab_version})")
        if len(self.edges):
            if self.edges.min() < 0 or self.edges.max() >= n:
                raise GraphError(f"edge endpoint out of range 0..{n - 1}")
            bad = np.flatnonzero(self.edges[:, 0] >= self.edges[:, 1])
            if len(bad):
                s, d = self.edges[bad[0]]
                raise GraphError(f"edge {bad[0]} ({s} -> {d}) breaks the topological node order")

    # ------------------------------------------------------------------ basic facts
    @property
    def num_nodes(self) -> int:
        return int(len(self.ops))

    @property
    def num_edges(self) -> int:
        return int(len(self.edges))

    @property
    def op_names(self) -> list[str]:
        return [OPS[i] for i in self.ops.tolist()]

    def op_counts(self) -> Counter:
        """Number of nodes per op name."""
        return Counter(self.op_names)

    def weighted_kernel_counts(self) -> Counter:
        """``(op, k1, k2)`` -> count over weighted nodes (e.g. ``("conv", 3, 3)``)."""
        mask = np.isin(self.ops, [op_index(o) for o in ("conv", "depthwise", "matmul")])
        return Counter(
            (OPS[o], int(k1), int(k2))
            for o, k1, k2 in zip(self.ops[mask], self.weight[mask, 2], self.weight[mask, 3])
        )

    def params(self) -> int:
        """Trainable parameters the graph represents, each parameter tensor once.

        ``num_params`` when the tracer recorded it (exact: tied weights once, any norm shape);
        otherwise counted from the arrays: weights, biases and norm affines (2 x C) per node.
        """
        from cgbench.cg.counting import count_params

        return count_params(self)

    def flops(self, convention: str = "macs") -> float:
        """Per-image FLOPs under a named convention (``cgbench.cg.counting.FLOPS_CONVENTIONS``).

        The cgbench definition, ``"macs"``, counts multiply-accumulates of conv, depthwise and
        linear nodes; other conventions reproduce how a benchmark published its figures.
        """
        from cgbench.cg.counting import count_flops

        return count_flops(self, convention)

    # ------------------------------------------------------------------ identity
    def cg_hash(self) -> str:
        """Weisfeiler-Lehman hash: equal for the same network, whatever its node numbering.

        1-WL refinement over node labels (op, res, weight, bias) with in- and out-neighbour
        multisets, run until the partition stops refining; the sorted final labels, the input
        shape and the vocabulary version are hashed with BLAKE2b (128 bit). Different hashes
        mean different graphs. Like every 1-WL test it cannot separate some highly regular
        non-isomorphic graphs (e.g. a ring of 8 sums versus two rings of 4 over identical
        branches), so equal hashes are very strong evidence, not proof, of isomorphism; all
        15,625 NB-201 cells get distinct hashes.
        """
        labels = _initial_labels(self)
        into = _Segments(self.edges[:, 1], self.edges[:, 0], self.num_nodes)
        out_of = _Segments(self.edges[:, 0], self.edges[:, 1], self.num_nodes)
        n_classes = len(np.unique(labels))
        for _ in range(self.num_nodes):
            from_in = into.sum(_mix(labels ^ _K_IN))
            from_out = out_of.sum(_mix(labels ^ _K_OUT))
            labels = _mix(labels * _P1 + _mix(from_in) * _P2 + _mix(from_out ^ _K_OUT))
            refined = len(np.unique(labels))
            if refined == n_classes:
                break
            n_classes = refined
        h = hashlib.blake2b(digest_size=16)
        h.update(self.vocab_version.encode())
        h.update(np.asarray(self.input_shape, dtype=np.int64).tobytes())
        h.update(np.sort(labels).tobytes())
        return h.hexdigest()

    def equals(self, other: ComputationGraph) -> bool:
        """Identical arrays (same node order), not just isomorphic (``num_params`` not compared)."""
        return (
            self.input_shape == other.input_shape
            and self.vocab_version == other.vocab_version
            and np.array_equal(self.ops, other.ops)
            and np.array_equal(self.res, other.res)
            and np.array_equal(self.weight, other.weight)
            and np.array_equal(self.bias, other.bias)
            and np.array_equal(_sorted_edges(self.edges), _sorted_edges(other.edges))
        )

    # ------------------------------------------------------------------ conversions
    def to_networkx(self):
        """A ``networkx.DiGraph`` with node attributes ``op``, ``res``, ``weight``, ``bias``."""
        from cgbench.cg.convert import to_networkx

        return to_networkx(self)

    def to_pyg(self, y: float | None = None):
        """A ``torch_geometric.data.Data`` with featuriser ``feat/1`` node features."""
        from cgbench.cg.convert import to_pyg

        return to_pyg(self, y=y)

    def to_dot(self, name: str = "cg"):
        """A ``graphviz.Digraph`` drawing (render it with ``.render()`` or show ``.source``)."""
        from cgbench.cg.convert import to_dot

        return to_dot(self, name=name)

    def __repr__(self) -> str:
        return (
            f"ComputationGraph(nodes={self.num_nodes}, edges={self.num_edges}, "
            f"input_shape={self.input_shape})"
        )


def _sorted_edges(edges: np.ndarray) -> np.ndarray:
    if len(edges) == 0:
        return edges
    order = np.lexsort((edges[:, 1], edges[:, 0]))
    return edges[order]


_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_K_IN = np.uint64(0x165667B19E3779F9)
_K_OUT = np.uint64(0x27D4EB2F165667C5)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


class _Segments:
    """Per-node wrapping sums of ``values[other]`` over the edges grouped by ``key`` node."""

    def __init__(self, key: np.ndarray, other: np.ndarray, n: int) -> None:
        order = np.argsort(key, kind="stable")
        self.key, self.other, self.n = key[order], other[order].astype(np.intp), n
        self.starts = np.flatnonzero(np.r_[True, self.key[1:] != self.key[:-1]]) if len(key) else key
        self.nodes = self.key[self.starts] if len(key) else key

    def sum(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n, dtype=np.uint64)
        if len(self.key):
            out[self.nodes] = np.add.reduceat(values[self.other], self.starts)
        return out


def _initial_labels(cg: ComputationGraph) -> np.ndarray:
    cols = np.concatenate(
        [
            cg.ops[:, None].astype(np.int64),
            cg.res.astype(np.int64),
            cg.weight.astype(np.int64),
            cg.bias[:, None].astype(np.int64),
        ],
        axis=1,
    ).astype(np.uint64)
    h = np.full(len(cg.ops), 0x84222325, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(cols.shape[1]):
            h = _mix(h * _P1 + cols[:, j] + np.uint64(j))
    return h


def cg_hashes(graphs: Sequence[ComputationGraph]) -> list[str]:
    """:meth:`ComputationGraph.cg_hash` of many graphs at once, with identical values.

    The WL refinement runs on the disjoint union of the graphs (vectorised over the batch), each
    graph frozen at the iteration where its own partition stops refining, exactly as
    ``cg_hash`` stops; this amortises NumPy's per-call overhead over the batch (issue #10: a
    store build of 38k small graphs).
    """
    if not graphs:
        return []
    sizes = np.array([g.num_nodes for g in graphs], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    gid = np.repeat(np.arange(len(graphs)), sizes)
    union = ComputationGraph(
        ops=np.concatenate([g.ops for g in graphs]),
        res=np.concatenate([g.res for g in graphs]),
        weight=np.concatenate([g.weight for g in graphs]),
        bias=np.concatenate([g.bias for g in graphs]),
        edges=np.concatenate([g.edges.astype(np.int64) + s for g, s in zip(graphs, starts)]),
        input_shape=(),
    )
    total = int(sizes.sum())
    labels = _initial_labels(union)
    into = _Segments(union.edges[:, 1], union.edges[:, 0], total)
    out_of = _Segments(union.edges[:, 0], union.edges[:, 1], total)

    salt = _mix(gid.astype(np.uint64) * _P2 + _K_IN)

    def classes(values: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        # distinct (graph, label) pairs per graph, via one sort of a 64-bit key mixing both (a
        # collision needs two of ~1e5 random 64-bit keys to meet: ~1e-9 per call)
        key = _mix(values[nodes] ^ salt[nodes])
        order = np.argsort(key)
        key = key[order]
        first = np.r_[True, key[1:] != key[:-1]]
        return np.bincount(gid[nodes][order][first], minlength=len(graphs))

    n_classes = classes(labels, np.arange(total))
    active = np.ones(len(graphs), dtype=bool)
    for it in range(int(sizes.max())):
        if not active.any():
            break
        from_in = into.sum(_mix(labels ^ _K_IN))
        from_out = out_of.sum(_mix(labels ^ _K_OUT))
        new = _mix(labels * _P1 + _mix(from_in) * _P2 + _mix(from_out ^ _K_OUT))
        nodes = np.flatnonzero(active[gid])
        labels[nodes] = new[nodes]
        refined = classes(labels, nodes)
        stable = active & (refined == n_classes)
        n_classes = np.where(active, refined, n_classes)
        active &= ~stable & (it + 1 < sizes)
    out = []
    for g, s, n in zip(graphs, starts, sizes):
        h = hashlib.blake2b(digest_size=16)
        h.update(g.vocab_version.encode())
        h.update(np.asarray(g.input_shape, dtype=np.int64).tobytes())
        h.update(np.sort(labels[s : s + n]).tobytes())
        out.append(h.hexdigest())
    return out
