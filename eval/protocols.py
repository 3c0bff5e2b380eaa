"""Evaluation protocols: in-family, zero-shot transfer and fine-tune-N, run the same way for
every predictor and every family.

:func:`prepare_task` opens the data of a task once (target family, optional source family),
applies the subset, reads the label, and fixes the architectures each stage sees:

==============  ===============================================  ============================
protocol        fit on                                           scored
==============  ===============================================  ============================
in-family       target train split (valid split offered)         target test split
zero-shot       source train split (valid offered), or nothing   every target arch
fine-tune-N     source train split, then ``fine_tune`` on the     every target arch outside
                N-arch target sample (no source: ``fit`` on it)   the sample
==============  ===============================================  ============================

Splits and samples follow the stored, checksummed rule of :mod:`cgbench.benchmarks.tasks`;
a store that is not the population the splits were frozen on (e.g. a ``--limit`` build, or the
full NB-101 tfrecord) gets the same rule on the archs it has, flagged ``official: false`` with
an :class:`UnofficialSplitWarning` saying how the store differs.
:func:`evaluate` runs predictors over the task's seeds and scores them beside the random
predictor of the same task.
"""

from __future__ import annotations

import hashlib
import logging
import random
import sys
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cgbench.benchmarks.tasks import (
    Task,
    TaskError,
    fine_tune_sample,
    in_family_split,
    is_label_column,
    load_split_file,
    parse_task,
    split_salt,
)
from cgbench.eval.data import ArchSet, Dataset, DataSource, column_names
from cgbench.eval.metrics import DEFAULT_METRICS, compute_metrics
from cgbench.eval.predictor import PredictorSpec, call_fit, load_predictor
from cgbench.eval.results import RunResult, files_sha256, manifest_sha256
from cgbench.eval.validation import EvalError, ValidationError, check_1d, check_scores

__all__ = [
    "ProtocolError",
    "UnofficialSplitWarning",
    "PreparedTask",
    "prepare_task",
    "evaluate",
    "run_predictor",
]


log = logging.getLogger(__name__)


class ProtocolError(EvalError, ValueError):
    """A predictor that cannot run under a task's protocol, or data a task cannot use."""


class UnofficialSplitWarning(UserWarning):
    """The store is not the population the splits were frozen on, so they are not official."""


@dataclass
class Labeled:
    """Architectures with their labels."""

    archs: ArchSet
    labels: np.ndarray


@dataclass
class PreparedTask:
    """The data of one task, opened once and shared by every predictor and seed."""

    task: Task
    target: DataSource
    scored: Labeled
    train: Labeled | None = None  # fit data (source train split, target sample, target train)
    valid: Labeled | None = None  # offered to fit(valid_graphs=, valid_labels=)
    fine_tune: Labeled | None = None  # target sample of fine-tune tasks with a source
    data: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)


def _open(family: str, root: str | Path | None, datasets: Mapping[str, Dataset] | None):
    if datasets is not None and family in datasets:
        return datasets[family]
    from cgbench.benchmarks.store import open_dataset

    return open_dataset(family, root=root)


def _source(dataset: Dataset, family: str, label: str) -> DataSource:
    names = column_names(dataset)
    if label not in names:
        labels = [c for c in names if is_label_column(c)]
        raise TaskError(
            f"{family}: the store has no label column {label!r}; label columns present: "
            f"{', '.join(labels) or '(none)'}"
        )
    return DataSource(dataset, family, frozenset(c for c in names if is_label_column(c)) | {label})


def _labels(src: DataSource, archs: ArchSet, column: str) -> np.ndarray:
    raw = src.raw_column(column).take(archs.row_indices)
    return check_1d(
        raw.to_numpy(zero_copy_only=False).astype(np.float64),
        f"labels {column!r} of {src.family}",
        ids=archs.arch_ids,
    )


def _digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def _eligible(task: Task, src: DataSource) -> list[str]:
    sub = task.subset_filter
    if sub is None:
        return list(src.arch_ids)
    if sub.column not in src.column_names:
        raise TaskError(f"{task.name}: the {task.family} store has no column {sub.column!r}")
    flags = src.raw_column(sub.column).to_pylist()
    return [a for a, f in zip(src.arch_ids, flags, strict=True) if f == sub.value]


def _official(
    family: str, ids: list[str], subset: str | None, what: str, manifest: Mapping | None
) -> tuple[bool, Any, str | None]:
    split_file = load_split_file(family)
    if split_file is None:
        official, why = (
            False,
            (
                f"no split file is frozen for {family}; splits follow the same rule on this store's "
                "archs (results are not comparable with official ones)"
            ),
        )
    else:
        official, why = split_file.check(ids, subset, manifest)
    if not official:
        warnings.warn(f"{what}: {why}", UnofficialSplitWarning, stacklevel=3)
    return official, split_file, why


