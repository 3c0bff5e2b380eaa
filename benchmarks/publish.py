"""Publish the unified store as a Hugging Face dataset repository, and fetch it back.

A built family lives in the store as ``ROOT/<family>/part-*.parquet`` plus
``ROOT/<family>/manifest.json`` (``{"family", "schema_version", "rows", "files": [{"name",
"sha256", "rows", "split"?}]}``). A published repository keeps exactly that layout, one folder per
family, and adds:

- ``README.md``: the dataset card; its YAML ``configs:`` declare one config per family with its
  Parquet files per split (``split`` of a file entry, default ``train``), so
  ``datasets.load_dataset(REPO, "nb201")`` opens it;
- ``LICENSES.md``: every upstream source of each family with its repository, commit and licence.

A published family is identified by ``(repository, revision, family)`` and verified by its
``manifest.json``: every Parquet file must match the sha256 and row count it lists. When the
package manifest ``upstream.json`` pins ``datasets.families.<family>.manifest_sha256``, the
``manifest.json`` itself is checked first, which makes a download as trustworthy as the
installed package.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cgbench.benchmarks.download import (
    SourceError,
    default_root,
    file_sha256,
    load_manifest,
    published_datasets,
)

__all__ = [
    "CARD_FILE",
    "DEFAULT_SPLIT",
    "LICENSES_FILE",
    "MANIFEST_FILE",
    "PublishError",
    "fetch_dataset",
    "publish",
    "push",
    "read_family_manifest",
    "render_card",
    "verify_family",
]

MANIFEST_FILE = "manifest.json"
CARD_FILE = "README.md"
LICENSES_FILE = "LICENSES.md"
DEFAULT_SPLIT = "train"
_HUB_ID = re.compile(r"^(?:hf://datasets/)?([\w.-]+/[\w.-]+)(?:@([\w./-]+))?$")
_HF_LICENSES = {"MIT": "mit", "Apache-2.0": "apache-2.0"}


class PublishError(ValueError):
    """The store or a published layout is incomplete or inconsistent (the message says why)."""


# ------------------------------------------------------------------------------------ manifests


def read_family_manifest(directory: str | os.PathLike, family: str) -> dict[str, Any]:
    """The ``manifest.json`` of ``directory/family`` (a store root or a published repository)."""
    path = Path(directory) / family / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise PublishError(
            f"{path} not found: family {family!r} is not built there (run `cgbench build "
            f"{family}` or pass the right --root)"
        ) from None
    except ValueError as exc:
        raise PublishError(f"{path} is not valid JSON ({exc}); rebuild family {family!r}") from None
    files = manifest.get("files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and {"name", "sha256", "rows"} <= f.keys() for f in files
    ):
        raise PublishError(f"{path}: 'files' must be a list of {{name, sha256, rows}} records")
    for entry in files:
        if Path(entry["name"]).name != entry["name"]:
            raise PublishError(f"{path}: file name {entry['name']!r} must not contain a folder")
    return manifest


def _check_file(path: Path, entry: dict[str, Any]) -> str | None:
    """What is wrong with one Parquet file of a manifest, or None."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return f"{path}: missing"
    actual = file_sha256(path)
    if actual != entry["sha256"]:
        return f"{path}: sha256 mismatch: expected {entry['sha256']}, got {actual}"
    rows = pq.read_metadata(path).num_rows
    if rows != entry["rows"]:
        return f"{path}: {rows} rows, but the manifest says {entry['rows']}"
    return None


def verify_family(directory: str | os.PathLike, family: str) -> dict[str, Any]:
    """Check every Parquet file of ``directory/family`` against its manifest; return the manifest.

    Raises:
        SourceError: a file is missing or its sha256 differs (the message lists them all).
    """
    manifest = read_family_manifest(directory, family)
    folder = Path(directory) / family
    problems = [p for e in manifest["files"] if (p := _check_file(folder / e["name"], e))]
    if problems:
        raise SourceError(
            f"dataset {family!r} in {Path(directory)} fails verification against "
            f"{folder / MANIFEST_FILE}:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nRebuild it (`cgbench build`) or download it again (`cgbench download "
            f"{family} --from REPO`)."
        )
    return manifest


