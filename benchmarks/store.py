"""The on-disk store: ``ROOT/<family>/part-*.parquet`` + ``ROOT/<family>/manifest.json``.

``ROOT/<family>`` is a symbolic link to a finished build directory under
``ROOT/.builds/<family>/``. A new build is written elsewhere and published by replacing the link
in one ``os.replace``: readers see the old dataset or the new one, never a mix, and a build that
fails or is killed leaves the previous dataset in place.

Readers (:class:`CGDataset`) stream row groups and give pyarrow tables, CGs (``ds[i]``, slices:
random access through a row-group index) and PyTorch Geometric batches. An open reader holds a
shared lock on its build, which rebuilds never delete while it is held. Every open compares each
shard with its manifest entry and the stat stamped at publication (hashing a shard whose stat
changed); ``verify`` hashes all of them. A failed read names the shard and the repair. The
Parquet files are plain, so ``datasets.load_dataset("parquet", data_files=...)`` reads them too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cgbench.benchmarks.schema import GRAPH_COLUMNS, SCHEMA_VERSION
from cgbench.cg import OPS, ComputationGraph
from cgbench.files import atomic_path, atomic_write, fsync_dir, sha256_file

__all__ = ["CGDataset", "StoreError", "open_dataset", "sha256_file", "atomic_write_bytes", "check_family"]

MANIFEST = "manifest.json"
BUILDS = ".builds"
#: In each finished build directory: the stat of every shard when it was published (the cheap
#: check on open) and the lock file readers hold shared while a dataset is open.
STAMPS = ".stamps.json"
READERS = ".readers"
_STAMP_FIELDS = ("size", "mtime_ns", "ctime_ns", "ino", "dev")

atomic_write_bytes = atomic_write  # the one atomic-write helper, under its historical name here


class StoreError(OSError):
    """A dataset that is missing, incomplete or does not match its manifest."""


def check_family(family: str) -> str:
    """``family`` if it is a registered family name; else :class:`StoreError`.

    Every store entry point calls this first, so a name can never become a path outside the
    store (``../x``, ``/tmp/x``) or one of the store's own folders (``.builds``, ``upstream``).
    """
    from cgbench.loaders.registry import FAMILIES

    if not isinstance(family, str) or family not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise StoreError(f"unknown family {family!r}; known families: {known}")
    return family


def default_root() -> Path:
    """The cgbench data root: ``$CGBENCH_HOME``, else ``~/.cache/cgbench``."""
    env = os.environ.get("CGBENCH_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cgbench"


def resolve_root(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root is not None else default_root()


def _repair_hint(family: str) -> str:
    return (
        f"check every shard with `cgbench info {family} --verify`, then rebuild with "
        f"`cgbench build {family}` (or install it again with `cgbench download {family} --from ...`)"
    )


#: Parquet row groups are the unit random access reads and decodes, and decoding the nested node
#: and edge columns costs about the same per node whatever the group size (roughly 0.3 us per
#: node, 70 us per NB-201 row), so groups are sized in nodes: about ``ROW_GROUP_NODES`` nodes
#: each (NB-201: 8 rows, about 1 ms to read and decode one), between ``ROW_GROUP_ROWS_MIN`` and
#: ``ROW_GROUP_ROWS_MAX`` rows. Tables without graph columns get ``ROW_GROUP_ROWS_MAX``-row groups.
#: Column statistics are not written: nothing in cgbench reads them, and with ~80 columns per small group
#: they would double the files.
ROW_GROUP_NODES = 2048
ROW_GROUP_ROWS_MIN = 4
ROW_GROUP_ROWS_MAX = 1024
#: Dictionary-encoded columns (nested columns are named by their leaf path).
_DICTIONARY_COLUMNS = ["family", "dataset", "schema_version", "node_op.list.element"]


def row_group_rows(table: pa.Table) -> int:
    """Rows per row group for ``table``: about ``ROW_GROUP_NODES`` nodes per group."""
    if "node_op" not in table.column_names or table.num_rows == 0:
        return ROW_GROUP_ROWS_MAX
    nodes = pc.sum(pc.list_value_length(table.column("node_op"))).as_py() or 0
    per_row = max(1.0, nodes / table.num_rows)
    return int(min(ROW_GROUP_ROWS_MAX, max(ROW_GROUP_ROWS_MIN, ROW_GROUP_NODES // per_row)))


def write_parquet_atomic(table: pa.Table, path: Path, row_group_size: int | None = None) -> str:
    """Write ``table`` as zstd Parquet to ``path`` atomically and durably; returns its sha256.
    ``row_group_size`` defaults to :func:`row_group_rows`."""
    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            row_group_size=row_group_size or row_group_rows(table),
            use_dictionary=_DICTIONARY_COLUMNS,
            write_statistics=False,
            write_page_checksum=True,  # every read verifies each page (page_checksum_verification)
        )
        digest = sha256_file(tmp)
    return digest


def _signature(st: os.stat_result) -> dict[str, int]:
    return {name: getattr(st, f"st_{name}") for name in _STAMP_FIELDS}


def write_stamps(build_dir: Path, manifest: dict[str, Any]) -> None:
    """Record the stat of every shard of a finished build (cheaply compared on every open)."""
    stamps = {f["name"]: _signature((build_dir / f["name"]).stat()) for f in manifest["files"]}
    atomic_write(build_dir / STAMPS, json.dumps(stamps, indent=0, sort_keys=True))


def _try_lock(path: Path, mode: int) -> int | None:
    """An fd holding ``flock(mode | LOCK_NB)`` on ``path``, or None if another process holds a
    conflicting lock. A lock file that cannot be opened counts as unlocked (-1)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:  # a file system without flock
        return fd
    return fd


