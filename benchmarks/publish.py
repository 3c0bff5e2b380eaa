"""Publish the unified store as a Hugging Face dataset repository, and fetch it back.

A built family lives in the store as ``ROOT/<family>/part-*.parquet`` plus
``ROOT/<family>/manifest.json`` (``{"family", "schema_version", "rows", "files": [{"name",
"sha256", "rows", "split"?}]}``). A published repository keeps exactly that layout, one folder per
family, and adds:

- ``README.md``: the dataset card; its YAML ``configs:`` declare one config per family with its
  Parquet files per split (``split`` of a file entry, default ``train``), so
  ``datasets.load_dataset(REPO, "nb201")`` opens it;
- ``LICENSES.md``: the upstream sources each family was built from (the ``sources`` of its store
  manifest) with repository, commit and licence, and whether files supplied by the user were used.

A published family is identified by ``(repository, revision, family)`` and verified by its
``manifest.json``, which must be consistent in itself (its ``family`` and ``schema_version`` are
the expected ones, it lists at least one Parquet file, each once, under a plain file name, and the
file row counts add up to ``rows``) and with the data: every Parquet file must match the sha256
and row count it lists, hold the base columns of the schema, and rows of that family only. When
the package manifest ``upstream.json`` pins ``datasets.families.<family>.manifest_sha256``, the
``manifest.json`` itself is checked first, which makes a download as trustworthy as the installed
package. The manifest is read once: the bytes that were checked are the bytes installed.
"""

from __future__ import annotations

import hashlib
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
    SourceEntry,
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
_SHA256 = re.compile(r"[0-9a-f]{64}")


class PublishError(ValueError):
    """The store or a published layout is incomplete or inconsistent (the message says why)."""


# ------------------------------------------------------------------------------------ manifests


def _plain_parquet_name(name: Any) -> bool:
    """``part-00000.parquet``: a file name in the family folder, not a path, not hidden."""
    return (
        isinstance(name, str)
        and name.endswith(".parquet")
        and len(name) > len(".parquet")
        and not name.startswith(".")
        and not any(c in name for c in "/\\\0")
    )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _manifest_problems(manifest: Any, family: str) -> list[str]:
    """What makes ``manifest`` contradict itself or belong elsewhere; empty if consistent."""
    from cgbench.benchmarks.schema import SCHEMA_VERSION

    if not isinstance(manifest, dict):
        return [f"not a JSON object (got {type(manifest).__name__})"]
    problems = []
    if manifest.get("family") != family:
        problems.append(
            f"'family' is {manifest.get('family')!r}, expected {family!r} (the folder of another family?)"
        )
    schema = manifest.get("schema_version")
    if schema != SCHEMA_VERSION:
        problems.append(
            f"schema {schema!r}, this cgbench reads {SCHEMA_VERSION!r}; pick a matching revision "
            "or upgrade cgbench"
        )
    files = manifest.get("files")
    if not isinstance(files, list):
        return [*problems, "'files' must be a list of {name, sha256, rows} records"]
    if not files:
        problems.append("'files' lists no Parquet file")
    seen: set[str] = set()
    total, counts_ok = 0, True
    for index, entry in enumerate(files):
        if not isinstance(entry, dict):
            problems.append(f"files[{index}] is not a {{name, sha256, rows}} record")
            counts_ok = False
            continue
        name, sha, rows = entry.get("name"), entry.get("sha256"), entry.get("rows")
        if not _plain_parquet_name(name):
            problems.append(
                f"files[{index}]: name {name!r} is not a plain file name ending in .parquet "
                "(no folder, not hidden)"
            )
        elif name in seen:
            problems.append(f"files[{index}]: {name!r} is listed twice")
        else:
            seen.add(name)
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            problems.append(f"files[{index}]: 'sha256' {sha!r} is not 64 lowercase hex digits")
        if _is_count(rows):
            total += rows
        else:
            problems.append(f"files[{index}]: 'rows' {rows!r} is not a row count")
            counts_ok = False
    declared = manifest.get("rows")
    if not _is_count(declared):
        problems.append(f"'rows' {declared!r} is not a row count")
    elif counts_ok and declared != total:
        problems.append(f"'rows' is {declared}, but its files hold {total} rows in all")
    return problems