def _splits(manifest: dict[str, Any], family: str) -> dict[str, list[str]]:
    """split -> repository paths of its Parquet files, in manifest order."""
    splits: dict[str, list[str]] = {}
    for entry in manifest["files"]:
        split = entry.get("split") or DEFAULT_SPLIT
        splits.setdefault(split, []).append(f"{family}/{entry['name']}")
    return splits


def _published_families(directory: Path) -> list[str]:
    return sorted(p.parent.name for p in directory.glob(f"*/{MANIFEST_FILE}"))


# ------------------------------------------------------------------------------------ card


def _sources_of(family: str) -> list[Any]:
    return sorted(
        (e for e in load_manifest().values() if e.loader == family and e.available_offline),
        key=lambda e: e.key,
    )


def render_card(directory: str | os.PathLike, *, repo_id: str | None = None) -> str:
    """The ``README.md`` dataset card for every family published in ``directory``."""
    from huggingface_hub import DatasetCardData

    directory = Path(directory)
    families = _published_families(directory)
    if not families:
        raise PublishError(f"no <family>/{MANIFEST_FILE} in {directory}: nothing to describe")
    manifests = {f: read_family_manifest(directory, f) for f in families}
    licences = sorted(
        {_HF_LICENSES.get(e.license, "other") for f in families for e in _sources_of(f)}
    )
    configs = [
        {
            "config_name": family,
            "data_files": [
                {"split": split, "path": paths}
                for split, paths in _splits(manifests[family], family).items()
            ],
        }
        for family in families
    ]
    data = DatasetCardData(
        license=licences or ["other"],
        pretty_name="cgbench: computation graphs of neural-architecture benchmarks",
        tags=["neural-architecture-search", "computation-graph", "performance-prediction"],
        task_categories=["graph-ml"],
        configs=configs,
    )
    name = repo_id or "OWNER/NAME"

    def row(family: str) -> str:
        manifest = manifests[family]
        rows = manifest.get("rows", sum(x["rows"] for x in manifest["files"]))
        licences = ", ".join(sorted({e.license for e in _sources_of(family)}))
        digest = file_sha256(directory / family / MANIFEST_FILE)
        return (
            f"| `{family}` | {rows:,} | {len(manifest['files'])} "
            f"| `{manifest.get('schema_version', '?')}` | {licences or 'see LICENSES.md'} "
            f"| `{digest}` |"
        )

    rows = "\n".join(row(f) for f in families)
    body = f"""
# cgbench: unified computation-graph benchmarks

Neural-architecture benchmarks (NAS-Bench-101/201/301, Once-for-All, ...) converted to one
computation-graph format, one configuration per family, one row per architecture with its labels
(accuracy, FLOPs, parameters, latencies, zero-cost proxies). Built by cgbench from the upstream
files listed in `{LICENSES_FILE}`.

| config | rows | Parquet files | schema | upstream licences | sha256 of `manifest.json` |
|---|---|---|---|---|---|
{rows}

## Loading

```python
from datasets import load_dataset
ds = load_dataset("{name}", "{families[0]}", split="{DEFAULT_SPLIT}")
```

or, into the cgbench store (verified file by file): `cgbench download {families[0]} --from {name}`.

## Verification

Each `<family>/{MANIFEST_FILE}` lists the sha256 and row count of the family's Parquet files.
`cgbench download FAMILY --from REPO` checks them before installing anything. Hugging Face drops
Arrow schema metadata, so the schema version is stored in the `schema_version` column and in the
manifest.

## Licences and attribution

The data derive from the upstream releases listed in `{LICENSES_FILE}` (Apache-2.0 or MIT, all
permitting redistribution with attribution). Please cite their authors and GENNAPE (Mills et al.,
"GENNAPE: Towards Generalized Neural Architecture Performance Estimators", AAAI 2023).
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"


def _render_licences(families: Sequence[str]) -> str:
    lines = [
        "# Upstream sources and licences",
        "",
        "Every published family is derived from the files below, fetched at a pinned commit and",
        "verified by sha256 (see cgbench's `benchmarks/upstream.json`).",
    ]
    for family in families:
        lines += ["", f"## {family}", "", "| file | repository @ commit : path | licence |"]
        lines.append("|---|---|---|")
        sources = _sources_of(family)
        for e in sources:
            lines.append(
                f"| `{e.key}` | [{e.repo}]({e.url}) @ {e.commit} : `{e.path}` | {e.license} |"
            )
        if not sources:
            lines.append("| (no upstream file in the download manifest) | | |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ layout


def _replace_dir(staged: Path, target: Path) -> None:
    """Move the complete ``staged`` folder to ``target``, replacing it only once all is in place."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    try:
        os.replace(staged, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _copy_verified(src: Path, dest: Path, manifest: dict[str, Any], what: str, advice: str) -> None:
    """Copy the Parquet files of ``manifest`` and the manifest from ``src`` into ``dest``.

    Every copy is checked (sha256, rows); on any problem :class:`SourceError` lists them all.
    """
    problems = []
    for entry in manifest["files"]:
        origin, target = src / entry["name"], dest / entry["name"]
        if not origin.is_file():
            problems.append(f"{origin}: missing")
            continue
        shutil.copyfile(origin, target)
        problem = _check_file(target, entry)
        if problem:
            problems.append(problem.replace(str(target), str(origin)))
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise SourceError(
            f"{what} fails verification against {src / MANIFEST_FILE}:\n{listing}\n{advice}"
        )
    shutil.copyfile(src / MANIFEST_FILE, dest / MANIFEST_FILE)


def publish(
    families: str | Iterable[str],
    to: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    repo_id: str | None = None,
) -> Path:
    """Lay out (or update) a Hugging Face dataset repository in ``to`` from the store.

    Each family's Parquet files are verified against its store manifest, copied to
    ``to/<family>/`` with the manifest, and the card (``README.md``) and ``LICENSES.md`` are
    regenerated for all families present in ``to``. Returns ``to``.
    """
    from cgbench.benchmarks import store

    families = [families] if isinstance(families, str) else list(families)
    store_root = Path(root).expanduser() if root is not None else default_root()
    out = Path(to)
    out.mkdir(parents=True, exist_ok=True)
    for family in families:
        try:
            dataset = store.open_dataset(family, store_root)
        except store.StoreError as exc:
            raise PublishError(str(exc)) from None
        manifest = read_family_manifest(store_root, family)
        staged = Path(tempfile.mkdtemp(dir=out, prefix=f".{family}.incoming-"))
        staged.chmod(0o755)  # mkdtemp makes it private; a repository is meant to be shared
        try:
            _copy_verified(
                dataset.path,
                staged,
                manifest,
                f"store dataset {family!r}",
                f"Rebuild it with `cgbench build {family}`; nothing was published.",
            )
            _replace_dir(staged, out / family)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    all_families = _published_families(out)
    (out / CARD_FILE).write_text(render_card(out, repo_id=repo_id), "utf-8")
    (out / LICENSES_FILE).write_text(_render_licences(all_families), "utf-8")
    return out


def push(
    directory: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    message: str = "Publish cgbench datasets",
) -> str:
    """Upload a published layout to the Hub dataset repository ``repo_id``; returns the commit URL.

    Every family is verified first. Needs a write token (``token`` or ``$HF_TOKEN``).
    """
    from huggingface_hub import HfApi

    token = token or os.environ.get("HF_TOKEN")
    if not token:
        raise PublishError("pushing to the Hugging Face Hub needs a write token: set HF_TOKEN")
    families = _published_families(Path(directory))
    if not families:
        raise PublishError(f"nothing to push: no <family>/{MANIFEST_FILE} in {directory}")
    for family in families:  # never upload a layout that does not verify
        verify_family(directory, family)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(directory),
        repo_id=repo_id,
        repo_type="dataset",
        commit_message=message,
        ignore_patterns=[".*", "*/.*"],
    )
    return str(getattr(info, "commit_url", info))


