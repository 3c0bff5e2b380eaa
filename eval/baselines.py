"""Simple baselines: random, a stored column (FLOPs, params, zero-cost proxies), and a learned
regressor on computation-graph summary features.

Built-in predictor names (:func:`builtin_predictor`):

========================  ================================================================
``random``                uniform random scores (seeded): the floor every score is shown beside
``flops`` / ``params``    cgbench's FLOPs (MACs per image) / parameter count, from the CG
``zc:NAME``               the stored zero-cost proxy column ``zc_NAME`` (e.g. ``zc:synflow``)
``column:NAME``           any stored numeric column; ``column:-NAME`` ranks by its negation
                          (a non-numeric column is a ``ValidationError``)
``summary-rf``            random forest on op histogram + log FLOPs + log params + graph size
``kgnn`` ``gcn`` ``gin``  learned GNN predictors of a later stage (``cgbench.predictors``),
``gennape`` ``cgb-rank``  found by name through :data:`LEARNED` and imported only when used
========================  ================================================================

A column with missing values (e.g. NB-201's zero-cost proxies, computed on isomorphism-unique
architectures only) is filled from the architecture's representative named in ``unique_id``
when the store has that column; values still missing are an error at validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cgbench.cg.graph import ComputationGraph
from cgbench.cg.ops import OPS
from cgbench.eval.data import ArchSet
from cgbench.eval.predictor import BasePredictor, PredictorError, PredictorSpec, predictor_spec
from cgbench.eval.validation import ValidationError, preview

__all__ = [
    "RandomPredictor",
    "ColumnPredictor",
    "SummaryRegressor",
    "summary_features",
    "builtin_predictor",
    "builtin_names",
]

#: column naming the isomorphism representative whose values fill a missing column value
REPRESENTATIVE_COLUMN = "unique_id"


class RandomPredictor(BasePredictor):
    """Uniform random scores: ``seed`` and the number of architectures fix them."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def predict(self, graphs: Sequence) -> np.ndarray:
        return np.random.default_rng(self.seed).random(len(graphs))


class ColumnPredictor(BasePredictor):
    """Scores read from a stored column (``negate`` ranks by its negation)."""

    deterministic = True

    def __init__(self, column: str, *, negate: bool = False) -> None:
        self.column = column
        self.negate = negate

    def predict(self, graphs: ArchSet) -> np.ndarray:
        values = graphs.column(self.column)
        if values.dtype == object:  # ArchSet.column gives float64 for every numeric column
            kind = graphs.table([self.column]).schema.field(self.column).type
            raise ValidationError(
                f"column {self.column!r} of {graphs.family} holds {kind} values, not numbers; "
                "a column predictor needs a numeric column (integer or floating point)"
            )
        missing = np.isnan(values)
        has_reps = REPRESENTATIVE_COLUMN in graphs.columns
        if missing.any() and has_reps:
            values = self._fill_from_representatives(graphs, values, missing)
            missing = np.isnan(values)
        if missing.any():
            ids = [graphs.arch_ids[i] for i in np.flatnonzero(missing)]
            why = (
                f"their '{REPRESENTATIVE_COLUMN}' representatives have none either"
                if has_reps
                else f"the store has no '{REPRESENTATIVE_COLUMN}' column to fill them from"
            )
            raise ValidationError(
                f"column {self.column!r} of {graphs.family} has no value for {len(ids)} of "
                f"{len(values)} evaluated archs ({preview(ids)}); {why}; evaluate it on a "
                "subset where the column is complete"
            )
        return -values if self.negate else values

    def _fill_from_representatives(
        self, graphs: ArchSet, values: np.ndarray, missing: np.ndarray
    ) -> np.ndarray:
        family = graphs.family_set()
        by_id = dict(zip(family.arch_ids, family.column(self.column).tolist(), strict=True))
        reps = graphs.column(REPRESENTATIVE_COLUMN)
        filled = values.copy()
        for i in np.flatnonzero(missing):
            filled[i] = by_id.get(reps[i], np.nan) if reps[i] is not None else np.nan
        return filled


# ---------------------------------------------------------------------------- summary features
_EXTRA = ("log_flops", "log_params", "num_nodes", "num_edges")
FEATURE_NAMES: tuple[str, ...] = tuple(f"op_{o}" for o in OPS) + _EXTRA


def _features_from_table(graphs: ArchSet) -> np.ndarray:
    sizes = ["num_nodes", "num_edges"]
    stored_sizes = all(c in graphs.columns for c in sizes)
    table = graphs.table(["node_op", "flops", "params", *(sizes if stored_sizes else ["edge_index"])])
    ops = table.column("node_op").combine_chunks()
    flat = pc.list_flatten(ops)
    if pa.types.is_dictionary(flat.type):
        flat = flat.cast(pa.string())
    index = pc.index_in(flat, value_set=pa.array(OPS)).fill_null(0).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(ops).to_numpy(zero_copy_only=False)
    n = table.num_rows
    hist = np.bincount(parents * len(OPS) + index, minlength=n * len(OPS)).reshape(n, len(OPS))
    if stored_sizes:
        n_nodes, n_edges = (table.column(c).to_numpy() for c in sizes)
    else:
        n_nodes = pc.list_value_length(ops).to_numpy(zero_copy_only=False)
        n_edges = pc.list_value_length(table.column("edge_index")).to_numpy(zero_copy_only=False)

    def log1p(name: str) -> np.ndarray:
        return np.log1p(table.column(name).to_numpy(zero_copy_only=False).astype(np.float64))

    extra = np.column_stack([log1p("flops"), log1p("params"), n_nodes, n_edges])
    return np.hstack([hist.astype(np.float64), extra.astype(np.float64)])


