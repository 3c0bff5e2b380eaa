"""``cgbench evaluate`` and ``cgbench tasks``: score predictors on benchmark tasks."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cgbench.commands.errors import console, fail_cleanly

err_console = console()  # never wraps: messages hold paths and commands

#: ``--predictor baselines``: the paper's training-free baselines (zero-cost proxies the store has)
BASELINES = ("flops", "params", "zc:synflow", "zc:jacov", "zc:snip", "zc:fisher")


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``tasks`` to ``app``."""
    app.command("evaluate")(evaluate)
    app.command("tasks")(tasks)


def _progress(message: str) -> None:
    """One progress line on stderr (never wrapped, so paths and commands stay whole)."""
    err_console.print(f"[dim]... {message}[/dim]", highlight=False, soft_wrap=True)


def _split_list(values: list[str]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _incomplete_column(dataset, column: str) -> str | None:
    """Why the store's upstream proxy ``column`` cannot score every arch, or None when it can
    (no value missing, or the missing ones are filled from ``unique_id``, see eval/baselines)."""
    import pyarrow.compute as pc

    from cgbench.eval.baselines import REPRESENTATIVE_COLUMN

    if REPRESENTATIVE_COLUMN in dataset.schema.names:
        return None
    values = dataset.table([column]).column(column)
    missing = values.null_count + pc.sum(pc.is_nan(values.drop_null())).as_py() if len(values) else 0
    if not missing:
        return None
    return f"{column} has values for {len(values) - missing:,} of {len(values):,} archs"


def _expand(predictors: list, family: str, root: Path | None, note=_progress) -> list:
    """Replace ``baselines`` by :data:`BASELINES`, keeping the proxies the store has for every
    arch (``note`` says which were left out and why); the other entries (resolved predictor
    specs) are kept as they are, in order."""
    if "baselines" not in predictors:
        return predictors
    from cgbench.benchmarks.store import open_dataset
    from cgbench.eval.predictor import load_predictor

    dataset = open_dataset(family, root=root)
    names = set(dataset.schema.names)
    computed = dataset.manifest.get("zerocost", {})
    found = []
    for p in BASELINES:
        if not p.startswith("zc:"):
            found.append(p)
            continue
        upstream, ours = f"zc_{p[3:]}", f"zc_cgb_{p[3:]}"
        why = _incomplete_column(dataset, upstream) if upstream in names else "no column"
        if why is None:
            found.append(p)
        elif ours in names and computed.get(ours, {}).get("computed_archs") == len(dataset):
            found.append(f"zc:cgb_{p[3:]}")  # cgbench's computed proxy (`cgbench proxies`), complete
        elif upstream in names:
            note(
                f"baselines: {p} left out: {why}; compute it for every arch with "
                f"`cgbench proxies {family} --proxy {p[3:]}`"
            )
    out: dict = {}
    for p in predictors:
        for spec in [load_predictor(b) for b in found] if p == "baselines" else [p]:
            out.setdefault(spec.name, spec)
    return list(out.values())


#: seeds are passed to numpy's and torch's seeding, which take 0 <= seed < 2**32
MAX_SEED = 2**32 - 1


def _parse_seeds(seeds: str) -> list[int]:
    items = _split_list([seeds])
    try:
        values = [int(s) for s in items]
    except ValueError:
        raise typer.BadParameter(f"--seeds takes integers, got {seeds!r}") from None
    if not values:
        raise typer.BadParameter("--seeds: give at least one seed, e.g. 0,1,2", param_hint="--seeds")
    out_of_range = [v for v in values if not 0 <= v <= MAX_SEED]
    if out_of_range:
        raise typer.BadParameter(
            f"seeds must be in 0..{MAX_SEED} (numpy's range), got {', '.join(map(str, out_of_range))}",
            param_hint="--seeds",
        )
    duplicated = sorted({v for v in values if values.count(v) > 1})
    if duplicated:
        raise typer.BadParameter(
            f"duplicated seed(s) {', '.join(map(str, duplicated))}: each seed is one run, give it once",
            param_hint="--seeds",
        )
    return values


def _check_json_path(path: Path) -> None:
    """Fail before any computation when ``path`` cannot be written (atomically, beside it)."""
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a directory; give a file name", param_hint="--json")
    folder = path.parent
    if not folder.is_dir():
        raise typer.BadParameter(f"folder {folder} does not exist", param_hint="--json")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise typer.BadParameter(
            f"cannot write in {folder} ({err.strerror or err})", param_hint="--json"
        ) from None
    if path.exists() and not os.access(path, os.W_OK):
        raise typer.BadParameter(f"{path} is not writable", param_hint="--json")


@fail_cleanly
def evaluate(
    task: Annotated[
        list[str],
        typer.Option(help="Task name(s), comma-separated or repeated; see `cgbench tasks`."),
    ],
    predictor: Annotated[
        list[str],
        typer.Option(
            help="Predictor(s), comma-separated or repeated: random, flops, params, zc:NAME, "
            "column:NAME, summary-rf, baselines (flops, params, 4 zero-cost proxies), "
            "module:Class, or a predictions file (.parquet/.csv: arch_id, score[, seed])."
        ),
    ],
    root: Annotated[
        Path | None, typer.Option(help="Store root (default $CGBENCH_HOME or ~/.cache/cgbench).")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the result records (a JSON array) here.")
    ] = None,
    metrics: Annotated[
        str, typer.Option(help="Comma-separated metrics, e.g. srcc,kendall_tau,ndcg@10,precision@10.")
    ] = "srcc,kendall_tau,ndcg@10",
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples for 95% intervals (0: none).", min=0)
    ] = 200,
    seeds: Annotated[
        str | None, typer.Option(help="Comma-separated seeds (default: the task's, 0-4).")
    ] = None,
    paper: Annotated[
        Path | None,
        typer.Option(help="paper_tables.csv: show GENNAPE's published figures beside ours."),
    ] = None,
    keep_going: Annotated[
        bool,
        typer.Option(help="Show a failing predictor as an error row and go on (exit code 1)."),
    ] = False,
) -> None:
    """Score predictors on tasks; each table shows the random predictor of the task first.

    Every task name, predictor, metric and option is checked before any data is read; with
    --json, the records of every finished task are (re)written after each task, atomically."""
    _progress("loading cgbench (imports)")
    from cgbench.benchmarks.tasks import parse_task
    from cgbench.eval.metrics import get_metric
    from cgbench.eval.predictor import load_predictor
    from cgbench.eval.protocols import UnofficialSplitWarning
    from cgbench.eval.protocols import evaluate as run_evaluation
    from cgbench.eval.results import paper_reference, render_table, write_json

    # 1. everything the user typed, before any data is read
    metric_names = _split_list([metrics])
    if not metric_names:
        raise typer.BadParameter(
            "give at least one metric, e.g. srcc,kendall_tau,ndcg@10", param_hint="--metrics"
        )
    for name in metric_names:
        try:
            get_metric(name)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--metrics") from None
    seed_list = _parse_seeds(seeds) if seeds is not None else None
    reference = None
    if paper is not None:
        if not paper.is_file():
            raise typer.BadParameter(f"file {paper} not found", param_hint="--paper")
        try:
            reference = paper_reference(paper)
        except (OSError, UnicodeDecodeError, KeyError, ValueError) as err:
            raise typer.BadParameter(
                f"cannot read {paper} ({type(err).__name__}: {err}); expected the columns "
                "table,family,setting,method,metric,mean,std",
                param_hint="--paper",
            ) from None
    task_names = _split_list(task)
    if not task_names:
        raise typer.BadParameter("give at least one task; see `cgbench tasks`", param_hint="--task")
    parsed_tasks = [parse_task(name, seeds=seed_list) for name in task_names]  # TaskError: exit 1
    predictor_names = _split_list(predictor)
    if not predictor_names:
        raise typer.BadParameter("give at least one predictor", param_hint="--predictor")
    # resolved once: module:Class imported (in its worker), predictions files read and checked
    _progress(f"loading predictor(s) {', '.join(predictor_names)}")
    specs = [p if p == "baselines" else load_predictor(p) for p in dict.fromkeys(predictor_names)]
    if json_path is not None:
        _check_json_path(json_path)

    # 2. the runs; finished tasks are on disk before the next one starts
    results: list = []
    try:
        for parsed in parsed_tasks:
            task_specs = _expand(specs, parsed.family, root)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UnofficialSplitWarning)
                runs = run_evaluation(
                    parsed,
                    task_specs,
                    root=root,
                    metrics=metric_names,
                    n_bootstrap=bootstrap,
                    keep_going=keep_going,
                    progress=_progress,
                )
            for w in dict.fromkeys(str(w.message) for w in caught):
                err_console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
            render_table(runs, paper=reference)
            results += runs
            if json_path is not None:
                write_json(results, json_path)
    except BaseException:
        if json_path is not None and results:
            err_console.print(
                f"stopped: the {len(results)} record(s) of the finished task(s) are in {json_path}",
                highlight=False,
            )
        raise
    if json_path is not None:
        err_console.print(f"wrote {len(results)} record(s) to {json_path}")
    if any(r.error for r in results):
        raise typer.Exit(1)


