"""``cgbench proxies``: compute zero-cost proxies of a built family into ``zc_cgb_*`` columns."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cgbench.commands.errors import fail_cleanly
from cgbench.commands.options import EngineOption, RayAddressOption

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("proxies")(proxies)


@fail_cleanly
def proxies(
    family: Annotated[str, typer.Argument(help="A built family, e.g. nb201 (run `cgbench build` first).")],
    proxy: Annotated[
        str,
        typer.Option(help="Comma-separated proxies: synflow, zen, snip, grad_norm, nwot, jacov, fisher."),
    ] = "synflow",
    limit: Annotated[int | None, typer.Option(help="Only the first N architectures of the store.")] = None,
    data_batch: Annotated[
        Path | None,
        typer.Option(help="Image batch .npz: 'x' float32 (N, C, H, W), 'y' int labels (N,)."),
    ] = None,
    allow_synthetic: Annotated[
        bool, typer.Option(help="Let jacov/fisher run on a seeded random batch (flagged synthetic).")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Synthetic batch size (NASLib: 32).")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of weights and synthetic data.")] = 0,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: all CPUs).")] = None,
    chunk_size: Annotated[int, typer.Option(help="Archs per resumable chunk.")] = 64,
    root: Annotated[
        Path | None, typer.Option(help="Store root (default $CGBENCH_HOME or ~/.cache/cgbench).")
    ] = None,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
) -> None:
    """Compute zero-cost proxies for FAMILY and store them as zc_cgb_<proxy> columns.

    Resumable: finished chunks are cached under ROOT/.zerocost/FAMILY and never recomputed.
    Evaluate them with `cgbench evaluate ... --predictor zc:cgb_<proxy>`."""
    from cgbench.benchmarks.engines import get_engine
    from cgbench.benchmarks.store import open_dataset
    from cgbench.loaders.registry import get_family
    from cgbench.zerocost.compute import compute_family, settings_for
    from cgbench.zerocost.proxies import parse_proxies

    runner = get_engine(engine, workers=workers, address=ray_address)
    chosen = parse_proxies(proxy)
    names = [p.name for p in chosen]
    fam = get_family(family)
    for p in chosen:  # refusals before any progress output
        settings_for(
            p, fam, batch_size=batch_size, seed=seed, data_batch=data_batch, allow_synthetic=allow_synthetic
        )
    rows = len(open_dataset(family, root))
    total = (min(rows, limit) if limit is not None else rows) * len(names)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"proxies {family}: {','.join(names)}", total=total)
        run = compute_family(
            family,
            names,
            root=root,
            limit=limit,
            data_batch=data_batch,
            batch_size=batch_size,
            seed=seed,
            workers=workers,
            chunk_size=chunk_size,
            allow_synthetic=allow_synthetic,
            on_progress=lambda n: progress.advance(task, n),
            engine=runner,
        )
    table = Table(title=f"{family}: {run.rows} archs, {run.computed} values computed in {run.seconds:.1f} s")
    for head in ("column", "data", "batch", "seed", "dtype", "synthetic", "s/arch (1 proc)"):
        table.add_column(head)
    for col, s in run.columns.items():
        table.add_row(
            col, s.data, str(s.batch_size), str(s.seed), s.dtype, "yes" if s.synthetic else "no",
            f"{run.seconds_per_arch[s.proxy]:.3f}",
        )  # fmt: skip
    Console().print(table)
    console.print(f"stored in {run.path}; evaluate with --predictor zc:cgb_<proxy>")
