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
import itertools
import logging
import random
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cgbench.benchmarks.tasks import (
    LABELS,
    MISSING_LABELS,
    PARTIAL_LABELS,
    SPLITS_FORMAT,
    Task,
    TaskError,
    arch_groups,
    fine_tune_sample,
    group_columns,
    group_members,
    in_family_split,
    is_label_column,
    label_provider,
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
    "PartialLabelWarning",
    "PreparedTask",
    "prepare_task",
    "evaluate",
    "run_predictor",
    "suggest_trainable",
    "bootstrap_conditions",
]


log = logging.getLogger(__name__)


class ProtocolError(EvalError, ValueError):
    """A predictor that cannot run under a task's protocol, or data a task cannot use."""


class UnofficialSplitWarning(UserWarning):
    """The store is not the population the splits were frozen on, so they are not official."""


class PartialLabelWarning(UserWarning):
    """A task's label has no value on some archs (``PARTIAL_LABELS``): they were left out."""


@dataclass
class Labeled:
    """Architectures with their labels."""

    archs: ArchSet
    labels: np.ndarray


@dataclass
class PreparedTask:
    """The data of one task, opened once and shared by every predictor and seed.

    ``train`` is the seed-independent fit data (source or target train split); fine-tune
    tasks hold each seed's target sample in ``samples`` (the same sample for every seed in a
    ``-fixed`` task): without a source it is the fit data, with one it is the fine-tune data.
    """

    task: Task
    target: DataSource
    scored: Labeled
    train: Labeled | None = None  # source train split, or target train split (in-family)
    valid: Labeled | None = None  # offered to fit(valid_graphs=, valid_labels=)
    samples: dict[int, Labeled] = field(default_factory=dict)  # seed -> fine-tune sample
    data: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def has_fit_data(self) -> bool:
        return self.train is not None or bool(self.samples)

    def fit_data(self, seed: int) -> tuple[Labeled | None, Labeled | None, Labeled | None]:
        """(fit, valid, fine_tune) data of ``seed``."""
        sample = self.samples.get(seed)
        if sample is None and self.samples:
            raise TaskError(f"{self.task.name}: no fine-tune sample was drawn for seed {seed}")
        if self.train is None:
            return sample, None, None
        return self.train, self.valid, sample

    @property
    def fine_tune(self) -> Labeled | None:
        """The fine-tune sample of the first seed (tasks with a source), else None."""
        return self.samples.get(self.task.seeds[0]) if self.train is not None and self.samples else None

    def n_fit(self) -> int:
        fit, _, tune = self.fit_data(self.task.seeds[0])
        return sum(len(x.labels) for x in (fit, tune) if x is not None)


def _open(family: str, root: str | Path | None, datasets: Mapping[str, Dataset] | None):
    if datasets is not None and family in datasets:
        return datasets[family]
    from cgbench.benchmarks.store import open_dataset

    return open_dataset(family, root=root)


def _source(dataset: Dataset, family: str, label: str, label_name: str | None = None) -> DataSource:
    names = column_names(dataset)
    if label not in names:
        labels = [c for c in names if is_label_column(c)]
        provider = f"; it comes from {label_provider(family, label_name)}" if label_name else ""
        raise TaskError(
            f"{family}: the store has no label column {label!r}{provider}; label columns present: "
            f"{', '.join(labels) or '(none)'}"
        )
    return DataSource(dataset, family, frozenset(c for c in names if is_label_column(c)) | {label})


def _labels(src: DataSource, archs: ArchSet, column: str) -> np.ndarray:
    raw = src.raw_column(column).take(archs.row_indices)
    if len(raw) and raw.null_count == len(raw) and src.family in MISSING_LABELS:
        raise TaskError(f"no {column!r} labels in this store. {MISSING_LABELS[src.family]}")
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


