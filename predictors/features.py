"""Versioned node featurisers: computation graphs -> flat arrays a GNN batches without loops.

A featuriser turns an :class:`~cgbench.eval.data.ArchSet` (or any sequence of
:class:`~cgbench.cg.graph.ComputationGraph`) into one :class:`GraphBatch`: every node of every
graph in one array, graphs delimited by ``ptr``. An ``ArchSet`` is read from its Parquet columns
(``node_op``, ``node_res``, ``node_weight``, ``node_bias``, ``edge_index``) with pyarrow list
kernels, never graph by graph.

Per node a featuriser gives ``op`` (index into :data:`cgbench.cg.ops.OPS`), ``kernel``
(two small integer ids), ``weighted`` (conv, depthwise or linear) and ``cont`` (floats):

``feat/gennape-1`` (GENNAPE's ``get_gnn_features``, PREDICTORS.md §1.1)
    ``cont`` = the resolution ``[H_in, H_out, W_in, W_out, C_in, C_out]`` with H and W divided by
    256 and channels by 512, then the bias one-hot (``[0, 1]`` with a bias, ``[1, 0]`` without;
    zeros for regular nodes). ``kernel`` = the raw kernel ``[k1, k2]`` of weighted nodes (linear:
    0), clipped to 0..7 (GENNAPE's 8-entry table); 0 for other nodes.
``feat/cgbench-1`` (ours, richer)
    ``cont`` = ``log2(1 + H/W)`` of the resolution over ``log2(257)`` and ``log2(1 + C)`` over
    ``log2(2049)``, the spatial stride ``log2(H_in / H_out)``, ``log2(1 + weight C_in)`` and
    ``log2(1 + weight C_out)`` over ``log2(2049)`` (so grouped and depthwise convolutions differ
    from dense ones), the node's MACs per image as ``log10(1 + MACs) / 9``, the bias / affine
    flag for every node (batchnorm affine too), and the graph's ``log10(1 + FLOPs) / 10``
    broadcast to its nodes. ``kernel`` = the weight's or pooling window's ``[k1, k2]``,
    clipped to 0..7.

``feat/cgbench-2`` (ours, for transfer)
    ``feat/cgbench-1`` with each op id replaced by the id of the op playing its role
    (``_ROLE_OF``: depthwise -> conv, avgpool -> maxpool, relu6 / swish / hardswish / gelu /
    leakyrelu / tanh -> relu, hardsigmoid -> sigmoid, sub -> add, div -> mul, layernorm ->
    batchnorm, identity and flatten -> add, a sum of one input), so ops a training family lacks
    (NB-101 has no depthwise, avgpool, swish or identity) share a trained embedding instead of an
    untrained one.

``feat/cgbench-3`` (ours, scale-free; an option, not a default)
    ``feat/cgbench-2``'s op ids with every size taken relative to the node's own graph, so that
    NB-101 (128-512 channels, ~10 GFLOPs) and NB-201 (16-64 channels, ~0.1 GFLOPs) graphs fill
    the same feature range: ``log2`` of the graph's largest input H/W over the node's H/W (/8),
    ``log2`` of the node's and its weight's channels minus the graph's mean ``log2`` conv output
    channels (/4), the stride, the node's share of the graph's summed weighted-node MACs as
    ``log10(1 + 1e4 * share) / 4`` and the bias flag. No graph-level FLOPs feature. Scaling every
    width or the input resolution of a network leaves these features unchanged on the nodes whose
    sizes scale with it (not the 3-channel input, the classifier or the 1x1 maps after global
    pooling; tested).

``feat/cgbench-4`` (ours, population-relative; cgb-rank's default)
    ``feat/cgbench-2`` with its last column, the graph's absolute ``log10(1 + FLOPs) / 10``, replaced
    by the graph's FLOPs *percentile among the graphs featurised together*:
    ``(rank(FLOPs) - 1) / (n - 1)`` with ties at their mean rank (0.5 for one graph). NB-101's
    ~10 GFLOPs and NB-201's ~0.1 GFLOPs fill the same 0..1 range, so a network trained on one
    family reads "large for its population" the same way on another. The features of a graph
    therefore depend on the set it is featurised with (a whole target population when predicting;
    a :meth:`GraphBatch.select` keeps the percentiles of the set it was cut from).

All are deterministic functions of the stored columns (and, for ``feat/cgbench-4``, of which
graphs are featurised together); changing one means a new version name.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.stats import rankdata

from cgbench.cg.ops import OPS, WEIGHTED_OPS
from cgbench.eval.predictor import PredictorError

__all__ = [
    "FEATURISERS",
    "GraphBatch",
    "featurise",
    "featurise_table",
    "cont_dim",
    "node_classes",
    "dense_ids",
    "in_edges",
    "segment_rows",
    "FeatureError",
    "flops_percentile",
]

FEATURISERS: tuple[str, ...] = (
    "feat/gennape-1",
    "feat/cgbench-1",
    "feat/cgbench-2",
    "feat/cgbench-3",
    "feat/cgbench-4",
)
N_KERNEL_IDS = 8  # GENNAPE's kernel embedding table size (n_unique_kernels=8)
_COLUMNS = ["node_op", "node_res", "node_weight", "node_bias", "edge_index"]
_WEIGHTED_IDS = np.array(sorted(OPS.index(o) for o in WEIGHTED_OPS), dtype=np.int64)
_POOL_IDS = np.array([OPS.index("maxpool"), OPS.index("avgpool")], dtype=np.int64)
_IS_WEIGHTED = np.isin(np.arange(len(OPS)), _WEIGHTED_IDS)  # op id -> weighted (a lookup, not isin)
_IS_CONV = np.isin(np.arange(len(OPS)), [OPS.index("conv"), OPS.index("depthwise")])
# feat/cgbench-2: op id -> the id of the op playing its role (an op a source family lacks shares
# the embedding of one it has; the float features still tell them apart where they differ)
_ROLE_OF = {
    "depthwise": "conv",  # weight channels (1 input channel per group) tell them apart
    "avgpool": "maxpool",
    **{a: "relu" for a in ("relu6", "swish", "hardswish", "gelu", "leakyrelu", "tanh")},
    "hardsigmoid": "sigmoid",
    "sub": "add",
    "div": "mul",
    "layernorm": "batchnorm",
    "identity": "add",  # a one-input sum (NB-101 joins skips with add nodes, has no identity)
    "flatten": "add",  # a reshape: passes its one input on
}
_ROLE = np.array([OPS.index(_ROLE_OF.get(o, o)) for o in OPS], dtype=np.int64)


class FeatureError(PredictorError):
    """An unknown featuriser or graphs a featuriser cannot read."""


def cont_dim(featuriser: str) -> int:
    """Number of float features per node of ``featuriser``."""
    _check(featuriser)
    return {"feat/gennape-1": 8, "feat/cgbench-3": 11}.get(featuriser, 12)  # cgbench-1, -2, -4 share


def _check(featuriser: str) -> None:
    if featuriser not in FEATURISERS:
        raise FeatureError(f"unknown featuriser {featuriser!r}; known: {', '.join(FEATURISERS)}")


@dataclass
class GraphBatch:
    """Nodes of many graphs in flat arrays: graph ``g`` owns nodes ``ptr[g]:ptr[g+1]`` and
    edges ``eptr[g]:eptr[g+1]`` (``edges`` hold node indices local to their graph)."""

    featuriser: str
    op: np.ndarray  # (N,) int64
    kernel: np.ndarray  # (N, 2) int64
    weighted: np.ndarray  # (N,) bool
    cont: np.ndarray  # (N, D) float32
    edges: np.ndarray  # (E, 2) int64, local indices
    ptr: np.ndarray  # (G+1,) int64
    eptr: np.ndarray  # (G+1,) int64
    flops: np.ndarray  # (G,) float64, cgbench FLOPs (MACs per image)
    memo: dict = field(default_factory=dict, compare=False, repr=False)  # derived data, kept

    def classes(self, layers: int) -> np.ndarray:
        """:func:`node_classes` of this batch, computed once per ``layers`` and kept."""
        key = ("classes", layers)
        if key not in self.memo:
            self.memo[key] = node_classes(self, layers)
        return self.memo[key]

    def in_edges(self) -> tuple[np.ndarray, ...]:
        """:func:`in_edges` of this batch's nodes (batch-local ids), computed once and kept; a
        :meth:`select` of consecutive graphs slices its parent's instead of recomputing."""
        if "in_edges" not in self.memo:
            edges = self.global_edges()
            self.memo["in_edges"] = in_edges(edges[0], edges[1], len(self.op))
        return self.memo["in_edges"]

    def __len__(self) -> int:
        return len(self.ptr) - 1

    @property
    def num_nodes(self) -> np.ndarray:
        return np.diff(self.ptr)

    def select(self, index: np.ndarray) -> GraphBatch:
        """The graphs at ``index`` (in that order), as a new batch (views of this batch's arrays
        where ``index`` is one increasing run ``s, s+1, ...``, copies otherwise)."""
        index = np.asarray(index, dtype=np.int64)
        run = _run(index)
        if run is not None:
            s, e = run
            nodes, edges = slice(self.ptr[s], self.ptr[e]), slice(self.eptr[s], self.eptr[e])
            ptr, eptr = self.ptr[s : e + 1] - self.ptr[s], self.eptr[s : e + 1] - self.eptr[s]
            graphs = slice(s, e)
            parent_in_edges = self.memo.get("in_edges")
        else:
            parent_in_edges = None
            nodes, ptr = segment_rows(self.ptr, index)
            edges, eptr = segment_rows(self.eptr, index)
            graphs = index
        out = GraphBatch(
            self.featuriser,
            self.op[nodes],
            self.kernel[nodes],
            self.weighted[nodes],
            self.cont[nodes],
            self.edges[edges],
            ptr,
            eptr,
            self.flops[graphs],
        )
        if parent_in_edges is not None:  # edges never leave their graph: a node range is closed
            sources, counts, starts, self_loop = parent_in_edges
            a, b = nodes.start, nodes.stop
            out.memo["in_edges"] = (
                sources[starts[a] : starts[b]] - a,
                counts[a:b],
                starts[a : b + 1] - starts[a],
                self_loop[a:b],
            )
        return out

    def node_rows(self, index: np.ndarray) -> np.ndarray | slice:
        """Rows of this batch's node arrays that :meth:`select` (``index``) keeps, in its order
        (a slice where ``index`` is one increasing run)."""
        index = np.asarray(index, dtype=np.int64)
        run = _run(index)
        if run is not None:
            return slice(self.ptr[run[0]], self.ptr[run[1]])
        return segment_rows(self.ptr, index)[0]

    def global_edges(self) -> np.ndarray:
        """(2, E) edge index with node indices into this batch's node arrays."""
        counts = np.diff(self.eptr)
        offset = np.repeat(self.ptr[:-1], counts)
        return (self.edges + offset[:, None]).T

    def graph_of_node(self) -> np.ndarray:
        return np.repeat(np.arange(len(self), dtype=np.int64), self.num_nodes)


