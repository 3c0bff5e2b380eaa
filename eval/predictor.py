"""The predictor protocol, loading predictors by name, and predictions files.

A predictor is any object with ``predict(graphs) -> np.ndarray`` (one score per architecture,
higher = predicted better). Optionally:

- ``fit(graphs, labels)``: called with the training architectures and their labels (fractions)
  when the task has training data; a ``fit`` that also accepts ``valid_graphs`` and
  ``valid_labels`` keywords receives the validation split too (in-family and transfer tasks);
- ``fine_tune(graphs, labels)``: called after ``fit`` on the source family, with the target
  sample of fine-tune tasks (without it, ``fit`` is called on the target sample alone);
- class attributes ``requires_fit`` (refuse tasks without training data), ``deterministic``
  (the seed changes nothing: predict once) and ``predicts_label`` (scores are accuracies
  as fractions, so MAE is meaningful).

``graphs`` is an :class:`~cgbench.eval.data.ArchSet`: a sequence of
:class:`~cgbench.cg.graph.ComputationGraph` that also offers ``.table()``, ``.records()``,
``.column(name)`` and ``.arch_ids``. Predictors are created once per seed: a class whose
constructor takes ``seed`` (or ``random_state``) receives it.

:func:`load_predictor` resolves a CLI spec: a built-in name (``random``, ``flops``, ``params``,
``zc:synflow``, ``column:NAME``, ``summary-rf``), ``module:Class`` (the user's code: it runs in
a separate worker process, :mod:`cgbench.eval.worker`, that receives feature columns and the
fit labels only; ``module`` is imported with the current directory first on ``sys.path``, as
``python -m`` does, so ``mypred:MyPred`` finds ``./mypred.py``), or a predictions file
(``.parquet`` / ``.csv`` with columns ``arch_id, score``
and optionally ``seed``).

Creating a predictor (its constructor) that fails raises :class:`PredictorError` naming the class
and the original error.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cgbench.eval.data import ArchSet
from cgbench.eval.validation import EvalError, align_to_ids, preview

__all__ = [
    "Predictor",
    "BasePredictor",
    "PredictorError",
    "PredictorSpec",
    "PredictionsFile",
    "load_predictor",
    "predictor_spec",
    "read_predictions",
]

PREDICTION_SUFFIXES = (".parquet", ".pq", ".csv")


class PredictorError(EvalError, ValueError):
    """A predictor that cannot be loaded or used; the message says which and why."""


@runtime_checkable
class Predictor(Protocol):
    """The one required method: a score per architecture, higher = predicted better."""

    def predict(self, graphs: ArchSet) -> np.ndarray: ...


class BasePredictor:
    """Convenience base class: a no-op ``fit`` and the optional attributes with defaults."""

    requires_fit: ClassVar[bool] = False
    deterministic: ClassVar[bool] = False
    predicts_label: ClassVar[bool] = False

    def fit(self, graphs: ArchSet, labels: np.ndarray) -> BasePredictor:
        """Learn from ``graphs`` and their ``labels``; training-free predictors ignore it."""
        return self

    def predict(self, graphs: ArchSet) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class PredictorSpec:
    """A named way to create a predictor for a seed: ``factory(seed) -> predictor``."""

    name: str
    factory: Callable[[int], Any]
    deterministic: bool = False  # every seed gives the same predictions: run once
    requires_fit: bool = False
    predicts_label: bool = False
    source: str = "builtin"  # "builtin" | "class" | "file"

    def make(self, seed: int) -> Any:
        """A new predictor for ``seed``; a failing factory raises :class:`PredictorError`."""
        try:
            predictor = self.factory(seed)
        except EvalError:
            raise
        except Exception as err:
            raise PredictorError(
                f"predictor {self.name!r}: creating it failed: {type(err).__name__}: {err}"
            ) from err
        if not callable(getattr(predictor, "predict", None)):
            raise PredictorError(
                f"predictor {self.name!r}: {type(predictor).__name__} has no predict(graphs) method"
            )
        return predictor


def _seed_keyword(target: Callable) -> str | None:
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return None
    for key in ("seed", "random_state"):
        if key in params:
            return key
    return None


def predictor_spec(target: Callable[..., Any], name: str | None = None) -> PredictorSpec:
    """A :class:`PredictorSpec` for a predictor class (or factory callable).

    The seed is passed as ``seed=`` or ``random_state=`` when the constructor takes one; the
    class attributes ``deterministic``, ``requires_fit`` and ``predicts_label`` are honoured.
    """
    key = _seed_keyword(target)
    label = name or getattr(target, "__name__", repr(target))
    qualname = getattr(target, "__qualname__", None) or repr(target)

    def factory(seed: int) -> Any:
        kwargs = {key: seed} if key else {}
        try:
            return target(**kwargs)
        except EvalError:
            raise
        except Exception as err:
            call = f"{qualname}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
            raise PredictorError(
                f"predictor {label!r}: {call} failed: {type(err).__name__}: {err} (the harness "
                "creates predictors with no arguments, or only seed= / random_state=)"
            ) from err

    attr = lambda a: bool(getattr(target, a, False))  # noqa: E731
    return PredictorSpec(
        name=label,
        factory=factory,
        deterministic=attr("deterministic"),
        requires_fit=attr("requires_fit"),
        predicts_label=attr("predicts_label"),
        source="class",
    )


def _import_target(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:  # as `python -m`: ./mypred.py is importable
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise PredictorError(f"predictor {spec!r}: cannot import module {module_name!r} ({err})") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise PredictorError(f"predictor {spec!r}: module {module_name!r} has no {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise PredictorError(f"predictor {spec!r}: {attr!r} is not a class or callable")
    return target


# ---------------------------------------------------------------------------- predictions files
def _read_csv(path: Path) -> pa.Table:
    import pyarrow.csv as pacsv

    with open(path, newline="") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise PredictorError(f"predictions file {path}: empty (no header line arch_id,score[,seed])")
    names = [h.strip() for h in header]  # "arch_id, score" is common
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
        convert_options=pacsv.ConvertOptions(column_types={"arch_id": pa.string()}),
    )
    if "arch_id" in table.column_names:
        trimmed = pc.utf8_trim_whitespace(table.column("arch_id"))
        table = table.set_column(table.column_names.index("arch_id"), "arch_id", trimmed)
    return table


def read_predictions(path: str | Path) -> pa.Table:
    """A predictions file as a table with ``arch_id`` (string), ``score`` (float64) and, when
    present, ``seed`` (int64). Raises :class:`PredictorError` naming the file and problem.

    CSV column names are stripped of surrounding spaces (``arch_id, score``); a Parquet path may
    be a directory of Parquet files. Boolean scores and rows without a seed (in a file with a
    ``seed`` column) are errors."""
    path = Path(path)
    is_csv = path.suffix.lower() == ".csv"
    if not (path.is_file() or (path.is_dir() and not is_csv)):
        raise PredictorError(f"predictions file {path}: not found")
    try:
        if is_csv:
            table = _read_csv(path)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError, csv.Error) as err:
        raise PredictorError(f"predictions file {path}: unreadable ({err})") from None
    missing = [c for c in ("arch_id", "score") if c not in table.column_names]
    if missing:
        raise PredictorError(
            f"predictions file {path}: missing column(s) {', '.join(missing)}; found "
            f"{', '.join(table.column_names)}; expected arch_id, score[, seed]"
        )
    if table.num_rows == 0:
        raise PredictorError(f"predictions file {path}: no rows")
    for name in ("score", "seed"):
        if name in table.column_names and pa.types.is_boolean(table.column(name).type):
            raise PredictorError(f"predictions file {path}: column {name!r} is boolean; it must hold numbers")
    if "seed" in table.column_names and table.column("seed").null_count:
        rows = np.flatnonzero(table.column("seed").is_null().to_numpy(zero_copy_only=False))
        raise PredictorError(
            f"predictions file {path}: {len(rows)} row(s) without a seed (data rows "
            f"{preview((rows + 1).tolist())}); give every row a seed or drop the seed column"
        )
    cols = {"arch_id": table.column("arch_id").cast(pa.string())}
    try:
        cols["score"] = table.column("score").cast(pa.float64())
        if "seed" in table.column_names:
            cols["seed"] = table.column("seed").cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise PredictorError(f"predictions file {path}: non-numeric score or seed ({err})") from None
    return pa.table(cols)


class PredictionsFile(BasePredictor):
    """Scores computed elsewhere: looked up by ``arch_id`` in a Parquet or CSV file.

    A file may cover more architectures of the family than a task scores (e.g. the whole
    family for a subset task); ids outside the family, duplicated ids and evaluated
    architectures without a score are errors. With a ``seed`` column, each seed of the task
    reads its own rows.
    """

    def __init__(self, path: str | Path, seed: int | None = None, *, table: pa.Table | None = None):
        self.path = Path(path)
        table = table if table is not None else read_predictions(self.path)
        if "seed" in table.column_names:
            seeds = table.column("seed").to_numpy()
            if seed is None:
                raise PredictorError(f"predictions file {self.path}: has a seed column; pass seed")
            if not np.any(seeds == seed):
                raise PredictorError(
                    f"predictions file {self.path}: no rows for seed {seed} (seeds in file: "
                    f"{preview(sorted(set(seeds.tolist())), 10)})"
                )
            table = table.filter(pc.equal(table.column("seed"), seed))
        self._ids = table.column("arch_id").to_pylist()
        self._scores = table.column("score").to_numpy(zero_copy_only=False)

    def predict(self, graphs: ArchSet) -> np.ndarray:
        return align_to_ids(
            graphs.arch_ids,
            self._ids,
            self._scores,
            what=f"predictions file {self.path}",
            known_ids=graphs.family_arch_ids,
        )


def _file_spec(path: Path) -> PredictorSpec:
    table = read_predictions(path)
    seeded = "seed" in table.column_names
    return PredictorSpec(
        name=path.name,
        factory=lambda seed: PredictionsFile(path, seed if seeded else None, table=table),
        deterministic=not seeded,
        source="file",
    )


def load_predictor(spec: str | PredictorSpec) -> PredictorSpec:
    """Resolve ``spec``: a built-in name (see :data:`cgbench.eval.baselines.BUILTINS`), a
    predictions file path (``.parquet``/``.csv``), or ``module:Class``."""
    if isinstance(spec, PredictorSpec):
        return spec
    from cgbench.eval.baselines import builtin_names, builtin_predictor

    builtin = builtin_predictor(spec)
    if builtin is not None:
        return builtin
    path = Path(spec)
    if path.suffix.lower() in PREDICTION_SUFFIXES:
        return _file_spec(path)
    if ":" in spec and not path.exists():
        from cgbench.eval.worker import worker_spec

        return worker_spec(spec)  # the user's code, in a process that never sees a label
    raise PredictorError(
        f"unknown predictor {spec!r}: use a built-in ({', '.join(builtin_names())}), "
        "module:Class, or a predictions file (.parquet/.csv with arch_id, score)"
    )


def call_fit(predictor: Any, graphs: ArchSet, labels: np.ndarray, valid: tuple | None) -> None:
    """``predictor.fit(graphs, labels)``, adding ``valid_graphs``/``valid_labels`` when its
    ``fit`` accepts them and ``valid`` is given."""
    fit = getattr(predictor, "fit", None)
    if fit is None:
        return
    kwargs: dict[str, Any] = {}
    if valid is not None:
        try:
            params = inspect.signature(fit).parameters
        except (TypeError, ValueError):
            params = {}
        if "valid_graphs" in params and "valid_labels" in params:
            kwargs = {"valid_graphs": valid[0], "valid_labels": valid[1]}
    fit(graphs, labels, **kwargs)
