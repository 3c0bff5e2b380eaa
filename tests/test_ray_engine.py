"""Execution engines: the local pool's contract, ``--engine ray`` without Ray, and builds on a
real two-node Ray cluster (head + worker node on 127.0.0.1 inside a private network namespace,
``tests/ray_netns.py``) that must equal the local build byte for byte, also when worker
processes or the driver are killed mid-build.

The cluster tests are ``slow``: on this shared 2-core machine starting two Ray nodes alone takes
about 50 s, and the 2,000-arch builds take minutes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cgbench.benchmarks.build import build_family
from cgbench.benchmarks.engines import EngineError, LocalEngine, get_engine
from cgbench.cli import app

sys.path.insert(0, str(Path(__file__).parent))
import ray_netns  # noqa: E402 - the helper beside this file

EPOCH = "1700000000"


def _square(x: int) -> int:
    return x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("unit 3 is bad")
    return x


def test_local_engine_yields_every_unit_once():
    with LocalEngine(2) as eng:
        got = dict(eng.map_unordered(_square, ((i, (i,)) for i in range(20))))
    assert got == {i: i * i for i in range(20)}


def test_local_engine_raises_the_units_own_error():
    with LocalEngine(2) as eng, pytest.raises(ValueError, match="unit 3 is bad"):
        list(eng.map_unordered(_fail_on_three, ((i, (i,)) for i in range(8))))


def test_unknown_engine_and_misplaced_address_are_named():
    with pytest.raises(EngineError, match="unknown engine 'spark'.*local, ray"):
        get_engine("spark")
    with pytest.raises(EngineError, match="--ray-address only applies to --engine ray"):
        get_engine("local", address="127.0.0.1:6379")


def test_engine_ray_without_ray_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as if absent
    monkeypatch.delitem(sys.modules, "cgbench.benchmarks.engine_ray", raising=False)
    with pytest.raises(EngineError, match=r'needs Ray.*pip install "cgbench\[ray\]"'):
        get_engine("ray")
    result = CliRunner().invoke(app, ["build", "nb201", "--engine", "ray", "--root", str(tmp_path)])
    assert result.exit_code != 0
    assert 'pip install "cgbench[ray]"' in " ".join(result.output.split())
    assert not (tmp_path / "nb201").exists()


# ------------------------------------------------------------------ real Ray cluster (slow)
LIMIT, CHUNK = 2000, 100
PROXIES, PROXY_LIMIT = "synflow", 16


def _files(path: Path) -> dict[str, bytes]:
    """The dataset's files (manifest + shards) by name; the store's own hidden bookkeeping
    (``.stamps.json`` holds inode/ctime stamps of this copy, ``.readers`` a lock) only by name."""
    return {p.name: b"" if p.name.startswith(".") else p.read_bytes() for p in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def local_build(upstream_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("local")
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    try:
        result = build_family(
            "nb201", root=root, mirror=upstream_dir, offline=True, limit=LIMIT, chunk_size=CHUNK, workers=2
        )
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH")
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old
    return result.path


@pytest.fixture(scope="module")
def reproduce_root(local_build, upstream_dir, tmp_path_factory) -> Path:
    """A data root for the smoke reproduction: 150 NB-301 archs (source) and the NB-201 build."""
    root = tmp_path_factory.mktemp("reproduce_root")
    build_family("nb301", root=root, mirror=upstream_dir, offline=True, limit=150, workers=1)
    (root / "nb201").symlink_to(local_build.resolve())
    return root


@pytest.fixture(scope="module")
def ray_runs(upstream_dir, reproduce_root, tmp_path_factory) -> dict:
    """One two-node cluster; a plain build, a build with workers killed, a killed driver + rerun."""
    reason = ray_netns.netns_available()
    if reason:
        pytest.skip(f"Ray tests run only inside a private network namespace: {reason}")
    if importlib.util.find_spec("ray") is None:
        pytest.skip('Ray is not installed: pip install "cgbench[ray]"')
    base = tmp_path_factory.mktemp("ray")
    spec = {
        "out": str(base / "out.json"),
        "mirror": str(upstream_dir),
        "limit": LIMIT,
        "chunk_size": CHUNK,
        "nodes": 2,
        "source_date_epoch": int(EPOCH),
        "kills": 2,
        "scenarios": [
            ["sockets", ""],
            ["build", str(base / "plain")],
            ["kill_worker", str(base / "killw")],
            ["kill_driver", str(base / "killd")],
            ["unit_error", ""],
            ["proxies", str(base / "proxies")],
            ["reproduce", str(base / "reproduce")],
        ],
        "reproduce_root": str(reproduce_root),
        "proxy_source": str(base / "plain"),
        "proxies": PROXIES,
        "proxy_limit": PROXY_LIMIT,
    }
    return ray_netns.run_in_netns(spec, timeout=2400)


def _assert_same_dataset(ray_path: Path, local_path: Path) -> None:
    assert _files(ray_path) == _files(local_path)  # same names, same bytes (manifest included)
    ids = pq.read_table(sorted(ray_path.glob("*.parquet")), columns=["arch_id"]).column("arch_id").to_pylist()
    assert len(ids) == LIMIT and len(set(ids)) == LIMIT  # no duplicate, no missing row


@pytest.mark.slow
def test_cluster_is_two_nodes_on_loopback_only(ray_runs):
    assert ray_runs["build"]["nodes"] == 2
    for listening in (ray_runs["sockets"], ray_runs["build"]["sockets"]):  # idle, mid-build
        hosts = {addr.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:") for addr in listening}
        assert hosts and hosts <= {"127.0.0.1"}, listening


@pytest.mark.slow
def test_ray_build_equals_local_build_byte_for_byte(ray_runs, local_build):
    run = ray_runs["build"]
    _assert_same_dataset(Path(run["path"]), local_build)
    assert sum(run["progress"]) == LIMIT and len(run["progress"]) == LIMIT // CHUNK  # progress fed from Ray


@pytest.mark.slow
def test_killed_worker_processes_are_retried_to_the_identical_dataset(ray_runs, local_build):
    run = ray_runs["kill_worker"]
    assert len(run["killed"]) == 2, f"chunk workers killed mid-build: {run['killed']} (expected 2)"
    _assert_same_dataset(Path(run["path"]), local_build)


@pytest.mark.slow
def test_killed_driver_leaves_the_store_and_the_rerun_resumes(ray_runs, local_build):
    run = ray_runs["kill_driver"]
    assert run["crashed"] and not run["published_after_crash"]
    assert run["shards_after_crash"] >= 2 and run["resumed"] >= 2  # finished chunks are not redone
    _assert_same_dataset(Path(run["path"]), local_build)


@pytest.mark.slow
def test_a_failing_unit_raises_its_own_error_through_ray(ray_runs):
    assert ray_runs["unit_error"] == {
        "type": "cgbench.benchmarks.build.BuildError",
        "message": "nb201 arch 'unit-2': ValueError: bad cell",
    }


@pytest.mark.slow
def test_proxies_through_ray_equal_the_local_ones(ray_runs, local_build, tmp_path):
    from cgbench.benchmarks.store import open_dataset
    from cgbench.zerocost.compute import compute_family

    root = tmp_path / "store"
    shutil.copytree(local_build.parent, root, symlinks=True)
    local = compute_family("nb201", PROXIES, root=root, limit=PROXY_LIMIT, chunk_size=4, workers=2)
    assert local.computed == PROXY_LIMIT == ray_runs["proxies"]["computed"]
    table = open_dataset("nb201", root).table(["arch_id", "zc_cgb_synflow"]).slice(0, PROXY_LIMIT)
    assert ray_runs["proxies"]["values"] == table.to_pydict()
    assert all(v is not None for v in table.column("zc_cgb_synflow").to_pylist())


@pytest.mark.slow
def test_reproduce_through_ray_equals_the_local_run(ray_runs, reproduce_root, tmp_path):
    import warnings

    from cgbench.predictors.reproduce import reproduce

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = reproduce(
            **ray_netns.REPRODUCE_ARGS, root=reproduce_root, out=tmp_path, workers=1, plots=False,
            echo=lambda s: None,
        )  # fmt: skip
    run = ray_runs["reproduce"]
    assert [t["predictor"] for t in run["training"]] == ["kgnn"] and "error" not in run["training"][0]
    filled = [r for r in run["rows"] if r["ours_mean"] is not None]
    assert filled and {r["method"] for r in filled} == {"kgnn", "flops"}
    assert run["rows"] == local["rows"]  # the same cells, the same numbers
