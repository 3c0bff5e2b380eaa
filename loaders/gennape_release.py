"""GENNAPE's labelled release (``CG_data.zip``): which file feeds which family, and its readers.

The release (Google Drive / Hugging Face ``kgmills/GENNAPE``; not reachable offline) holds:

- ``data/gpi_test_hiaml_cifar10_labelled_cg_data.json``, ``data/gpi_test_two_path_cifar10_``
  ``labelled_cg_data.json``, ``data/inception_cifar10_labelled_cg_data.json``: a JSON object
  ``{key: {"net_config", "max_perf", "perfs", "cg"}}``; the label is ``max_perf / 100``
  (GENNAPE ``gpi_family_data_manager.py:610-700``) and ``cg`` is GENNAPE's own graph as
  ``get_cg_state_dict`` writes it (``tf_comp_graph.py``);
- ``cache/gpi_{nb101,nb201c10,nb301,ofa,ofa_resnet}_comp_graph_cache.pkl``: pickled lists of
  ``{"compute graph", "acc", "flops", "n_params", "original config"}``, read only through the
  restricted unpickler of :mod:`cgbench.loaders.gennape` by the NB-101 / NB-301 / OFA loaders.

:data:`RELEASE_FILES` maps each file to the families and build options it feeds; our CG is always
built from the config, GENNAPE's CG is kept as comparable tags (node/edge counts, op histogram).
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

from cgbench.loaders.base import ArchRecord, Family, LoaderError, ModuleCache, read_json
from cgbench.loaders.blocks import PlanNetwork, set_eval

# release file (relative to the unzipped release) -> [(family, build option)]
RELEASE_FILES: dict[str, list[tuple[str, str]]] = {
    "data/gpi_test_hiaml_cifar10_labelled_cg_data.json": [("hiaml", "gennape")],
    "data/gpi_test_two_path_cifar10_labelled_cg_data.json": [("two_path", "gennape")],
    "data/inception_cifar10_labelled_cg_data.json": [("inception", "gennape")],
    "cache/gpi_nb101_comp_graph_cache.pkl": [("nb101", "gennape_cache")],
    "cache/gpi_nb301_comp_graph_cache.pkl": [("nb301", "gennape_cache")],
    "cache/gpi_ofa_comp_graph_cache.pkl": [("ofa_pn", "gennape_cache"), ("ofa_mbv3", "gennape_cache")],
    "cache/gpi_ofa_resnet_comp_graph_cache.pkl": [("ofa_resnet", "gennape_cache")],
}
# release files cgbench knows but does not import (why)
SKIPPED_FILES: dict[str, str] = {
    "cache/gpi_nb201c10_comp_graph_cache.pkl": (
        "NB-201 is labelled in full by its own benchmark (`cgbench build nb201`); GENNAPE's cache "
        "holds a subset of the same archs"
    ),
}

LABEL_COLUMNS = {
    "max_perf": "GENNAPE release `max_perf` (CIFAR-10 test accuracy, percent); accuracy = max_perf / 100",
}
TAG_COLUMNS = {
    "gennape_key": ("string", "key of the entry in GENNAPE's release JSON"),
    "gennape_cg_nodes": ("int64", "nodes of GENNAPE's own CG of the arch (release `cg`)"),
    "gennape_cg_edges": ("int64", "edges of GENNAPE's own CG of the arch (release `cg`)"),
    "gennape_cg_ops": ("string", "op histogram of GENNAPE's own CG by TF op label, JSON {label: count}"),
}


def release_message(family: str) -> str:
    """Where the labels of ``family`` come from, for error messages and task notes."""
    files = [f for f, targets in RELEASE_FILES.items() if any(t[0] == family for t in targets)]
    return (
        f"{family}: labels exist only in GENNAPE's release (CG_data.zip, Google Drive or Hugging "
        f"Face kgmills/GENNAPE): {', '.join(files)}. Unzip it and run `cgbench import gennape DIR` "
        f"(or `cgbench build {family} --opt gennape=PATH`)"
    )


def _state_graph(sd: Any, where: str):
    """GENNAPE's ``get_cg_state_dict`` JSON -> :class:`cgbench.loaders.gennape.GennapeGraph`."""
    from cgbench.loaders.gennape import GennapeComputeGraph, GennapeNode, gennape_graph

    if not isinstance(sd, Mapping):
        raise LoaderError(
            f"{where}: `cg` must be GENNAPE's CG state dict (an object), got {type(sd).__name__}"
        )
    obj = GennapeComputeGraph()
    try:
        nodes = {}
        for kind in ("weighted_nodes", "regular_nodes"):
            nodes[kind] = []
            for n in sd[kind]:
                node = GennapeNode()
                node.__setstate__(dict(n))
                nodes[kind].append(node)
        obj.__setstate__(
            {
                "name": sd.get("name", ""),
                "input_shape": sd["input_shape"],
                "edge_pairs": sd["edge_pairs"],
                **nodes,
            }
        )
    except (KeyError, TypeError, ValueError) as err:
        raise LoaderError(f"{where}: malformed GENNAPE CG state dict ({type(err).__name__}: {err})") from None
    return gennape_graph(obj, where=where)


