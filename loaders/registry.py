"""Family name -> loader class, imported lazily so one family's dependencies never slow another."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from cgbench.loaders.base import Family, LoaderError, parse_options

FAMILIES: dict[str, str] = {
    "nb201": "cgbench.loaders.nb201:NB201",
    "nb101": "cgbench.loaders.nb101:NB101",
    "nb301": "cgbench.loaders.nb301:NB301",
    "nb_macro": "cgbench.loaders.nb_macro:NBMacro",
    "anb": "cgbench.loaders.anb:ANB",
    "ofa_pn": "cgbench.loaders.ofa:OFAPN",
    "ofa_mbv3": "cgbench.loaders.ofa:OFAMBv3",
    "ofa_resnet": "cgbench.loaders.ofa:OFAResNet",
    "hiaml": "cgbench.loaders.hiaml:HiAML",
    "two_path": "cgbench.loaders.two_path:TwoPath",
    "inception": "cgbench.loaders.inception:Inception",
}


def family_names() -> list[str]:
    """The names of every family cgbench can build, sorted (no loader is imported)."""
    return sorted(FAMILIES)


def check_family(name: str) -> str:
    """``name`` if it is a known family, else a :class:`LoaderError` listing the known ones."""
    if name not in FAMILIES:
        raise LoaderError(f"unknown family {name!r}; known families: {', '.join(family_names())}")
    return name


def family_class(name: str) -> type[Family]:
    """The loader class of family ``name`` (imports its module)."""
    module_name, class_name = FAMILIES[check_family(name)].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def family_from_options(name: str, pairs: Iterable[str] = ()) -> Family:
    """The loader of family ``name`` configured by ``NAME=VALUE`` strings (``--opt``), each
    parsed as the type its constructor declares (:func:`cgbench.loaders.base.parse_options`)."""
    cls = family_class(name)
    return cls(**parse_options(cls, pairs, family=name))


def get_family(name: str, **options) -> Family:
    """An instance of the loader of family ``name`` (``options`` go to its constructor)."""
    cls = family_class(name)
    try:
        return cls(**options)
    except TypeError as err:
        raise LoaderError(f"family {name!r} does not take options {sorted(options)}: {err}") from None