def _remove_unused_build(build: Path) -> None:
    """Delete an old build directory unless a reader holds it open (then a later publish does)."""
    fd = _try_lock(build / READERS, fcntl.LOCK_EX)
    if fd is None:
        return
    try:
        shutil.rmtree(build, ignore_errors=True)
    finally:
        if fd >= 0:
            os.close(fd)


def commit_dataset(root: Path, family: str, build_dir: Path) -> Path:
    """Publish ``build_dir`` (holding shards + manifest) as ``ROOT/<family>`` atomically.

    The build that was published until now is kept (readers that resolved it a moment ago can
    still open it), and so is every older build that an open :class:`CGDataset` still reads;
    other older builds under ``ROOT/.builds/<family>/`` are removed. ``ROOT/<family>`` must be
    a link this store made (or absent): a directory cgbench did not write is never moved or
    deleted. Callers hold the family lock: use :func:`publish_build`.
    """
    check_family(family)
    if not (build_dir / MANIFEST).is_file():
        raise StoreError(f"{build_dir}: no {MANIFEST}; refusing to publish an incomplete build")
    builds = (root / BUILDS / family).resolve()
    link = root / family
    if link.exists() and not link.is_symlink():
        raise StoreError(
            f"{link} is a directory not written by cgbench (the store keeps a link there); "
            f"nothing was changed: move it away (or pass another --root) and run the command again"
        )
    previous = link.resolve() if link.is_symlink() else None
    tmp_link = root / f".{family}.link-{os.getpid()}"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(os.path.relpath(build_dir, root), tmp_link)
    os.replace(tmp_link, link)
    fsync_dir(root)
    keep = {build_dir.resolve(), previous}
    for old in builds.iterdir():
        if old.is_dir() and not old.name.endswith(".partial") and old.resolve() not in keep:
            _remove_unused_build(old)
    return link


