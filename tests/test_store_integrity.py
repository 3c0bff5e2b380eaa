"""The store under attack: hostile family names, concurrent builds, readers across rebuilds,
damaged shards, hostile pickles and the resume key (issue 8 §4, issue 14 §3)."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cgbench.benchmarks import store
from cgbench.benchmarks.build import build_family
from cgbench.benchmarks.store import StoreError, open_dataset
from cgbench.cli import app

runner = CliRunner()


# ------------------------------------------------------------------------------ family names
@pytest.mark.parametrize("name", ["../x", "x/../../y", "/tmp/x", ".builds", "", "nb999", "upstream"])
def test_store_entry_points_refuse_unregistered_family_names(tmp_path: Path, name: str) -> None:
    root = tmp_path / "store"
    for call in (
        lambda: store.open_dataset(name, root),
        lambda: store.new_build_dir(root, name, "k"),
        lambda: store.dataset_path(name, root),
    ):
        with pytest.raises(StoreError, match="unknown family"):
            call()
    assert not (tmp_path / "x").exists() and not Path("/tmp/x/.builds").exists()


def test_download_from_never_moves_a_user_directory(tmp_path: Path) -> None:
    """`cgbench download ../x --from SRC` moved a directory outside the root into the store."""
    root = tmp_path / "store"
    root.mkdir()
    mine = tmp_path / "x"
    mine.mkdir()
    (mine / "keep.txt").write_text("user data")
    source = tmp_path / "published"
    source.mkdir()
    result = runner.invoke(app, ["download", "../x", "--from", str(source), "--root", str(root)])
    assert result.exit_code != 0
    assert "unknown family" in result.output
    assert (mine / "keep.txt").read_text() == "user data"
    assert not any(p.name.startswith("moved-") for p in root.rglob("*"))


def test_publish_refuses_to_replace_a_directory_it_did_not_write(tmp_path: Path, upstream_dir) -> None:
    root = tmp_path / "store"
    (root / "nb201").mkdir(parents=True)
    (root / "nb201" / "mine.txt").write_text("user data")
    with pytest.raises(StoreError, match="not written by cgbench"):
        build_family("nb201", root=root, mirror=upstream_dir, limit=5, workers=1)
    assert (root / "nb201" / "mine.txt").read_text() == "user data"


# ------------------------------------------------------------------------------ concurrency
BUILD = """
import sys
from cgbench.benchmarks.build import build_family
r = build_family("nb201", root=sys.argv[1], mirror=sys.argv[2], limit=400, workers=1, chunk_size=50)
print("rows", r.rows)
"""


def test_two_concurrent_builds_with_the_same_options_both_succeed(tmp_path: Path, upstream_dir) -> None:
    root = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD, str(root), str(upstream_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "rows 400" in out
    assert any("waiting for another build of nb201 (pid" in err for _, err in outs)
    assert len(open_dataset("nb201", root, verify=True)) == 400


def test_reader_keeps_its_files_across_two_rebuilds(tmp_path: Path, upstream_dir) -> None:
    root = tmp_path / "store"
    build_family("nb201", root=root, mirror=upstream_dir, limit=30, workers=1, chunk_size=20)
    reader = open_dataset("nb201", root)
    for limit in (40, 50, 60):
        build_family("nb201", root=root, mirror=upstream_dir, limit=limit, workers=1, chunk_size=20)
    assert reader.table(["arch_id"]).num_rows == len(reader) == 30
    reader.verify()
    assert len(open_dataset("nb201", root)) == 60
    reader.close()
    build_family("nb201", root=root, mirror=upstream_dir, limit=10, workers=1, chunk_size=20)
    builds = [
        p for p in (root / ".builds" / "nb201").iterdir() if p.is_dir() and not p.name.endswith(".partial")
    ]
    assert len(builds) == 2  # once nobody reads them, old builds are removed


# ------------------------------------------------------------------------------ damage
@pytest.fixture(scope="module")
def _small_store_once(upstream_dir, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("small") / "store"
    build_family("nb201", root=root, mirror=upstream_dir, limit=60, workers=1, chunk_size=20)
    return root


@pytest.fixture
def small_store(_small_store_once: Path, tmp_path: Path) -> Path:
    """A private copy (shards, stamps and link) of a 60-arch NB-201 store in three shards."""
    root = tmp_path / "store"
    shutil.copytree(_small_store_once, root, symlinks=True)
    time.sleep(0.02)  # damage below lands in a later tick of the file-system clock
    return root


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


@pytest.mark.parametrize("damage", [_flip, _truncate])
def test_open_notices_a_damaged_shard(small_store: Path, damage) -> None:
    shard = open_dataset("nb201", small_store).files[1]
    damage(shard)
    with pytest.raises(StoreError) as err:
        open_dataset("nb201", small_store)
    assert shard.name in str(err.value)
    assert "cgbench info nb201 --verify" in str(err.value) and "cgbench build nb201" in str(err.value)


@pytest.mark.parametrize("damage", [_flip, _truncate])
def test_info_reports_damage(small_store: Path, damage) -> None:
    shard = open_dataset("nb201", small_store).files[0]
    damage(shard)
    result = runner.invoke(app, ["info", "nb201", "--root", str(small_store), "--verify"])
    assert result.exit_code != 0
    assert shard.name in result.output


@pytest.mark.parametrize("damage", [_flip, _truncate])
def test_a_failing_read_names_the_shard(small_store: Path, damage) -> None:
    ds = open_dataset("nb201", small_store)  # opened while fine, damaged while in use
    damage(ds.files[2])
    with pytest.raises(StoreError) as err:
        ds.table()
        ds.graphs()
    assert ds.files[2].name in str(err.value) and "cgbench info nb201 --verify" in str(err.value)


def test_verify_notices_damage_that_keeps_the_stat(small_store: Path) -> None:
    ds = open_dataset("nb201", small_store)
    shard = ds.files[0]
    st = shard.stat()
    _flip(shard)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(StoreError, match=rf"{shard.name}: sha256"):
        open_dataset("nb201", small_store, verify=True)


def test_touched_but_intact_shard_still_opens(small_store: Path) -> None:
    shard = open_dataset("nb201", small_store).files[0]
    os.utime(shard)
    assert len(open_dataset("nb201", small_store)) == 60


# ------------------------------------------------------------------------------ pickles
class Genotype:
    """Pickles as GENNAPE's ``Genotype`` once its module name is rewritten (protocol 2 text)."""

    def __init__(self, *fields) -> None:
        self.fields = fields

    def __reduce__(self):
        return (Genotype, self.fields)


