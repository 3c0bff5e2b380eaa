"""The contract every family loader fulfils.

A loader knows (a) its family's upstream formats and (b) how to build the PyTorch model of one
architecture. It yields :class:`ArchRecord` objects and never writes files: the build engine in
``cgbench.benchmarks`` turns records into computation graphs and Parquet shards.

Loaders import nothing from later stages (``cg``, ``benchmarks``, ``eval``); a module that must
appear as a single CG node declares it with a ``cg_op`` class attribute (see ``loaders.blocks``).
"""

from __future__ import annotations

import inspect
import json
import math
import types
import typing
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:  # torch is imported by the family modules; the CLI starts without it
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

    def build_plan(self, config: Any) -> list[Segment] | None:
        """Optional: the network as a plan of :class:`Segment` steps, so the build engine can
        compose its CG from per-segment graphs traced once (``None``: trace ``build_model``)."""
        return None


@dataclass(frozen=True)
class Segment:
    """One step of a network plan (``Family.build_plan``): a sub-module applied to the output of
    ``inputs[0]`` (-1 = the network input), or with ``join`` = ``"concat"`` (channels) /
    ``"add"`` a join of several earlier steps. ``key`` fully identifies the sub-module (with its
    input shape), so the build engine traces each distinct key once and composes the graphs."""

    key: Hashable
    factory: Callable[[], nn.Module] | None
    inputs: tuple[int, ...] = ()
    join: str | None = None


# ---------------------------------------------------------------------------- progress of long steps
_STEP_HOOK: Callable[[str, int, int | None], None] | None = None


def set_step_hook(hook: Callable[[str, int, int | None], None] | None) -> None:
    """Receive ``(what, done, total)`` from :func:`report_step` (the CLI shows a live bar)."""
    global _STEP_HOOK
    _STEP_HOOK = hook


def report_step(what: str, done: int, total: int | None = None) -> None:
    """Tell the caller how far a long preparation step (e.g. an enumeration) has come."""
    if _STEP_HOOK is not None:
        _STEP_HOOK(what, done, total)


# ---------------------------------------------------------------------------- family options
class OptionError(LoaderError):
    """A family option (``--opt NAME=VALUE``) that is unknown or does not parse as its type."""


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null", "")


@dataclass(frozen=True)
class FamilyOption:
    """One keyword of a family constructor, typed from its annotation.

    ``kind`` is ``bool``, ``int``, ``float``, ``str``, ``path``, ``choice`` (``Literal[...]``)
    or ``ints`` (a sequence of ints, written ``4,12,36,108``); ``optional`` when ``None`` is
    allowed (written ``none``)."""

    name: str
    kind: str
    default: Any = None
    optional: bool = False
    choices: tuple[str, ...] = ()

    def type_text(self) -> str:
        """The type as a user writes it, e.g. ``int | none`` or ``gpu|fpga``."""
        base = "|".join(self.choices) if self.kind == "choice" else self.kind
        return f"{base} | none" if self.optional else base

    def describe(self) -> str:
        """``name: type = default`` for help texts."""
        default = self.default
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        elif isinstance(default, bool) or default is None:
            default = str(default).lower()
        return f"{self.name}: {self.type_text()} = {default}"

    def parse(self, text: str, family: str = "") -> Any:
        """The value of ``text`` as this option's type; :class:`OptionError` otherwise."""
        raw = text.strip()
        if self.optional and raw.lower() in _NONE:
            return None
        try:
            return self._parse(raw)
        except ValueError:
            example = {"bool": "true or false", "int": "an integer, e.g. 1000", "float": "a number, e.g. 1.2",
                       "ints": "integers separated by commas, e.g. 4,12,36,108",
                       "choice": " or ".join(self.choices)}.get(self.kind, "a value")  # fmt: skip
            who = f"{family}: " if family else ""
            raise OptionError(
                f"{who}option {self.name}={text!r} is not {self.type_text()}; give {example} "
                f"(--opt {self.name}=VALUE)"
            ) from None

    def _parse(self, raw: str) -> Any:
        if self.kind == "bool":
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError(raw)
        if self.kind == "int":
            return int(raw.replace(",", ""))
        if self.kind == "float":
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
            return value
        if self.kind == "ints":
            items = [p for p in raw.strip("()[] ").replace(" ", ",").split(",") if p]
            if not items:
                raise ValueError(raw)
            return tuple(int(p) for p in items)
        if self.kind == "choice":
            if raw not in self.choices:
                raise ValueError(raw)
            return raw
        if not raw:
            raise ValueError(raw)
        return Path(raw).expanduser() if self.kind == "path" else raw


def _option_kind(hint: Any) -> tuple[str, bool, tuple[str, ...]]:
    """(kind, optional, choices) of a constructor annotation."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    optional = type(None) in args
    rest = [a for a in args if a is not type(None)]
    if len(rest) == 1 and typing.get_origin(rest[0]) is Literal:
        return "choice", optional, tuple(str(c) for c in typing.get_args(rest[0]))
    if set(rest) <= {str, Path} and Path in rest:
        return "path", optional, ()
    if len(rest) == 1 and rest[0] in (bool, int, float, str):
        return rest[0].__name__, optional, ()
    if len(rest) == 1 and typing.get_origin(rest[0]) in (tuple, list, Sequence, Iterable):
        if set(typing.get_args(rest[0])) - {Ellipsis} == {int}:
            return "ints", optional, ()
    raise TypeError(f"option annotation {hint!r} is not one of bool, int, float, str, Path, Literal, ints")


def family_options(cls: type) -> dict[str, FamilyOption]:
    """The options of family class ``cls``: the keywords of its constructor, typed from their
    annotations (a constructor without parameters has none)."""
    init = cls.__init__
    if init is object.__init__:
        return {}
    hints = typing.get_type_hints(init)
    out: dict[str, FamilyOption] = {}
    for name, param in inspect.signature(init).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name not in hints:
            raise TypeError(f"{cls.__name__}.__init__: option {name!r} has no type annotation")
        kind, optional, choices = _option_kind(hints[name])
        default = None if param.default is param.empty else param.default
        if isinstance(default, list):
            default = tuple(default)
        out[name] = FamilyOption(name, kind, default, optional, choices)
    return out


def parse_options(cls: type, pairs: Iterable[str], family: str = "") -> dict[str, Any]:
    """Constructor keywords from ``NAME=VALUE`` strings, each parsed as its declared type
    (``-`` in a name reads as ``_``); unknown or malformed options raise :class:`OptionError`."""
    family = family or getattr(cls, "name", cls.__name__)
    known = family_options(cls)
    out: dict[str, Any] = {}
    for item in pairs:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise OptionError(f"{family}: --opt takes NAME=VALUE, got {item!r}")
        if name not in known:
            listing = ", ".join(o.describe() for o in known.values()) or "none"
            raise OptionError(f"{family}: unknown option {name!r}; its options: {listing}")
        if name in out:
            raise OptionError(f"{family}: option {name!r} given twice; give it once")
        out[name] = known[name].parse(value, family)
    return out
