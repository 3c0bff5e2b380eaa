"""``cgbench proxies``: compute zero-cost proxies for a built family, in parallel and resumably.

Results go to a sidecar cache keyed by the proxy's settings,
``ROOT/.zerocost/<family>/<proxy>-<key>/part-<row>-<hash>.parquet`` (``arch_id``, ``value``,
``seconds``), one file per chunk of archs, written atomically: a killed run (or a later run
with another ``--limit``) computes only the archs the cache does not hold.

The values are then attached to the family's store as the column ``zc_cgb_<proxy>``
(cgbench-computed; the ``zc_<proxy>`` columns some families already hold are upstream published
values and stay untouched): the store's shards are rewritten with the column into a new build
directory and published with the store's atomic link switch (``store.publish_build``). The
settings (batch size, seed, data source, dtype, ``synthetic`` flag, code fingerprint) are
recorded in the manifest under ``zerocost``. The evaluation harness reads them by name:
``cgbench evaluate ... --predictor zc:cgb_synflow``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cgbench import __version__
from cgbench.benchmarks import store
from cgbench.benchmarks.engines import Engine, LocalEngine
from cgbench.loaders.base import Family
from cgbench.loaders.registry import get_family
from cgbench.zerocost.data import Batch, BatchError, load_batch, synthetic_batch
from cgbench.zerocost.proxies import Proxy, ProxyError, compute_proxy, parse_proxies

__all__ = ["COLUMN_PREFIX", "ProxySettings", "ProxyRun", "column_name", "compute_family", "settings_for"]

#: computed proxy columns are ``zc_cgb_<proxy>``; ``zc_<proxy>`` are upstream published values
COLUMN_PREFIX = "zc_cgb_"
ZEROCOST_DIR = ".zerocost"
_PART_SCHEMA = pa.schema([("arch_id", pa.string()), ("value", pa.float64()), ("seconds", pa.float64())])


def column_name(proxy: str) -> str:
    """The store column of a cgbench-computed proxy."""
    return f"{COLUMN_PREFIX}{proxy}"


@dataclass(frozen=True)
class ProxySettings:
    """Everything that determines a proxy's values (recorded beside the column)."""

    proxy: str
    batch_size: int
    seed: int
    data: str  # "ones" (synflow), "gaussian" (zen), "synthetic" or "file:<path>"
    data_sha256: str | None
    dtype: str
    synthetic: bool
    labels: str  # "none", "random (seeded)" or "file"
    code: str  # sha256 of the proxy code and the family's loader

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _code_fingerprint(family: Family) -> str:
    from cgbench.loaders import blocks
    from cgbench.zerocost import data, proxies

    h = hashlib.sha256()
    for module in (proxies, data, blocks, sys.modules[type(family).__module__]):
        h.update(Path(inspect.getsourcefile(module)).read_bytes())
    return h.hexdigest()[:16]


def settings_for(
    proxy: Proxy,
    family: Family,
    *,
    batch_size: int,
    seed: int,
    data_batch: str | Path | None,
    allow_synthetic: bool = False,
) -> ProxySettings:
    """The settings of ``proxy``; a proxy that needs real images without ``data_batch`` is
    refused (:class:`ProxyError`) unless ``allow_synthetic`` (then flagged ``synthetic``)."""
    code = _code_fingerprint(family)
    if proxy.data == "none":
        data = "ones" if proxy.name == "synflow" else "gaussian"
        return ProxySettings(
            proxy.name, 1 if proxy.name == "synflow" else batch_size, seed, data, None,
            "float64" if proxy.name == "synflow" else "float32", False, "none", code,
        )  # fmt: skip
    if data_batch is None and proxy.data == "real" and not allow_synthetic:
        raise ProxyError(
            f"proxy {proxy.name!r} needs real images: pass --data-batch FILE.npz ('x': float32 "
            f"(N, C, H, W), 'y': int labels (N,)), or --allow-synthetic to compute it on a seeded "
            "random batch (flagged synthetic; NASLib's values use CIFAR-10, expect lower agreement)"
        )
    if data_batch is None:
        labels = "random (seeded)" if proxy.labels else "none"
        return ProxySettings(proxy.name, batch_size, seed, "synthetic", None, "float32", True, labels, code)
    path = Path(data_batch).resolve()
    digest = store.sha256_file(path) if path.is_file() else None
    return ProxySettings(
        proxy.name, batch_size, seed, f"file:{path}", digest, "float32", False,
        "file" if proxy.labels else "none", code,
    )  # fmt: skip


