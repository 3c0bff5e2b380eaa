"""``cgbench leaderboard``: submit (score) a submission, seed baselines, build the static site."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cgbench.commands.errors import fail_cleanly

_out = Console(highlight=False, markup=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)

group = typer.Typer(
    name="leaderboard",
    help="Score submissions through cgbench.eval and build the static leaderboard site.",
    no_args_is_help=True,
)

ResultsOption = Annotated[
    Path, typer.Option("--results", help="Results directory (one folder per entry).", show_default=True)
]
RootOption = Annotated[
    Path | None,
    typer.Option(help="Data root (default: $CGBENCH_HOME or ~/.cache/cgbench).", show_default=False),
]
BootstrapOption = Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples for intervals.")]


def register(app: typer.Typer) -> None:
    """Add the ``leaderboard`` command group to ``app``."""
    app.add_typer(group)


@group.command("submit")
@fail_cleanly
def submit(
    directory: Annotated[Path, typer.Argument(help="Submission folder with submission.yaml.")],
    results: ResultsOption = Path("leaderboard-results"),
    root: RootOption = None,
    bootstrap: BootstrapOption = 200,
) -> None:
    """Validate DIRECTORY, score each of its tasks as `cgbench evaluate` would, store the records."""
    from cgbench.leaderboard import score_submission

    _err.print(f"scoring {directory} ...")
    scored = score_submission(directory, results, root=root, n_bootstrap=bootstrap)
    for path in scored.records:
        _out.print(f"wrote {path}")
    _out.print(
        f"{len(scored.records)} task(s) scored; build the site with: cgbench leaderboard build {results}"
    )


@group.command("baselines")
@fail_cleanly
def baselines(
    task: Annotated[list[str], typer.Option("--task", help="Task name; repeat or comma-separate.")],
    predictor: Annotated[
        list[str] | None,
        typer.Option(
            "--predictor", help="Built-in predictors (default: random, flops, params and stored proxies)."
        ),
    ] = None,
    results: ResultsOption = Path("leaderboard-results"),
    root: RootOption = None,
    bootstrap: BootstrapOption = 200,
) -> None:
    """Score the built-in predictors on tasks and store them as reference entries."""
    from cgbench.benchmarks.tasks import parse_task
    from cgbench.commands.evaluate import BASELINES
    from cgbench.leaderboard import score_baselines

    tasks = [t.strip() for value in task for t in value.split(",") if t.strip()]
    names = [p.strip() for value in (predictor or []) for p in value.split(",") if p.strip()]
    if not names:
        from cgbench.benchmarks.store import open_dataset

        columns = set().union(*(open_dataset(parse_task(t).family, root=root).schema.names for t in tasks))
        names = [p for p in BASELINES if not p.startswith("zc:") or f"zc_{p[3:]}" in columns]
    for entry in score_baselines(names, tasks, results, root=root, n_bootstrap=bootstrap):
        _out.print(f"wrote {entry.directory} ({len(entry.records)} task(s))")


@group.command("build")
@fail_cleanly
def build(
    results: Annotated[Path, typer.Argument(help="Results directory written by submit/baselines.")],
    out: Annotated[Path, typer.Option("--out", help="Site folder to write (replaced atomically).")] = Path(
        "leaderboard-site"
    ),
    publish: Annotated[
        Path | None,
        typer.Option("--publish", help="Also copy the site to this folder (served by a static host)."),
    ] = None,
    paper: Annotated[
        Path | None,
        typer.Option("--paper", help="paper_tables.csv for the reference rows (default: shipped copy)."),
    ] = None,
) -> None:
    """Render the static site (HTML, SVG plots, results.json) from RESULTS."""
    from cgbench.leaderboard import build_site

    report = build_site(results, out, paper=paper, publish=publish)
    for folder, why in report.refused.items():
        _err.print(f"refused {folder}: {why}")
    _out.print(
        f"site: {report.out / 'index.html'} ({len(report.entries)} entries, {len(report.pages)} pages)"
    )
    if publish is not None:
        _out.print(f"published to {publish}")
