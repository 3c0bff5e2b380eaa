"""``cgbench download`` (upstream files or a published dataset) and ``cgbench publish``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from cgbench.commands.errors import fail_cleanly

_err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
_out = Console(highlight=False, markup=False, soft_wrap=True)

MirrorOption = Annotated[
    list[str] | None,
    typer.Option(
        "--mirror",
        "-m",
        metavar="DIR|URL",
        help="Local directory or base URL with the layout <family>/<file>; repeat for several "
        "(tried in order). Default: $CGBENCH_MIRROR (comma-separated).",
        show_default=False,
    ),
]
RootOption = Annotated[
    Path | None,
    typer.Option(help="Data root (default: $CGBENCH_HOME or ~/.cache/cgbench).", show_default=False),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    _err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    return typer.Exit(code)


class _RichBar:
    """The tqdm-like interface pooch drives, shown as one task of a rich ``Progress``."""

    def __init__(self, progress: Progress, key: str, size: int | None) -> None:
        self._progress = progress
        self._task = progress.add_task(key, total=size)

    def _state(self) -> Task:
        return next(t for t in self._progress.tasks if t.id == self._task)

    @property
    def total(self) -> float | None:
        return self._state().total

    @total.setter
    def total(self, value: int | None) -> None:
        self._progress.update(self._task, total=value or None)

    def update(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def reset(self) -> None:
        self._progress.reset(self._task, total=self.total)

    def close(self) -> None:
        """Keep the bar of a finished transfer; drop the bar of a failed one."""
        task = self._state()
        if task.total is not None and task.completed >= task.total:
            return
        self._progress.remove_task(self._task)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=_err,
        transient=False,
    )


def _list_sources() -> None:
    from cgbench.benchmarks.download import load_manifest

    entries = list(load_manifest().values())
    width = max(len(e.key) for e in entries)
    typer.echo(f"{'key':<{width}}  {'loader':<9}  {'bytes':>11}  {'licence':<10}  offline mirror")
    for e in entries:
        size = f"{e.size:,}" if e.size is not None else "?"
        offline = "yes" if e.available_offline else "no (official release)"
        typer.echo(f"{e.key:<{width}}  {e.loader:<9}  {size:>11}  {e.license:<10}  {offline}")


@fail_cleanly
def download(
    family: Annotated[
        str | None,
        typer.Argument(help="Family whose upstream files to fetch (e.g. nb201), or 'all'."),
    ] = None,
    mirror: MirrorOption = None,
    root: RootOption = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Never contact upstream hosts; use mirrors/cache.")
    ] = False,
    official: Annotated[
        bool,
        typer.Option("--official", help="Also fetch official releases without a pinned hash (large)."),
    ] = False,
    in_place: Annotated[
        bool,
        typer.Option(
            "--in-place",
            help="Verify files of local mirror directories without copying them into the cache.",
        ),
    ] = False,
    rehash: Annotated[bool, typer.Option("--rehash", help="Hash every file again, ignoring stamps.")] = False,
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Install the published unified dataset of FAMILY from a directory made by "
            "`cgbench publish` or a Hugging Face dataset id (owner/name, or owner/name@REVISION).",
            metavar="DIR|REPO",
            show_default=False,
        ),
    ] = None,
    list_files: Annotated[
        bool, typer.Option("--list", help="List the upstream files of the manifest and exit.")
    ] = False,
) -> None:
    """Fetch and verify upstream files (or a published dataset) into the cgbench cache."""
    from cgbench.benchmarks.download import SourceError, default_root, fetch_sources

    if list_files:
        _list_sources()
        return
    if family is None:
        raise typer.BadParameter("give a family (e.g. nb201) or 'all'", param_hint="FAMILY")
    base = root if root is not None else default_root()
    if source is not None:
        _download_published(family, source, base)
        return
    keys = _keys(family, official)
    error: SourceError | None = None
    with _progress() as progress:
        try:
            paths = fetch_sources(
                keys,
                mirror=mirror or None,
                root=base,
                offline=offline,
                progress=lambda key, size: _RichBar(progress, key, size),
                copy=not in_place,
                rehash=rehash,
            )
        except SourceError as exc:
            error = exc
    if error is not None:
        raise _fail(str(error))
    total = sum(p.stat().st_size for p in paths.values())
    _out.print(
        f"{family}: {len(paths)} file(s), {total / 1e6:.1f} MB verified (cache: {Path(base) / 'upstream'})"
    )


def _keys(family: str, official: bool) -> list[str]:
    """The upstream files of ``family`` (a family of ``cgbench build``, ``all``, or another set
    of upstream files of the manifest, e.g. ``gennape``); one clear line (exit 2) otherwise."""
    from cgbench.benchmarks.download import SourceError, keys_for, load_manifest
    from cgbench.loaders.registry import family_names

    names = family_names()
    groups = sorted({e.loader for e in load_manifest().values()} - set(names))
    if family != "all" and family not in names and family not in groups:
        raise _fail(
            f"unknown family {family!r}; known families: {', '.join(names)} (or 'all'; other sets of "
            f"upstream files: {', '.join(groups)})",
            code=2,
        )
    try:
        return keys_for(family, official=official)
    except SourceError:
        if not official and keys_for_official(family):
            raise _fail(f"{family}: its upstream files are official releases; add --official", 2) from None
        if family in names:
            raise _fail(
                f"{family} has no upstream files to download (its default build generates or samples "
                f"its architectures): build it with `cgbench build {family}`",
                code=2,
            ) from None
        raise


def keys_for_official(family: str) -> list[str]:
    """The upstream files of ``family`` including official releases (none: an empty list)."""
    from cgbench.benchmarks.download import SourceError, keys_for

    try:
        return keys_for(family, official=True)
    except SourceError:
        return []


def _download_published(family: str, source: str, root: Path) -> None:
    from cgbench.benchmarks.download import SourceError
    from cgbench.benchmarks.publish import PublishError, fetch_dataset
    from cgbench.benchmarks.store import StoreError

    try:
        target = fetch_dataset(family, source, root=root)
    except (SourceError, StoreError, PublishError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:  # the store cannot be written (a file, read-only, full)
        raise _fail(f"cannot install {family!r} into the store {root}: {exc}") from None
    _out.print(f"{family}: published dataset from {source} verified and installed in {target}")


@fail_cleanly
def publish(
    family: Annotated[list[str], typer.Argument(help="Built families to publish.")],
    to: Annotated[Path, typer.Option("--to", help="Output directory (dataset repository).")],
    root: RootOption = None,
    push: Annotated[
        str | None,
        typer.Option(
            "--push",
            help="Upload to this Hub dataset repository (needs $HF_TOKEN).",
            show_default=False,
        ),
    ] = None,
    private: Annotated[bool, typer.Option(help="Create the Hub repository private.")] = False,
) -> None:
    """Lay out a Hugging Face dataset repository from the store (and optionally push it)."""
    from cgbench.benchmarks.download import SourceError
    from cgbench.benchmarks.publish import PublishError
    from cgbench.benchmarks.publish import publish as do_publish
    from cgbench.benchmarks.publish import push as do_push

    try:
        out = do_publish(family, to, root=root, repo_id=push)
    except (PublishError, SourceError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:  # the output directory cannot be written
        raise _fail(f"cannot publish to {to}: {exc}") from None
    _out.print(f"published {', '.join(family)} to {out} (load with datasets.load_dataset)")
    if push is not None:
        try:
            url = do_push(out, push, private=private)
        except PublishError as exc:
            raise _fail(str(exc)) from None
        except OSError as exc:  # network / Hub HTTP errors
            raise _fail(f"upload to {push} failed: {exc}") from None
        _out.print(f"pushed to https://huggingface.co/datasets/{push} ({url})")


def register(app: typer.Typer) -> None:
    """Add ``download`` and ``publish`` to ``app``."""
    app.command("download")(download)
    app.command("publish")(publish)
