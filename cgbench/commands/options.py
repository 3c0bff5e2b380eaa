"""CLI options shared by several commands (one declaration, one help text)."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["EngineOption", "RayAddressOption"]

#: ``--engine``: where the units of a long job run (build chunks, proxy batches, reproduce jobs)
EngineOption = Annotated[
    str,
    typer.Option(
        help="Where the units run: local (processes on this machine) or ray (a Ray cluster, docs/ray.md)."
    ),
]
#: ``--ray-address``: the Ray cluster to join with ``--engine ray``
RayAddressOption = Annotated[
    str | None,
    typer.Option(help="Ray cluster to join (HOST:PORT; default $RAY_ADDRESS, else a one-machine Ray)."),
]
