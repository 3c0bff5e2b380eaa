"""Result records of evaluation runs: JSON (one record per task x predictor) and a rich table.

A record holds the task definition, the predictor, every metric (mean over seeds, unbiased std,
per-seed values, bootstrap interval), the random predictor's metrics on the same task, the
seeds, the split provenance, the cgbench version, the record schema version and the sha256 of
the data manifest(s) it was computed on. Tables always show the random baseline's row first.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cgbench.benchmarks.tasks import Task
from cgbench.eval.metrics import MetricValue, get_metric

__all__ = [
    "RESULT_SCHEMA",
    "RunResult",
    "manifest_sha256",
    "files_sha256",
    "write_json",
    "read_json",
    "render_table",
    "paper_reference",
]

RESULT_SCHEMA = "cgbench-result/2"
#: record schemas :func:`read_json` reads; /1 records predate grouped splits (``cgbench-splits/2``)
READABLE_SCHEMAS = ("cgbench-result/1", RESULT_SCHEMA)
#: the split version of a record that does not name one (``cgbench-result/1``)
_LEGACY_SPLITS = "cgbench-splits/2"


def manifest_sha256(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of the manifest as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def files_sha256(manifest: Mapping[str, Any]) -> str | None:
    """SHA-256 over the (name, sha256) of the data files listed in the manifest: identifies
    the data content independently of build metadata such as timestamps (None if unlisted)."""
    files = manifest.get("files")
    if not isinstance(files, list) or not all(isinstance(f, Mapping) for f in files):
        return None
    lines = sorted(f"{f.get('name')}\t{f.get('sha256')}" for f in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _versions() -> dict[str, str]:
    import numpy
    import scipy
    import sklearn

    import cgbench

    return {
        "cgbench": cgbench.__version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }


def _clean(value: float | None) -> float | None:
    """JSON has no NaN: undefined values are written as null."""
    return None if value is None or not math.isfinite(value) else value


def _metric_dict(values: Mapping[str, MetricValue]) -> dict:
    out = {}
    for name, mv in values.items():
        d = mv.to_dict()
        d["value"] = _clean(d["value"])
        d["std"] = _clean(d["std"])
        d["per_seed"] = [_clean(v) for v in d["per_seed"]]
        d["ci"] = None if d["ci"] is None else [_clean(v) for v in d["ci"]]
        out[name] = d
    return out


@dataclass
class RunResult:
    """One predictor evaluated on one task."""

    task: Task
    predictor: str
    metrics: dict[str, MetricValue]
    random_baseline: dict[str, MetricValue]
    seeds: tuple[int, ...]
    n_scored: int
    n_fit: int
    data: dict[str, Any]  # family, manifest_sha256, source and its manifest_sha256
    split: dict[str, Any]  # official (verified against stored splits), fine-tune sample digest
    bootstrap: dict[str, Any] = field(default_factory=dict)  # resamples, confidence, seed
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # set (and metrics empty) when the predictor failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": RESULT_SCHEMA,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": _versions(),
            "task": self.task.to_dict(),
            "predictor": self.predictor,
            "seeds": list(self.seeds),
            "n_scored": self.n_scored,
            "n_fit": self.n_fit,
            "metrics": _metric_dict(self.metrics),
            "random_baseline": _metric_dict(self.random_baseline),
            "bootstrap": self.bootstrap,
            "data": self.data,
            "split": self.split,
            "notes": self.notes,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "error": self.error,
        }


def write_json(results: Sequence[RunResult], path: str | Path) -> Path:
    """Write the records as a JSON array (atomically: temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps([r.to_dict() for r in results], indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | Path) -> list[dict[str, Any]]:
    """The records of a results file (checks the schema version). Older records
    (``cgbench-result/1``) are read too; their ``split.version`` says which split rule they
    used (``cgbench-splits/2``: drawn over single arch ids, before grouping identical networks)."""
    records = json.loads(Path(path).read_text())
    for rec in records:
        if rec.get("schema_version") not in READABLE_SCHEMAS:
            raise ValueError(
                f"{path}: record schema {rec.get('schema_version')!r}, expected one of "
                f"{', '.join(READABLE_SCHEMAS)}"
            )
        split = rec.setdefault("split", {})
        if isinstance(split, dict):
            split.setdefault("version", _LEGACY_SPLITS)
    return records


# ---------------------------------------------------------------------------- paper comparison
def paper_reference(path: str | Path) -> dict[tuple[str, str, str, str], tuple[float, str]]:
    """GENNAPE's published figures from a ``paper_tables.csv``-style file
    (``table,family,setting,method,metric,mean,std``), keyed by
    ``(family, setting, method, metric)``; setting is ``zero-shot``, ``fine-tune-50``, ..."""
    out = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            key = (row["family"], row["setting"], row["method"], row["metric"])
            out[key] = (float(row["mean"]), row["std"] or "")
    return out


_PAPER_METRIC = {"srcc": "srcc", "ndcg@10": "ndcg@10", "mae_pct": "mae_pct"}
_PAPER_METHOD = {"flops": "flops"}


def _paper_key(result: RunResult, metric: str) -> tuple[str, str, str, str] | None:
    if metric not in _PAPER_METRIC:
        return None
    method = result.predictor
    method = method.split(":", 1)[1] if method.startswith("zc:") else _PAPER_METHOD.get(method)
    if method is None:
        return None
    setting = result.task.protocol
    if setting == "fine-tune":
        setting = f"fine-tune-{result.task.n_fine_tune}"
    return (result.task.family, setting, method, _PAPER_METRIC[metric])


# ---------------------------------------------------------------------------- terminal table
_DISPLAY = {"srcc": "SRCC", "kendall_tau": "tau-b", "kendall_tau_c": "tau-c", "mae_pct": "MAE %"}


def _display(metric: str) -> str:
    name = _DISPLAY.get(metric)
    if name is None:
        base, _, k = metric.partition("@")
        name = {"ndcg": "NDCG", "precision": "P", "best_rank": "best rank"}.get(base, base)
        name = f"{name}@{k}" if k else name
    return f"{name} {'↑' if get_metric(metric).higher_is_better else '↓'}"


def _fmt(mv: MetricValue | None, digits: int = 3) -> str:
    if mv is None:
        return "-"
    if not math.isfinite(mv.value):
        return "NaN"
    text = f"{mv.value:.{digits}f}"
    if mv.std is not None:
        text += f"±{mv.std:.{digits}f}"
    if mv.ci is not None and all(math.isfinite(v) for v in mv.ci):
        text += f" [{mv.ci[0]:.{digits}f},{mv.ci[1]:.{digits}f}]"
    return text


def _fmt_paper(ref: tuple[float, str] | None) -> str:
    if ref is None:
        return "-"
    return f"{ref[0]:.3f}" + (f"±{ref[1]}" if ref[1] else "")


def render_table(
    results: Sequence[RunResult],
    *,
    console=None,
    paper: Mapping[tuple[str, str, str, str], tuple[float, str]] | None = None,
) -> None:
    """Print one rich table per task: the random baseline first, then each predictor; with
    ``paper`` (see :func:`paper_reference`), GENNAPE's figure beside ours where it exists.
    Cells read ``mean±std [CI low,CI high]`` (std over seeds; 95% bootstrap interval)."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)
    by_task: dict[str, list[RunResult]] = {}
    for r in results:
        by_task.setdefault(r.task.name, []).append(r)
    for name, runs in by_task.items():
        first = runs[0]
        metrics = list(dict.fromkeys(m for r in runs for m in r.metrics))
        own = [r for r in runs if r.predictor != "random"]
        refs = {m: [paper.get(k) if (k := _paper_key(r, m)) else None for r in own] for m in metrics if paper}
        paper_cols = [m for m, found in refs.items() if any(found)]
        split = (
            "official split"
            if first.split.get("official")
            else "UNOFFICIAL split (not the population the splits were frozen on)"
        )
        console.print(
            f"[bold]{name}[/bold]: {first.n_scored} archs scored, label {first.task.label}, {split}",
            highlight=False,
        )
        table = Table()
        table.add_column("predictor", style="bold", no_wrap=True)
        for m in metrics:
            table.add_column(_display(m), justify="right", no_wrap=True)
        for m in paper_cols:
            table.add_column(f"paper {_display(m)}", justify="right", style="cyan", no_wrap=True)
        table.add_column("seeds", justify="right")
        table.add_row(
            "random",
            *[_fmt(first.random_baseline.get(m)) for m in metrics],
            *["-" for _ in paper_cols],
            str(len(first.task.seeds)),
            style="dim",
        )
        for i, run in enumerate(own):
            table.add_row(
                run.predictor,
                *[_fmt(run.metrics.get(m)) if not run.error else "error" for m in metrics],
                *[_fmt_paper(refs[m][i]) for m in paper_cols],
                str(len(run.seeds)),
                style="red" if run.error else None,
            )
        console.print(table)
        notes = sorted({n for r in runs for n in r.notes if "deterministic" not in n})
        notes += [f"[red]{r.predictor} failed[/red]: {r.error}" for r in own if r.error]
        if any(len(r.seeds) == 1 and len(r.task.seeds) > 1 for r in own):
            notes.append("seeds = 1: a deterministic predictor, one run stands for every seed")
        if paper_cols:
            notes.insert(0, _paper_note(first))
        for note in notes:
            console.print(f"  note: {note}", style="italic", highlight=False)


def _paper_note(result: RunResult) -> str:
    from cgbench.benchmarks.tasks import PAPER_SUBSET

    text = "paper columns: GENNAPE (AAAI-23) tables."
    if result.task.paper_note:
        text += f" {result.task.paper_note}."
    scope = PAPER_SUBSET.get(result.task.family)
    if scope is not None and result.task.subset != scope:
        text += f" The paper scored the '{scope}' subset ({result.task.family}-{scope})."
    return text