# ------------------------------------------------------------------------------------ fetching


def _check_pinned_manifest(source: Path, family: str) -> None:
    pins = published_datasets().get("families", {}).get(family, {})
    want = pins.get("manifest_sha256")
    if want is None:
        return
    path = source / family / MANIFEST_FILE
    actual = file_sha256(path)
    if actual != want:
        raise SourceError(
            f"{path}: sha256 mismatch: expected {want} (pinned by this cgbench release), got "
            f"{actual}. It is not the published {family!r} dataset this version knows; pass the "
            "right repository/revision or upgrade cgbench."
        )


def _install(source: Path, family: str, store_root: Path) -> Path:
    """Verify ``source/family`` and make it the store's ``family`` dataset in one switch."""
    from cgbench.benchmarks import store
    from cgbench.benchmarks.schema import SCHEMA_VERSION

    try:
        manifest = read_family_manifest(source, family)
    except PublishError as exc:
        raise SourceError(
            f"{source} is not a published cgbench dataset with family {family!r}: {exc}"
        ) from None
    _check_pinned_manifest(source, family)
    schema = manifest.get("schema_version")
    if schema != SCHEMA_VERSION:
        raise SourceError(
            f"{source / family / MANIFEST_FILE}: schema {schema!r}, this cgbench reads "
            f"{SCHEMA_VERSION!r}; pick a matching revision or upgrade cgbench"
        )
    # unique per call, so two installs of the same source never share a working directory
    digest = file_sha256(source / family / MANIFEST_FILE)[:16]
    key = f"download-{digest}-{os.getpid()}-{time.monotonic_ns()}"
    build = store.new_build_dir(store_root, family, key)
    try:
        _copy_verified(
            source / family,
            build,
            manifest,
            f"published dataset {family!r} from {source}",
            "Nothing was installed: download it again, or fix or republish the source.",
        )
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return store.publish_build(store_root, family, build)