def prepare_task(
    task: Task | str,
    *,
    root: str | Path | None = None,
    datasets: Mapping[str, Dataset] | None = None,
) -> PreparedTask:
    """Open the data of ``task`` and fix its fit / fine-tune / scored architectures.

    ``datasets`` maps family names to dataset objects (overriding the store, e.g. for
    in-memory data); other families are opened with ``open_dataset(family, root)``.
    """
    task = parse_task(task) if isinstance(task, str) else task
    target = _source(_open(task.family, root, datasets), task.family, task.label)
    eligible = _eligible(task, target)
    manifest = getattr(target.dataset, "manifest", None)
    official, split_file, why = _official(task.family, eligible, task.subset, task.name, manifest)
    prepared_split: dict[str, Any] = {"official": official, "rule": split_salt(task.family)}
    if why is not None:
        prepared_split["reason"] = why
    data = {
        "family": task.family,
        "manifest_sha256": manifest_sha256(target.dataset.manifest),
        "files_sha256": files_sha256(target.dataset.manifest),
        "n_family": len(target),
        "n_eligible": len(eligible),
    }
    train = valid = fine = None
    if task.protocol == "in-family":
        split = in_family_split(eligible, task.family)
        train = _labeled(target, split["train"], task.label)
        valid = _labeled(target, split["valid"], task.label)
        scored_ids = split["test"]
    elif task.protocol == "zero-shot":
        scored_ids = eligible
    else:
        sample = split_file.fine_tune_ids(task.subset, task.n_fine_tune) if official else None
        sample = sample or fine_tune_sample(eligible, task.family, task.n_fine_tune)
        in_sample = set(sample)
        scored_ids = [a for a in eligible if a not in in_sample]
        fine = _labeled(target, sample, task.label)
        prepared_split["fine_tune_sha256"] = _digest(sample)
    if task.source is not None:
        src = _source(_open(task.source, root, datasets), task.source, task.source_label)
        src_ids = list(src.arch_ids)
        src_manifest = getattr(src.dataset, "manifest", None)
        src_official, _, src_why = _official(
            task.source, src_ids, None, f"{task.name} (source)", src_manifest
        )
        split = in_family_split(src_ids, task.source)
        train = _labeled(src, split["train"], task.source_label)
        valid = _labeled(src, split["valid"], task.source_label)
        prepared_split["source_official"] = src_official
        if src_why is not None:
            prepared_split["source_reason"] = src_why
        data["source"] = task.source
        data["source_manifest_sha256"] = manifest_sha256(src.dataset.manifest)
        data["source_files_sha256"] = files_sha256(src.dataset.manifest)
    elif fine is not None:  # fine-tune without a source: the sample is the training data
        train, fine = fine, None
    scored = _labeled(target, scored_ids, task.label)
    if len(scored.labels) < 2:
        raise TaskError(f"{task.name}: only {len(scored.labels)} arch(s) to score")
    return PreparedTask(task, target, scored, train, valid, fine, data, prepared_split)


def _labeled(src: DataSource, ids: Sequence[str], column: str) -> Labeled:
    archs = src.subset(ids)
    return Labeled(archs, _labels(src, archs, column))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _predict_once(prep: PreparedTask, spec: PredictorSpec, seed: int, notes: set[str]) -> tuple:
    _seed_everything(seed)
    predictor = spec.make(seed)
    t0 = time.perf_counter()
    if prep.train is not None:
        valid = None if prep.valid is None else (prep.valid.archs, prep.valid.labels)
        call_fit(predictor, prep.train.archs, prep.train.labels, valid)
    if prep.fine_tune is not None:
        tune = getattr(predictor, "fine_tune", None)
        if tune is None:
            if callable(getattr(predictor, "fit", None)):  # without fit() the sample is not used
                notes.add(f"{spec.name} has no fine_tune(): fit on the target sample alone")
            call_fit(predictor, prep.fine_tune.archs, prep.fine_tune.labels, None)
        else:
            tune(prep.fine_tune.archs, prep.fine_tune.labels)
    t1 = time.perf_counter()
    pred = predictor.predict(prep.scored.archs)
    t2 = time.perf_counter()
    _, pred = check_scores(
        prep.scored.labels,
        pred,
        ids=prep.scored.archs.arch_ids,
        what=f"predictions of {spec.name!r} (seed {seed})",
    )
    return pred, t1 - t0, t2 - t1


