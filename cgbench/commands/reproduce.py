"""``cgbench reproduce``: GENNAPE's tables, trained and evaluated here, beside the paper's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cgbench.commands.errors import fail_cleanly
from cgbench.commands.options import EngineOption, RayAddressOption

_out = Console(highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the ``reproduce`` command to ``app``."""
    app.command("reproduce")(reproduce)


@fail_cleanly
def reproduce(
    tables: Annotated[list[str] | None, typer.Argument(help="Tables: T1 T3 T5 T6 (default: all).")] = None,
    profile: Annotated[
        str, typer.Option(help="smoke | quick (reduced, ~30 min on 2 cores) | full.")
    ] = "quick",
    seeds: Annotated[int | None, typer.Option(help="Number of seeds (default: the profile's).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    out: Annotated[Path, typer.Option(help="Output folder (tables, plots, model cache).")] = Path(
        "reproduce"
    ),
    root: Annotated[Path | None, typer.Option(help="Data root (default: $CGBENCH_HOME).")] = None,
    predictor: Annotated[
        list[str] | None, typer.Option("--predictor", help="Learned predictors (default: all); repeat.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Training family (default nb101).")] = None,
    target: Annotated[
        list[str] | None, typer.Option("--target", help="Target families (default: the profile's); repeat.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: 2 on CPU).")] = None,
    plots: Annotated[bool, typer.Option(help="Write matplotlib plots.")] = True,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
) -> None:
    """Train what TABLES need, evaluate every cell through the harness, print ours beside the paper."""
    from cgbench.predictors.reproduce import LEARNED
    from cgbench.predictors.reproduce import reproduce as run

    result = run(
        tables or [],
        profile=profile,
        seeds=seeds,
        device=device,
        out=out,
        root=root,
        predictors=predictor or LEARNED,
        source=source,
        targets=target,
        workers=workers,
        plots=plots,
        echo=_out.print,
        engine=engine,
        ray_address=ray_address,
    )
    _out.print(f"wrote {', '.join(str(Path(out) / f) for f in result['files'])}")
