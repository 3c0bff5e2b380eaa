"""``cgbench build``, ``cgbench info`` and ``cgbench families``: make and inspect the unified datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from cgbench.commands.errors import console as error_console
from cgbench.commands.errors import fail_cleanly, say
from cgbench.commands.options import EngineOption, RayAddressOption
from cgbench.loaders.registry import family_names

console = error_console()

INTERRUPTED = "interrupted; rerun the same command to resume (finished shards are kept)"


def _options_text(name: str) -> str:
    """The options of family ``name``, one per line (imports its loader)."""
    from cgbench.loaders.base import family_options
    from cgbench.loaders.registry import family_class

    cls = family_class(name)
    options = family_options(cls)
    lines = [f"{name} options (--opt NAME=VALUE):" if options else f"{name}: no options"]
    lines += [f"  {o.describe()}" for o in options.values()]
    return "\n".join(lines)


class _BuildCommand(typer.core.TyperCommand):
    """``cgbench build FAMILY --help`` also lists FAMILY's options."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["cgbench_family"] = next((a for a in args if a in family_names()), None)
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help(ctx, formatter)
        family = ctx.meta.get("cgbench_family")
        if family:
            text = _options_text(family)
            if self.rich_markup_mode is None:
                formatter.write(text + "\n")
            else:
                typer.echo(text)


BUILD_HELP = (
    "Build FAMILY's computation graphs into ROOT/FAMILY (Parquet shards + manifest.json).\n\n"
    f"Families: {', '.join(family_names())}. Their options: `cgbench families`, or "
    "`cgbench build FAMILY --help`."
)


def register(app: typer.Typer) -> None:
    app.command("build", cls=_BuildCommand, help=BUILD_HELP)(build)
    app.command("info")(info)
    app.command("families")(families)


@fail_cleanly(on_interrupt=INTERRUPTED)
def build(
    family: Annotated[str, typer.Argument(help=f"Family to build: {', '.join(family_names())}.")],
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
        typer.Option(
            help="Family option NAME=VALUE, parsed as its declared type (see `cgbench families`), "
            "e.g. --opt official=NAS-Bench-201-v1_1-096897.pth"
        ),
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(help="Architectures per shard, one unit of work (default: family's or 1000).", min=1),
    ] = None,
) -> None:
    from cgbench.benchmarks.build import build_family
    from cgbench.benchmarks.engines import get_engine
    from cgbench.loaders.base import set_step_hook
    from cgbench.loaders.registry import check_family, family_from_options

    fam = family_from_options(check_family(family), opt)
    runner = get_engine(engine, workers=workers, address=ray_address)
    total = limit if limit is not None else getattr(fam, "expected_rows", None)
    columns = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as progress:
        steps: dict[str, object] = {}

        def on_step(what: str, done: int, step_total: int | None) -> None:
            if what not in steps:
                steps[what] = progress.add_task(what, total=step_total)
            progress.update(steps[what], completed=done, total=step_total)

        task = progress.add_task(f"build {family}", total=total)
        set_step_hook(on_step)
        try:
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
                on_wait=say,
            )
        finally:
            set_step_hook(None)
    say(
        f"built {result.rows:,} {family} architectures in {result.seconds:.1f} s -> {result.path}"
        + (f" (resumed {result.resumed_chunks} shards)" if result.resumed_chunks else "")
    )


@fail_cleanly
def families() -> None:
    """List the families cgbench can build and each one's options (--opt NAME=VALUE)."""
    for name in family_names():
        say(_options_text(name))


@fail_cleanly
def info(
    family: Annotated[str | None, typer.Argument(help="Family to describe (default: all).")] = None,
    root: Annotated[Path | None, typer.Option(help="Store root.")] = None,
    verify: Annotated[bool, typer.Option(help="Check every shard's sha256.")] = False,
) -> None:
    """Show what is built under ROOT: rows, files, versions, label columns."""
    from cgbench.benchmarks import store
    from cgbench.loaders.registry import check_family

    if family is not None:
        check_family(family)
    families = [family] if family else store.list_families(root)
    if not families:
        say(f"nothing built under {store.resolve_root(root)}; try: cgbench build nb201")
        return
    say(f"cgbench store {store.resolve_root(root)}")
    table = Table()
    for col in ("family", "rows", "shards", "schema", "cgbench", "created", "primary label", "columns"):
        table.add_column(col, overflow="fold")
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
    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=200)
    out.print(table)
