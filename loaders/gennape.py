"""GENNAPE's released computation graphs (pickled ``ComputeGraph`` objects), read safely.

GENNAPE ships its CGs as pickles of private classes
(``model_src.comp_graph.tf_comp_graph.ComputeGraph`` with ``RegularNode`` / ``WeightedNode``).
Unpickling an untrusted file can run arbitrary code, so :class:`RestrictedUnpickler` admits only
those classes (mapped to inert stand-ins that just keep their attributes), plain containers and
NumPy arrays/scalars; anything else is refused with :class:`LoaderError`.

GENNAPE's node list is ``weighted_nodes + regular_nodes`` and ``edge_pairs`` index into it; its
``op_type_idx`` uses the same vocabulary as ``cgbench.cg.ops`` for indices 0-31. This module
turns such a graph into plain arrays (:class:`GennapeGraph`); the family loaders and
``cgbench.benchmarks`` turn those into :class:`cgbench.cg.ComputationGraph` objects.
"""

from __future__ import annotations

import heapq
import io
import pickle
from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cgbench.loaders.base import LoaderError

GENNAPE_GRAPH_MODULE = "model_src.comp_graph.tf_comp_graph"
NUM_GENNAPE_OPS = 32  # indices 0..31 (OOV, 27 categories, Reserved1-5)
# Label columns of families read from a GENNAPE cache (values kept as GENNAPE stored them).
GENNAPE_LABEL_COLUMNS: dict[str, str] = {
    "acc_gennape": "GENNAPE cache `acc` (fraction)",
    "flops_gennape": "GENNAPE cache `flops`, as stored (GENNAPE's units)",
    "params_gennape": "GENNAPE cache `n_params`, as stored (GENNAPE's units)",
}


class _Inert:
    """Stand-in for a pickled GENNAPE object: stores its state, runs no code of the file."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected state of type {type(state).__name__}")
        self.__dict__.update(state)


class GennapeComputeGraph(_Inert):
    """Attributes: name, input_shape (1, H, W, C), regular_nodes, weighted_nodes, edge_pairs."""


class GennapeNode(_Inert):
    """Attributes: str_id, label, op_type_idx, resolution, metadata, and ``shape`` if weighted."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    out: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = multiarray._reconstruct
        out[(mod, "scalar")] = multiarray.scalar
    return out


SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    (GENNAPE_GRAPH_MODULE, "ComputeGraph"): GennapeComputeGraph,
    (GENNAPE_GRAPH_MODULE, "RegularNode"): GennapeNode,
    (GENNAPE_GRAPH_MODULE, "WeightedNode"): GennapeNode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("collections", "OrderedDict"): OrderedDict,
    ("collections", "defaultdict"): defaultdict,
}


class PickleRefused(LoaderError):
    """An untrusted pickle asked for something the restricted unpickler does not admit (a global
    outside the allow-list, or a value too large): a refusal, not a damaged file."""


#: The most elements an admitted ``range`` may have (DARTS concat lists have 4): a pickle naming
#: ``range(2, 30_000_000)`` is refused while loading, before anything expands it.
MAX_RANGE_LEN = 1024