def _genotype_cache(path: Path, concat) -> Path:
    """A GENNAPE NB-301 cache pickle whose genotype names ``concat`` (a ``range``, as GENNAPE's do)."""
    geno = Genotype([("sep_conv_3x3", 0)] * 8, concat, [("sep_conv_3x3", 0)] * 8, [2, 3, 4, 5])
    data = pickle.dumps(
        [{"compute graph": None, "original config": geno, "acc": 0.9}], protocol=2, fix_imports=False
    )
    ours = f"c{__name__}\nGenotype\n".encode()
    assert ours in data
    path.write_bytes(data.replace(ours, b"cmodel_src.darts.model_darts\nGenotype\n"))
    return path


def test_huge_range_in_a_gennape_cache_is_refused_fast(tmp_path: Path) -> None:
    from cgbench.loaders.gennape import PickleRefused, load_pickle
    from cgbench.loaders.nb301 import GENNAPE_GENOTYPE_GLOBALS

    path = _genotype_cache(tmp_path / "cache.pkl", range(2, 30_000_000))
    started = time.perf_counter()
    with pytest.raises(PickleRefused, match="29,999,998 elements"):
        load_pickle(path, GENNAPE_GENOTYPE_GLOBALS)
    assert time.perf_counter() - started < 1.0
    small = load_pickle(_genotype_cache(tmp_path / "ok.pkl", range(2, 6)), GENNAPE_GENOTYPE_GLOBALS)
    assert list(small[0]["original config"].normal_concat) == [2, 3, 4, 5]  # GENNAPE's own still loads


def test_a_refusal_is_reported_as_a_refusal_not_as_corruption(tmp_path: Path) -> None:
    from cgbench.loaders.gennape import PickleRefused, load_pickle

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(os.system))
    with pytest.raises(PickleRefused) as err:
        load_pickle(path)
    assert "refusing" in str(err.value) and "corrupt" not in str(err.value)
    path.write_bytes(pickle.dumps([1, 2, 3])[:-3])
    with pytest.raises(Exception, match="corrupt") as err2:
        load_pickle(path)
    assert not isinstance(err2.value, PickleRefused)


