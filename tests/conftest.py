"""Shared fixtures: the offline upstream mirror, as a directory and served over HTTP."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_TEST_MIRROR = "CGBENCH_TEST_MIRROR"


def _mirror_path() -> Path:
    env = os.environ.get(ENV_TEST_MIRROR)
    return (Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "upstream").resolve()


@pytest.fixture(scope="session")
def upstream_dir() -> Path:
    """The offline mirror of upstream files (layout ``<family>/<file>``); read-only: never modify.

    Located at ``../shared/data/upstream`` beside the repository, or ``$CGBENCH_TEST_MIRROR``;
    tests using it are skipped when it is absent.
    """
    path = _mirror_path()
    if not path.is_dir():
        pytest.skip(
            f"upstream mirror not found at {path}: set {ENV_TEST_MIRROR} to a directory with the "
            "layout <family>/<file> (see shared/data/SOURCES.md)"
        )
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def serve_directory(
    directory: Path, handler: type[http.server.BaseHTTPRequestHandler] = _QuietHandler
) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start a threaded HTTP server on 127.0.0.1 (ephemeral port) serving ``directory``.

    Returns the server (call ``shutdown()`` and ``server_close()``) and its base URL.
    """
    factory = functools.partial(handler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}/"


@pytest.fixture(scope="session")
def upstream_http_mirror(upstream_dir: Path) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT/``) of a local HTTP server serving :func:`upstream_dir`."""
    server, url = serve_directory(upstream_dir)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_serve() -> Iterator:
    """``serve(directory, handler=None) -> base URL``; servers stop at the end of the test."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(directory: Path, handler: type[http.server.BaseHTTPRequestHandler] | None = None) -> str:
        server, url = serve_directory(directory, handler or _QuietHandler)
        servers.append(server)
        return url

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cgbench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data root set as ``$CGBENCH_HOME``; ``$CGBENCH_MIRROR`` is cleared."""
    root = tmp_path / "cgbench_home"
    monkeypatch.setenv("CGBENCH_HOME", str(root))
    monkeypatch.delenv("CGBENCH_MIRROR", raising=False)
    return root


# ---------------------------------------------------------------------------- built stores
def _build(root: Path, mirror: Path, limit: int | None, workers: int) -> Path:
    from cgbench.benchmarks.build import build_family

    build_family("nb201", root=root, mirror=mirror, limit=limit, workers=workers, chunk_size=500)
    return root


@pytest.fixture(scope="session")
def nb201_store(upstream_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a store holding the first 300 NB-201 archs (built once per session)."""
    return _build(tmp_path_factory.mktemp("nb201_store"), upstream_dir, 300, 1)


@pytest.fixture(scope="session")
def nb201_full_store(upstream_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a store holding all 15,625 NB-201 archs (built once per session, ~40 s)."""
    return _build(tmp_path_factory.mktemp("nb201_full"), upstream_dir, None, os.cpu_count() or 1)


# ---------------------------------------------------------------------------- terminal width
@pytest.fixture(autouse=True, scope="session")
def _fixed_terminal_width() -> Iterator[None]:
    """Rich sizes its output from ``$COLUMNS``: pin it so that no test depends on the terminal
    the suite runs in (a test that checks wrapping sets its own width)."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    yield
    if saved is None:
        os.environ.pop("COLUMNS", None)
    else:
        os.environ["COLUMNS"] = saved