def new_build_dir(root: Path, family: str, key: str) -> Path:
    """The (resumable) working directory of a build identified by ``key``."""
    path = root / BUILDS / check_family(family) / f"{key}.partial"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def build_lock(
    root: Path, family: str, key: str, on_wait: Callable[[str], None] | None = None
) -> Iterator[bool]:
    """Hold the exclusive lock of build ``key``: a second build with the same options (the same
    working directory) waits for the first, saying so through ``on_wait`` (default: stderr).
    Yields whether it had to wait."""
    path = root / BUILDS / check_family(family) / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    waited = False
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waited = True
            lock.seek(0)
            pid = lock.read().strip() or "?"
            message = (
                f"waiting for another build of {family} (pid {pid}) with the same options to "
                "finish; it will be reused"
            )
            if on_wait is None:
                import sys

                print(message, file=sys.stderr, flush=True)
            else:
                on_wait(message)
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield waited
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def publish_build(root: Path, family: str, partial: Path) -> Path:
    """Finish a complete ``*.partial`` build directory and publish it as ``ROOT/<family>``.

    Renaming to a unique final name, stamping its shards and switching the link happen under an
    exclusive lock per family, so concurrent builds or installs of one family never delete each
    other's finished build; the last one to publish wins. Returns the dataset path.
    """
    lock_path = root / BUILDS / check_family(family) / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}-{time.monotonic_ns() % 10**9:09d}"
            final = partial.with_name(f"{partial.name.removesuffix('.partial')}-{stamp}")
            os.replace(partial, final)
            (final / READERS).touch()
            write_stamps(final, json.loads((final / MANIFEST).read_text()))
            return commit_dataset(root, family, final)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_manifest(build_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write(build_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))


def dataset_path(family: str, root: str | os.PathLike | None = None) -> Path:
    return resolve_root(root) / check_family(family)


def list_families(root: str | os.PathLike | None = None) -> list[str]:
    """Families with a published dataset under ``root``."""
    from cgbench.loaders.registry import FAMILIES

    base = resolve_root(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.name in FAMILIES and (p / MANIFEST).is_file())


# What a ComputationGraph is read from: the graph plus the row's parameter count (each tensor once).
_CG_COLUMNS = [*GRAPH_COLUMNS, "params"]


