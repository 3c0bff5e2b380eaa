"""CLI command groups. Each module exports ``register(app: typer.Typer) -> None``."""
