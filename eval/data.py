"""What a predictor sees: :class:`ArchSet`, a sequence of computation graphs with table views.

A predictor's ``fit``/``predict`` receive an :class:`ArchSet`. It *is* a
``Sequence[ComputationGraph]`` (graphs are built lazily, in order), and it also offers the same
architectures as a pyarrow table (:meth:`ArchSet.table`), as plain records
(:meth:`ArchSet.records`: arch_id, config, flops, params) or as one column
(:meth:`ArchSet.column`), so a predictor that needs no graphs never pays for building them.

Labels never reach a predictor: an :class:`ArchSet` stands on a :class:`FeatureSource`, which
holds a copy of the family's feature columns only (read once per column); no label column, and
no handle on the dataset that has them, is reachable from it, not even through private
attributes. The harness reads labels through :class:`DataSource`, which predictors never get.
(``module:Class`` predictors run in a worker process that never receives label columns at all;
see :mod:`cgbench.eval.worker`.)

Any object with the store's interface can be evaluated (``manifest``, ``len()``,
``table(columns)``, ``graphs(indices)``); :class:`TableDataset` wraps an in-memory table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, overload, runtime_checkable

import numpy as np
import pyarrow as pa

from cgbench.benchmarks.schema import GRAPH_COLUMNS, records_to_table
from cgbench.cg.graph import ComputationGraph
from cgbench.eval.validation import EvalError
from cgbench.loaders.base import ArchRecord, Family

__all__ = [
    "Dataset",
    "TableDataset",
    "DataSource",
    "FeatureSource",
    "ArchSet",
    "HiddenColumnError",
    "UnknownColumnError",
]

_GRAPH_CHUNK = 1024


class _ColumnError(EvalError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class HiddenColumnError(_ColumnError):
    """A predictor asked for a label column, which is hidden from predictors."""


class UnknownColumnError(_ColumnError):
    """A predictor asked for a column the family's store does not have (e.g. ``zc:nwot`` on a
    family without that proxy); the message lists the columns it does have."""


@runtime_checkable
class Dataset(Protocol):
    """The store's interface (``cgbench.benchmarks.store.open_dataset`` returns one)."""

    manifest: Mapping[str, Any]

    def __len__(self) -> int: ...

    def table(self, columns: Sequence[str] | None = None) -> pa.Table: ...

    def graphs(self, indices: Sequence[int] | None = None) -> list[ComputationGraph]: ...


class TableDataset:
    """A dataset held in memory: a pyarrow table in the store's schema, with optional graphs.

    Use it to evaluate on data that is not in the store (see :meth:`from_records`).

    ``graphs``, when given, are returned by :meth:`graphs` (one per row); otherwise graphs are
    built from the ``node_*``/``edge_index``/``input_shape`` columns.
    """

    def __init__(
        self,
        table: pa.Table,
        graphs: Sequence[ComputationGraph] | None = None,
        *,
        manifest: Mapping[str, Any] | None = None,
    ) -> None:
        if graphs is not None and len(graphs) != table.num_rows:
            raise ValueError(f"{len(graphs)} graphs for a table of {table.num_rows} rows")
        self._table = table
        self._graphs = list(graphs) if graphs is not None else None
        self.manifest = dict(manifest or {})

    def __len__(self) -> int:
        return self._table.num_rows

    @property
    def schema(self) -> pa.Schema:
        return self._table.schema

    def table(self, columns: Sequence[str] | None = None) -> pa.Table:
        return self._table if columns is None else self._table.select(list(columns))

    def given_graphs(self) -> list[ComputationGraph] | None:
        """The graphs given at construction (None: built from the graph columns)."""
        return None if self._graphs is None else list(self._graphs)

    def graphs(self, indices: Sequence[int] | None = None) -> list[ComputationGraph]:
        idx = range(len(self)) if indices is None else [int(i) for i in indices]
        if self._graphs is not None:
            return [self._graphs[i] for i in idx]
        from cgbench.benchmarks.store import graphs_from_table

        cols = [*GRAPH_COLUMNS, *(["params"] if "params" in self._table.column_names else [])]
        return graphs_from_table(self._table.select(cols).take(pa.array(list(idx), pa.int64())))

    @classmethod
    def from_records(
        cls,
        family: Family,
        records: Sequence[ArchRecord],
        graphs: Sequence[ComputationGraph],
        *,
        manifest: Mapping[str, Any] | None = None,
    ) -> TableDataset:
        """An in-memory dataset in the store's schema, from loader records and their graphs
        (what ``cgbench build`` would write, without files)."""
        table = records_to_table(family, records, graphs)
        return cls(table, graphs, manifest=manifest or {"family": family.name, "rows": len(records)})


