"""The ``cgbench`` command line. Each command group lives in ``cgbench.commands.<name>``."""

from __future__ import annotations

import typer

from cgbench.commands import build, download, evaluate, leaderboard
from cgbench.commands import gennape as _gennape

app = typer.Typer(
    name="cgbench",
    help="Unified computation-graph benchmarks for neural-architecture performance predictors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _group in (build, download, evaluate, leaderboard):
    _group.register(app)
_gennape.register(app)  # cgbench import gennape (issue 10)


def main() -> None:
    app()