def _run(index: np.ndarray) -> tuple[int, int] | None:
    """``(s, e)`` when ``index`` is ``s, s+1, ..., e-1`` (non-empty), else None."""
    if len(index) == 0 or index[-1] - index[0] != len(index) - 1:
        return None
    return (int(index[0]), int(index[-1]) + 1) if (np.diff(index) == 1).all() else None


def segment_rows(ptr: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``ptr[i]:ptr[i+1]`` of each ``i`` in ``index``, concatenated, and their offsets."""
    starts, counts = ptr[index], ptr[index + 1] - ptr[index]
    new_ptr = np.zeros(len(index) + 1, dtype=np.int64)
    np.cumsum(counts, out=new_ptr[1:])
    take = np.arange(new_ptr[-1], dtype=np.int64) - np.repeat(new_ptr[:-1] - starts, counts)
    return take, new_ptr


def _flat(col: pa.ChunkedArray | pa.Array, width: int | None = None, dtype=np.int64) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    flat = pc.list_flatten(arr)
    if width is not None:
        flat = pc.list_flatten(flat)
        return flat.to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(-1, width)
    return flat


def _offsets(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    ptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    return ptr


def featurise_table(table: pa.Table, featuriser: str, flops: np.ndarray | None = None) -> GraphBatch:
    """Featurise a table holding the store's graph columns (``node_op`` ... ``edge_index``)."""
    _check(featuriser)
    missing = [c for c in _COLUMNS if c not in table.column_names]
    if missing:
        raise FeatureError(f"featurise: table lacks graph column(s) {', '.join(missing)}")
    ops_col = table.column("node_op")
    ptr = _offsets(ops_col)
    eptr = _offsets(table.column("edge_index"))
    flat_ops = _flat(ops_col)
    if pa.types.is_dictionary(flat_ops.type):
        flat_ops = flat_ops.cast(pa.string())
    op = pc.index_in(flat_ops, value_set=pa.array(OPS)).fill_null(0).to_numpy(zero_copy_only=False)
    op = op.astype(np.int64)
    # float32 is exact for these integer sizes (< 2**24) and for gennape's /256 and /512
    res = _flat(table.column("node_res"), 6, np.float32 if featuriser == "feat/gennape-1" else np.float64)
    weight = _flat(table.column("node_weight"), 4)
    bias = _flat(table.column("node_bias")).to_numpy(zero_copy_only=False).astype(bool)
    edges = _flat(table.column("edge_index"), 2)
    if len(res) != len(op) or len(weight) != len(op) or len(bias) != len(op):
        raise FeatureError("featurise: node columns of unequal length (corrupt store rows)")
    if flops is None:
        flops = (
            table.column("flops").to_numpy().astype(np.float64)
            if "flops" in table.column_names
            else np.zeros(len(ptr) - 1)
        )
    return _build(featuriser, op, res, weight, bias, edges, ptr, eptr, np.asarray(flops, np.float64))


def _build(featuriser, op, res, weight, bias, edges, ptr, eptr, flops) -> GraphBatch:
    weighted = _IS_WEIGHTED[op]
    pooled = np.isin(op, _POOL_IDS)
    node_op = _ROLE[op] if featuriser in ("feat/cgbench-2", "feat/cgbench-3", "feat/cgbench-4") else op
    if featuriser == "feat/gennape-1":
        # divisions by powers of two: float32 gives the float64 result exactly
        cont = np.zeros((len(op), 8), dtype=np.float32)
        np.multiply(res, np.array([1 / 256] * 4 + [1 / 512] * 2, dtype=np.float32), out=cont[:, :6])
        cont[:, 6] = weighted & ~bias
        cont[:, 7] = weighted & bias
        kernel = np.where(weighted[:, None], weight[:, 2:4], 0)
    elif featuriser == "feat/cgbench-3":
        cont = _scale_free(res, weight, bias, weighted, _IS_CONV[op], ptr)
        kernel = np.where((weighted | pooled)[:, None], weight[:, 2:4], 0)
    else:
        hw = np.log2(1.0 + res[:, :4]) / np.log2(257.0)
        ch = np.log2(1.0 + res[:, 4:6]) / np.log2(2049.0)
        wch = np.log2(1.0 + np.where(weighted[:, None], weight[:, :2], 0)) / np.log2(2049.0)
        node_flops = (np.log10(1.0 + _node_macs(res, weight, weighted)) / 9.0)[:, None]
        if featuriser == "feat/cgbench-4":
            graph_flops = np.repeat(flops_percentile(flops), np.diff(ptr))[:, None]
        else:
            log_flops = np.log10(1.0 + np.maximum(flops, 0.0))
            graph_flops = np.repeat(log_flops / 10.0, np.diff(ptr))[:, None]
        cont = np.hstack([hw, ch, _stride(res), wch, node_flops, bias[:, None].astype(float), graph_flops])
        kernel = np.where((weighted | pooled)[:, None], weight[:, 2:4], 0)
    return GraphBatch(
        featuriser=featuriser,
        op=node_op,
        kernel=np.clip(kernel, 0, N_KERNEL_IDS - 1).astype(np.int64, copy=False),
        weighted=weighted,
        cont=cont.astype(np.float32, copy=False),
        edges=edges.astype(np.int64, copy=False),
        ptr=ptr,
        eptr=eptr,
        flops=flops,
    )


def flops_percentile(flops: np.ndarray) -> np.ndarray:
    """Each graph's FLOPs percentile in ``flops``: ``(rank - 1) / (n - 1)``, ties at their mean
    rank; 0.5 for a single graph (``feat/cgbench-4``). A non-finite figure (unknown FLOPs) gets
    0.5 and is left out of the others' ranks."""
    flops = np.asarray(flops, dtype=np.float64)
    out = np.full(len(flops), 0.5)
    known = np.isfinite(flops)
    n = int(known.sum())
    if n >= 2:
        out[known] = (rankdata(flops[known]) - 1.0) / (n - 1.0)
    return out


def _scale_free(res, weight, bias, weighted, is_conv, ptr) -> np.ndarray:
    """``feat/cgbench-3``'s floats: sizes relative to the node's own graph (see the module doc)."""
    sizes = np.diff(ptr)
    graph = np.repeat(np.arange(len(sizes)), sizes)
    log_c = np.log2(np.maximum(res[:, 4:6], 1.0))
    n_conv = np.bincount(graph, weights=is_conv, minlength=len(sizes))
    ref_c = np.bincount(graph, weights=np.where(is_conv, log_c[:, 1], 0.0), minlength=len(sizes))
    ref_c = (ref_c / np.maximum(n_conv, 1))[graph][:, None]
    top_hw = np.zeros(len(sizes))
    np.maximum.at(top_hw, graph, np.maximum(res[:, 0], res[:, 2]))
    log_hw = np.log2(np.maximum(res[:, :4], 1.0))
    hw = (np.log2(np.maximum(top_hw, 1.0))[graph][:, None] - log_hw) / 8.0
    ch = (log_c - ref_c) / 4.0
    wch = np.where(weighted[:, None], (np.log2(np.maximum(weight[:, :2], 1.0)) - ref_c) / 4.0, 0.0)
    macs = _node_macs(res, weight, weighted)
    total = np.bincount(graph, weights=macs, minlength=len(sizes))  # the graph's own MACs
    share = macs / np.maximum(total, 1.0)[graph]
    node_flops = (np.log10(1.0 + 1e4 * share) / 4.0)[:, None]
    return np.hstack([hw, ch, _stride(res), wch, node_flops, bias[:, None].astype(float)])


def _stride(res: np.ndarray) -> np.ndarray:
    """Each node's spatial stride ``log2(H_in / H_out) / 3``, as a column."""
    return np.log2(np.maximum(res[:, 0], 1) / np.maximum(res[:, 1], 1))[:, None] / 3.0


def _node_macs(res: np.ndarray, weight: np.ndarray, weighted: np.ndarray) -> np.ndarray:
    """Multiply-accumulates per image of each weighted node (``C_in * C_out * k1 * k2 * H_out *
    W_out`` from its weight; 0 for other nodes)."""
    k = np.maximum(weight[:, 2:4], 1)
    return np.where(weighted, weight[:, 0] * weight[:, 1] * k[:, 0] * k[:, 1] * res[:, 1] * res[:, 3], 0)


def _featurise_graphs(graphs: Sequence, featuriser: str) -> GraphBatch:
    n = [g.num_nodes for g in graphs]
    m = [len(g.edges) for g in graphs]
    ptr = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
    eptr = np.concatenate([[0], np.cumsum(m)]).astype(np.int64)
    cat = lambda arrs, shape: np.concatenate(arrs) if arrs else np.zeros(shape)  # noqa: E731
    return _build(
        featuriser,
        cat([g.ops.astype(np.int64) for g in graphs], (0,)).astype(np.int64),
        cat([g.res for g in graphs], (0, 6)).astype(np.float64),
        cat([g.weight for g in graphs], (0, 4)).astype(np.int64),
        cat([g.bias for g in graphs], (0,)).astype(bool),
        cat([g.edges for g in graphs], (0, 2)).astype(np.int64),
        ptr,
        eptr,
        np.array([g.flops() for g in graphs], dtype=np.float64),
    )


_CACHE: OrderedDict[tuple, GraphBatch] = OrderedDict()
_CACHE_SIZE = 8


def _archset_key(graphs, featuriser: str) -> tuple | None:
    """Memo key of an ``ArchSet``: its label-free source (by identity, alive while the set is)
    and the arch ids it holds; None for plain graph sequences."""
    source = getattr(graphs, "_source", None)
    rows = getattr(graphs, "row_indices", None)
    if source is None or rows is None:
        return None
    digest = hashlib.sha1("\0".join(graphs.arch_ids).encode()).hexdigest()
    return (featuriser, graphs.family, id(source), len(source), digest)


def featurise(graphs: Sequence, featuriser: str = "feat/gennape-1") -> GraphBatch:
    """Featurise ``graphs``: an ``ArchSet`` through its columns (memoised for the last few sets),
    a plain sequence of ``ComputationGraph`` graph by graph (same numbers)."""
    _check(featuriser)
    key = _archset_key(graphs, featuriser)
    if key is not None and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    if hasattr(graphs, "table") and hasattr(graphs, "columns"):
        table = graphs.table([*_COLUMNS, "flops"])
        batch = featurise_table(table, featuriser)
    else:
        batch = _featurise_graphs(list(graphs), featuriser)
    if key is not None:
        _CACHE[key] = batch
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return batch


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray, tmp: np.ndarray | None = None) -> np.ndarray:
    """A bijective 64-bit mix (splitmix64's finaliser), elementwise on uint64, **in place**
    (``x`` is overwritten and returned; ``tmp``, as long as ``x``, is scratch space)."""
    t = np.empty_like(x) if tmp is None else tmp
    with np.errstate(over="ignore"):
        for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            np.right_shift(x, np.uint64(shift), out=t)
            x ^= t
            x *= np.uint64(mult)
        np.right_shift(x, np.uint64(31), out=t)
        x ^= t
    return x


