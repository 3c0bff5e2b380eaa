"""GENNAPE's labelled release (issue #10): readers, `cgbench import gennape`, tasks, bad input."""

from __future__ import annotations

import json
import pickle
import shutil
from collections import Counter
from pathlib import Path

import pytest

from cgbench.benchmarks.store import open_dataset
from cgbench.cg import extract_cg
from cgbench.commands.gennape import run_import
from cgbench.loaders.base import LoaderError
from cgbench.loaders.gennape_release import find_release_files, read_release_json
from cgbench.loaders.registry import get_family

FIXTURES = Path(__file__).parent / "fixtures"
RELEASE = FIXTURES / "gennape_release"
JSONS = {
    "hiaml": "gpi_test_hiaml_cifar10_labelled_cg_data.json",
    "two_path": "gpi_test_two_path_cifar10_labelled_cg_data.json",
    "inception": "inception_cifar10_labelled_cg_data.json",
}
CACHES = {  # existing cache fixtures, in the release's file names
    "gennape_nb101_cache_mini.pkl": "gpi_nb101_comp_graph_cache.pkl",
    "gennape_ofa_cache_mini.pkl": "gpi_ofa_comp_graph_cache.pkl",
    "gennape_ofa_resnet_cache_mini.pkl": "gpi_ofa_resnet_comp_graph_cache.pkl",
}


def _fixture(family: str) -> dict:
    return json.loads((RELEASE / "data" / JSONS[family]).read_text())


@pytest.mark.parametrize("family", sorted(JSONS))
def test_release_json_labels_and_gennape_cg(family):
    fam = get_family(family)
    data = _fixture(family)
    records = list(read_release_json(RELEASE / "data" / JSONS[family], fam))
    assert [r.labels["accuracy"] for r in records] == [v["max_perf"] / 100 for v in data.values()]
    assert [r.tags["gennape_key"] for r in records] == list(data)
    for rec in records:  # GENNAPE's own CG (here: ours in GENNAPE's layout) is comparable
        ours = extract_cg(fam.build_model(rec.config), (3, 32, 32))
        assert (rec.tags["gennape_cg_nodes"], rec.tags["gennape_cg_edges"]) == (
            ours.num_nodes,
            ours.num_edges,
        )
        hist = json.loads(rec.tags["gennape_cg_ops"])
        assert hist.get("conv2d", 0) == ours.op_counts()["conv"]
        assert sum(hist.values()) == ours.num_nodes


def _release(tmp_path: Path, with_caches: bool = True) -> Path:
    root = tmp_path / "CG_data"
    shutil.copytree(RELEASE / "data", root / "data")
    if with_caches:
        (root / "cache").mkdir()
        for src, dst in CACHES.items():
            shutil.copy(FIXTURES / src, root / "cache" / dst)
    return root


def test_import_round_trip(tmp_path):
    release = _release(tmp_path)
    found = Counter(f for _, f, _ in find_release_files(release))
    assert set(found) == {"hiaml", "two_path", "inception", "nb101", "ofa_pn", "ofa_mbv3", "ofa_resnet"}
    store = tmp_path / "store"
    results = {r.family: r for r in run_import(release, root=store, workers=1)}
    for family in JSONS:
        ds = open_dataset(family, store)
        table = ds.table(
            columns=["arch_id", "accuracy", "max_perf", "gennape_cg_nodes", "num_nodes"]
        ).to_pylist()
        expected = [v["max_perf"] / 100 for v in _fixture(family).values()]
        assert [row["accuracy"] for row in table] == expected
        assert all(row["gennape_cg_nodes"] == row["num_nodes"] for row in table)
        assert results[family].rows == len(expected)
    for family in ("nb101", "ofa_resnet"):
        assert results[family].rows > 0
        acc = open_dataset(family, store).table(columns=["accuracy"]).column("accuracy").to_pylist()
        assert all(a is not None and 0 < a <= 1 for a in acc)


def test_huggingface_datasets_reads_each_family(tmp_path):
    datasets = pytest.importorskip("datasets")
    release = _release(tmp_path, with_caches=False)
    store = tmp_path / "store"
    run_import(release, root=store, workers=1)
    for family in JSONS:
        files = [str(f) for f in open_dataset(family, store).files]
        ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
        assert len(ds) == len(_fixture(family))
        assert ds[0]["family"] == family and ds[0]["num_nodes"] == len(ds[0]["node_op"])


def test_cli_import_gennape(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cgbench.cli import app

    release = _release(tmp_path, with_caches=False)
    result = CliRunner().invoke(
        app, ["import", "gennape", str(release), "--root", str(tmp_path / "s"), "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert len(open_dataset("hiaml", tmp_path / "s")) == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["import", "gennape", str(empty)])
    assert result.exit_code == 1
    assert "gpi_test_hiaml_cifar10_labelled_cg_data.json" in result.output


# ----------------------------------------------------------------------------- bad input
def test_release_json_missing_max_perf(tmp_path):
    data = _fixture("hiaml")
    key = next(iter(data))
    del data[key]["max_perf"]
    path = tmp_path / JSONS["hiaml"]
    path.write_text(json.dumps(data))
    with pytest.raises(LoaderError, match=r"gpi_test_hiaml.*entry .*missing `max_perf`"):
        list(read_release_json(path, get_family("hiaml")))


def test_release_json_bad_net_config(tmp_path):
    data = _fixture("two_path")
    next(iter(data.values()))["net_config"]["path2_reduce_inds"] = [0, 9]
    path = tmp_path / JSONS["two_path"]
    path.write_text(json.dumps(data))
    with pytest.raises(LoaderError, match="path2_reduce_inds"):
        list(get_family("two_path", gennape=path).iter_records({}))


def test_release_pickle_with_unexpected_class(tmp_path):
    release = _release(tmp_path, with_caches=False)
    (release / "cache").mkdir()
    (release / "cache" / "gpi_ofa_resnet_comp_graph_cache.pkl").write_bytes(pickle.dumps([Counter(a=1)]))
    with pytest.raises(LoaderError, match=r"refusing to unpickle collections\.Counter"):
        run_import(release, root=tmp_path / "store", workers=1)


def test_build_without_labels_names_the_release_files():
    from cgbench.benchmarks.tasks import MISSING_LABELS, parse_task

    for family in JSONS:
        assert JSONS[family] in MISSING_LABELS[family]
        assert parse_task(f"{family}/cifar10:in-family").label == "accuracy"
        assert parse_task(f"nb101->{family}/cifar10:zero-shot").source == "nb101"


def test_task_on_unlabelled_store_names_the_release_files(tmp_path):
    import warnings

    from cgbench.benchmarks.build import build_family
    from cgbench.benchmarks.tasks import TaskError
    from cgbench.eval.protocols import prepare_task

    build_family("hiaml", root=tmp_path, limit=40, workers=1, offline=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(
            TaskError, match=r"gpi_test_hiaml_cifar10_labelled_cg_data\.json.*cgbench import gennape"
        ):
            prepare_task("hiaml/cifar10:in-family", root=tmp_path)
