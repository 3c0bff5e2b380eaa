"""One place that turns user-facing failures into one line (problem + fix) and an exit code.

Commands print through :func:`say` / :func:`warn` / :func:`fail`: plain lines that are never
wrapped (a command or path stays on one line whatever the terminal width). :func:`fail_cleanly`
wraps a command so that cgbench's own errors, operating-system errors (a read-only or missing
folder, a file where a folder should be) and Arrow read errors (a damaged Parquet shard) print
``error: ...`` and exit 1, and Ctrl-C prints what happens next and exits 130. ``cgbench --debug``
(or ``$CGBENCH_DEBUG=1``) keeps the traceback. An exception raised by a user's predictor code
is not translated: its traceback is the user's information.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

F = TypeVar("F", bound=Callable)

#: exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it
EXIT_INTERRUPTED = 130

_DEBUG = False
_PACKAGE = Path(__file__).resolve().parents[1]
#: folders of cgbench's own code (installed: the package; in a checkout also the stage folders)
_STAGES = ("cg", "loaders", "benchmarks", "eval", "leaderboard")
_OWN_CODE = tuple(str(folder) + os.sep for folder in [_PACKAGE, *(_PACKAGE.parent / s for s in _STAGES)])


def set_debug(enabled: bool) -> None:
    """Keep tracebacks (``cgbench --debug``) instead of one-line errors."""
    global _DEBUG
    _DEBUG = enabled


def debug_enabled() -> bool:
    """Whether ``--debug`` or ``$CGBENCH_DEBUG`` asked for tracebacks."""
    return _DEBUG or os.environ.get("CGBENCH_DEBUG", "") not in ("", "0")


def console(stderr: bool = True) -> Console:
    """A console that never wraps or highlights (messages hold commands and paths)."""
    return Console(stderr=stderr, soft_wrap=True, highlight=False)


def say(message: str) -> None:
    """Print a plain line on stdout (no markup, never wrapped)."""
    console(stderr=False).print(message, markup=False)


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr (never wrapped)."""
    console().print(f"[yellow]warning:[/yellow] {escape(message)}")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr and return the ``typer.Exit`` to raise."""
    console().print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


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
    from cgbench.zerocost.data import BatchError
    from cgbench.zerocost.proxies import ProxyError

    return (
        BuildError, SourceError, PublishError, StoreError, LoaderError, GraphError, UnsupportedOpError,
        TaskError, EvalError, ValidationError, PredictorError, ProtocolError, HiddenColumnError,
        UnknownColumnError, SubmissionError,
        BatchError, ProxyError, EngineError,
    )  # fmt: skip


# ---------------------------------------------------------------------------- describe
_DATA_SUFFIXES = (".parquet", ".arrow", ".json", ".pth", ".pkl", ".zip", ".csv", ".tfrecord")
_PATH_IN_TEXT = re.compile(r"""['"]?(/[^\s'"]+)['"]?""")
_FIX = {
    "EACCES": "check its permissions or choose another folder (e.g. --root)",
    "EPERM": "check its permissions or choose another folder (e.g. --root)",
    "EROFS": "the file system is read-only: choose a writable folder (e.g. --root)",
    "ENOSPC": "the disk is full: free space or choose another folder (e.g. --root)",
    "EDQUOT": "the disk quota is exceeded: free space or choose another folder (e.g. --root)",
    "EEXIST": "a file is in the way: move it, or choose another path (e.g. --root)",
    "ENOTDIR": "a parent of it is a file, not a folder: choose another path (e.g. --root)",
    "EISDIR": "it is a folder: give a file name",
    "ENOENT": "check the path (a store or output folder must be creatable: not under /proc)",
}


def _frames(tb: TracebackType | None) -> list[tuple[str, str, dict]]:
    out = []
    while tb is not None:
        code = tb.tb_frame.f_code
        out.append((code.co_filename, code.co_name, tb.tb_frame.f_locals))
        tb = tb.tb_next
    return out


def _from_arrow(err: BaseException) -> bool:
    try:
        from pyarrow.lib import ArrowException
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return False
    if isinstance(err, ArrowException):
        return True
    return any("pyarrow" in f.replace(os.sep, "/") for f, _, _ in _frames(err.__traceback__)[-3:])


def _data_file(err: BaseException) -> str | None:
    """The data file an Arrow error is about: named in the message, or a path held by the
    innermost frame that has one."""
    for match in _PATH_IN_TEXT.finditer(str(err)):
        if match.group(1).endswith(_DATA_SUFFIXES):
            return match.group(1)
    for _, _, local in reversed(_frames(err.__traceback__)):
        for value in local.values():
            if isinstance(value, str | Path) and str(value).endswith(_DATA_SUFFIXES):
                return str(value)
    return None


def _family(err: BaseException) -> str | None:
    """The family whose data cgbench's own code was reading when ``err`` was raised."""
    from cgbench.loaders.registry import family_names

    names = set(family_names())
    for filename, _, local in reversed(_frames(err.__traceback__)):
        if filename.startswith(_OWN_CODE):
            value = local.get("family")
            value = getattr(value, "name", value)
            if isinstance(value, str) and value in names:
                return value
    return None