_SUFFIX = re.compile(r"_\d+$")


def gennape_cg_tags(graph) -> dict[str, Any]:
    """Comparable facts of GENNAPE's own CG: node/edge counts and an op-label histogram."""
    ops = Counter(_SUFFIX.sub("", label) for label in graph.labels)
    return {
        "gennape_cg_nodes": len(graph.labels),
        "gennape_cg_edges": len(graph.edges),
        "gennape_cg_ops": json.dumps(dict(sorted(ops.items())), separators=(",", ":")),
    }


def read_release_json(path: str | Path, family: GennapeFamily) -> Iterator[ArchRecord]:
    """Records of ``family`` from one labelled release JSON; every entry is checked first."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, Mapping):
        raise LoaderError(
            f"{path}: expected GENNAPE's labelled JSON, "
            "an object {key: {net_config, max_perf, perfs, cg}}"
        )
    records = []
    for key, entry in data.items():
        where = f"{path}, entry {key!r}"
        if not isinstance(entry, Mapping):
            raise LoaderError(f"{where}: expected an object with net_config, max_perf, perfs, cg")
        for field in ("net_config", "max_perf"):
            if field not in entry:
                raise LoaderError(
                    f"{where}: missing `{field}`; not a GENNAPE labelled entry (re-extract CG_data.zip)"
                )
        perf = entry["max_perf"]
        if isinstance(perf, bool) or not isinstance(perf, (int, float)) or not 0 <= perf <= 100:
            raise LoaderError(f"{where}: `max_perf` = {perf!r} is not an accuracy in percent (0-100)")
        config = family.canonical(entry["net_config"], where)
        tags: dict[str, Any] = {"gennape_key": str(key)}
        if entry.get("cg") is not None:
            tags.update(gennape_cg_tags(_state_graph(entry["cg"], f"{where}, cg")))
        labels = {"accuracy": float(perf) / 100.0, "max_perf": float(perf)}
        records.append(ArchRecord(family.arch_id(config), config, labels, tags))
    return iter(records)


class GennapeFamily(Family):
    """Shared behaviour of HiAML, Two-Path and Inception: the default build gives the unlabelled
    architecture set; ``gennape=PATH`` (GENNAPE's release JSON) gives the paper's labelled set.
    Subclasses set ``name``, ``release_file`` and implement :meth:`default_configs`,
    :meth:`canonical`, :meth:`arch_id` and :meth:`build_plan`."""

    dataset = "cifar10"
    input_shape = (3, 32, 32)
    release_file: str
    label_columns = LABEL_COLUMNS
    tag_columns = TAG_COLUMNS

    def __init__(self, gennape: str | Path | None = None) -> None:
        self.gennape = Path(gennape) if gennape is not None else None
        if self.gennape is not None:
            self.expected_rows = None

    def default_configs(self) -> Iterator[tuple[dict, dict[str, Any]]]:
        """The unlabelled set: ``(canonical config, tags)`` pairs."""
        raise NotImplementedError

    def canonical(self, value: Any, where: str) -> dict:
        """Any accepted encoding (GENNAPE's included) -> the canonical config."""
        raise NotImplementedError

    def arch_id(self, config: dict) -> str:
        raise NotImplementedError

    def iter_records(self, paths: Mapping[str, Path], *, limit: int | None = None) -> Iterator[ArchRecord]:
        if self.gennape is not None:
            records: Iterator[ArchRecord] = read_release_json(self.gennape, self)
        else:
            records = (
                ArchRecord(self.arch_id(c), c, {"accuracy": None}, tags) for c, tags in self.default_configs()
            )
        return itertools.islice(records, limit)

    def build_model(self, config: Any, *, cache: ModuleCache | None = None) -> nn.Module:
        net = PlanNetwork(self.build_plan(config, cache=cache))
        return net.eval() if cache is None else set_eval(net)


def distinct_samples(
    draw: Callable[[np.random.Generator], dict], id_of: Callable[[Mapping], str], n: int, seed: int
) -> list[dict]:
    """``n`` configs with distinct ids, drawn by ``draw`` from ``numpy.random.default_rng(seed)``
    (PCG64: the same list on every machine)."""
    rng = np.random.default_rng(seed)
    seen: dict[str, dict] = {}
    while len(seen) < n:
        config = draw(rng)  # canonical by construction (tests check it)
        seen.setdefault(id_of(config), config)
    return list(seen.values())


class SampledGennapeFamily(GennapeFamily):
    """Two-Path and Inception: the default build is a seeded sample of ``sample`` archs.
    Subclasses bind their module's functions as the hooks below and declare the typed
    ``__init__(gennape, sample, seed)`` (its defaults are what `cgbench families` shows)."""

    sampler_version: str
    sample_configs: Callable[[int, int], list[dict]]
    canonical_config: Callable[..., dict]
    config_id: Callable[[dict], str]
    plan: Callable[..., list]

    def __init__(self, gennape: str | Path | None = None, sample: int = 0, seed: int = 0) -> None:
        super().__init__(gennape)
        self.sample, self.seed = int(sample), int(seed)
        if self.sample < 1:
            raise LoaderError(
                f"{self.name}: sample={self.sample}: need at least 1 architecture (--opt sample=N)"
            )
        if self.gennape is None:
            self.expected_rows = self.sample

    def default_configs(self) -> Iterator[tuple[dict, dict[str, Any]]]:
        tag = {"sampler": f"{self.sampler_version}/seed={self.seed}"}
        for config in self.sample_configs(self.sample, self.seed):
            yield config, tag

    def canonical(self, value: Any, where: str) -> dict:
        return self.canonical_config(value, where=where)

    def arch_id(self, config: dict) -> str:
        return self.config_id(config)

    def build_plan(self, config: Any, *, cache: ModuleCache | None = None) -> list:
        return self.plan(config, cache=cache)


def find_release_files(directory: str | Path) -> list[tuple[Path, str, str]]:
    """``(file, family, build option)`` for every known release file under ``directory`` (at its
    release path, e.g. ``data/...``, or anywhere by file name); :class:`LoaderError` when the
    directory holds none of them."""
    directory = Path(directory)
    if not directory.is_dir():
        raise LoaderError(f"{directory}: not a directory; give the unzipped GENNAPE release (CG_data.zip)")
    found: list[tuple[Path, str, str]] = []
    for rel, targets in RELEASE_FILES.items():
        path = directory / rel
        if not path.is_file():
            path = next((p for p in sorted(directory.rglob(Path(rel).name)) if p.is_file()), path)
        if path.is_file():
            found += [(path, family, option) for family, option in targets]
    if not found:
        raise LoaderError(
            f"{directory}: none of GENNAPE's release files found; expected any of "
            f"{', '.join(RELEASE_FILES)} (unzip CG_data.zip from Google Drive or Hugging Face "
            "kgmills/GENNAPE)"
        )
    return found
