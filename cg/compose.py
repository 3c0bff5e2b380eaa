"""Compose a network's CG from per-segment CGs traced once (fast builds of block-structured spaces).

A family whose networks are a fixed plan of sub-modules (``Family.build_plan``: a stem, blocks
determined by a small key, joins, a head) gets its CG by tracing every distinct segment once per
process and concatenating the cached sub-graphs: nodes renumbered, the segment's input edges
connected to the node that produced its input. The result equals :func:`extract_cg` of the whole
network node for node (same order, same arrays), because the plan network
(``loaders.blocks.PlanNetwork``) runs the same modules in the same order; tests check this.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from cgbench.cg.graph import ComputationGraph
from cgbench.cg.ops import OP_INDEX
from cgbench.cg.trace import TraceCache, extract_cg

_INPUT, _OUTPUT, _CONCAT, _ADD = (OP_INDEX[o] for o in ("input", "output", "concat", "add"))


@dataclass
class _Part:
    """A traced segment without its input/output nodes."""

    ops: np.ndarray
    res: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    edges: np.ndarray  # (m, 2) relative node indices; src -1 = the segment's input
    out_node: int  # relative node producing the output; -1: the output is the input itself
    out_shape: tuple[int, int, int]  # C, H, W


def _part_of(cg: ComputationGraph) -> _Part:
    n = cg.num_nodes
    e = cg.edges.astype(np.int64)
    if cg.ops[0] != _INPUT or cg.ops[n - 1] != _OUTPUT:
        raise ValueError("a segment CG must start with its input node and end with its output node")
    into_out = e[e[:, 1] == n - 1, 0]
    if len(into_out) != 1:
        raise ValueError(f"a plan segment must return one tensor, its CG has {len(into_out)} outputs")
    r = cg.res[n - 1]
    return _Part(
        ops=cg.ops[1 : n - 1],
        res=cg.res[1 : n - 1],
        weight=cg.weight[1 : n - 1],
        bias=cg.bias[1 : n - 1],
        edges=e[e[:, 1] < n - 1] - 1,
        out_node=int(into_out[0]) - 1,
        out_shape=(int(r[5]), int(r[1]), int(r[3])),
    )


def _join_part(join: str, shapes: list[tuple[int, int, int]], n_inputs: int) -> _Part:
    if join not in ("concat", "add"):
        raise ValueError(f"unknown join {join!r} (concat, add)")
    c0, h0, w0 = shapes[0]
    c_out = sum(s[0] for s in shapes) if join == "concat" else c0
    return _Part(
        ops=np.array([_CONCAT if join == "concat" else _ADD], np.int16),
        res=np.array([[h0, h0, w0, w0, c0, c_out]], np.int32),
        weight=np.zeros((1, 4), np.int32),
        bias=np.zeros(1, bool),
        edges=np.array([[-1 - i, 0] for i in range(n_inputs)], np.int64),
        out_node=0,
        out_shape=(c_out, h0, w0),
    )


_INITS = ("kaiming_uniform_", "uniform_", "normal_", "ones_", "zeros_", "trunc_normal_")


def _keep(tensor, *args, **kwargs):
    return tensor


@contextmanager
def _shapes_only() -> Iterator[None]:
    """Build modules for shape-only tracing: parameters on the meta device (no memory) and
    ``torch.nn.init`` calls skipped (the CG needs shapes, never values)."""
    saved = {name: getattr(nn.init, name) for name in _INITS}
    for name in _INITS:
        setattr(nn.init, name, _keep)
    try:
        with torch.device("meta"):
            yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


class PlanComposer:
    """Per-process cache of traced segments; :meth:`compose` builds one network's CG."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._parts: OrderedDict[tuple, _Part] = OrderedDict()
        self._traces = TraceCache()
        self._joins: dict[tuple, _Part] = {}
        self.traced = 0

    def _part(self, key: Hashable, factory, shape: tuple[int, int, int]) -> _Part:
        k = (key, shape)
        part = self._parts.get(k)
        if part is None:
            with _shapes_only():
                module = factory().eval()
            part = _part_of(extract_cg(module, shape, cache=self._traces))
            self._parts[k] = part
            self.traced += 1
            if len(self._parts) > self.max_entries:
                self._parts.popitem(last=False)
        return part

    def compose(self, plan: Sequence, input_shape: Sequence[int]) -> ComputationGraph:
        """The CG of the network described by ``plan`` (``loaders.base.Segment`` steps)."""
        c, h, w = (int(v) for v in input_shape)
        parts: list[_Part] = []
        offsets: list[int] = []
        sources: list[tuple[int, ...]] = []  # absolute input nodes of each part (by -1 - position)
        produced: list[tuple[int, tuple[int, int, int]]] = []  # (node, (C, H, W)) per step
        net_in = (0, (c, h, w))
        n = 1
        for step in plan:
            ins = [net_in if i < 0 else produced[i] for i in step.inputs]
            if step.join is not None:
                srcs = tuple(dict.fromkeys(node for node, _ in ins))
                jkey = (step.join, tuple(s for _, s in ins), len(srcs))
                part = self._joins.get(jkey)
                if part is None:
                    part = self._joins[jkey] = _join_part(step.join, list(jkey[1]), len(srcs))
            else:
                part = self._part(step.key, step.factory, ins[0][1])
                srcs = (ins[0][0],)
            parts.append(part)
            offsets.append(n)
            sources.append(srcs)
            produced.append((srcs[0] if part.out_node < 0 else part.out_node + n, part.out_shape))
            n += len(part.ops)
        last, (c_o, h_o, w_o) = produced[-1]
        ops = np.concatenate([[_INPUT], *(p.ops for p in parts), [_OUTPUT]]).astype(np.int16)
        res = np.concatenate(
            [[[h, h, w, w, c, c]], *(p.res for p in parts), [[h_o, h_o, w_o, w_o, c_o, c_o]]]
        ).astype(np.int32)
        weight = np.concatenate([_ZERO_W, *(p.weight for p in parts), _ZERO_W])
        bias = np.concatenate([[False], *(p.bias for p in parts), [False]])
        lengths = [len(p.edges) for p in parts]
        e = np.concatenate([p.edges for p in parts]) if parts else np.zeros((0, 2), np.int64)
        shift = np.repeat(np.array(offsets, np.int64), lengths)
        src = e[:, 0] + shift
        external = e[:, 0] < 0
        if external.any():
            table = np.array([node for s in sources for node in s], np.int64)
            base = np.repeat(np.cumsum([0] + [len(s) for s in sources[:-1]]), lengths)
            src[external] = table[base[external] - 1 - e[external, 0]]
        edges = np.concatenate([np.stack([src, e[:, 1] + shift], 1), [[last, n]]]).astype(np.int32)
        edges = edges[np.lexsort((edges[:, 1], edges[:, 0]))]
        return ComputationGraph(
            ops=ops, res=res, weight=weight, bias=bias, edges=edges, input_shape=(c, h, w)
        )


_ZERO_W = np.zeros((1, 4), np.int32)
