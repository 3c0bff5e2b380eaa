"""The static leaderboard site: collect result records, check them, render HTML + SVG + JSON.

``build_site(RESULTS, OUT)`` reads every record under a results directory (see
:mod:`cgbench.leaderboard.scoring`), re-checks each submission's stored files against the
checksums its records carry (a file changed after scoring refuses the entry), sets each task's
reference data version (the data manifest its baselines were scored on) and renders:

- ``index.html``: per protocol, every entry x task (SRCC), and the GENNAPE transfer grid;
- ``tasks/<task>.html``: one ranked, sortable table per task (SRCC, Kendall tau-b, NDCG@10 with
  bootstrap intervals), with the random predictor and the paper's figures as reference rows;
- ``entries/<kind>-<entry>.html``: metadata, per-task scores and predicted-vs-true rank plots;
- ``results.json``: the same rows, machine-readable (plus refused entries and why).

Pages are Jinja2 templates with autoescaping; user-supplied text is only ever rendered as text,
and a URL becomes a link only when its scheme is http(s). No server is needed: the site works
from ``file://`` and any static host. A build is written to a temporary folder and renamed into
place, so a failed build keeps the previous site.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jinja2

from cgbench.benchmarks.store import sha256_file
from cgbench.benchmarks.tasks import SPLITS_FORMAT, TaskError, parse_task
from cgbench.leaderboard.scoring import LEADERBOARD_RESULT_FORMAT, task_slug
from cgbench.leaderboard.submission import SUBMISSION_FILE, files_digest

__all__ = ["SiteReport", "Entry", "collect_entries", "build_site", "GENNAPE_FAMILIES", "RANK_METRICS"]

#: target families of GENNAPE's transfer tables (paper Table 5/6), in the paper's order
GENNAPE_FAMILIES = ("nb201", "nb301", "ofa_pn", "ofa_mbv3", "ofa_resnet", "hiaml", "inception", "two_path")
RANK_METRICS = (("srcc", "SRCC"), ("kendall_tau", "Kendall tau-b"), ("ndcg@10", "NDCG@10"))
PROTOCOL_TITLES = {"zero-shot": "Zero-shot transfer", "fine-tune": "Fine-tune", "in-family": "In-family"}
_PAPER_METHODS = {
    "gennape": "GENNAPE (paper)",
    "kgnn": "k-GNN (paper)",
    "gcn": "GCN (paper)",
    "gin": "GIN (paper)",
}


@dataclass
class Entry:
    """One leaderboard entry (a submission or a built-in baseline) and its records by task."""

    kind: str  # "submission" | "baseline"
    slug: str
    name: str
    meta: dict[str, Any]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def page(self) -> str:
        return f"entries/{self.kind}-{self.slug}.html"


@dataclass
class SiteReport:
    """What a build produced: the site folder, entries shown, and entries refused (with why)."""

    out: Path
    entries: list[Entry]
    refused: dict[str, str]
    pages: list[Path]


def _read_record(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable result record ({err})") from None
    block = rec.get("leaderboard") if isinstance(rec, dict) else None
    if not isinstance(block, dict) or block.get("format") != LEADERBOARD_RESULT_FORMAT:
        raise ValueError(
            f"{path}: not a {LEADERBOARD_RESULT_FORMAT} record; rescore with `cgbench leaderboard submit`"
        )
    try:
        parse_task(rec["task"]["name"])
    except (KeyError, TypeError, TaskError) as err:
        raise ValueError(f"{path}: bad task in record ({err})") from None
    return rec


def _verify_submission(folder: Path, records: Iterable[dict[str, Any]]) -> None:
    """Raise ``ValueError`` if the stored submission files differ from what was scored."""
    stored = folder / "submission"
    for rec in records:
        block = rec["leaderboard"]
        files = block.get("files") or {}
        if SUBMISSION_FILE not in files:
            raise ValueError(f"{folder}: record of {rec['task']['name']} lists no submission files")
        for relative, digest in files.items():
            path = stored / relative
            if path.is_symlink() or not path.is_file():
                raise ValueError(f"{folder}: scored file {relative} is missing; rescore the submission")
            actual = sha256_file(path)
            if actual != digest:
                raise ValueError(
                    f"{folder}: {relative} changed after scoring (sha256 {actual[:12]}... != recorded "
                    f"{digest[:12]}...); rescore with `cgbench leaderboard submit`"
                )
        if files_digest(files) != block.get("submission_sha256"):
            raise ValueError(f"{folder}: submission checksum does not match its file list; rescore it")


def collect_entries(results: str | Path) -> tuple[list[Entry], dict[str, str]]:
    """All entries under ``results`` that pass their checks, and the refused ones (folder -> why)."""
    results = Path(results)
    entries: list[Entry] = []
    refused: dict[str, str] = {}
    for kind, group in (("baseline", "baselines"), ("submission", "submissions")):
        base = results / group
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                paths = sorted((folder / "results").glob("*.json"))
                if not paths:
                    raise ValueError(f"{folder}: no result records")
                recs = [_read_record(p) for p in paths]
                if kind == "submission":
                    _verify_submission(folder, recs)
                block = recs[0]["leaderboard"]
                entry = Entry(
                    kind, folder.name, str(block.get("name", folder.name)), dict(block.get("meta") or {})
                )
                for rec in recs:
                    entry.records[rec["task"]["name"]] = rec
                entries.append(entry)
            except ValueError as err:
                refused[f"{group}/{folder.name}"] = str(err)
    return entries, refused


def _reference_versions(entries: list[Entry]) -> dict[str, str]:
    """Per task, the data manifest the baselines were scored on (else the most common one)."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for entry in entries:
        weight = 1000 if entry.kind == "baseline" else 1
        for task, rec in entry.records.items():
            votes[task][rec["data"]["manifest_sha256"]] += weight
    return {task: counter.most_common(1)[0][0] for task, counter in votes.items()}


