"""The build engine: upstream files -> records -> CGs -> Parquet shards -> a published dataset.

``build_family("nb201")`` fetches the family's sources (``benchmarks.download``), streams its
records in chunks, and has worker processes build each architecture's PyTorch module, extract its
CG and write one zstd Parquet shard per chunk (atomically). Memory stays bounded: at most
``2 x workers`` chunks are in flight. Shards land in ``ROOT/.builds/<family>/<key>.partial``,
where ``key`` fingerprints everything that determines the output, so a killed build resumes
where it stopped; once every chunk is written the manifest is added and the dataset is
published with one atomic link switch (``store.publish_build``).
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from cgbench import __version__
from cgbench.benchmarks import store
from cgbench.benchmarks.engines import Engine, LocalEngine
from cgbench.benchmarks.schema import SCHEMA_VERSION, records_to_table
from cgbench.cg import FEATURIZER_VERSION, VOCAB_VERSION, TraceCache, extract_cg
from cgbench.cg.compose import PlanComposer
from cgbench.files import sha256_file
from cgbench.loaders.base import ArchRecord, Family, LoaderError, ModuleCache
from cgbench.loaders.registry import get_family


class BuildError(RuntimeError):
    """A build that cannot complete; the message names the architecture and the cause."""


@dataclass
class BuildResult:
    family: str
    path: Path
    rows: int
    seconds: float
    resumed_chunks: int


# Per-process caches: identical sub-modules and their traced sub-graphs are shared across archs.
_CACHES: dict[str, tuple[ModuleCache, TraceCache]] = {}


# Per-process composers of families that describe networks as plans (``Family.build_plan``).
_COMPOSERS: dict[str, PlanComposer] = {}


def graphs_for(family: Family, records: list[ArchRecord]):
    """Build and trace the networks of ``records`` with this process's shared caches (families
    with a plan get their CGs composed from per-segment graphs traced once)."""
    modules, traces = _CACHES.setdefault(family.name, (ModuleCache(), TraceCache()))
    composer = _COMPOSERS.setdefault(family.name, PlanComposer())
    graphs = []
    for r in records:
        try:
            plan = family.build_plan(r.config)
            if plan is not None:
                graphs.append(composer.compose(plan, r.input_shape or family.input_shape))
                continue
            model = family.build_model(r.config, cache=modules)
            graphs.append(extract_cg(model, r.input_shape or family.input_shape, cache=traces))
        except (LoaderError, TypeError, ValueError, KeyError, RuntimeError) as err:
            raise BuildError(f"{family.name} arch {r.arch_id!r}: {type(err).__name__}: {err}") from err
    return graphs


def _shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _write_chunk(family: Family, index: int, records: list[ArchRecord], out_dir: str) -> dict:
    graphs = graphs_for(family, records)
    table = records_to_table(family, records, graphs)
    path = Path(out_dir) / _shard_name(index)
    digest = store.write_parquet_atomic(table, path)
    return {"name": path.name, "rows": table.num_rows, "sha256": digest, "bytes": path.stat().st_size}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _existing_shard(path: Path) -> dict | None:
    """The manifest entry of a shard finished by an earlier (interrupted) run, if readable."""
    if not path.is_file():
        return None
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError):
        path.unlink()
        return None
    return {
        "name": path.name,
        "rows": rows,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
    }


def _fingerprint_sources(family: Family) -> list[Path]:
    """Every source file that shapes a record of ``family``: all loaders (a family module may use
    any shared or sibling loader module), all of ``cg``, and the build, schema and store modules."""
    from cgbench.benchmarks import schema
    from cgbench.cg import graph
    from cgbench.loaders import base

    loaders = Path(inspect.getsourcefile(base)).parent
    cg = Path(inspect.getsourcefile(graph)).parent
    family_file = Path(inspect.getsourcefile(sys.modules[type(family).__module__]))
    files = {family_file, *loaders.glob("*.py"), *cg.glob("*.py")}
    files |= {Path(inspect.getsourcefile(m)) for m in (schema, store, sys.modules[__name__])}
    return sorted(files)


def _code_fingerprint(family: Family) -> str:
    """sha256 over the source of the code that shapes a shard (a fixed bug changes the key)."""
    h = hashlib.sha256()
    for path in _fingerprint_sources(family):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _describe_option(value: Any) -> Any:
    """An option as it enters the build key; files are identified by size and mtime too."""
    if isinstance(value, (str, Path)) and Path(value).exists():
        st = Path(value).stat()
        return {"path": str(Path(value).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return str(value)


def _build_key(family: Family, limit: int | None, chunk_size: int, sources: dict[str, Path]) -> str:
    from cgbench.benchmarks.download import load_manifest

    known = load_manifest()
    fingerprint = {
        "family": family.name,
        "options": {k: _describe_option(v) for k, v in sorted(vars(family).items())},
        "limit": limit,
        "chunk_size": chunk_size,
        "sources": {
            k: known[k].sha256 if k in known else _describe_option(p) for k, p in sorted(sources.items())
        },
        "cgbench": __version__,
        "code": _code_fingerprint(family),
        "schema": SCHEMA_VERSION,
    }
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def _chunks(records: Iterable[ArchRecord], size: int) -> Iterator[tuple[int, list[ArchRecord]]]:
    it = iter(records)
    for index in itertools.count():
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield index, chunk


def build_family(
    family: str | Family,
    *,
    root: str | os.PathLike | None = None,
    mirror: Any = None,
    offline: bool = False,
    limit: int | None = None,
    workers: int | None = None,
    chunk_size: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
    engine: Engine | None = None,
) -> BuildResult:
    """Build ``family`` into ``ROOT/<family>`` and return where it went.

    ``mirror``/``offline`` are passed to :func:`cgbench.benchmarks.download.fetch_sources`;
    ``limit`` keeps the first N records; ``workers`` defaults to the number of CPUs (1 runs in
    this process); ``on_progress(rows)`` is called as chunks complete. A second build with the
    same options waits for the first (telling ``on_wait``, default stderr) and reuses its result.
    ``engine`` runs the chunks (default: a :class:`~cgbench.benchmarks.engines.LocalEngine` of
    ``workers`` processes; see ``engines.get_engine("ray")``); every engine gives the same shards
    and manifest (the manifest's ``created`` is ``$SOURCE_DATE_EPOCH`` when set, for
    byte-identical rebuilds).
    """
    from cgbench.benchmarks.download import fetch_sources

    fam = get_family(family) if isinstance(family, str) else family
    chunk_size = chunk_size or getattr(fam, "chunk_size", None) or 1000  # a family may suggest one
    base = store.resolve_root(root)
    base.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sources = fetch_sources(fam.sources, mirror=mirror, root=base, offline=offline)
    key = _build_key(fam, limit, chunk_size, sources)
    with store.build_lock(base, fam.name, key, on_wait) as waited:
        if waited:
            done = _published_build(base, fam.name, key)
            if done is not None:
                return BuildResult(fam.name, done[0], done[1], time.perf_counter() - started, 0)
        return _build_locked(
            fam, base, key, sources, limit, workers, chunk_size, on_progress, started, engine
        )


def _published_build(root: Path, family: str, key: str) -> tuple[Path, int] | None:
    """(path, rows) of the published dataset if a build with ``key`` made it, else None."""
    try:
        ds = store.open_dataset(family, root)
    except store.StoreError:
        return None
    with ds:
        if ds.manifest.get("build", {}).get("key") == key:
            return store.dataset_path(family, root), len(ds)
    return None


def _build_locked(
    fam: Family,
    base: Path,
    key: str,
    sources: dict[str, Path],
    limit: int | None,
    workers: int | None,
    chunk_size: int,
    on_progress: Callable[[int], None] | None,
    started: float,
    engine: Engine | None = None,
) -> BuildResult:
    work_dir = store.new_build_dir(base, fam.name, key)
    records = fam.iter_records(sources, limit=limit)

    shards: dict[int, dict] = {}
    resumed = 0

    def todo() -> Iterator[tuple[int, list[ArchRecord]]]:
        nonlocal resumed
        for index, chunk in _chunks(records, chunk_size):
            done = _existing_shard(work_dir / _shard_name(index))
            if done is not None and done["rows"] == len(chunk):
                shards[index] = done
                resumed += 1
                if on_progress:
                    on_progress(done["rows"])
                continue
            yield index, chunk

    with engine or LocalEngine(workers) as eng:
        jobs = ((index, (fam, index, chunk, str(work_dir))) for index, chunk in todo())
        for index, shard in eng.map_unordered(_write_chunk, jobs, init=_worker_init):
            shards[index] = shard
            if on_progress:
                on_progress(shard["rows"])

    if not shards:
        raise BuildError(f"{fam.name}: the sources yielded no architectures; nothing was published")
    files = [shards[i] for i in sorted(shards)]
    rows = sum(f["rows"] for f in files)
    manifest = {
        "family": fam.name,
        "schema_version": SCHEMA_VERSION,
        "vocab_version": VOCAB_VERSION,
        "featurizer_version": FEATURIZER_VERSION,
        "cgbench_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_source_date_epoch())),
        "rows": rows,
        "dataset": fam.dataset,
        "files": files,
        "sources": [{"key": k, "file": p.name} for k, p in sorted(sources.items())],
        "build": {
            "key": key,
            "limit": limit,
            "chunk_size": chunk_size,
            "options": {k: _describe_option(v) for k, v in sorted(vars(fam).items()) if v is not None},
        },
        "label_columns": dict(fam.label_columns),
        "tag_columns": {k: v[1] for k, v in fam.tag_columns.items()},
    }
    _drop_stale_tmp(work_dir)
    store.write_manifest(work_dir, manifest)
    path = store.publish_build(base, fam.name, work_dir)
    return BuildResult(fam.name, path, rows, time.perf_counter() - started, resumed)


def _source_date_epoch() -> int | None:
    """``$SOURCE_DATE_EPOCH`` (reproducible-builds convention) as seconds, else None (now)."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    return int(value) if value and value.isdigit() else None


def _drop_stale_tmp(work_dir: Path) -> None:
    """Remove half-written ``.<shard>.tmp-<pid>`` files of writers that were killed (a lost worker
    whose chunk was redone), so that they are not published with the dataset."""
    for tmp in work_dir.glob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)
