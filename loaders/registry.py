"""Family name -> loader class, imported lazily so one family's dependencies never slow another."""

from __future__ import annotations

import importlib

from cgbench.loaders.base import Family, LoaderError

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


def get_family(name: str, **options) -> Family:
    """An instance of the loader of family ``name`` (``options`` go to its constructor)."""
    try:
        target = FAMILIES[name]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        raise LoaderError(f"unknown family {name!r}; known families: {known}") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        return cls(**options)
    except TypeError as err:
        raise LoaderError(f"family {name!r} does not take options {sorted(options)}: {err}") from None
