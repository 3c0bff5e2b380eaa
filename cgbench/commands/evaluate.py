"""``cgbench evaluate`` and ``cgbench tasks``: score predictors on benchmark tasks."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cgbench.commands.errors import fail_cleanly

err_console = Console(stderr=True)

#: ``--predictor baselines``: the paper's training-free baselines (zero-cost proxies the store has)
BASELINES = ("flops", "params", "zc:synflow", "zc:jacov", "zc:snip", "zc:fisher")


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``tasks`` to ``app``."""
    app.command("evaluate")(evaluate)
    app.command("tasks")(tasks)


def _split_list(values: list[str]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _expand(predictors: list[str], family: str, root: Path | None) -> list[str]:
    """Replace ``baselines`` by :data:`BASELINES`, keeping the proxies the store has."""
    if "baselines" not in predictors:
        return predictors
    from cgbench.benchmarks.store import open_dataset

    names = set(open_dataset(family, root=root).schema.names)
    found = [p for p in BASELINES if not p.startswith("zc:") or f"zc_{p[3:]}" in names]
    out: list[str] = []
    for p in predictors:
        out += found if p == "baselines" else [p]
    return list(dict.fromkeys(out))


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
    """Score predictors on tasks; each table shows the random predictor of the task first."""
    from cgbench.benchmarks.tasks import parse_task
    from cgbench.eval.metrics import get_metric
    from cgbench.eval.protocols import UnofficialSplitWarning
    from cgbench.eval.protocols import evaluate as run_evaluation
    from cgbench.eval.results import paper_reference, render_table, write_json

    metric_names = _split_list([metrics])
    for name in metric_names:  # unknown names fail before any data is read
        try:
            get_metric(name)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--metrics") from None
    seed_list = None
    if seeds is not None:
        try:
            seed_list = [int(s) for s in _split_list([seeds])]
        except ValueError:
            raise typer.BadParameter(f"--seeds takes integers, got {seeds!r}") from None
    reference = paper_reference(paper) if paper is not None else None
    results = []
    for name in _split_list(task):
        parsed = parse_task(name, seeds=seed_list)
        specs = _expand(_split_list(predictor), parsed.family, root)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnofficialSplitWarning)
            runs = run_evaluation(
                parsed,
                specs,
                root=root,
                metrics=metric_names,
                n_bootstrap=bootstrap,
                keep_going=keep_going,
            )
        for w in {str(w.message) for w in caught}:
            err_console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
        render_table(runs, paper=reference)
        results += runs
    if json_path is not None:
        write_json(results, json_path)
        err_console.print(f"wrote {len(results)} record(s) to {json_path}")
    if any(r.error for r in results):
        raise typer.Exit(1)


def tasks(
    family: Annotated[str | None, typer.Option(help="Only tasks on this family.")] = None,
) -> None:
    """List the official tasks (any name of the same form is accepted by `evaluate`)."""
    from cgbench.benchmarks.tasks import LABELS, SUBSETS, official_tasks

    table = Table(title="cgbench tasks: [SOURCE->]FAMILY[-SUBSET]/LABEL:PROTOCOL", title_justify="left")
    table.add_column("task", style="bold", no_wrap=True)
    table.add_column("label column", no_wrap=True)
    table.add_column("protocol")
    for t in official_tasks():
        if family is None or family in (t.family, t.source):
            table.add_row(t.name, t.label, t.description.split(" [", 1)[0])
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
    for fam, labels in LABELS.items():
        if family is None or family == fam:
            subsets = ", ".join(f"-{k}: {v.description}" for k, v in SUBSETS.get(fam, {}).items())
            console.print(f"{fam}: labels {', '.join(labels)}" + (f"; subsets {subsets}" if subsets else ""))