_CHUNK = 1 << 16  # elements per step of _mix: its temporaries stay in the CPU cache


def _mix(key: np.ndarray, words: Sequence[np.ndarray]) -> np.ndarray:
    """``key <- splitmix(key * MIX + word_j + j)`` for each word in turn, in place, one
    cache-sized chunk at a time (2-3x faster than whole-array passes on millions of nodes)."""
    tmp = np.empty(min(len(key), _CHUNK), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for s in range(0, len(key), _CHUNK):
            k = key[s : s + _CHUNK]
            for j, w in enumerate(words):
                k *= _MIX
                k += w[s : s + _CHUNK]
                if j:
                    k += np.uint64(j)
                _splitmix(k, tmp[: len(k)])
    return key


def dense_ids(key: np.ndarray) -> np.ndarray:
    """Dense ids 0..k-1 for the distinct values of ``key`` (uint64), numbered in order of first
    appearance (a hash table: ``pandas.factorize``, linear time, no sort)."""
    if len(key) == 0:
        return np.zeros(0, dtype=np.int64)
    codes, _ = pd.factorize(np.ascontiguousarray(key, dtype=np.uint64), sort=False)
    return codes.astype(np.int64, copy=False)


def in_edges(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """The in-edges of ``n`` nodes grouped by destination: ``(sources, counts, starts, self_loop)``
    where node ``v``'s sources are ``sources[starts[v]:starts[v+1]]`` (edge order kept),
    ``counts`` its in-degree and ``self_loop`` whether it has an edge to itself."""
    sources = src[np.argsort(dst, kind="stable")]
    counts = np.bincount(dst, minlength=n)
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    self_loop = np.zeros(n, dtype=bool)
    self_loop[dst[src == dst]] = True
    return sources, counts, starts, self_loop


def node_classes(gb: GraphBatch, layers: int) -> np.ndarray:
    """Weisfeiler-Lehman classes along the directed edges: ``(layers + 1, N)`` uint64 keys
    (equal key = same class; :func:`dense_ids` numbers them within a batch).

    Two nodes (of any graphs) share class ``l`` iff they share class ``l - 1`` and their
    in-neighbours' classes ``l - 1`` form the same multiset; class 0 = equal features, in-degree
    and self-loop flag. A message-passing layer over in-edges (GraphConv, GCNConv, GINConv) gives
    nodes of one class ``l`` the same state after ``l`` layers, so a batch computes each class
    once (:func:`cgbench.predictors.nn.to_device` with ``classes``). Multisets are compared by
    a 64-bit hash: the sum (mod 2^64) of the in-neighbours' keys, themselves splitmix64 outputs,
    mixed with the node's own key; distinct multisets collide only by a chance linear relation
    between pseudo-random words, so a false merge has probability ~ n^2 / 2^64 for n classes.
    """
    n = len(gb.op)
    s_src, counts, starts, self_loop = gb.in_edges()
    indeg = counts.astype(np.uint64)
    loop = self_loop.astype(np.uint64)
    # small integers packed exactly into one word, the float features' bits two per word
    k = np.clip(gb.kernel, 0, 255).astype(np.uint64)
    small = gb.op.astype(np.uint64) | (np.minimum(indeg, 2**20) << np.uint64(16))
    small |= (loop << np.uint64(40)) | (gb.weighted.astype(np.uint64) << np.uint64(41))
    small |= (k[:, 0] << np.uint64(42)) | (k[:, 1] << np.uint64(50))
    cont = np.ascontiguousarray(gb.cont, dtype=np.float32)
    if cont.shape[1] % 2:
        cont = np.hstack([cont, np.zeros((n, 1), np.float32)])
    cols = [small, *cont.view(np.uint64).T] if n else [small]
    out = np.empty((layers + 1, n), dtype=np.uint64)
    out[0] = 0
    _mix(out[0], cols)
    # in-neighbour sums: a node with one in-edge takes its source's key (most CG nodes: chains
    # of conv -> batchnorm -> relu), only nodes with several sum a segment
    one = np.flatnonzero(counts == 1)
    one_src = s_src[starts[one]]
    multi = np.flatnonzero(counts > 1)
    multi_take, multi_ptr = segment_rows(starts, multi)
    multi_src = s_src[multi_take]
    h = np.zeros(n, dtype=np.uint64)
    for layer in range(1, layers + 1):
        prev = out[layer - 1]
        with np.errstate(over="ignore"):
            h[one] = prev[one_src]
            if len(multi):
                h[multi] = np.add.reduceat(prev[multi_src], multi_ptr[:-1])
        out[layer] = prev
        _mix(out[layer], [h])
    return out
