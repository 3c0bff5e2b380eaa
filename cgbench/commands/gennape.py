"""``cgbench import gennape DIR``: build every family GENNAPE's release holds, labelled."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cgbench.commands.errors import fail_cleanly

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Import labelled data released by other projects.", no_args_is_help=True)
    group.command("gennape")(import_gennape)
    app.add_typer(group, name="import")


def run_import(directory: Path, *, root: Path | None = None, workers: int | None = None, limit=None) -> list:
    """Build each family found in GENNAPE's release ``directory``; returns the build results."""
    from cgbench.benchmarks.build import build_family
    from cgbench.loaders.gennape_release import SKIPPED_FILES, find_release_files
    from cgbench.loaders.registry import get_family

    for rel, why in SKIPPED_FILES.items():
        if (Path(directory) / rel).is_file():
            console.print(f"skipped {rel}: {why}")
    results = []
    for path, family, option in find_release_files(directory):
        fam = get_family(family, **{option: str(path)})
        result = build_family(fam, root=root, workers=workers, limit=limit, offline=True)
        console.print(
            f"[green]imported[/green] {result.rows:,} {family} archs from {path.name} -> {result.path}"
        )
        results.append(result)
    return results


@fail_cleanly
def import_gennape(
    directory: Annotated[Path, typer.Argument(help="The unzipped GENNAPE release (CG_data.zip).")],
    root: Annotated[Path | None, typer.Option(help="Store root (default $CGBENCH_HOME).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: all CPUs).")] = None,
) -> None:
    """Build every family in GENNAPE's release, labelled: HiAML, Two-Path, Inception (data/*.json)
    and NB-101, NB-301, OFA-PN, OFA-MBv3, OFA-ResNet (cache/*.pkl, restricted unpickler)."""
    run_import(directory, root=root, workers=workers)