def _read_manifest(folder: Path, family: str) -> tuple[bytes, dict[str, Any]]:
    """The bytes of ``folder/manifest.json`` and the manifest they hold, checked to be
    consistent for ``family``. Raises :class:`PublishError` (the message says what is wrong)."""
    path = folder / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PublishError(
            f"{path} not found: family {family!r} is not built there (run `cgbench build "
            f"{family}` or pass the right --root)"
        ) from None
    except OSError as exc:
        raise PublishError(f"cannot read {path}: {exc}") from None
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise PublishError(f"{path} is not valid JSON ({exc}); rebuild family {family!r}") from None
    problems = _manifest_problems(manifest, family)
    if problems:
        raise PublishError(f"{path}: " + "; ".join(problems))
    return raw, manifest


def read_family_manifest(directory: str | os.PathLike, family: str) -> dict[str, Any]:
    """The ``manifest.json`` of ``directory/family`` (a store root or a published repository),
    checked to be consistent (see the module docstring); raises :class:`PublishError`."""
    return _read_manifest(Path(directory) / family, family)[1]


def _check_file(path: Path, entry: dict[str, Any], family: str) -> str | None:
    """What is wrong with one Parquet file of ``family``'s manifest, or None."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from cgbench.benchmarks.schema import BASE_FIELDS

    if not path.is_file():
        return f"{path}: missing"
    actual = file_sha256(path)
    if actual != entry["sha256"]:
        return f"{path}: sha256 mismatch: expected {entry['sha256']}, got {actual}"
    try:
        with pq.ParquetFile(path) as parquet:
            schema = parquet.schema_arrow
            rows = parquet.metadata.num_rows
            missing = [f.name for f in BASE_FIELDS if f.name not in schema.names]
            if missing:
                return f"{path}: lacks the base columns {', '.join(missing)} of a cgbench dataset"
            wrong = [
                f"{f.name} ({schema.field(f.name).type}, expected {f.type})"
                for f in BASE_FIELDS
                if schema.field(f.name).type != f.type
            ]
            if wrong:
                return f"{path}: base columns of the wrong type: {', '.join(wrong)}"
            if rows != entry["rows"]:
                return f"{path}: {rows} rows, but the manifest says {entry['rows']}"
            families = pc.unique(parquet.read(columns=["family"]).column("family")).to_pylist()
    except (pa.ArrowException, OSError, ValueError) as exc:
        return f"{path}: not a readable Parquet file ({exc})"
    others = sorted(str(f) for f in families if f != family)
    if others:
        return f"{path}: holds rows of family {', '.join(others)}, not {family!r}"
    return None


def verify_family(directory: str | os.PathLike, family: str) -> dict[str, Any]:
    """Check ``directory/family``'s manifest and every Parquet file it lists; return the manifest.

    Raises:
        PublishError: the manifest is unreadable or inconsistent.
        SourceError: a file is missing or differs from its entry (the message lists them all).
    """
    manifest = read_family_manifest(directory, family)
    folder = Path(directory) / family
    problems = [p for e in manifest["files"] if (p := _check_file(folder / e["name"], e, family))]
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


def _sources_of(family: str) -> list[SourceEntry]:
    """Every upstream file loader ``family`` reads by default."""
    return sorted(
        (e for e in load_manifest().values() if e.loader == family and e.available_offline),
        key=lambda e: e.key,
    )


def _credits(manifest: dict[str, Any], family: str) -> tuple[list[SourceEntry], list[str], bool]:
    """The upstream files a family was built from (its store manifest's ``sources``), notes on
    official releases or other files supplied by the user, and whether a licence is unknown."""
    listed = manifest.get("sources")
    if not isinstance(listed, list):  # a manifest that does not say: credit the loader's defaults
        note = "The manifest does not list its sources: these are the files the loader reads by default."
        return _sources_of(family), [note], False
    known = load_manifest()
    entries, notes, unknown = [], [], not listed
    for item in listed:
        key = item.get("key") if isinstance(item, dict) else item
        entry = known.get(key) if isinstance(key, str) else None
        if entry is None:
            notes.append(f"`{key}`: a file supplied by the user, not in cgbench's download manifest.")
            unknown = True
            continue
        entries.append(entry)
        if not entry.available_offline:
            notes.append(
                f"`{key}`: an official release supplied by the user (not pinned by sha256; see "
                f"{entry.homepage or entry.url or 'its publisher'})."
            )
    if not listed:
        notes.append(
            "Built from files supplied by the user (a loader option such as an official release), "
            "not from files of cgbench's download manifest: see the publisher's licence."
        )
    return sorted(entries, key=lambda e: e.key), notes, unknown


def _origin(e: SourceEntry) -> str:
    """``[repo](url) @ commit : `path` `` as far as the entry knows them."""
    link = e.url or e.homepage
    text = f"[{e.repo}]({link})" if e.repo and link else (e.repo or (f"<{link}>" if link else "?"))
    return text + (f" @ {e.commit}" if e.commit else "") + (f" : `{e.path}`" if e.path else "")


def render_card(directory: str | os.PathLike, *, repo_id: str | None = None) -> str:
    """The ``README.md`` dataset card for every family published in ``directory``."""
    from huggingface_hub import DatasetCardData

    directory = Path(directory)
    families = _published_families(directory)
    if not families:
        raise PublishError(f"no <family>/{MANIFEST_FILE} in {directory}: nothing to describe")
    manifests = {f: read_family_manifest(directory, f) for f in families}
    credits = {f: _credits(manifests[f], f) for f in families}
    licences = sorted(
        {_HF_LICENSES.get(e.license, "other") for f in families for e in credits[f][0]}
        | ({"other"} if any(unknown for _, _, unknown in credits.values()) else set())
    )
    configs = [
        {
            "config_name": family,
            "data_files": [
                {"split": split, "path": paths} for split, paths in _splits(manifests[family], family).items()
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
        rows = manifest["rows"]
        licences = ", ".join(sorted({e.license for e in credits[family][0]}))
        digest = file_sha256(directory / family / MANIFEST_FILE)
        return (
            f"| `{family}` | {rows:,} | {len(manifest['files'])} "
            f"| `{manifest.get('schema_version', '?')}` | {licences or 'see LICENSES.md'} "
            f"| `{digest}` |"
        )

    rows = "\n".join(row(f) for f in families)
    licence_note = (
        "some built from files supplied by the user: see there"
        if any(unknown for _, _, unknown in credits.values())
        else "Apache-2.0 or MIT, all permitting redistribution with attribution"
    )
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

The data derive from the upstream releases listed in `{LICENSES_FILE}` ({licence_note}).
Please cite their authors and GENNAPE (Mills et al., "GENNAPE: Towards Generalized Neural
Architecture Performance Estimators", AAAI 2023).
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"


def _render_licences(directory: Path, families: Sequence[str]) -> str:
    lines = [
        "# Upstream sources and licences",
        "",
        "Every published family is derived from the files below, as listed in its `manifest.json`",
        "(`sources`); files of cgbench's download manifest (`benchmarks/upstream.json`) are fetched at",
        "a pinned commit and verified by sha256.",
    ]
    for family in families:
        entries, notes, _ = _credits(read_family_manifest(directory, family), family)
        lines += ["", f"## {family}", "", "| file | repository @ commit : path | licence |"]
        lines.append("|---|---|---|")
        for e in entries:
            lines.append(f"| `{e.key}` | {_origin(e)} | {e.license} |")
        if not entries:
            lines.append("| (no file of the download manifest) | | |")
        if notes:
            lines += ["", *(f"- {note}" for note in notes)]
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


def _copy_verified(src: Path, dest: Path, family: str, manifest_bytes: bytes, what: str, advice: str) -> None:
    """Copy the Parquet files that ``manifest_bytes`` lists from ``src`` into ``dest``, check every
    copy (sha256, rows, columns, family), then write those very manifest bytes to ``dest``.

    On any problem :class:`SourceError` lists them all.
    """
    manifest = json.loads(manifest_bytes)
    problems = []
    for entry in manifest["files"]:
        origin, target = src / entry["name"], dest / entry["name"]
        if not origin.is_file():
            problems.append(f"{origin}: missing")
            continue
        shutil.copyfile(origin, target)
        problem = _check_file(target, entry, family)
        if problem:
            problems.append(problem.replace(str(target), str(origin)))
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise SourceError(f"{what} fails verification against {src / MANIFEST_FILE}:\n{listing}\n{advice}")
    (dest / MANIFEST_FILE).write_bytes(manifest_bytes)


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
        raw, _ = _read_manifest(dataset.path, family)  # the build just opened, not a newer one
        staged = Path(tempfile.mkdtemp(dir=out, prefix=f".{family}.incoming-"))
        staged.chmod(0o755)  # mkdtemp makes it private; a repository is meant to be shared
        try:
            _copy_verified(
                dataset.path,
                staged,
                family,
                raw,
                f"store dataset {family!r}",
                f"Rebuild it with `cgbench build {family}`; nothing was published.",
            )
            _replace_dir(staged, out / family)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    all_families = _published_families(out)
    (out / CARD_FILE).write_text(render_card(out, repo_id=repo_id), "utf-8")
    (out / LICENSES_FILE).write_text(_render_licences(out, all_families), "utf-8")
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


def _check_pinned_manifest(path: Path, family: str, manifest_bytes: bytes) -> None:
    pins = published_datasets().get("families", {}).get(family, {})
    want = pins.get("manifest_sha256")
    if want is None:
        return
    actual = hashlib.sha256(manifest_bytes).hexdigest()
    if actual != want:
        raise SourceError(
            f"{path}: sha256 mismatch: expected {want} (pinned by this cgbench release), got "
            f"{actual}. It is not the published {family!r} dataset this version knows; pass the "
            "right repository/revision or upgrade cgbench."
        )


def _install(source: Path, family: str, store_root: Path) -> Path:
    """Verify ``source/family`` and make it the store's ``family`` dataset in one switch.

    ``manifest.json`` is read once: the pin, the consistency checks, the checks of the Parquet
    copies and the installed manifest all use those bytes, so a concurrent republish of
    ``source`` cannot get a manifest installed other than the one verified.
    """
    from cgbench.benchmarks import store

    path = source / family / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(
            f"{source} is not a published cgbench dataset with family {family!r}: cannot read "
            f"{path} ({exc.strerror or exc})"
        ) from None
    _check_pinned_manifest(path, family, raw)
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        problems = [f"not valid JSON ({exc})"]
    else:
        problems = _manifest_problems(manifest, family)
    if problems:
        raise SourceError(
            f"{source} is not a published cgbench dataset with family {family!r}: {path}:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nNothing was installed: pass the right repository/revision, or republish it."
        )
    # unique per call, so two installs of the same source never share a working directory
    digest = hashlib.sha256(raw).hexdigest()[:16]
    key = f"download-{digest}-{os.getpid()}-{time.monotonic_ns()}"
    build = store.new_build_dir(store_root, family, key)
    try:
        _copy_verified(
            source / family,
            build,
            family,
            raw,
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
    from cgbench.benchmarks.store import check_family

    check_family(family)  # a name, never a path: nothing outside the store is read or moved
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