@dataclass
class ProxyRun:
    """What :func:`compute_family` did."""

    family: str
    columns: dict[str, ProxySettings]
    rows: int
    computed: int  # arch x proxy values computed in this run (the rest came from the cache)
    seconds: float
    seconds_per_arch: dict[str, float]  # mean compute time per arch and proxy (one process)
    path: Path | None  # the published dataset (None when attach=False)


# ---------------------------------------------------------------------------- worker side
_BATCHES: dict[tuple, Batch] = {}


def _batch(shape: tuple[int, int, int], s: ProxySettings, arch_id: str) -> Batch:
    key = (shape, s.data, s.batch_size, s.seed)
    if key not in _BATCHES:
        if s.data.startswith("file:"):
            path = s.data.removeprefix("file:")
            try:
                _BATCHES[key] = load_batch(path, shape, s.seed)
            except BatchError as err:
                raise BatchError(f"arch {arch_id!r} (input {shape}): {err}") from None
        else:
            _BATCHES[key] = synthetic_batch(shape, s.batch_size, s.seed)
    return _BATCHES[key]


def proxy_value(
    family: Family, config: Any, shape: tuple[int, int, int], s: ProxySettings, arch_id: str
) -> float:
    """One proxy of one architecture: a fresh network seeded with ``s.seed``."""
    import torch

    torch.manual_seed(s.seed)
    net = family.build_model(config, cache=None)
    try:
        return compute_proxy(s.proxy, net, _batch(shape, s, arch_id))
    except (RuntimeError, ValueError) as err:
        if isinstance(err, BatchError):
            raise
        raise ProxyError(
            f"{family.name} arch {arch_id!r}: proxy {s.proxy}: {type(err).__name__}: {err}"
        ) from err


def _run_chunk(
    family: Family, rows: list[tuple[str, str, tuple[int, int, int]]], jobs: list[tuple[ProxySettings, str]]
) -> int:
    """Compute every (settings, part path) job of one chunk of rows; returns values computed."""
    done = 0
    for s, part in jobs:
        ids, values, secs = [], [], []
        for arch_id, config, shape in rows:
            t = time.perf_counter()
            values.append(proxy_value(family, json.loads(config), shape, s, arch_id))
            secs.append(time.perf_counter() - t)
            ids.append(arch_id)
            done += 1
        table = pa.table({"arch_id": ids, "value": values, "seconds": secs}, schema=_PART_SCHEMA)
        store.write_parquet_atomic(table, Path(part))
    return done


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


# ---------------------------------------------------------------------------- driver side
def _cache_dir(root: Path, family: str, s: ProxySettings) -> Path:
    path = root / ZEROCOST_DIR / family / f"{s.proxy}-{s.key()}"
    path.mkdir(parents=True, exist_ok=True)
    settings = path / "settings.json"
    if not settings.is_file():
        store.atomic_write_bytes(settings, json.dumps(asdict(s), indent=2, sort_keys=True).encode())
    return path