def fetch_dataset(
    family: str,
    source: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    revision: str | None = None,
    token: str | None = None,
) -> Path:
    """Install a published family into the store ``root`` (default :func:`default_root`).

    ``source`` is a local published layout (directory) or a Hub dataset id (``owner/name``,
    ``owner/name@revision`` or ``hf://datasets/owner/name``). Every file is verified against the
    family's ``manifest.json`` before the store's ``root/<family>`` is replaced; on any failure
    the store is left as it was. Returns ``root/<family>``.
    """
    store_root = Path(root).expanduser() if root is not None else default_root()
    local = Path(source).expanduser()
    if local.is_dir():
        return _install(local, family, store_root)
    match = _HUB_ID.match(str(source))
    if match is None:
        raise SourceError(
            f"{source!r} is neither a directory nor a Hugging Face dataset id (owner/name): "
            "pass a published layout made by `cgbench publish`, or a Hub repository"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    repo_id, rev = match.group(1), revision or match.group(2)
    store_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store_root, prefix=f".{family}.hub-") as staging:
        try:
            snapshot_download(
                repo_id,
                repo_type="dataset",
                revision=rev,
                allow_patterns=[f"{family}/*"],
                local_dir=staging,
                token=token,
            )
        except (HfHubHTTPError, OSError) as exc:
            raise SourceError(
                f"cannot download {family!r} from the Hub dataset {repo_id}"
                f"{'@' + rev if rev else ''}: {exc}. Check the id and your network, or pass a "
                "local directory made by `cgbench publish`."
            ) from exc
        return _install(Path(staging), family, store_root)