def _label_status(tasks: list, root: Path | None) -> dict[str, str]:
    """task name -> whether its label is in the built store, and what provides it when not."""
    import numpy as np

    from cgbench.benchmarks.store import StoreError, open_dataset
    from cgbench.benchmarks.tasks import label_provider

    stores: dict[str, object] = {}
    checked: dict[str, dict[str, str]] = {}  # family -> label name -> status (whole family)
    out: dict[str, str] = {}
    for t in tasks:
        if t.family not in stores:
            try:
                stores[t.family] = open_dataset(t.family, root=root)
            except (StoreError, OSError):
                stores[t.family] = None
        ds = stores[t.family]
        provider = label_provider(t.family, t.label_name)
        if ds is None:
            out[t.name] = f"not built: `cgbench build {t.family}`"
            continue
        if t.label not in ds.schema.names:
            out[t.name] = f"no: needs {provider}"
            continue
        if t.label_name in checked.get(t.family, {}) and t.subset_filter is None:
            out[t.name] = checked[t.family][t.label_name]
            continue
        cols = [t.label] + ([t.subset_filter.column] if t.subset_filter else [])
        table = ds.table(cols)
        values = table.column(t.label).to_numpy(zero_copy_only=False).astype(float)
        if t.subset_filter is not None:
            keep = [v == t.subset_filter.value for v in table.column(t.subset_filter.column).to_pylist()]
            values = values[keep]
        finite = int(np.isfinite(values).sum())
        if finite == len(values):
            out[t.name] = "yes"
        elif finite == 0:
            out[t.name] = f"no: needs {provider}"
        else:
            out[t.name] = f"{finite:,}/{len(values):,} archs"
        if t.subset_filter is None:
            checked.setdefault(t.family, {})[t.label_name] = out[t.name]
    return out


