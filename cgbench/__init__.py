"""cgbench: unified computation-graph benchmarks for neural-architecture performance predictors.

The package follows one data flow, each stage a sub-package that only imports stages before it:
``loaders`` (upstream formats, PyTorch builders) -> ``cg`` (computation graphs) ->
``benchmarks`` (Parquet store, manifests, splits, downloads) -> ``eval`` (metrics, protocols)
-> ``leaderboard``.
"""

from __future__ import annotations

from pathlib import Path as _Path

__version__ = "0.1.0"

# In a source checkout the sub-packages sit beside this folder (installed, they sit inside it):
# let ``python -m pytest`` / ``python -c`` from the checkout find them too.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "cg" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 - module attribute of a package


def load(family: str, root: str | None = None):
    """The built dataset of ``family`` (see :func:`cgbench.benchmarks.store.open_dataset`)."""
    from cgbench.benchmarks.store import open_dataset

    return open_dataset(family, root)