def _groups(src: DataSource, ids: Sequence[str]) -> tuple[dict[str, str] | None, list[str]]:
    """arch id -> group (identical networks) over ``ids``, and the group columns used."""
    cols = [c for c in group_columns(src.family) if c in src.column_names]
    if not cols:
        return None, []
    rows = src.rows_of(ids).tolist()
    keys = {c: src.raw_column(c).take(pa.array(rows, pa.int64())).to_pylist() for c in cols}
    return arch_groups(list(ids), keys), cols


def _label_present(task: Task, src: DataSource, eligible: Sequence[str]) -> None:
    """Refuse a task whose label has no value on any eligible arch (a build without it)."""
    rows = src.rows_of(eligible)
    values = src.raw_column(task.label).take(pa.array(rows, pa.int64()))
    arr = values.to_numpy(zero_copy_only=False).astype(np.float64)
    if len(arr) and not np.isfinite(arr).any():
        raise TaskError(
            f"{task.name}: this {task.family} store has no value of label {task.label!r} "
            f"({task.label_name}); it comes from {label_provider(task.family, task.label_name)}"
        )


def _without_label(task: Task, src: DataSource, eligible: Sequence[str]) -> set[str]:
    """The eligible archs without a value of a partial label (``PARTIAL_LABELS``; empty for any
    other label: a missing value of those is an error when the labels are read)."""
    why = PARTIAL_LABELS.get((task.family, task.label_name))
    if why is None:
        return set()
    values = src.raw_column(task.label).take(pa.array(src.rows_of(eligible), pa.int64()))
    arr = values.to_numpy(zero_copy_only=False).astype(np.float64)
    missing = {a for a, ok in zip(eligible, np.isfinite(arr), strict=True) if not ok}
    if missing:
        warnings.warn(
            f"{task.name}: {len(missing):,} of {len(eligible):,} archs have no {task.label!r} value "
            f"({why}); they are neither fit on nor scored (splits are those of all archs)",
            PartialLabelWarning,
            stacklevel=3,
        )
    return missing


