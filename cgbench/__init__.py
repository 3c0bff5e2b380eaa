"""cgbench: unified computation-graph benchmarks for neural-architecture performance predictors.

The package follows one data flow, each stage a sub-package that only imports stages before it:
``loaders`` (upstream formats, PyTorch builders) -> ``cg`` (computation graphs) ->
``benchmarks`` (Parquet store, manifests, splits, downloads) -> ``eval`` (metrics, protocols)
-> ``leaderboard``.
"""

__version__ = "0.1.0"