def column_names(dataset: Dataset) -> list[str]:
    """The column names of ``dataset`` (from its schema when it has one)."""
    schema = getattr(dataset, "schema", None)
    if callable(schema):
        schema = schema()
    if isinstance(schema, pa.Schema):
        return list(schema.names)
    return list(dataset.table().schema.names)


class DataSource:
    """The harness's handle on one opened family: its dataset (labels included), arch ids and
    column cache (each column is read from the dataset at most once). Never given to a
    predictor: predictors get :class:`ArchSet` views of :meth:`features`."""

    def __init__(self, dataset: Dataset, family: str, hidden: frozenset[str]) -> None:
        self.dataset = dataset
        self.family = family
        self.hidden = frozenset(hidden)
        self._columns: dict[str, pa.ChunkedArray] = {}
        self._features: FeatureSource | None = None
        self._index: dict[str, int] | None = None
        self.column_names: list[str] = column_names(dataset)
        self.arch_ids: list[str] = self.raw_column("arch_id").to_pylist()

    def __len__(self) -> int:
        return len(self.arch_ids)

    @property
    def visible_columns(self) -> list[str]:
        return [c for c in self.column_names if c not in self.hidden]

    def raw_column(self, name: str) -> pa.ChunkedArray:
        """A column including hidden ones (the harness reads labels through this)."""
        if name not in self._columns:
            self._read([name])
        return self._columns[name]

    def _read(self, names: Sequence[str]) -> None:
        todo = [c for c in dict.fromkeys(names) if c not in self._columns]
        if todo:
            table = self.dataset.table(columns=todo)
            self._columns.update({c: table.column(c) for c in todo})

    def features(self) -> FeatureSource:
        """The label-free view predictors see (built once: one read of each visible column)."""
        if self._features is None:
            visible = self.visible_columns
            self._read(visible)
            table = pa.table({c: self._columns[c] for c in visible})
            given = getattr(self.dataset, "given_graphs", None)
            graphs = given() if callable(given) else None
            stored = set(GRAPH_COLUMNS) <= set(self.column_names)
            if graphs is None and stored and not set(GRAPH_COLUMNS) <= set(visible):
                graphs = self.dataset.graphs(list(range(len(self))))  # graph columns hidden: decode here
            self._features = FeatureSource(self.family, table, graphs, hidden=self.hidden)
        return self._features

    def rows_of(self, arch_ids: Sequence[str]) -> np.ndarray:
        """Row positions of ``arch_ids``."""
        if self._index is None:
            self._index = {a: i for i, a in enumerate(self.arch_ids)}
        index = self._index
        return np.fromiter((index[a] for a in arch_ids), np.int64, len(arch_ids))

    def all(self) -> ArchSet:
        return self.features().all()

    def subset(self, arch_ids: Sequence[str]) -> ArchSet:
        return self.features().subset(arch_ids)