def _paper_rows(paper: Path | None) -> dict[tuple[str, str, str], dict[str, float | str]]:
    """(family, setting, metric) -> {method: "mean ± std"} from a paper_tables.csv."""
    out: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(dict)
    if paper is None or not paper.is_file():
        return out
    with open(paper, newline="") as fh:
        for row in csv.DictReader(fh):
            out[(row["family"], row["setting"], row["metric"])][row["method"]] = (
                float(row["mean"]),
                float(row["std"]) if row.get("std") else None,
            )
    return out


def _default_paper_tables() -> Path | None:
    """The paper's figures shipped with cgbench, when the predictors stage provides them."""
    for package, name in (
        ("cgbench.predictors", "data/paper_tables.csv"),
        ("cgbench.leaderboard", "paper_tables.csv"),
    ):
        try:
            ref = resources.files(package).joinpath(name)
        except (ModuleNotFoundError, TypeError):
            continue
        if ref.is_file():
            return Path(str(ref))
    return None


def _setting(task) -> str:
    return f"fine-tune-{task.n_fine_tune}" if task.protocol == "fine-tune" else task.protocol


def _safe_url(value: Any) -> str | None:
    """``value`` if it is an http(s) URL with a host, else ``None`` (rendered as plain text)."""
    if not isinstance(value, str):
        return None
    parsed = urlparse(value.strip())
    return value.strip() if parsed.scheme in ("http", "https") and parsed.netloc else None


def _cell(metrics: Mapping[str, Any], name: str) -> dict[str, Any]:
    m = metrics.get(name) or {}
    return {"value": m.get("value"), "std": m.get("std"), "ci": m.get("ci")}