def from_user_code(err: BaseException) -> bool:
    """True when ``err`` was raised inside a user's predictor (a method that cgbench's harness
    called on a predictor defined outside cgbench): its traceback belongs to the user.
    An exception that came back from a ``module:Class`` predictor's worker process
    (``eval/worker.py`` sets ``remote_where`` for any error that is not cgbench's own) counts too."""
    if getattr(err, "remote_where", None):
        return True
    frames = _frames(err.__traceback__)
    for i, (filename, name, _) in enumerate(frames[:-1]):
        if name in ("_predict_once", "call_fit") and filename.startswith(_OWN_CODE):
            callee = frames[i + 1][0]
            if not callee.startswith(_OWN_CODE) and "site-packages" not in callee:
                return True
    return False


def describe(err: BaseException) -> str | None:
    """One line naming the problem and the fix for an OS or Arrow error, else ``None``."""
    if isinstance(err, typer.Exit | typer.Abort | SystemExit | KeyboardInterrupt):
        return None
    if _from_arrow(err):
        what = (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(".")
        where, family = _data_file(err), _family(err)
        subject = f"{where} is damaged or not a data file" if where else "a data file could not be read"
        if family:
            return (
                f"{subject} ({what}); check the {family} store with `cgbench info {family} --verify`, "
                f"then rebuild it with `cgbench build {family}` (same options as before)"
            )
        return (
            f"{subject} ({what}); find damaged shards with `cgbench info --verify`, "
            "then rebuild that family (`cgbench build FAMILY`) or re-download the file"
        )
    if not isinstance(err, OSError):
        return None
    import errno as errno_names

    code = errno_names.errorcode.get(err.errno or 0, "")
    reason = err.strerror or " ".join(str(err).split()) or type(err).__name__
    if err.filename is None:
        fix = _FIX.get(code, "check the paths and the network, or rerun with `cgbench --debug ...`")
        return f"{reason}; {fix}"
    where = f"{err.filename} -> {err.filename2}" if err.filename2 else str(err.filename)
    return f"{where}: {reason.lower() if reason[:1].isupper() else reason}; {_FIX.get(code, 'check it')}"


# ---------------------------------------------------------------------------- the wrapper
def fail_cleanly(command: F | None = None, *, on_interrupt: str | None = None) -> F | Callable[[F], F]:
    """Wrap a typer command: cgbench, OS and Arrow errors print one ``error: ...`` line and exit
    1; Ctrl-C prints ``on_interrupt`` (default: ``interrupted``) and exits 130. Use as
    ``@fail_cleanly`` or ``@fail_cleanly(on_interrupt="...")``."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except typer.Exit:
                raise
            except KeyboardInterrupt:
                if debug_enabled():
                    raise
                console().print(f"[yellow]{escape(on_interrupt or 'interrupted')}[/yellow]")
                raise typer.Exit(EXIT_INTERRUPTED) from None
            except Exception as err:
                if debug_enabled() or from_user_code(err):
                    raise
                message = str(err) if isinstance(err, user_errors()) else describe(err)
                if message is None:
                    raise
                raise fail(message) from None

        return wrapper  # type: ignore[return-value]

    return decorate(command) if command is not None else decorate


def install_debug_option(app: typer.Typer) -> None:
    """Add the global ``--debug`` flag to ``app``."""

    @app.callback()
    def _root(
        debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    ) -> None:
        set_debug(debug)