class FeatureSource:
    """One family's feature columns (no label column) and its computation graphs, in memory.

    ``table`` must hold ``arch_id``; a column named in ``hidden`` or any training outcome (see
    :func:`cgbench.benchmarks.tasks.is_label_column`) is refused. ``hidden`` only names the
    store's label columns (for the error message); their values are never here. ``columns``
    lists every feature column when ``table`` holds only some of them: the others are asked
    for through :meth:`_load` (the worker process fetches them from the harness).
    """

    def __init__(
        self,
        family: str,
        table: pa.Table,
        graphs: Sequence[ComputationGraph] | None = None,
        *,
        hidden: Iterable[str] = (),
        columns: Sequence[str] | None = None,
    ) -> None:
        from cgbench.benchmarks.tasks import is_label_column

        self.hidden = frozenset(hidden)
        names = list(columns) if columns is not None else list(table.column_names)
        leaked = [c for c in names if c in self.hidden or is_label_column(c)]
        if leaked:
            raise ValueError(f"a feature table cannot hold label column(s) {', '.join(leaked)}")
        if graphs is not None and len(graphs) != table.num_rows:
            raise ValueError(f"{len(graphs)} graphs for a table of {table.num_rows} rows")
        self.family = family
        self._columns: dict[str, pa.ChunkedArray] = {c: table.column(c) for c in table.column_names}
        self.column_names: list[str] = names
        self.arch_ids: list[str] = table.column("arch_id").to_pylist()
        self._graphs: dict[int, ComputationGraph] = {} if graphs is None else dict(enumerate(graphs))
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.arch_ids)

    def _load(self, names: Sequence[str]) -> dict[str, pa.ChunkedArray]:
        raise UnknownColumnError(f"no column(s) {', '.join(names)} in family {self.family!r}")

    def raw_column(self, name: str) -> pa.ChunkedArray:
        """A feature column; a label column raises :class:`HiddenColumnError`."""
        self._ensure([name])
        return self._columns[name]

    def _ensure(self, names: Sequence[str]) -> None:
        from cgbench.benchmarks.tasks import is_label_column

        for name in names:
            if name not in self.column_names:
                if name in self.hidden or is_label_column(name):
                    raise HiddenColumnError(
                        f"column {name!r} is a label and hidden from predictors; fit() receives "
                        "the training labels as its second argument"
                    )
                raise UnknownColumnError(f"no column {name!r} in family {self.family!r} (this store)")
        todo = [c for c in names if c not in self._columns]
        if todo:
            self._columns.update(self._load(todo))

    def graphs(self, rows: Sequence[int]) -> list[ComputationGraph]:
        """The graphs at ``rows``, built once each (vectorised over the graph columns)."""
        todo = sorted({int(r) for r in rows if int(r) not in self._graphs})
        if todo:
            from cgbench.benchmarks.store import graphs_from_table

            names = [*GRAPH_COLUMNS, *(["params"] if "params" in self.column_names else [])]
            self._ensure(names)
            part = pa.table({c: self._columns[c] for c in names}).take(pa.array(todo, pa.int64()))
            self._graphs.update(zip(todo, graphs_from_table(part), strict=True))
        return [self._graphs[int(r)] for r in rows]

    def all(self) -> ArchSet:
        return ArchSet(self, np.arange(len(self)))

    def rows_of(self, arch_ids: Sequence[str]) -> np.ndarray:
        if self._index is None:
            self._index = {a: i for i, a in enumerate(self.arch_ids)}
        index = self._index
        return np.fromiter((index[a] for a in arch_ids), np.int64, len(arch_ids))

    def subset(self, arch_ids: Sequence[str]) -> ArchSet:
        return ArchSet(self, self.rows_of(arch_ids))


def _similar_columns(name: str, columns: Sequence[str], show: int = 20) -> str:
    """The visible columns sharing ``name``'s prefix (``zc_`` for ``zc_nwot``), or all of them."""
    prefix = name.split("_", 1)[0] + "_"
    similar = [c for c in columns if c.startswith(prefix)] if "_" in name else []
    shown = similar or list(columns)
    text = ", ".join(shown[:show]) + (f", ... ({len(shown) - show} more)" if len(shown) > show else "")
    return f"columns starting with {prefix!r}: {text}" if similar else f"available: {text}"


