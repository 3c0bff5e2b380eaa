"""The Parquet store: atomic publication, interrupted and resumed builds, verification."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cgbench.benchmarks.build import build_family
from cgbench.benchmarks.store import StoreError, list_families, open_dataset

BUILD_SCRIPT = """
import sys
from cgbench.benchmarks.build import build_family
build_family("nb201", root=sys.argv[1], mirror=sys.argv[2], limit=int(sys.argv[3]), workers=1, chunk_size=100)
"""


def test_missing_dataset_says_how_to_build(tmp_path):
    with pytest.raises(StoreError, match=r"cgbench build nb201"):
        open_dataset("nb201", tmp_path)


def test_killed_build_keeps_previous_dataset_and_resumes(tmp_path, upstream_dir):
    root = tmp_path / "store"
    build_family("nb201", root=root, mirror=upstream_dir, limit=50, workers=1, chunk_size=100)
    before = sorted(p.name for p in (root / "nb201").iterdir())

    proc = subprocess.Popen([sys.executable, "-c", BUILD_SCRIPT, str(root), str(upstream_dir), "1500"])
    partial_shards: list[Path] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(partial_shards) < 2:
        partial_shards = list((root / ".builds" / "nb201").glob("*.partial/part-*.parquet"))
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(partial_shards) >= 2, "the build never wrote a shard"

    # the published dataset is the previous one, complete and verified; nothing partial shows
    ds = open_dataset("nb201", root, verify=True)
    assert len(ds) == 50
    assert sorted(p.name for p in (root / "nb201").iterdir()) == before
    assert list_families(root) == ["nb201"]
    for shard in partial_shards:  # shards are complete files (written to a temp name, renamed)
        assert pq.ParquetFile(shard).metadata.num_rows == 100

    result = build_family("nb201", root=root, mirror=upstream_dir, limit=1500, workers=1, chunk_size=100)
    assert result.resumed_chunks >= 2
    assert len(open_dataset("nb201", root, verify=True)) == 1500
    assert not list((root / ".builds" / "nb201").glob("*.partial"))


def test_corrupt_shard_is_detected(nb201_store, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(nb201_store, root, symlinks=True)
    ds = open_dataset("nb201", root)
    data = bytearray(ds.files[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    ds.files[0].write_bytes(bytes(data))
    with pytest.raises(StoreError, match=rf"{ds.files[0].name}: sha256 .* does not match the manifest"):
        open_dataset("nb201", root, verify=True)


def test_store_columns_and_graph_access(nb201_store):
    ds = open_dataset("nb201", nb201_store)
    assert len(ds) == 300
    table = ds.table(["arch_id", "accuracy", "flops", "params", "num_nodes", "cg_hash"])
    assert table.column("accuracy").null_count == 0
    assert 0 < min(table.column("accuracy").to_pylist()) < max(table.column("accuracy").to_pylist()) <= 1
    g = ds.graph(7)
    assert g.num_nodes == table.column("num_nodes")[7].as_py()
    assert g.cg_hash() == table.column("cg_hash")[7].as_py()
    assert g.params() == table.column("params")[7].as_py()
    assert [x.num_graphs for x in ds.pyg_batches(128)] == [128, 128, 44]


def test_open_reader_keeps_its_build_across_a_rebuild(tmp_path, upstream_dir):
    root = tmp_path / "store"
    build_family("nb201", root=root, mirror=upstream_dir, limit=30, workers=1, chunk_size=20)
    before = open_dataset("nb201", root)
    build_family("nb201", root=root, mirror=upstream_dir, limit=50, workers=1, chunk_size=20)
    assert before.table(["arch_id"]).num_rows == len(before) == 30
    before.verify()
    assert len(open_dataset("nb201", root)) == 50
    before.close()  # an open reader keeps its build; closed, the build may go
    build_family("nb201", root=root, mirror=upstream_dir, limit=10, workers=1, chunk_size=20)
    builds = [
        p for p in (root / ".builds" / "nb201").iterdir() if p.is_dir() and not p.name.endswith(".partial")
    ]
    assert len(builds) == 2  # the published build and the one before it; older ones removed


def test_rebuild_never_deletes_outside_the_store(tmp_path, upstream_dir):
    mine = tmp_path / "elsewhere"
    mine.mkdir()
    (mine / "keep.txt").write_text("user data")
    root = tmp_path / "store"
    root.mkdir()
    (root / "nb201").symlink_to(mine)
    build_family("nb201", root=root, mirror=upstream_dir, limit=5, workers=1)
    assert (mine / "keep.txt").read_text() == "user data"
    assert len(open_dataset("nb201", root)) == 5


def test_pyg_batches_span_shards(tmp_path, upstream_dir):
    root = tmp_path / "store"
    build_family("nb201", root=root, mirror=upstream_dir, limit=45, workers=1, chunk_size=20)
    ds = open_dataset("nb201", root)
    batches = list(ds.pyg_batches(16))
    assert [b.num_graphs for b in batches] == [16, 16, 13]
    graphs = ds.graphs()
    flat = [g for b in batches for g in b.to_data_list()]
    assert [d.num_nodes for d in flat] == [g.num_nodes for g in graphs]
    assert all(d.edge_index.shape[1] == g.num_edges for d, g in zip(flat, graphs))
