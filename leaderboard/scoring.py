"""Score submissions and built-in baselines through ``cgbench.eval`` and store result records.

Every score comes from :func:`cgbench.eval.evaluate`, the code path of ``cgbench evaluate``:
a submission's predictions files become one :class:`~cgbench.eval.PredictionsFile` predictor
per seed. A result record is ``RunResult.to_dict()`` plus a ``leaderboard`` block (entry, kind,
submission checksum and file checksums, splits version, a sample of (true rank, predicted rank)
pairs for the plot). Layout of a results directory::

    RESULTS/submissions/<slug>/submission/...        the validated files, as scored
    RESULTS/submissions/<slug>/results/<task>.json   one record per task
    RESULTS/baselines/<predictor>/results/<task>.json
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.stats import rankdata

from cgbench.benchmarks.store import atomic_write_bytes, open_dataset
from cgbench.benchmarks.tasks import SPLITS_FORMAT, Task, parse_task
from cgbench.eval import evaluate
from cgbench.eval.predictor import PredictionsFile, PredictorSpec, load_predictor, read_predictions
from cgbench.leaderboard.submission import LoadedSubmission, SubmissionError, load_submission, slugify

__all__ = [
    "LEADERBOARD_RESULT_FORMAT",
    "MAX_PLOT_POINTS",
    "ScoredEntry",
    "score_submission",
    "score_baselines",
    "task_slug",
]

LEADERBOARD_RESULT_FORMAT = "cgbench-leaderboard-result/1"
MAX_PLOT_POINTS = 1500


@dataclass(frozen=True)
class ScoredEntry:
    """What scoring wrote: the entry's folder and one record path per task."""

    directory: Path
    records: tuple[Path, ...]


def task_slug(task_name: str) -> str:
    """A file name for a task (``nb101->nb201/cifar10-valid:zero-shot`` -> ``nb101-to-nb201-...``)."""
    return slugify(task_name.replace("->", " to "))


class _Recording:
    """Wraps a predictor; keeps the first ``predict`` output of its seed (for the rank plot)."""

    def __init__(self, inner: Any, sink: dict[int, tuple[list[str], np.ndarray]], seed: int) -> None:
        self._inner, self._sink, self._seed = inner, sink, seed

    def __getattr__(self, name: str) -> Any:  # fit, fine_tune, class flags: the wrapped predictor's
        return getattr(self._inner, name)

    def predict(self, graphs: Any) -> np.ndarray:
        scores = self._inner.predict(graphs)
        self._sink.setdefault(self._seed, (list(graphs.arch_ids), np.asarray(scores, dtype=float).ravel()))
        return scores


def _recording(spec: PredictorSpec, sink: dict) -> PredictorSpec:
    return PredictorSpec(
        name=spec.name,
        factory=lambda seed: _Recording(spec.make(seed), sink, seed),
        deterministic=spec.deterministic,
        requires_fit=spec.requires_fit,
        predicts_label=spec.predicts_label,
        source=spec.source,
    )


def _file_spec(sub: LoadedSubmission, task: Task, entry) -> PredictorSpec:
    """One predictor reading the entry's files: a ``seed`` column is added for per-seed files."""
    pairs = list(sub.prediction_files(entry))
    tables = []
    for seed, relative in pairs:
        table = read_predictions(sub.path(relative))
        if seed is not None:
            if "seed" in table.column_names:
                table = table.drop_columns(["seed"])
            table = table.append_column("seed", pa.array(np.full(table.num_rows, seed, dtype=np.int64)))
        tables.append(table)
    table = pa.concat_tables(tables)
    seeded = "seed" in table.column_names
    label = sub.path(pairs[0][1]) if len(pairs) == 1 else sub.directory / "predictions"
    return PredictorSpec(
        name=sub.meta.name,
        factory=lambda seed: PredictionsFile(label, seed if seeded else None, table=table),
        deterministic=not seeded,
        source="file",
    )