def bounded_range(*args: Any) -> range:
    """``range`` as admitted to untrusted pickles: at most :data:`MAX_RANGE_LEN` elements."""
    r = range(*args)
    if len(r) > MAX_RANGE_LEN:
        raise PickleRefused(
            f"refusing to unpickle range{args}: {len(r):,} elements, at most {MAX_RANGE_LEN} are admitted"
        )
    return r


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves only the globals in ``allowed`` (a refusal raises
    :class:`PickleRefused`); ``builtins.range`` is admitted only as :func:`bounded_range`."""

    def __init__(self, file, allowed: Mapping[tuple[str, str], Any], source: str) -> None:
        super().__init__(file)
        self.allowed = allowed
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            found = self.allowed[(module, name)]
        except KeyError:
            raise PickleRefused(
                f"{self.source}: refusing to unpickle {module}.{name}: only GENNAPE's graph "
                "classes, plain containers and NumPy values are admitted. The file is not a "
                "GENNAPE release file (or was tampered with); do not load it with plain pickle."
            ) from None
        return bounded_range if found is range else found


def load_pickle(path: str | Path, extra_allowed: Mapping[tuple[str, str], Any] | None = None) -> Any:
    """Unpickle ``path`` through :class:`RestrictedUnpickler`; corrupt files raise LoaderError."""
    allowed = {**SAFE_GLOBALS, **_numpy_globals(), **(extra_allowed or {})}
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise LoaderError(f"{path}: cannot read ({err.strerror})") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), allowed, str(path)).load()
    except PickleRefused as err:
        raise PickleRefused(f"{path}: {err}" if str(path) not in str(err) else str(err)) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise LoaderError(
            f"{path}: corrupt or truncated pickle ({type(err).__name__}: {err}); re-download it"
        ) from None


@dataclass
class GennapeGraph:
    """A GENNAPE CG as plain arrays, nodes in a topological order (``src < dst``)."""

    name: str
    input_shape: tuple[int, int, int]  # C, H, W
    op_type_idx: list[int]
    labels: list[str]
    str_ids: list[str]
    res: list[tuple[int, ...]]
    weight: list[tuple[int, int, int, int]]
    bias: list[bool]
    edges: list[tuple[int, int]]


def _topological(n: int, edges: list[tuple[int, int]], where: str) -> list[int]:
    indeg = [0] * n
    succ: list[list[int]] = [[] for _ in range(n)]
    for s, d in edges:
        succ[s].append(d)
        indeg[d] += 1
    ready = [i for i in range(n) if indeg[i] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for d in succ[i]:
            indeg[d] -= 1
            if indeg[d] == 0:
                heapq.heappush(ready, d)
    if len(order) != n:
        raise LoaderError(f"{where}: the graph has a cycle; not a GENNAPE computation graph")
    return order


def _node_weight(node: GennapeNode) -> tuple[int, int, int, int]:
    shape = getattr(node, "shape", None)
    if shape is not None:
        return tuple(int(v) for v in shape)  # type: ignore[return-value]
    ksize = (getattr(node, "metadata", None) or {}).get("ksize")
    if ksize and "pool" in node.label:
        c = int(node.resolution[4])
        return (c, c, int(ksize[1]), int(ksize[2]))
    return (0, 0, 0, 0)


def _node_bias(node: GennapeNode, op: int) -> bool:
    meta = getattr(node, "metadata", None) or {}
    if getattr(node, "shape", None) is not None:
        return bool(meta.get("use_bias", False))
    return op == 5  # batchnorm: TF's fused BN has scale and offset


def gennape_graph(obj: Any, *, where: str = "<pickle>") -> GennapeGraph:
    """Plain arrays of a GENNAPE ``ComputeGraph`` (as loaded by :func:`load_pickle`)."""
    if not isinstance(obj, GennapeComputeGraph):
        raise LoaderError(f"{where}: expected a GENNAPE ComputeGraph, got {type(obj).__name__}")
    try:
        nodes = list(obj.weighted_nodes) + list(obj.regular_nodes)
        pairs = [(int(s), int(d)) for s, d in obj.edge_pairs]
        _, h, w, c = (int(v) for v in obj.input_shape)
    except (AttributeError, TypeError, ValueError) as err:
        raise LoaderError(f"{where}: malformed GENNAPE ComputeGraph ({err})") from None
    n = len(nodes)
    for s, d in pairs:
        if not (0 <= s < n and 0 <= d < n):
            raise LoaderError(f"{where}: edge ({s}, {d}) points outside the {n} nodes")
    for i, node in enumerate(nodes):
        op = getattr(node, "op_type_idx", None)
        if not isinstance(op, int) or not 0 <= op < NUM_GENNAPE_OPS:
            raise LoaderError(f"{where}: node {i} ({getattr(node, 'str_id', '?')}) has op index {op!r}")
    order = _topological(n, pairs, where)
    position = {old: new for new, old in enumerate(order)}
    ordered = [nodes[i] for i in order]
    return GennapeGraph(
        name=str(getattr(obj, "name", "")),
        input_shape=(c, h, w),
        op_type_idx=[int(nd.op_type_idx) for nd in ordered],
        labels=[str(nd.label) for nd in ordered],
        str_ids=[str(nd.str_id) for nd in ordered],
        res=[tuple(int(v) for v in nd.resolution) for nd in ordered],
        weight=[_node_weight(nd) for nd in ordered],
        bias=[_node_bias(nd, int(nd.op_type_idx)) for nd in ordered],
        edges=sorted((position[s], position[d]) for s, d in pairs),
    )


def read_gennape_graph(path: str | Path) -> GennapeGraph:
    """One pickled GENNAPE ``ComputeGraph`` (e.g. AutoGO's ``<family>_best.pkl``)."""
    return gennape_graph(load_pickle(path), where=str(path))


def iter_gennape_cache(
    path: str | Path, extra_allowed: Mapping[tuple[str, str], Any] | None = None
) -> Iterator[dict[str, Any]]:
    """Entries of a GENNAPE cache (``gpi_*_comp_graph_cache.pkl``): a list of dicts with
    ``"compute graph"``, ``"acc"``, ``"flops"``, ``"n_params"``, ``"original config"``.

    Yields each dict with ``"compute graph"`` replaced by a :class:`GennapeGraph`.
    """
    data = load_pickle(path, extra_allowed)
    if not isinstance(data, list):
        raise LoaderError(f"{path}: expected a list of dicts (GENNAPE cache), got {type(data).__name__}")
    for row, item in enumerate(data):
        where = f"{path}, entry {row}"
        if not isinstance(item, dict) or "compute graph" not in item:
            raise LoaderError(f"{where}: expected a dict with a 'compute graph' key")
        yield {**item, "compute graph": gennape_graph(item["compute graph"], where=where)}
