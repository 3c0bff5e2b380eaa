"""The unified Arrow schema ``cg/1`` and the conversion of CGs + records to Arrow columns.

One row per architecture. Base columns (every family):

| column | type | meaning |
|---|---|---|
| schema_version | string | ``cg/1`` |
| family, arch_id | string | family name; the family's canonical id |
| cg_hash | string | :meth:`ComputationGraph.cg_hash` (equal for the same network) |
| config | string | upstream architecture description, JSON |
| input_shape | list<int32> | C, H, W |
| node_op | list<string> | op name per node (vocabulary ``ops/1``), dictionary-encoded in Parquet |
| node_res | list<fixed_size_list<int32, 6>> | H_in, H_out, W_in, W_out, C_in, C_out |
| node_weight | list<fixed_size_list<int32, 4>> | C_in, C_out, k1, k2 (see ``cg.graph``) |
| node_bias | list<bool> | bias (conv/linear) or affine (norm) flag |
| edge_index | list<fixed_size_list<int32, 2>> | src, dst; nodes in topological order |
| num_nodes, num_edges | int32 | sizes |
| accuracy | float64 | the family's primary label, a fraction |
| dataset | string | the primary label's dataset |
| flops | float64 | cgbench FLOPs: MACs of conv/depthwise/linear per image |
| params | float64 | trainable parameters, each tensor once (recorded when the CG was traced) |

then the family's float label columns and its tag columns (``Family.label_columns`` /
``Family.tag_columns``), in declaration order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from cgbench.cg import OPS, ComputationGraph
from cgbench.cg.counting import params_and_macs
from cgbench.cg.graph import cg_hashes
from cgbench.loaders.base import ArchRecord, Family

SCHEMA_VERSION = "cg/1"

_ARROW_TYPES = {"string": pa.string(), "bool": pa.bool_(), "int64": pa.int64()}

BASE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("schema_version", pa.string()),
    pa.field("family", pa.string()),
    pa.field("arch_id", pa.string()),
    pa.field("cg_hash", pa.string()),
    pa.field("config", pa.string()),
    pa.field("input_shape", pa.list_(pa.int32())),
    pa.field("node_op", pa.list_(pa.string())),
    pa.field("node_res", pa.list_(pa.list_(pa.int32(), 6))),
    pa.field("node_weight", pa.list_(pa.list_(pa.int32(), 4))),
    pa.field("node_bias", pa.list_(pa.bool_())),
    pa.field("edge_index", pa.list_(pa.list_(pa.int32(), 2))),
    pa.field("num_nodes", pa.int32()),
    pa.field("num_edges", pa.int32()),
    pa.field("accuracy", pa.float64()),
    pa.field("dataset", pa.string()),
    pa.field("flops", pa.float64()),
    pa.field("params", pa.float64()),
)
BASE_COLUMNS = tuple(f.name for f in BASE_FIELDS)
#: the columns one computation graph is decoded from (``store.graphs_from_table``, eval's ArchSet)
GRAPH_COLUMNS = ("node_op", "node_res", "node_weight", "node_bias", "edge_index", "input_shape")


def family_schema(family: Family) -> pa.Schema:
    """The full ``cg/1`` schema of ``family``: base columns, labels, tags."""
    fields = list(BASE_FIELDS)
    fields += [pa.field(name, pa.float64()) for name in family.label_columns]
    fields += [pa.field(name, _ARROW_TYPES[kind]) for name, (kind, _) in family.tag_columns.items()]
    names = [f.name for f in fields]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise ValueError(f"family {family.name}: columns {sorted(duplicated)} declared twice")
    return pa.schema(fields, metadata={"schema_version": SCHEMA_VERSION, "family": family.name})


def _nested(flat: np.ndarray, width: int, counts: Sequence[int], value_type: pa.DataType) -> pa.Array:
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    values = pa.array(flat.reshape(-1), type=value_type)
    inner = pa.FixedSizeListArray.from_arrays(values, width) if width else values
    return pa.ListArray.from_arrays(pa.array(offsets), inner)


_OP_NAMES = np.array(OPS, dtype=object)


def records_to_table(
    family: Family, records: Sequence[ArchRecord], graphs: Sequence[ComputationGraph]
) -> pa.Table:
    """Arrow table (schema :func:`family_schema`) of ``records`` and their extracted ``graphs``."""
    schema = family_schema(family)
    n_nodes = [g.num_nodes for g in graphs]
    n_edges = [g.num_edges for g in graphs]
    ops = np.concatenate([g.ops for g in graphs])
    params, macs = params_and_macs(graphs)  # = g.params(), g.flops() ("macs"), batched
    columns: dict[str, pa.Array] = {
        "schema_version": pa.array([SCHEMA_VERSION] * len(records)),
        "family": pa.array([family.name] * len(records)),
        "arch_id": pa.array([r.arch_id for r in records]),
        "cg_hash": pa.array(cg_hashes(graphs)),
        "config": pa.array([r.config_json() for r in records]),
        "input_shape": pa.array(
            [list(r.input_shape or family.input_shape) for r in records], pa.list_(pa.int32())
        ),
        "node_op": pa.ListArray.from_arrays(
            pa.array(np.concatenate([[0], np.cumsum(n_nodes)]).astype(np.int32)),
            pa.array(_OP_NAMES[ops], pa.string()),
        ),
        "node_res": _nested(np.concatenate([g.res for g in graphs]), 6, n_nodes, pa.int32()),
        "node_weight": _nested(np.concatenate([g.weight for g in graphs]), 4, n_nodes, pa.int32()),
        "node_bias": _nested(np.concatenate([g.bias for g in graphs]), 0, n_nodes, pa.bool_()),
        "edge_index": _nested(np.concatenate([g.edges for g in graphs]), 2, n_edges, pa.int32()),
        "num_nodes": pa.array(n_nodes, pa.int32()),
        "num_edges": pa.array(n_edges, pa.int32()),
        "accuracy": pa.array([r.labels.get("accuracy") for r in records], pa.float64()),
        "dataset": pa.array([family.dataset] * len(records)),
        "flops": pa.array(macs, pa.float64()),
        "params": pa.array([float(p) for p in params], pa.float64()),
    }
    for name in family.label_columns:
        columns[name] = pa.array([r.labels.get(name) for r in records], pa.float64())
    for name, (kind, _) in family.tag_columns.items():
        columns[name] = pa.array([r.tags.get(name) for r in records], _ARROW_TYPES[kind])
    return pa.table([columns[f.name] for f in schema], schema=schema)


def graph_from_row(row: dict) -> ComputationGraph:
    """A :class:`ComputationGraph` from one row (as ``pyarrow.Table.to_pylist()`` gives it)."""
    return ComputationGraph.from_op_names(
        row["node_op"],
        row["node_res"],
        row["node_weight"],
        row["node_bias"],
        row["edge_index"],
        row["input_shape"],
        num_params=None if row.get("params") is None else round(row["params"]),
    )
