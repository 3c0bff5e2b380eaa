"""The ``cgbench`` command line. Each command group lives in ``cgbench.commands.<name>``."""

from __future__ import annotations

import typer

from cgbench.commands import build, download, evaluate, leaderboard, reproduce

app = typer.Typer(
    name="cgbench",
    help="Unified computation-graph benchmarks for neural-architecture performance predictors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _group in (build, download, evaluate, leaderboard, reproduce):
    _group.register(app)


def main() -> None:
    app()