def _features_from_graphs(graphs: Sequence[ComputationGraph]) -> np.ndarray:
    rows = [
        np.concatenate(
            [
                np.bincount(g.ops.astype(np.intp), minlength=len(OPS)),
                [np.log1p(g.flops()), np.log1p(g.params()), g.num_nodes, g.num_edges],
            ]
        )
        for g in graphs
    ]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))


def summary_features(graphs: Sequence[ComputationGraph]) -> np.ndarray:
    """(n, len(FEATURE_NAMES)) features: node count per op of the vocabulary, log(1 + FLOPs),
    log(1 + params), nodes, edges. An :class:`ArchSet` is read from its columns (fast);
    any other sequence of graphs is read graph by graph (same numbers)."""
    if isinstance(graphs, ArchSet):
        return _features_from_table(graphs)
    return _features_from_graphs(graphs)


class SummaryRegressor(BasePredictor):
    """Random-forest regression of the label on :func:`summary_features` (scikit-learn).

    ``fine_tune`` refits on the source data plus the target sample, the sample weighted so
    that both carry equal total weight.
    """

    requires_fit: ClassVar[bool] = True
    predicts_label: ClassVar[bool] = True

    def __init__(self, seed: int = 0, n_estimators: int = 100) -> None:
        self.seed = seed
        self.n_estimators = n_estimators
        self._model = None
        self._source: tuple[np.ndarray, np.ndarray] | None = None

    def _new_model(self):
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(
            n_estimators=self.n_estimators, min_samples_leaf=2, random_state=self.seed, n_jobs=-1
        )

    def fit(self, graphs: Sequence[ComputationGraph], labels: np.ndarray) -> SummaryRegressor:
        x, y = summary_features(graphs), np.asarray(labels, dtype=np.float64)
        self._model = self._new_model().fit(x, y)
        self._source = (x, y)
        return self

    def fine_tune(self, graphs: Sequence[ComputationGraph], labels: np.ndarray) -> SummaryRegressor:
        if self._source is None:
            return self.fit(graphs, labels)
        xs, ys = self._source
        xt, yt = summary_features(graphs), np.asarray(labels, dtype=np.float64)
        weight = np.concatenate([np.ones(len(ys)), np.full(len(yt), len(ys) / len(yt))])
        self._model = self._new_model().fit(np.vstack([xs, xt]), np.concatenate([ys, yt]), weight)
        return self

    def predict(self, graphs: Sequence[ComputationGraph]) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("SummaryRegressor.predict before fit")
        return self._model.predict(summary_features(graphs))


# ---------------------------------------------------------------------------- built-in names
def _column_spec(name: str, column: str, negate: bool = False) -> PredictorSpec:
    return PredictorSpec(
        name=name,
        factory=lambda seed: ColumnPredictor(column, negate=negate),
        deterministic=True,
    )


_FIXED = {
    "random": lambda: predictor_spec(RandomPredictor, name="random"),
    "flops": lambda: _column_spec("flops", "flops"),
    "params": lambda: _column_spec("params", "params"),
    "summary-rf": lambda: predictor_spec(SummaryRegressor, name="summary-rf"),
}


#: learned predictors of later stages, by name -> "module:attr" (imported lazily, so eval never
#: imports a later stage at module top)
LEARNED: dict[str, str] = {
    "kgnn": "cgbench.predictors.registry:kgnn",
    "gcn": "cgbench.predictors.registry:gcn",
    "gin": "cgbench.predictors.registry:gin",
    "gennape": "cgbench.predictors.registry:gennape",
    "cgb-rank": "cgbench.predictors.registry:cgb_rank",
}


def _learned_spec(name: str) -> PredictorSpec:
    import importlib

    module_name, _, attr = LEARNED[name].partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except ImportError as err:
        raise PredictorError(
            f"predictor {name!r} needs {module_name} ({err}); install cgbench with its predictors stage"
        ) from None
    return predictor_spec(target, name=name)


def builtin_names() -> list[str]:
    """Built-in predictor names and name patterns."""
    return [*_FIXED, "zc:NAME", "column:NAME", "column:-NAME", *LEARNED]


def builtin_predictor(spec: str) -> PredictorSpec | None:
    """The built-in predictor called ``spec``, or None if ``spec`` is not a built-in name."""
    if spec in _FIXED:
        return _FIXED[spec]()
    if spec in LEARNED:
        return _learned_spec(spec)
    prefix, _, rest = spec.partition(":")
    if prefix == "zc" and rest:
        return _column_spec(spec, f"zc_{rest}")
    if prefix == "column" and rest:
        negate = rest.startswith("-")
        return _column_spec(spec, rest.lstrip("-"), negate)
    return None
