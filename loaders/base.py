"""The contract every family loader fulfils.

A loader knows (a) its family's upstream formats and (b) how to build the PyTorch model of one
architecture. It yields :class:`ArchRecord` objects and never writes files: the build engine in
``cgbench.benchmarks`` turns records into computation graphs and Parquet shards.

Loaders import nothing from later stages (``cg``, ``benchmarks``, ``eval``); a module that must
appear as a single CG node declares it with a ``cg_op`` class attribute (see ``loaders.blocks``).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch.nn as nn


class LoaderError(ValueError):
    """Bad upstream input: the message names the file, the row or id, and what to do."""


def read_json(path: Path) -> Any:
    """An upstream JSON file; unreadable or invalid files raise :class:`LoaderError`."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LoaderError(f"{path}: not readable JSON ({err}); re-download or fix it") from None


def upstream_number(value: Any) -> float | None:
    """A finite float from an upstream value: a number, or NASLib's ``{"score", "time"}``;
    ``None`` for missing, non-numeric or non-finite values."""
    if isinstance(value, Mapping):
        value = value.get("score")
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


@dataclass
class ArchRecord:
    """One architecture of a family, before its CG is extracted.

    ``config`` is the upstream description (JSON-serialisable); ``labels`` holds float columns
    (``accuracy`` = the family's primary label as a fraction, plus family-specific labels);
    ``tags`` holds extra string/bool columns (e.g. ``is_unique``).
    """

    arch_id: str
    config: Any
    labels: dict[str, float | None] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, int, int] | None = None  # overrides Family.input_shape when set

    def config_json(self) -> str:
        return json.dumps(self.config, sort_keys=True, separators=(",", ":"))


class ModuleCache:
    """Shares identical sub-modules between builds (one instance per key, per process).

    Builders call ``cache.get(key, factory)`` for every sub-module whose structure is fully
    described by ``key``; a cached module is put in eval mode once, when created. With a cache, a
    network reuses instances (tied weights: fine for CG extraction, wrong for training); without
    one (``None``), every call builds a fresh module, the network as trained upstream. Both give
    the same computation graph: cached modules are marked with :func:`shared`.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._modules: OrderedDict[Hashable, nn.Module] = OrderedDict()

    def get(self, key: Hashable, factory: Callable[[], nn.Module]) -> nn.Module:
        """The module for ``key``, built by ``factory`` on first use (least recently used
        entries beyond ``max_entries`` are dropped, so memory stays bounded)."""
        module = self._modules.get(key)
        if module is None:
            module = shared(factory().eval())
            self._modules[key] = module
            if len(self._modules) > self.max_entries:
                self._modules.popitem(last=False)
        else:
            self._modules.move_to_end(key)
        return module

    def __len__(self) -> int:
        return len(self._modules)


def shared(module: nn.Module) -> nn.Module:
    """Mark ``module`` (returned) as a builder's shared instance: its graph is determined by its
    structure, so the tracer may memoise it, and it stands for a separate copy wherever it is
    called (its parameters count at every call: the graph is that of the untied network).
    Builders mark every instance they reuse; never mark a user's weight-tied module."""
    module.cg_shared = True
    return module


def cached(cache: ModuleCache | None, key: Hashable, factory: Callable[[], nn.Module]) -> nn.Module:
    """``factory()``, shared through ``cache`` when one is given."""
    return factory() if cache is None else cache.get(key, factory)


class Family:
    """Base class of a family loader. Subclasses set the class attributes and implement
    :meth:`iter_records` and :meth:`build_model`."""

    name: ClassVar[str]  # "nb201"
    dataset: ClassVar[str]  # the dataset of the primary label, e.g. "cifar10"
    input_shape: ClassVar[tuple[int, int, int]]  # C, H, W
    expected_rows: ClassVar[int | None] = None  # for progress bars, when known
    # upstream files the build needs, as keys "<family>/<file name>" of the download manifest
    sources: ClassVar[tuple[str, ...]] = ()
    # float label columns beyond ``accuracy``: name -> one-line definition (goes to the card)
    label_columns: ClassVar[Mapping[str, str]] = {}
    # extra non-float columns: name -> (arrow type name: "string" | "bool" | "int64", definition)
    tag_columns: ClassVar[Mapping[str, tuple[str, str]]] = {}

    def iter_records(self, paths: Mapping[str, Path], *, limit: int | None = None) -> Iterator[ArchRecord]:
        """Yield the family's architectures with labels, read from ``paths`` (source key -> file)."""
        raise NotImplementedError

    def build_model(self, config: Any, *, cache: ModuleCache | None = None) -> nn.Module:
        """The PyTorch network of one architecture (eval mode)."""
        raise NotImplementedError