def run_predictor(
    prep: PreparedTask,
    spec: PredictorSpec | str,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    n_bootstrap: int = 0,
    confidence: float = 0.95,
) -> tuple[dict, tuple[int, ...], dict[str, float], list[str]]:
    """Run ``spec`` on every seed of the task (once if deterministic) and compute ``metrics``.

    Returns (metrics, seeds run, timings, notes).
    """
    spec = load_predictor(spec) if isinstance(spec, str) else spec
    task = prep.task
    if spec.requires_fit and prep.train is None:
        raise ProtocolError(
            f"predictor {spec.name!r} must be fit, but task {task.name!r} has no training data; "
            f"use a transfer task (e.g. 'nb101->{task.name}') or a fine-tune task"
        )
    seeds = task.seeds[:1] if spec.deterministic else task.seeds
    notes: set[str] = set()
    if spec.deterministic and len(task.seeds) > 1:
        notes.add(f"{spec.name} is deterministic: one run stands for every seed")
    rows, fit_s, predict_s = [], 0.0, 0.0
    for seed in seeds:
        pred, f, p = _predict_once(prep, spec, seed, notes)
        rows.append(pred)
        fit_s += f
        predict_s += p
    t0 = time.perf_counter()
    names = list(metrics)
    if spec.predicts_label and "mae_pct" not in names:
        names.append("mae_pct")
    values = compute_metrics(
        prep.scored.labels, np.stack(rows), names, n_bootstrap=n_bootstrap, confidence=confidence
    )
    timings = {"fit": fit_s, "predict": predict_s, "metrics": time.perf_counter() - t0}
    return values, tuple(seeds), timings, sorted(notes)


def _describe_error(err: BaseException) -> str:
    """``Type: message``; for an unexpected error (not one of cgbench's messages), also where
    it was raised, so a bug in a predictor can be found without the traceback."""
    text = f"{type(err).__name__}: {err}"
    if not isinstance(err, (EvalError, TaskError)):
        frames = traceback.extract_tb(err.__traceback__)
        if frames:
            last = frames[-1]
            text += f" (at {Path(last.filename).name}:{last.lineno} in {last.name})"
    return text


def evaluate(
    task: Task | str,
    predictors: Sequence[PredictorSpec | str],
    *,
    root: str | Path | None = None,
    datasets: Mapping[str, Dataset] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    n_bootstrap: int = 0,
    confidence: float = 0.95,
    seeds: Sequence[int] | None = None,
    keep_going: bool = False,
) -> list[RunResult]:
    """Evaluate ``predictors`` on ``task``; every result carries the random predictor's
    metrics on the same task (same scored archs, same seeds, same bootstrap).

    With ``keep_going``, a predictor that fails for any reason (validation, the protocol, an
    unknown column, its constructor, or an exception of its own) gets a result with ``error``
    set (``"Type: message"``) and no metrics instead of raising; the failure is logged.
    """
    if isinstance(task, str):
        task = parse_task(task, seeds=seeds)
    elif seeds is not None:
        from dataclasses import replace

        task = replace(task, seeds=tuple(seeds))
    if not task.seeds:
        raise ValidationError("seeds: at least one seed is needed")
    if len(set(task.seeds)) != len(task.seeds) or not all(0 <= s < 2**32 for s in task.seeds):
        raise ValidationError(f"seeds: distinct integers in 0..2**32-1 are needed, got {list(task.seeds)}")
    specs = [load_predictor(p) if isinstance(p, str) else p for p in predictors]
    prep = prepare_task(task, root=root, datasets=datasets)
    kwargs = {"metrics": metrics, "n_bootstrap": n_bootstrap, "confidence": confidence}
    random_values, _, _, _ = run_predictor(prep, "random", **kwargs)
    rank_metrics = {m: v for m, v in random_values.items() if m != "mae_pct"}
    n_fit = 0 if prep.train is None else len(prep.train.labels)
    if prep.fine_tune is not None:
        n_fit += len(prep.fine_tune.labels)
    bootstrap = {"resamples": n_bootstrap, "confidence": confidence, "seed": 0}
    results = []
    for spec in specs:
        error = None
        if spec.name == "random":
            values, run_seeds, timings, notes = random_values, task.seeds, {}, []
        else:
            try:
                values, run_seeds, timings, notes = run_predictor(prep, spec, **kwargs)
            except Exception as err:
                if not keep_going:
                    raise
                values, run_seeds, timings, notes = {}, (), {}, []
                error = _describe_error(err)
                log.warning("%s: predictor %s failed: %s", task.name, spec.name, error)
                log.debug("traceback of %s on %s", spec.name, task.name, exc_info=err)
        results.append(
            RunResult(
                task=task,
                predictor=spec.name,
                metrics=values,
                random_baseline=rank_metrics,
                seeds=run_seeds,
                n_scored=len(prep.scored.labels),
                n_fit=n_fit,
                data=dict(prep.data),
                split=dict(prep.split),
                bootstrap=bootstrap,
                notes=notes,
                timings=timings,
                error=error,
            )
        )
    return results
