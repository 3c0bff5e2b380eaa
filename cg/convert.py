"""Conversions of a :class:`ComputationGraph`: node features, PyTorch Geometric, NetworkX, graphviz."""

from __future__ import annotations

import numpy as np

from cgbench.cg.graph import ComputationGraph
from cgbench.cg.ops import OPS, VOCAB_VERSION

FEATURIZER_VERSION = "feat/1"
# feat/1: one-hot op (len(OPS)) | res / (256,256,256,256,512,512) | weight / (512,512,7,7) | bias
_RES_SCALE = np.array([256, 256, 256, 256, 512, 512], dtype=np.float32)
_WEIGHT_SCALE = np.array([512, 512, 7, 7], dtype=np.float32)
NUM_NODE_FEATURES = len(OPS) + 6 + 4 + 1


def node_features(ops: np.ndarray, res: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Featuriser ``feat/1`` on (possibly concatenated) node arrays -> float32 ``(n, 52)``.

    GENNAPE's normalisation: H and W by 256, channels by 512; kernels by 7 (its largest kernel).
    """
    n, k = len(ops), len(OPS)
    x = np.zeros((n, NUM_NODE_FEATURES), dtype=np.float32)
    x.reshape(-1)[np.arange(n, dtype=np.intp) * NUM_NODE_FEATURES + ops] = 1.0  # one flat scatter
    # written in place (no float64 temporaries); the same float64 division, rounded to float32
    np.divide(res, _RES_SCALE, out=x[:, k : k + 6], casting="unsafe")
    np.divide(weight, _WEIGHT_SCALE, out=x[:, k + 6 : k + 10], casting="unsafe")
    x[:, -1] = bias
    return x


def to_pyg(cg: ComputationGraph, y: float | None = None):
    """``torch_geometric.data.Data(x, edge_index, y, op)`` with ``feat/1`` features."""
    import torch
    from torch_geometric.data import Data

    data = Data(
        x=torch.from_numpy(node_features(cg.ops, cg.res, cg.weight, cg.bias)),
        edge_index=torch.from_numpy(cg.edges.T.astype(np.int64).copy()),
        op=torch.from_numpy(cg.ops.astype(np.int64)),
    )
    if y is not None:
        data.y = torch.tensor([float(y)], dtype=torch.float32)
    return data


def from_pyg(data, input_shape) -> ComputationGraph:
    """Inverse of :func:`to_pyg` (features ``feat/1``)."""
    x = data.x.numpy()
    k = len(OPS)
    return ComputationGraph.from_arrays(
        ops=x[:, :k].argmax(axis=1),
        res=np.rint(x[:, k : k + 6] * _RES_SCALE),
        weight=np.rint(x[:, k + 6 : k + 10] * _WEIGHT_SCALE),
        bias=x[:, -1] > 0.5,
        edges=data.edge_index.numpy().T,
        input_shape=input_shape,
    )


def to_networkx(cg: ComputationGraph):
    """``networkx.DiGraph``; node attributes ``op``, ``res``, ``weight``, ``bias``."""
    import networkx as nx

    g = nx.DiGraph(input_shape=cg.input_shape, vocab_version=cg.vocab_version)
    for i, (op, r, w, b) in enumerate(
        zip(cg.op_names, cg.res.tolist(), cg.weight.tolist(), cg.bias.tolist())
    ):
        g.add_node(i, op=op, res=tuple(r), weight=tuple(w), bias=bool(b))
    g.add_edges_from(map(tuple, cg.edges.tolist()))
    return g


def from_networkx(g) -> ComputationGraph:
    """Inverse of :func:`to_networkx`; nodes are renumbered in a topological order."""
    import networkx as nx

    order = list(nx.lexicographical_topological_sort(g))
    index = {node: i for i, node in enumerate(order)}
    attrs = [g.nodes[node] for node in order]
    if g.graph.get("vocab_version", VOCAB_VERSION) != VOCAB_VERSION:
        raise ValueError(f"graph uses vocabulary {g.graph['vocab_version']}, not {VOCAB_VERSION}")
    return ComputationGraph.from_op_names(
        [a["op"] for a in attrs],
        [a["res"] for a in attrs],
        [a.get("weight", (0, 0, 0, 0)) for a in attrs],
        [a.get("bias", False) for a in attrs],
        [(index[s], index[d]) for s, d in g.edges()],
        g.graph["input_shape"],
    )


def to_dot(cg: ComputationGraph, name: str = "cg"):
    """A ``graphviz.Digraph`` drawing: one box per node labelled with op and output size."""
    import graphviz

    dot = graphviz.Digraph(name=name, graph_attr={"rankdir": "TB"}, node_attr={"shape": "box"})
    for i, (op, r, w) in enumerate(zip(cg.op_names, cg.res.tolist(), cg.weight.tolist())):
        label = f"{op}\\n{r[1]}x{r[3]}x{r[5]}"
        if w[2]:
            label += f"\\nk{w[2]}x{w[3]}"
        dot.node(str(i), label)
    for s, d in cg.edges.tolist():
        dot.edge(str(s), str(d))
    return dot