# ------------------------------------------------------------------------------ resume key
def test_resume_key_covers_every_module_that_shapes_a_record() -> None:
    from cgbench.benchmarks.build import _fingerprint_sources
    from cgbench.loaders.registry import get_family

    # (folder, file) names: the same in a checkout and in an installed package (cgbench/loaders/...)
    covered = {(p.parent.name, p.name) for p in _fingerprint_sources(get_family("nb301"))}
    repo = Path(__file__).resolve().parents[1]
    must = [
        repo / "loaders" / "nb301.py",
        repo / "loaders" / "gennape.py",  # nb301 reads GENNAPE caches through it
        repo / "loaders" / "base.py",
        repo / "loaders" / "blocks.py",
        repo / "benchmarks" / "build.py",
        repo / "benchmarks" / "schema.py",
        repo / "benchmarks" / "store.py",
        *(repo / "cg").glob("*.py"),
    ]
    missing = [str(p.relative_to(repo)) for p in must if (p.parent.name, p.name) not in covered]
    assert not missing


# ------------------------------------------------------------------------------ random access
def test_indexing_like_a_pyg_dataset(small_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = open_dataset("nb201", small_store)
    every = ds.graphs()
    hashes = ds.table(["cg_hash"]).column("cg_hash").to_pylist()
    ids = ds.arch_ids()
    assert len(ds) == len(every) == 60 and len(ds.files) == 3

    import pyarrow.parquet as pq

    monkeypatch.setattr(pq, "read_table", lambda *a, **k: pytest.fail("random access read a whole shard"))
    fresh = open_dataset("nb201", small_store)
    assert fresh[45].cg_hash() == hashes[45]  # one row group of the third shard
    assert len(fresh._cache) == 1 and fresh._groups[next(iter(fresh._cache))][0] == 2  # one group, shard 3
    assert fresh[-1].cg_hash() == hashes[-1] and fresh.graph(0).cg_hash() == hashes[0]
    assert [g.cg_hash() for g in fresh[10:50:7]] == hashes[10:50:7]
    picks = [59, 0, 21, 21, -60, 38]
    assert [g.cg_hash() for g in fresh[picks]] == [hashes[i] for i in picks]
    assert fresh[5].num_nodes == every[5].num_nodes and fresh[5].params() == every[5].params()
    assert fresh.row(33)["arch_id"] == ids[33]
    for bad in (60, -61):
        with pytest.raises(IndexError, match="out of range"):
            fresh[bad]
    with pytest.raises(TypeError):
        fresh["7"]


def _same_graph(a, b) -> None:
    for name in ("ops", "res", "weight", "bias", "edges"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    assert a.input_shape == b.input_shape and a.num_params == b.num_params and a.num_params is not None


def test_random_access_equals_the_full_decode(small_store: Path) -> None:
    """ds[i], ds[list] and ds[slice] give, array for array, what decoding the whole table gives,
    for random rows of every shard and row group (cache cold, warm and mixed)."""
    from cgbench.benchmarks.store import graphs_from_table

    full = graphs_from_table(open_dataset("nb201", small_store).table())
    ds = open_dataset("nb201", small_store)
    ds._index()
    assert {shard for shard, _ in ds._groups} == {0, 1, 2}
    rng = np.random.default_rng(0)
    rows = rng.integers(-len(ds), len(ds), size=200).tolist()
    for i in rows[:40]:
        _same_graph(ds[i], full[i])
    ds._cache.clear()
    for i, g in zip(rows, ds[rows]):  # a batch: each row group read once, the cache untouched
        _same_graph(g, full[i])
    ds._cache.clear()
    ds[rows[0]]  # one group cached, the rest read
    for i, g in zip(rows, ds.graphs(rows)):
        _same_graph(g, full[i])
    for i, g in zip(range(3, 57, 5), ds[3:57:5]):
        _same_graph(g, full[i])
    assert len(ds._groups) > 3  # several row groups per shard: groups are sized in nodes


def test_small_row_groups_keep_the_store_compact(small_store: Path) -> None:
    """Row groups hold about ROW_GROUP_NODES nodes; no column statistics are written."""
    import pyarrow.parquet as pq

    from cgbench.benchmarks.store import ROW_GROUP_NODES

    ds = open_dataset("nb201", small_store)
    meta = pq.ParquetFile(ds.files[0]).metadata
    per_row = ds.table(["num_nodes"]).column("num_nodes").to_numpy()[: meta.num_rows].mean()
    rows = meta.row_group(0).num_rows
    assert rows < meta.num_rows and ROW_GROUP_NODES - per_row < rows * per_row <= ROW_GROUP_NODES
    first = [meta.row_group(0).column(j) for j in range(meta.num_columns)]
    assert not any(c.is_stats_set for c in first)
    op = next(c for c in first if c.path_in_schema.startswith("node_op"))
    assert op.has_dictionary_page  # the schema says node_op is dictionary-encoded


def test_evaluation_reads_each_store_column_once(small_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 8 §5: an evaluation over seeds and predictors on a built store reads every column
    of the Parquet shards once (no read per graph, per chunk or per seed)."""
    from collections import Counter

    import pyarrow.parquet as pq

    from cgbench.benchmarks.store import CGDataset
    from cgbench.eval.protocols import evaluate

    reads: Counter = Counter()
    scan = CGDataset._scan_file

    class Counted:
        def __init__(self, pf: pq.ParquetFile, shard: int) -> None:
            self.pf, self.shard = pf, shard

        def read(self, columns=None, **kwargs):
            reads.update((self.shard, c) for c in columns or ["*"])
            return self.pf.read(columns=columns, **kwargs)

        def iter_batches(self, columns=None, **kwargs):
            reads.update((self.shard, c) for c in columns or ["*"])
            return self.pf.iter_batches(columns=columns, **kwargs)

    monkeypatch.setattr(CGDataset, "_scan_file", lambda self, i: Counted(scan(self, i), i))
    graphs = CGDataset.graphs

    def all_graphs(self, indices=None):
        assert indices is None, "evaluation read graphs row group by row group"
        return graphs(self)

    monkeypatch.setattr(CGDataset, "graphs", all_graphs)
    monkeypatch.setattr(CGDataset, "_row_group", lambda *a: pytest.fail("evaluation read graphs one by one"))
    ds = open_dataset("nb201", small_store)
    task = "nb201/cifar10-valid:fine-tune-20"
    evaluate(task, ["flops", "summary-rf"], datasets={"nb201": ds}, seeds=[0, 1])
    assert {shard for shard, _ in reads} == {0, 1, 2}
    assert max(reads.values()) == 1, reads.most_common(3)
    assert "*" not in {c for _, c in reads}  # never every column of a shard


# ------------------------------------------------------------------------------ downloads
def test_a_transient_http_failure_is_retried(tmp_path: Path, upstream_dir, http_serve, monkeypatch) -> None:
    import http.server

    from cgbench.benchmarks import download

    key = "nb301/nasbench301_test_results_0.json"
    failures: list[str] = []

    class FlakyOnce(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            if not failures:
                failures.append(self.path)
                self.send_error(503, "busy")
                return
            super().do_GET()

    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    url = http_serve(upstream_dir, FlakyOnce)
    paths = download.fetch_sources([key], mirror=url, root=tmp_path / "home")
    assert failures and download.file_sha256(paths[key]) == download.load_manifest()[key].sha256


def test_no_fixed_temporary_names_anywhere() -> None:
    repo = Path(__file__).resolve().parents[1]
    offenders = []
    for path in repo.rglob("*.py"):
        if any(part in {"tests", ".git", ".venv", "build"} for part in path.relative_to(repo).parts):
            continue
        text = path.read_text()
        for pattern in ('".tmp"', "'.tmp'", '.tmp")', '+ ".tmp', '.json.tmp"', ".tmp-{os.getpid()}"):
            if pattern in text:
                offenders.append(f"{path.relative_to(repo)}: {pattern}")
    assert not offenders


def test_ci_fails_without_the_offline_mirror(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    checkout = tmp_path / "checkout"
    (checkout / ".ci").mkdir(parents=True)
    shutil.copy(repo / ".ci" / "run", checkout / ".ci" / "run")
    env = {k: v for k, v in os.environ.items() if k != "CGBENCH_TEST_MIRROR"}
    proc = subprocess.run(["bash", str(checkout / ".ci" / "run")], capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "offline mirror" in proc.stderr
