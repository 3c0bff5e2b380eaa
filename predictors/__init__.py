"""cgbench.predictors: learned performance predictors (k-GNN, GCN, GIN, GENNAPE re-implementation,
cgbench's own ``cgb-rank``) and ``cgbench reproduce`` of GENNAPE's tables.

This stage sits after ``eval`` (it uses the harness, metrics and protocols) and before
``leaderboard``. The harness finds these predictors by name through
:data:`cgbench.eval.baselines.LEARNED` (``"kgnn" -> "cgbench.predictors.registry:kgnn"``), never by
importing this package at module top.
"""

from __future__ import annotations

__all__ = ["featurise", "KGNN", "GCN", "GIN"]


def __getattr__(name: str):  # lazy: importing the package does not import torch
    if name == "featurise":
        from cgbench.predictors.features import featurise

        return featurise
    if name in ("KGNN", "GCN", "GIN"):
        from cgbench.predictors import gnn

        return getattr(gnn, name)
    raise AttributeError(name)