class ArchSet(Sequence[ComputationGraph]):
    """Architectures handed to a predictor: a sequence of graphs plus table/record views."""

    def __init__(self, source: FeatureSource, rows: np.ndarray) -> None:
        self._source = source
        self._rows = np.asarray(rows, dtype=np.int64)

    # -- identity
    @property
    def family(self) -> str:
        return self._source.family

    @property
    def arch_ids(self) -> list[str]:
        ids = self._source.arch_ids
        return [ids[r] for r in self._rows.tolist()]

    @property
    def row_indices(self) -> np.ndarray:
        """Row positions of these architectures in the family's store."""
        return self._rows.copy()

    @property
    def family_arch_ids(self) -> list[str]:
        """Every arch id of the family (not only this set)."""
        return self._source.arch_ids

    def family_set(self) -> ArchSet:
        """Every architecture of the family (features only, like this set)."""
        return self._source.all()

    @property
    def columns(self) -> list[str]:
        """The columns a predictor may read (labels excluded)."""
        return list(self._source.column_names)

    # -- sequence of graphs
    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, i: int) -> ComputationGraph: ...

    @overload
    def __getitem__(self, i: slice) -> ArchSet: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ArchSet(self._source, self._rows[i])
        if isinstance(i, (list, np.ndarray)):
            return ArchSet(self._source, self._rows[np.asarray(i)])
        return self._source.graphs([self._rows[i]])[0]

    def __iter__(self) -> Iterator[ComputationGraph]:
        rows = self._rows.tolist()
        for start in range(0, len(rows), _GRAPH_CHUNK):
            yield from self._source.graphs(rows[start : start + _GRAPH_CHUNK])

    def graphs(self) -> list[ComputationGraph]:
        """All graphs, in order."""
        return self._source.graphs(self._rows.tolist())

    # -- table views
    def _check_visible(self, names: Sequence[str]) -> None:
        hidden = [c for c in names if c in self._source.hidden]
        if hidden:
            raise HiddenColumnError(
                f"column(s) {', '.join(map(repr, hidden))} are labels and hidden from "
                "predictors; fit() receives the training labels as its second argument"
            )
        unknown = [c for c in names if c not in self._source.column_names]
        if unknown:
            raise UnknownColumnError(
                f"no column {', '.join(map(repr, unknown))} in family {self.family!r} (this store); "
                + _similar_columns(unknown[0], self.columns)
            )

    def table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """These architectures as a pyarrow table (all visible columns, or ``columns``)."""
        names = self.columns if columns is None else list(columns)
        self._check_visible(names)
        rows = self._rows
        if len(rows) == len(self._source) and np.array_equal(rows, np.arange(len(rows))):
            return pa.table({c: self._source.raw_column(c) for c in names})  # every row, in order
        take = pa.array(rows)
        return pa.table({c: self._source.raw_column(c).take(take) for c in names})

    def column(self, name: str) -> np.ndarray:
        """One visible column as a NumPy array (nulls become NaN for numbers)."""
        self._check_visible([name])
        col = self._source.raw_column(name).take(pa.array(self._rows))
        if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
            return col.to_numpy(zero_copy_only=False).astype(np.float64)
        return np.asarray(col.to_pylist(), dtype=object)

    def records(self) -> list[dict[str, Any]]:
        """One dict per architecture: ``arch_id``, ``config`` (parsed JSON), ``flops``,
        ``params``."""
        tab = self.table(["arch_id", "config", "flops", "params"]).to_pylist()
        for rec in tab:
            if isinstance(rec["config"], str):
                rec["config"] = json.loads(rec["config"])
        return tab

    def __repr__(self) -> str:
        return f"ArchSet(family={self.family!r}, n={len(self)})"