class CGDataset:
    """A built family: manifest, Arrow tables, computation graphs and PyG batches.

    Indexed like a PyG / OGB dataset: ``len(ds)``, ``ds[i]`` (a :class:`ComputationGraph`),
    ``ds[a:b]`` and ``ds[[i, j, ...]]`` (lists). Random access reads only the Parquet row groups
    that hold the rows asked for (an index built from the Parquet footers), a few decoded row
    groups are kept in a small cache.

    While open, the dataset holds a shared lock on its build directory: rebuilds publish new
    builds beside it and delete it only once every reader has closed it (:meth:`close`, or the
    end of the process).
    """

    def __init__(self, path: Path, manifest: dict[str, Any], lock_fd: int | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self.family: str = manifest["family"]
        self.files = [path / f["name"] for f in manifest["files"]]
        self._lock_fd = lock_fd
        self._parquet: dict[int, pq.ParquetFile] = {}
        self._starts: np.ndarray | None = None  # first row of every row group, then the total
        self._groups: list[tuple[int, int]] = []  # (file index, row group index)
        self._cache: OrderedDict[int, dict[str, Any]] = OrderedDict()

    # ---------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Release the build (a later rebuild may then delete it) and the open files."""
        self._parquet.clear()
        self._cache.clear()
        if self._lock_fd is not None and self._lock_fd >= 0:
            os.close(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> CGDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:  # no module globals here: at interpreter exit they may already be None
            self.close()
        except Exception:  # noqa: BLE001 - a finaliser must not raise
            pass

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_lock_fd=None, _parquet={}, _cache=OrderedDict())  # a copy holds no lock
        return state

    # ---------------------------------------------------------------- basics
    def __len__(self) -> int:
        return int(self.manifest["rows"])

    def __repr__(self) -> str:
        return f"CGDataset(family={self.family!r}, rows={len(self)}, path={str(self.path)!r})"

    @contextlib.contextmanager
    def _reading(self, path: Path) -> Iterator[None]:
        """Turn a failed read of ``path`` into a :class:`StoreError` naming the shard."""
        try:
            yield
        except StoreError:
            raise
        except (OSError, pa.ArrowException) as err:
            raise StoreError(
                f"{path}: cannot read this shard of {self.family!r} ({type(err).__name__}: {err}); "
                f"it is damaged or was changed: {_repair_hint(self.family)}"
            ) from None

    @property
    def schema(self) -> pa.Schema:
        with self._reading(self.files[0]):
            return pq.read_schema(self.files[0])

    def check(self) -> None:
        """The cheap check done on open: every shard exists, has the size the manifest lists, and
        still has the stat recorded when it was published (a shard whose stat changed is hashed)."""
        stamps: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            stamps = json.loads((self.path / STAMPS).read_text())
        changed = False
        for entry, path in zip(self.manifest["files"], self.files):
            try:
                st = path.stat()
            except OSError:
                raise StoreError(
                    f"{path}: listed in {self.path / MANIFEST} but missing; {_repair_hint(self.family)}"
                ) from None
            want = entry.get("bytes")
            if want is not None and st.st_size != want:
                raise StoreError(
                    f"{path}: {st.st_size:,} bytes, the manifest says {want:,} (truncated or damaged); "
                    f"{_repair_hint(self.family)}"
                )
            if stamps.get(entry["name"]) != _signature(st):
                self._verify_one(entry, path)
                stamps[entry["name"]] = _signature(st)
                changed = True
        if changed:
            with contextlib.suppress(OSError):  # a read-only store: hashed again next time
                atomic_write(self.path / STAMPS, json.dumps(stamps, indent=0, sort_keys=True))

    def _verify_one(self, entry: dict[str, Any], path: Path) -> None:
        if not path.is_file():
            raise StoreError(
                f"{path}: listed in {self.path / MANIFEST} but missing; {_repair_hint(self.family)}"
            )
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise StoreError(
                f"{path}: sha256 {digest} does not match the manifest ({entry['sha256']}); the shard "
                f"is damaged: {_repair_hint(self.family)}"
            )

    def verify(self) -> None:
        """Check every shard's sha256 against the manifest (the full check of ``--verify``)."""
        for entry, path in zip(self.manifest["files"], self.files):
            self._verify_one(entry, path)

    # ---------------------------------------------------------------- whole columns
    def table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All rows as one ``pyarrow.Table`` (``columns`` selects a subset)."""
        parts = []
        for i, f in enumerate(self.files):
            with self._reading(f):
                parts.append(self._scan_file(i).read(columns=columns))
        return pa.concat_tables(parts)

    def iter_batches(
        self, batch_size: int = 1024, columns: Sequence[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream record batches shard by shard, row group by row group (bounded memory)."""
        for i, f in enumerate(self.files):
            with self._reading(f):
                yield from self._scan_file(i).iter_batches(batch_size=batch_size, columns=columns)

    def _scan_file(self, i: int) -> pq.ParquetFile:
        """Shard ``i`` opened for one scan, reusing the footer parsed once (small row groups make
        footers large: parsing one per call would cost more than reading a label column)."""
        return pq.ParquetFile(self.files[i], metadata=self._file(i).metadata, page_checksum_verification=True)

    def arch_ids(self) -> list[str]:
        return self.table(["arch_id"]).column("arch_id").to_pylist()

    # ---------------------------------------------------------------- random access
    def _index(self) -> np.ndarray:
        """Row-group index from the Parquet footers: first row of every row group."""
        if self._starts is None:
            counts: list[int] = []
            for i, f in enumerate(self.files):
                with self._reading(f):
                    meta = self._file(i).metadata
                for g in range(meta.num_row_groups):
                    self._groups.append((i, g))
                    counts.append(meta.row_group(g).num_rows)
            starts = np.zeros(len(counts) + 1, dtype=np.int64)
            np.cumsum(counts, out=starts[1:])
            if starts[-1] != len(self):
                raise StoreError(
                    f"{self.path}: the shards hold {starts[-1]} rows, the manifest says {len(self)}; "
                    f"{_repair_hint(self.family)}"
                )
            self._starts = starts
        return self._starts

    def _file(self, i: int) -> pq.ParquetFile:
        """Shard ``i`` opened once per dataset for random access (the footer is parsed once; every
        page read is still checksummed). A dataset pins one build, so these never go stale."""
        if i not in self._parquet:
            with self._reading(self.files[i]):
                self._parquet[i] = pq.ParquetFile(
                    self.files[i],
                    page_checksum_verification=True,
                    pre_buffer=False,  # small row groups: direct reads beat the read-ahead
                )
        return self._parquet[i]

    def _row_group(self, group: int) -> dict[str, Any]:
        """Decoded graph arrays of one row group (small LRU cache)."""
        if group in self._cache:
            self._cache.move_to_end(group)
            return self._cache[group]
        file_index, rg = self._groups[group]
        with self._reading(self.files[file_index]):
            table = self._file(file_index).read_row_group(rg, columns=_CG_COLUMNS, use_threads=False)
        arrays = _node_arrays(table.combine_chunks().to_batches()[0])
        self._cache[group] = arrays
        while len(self._cache) > 8:
            self._cache.popitem(last=False)
        return arrays

    def _positions(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        n = len(self)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(f"index {int(idx[bad][0])} out of range for {self.family} ({n} rows)")
        return np.where(idx < 0, idx + n, idx)

    def graphs(self, indices: Sequence[int] | np.ndarray | None = None) -> list[ComputationGraph]:
        """Computation graphs of all rows, or of the rows at ``indices`` (read row group by row
        group: only the row groups that hold those rows are read, each once)."""
        if indices is None:
            return self._all_graphs()
        rows = self._positions(indices)
        starts = self._index()
        groups = np.searchsorted(starts, rows, side="right") - 1
        out: list[ComputationGraph | None] = [None] * len(rows)
        cached = np.isin(groups, list(self._cache))
        for group in np.unique(groups[cached]):
            arrays = self._cache[int(group)]
            for k in np.flatnonzero(groups == group):
                out[k] = _graph_at(arrays, int(rows[k] - starts[group]))
        needed = np.unique(groups[~cached])
        by_file: dict[int, list[int]] = {}
        for group in needed.tolist():
            by_file.setdefault(self._groups[group][0], []).append(group)
        for file_index, file_groups in by_file.items():  # one read per shard for many rows
            with self._reading(self.files[file_index]):
                table = self._file(file_index).read_row_groups(  # Arrow's threads cost more than they save
                    [self._groups[g][1] for g in file_groups], columns=_CG_COLUMNS, use_threads=False
                )
            arrays = _node_arrays(table.combine_chunks().to_batches()[0])
            # where each row group read starts in ``arrays`` (the groups read may skip others)
            offsets = np.concatenate([[0], np.cumsum([starts[g + 1] - starts[g] for g in file_groups])])
            local = {g: int(offsets[j]) for j, g in enumerate(file_groups)}
            for group in file_groups:
                for k in np.flatnonzero(groups == group):
                    out[k] = _graph_at(arrays, local[group] + int(rows[k] - starts[group]))
        return out  # type: ignore[return-value]

    def _all_graphs(self) -> list[ComputationGraph]:
        return _graphs_of_batches(self.iter_batches(4096, _CG_COLUMNS))

    def graph(self, index: int) -> ComputationGraph:
        """The computation graph of row ``index`` (reads one row group)."""
        return self[index]

    def __getitem__(self, key: int | slice | Sequence[int]) -> Any:
        if isinstance(key, (int, np.integer)):
            row = int(self._positions([key])[0])
            group = int(np.searchsorted(self._index(), row, side="right")) - 1
            return _graph_at(self._row_group(group), row - int(self._starts[group]))
        if isinstance(key, slice):
            return self.graphs(np.arange(len(self))[key])
        if isinstance(key, (str, bytes)):
            raise TypeError(f"{type(self).__name__} indices are ints, slices or int sequences, not {key!r}")
        return self.graphs(list(key))

    def row(self, index: int) -> dict[str, Any]:
        """Every column of row ``index`` as a dict (reads one row group)."""
        row = int(self._positions([index])[0])
        starts = self._index()
        group = int(np.searchsorted(starts, row, side="right") - 1)
        file_index, rg = self._groups[group]
        with self._reading(self.files[file_index]):
            table = self._file(file_index).read_row_group(rg)
        return table.slice(row - int(starts[group]), 1).to_pylist()[0]

    def pyg_batches(self, batch_size: int = 256, label: str | None = "accuracy") -> Iterator[Any]:
        """``torch_geometric.data.Batch`` objects of ``batch_size`` graphs (the last one may be
        smaller), built vectorised; ``y`` holds ``label`` (NaN where missing), ``arch_index``
        the row numbers.
        """
        cols = list(GRAPH_COLUMNS)
        if label is not None:
            cols.append(label)
        start = 0
        for batch in _rebatch(self.iter_batches(batch_size, cols), batch_size):
            yield _to_pyg_batch(batch, label, start)
            start += batch.num_rows


def graphs_from_table(table: pa.Table) -> list[ComputationGraph]:
    """The computation graphs of every row of ``table`` (the graph columns, plus ``params`` when
    present: each parameter tensor counted once), decoded vectorised."""
    return _graphs_of_batches(table.to_batches(max_chunksize=4096))


def _graphs_of_batches(batches: Iterable[pa.RecordBatch]) -> list[ComputationGraph]:
    out: list[ComputationGraph] = []
    for batch in batches:
        arrays = _node_arrays(batch)
        out.extend(_graph_at(arrays, i) for i in range(batch.num_rows))
    return out


def _graph_at(arrays: dict[str, Any], i: int) -> ComputationGraph:
    n0, n1 = arrays["node_ptr"][i], arrays["node_ptr"][i + 1]
    e0, e1 = arrays["edge_ptr"][i], arrays["edge_ptr"][i + 1]
    params = arrays["params"]
    return ComputationGraph(
        ops=arrays["ops"][n0:n1],
        res=arrays["res"][n0:n1],
        weight=arrays["weight"][n0:n1],
        bias=arrays["bias"][n0:n1],
        edges=arrays["edges"][e0:e1],
        input_shape=tuple(arrays["input_shape"][i]),
        num_params=None if params is None or params[i] is None else round(params[i]),
    )


def _rebatch(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Record batches of exactly ``size`` rows (the last may be smaller), across shard ends."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if rows == 0 and batch.num_rows == size:
            yield batch
            continue
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(pending).combine_chunks()
            yield table.slice(0, size).to_batches()[0]
            rest = table.slice(size)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


_OP_VALUE_SET = pa.array(OPS, pa.string())


def _node_arrays(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    """Flat NumPy node/edge arrays of a record batch plus per-graph offsets."""
    ops_col = batch.column("node_op")
    node_ptr = np.asarray(ops_col.offsets) - ops_col.offsets[0].as_py()
    flat_ops = ops_col.flatten()
    ops = pc.index_in(flat_ops, value_set=_OP_VALUE_SET)
    if ops.null_count:
        unknown = pc.filter(flat_ops, pc.is_null(ops)).unique().to_pylist()
        raise StoreError(f"node_op values {unknown[:5]} are not in the op vocabulary")
    edge_col = batch.column("edge_index")
    edge_ptr = np.asarray(edge_col.offsets) - edge_col.offsets[0].as_py()

    def fixed(col: str, width: int, dtype) -> np.ndarray:
        return np.asarray(batch.column(col).flatten().flatten(), dtype=dtype).reshape(-1, width)

    return {
        "node_ptr": node_ptr,
        "edge_ptr": edge_ptr,
        "ops": np.asarray(ops, dtype=np.int16),
        "res": fixed("node_res", 6, np.int32),
        "weight": fixed("node_weight", 4, np.int32),
        "bias": np.asarray(batch.column("node_bias").flatten(), dtype=bool),
        "edges": fixed("edge_index", 2, np.int32),
        "input_shape": batch.column("input_shape").to_pylist(),
        "params": batch.column("params").to_pylist() if "params" in batch.schema.names else None,
    }


def _to_pyg_batch(batch: pa.RecordBatch, label: str | None, start: int):
    import torch
    from torch_geometric.data import Batch

    from cgbench.cg import node_features

    a = _node_arrays(batch)
    n_graphs = batch.num_rows
    node_counts = np.diff(a["node_ptr"])
    edge_counts = np.diff(a["edge_ptr"])
    shift = np.repeat(a["node_ptr"][:-1], edge_counts)
    edge_index = (a["edges"].astype(np.int64) + shift[:, None]).T
    x = node_features(a["ops"], a["res"], a["weight"], a["bias"])
    if label is not None:
        y = batch.column(label).to_numpy(zero_copy_only=False).astype(np.float32)
    else:
        y = np.full(n_graphs, np.nan, dtype=np.float32)
    out = Batch(
        x=torch.from_numpy(x),
        edge_index=torch.from_numpy(np.ascontiguousarray(edge_index)),
        y=torch.from_numpy(y),
        batch=torch.from_numpy(np.repeat(np.arange(n_graphs), node_counts)),
        ptr=torch.from_numpy(a["node_ptr"].astype(np.int64)),
        arch_index=torch.arange(start, start + n_graphs),
    )
    out._num_graphs = n_graphs
    node_ptr = torch.from_numpy(a["node_ptr"].astype(np.int64))
    graph_ptr = torch.arange(n_graphs + 1)
    out._slice_dict = {
        "x": node_ptr,
        "edge_index": torch.from_numpy(a["edge_ptr"].astype(np.int64)),
        "y": graph_ptr,
        "arch_index": graph_ptr,
    }
    zeros = torch.zeros(n_graphs, dtype=torch.long)
    out._inc_dict = {"x": zeros, "edge_index": node_ptr[:-1], "y": zeros, "arch_index": zeros}
    return out


def open_dataset(
    family: str, root: str | os.PathLike | None = None, *, verify: bool = False, check: bool = True
) -> CGDataset:
    """The built dataset of ``family`` under ``root`` (default :func:`default_root`).

    Raises :class:`StoreError` saying how to build or download it when it is missing, and naming
    the shard and the repair when a shard is missing, has the wrong size or changed since it was
    published (``check``); ``verify`` hashes every shard.
    """
    check_family(family)
    for _ in range(5):
        path = dataset_path(family, root).resolve()  # pin this build: a rebuild cannot mix into it
        lock_fd = _try_lock(path / READERS, fcntl.LOCK_SH)
        if lock_fd is None or (lock_fd >= 0 and not (path / MANIFEST).is_file()):
            if lock_fd is not None:
                os.close(lock_fd)
            time.sleep(0.05)  # being deleted after a rebuild: resolve the link again
            continue
        break
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise StoreError(
            f"no {family!r} dataset at {path}: run `cgbench build {family}` "
            f"(or `cgbench download {family}`), or pass the right --root / set CGBENCH_HOME"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise StoreError(f"{manifest_path}: not valid JSON ({err}); rebuild the dataset") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise StoreError(
            f"{manifest_path}: schema {manifest.get('schema_version')!r}, this cgbench reads "
            f"{SCHEMA_VERSION!r}; rebuild with `cgbench build {family}`"
        )
    ds = CGDataset(path, manifest, lock_fd if lock_fd is not None and lock_fd >= 0 else None)
    if verify:
        ds.verify()
    elif check:
        ds.check()
    return ds
