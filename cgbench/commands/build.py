"""``cgbench build`` and ``cgbench info``: make and inspect the unified datasets."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cgbench.commands.errors import fail_cleanly

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("info")(info)


def _family_options(options: list[str]) -> dict[str, object]:
    """``NAME=VALUE`` pairs; values that read as Python literals (``50000``, ``True``,
    ``(4, 12, 36, 108)``) are converted, anything else (paths) stays a string."""
    out: dict[str, object] = {}
    for item in options:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"--opt takes NAME=VALUE, got {item!r}")
        try:
            out[name.replace("-", "_")] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[name.replace("-", "_")] = value
    return out


@fail_cleanly
def build(
    family: Annotated[str, typer.Argument(help="Family to build, e.g. nb201.")],
    mirror: Annotated[
        str | None,
        typer.Option(help="Mirror dir or URL of upstream files (else $CGBENCH_MIRROR, then the web)."),
    ] = None,
    root: Annotated[
        Path | None, typer.Option(help="Store root (default $CGBENCH_HOME or ~/.cache/cgbench).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Build only the first N architectures.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: all CPUs).")] = None,
    offline: Annotated[bool, typer.Option(help="Never use the network.")] = False,
    opt: Annotated[
        list[str],
        typer.Option(help="Family option NAME=VALUE, e.g. --opt official=NAS-Bench-201-v1_1-096897.pth"),
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    engine: Annotated[
        str, typer.Option(help="Where chunks run: local (process pool) or ray (a Ray cluster, docs/ray.md).")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (HOST:PORT; default $RAY_ADDRESS).")
    ] = None,
    chunk_size: Annotated[
        int, typer.Option(help="Architectures per shard (one unit of work).", min=1)
    ] = 1000,
) -> None:
    """Build FAMILY's computation graphs into ROOT/FAMILY (Parquet shards + manifest.json)."""
    from cgbench.benchmarks.build import build_family
    from cgbench.benchmarks.engines import get_engine
    from cgbench.loaders.registry import get_family

    fam = get_family(family, **_family_options(opt))
    runner = get_engine(engine, workers=workers, address=ray_address)
    total = limit if limit is not None else getattr(fam, "expected_rows", None)
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"build {family}", total=total)
        result = build_family(
            fam,
            root=root,
            mirror=mirror,
            offline=offline,
            limit=limit,
            workers=workers,
            chunk_size=chunk_size,
            engine=runner,
            on_progress=lambda rows: progress.advance(task, rows),
        )
    console.print(
        f"[green]built[/green] {result.rows:,} {family} architectures in {result.seconds:.1f} s "
        f"-> {result.path}" + (f" (resumed {result.resumed_chunks} shards)" if result.resumed_chunks else "")
    )


@fail_cleanly
def info(
    family: Annotated[str | None, typer.Argument(help="Family to describe (default: all).")] = None,
    root: Annotated[Path | None, typer.Option(help="Store root.")] = None,
    verify: Annotated[bool, typer.Option(help="Check every shard's sha256.")] = False,
) -> None:
    """Show what is built under ROOT: rows, files, versions, label columns."""
    from cgbench.benchmarks import store

    families = [family] if family else store.list_families(root)
    out = Console()
    if not families:
        out.print(f"nothing built under {store.resolve_root(root)}; try `cgbench build nb201`")
        return
    table = Table(title=f"cgbench store {store.resolve_root(root)}")
    for col in ("family", "rows", "shards", "schema", "cgbench", "created", "primary label", "columns"):
        table.add_column(col)
    for name in families:
        ds = store.open_dataset(name, root, verify=verify)
        m = ds.manifest
        table.add_row(
            name,
            f"{len(ds):,}",
            str(len(ds.files)),
            m["schema_version"],
            m["cgbench_version"],
            m["created"],
            f"accuracy ({m.get('dataset', '?')})",
            f"{len(m.get('label_columns', {}))} labels, {len(m.get('tag_columns', {}))} tags",
        )
    out.print(table)