def _rank_pairs(task: Task, root: str | Path | None, recorded: dict) -> list[list[float]]:
    """(true rank, predicted rank) in [0, 1] for the lowest recorded seed, at most
    :data:`MAX_PLOT_POINTS` pairs spread evenly over the true ranking."""
    if not recorded:
        return []
    ids, scores = recorded[min(recorded)]
    table = open_dataset(task.family, root=root).table(["arch_id", task.label])
    label_of = dict(zip(table.column("arch_id").to_pylist(), table.column(task.label).to_pylist()))
    truth = np.array([label_of[a] for a in ids], dtype=float)
    n = len(ids)
    if n < 2:
        return []
    true_rank = (rankdata(truth) - 1) / (n - 1)
    pred_rank = (rankdata(scores) - 1) / (n - 1)
    order = np.argsort(true_rank, kind="stable")
    keep = order[np.unique(np.linspace(0, n - 1, min(n, MAX_PLOT_POINTS)).round().astype(int))]
    return [[round(float(true_rank[i]), 4), round(float(pred_rank[i]), 4)] for i in keep]


def _record(result, block: dict[str, Any]) -> dict[str, Any]:
    rec = result.to_dict()
    rec["leaderboard"] = {"format": LEADERBOARD_RESULT_FORMAT, "splits_version": SPLITS_FORMAT, **block}
    return rec


def _write_records(records: dict[str, dict], results_dir: Path) -> tuple[Path, ...]:
    results_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for task_name, rec in records.items():
        path = results_dir / f"{task_slug(task_name)}.json"
        atomic_write_bytes(path, (json.dumps(rec, indent=2, allow_nan=False) + "\n").encode())
        out.append(path)
    return tuple(out)


def _replace_dir(staged: Path, target: Path) -> None:
    """Put ``staged`` at ``target``; an existing ``target`` is removed only after the rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    staged.rename(target)
    if old.exists():
        shutil.rmtree(old)


def score_submission(
    directory: str | Path,
    results: str | Path,
    *,
    root: str | Path | None = None,
    n_bootstrap: int = 200,
) -> ScoredEntry:
    """Validate the submission in ``directory``, score each of its tasks with
    :func:`cgbench.eval.evaluate`, and store its files and one record per task under
    ``results/submissions/<slug>/`` (replacing an earlier scoring of the same name only
    after every task scored). Raises :class:`SubmissionError` or the harness's errors."""
    sub = load_submission(directory)
    meta = sub.meta.model_dump(exclude={"tasks", "format"})
    records: dict[str, dict] = {}
    for task, entry in sub.tasks:
        sink: dict = {}
        spec = (
            _file_spec(sub, task, entry) if entry.predictions is not None else load_predictor(entry.predictor)
        )
        [result] = evaluate(task, [_recording(spec, sink)], root=root, n_bootstrap=n_bootstrap)
        records[task.name] = _record(
            result,
            {
                "kind": "submission",
                "entry": sub.slug,
                "name": sub.meta.name,
                "meta": meta,
                "submission_sha256": sub.sha256,
                "files": sub.files,
                "predictions": entry.predictor or "files",
                "rank_pairs": _rank_pairs(task, root, sink),
            },
        )
    results = Path(results)
    target = results / "submissions" / sub.slug
    results.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{sub.slug}.", dir=results))
    try:
        for relative in sub.files:
            dest = staged / "submission" / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sub.path(relative), dest)
        _write_records(records, staged / "results")
        _replace_dir(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return ScoredEntry(target, tuple(sorted((target / "results").glob("*.json"))))


def score_baselines(
    predictors: Sequence[str],
    tasks: Sequence[str | Task],
    results: str | Path,
    *,
    root: str | Path | None = None,
    n_bootstrap: int = 200,
) -> list[ScoredEntry]:
    """Score built-in predictors (``flops``, ``params``, ``zc:synflow`` ...) on ``tasks`` and
    store them as reference entries under ``results/baselines/<predictor>/``."""
    out = []
    for name in predictors:
        spec = load_predictor(name)
        if spec.source != "builtin":
            raise SubmissionError(f"baseline {name!r}: only built-in predictors are seeded as baselines")
        records: dict[str, dict] = {}
        for task in tasks:
            task = parse_task(task) if isinstance(task, str) else task
            sink: dict = {}
            [result] = evaluate(task, [_recording(spec, sink)], root=root, n_bootstrap=n_bootstrap)
            records[task.name] = _record(
                result,
                {
                    "kind": "baseline",
                    "entry": slugify(name),
                    "name": name,
                    "meta": {"description": f"built-in predictor {name!r} of cgbench"},
                    "rank_pairs": _rank_pairs(task, root, sink),
                },
            )
        target = Path(results) / "baselines" / slugify(name)
        paths = _write_records(records, target / "results")
        out.append(ScoredEntry(target, paths))
    return out
