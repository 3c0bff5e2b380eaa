"""Computation graphs: the op vocabulary, the :class:`ComputationGraph` type, extraction from any
``torch.nn.Module``, counting (params, FLOPs), canonical hashing and conversions."""

from cgbench.cg.convert import FEATURIZER_VERSION, from_networkx, from_pyg, node_features
from cgbench.cg.counting import FLOPS_CONVENTIONS, count_flops, count_params
from cgbench.cg.graph import ComputationGraph, GraphError
from cgbench.cg.ops import OP_INDEX, OPS, VOCAB_VERSION, op_index
from cgbench.cg.trace import LEAF_MODULES, ShapeError, TraceCache, UnsupportedOpError, extract_cg

__all__ = [
    "FEATURIZER_VERSION",
    "FLOPS_CONVENTIONS",
    "LEAF_MODULES",
    "OPS",
    "OP_INDEX",
    "VOCAB_VERSION",
    "ComputationGraph",
    "GraphError",
    "ShapeError",
    "TraceCache",
    "UnsupportedOpError",
    "count_flops",
    "count_params",
    "extract_cg",
    "from_networkx",
    "from_pyg",
    "node_features",
    "op_index",
]
