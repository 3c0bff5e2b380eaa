"""The project's one sha256 helper and one atomic-write helper (every stage uses these).

Temporary files get unique names (process id and random token, beside the target), never a fixed
``.tmp`` suffix, so two processes writing the same target never share or delete each other's
temporary file; the target is replaced in one ``os.replace`` after an ``fsync``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_digest(*packages: str) -> str:
    """Hex sha256 over the source files (``*.py``, sorted by name) of the named packages, e.g.
    ``source_digest("cgbench.predictors")``: a cache key that changes when their code does."""
    import importlib

    h = hashlib.sha256()
    for name in packages:
        folder = Path(importlib.import_module(name).__file__).parent
        for path in sorted(folder.glob("*.py")):
            h.update(f"{name}/{path.name}".encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory (makes a rename in it durable); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """A unique temporary path beside ``path``; when the block ends without error the file written
    there replaces ``path`` in one ``os.replace`` (after an ``fsync`` if ``durable``); otherwise it
    is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.part")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # umask applies
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write(path: str | os.PathLike, data: bytes | str, *, durable: bool = True) -> None:
    """Write ``data`` (``str`` as UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(payload)
