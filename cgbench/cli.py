"""The ``cgbench`` command line. Each command group lives in ``cgbench.commands.<name>``."""

from __future__ import annotations

from typing import Any

import typer
import typer.core

from cgbench.commands import build, download, evaluate, leaderboard, proxies, reproduce
from cgbench.commands import gennape as _gennape
from cgbench.commands.errors import install_debug_option


class _PlainErrorsGroup(typer.core.TyperGroup):
    """Usage errors as plain ``Error: ...`` lines (rich's boxed panel wraps paths and commands
    at the terminal width)."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        return typer.core._main(
            self, args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=standalone_mode,
            windows_expand_args=windows_expand_args, rich_markup_mode=None, **extra,
        )  # fmt: skip


app = typer.Typer(
    name="cgbench",
    cls=_PlainErrorsGroup,
    help="Unified computation-graph benchmarks for neural-architecture performance predictors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _group in (build, download, evaluate, leaderboard, proxies, reproduce):
    _group.register(app)
install_debug_option(app)  # cgbench --debug COMMAND ...: full tracebacks
_gennape.register(app)  # cgbench import gennape (issue 10)


def main() -> None:
    app()
