"""The on-disk store: ``ROOT/<family>/part-*.parquet`` + ``ROOT/<family>/manifest.json``.

``ROOT/<family>`` is a symbolic link to a finished build directory under
``ROOT/.builds/<family>/``. A new build is written elsewhere and published by replacing the link
in one ``os.replace``: readers see the old dataset or the new one, never a mix, and a build that
fails or is killed leaves the previous dataset in place.

Readers (:class:`CGDataset`) stream row groups and give pyarrow tables, CGs and PyTorch Geometric
batches; the Parquet files are plain, so ``datasets.load_dataset("parquet", data_files=...)``
reads them too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cgbench.benchmarks.schema import SCHEMA_VERSION, graph_from_row
from cgbench.cg import OPS, ComputationGraph

MANIFEST = "manifest.json"
BUILDS = ".builds"


class StoreError(OSError):
    """A dataset that is missing, incomplete or does not match its manifest."""


def default_root() -> Path:
    """The cgbench data root: ``$CGBENCH_HOME``, else ``~/.cache/cgbench``."""
    env = os.environ.get("CGBENCH_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cgbench"


def resolve_root(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root is not None else default_root()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, rename it to ``path`` and fsync the directory (durable and atomic)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(table: pa.Table, path: Path, row_group_size: int = 512) -> str:
    """Write ``table`` as zstd Parquet to ``path`` atomically and durably; returns its sha256."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            row_group_size=row_group_size,
            use_dictionary=["family", "dataset", "schema_version", "node_op"],
        )
        digest = sha256_file(tmp)
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def commit_dataset(root: Path, family: str, build_dir: Path) -> Path:
    """Publish ``build_dir`` (holding shards + manifest) as ``ROOT/<family>`` atomically.

    The build that was published until now is kept (readers that opened it keep a consistent
    dataset); older builds under ``ROOT/.builds/<family>/`` are removed. Nothing outside that
    folder is ever deleted. Callers hold the family lock: use :func:`publish_build`.
    """
    if not (build_dir / MANIFEST).is_file():
        raise StoreError(f"{build_dir}: no {MANIFEST}; refusing to publish an incomplete build")
    builds = (root / BUILDS / family).resolve()
    link = root / family
    previous = link.resolve() if link.is_symlink() else None
    if link.exists() and not link.is_symlink():  # a plain directory from an older layout
        previous = builds / f"moved-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        previous.parent.mkdir(parents=True, exist_ok=True)
        os.replace(link, previous)
    tmp_link = root / f".{family}.link-{os.getpid()}"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(os.path.relpath(build_dir, root), tmp_link)
    os.replace(tmp_link, link)
    _fsync_dir(root)
    keep = {build_dir.resolve(), previous}
    for old in builds.iterdir():
        if old.is_dir() and not old.name.endswith(".partial") and old.resolve() not in keep:
            shutil.rmtree(old, ignore_errors=True)
    return link


def new_build_dir(root: Path, family: str, key: str) -> Path:
    """The (resumable) working directory of a build identified by ``key``."""
    path = root / BUILDS / family / f"{key}.partial"
    path.mkdir(parents=True, exist_ok=True)
    return path


def publish_build(root: Path, family: str, partial: Path) -> Path:
    """Finish a complete ``*.partial`` build directory and publish it as ``ROOT/<family>``.

    Renaming to a unique final name and switching the link happen under an exclusive lock per
    family, so concurrent builds or installs of one family never delete each other's finished
    build; the last one to publish wins. Returns the dataset path.
    """
    lock_path = root / BUILDS / family / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}-{time.monotonic_ns() % 10**9:09d}"
            final = partial.with_name(f"{partial.name.removesuffix('.partial')}-{stamp}")
            os.replace(partial, final)
            return commit_dataset(root, family, final)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_manifest(build_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_bytes(build_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())


def dataset_path(family: str, root: str | os.PathLike | None = None) -> Path:
    return resolve_root(root) / family


def list_families(root: str | os.PathLike | None = None) -> list[str]:
    """Families with a published dataset under ``root``."""
    base = resolve_root(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / MANIFEST).is_file() and not p.name.startswith("."))


