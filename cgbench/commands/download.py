"""Commands of this group are added by their issue's work."""

import typer


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