def _cached(path: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Every value (and its seconds) in a proxy's cache directory, keyed by arch_id; an
    unreadable part (never produced by the atomic writer, but disks fail) is ignored."""
    values: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for part in sorted(path.glob("part-*.parquet")):
        try:
            t = pq.read_table(part)
        except (OSError, ValueError, pa.ArrowInvalid):
            continue
        values.update(zip(t.column("arch_id").to_pylist(), t.column("value").to_pylist()))
        seconds.update(zip(t.column("arch_id").to_pylist(), t.column("seconds").to_pylist()))
    return values, seconds


def _part_name(start: int, ids: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:10]
    return f"part-{start:08d}-{digest}.parquet"


def compute_family(
    family: str,
    proxies: str | Sequence[str],
    *,
    root: str | os.PathLike | None = None,
    limit: int | None = None,
    data_batch: str | Path | None = None,
    batch_size: int = 32,
    seed: int = 0,
    workers: int | None = None,
    chunk_size: int = 64,
    allow_synthetic: bool = False,
    attach: bool = True,
    on_progress: Callable[[int], None] | None = None,
    engine: Engine | None = None,
) -> ProxyRun:
    """Compute ``proxies`` (``"synflow,snip"`` or a list) for the first ``limit`` archs (all by
    default) of the built ``family`` under ``root``, with ``workers`` processes (default: all
    CPUs), and attach them to the store as ``zc_cgb_<proxy>`` columns (``attach=False`` only
    fills the cache). ``on_progress(n)`` is called with the number of arch x proxy values done.
    ``engine`` runs the chunks (default: a local pool of ``workers``; see
    :func:`cgbench.benchmarks.engines.get_engine`, e.g. Ray); the values do not depend on it."""
    started = time.perf_counter()
    chosen = parse_proxies(proxies)
    base = store.resolve_root(root)
    ds = store.open_dataset(family, base)
    fam = get_family(family)
    table = ds.table(["arch_id", "config", "input_shape"])
    if limit is not None:
        table = table.slice(0, max(0, limit))
    rows = [
        (a, c, tuple(int(v) for v in shp))
        for a, c, shp in zip(*(table.column(k).to_pylist() for k in ("arch_id", "config", "input_shape")))
    ]
    if data_batch is not None:
        shapes = sorted({r[2] for r in rows})
        for shape in shapes:  # fail before any work: wrong file, shape or dtype
            load_batch(data_batch, shape, seed)
    settings = {
        p.name: settings_for(
            p, fam, batch_size=batch_size, seed=seed, data_batch=data_batch, allow_synthetic=allow_synthetic
        )
        for p in chosen
    }
    dirs = {name: _cache_dir(base, family, s) for name, s in settings.items()}

    # resume per architecture: whatever the cache holds (any earlier --limit / chunking) is reused
    tasks: list[tuple[list, list[tuple[ProxySettings, str]]]] = []
    for name, s in settings.items():
        done, _ = _cached(dirs[name])
        todo = [(i, r) for i, r in enumerate(rows) if r[0] not in done]
        if on_progress and len(rows) > len(todo):
            on_progress(len(rows) - len(todo))
        for start in range(0, len(todo), chunk_size):
            chunk = [r for _, r in todo[start : start + chunk_size]]
            part = dirs[name] / _part_name(todo[start][0], [r[0] for r in chunk])
            tasks.append((chunk, [(s, str(part))]))

    computed = 0
    eng = engine or LocalEngine(workers if len(tasks) > 1 else 1)
    if isinstance(eng, LocalEngine) and eng.workers == 1:
        _worker_init()
    with eng:
        units = ((i, (fam, chunk, jobs)) for i, (chunk, jobs) in enumerate(tasks))
        for i, n in eng.map_unordered(_run_chunk, units, init=_worker_init):
            computed += n
            if on_progress:
                on_progress(len(tasks[i][0]) * len(tasks[i][1]))

    values: dict[str, dict[str, float]] = {}
    per_arch: dict[str, float] = {}
    for name in settings:
        values[name], seconds = _cached(dirs[name])
        secs = [seconds[r[0]] for r in rows if r[0] in seconds]
        per_arch[name] = float(np.mean(secs)) if secs else float("nan")
    path = None
    if attach and rows:
        path = attach_columns(base, family, values, settings, per_arch)
    return ProxyRun(
        family, {column_name(n): s for n, s in settings.items()}, len(rows), computed,
        time.perf_counter() - started, per_arch, path,
    )  # fmt: skip


def attach_columns(
    root: Path,
    family: str,
    values: dict[str, dict[str, float]],
    settings: dict[str, ProxySettings],
    seconds_per_arch: dict[str, float],
) -> Path:
    """Publish a copy of ``family``'s store with one ``zc_cgb_<proxy>`` float64 column per
    entry of ``values`` (arch_id -> value; archs without a value get null). Shards are written
    with ``store.write_parquet_atomic`` into a new build directory, which
    ``store.publish_build`` switches in atomically; the old build stays readable."""
    ds = store.open_dataset(family, root)
    manifest = json.loads(json.dumps(ds.manifest))
    tag = hashlib.sha256(
        json.dumps({n: [s.key(), len(values[n])] for n, s in sorted(settings.items())}).encode()
        + str(time.time_ns()).encode()
    ).hexdigest()[:10]
    work = store.new_build_dir(root, family, f"{manifest.get('build', {}).get('key', 'store')}-zc-{tag}")
    files = []
    for entry, src in zip(manifest["files"], ds.files):
        table = pq.read_table(src)
        ids = table.column("arch_id").to_pylist()
        for name, by_id in values.items():
            col = column_name(name)
            if col in table.column_names:
                table = table.drop_columns([col])
            table = table.append_column(
                pa.field(col, pa.float64()), pa.array([by_id.get(a) for a in ids], pa.float64())
            )
        path = work / entry["name"]
        digest = store.write_parquet_atomic(table, path)
        files.append(
            {"name": entry["name"], "rows": table.num_rows, "sha256": digest, "bytes": path.stat().st_size}
        )
    manifest["files"] = files
    zc = manifest.setdefault("zerocost", {})
    for name, s in settings.items():
        zc[column_name(name)] = {
            **asdict(s),
            "computed_archs": sum(v is not None for v in values[name].values()),
            "seconds_per_arch": round(seconds_per_arch[name], 4),
            "cgbench_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    store.write_manifest(work, manifest)
    return store.publish_build(root, family, work)