class CGDataset:
    """A built family: manifest, Arrow tables, computation graphs and PyG batches."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.family: str = manifest["family"]
        self.files = [path / f["name"] for f in manifest["files"]]

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    def __repr__(self) -> str:
        return f"CGDataset(family={self.family!r}, rows={len(self)}, path={str(self.path)!r})"

    @property
    def schema(self) -> pa.Schema:
        return pq.read_schema(self.files[0])

    def verify(self) -> None:
        """Check every shard's sha256 and row count against the manifest."""
        for entry, path in zip(self.manifest["files"], self.files):
            if not path.is_file():
                raise StoreError(f"{path}: listed in {self.path / MANIFEST} but missing; rebuild")
            digest = sha256_file(path)
            if digest != entry["sha256"]:
                raise StoreError(
                    f"{path}: sha256 {digest} does not match the manifest ({entry['sha256']}); "
                    f"the file is corrupt: rebuild with `cgbench build {self.family}` or re-download"
                )

    def table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All rows as one ``pyarrow.Table`` (``columns`` selects a subset)."""
        return pa.concat_tables(pq.read_table(f, columns=columns) for f in self.files)

    def iter_batches(
        self, batch_size: int = 1024, columns: Sequence[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream record batches shard by shard, row group by row group (bounded memory)."""
        for f in self.files:
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns)

    def arch_ids(self) -> list[str]:
        return self.table(["arch_id"]).column("arch_id").to_pylist()

    def graphs(self, indices: Sequence[int] | None = None) -> list[ComputationGraph]:
        """Computation graphs of all rows, or of the rows at ``indices``."""
        cols = ["node_op", "node_res", "node_weight", "node_bias", "edge_index", "input_shape", "params"]
        table = self.table(cols)
        if indices is not None:
            table = table.take(pa.array(indices, pa.int64()))
        out = []
        for batch in table.to_batches(max_chunksize=1024):
            arrays = _node_arrays(batch)
            params = batch.column("params").to_pylist()
            for i in range(batch.num_rows):
                n0, n1 = arrays["node_ptr"][i], arrays["node_ptr"][i + 1]
                e0, e1 = arrays["edge_ptr"][i], arrays["edge_ptr"][i + 1]
                out.append(
                    ComputationGraph(
                        ops=arrays["ops"][n0:n1],
                        res=arrays["res"][n0:n1],
                        weight=arrays["weight"][n0:n1],
                        bias=arrays["bias"][n0:n1],
                        edges=arrays["edges"][e0:e1],
                        input_shape=tuple(arrays["input_shape"][i]),
                        num_params=None if params[i] is None else round(params[i]),
                    )
                )
        return out

    def graph(self, index: int) -> ComputationGraph:
        row = self.table().slice(index, 1).to_pylist()[0]
        return graph_from_row(row)

    def pyg_batches(self, batch_size: int = 256, label: str | None = "accuracy") -> Iterator[Any]:
        """``torch_geometric.data.Batch`` objects of ``batch_size`` graphs (the last one may be
        smaller), built vectorised; ``y`` holds ``label`` (NaN where missing), ``arch_index``
        the row numbers.
        """
        cols = ["node_op", "node_res", "node_weight", "node_bias", "edge_index", "input_shape"]
        if label is not None:
            cols.append(label)
        start = 0
        for batch in _rebatch(self.iter_batches(batch_size, cols), batch_size):
            yield _to_pyg_batch(batch, label, start)
            start += batch.num_rows


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


def open_dataset(family: str, root: str | os.PathLike | None = None, *, verify: bool = False) -> CGDataset:
    """The built dataset of ``family`` under ``root`` (default :func:`default_root`).

    Raises :class:`StoreError` saying how to build or download it when it is missing.
    """
    path = dataset_path(family, root).resolve()  # pin this build: a rebuild cannot mix into it
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
    ds = CGDataset(path, manifest)
    if verify:
        ds.verify()
    return ds