@fail_cleanly
def tasks(
    family: Annotated[str | None, typer.Option(help="Only tasks on (or from) this family.")] = None,
    root: Annotated[
        Path | None, typer.Option(help="Store root (default $CGBENCH_HOME or ~/.cache/cgbench).")
    ] = None,
) -> None:
    """List the official tasks (any name of the same form is accepted by `evaluate`), in their
    shell-safe spelling, and whether each task's label is in the built store."""
    from cgbench.benchmarks.tasks import LABELS, SUBSETS, official_tasks

    if family is not None and family not in LABELS:
        raise typer.BadParameter(
            f"unknown family {family!r}; known: {', '.join(sorted(LABELS))}", param_hint="--family"
        )
    chosen = [t for t in official_tasks() if family is None or family in (t.family, t.source)]
    status = _label_status(chosen, root)
    table = Table(
        title="cgbench tasks: [SOURCE~]FAMILY[-SUBSET]/LABEL:PROTOCOL "
        "(shell-safe; 'SOURCE->FAMILY' quoted works too)",
        title_justify="left",
    )
    table.add_column("task", style="bold", no_wrap=True)
    table.add_column("label column", no_wrap=True)
    table.add_column("label in store")
    table.add_column("protocol")
    needs: dict[str, str] = {}  # a status naming a command is printed below the table, unwrapped
    for t in chosen:
        state = status[t.name]
        if state.startswith(("no: ", "not built: ")):
            short, _, what = state.partition(": ")
            key = f"{t.family}/{t.label_name}" if short == "no" else t.family
            needs[key] = what
            state = f"{short} (see below)"
        table.add_row(t.shell_name, t.label, state, t.description.split(" [", 1)[0])
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)
    for fam, labels in LABELS.items():
        if family is None or family == fam:
            subsets = ", ".join(f"-{k}: {v.description}" for k, v in SUBSETS.get(fam, {}).items())
            console.print(
                f"{fam}: labels {', '.join(labels)}" + (f"; subsets {subsets}" if subsets else ""),
                soft_wrap=True,
            )
    for key, what in needs.items():
        line = f"{key}: {what}" if "/" in key else f"{key}: not built: {what}"
        console.print(line, soft_wrap=True, highlight=False)
    console.print(
        "fine-tune-N draws a fresh N-arch sample per seed (the paper code's protocol); "
        "fine-tune-N-fixed uses one sample for every seed.",
        soft_wrap=True,
    )