def _official(
    family: str,
    ids: list[str],
    subset: str | None,
    what: str,
    manifest: Mapping | None,
    groups: Mapping[str, str] | None,
) -> tuple[bool, Any, str | None]:
    try:
        split_file = load_split_file(family)
    except TaskError as err:  # a split file of an older format: the rule still applies
        split_file, stale = None, str(err)
    else:
        stale = None
    if stale is not None:
        official, why = False, f"{stale}; splits follow the current rule on this store's archs"
    elif split_file is None:
        official, why = (
            False,
            (
                f"no split file is frozen for {family}; splits follow the same rule on this store's "
                "archs (results are not comparable with official ones)"
            ),
        )
    else:
        official, why = split_file.check(ids, subset, manifest, groups)
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

    Every split and sample is drawn over groups of identical networks (see
    :func:`cgbench.benchmarks.tasks.arch_groups`): no network is both fit on and scored.
    ``datasets`` maps family names to dataset objects (overriding the store, e.g. for
    in-memory data); other families are opened with ``open_dataset(family, root)``.
    """
    task = parse_task(task) if isinstance(task, str) else task
    target = _source(_open(task.family, root, datasets), task.family, task.label, task.label_name)
    eligible = _eligible(task, target)
    _label_present(task, target, eligible)
    unlabelled = _without_label(task, target, eligible)
    groups, group_cols = _groups(target, eligible)
    manifest = getattr(target.dataset, "manifest", None)
    official, _, why = _official(task.family, eligible, task.subset, task.name, manifest, groups)
    prepared_split: dict[str, Any] = {
        "version": SPLITS_FORMAT,
        "official": official,
        "rule": split_salt(task.family),
        "groups": {"columns": group_cols, "n": len(set(groups.values())) if groups else len(eligible)},
    }
    if why is not None:
        prepared_split["reason"] = why
    if unlabelled:
        prepared_split["n_label_missing"] = len(unlabelled)

    def labelled(ids: Sequence[str]) -> list[str]:
        return [a for a in ids if a not in unlabelled] if unlabelled else list(ids)

    data = {
        "family": task.family,
        "manifest_sha256": manifest_sha256(target.dataset.manifest),
        "files_sha256": files_sha256(target.dataset.manifest),
        "n_family": len(target),
        "n_eligible": len(eligible),
    }
    train = valid = None
    samples: dict[int, Labeled] = {}
    if task.protocol == "in-family":
        split = in_family_split(eligible, task.family, groups)
        train = _labeled(target, labelled(split["train"]), task.label)
        valid = _labeled(target, labelled(split["valid"]), task.label)
        scored_ids = split["test"]
    elif task.protocol == "zero-shot":
        scored_ids = eligible
    else:
        n = task.n_fine_tune
        drawn = {
            seed: fine_tune_sample(eligible, task.family, n, groups, seed=None if task.fixed_sample else seed)
            for seed in task.seeds
        }
        taken = group_members(itertools.chain.from_iterable(drawn.values()), groups)
        scored_ids = [a for a in eligible if a not in taken]
        samples = {seed: _labeled(target, labelled(ids), task.label) for seed, ids in drawn.items()}
        prepared_split["fine_tune_sample"] = "fixed" if task.fixed_sample else "per-seed"
        prepared_split["fine_tune_sha256"] = {str(seed): _digest(ids) for seed, ids in drawn.items()}
        prepared_split["n_not_scored"] = len(taken)
    if task.source is not None:
        src = _source(_open(task.source, root, datasets), task.source, task.source_label)
        src_ids = list(src.arch_ids)
        src_groups, _ = _groups(src, src_ids)
        src_manifest = getattr(src.dataset, "manifest", None)
        src_official, _, src_why = _official(
            task.source, src_ids, None, f"{task.name} (source)", src_manifest, src_groups
        )
        split = in_family_split(src_ids, task.source, src_groups)
        train = _labeled(src, split["train"], task.source_label)
        valid = _labeled(src, split["valid"], task.source_label)
        prepared_split["source_official"] = src_official
        if src_why is not None:
            prepared_split["source_reason"] = src_why
        # a network of the source's fit data that reappears in the target is not scored
        if "cg_hash" in src.column_names and "cg_hash" in target.column_names:
            fit_rows = np.concatenate([train.archs.row_indices, valid.archs.row_indices])
            seen = set(src.raw_column("cg_hash").take(pa.array(fit_rows)).to_pylist())
            hashes = target.raw_column("cg_hash").take(pa.array(target.rows_of(scored_ids)))
            twins = {a for a, h in zip(scored_ids, hashes.to_pylist(), strict=True) if h in seen}
            if twins:
                scored_ids = [a for a in scored_ids if a not in twins]
                prepared_split["n_source_twins_not_scored"] = len(twins)
        data["source"] = task.source
        data["source_manifest_sha256"] = manifest_sha256(src.dataset.manifest)
        data["source_files_sha256"] = files_sha256(src.dataset.manifest)
    scored = _labeled(target, labelled(scored_ids), task.label)
    if len(scored.labels) < 2:
        raise TaskError(f"{task.name}: only {len(scored.labels)} arch(s) to score")
    return PreparedTask(task, target, scored, train, valid, samples, data, prepared_split)


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
    fit, valid, sample = prep.fit_data(seed)
    t0 = time.perf_counter()
    if fit is not None:
        offered = None if valid is None else (valid.archs, valid.labels)
        call_fit(predictor, fit.archs, fit.labels, offered)
    if sample is not None:
        tune = getattr(predictor, "fine_tune", None)
        if tune is None:
            if callable(getattr(predictor, "fit", None)):  # without fit() the sample is not used
                notes.add(f"{spec.name} has no fine_tune(): fit on the target sample alone")
            call_fit(predictor, sample.archs, sample.labels, None)
        else:
            tune(sample.archs, sample.labels)
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
    progress: Callable[[str], None] | None = None,
) -> tuple[dict, tuple[int, ...], dict[str, float], list[str]]:
    """Run ``spec`` on every seed of the task (once if deterministic) and compute ``metrics``.

    Returns (metrics, seeds run, timings, notes).
    """
    spec = load_predictor(spec) if isinstance(spec, str) else spec
    task = prep.task
    if spec.requires_fit and not prep.has_fit_data:
        raise ProtocolError(
            f"predictor {spec.name!r} must be fit, but task {task.name!r} has no training data; "
            f"use {' or '.join(suggest_trainable(task))}"
        )
    seeds = task.seeds[:1] if spec.deterministic else task.seeds
    notes: set[str] = set()
    if spec.deterministic and len(task.seeds) > 1:
        notes.add(f"{spec.name} is deterministic: one run stands for every seed")
    rows, fit_s, predict_s = [], 0.0, 0.0
    say = progress or (lambda message: None)
    for seed in seeds:
        if spec.name != "random":
            say(f"{task.shell_name}: {spec.name}, seed {seed}: fit and predict")
        pred, f, p = _predict_once(prep, spec, seed, notes)
        rows.append(pred)
        fit_s += f
        predict_s += p
    t0 = time.perf_counter()
    names = list(metrics)
    if spec.predicts_label and "mae_pct" not in names:
        names.append("mae_pct")
    if n_bootstrap:
        say(f"{task.shell_name}: {spec.name}: metrics with {n_bootstrap} bootstrap resamples")
    values = compute_metrics(
        prep.scored.labels, np.stack(rows), names, n_bootstrap=n_bootstrap, confidence=confidence
    )
    timings = {"fit": fit_s, "predict": predict_s, "metrics": time.perf_counter() - t0}
    return values, tuple(seeds), timings, sorted(notes)


def suggest_trainable(task: Task) -> list[str]:
    """Valid task names like ``task`` that have training data (for a predictor that must be
    fit): the fine-tune task, and a zero-shot transfer from another family (shell-safe)."""
    scope = f"{task.family}{'-' + task.subset if task.subset else ''}/{task.label_name}"
    source = task.source or next(f for f in LABELS if f != task.family)
    return [
        f"{source}~{scope}:fine-tune-50" if task.source else f"{scope}:fine-tune-50",
        f"{source}~{scope}:zero-shot",
    ]


def bootstrap_conditions(task: Task) -> str:
    """What a bootstrap interval of ``task`` holds fixed (it resamples the scored archs only)."""
    fixed = "the fitted predictors of each seed"
    if task.protocol == "fine-tune":
        fixed += " and the one fine-tune sample" if task.fixed_sample else " and each seed's fine-tune sample"
    elif task.has_training_data:
        fixed += " and the split"
    return f"resamples the scored archs with replacement; holds {fixed} fixed (the ± over seeds " + (
        "includes sample-to-sample variance)"
        if task.protocol == "fine-tune" and not task.fixed_sample
        else "is seed variance only)"
    )


def _describe_error(err: BaseException) -> str:
    """``Type: message``; for an unexpected error (not one of cgbench's messages), also where
    it was raised, so a bug in a predictor can be found without the traceback."""
    text = f"{type(err).__name__}: {err}"
    remote = getattr(err, "remote_where", None)
    if remote:
        text += f" (at {remote})"
    elif not isinstance(err, (EvalError, TaskError)):
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
    progress: Callable[[str], None] | None = None,
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
    say = progress or (lambda message: None)
    specs = [load_predictor(p) if isinstance(p, str) else p for p in predictors]
    families = task.family + (f" and {task.source}" if task.source else "")
    say(f"{task.shell_name}: opening the data of {families}")
    prep = prepare_task(task, root=root, datasets=datasets)
    say(f"{task.shell_name}: {len(prep.scored.labels):,} archs to score; running random")
    kwargs = {"metrics": metrics, "n_bootstrap": n_bootstrap, "confidence": confidence, "progress": progress}
    random_values, _, _, _ = run_predictor(prep, "random", **kwargs)
    rank_metrics = {m: v for m, v in random_values.items() if m != "mae_pct"}
    n_fit = prep.n_fit()
    bootstrap = {
        "resamples": n_bootstrap,
        "confidence": confidence,
        "seed": 0,
        "conditions_on": bootstrap_conditions(task),
    }
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