def _plot_svg(pairs: list[list[float]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if pairs:
        xs, ys = zip(*pairs)
        ax.scatter(xs, ys, s=4, alpha=0.5, linewidths=0)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="true rank (0 = worst)", ylabel="predicted rank")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cgbench.leaderboard", "templates"),
        autoescape=True,  # every template renders user text escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def fmt(value: Any, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    env.filters["fmt"] = fmt
    env.filters["safe_url"] = _safe_url
    return env


def _rows_for_task(task_name: str, entries: list[Entry], reference: str) -> tuple[list[dict], list[dict]]:
    """Ranked rows on the reference data version, and rows scored on other versions."""
    current, other = [], []
    for entry in entries:
        rec = entry.records.get(task_name)
        if rec is None:
            continue
        block = rec["leaderboard"]
        row = {
            "entry": entry,
            "metrics": {m: _cell(rec["metrics"], m) for m, _ in RANK_METRICS},
            "seeds": rec.get("seeds", []),
            "n_scored": rec.get("n_scored"),
            "manifest": rec["data"]["manifest_sha256"],
            "splits_version": block.get("splits_version"),
            "cgbench": rec.get("versions", {}).get("cgbench"),
            "official": rec.get("split", {}).get("official"),
            "code_url": entry.meta.get("code_url"),
        }
        same_data = row["manifest"] == reference and row["splits_version"] == SPLITS_FORMAT
        (current if same_data else other).append(row)
    current.sort(
        key=lambda r: -(r["metrics"]["srcc"]["value"] if r["metrics"]["srcc"]["value"] is not None else -9)
    )
    return current, other


def _random_row(task_name: str, entries: list[Entry], reference: str) -> dict | None:
    for entry in sorted(entries, key=lambda e: e.kind != "baseline"):
        rec = entry.records.get(task_name)
        if rec is not None and rec["data"]["manifest_sha256"] == reference:
            return {m: _cell(rec["random_baseline"], m) for m, _ in RANK_METRICS}
    return None


def build_site(
    results: str | Path,
    out: str | Path,
    *,
    paper: str | Path | None = None,
    publish: str | Path | None = None,
) -> SiteReport:
    """Render the site of ``results`` into ``out`` (replaced atomically); with ``publish``,
    also copy it there (a folder a static host serves), again replaced atomically."""
    entries, refused = collect_entries(results)
    paper_path = Path(paper) if paper is not None else _default_paper_tables()
    paper_rows = _paper_rows(paper_path)
    reference = _reference_versions(entries)
    env = _environment()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    pages: list[Path] = []
    try:
        (staged / "tasks").mkdir()
        (staged / "entries").mkdir()
        for name in ("site.css", "site.js"):
            shutil.copyfile(resources.files("cgbench.leaderboard").joinpath("static", name), staged / name)
        tasks = {name: parse_task(name) for name in sorted({t for e in entries for t in e.records})}
        task_pages = {}
        results_json: dict[str, Any] = {
            "format": "cgbench-leaderboard-site/1",
            "tasks": {},
            "refused": refused,
        }
        for name, task in tasks.items():
            rows, other = _rows_for_task(name, entries, reference[name])
            paper_here = (
                {
                    method: {
                        metric: paper_rows.get((task.family, _setting(task), metric), {}).get(method)
                        for metric in ("srcc", "ndcg@10")
                    }
                    for method in sorted(
                        {
                            m
                            for metric in ("srcc", "ndcg@10")
                            for m in paper_rows.get((task.family, _setting(task), metric), {})
                        }
                    )
                }
                if task.source in (None, "nb101")
                else {}
            )
            page = f"tasks/{task_slug(name)}.html"
            task_pages[name] = page
            html = env.get_template("task.html").render(
                task=task,
                rows=rows,
                other=other,
                random=_random_row(name, entries, reference[name]),
                paper=paper_here,
                metrics=RANK_METRICS,
                reference=reference[name],
                root="../",
                splits_version=SPLITS_FORMAT,
            )
            (staged / page).write_text(html, encoding="utf-8")
            pages.append(out / page)
            results_json["tasks"][name] = {
                "reference_manifest_sha256": reference[name],
                "rows": [
                    {
                        "entry": r["entry"].slug,
                        "kind": r["entry"].kind,
                        "name": r["entry"].name,
                        "metrics": r["metrics"],
                        "seeds": r["seeds"],
                        "n_scored": r["n_scored"],
                    }
                    for r in rows
                ],
                "other_data_version": [
                    {
                        "entry": r["entry"].slug,
                        "kind": r["entry"].kind,
                        "manifest_sha256": r["manifest"],
                        "splits_version": r["splits_version"],
                    }
                    for r in other
                ],
            }
        for entry in entries:
            plots = {}
            for name, rec in sorted(entry.records.items()):
                svg = f"entries/{entry.kind}-{entry.slug}--{task_slug(name)}.svg"
                _plot_svg(rec["leaderboard"].get("rank_pairs") or [], name, staged / svg)
                plots[name] = svg.split("/", 1)[1]
            html = env.get_template("entry.html").render(
                entry=entry,
                plots=plots,
                task_pages=task_pages,
                metrics=RANK_METRICS,
                root="../",
                meta_fields=[
                    (k, entry.meta.get(k))
                    for k in (
                        "authors",
                        "contact",
                        "license",
                        "description",
                        "training_data",
                        "hardware",
                        "hparam_search_budget",
                    )
                ],
            )
            (staged / entry.page).write_text(html, encoding="utf-8")
            pages.append(out / entry.page)
        overview = _overview(tasks, entries, reference, paper_rows)
        (staged / "index.html").write_text(
            env.get_template("index.html").render(
                overview=overview,
                task_pages=task_pages,
                refused=refused,
                root="",
                families=GENNAPE_FAMILIES,
                splits_version=SPLITS_FORMAT,
                transfer=_transfer_grid(tasks, entries, reference, paper_rows),
            ),
            encoding="utf-8",
        )
        pages.insert(0, out / "index.html")
        (staged / "results.json").write_text(json.dumps(results_json, indent=2, default=str) + "\n")
        from cgbench.leaderboard.scoring import _replace_dir

        _replace_dir(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if publish is not None:
        publish = Path(publish)
        publish.parent.mkdir(parents=True, exist_ok=True)
        staged_pub = Path(tempfile.mkdtemp(prefix=f".{publish.name}.", dir=publish.parent))
        shutil.rmtree(staged_pub)
        shutil.copytree(out, staged_pub)
        _replace_dir(staged_pub, publish)
    return SiteReport(out, entries, refused, pages)


def _overview(tasks, entries, reference, paper_rows) -> list[dict[str, Any]]:
    """Per protocol: the tasks (columns) and, per entry, SRCC on each task (reference data only)."""
    sections = []
    for protocol, title in PROTOCOL_TITLES.items():
        names = [n for n, t in tasks.items() if t.protocol == protocol]
        if not names:
            continue
        rows = []
        for entry in entries:
            cells = []
            for n in names:
                rec = entry.records.get(n)
                ok = rec is not None and rec["data"]["manifest_sha256"] == reference[n]
                cells.append(_cell(rec["metrics"], "srcc") if ok else None)
            if any(c is not None for c in cells):
                rows.append({"entry": entry, "cells": cells})
        rows.sort(key=lambda r: -max((c["value"] or -9) for c in r["cells"] if c is not None))
        sections.append({"protocol": protocol, "title": title, "tasks": names, "rows": rows})
    return sections


def _transfer_grid(tasks, entries, reference, paper_rows) -> dict[str, Any]:
    """GENNAPE's Table 5 layout: rows = methods, columns = target families x {zero-shot, FT-50}."""
    columns = [(fam, setting) for fam in GENNAPE_FAMILIES for setting in ("zero-shot", "fine-tune-50")]
    rows = []
    for method, label in _PAPER_METHODS.items():
        cells = [paper_rows.get((fam, setting, "srcc"), {}).get(method) for fam, setting in columns]
        if any(c is not None for c in cells):
            rows.append(
                {
                    "label": label,
                    "paper": True,
                    "entry": None,
                    "cells": [None if c is None else {"value": c[0], "std": c[1], "ci": None} for c in cells],
                }
            )
    for entry in entries:
        cells = []
        for fam, setting in columns:
            found = None
            for name, task in tasks.items():
                rec = entry.records.get(name)
                if (
                    rec is not None
                    and task.source == "nb101"
                    and task.family == fam
                    and _setting(task) == setting
                    and rec["data"]["manifest_sha256"] == reference[name]
                ):
                    found = _cell(rec["metrics"], "srcc")
                    break
            cells.append(found)
        if any(c is not None for c in cells):
            rows.append({"label": entry.name, "paper": False, "entry": entry, "cells": cells})
    return {"columns": columns, "rows": rows}
