"""One place that turns cgbench's user-facing errors into a clean message and exit code 1."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

F = TypeVar("F", bound=Callable)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user (no traceback).

    The evaluation harness's errors all derive from :class:`cgbench.eval.validation.EvalError`
    (``ValidationError``, ``PredictorError``, ``ProtocolError``, ``HiddenColumnError``,
    ``UnknownColumnError``); they are listed one by one too, so that this tuple names every
    user-facing type."""
    from cgbench.benchmarks.build import BuildError
    from cgbench.benchmarks.download import SourceError
    from cgbench.benchmarks.engines import EngineError
    from cgbench.benchmarks.publish import PublishError
    from cgbench.benchmarks.store import StoreError
    from cgbench.benchmarks.tasks import TaskError
    from cgbench.cg import GraphError, UnsupportedOpError
    from cgbench.eval.data import HiddenColumnError, UnknownColumnError
    from cgbench.eval.predictor import PredictorError
    from cgbench.eval.protocols import ProtocolError
    from cgbench.eval.validation import EvalError, ValidationError
    from cgbench.leaderboard.submission import SubmissionError
    from cgbench.loaders.base import LoaderError

    return (
        BuildError, SourceError, PublishError, StoreError, LoaderError, GraphError, UnsupportedOpError,
        TaskError, EvalError, ValidationError, PredictorError, ProtocolError, HiddenColumnError,
        UnknownColumnError, SubmissionError,
        EngineError,
    )  # fmt: skip


def fail_cleanly(command: F) -> F:
    """Wrap a typer command: known errors print ``error: ...`` and exit 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except user_errors() as err:
            Console(stderr=True).print(f"[red]error:[/red] {escape(str(err))}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
