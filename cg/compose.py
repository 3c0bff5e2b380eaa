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
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

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
    internal: np.ndarray  # (m, 2) edges between the part's nodes (relative)
    from_input: np.ndarray  # (k,) relative nodes fed by the segment input
    out_node: int  # relative node producing the output; -1: the output is the input itself
    out_shape: tuple[int, int, int]  # C, H, W


def _part_of(cg: ComputationGraph) -> _Part:
    n = cg.num_nodes
    e = cg.edges
    if cg.ops[0] != _INPUT or cg.ops[n - 1] != _OUTPUT:
        raise ValueError("a segment CG must start with its input node and end with its output node")
    into_out = e[e[:, 1] == n - 1, 0]
    if len(into_out) != 1:
        raise ValueError(f"a plan segment must return one tensor, its CG has {len(into_out)} outputs")
    body = (e[:, 0] > 0) & (e[:, 1] < n - 1)
    r = cg.res[n - 1]
    return _Part(
        ops=cg.ops[1 : n - 1],
        res=cg.res[1 : n - 1],
        weight=cg.weight[1 : n - 1],
        bias=cg.bias[1 : n - 1],
        internal=e[body] - 1,
        from_input=e[(e[:, 0] == 0) & (e[:, 1] < n - 1), 1] - 1,
        out_node=int(into_out[0]) - 1,
        out_shape=(int(r[5]), int(r[1]), int(r[3])),
    )


class PlanComposer:
    """Per-process cache of traced segments; :meth:`compose` builds one network's CG."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._parts: OrderedDict[tuple, _Part] = OrderedDict()
        self._traces = TraceCache()
        self.traced = 0

    def _part(self, key: Hashable, factory, shape: tuple[int, int, int]) -> _Part:
        k = (key, shape)
        part = self._parts.get(k)
        if part is None:
            part = _part_of(extract_cg(factory().eval(), shape, cache=self._traces))
            self._parts[k] = part
            self.traced += 1
            if len(self._parts) > self.max_entries:
                self._parts.popitem(last=False)
        return part

    def compose(self, plan: Sequence, input_shape: Sequence[int]) -> ComputationGraph:
        """The CG of the network described by ``plan`` (``loaders.base.Segment`` steps)."""
        c, h, w = (int(v) for v in input_shape)
        ops = [np.array([_INPUT], np.int16)]
        res = [np.array([[h, h, w, w, c, c]], np.int32)]
        weight = [np.zeros((1, 4), np.int32)]
        bias = [np.zeros(1, bool)]
        edges: list[np.ndarray] = []
        n = 1
        produced: list[tuple[int, tuple[int, int, int]]] = []  # (node, (C, H, W)) per step
        net_in = (0, (c, h, w))
        for step in plan:
            ins = [net_in if i < 0 else produced[i] for i in step.inputs]
            if step.join is not None:
                if step.join not in ("concat", "add"):
                    raise ValueError(f"unknown join {step.join!r} (concat, add)")
                (c0, h0, w0) = ins[0][1]
                c_out = sum(s[0] for _, s in ins) if step.join == "concat" else c0
                ops.append(np.array([_CONCAT if step.join == "concat" else _ADD], np.int16))
                res.append(np.array([[h0, h0, w0, w0, c0, c_out]], np.int32))
                weight.append(np.zeros((1, 4), np.int32))
                bias.append(np.zeros(1, bool))
                srcs = list(dict.fromkeys(node for node, _ in ins))
                edges.append(np.array([[s, n] for s in srcs], np.int32))
                produced.append((n, (c_out, h0, w0)))
                n += 1
                continue
            src, shape = ins[0]
            part = self._part(step.key, step.factory, shape)
            m = len(part.ops)
            if m:
                ops.append(part.ops)
                res.append(part.res)
                weight.append(part.weight)
                bias.append(part.bias)
                edges.append(part.internal + n)
                edges.append(np.stack([np.full(len(part.from_input), src, np.int32), part.from_input + n], 1))
            produced.append((src if part.out_node < 0 else part.out_node + n, part.out_shape))
            n += m
        last, (c_o, h_o, w_o) = produced[-1]
        ops.append(np.array([_OUTPUT], np.int16))
        res.append(np.array([[h_o, h_o, w_o, w_o, c_o, c_o]], np.int32))
        weight.append(np.zeros((1, 4), np.int32))
        bias.append(np.zeros(1, bool))
        edges.append(np.array([[last, n]], np.int32))
        e = np.concatenate(edges).astype(np.int32, copy=False)
        e = e[np.lexsort((e[:, 1], e[:, 0]))]
        return ComputationGraph(
            ops=np.concatenate(ops),
            res=np.concatenate(res),
            weight=np.concatenate(weight),
            bias=np.concatenate(bias),
            edges=e,
            input_shape=(c, h, w),
        )
