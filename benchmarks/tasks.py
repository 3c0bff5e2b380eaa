"""Benchmark tasks: which family, which label, which architectures, which protocol; and splits.

A task name reads ``[SOURCE->]FAMILY[-SUBSET]/LABEL:PROTOCOL``:

- ``nb201/cifar10-valid:zero-shot``: score every NB-201 arch on its cifar10-valid label, no fit;
- ``nb101~nb201-nonone/cifar10-valid:zero-shot`` (shell-safe; ``'nb101->nb201-nonone/...'``
  quoted is the same task): fit on NB-101's train split, score the 4,096 none-free NB-201 archs;
- ``nb201/cifar10-valid:fine-tune-50``: per seed, fit on a fresh sample of 50 NB-201 archs
  (the paper code's protocol); ``fine-tune-50-fixed`` uses one sample for every seed;
- ``nb101/cifar10:in-family``: fit on the 80% train split (10% valid offered), score the 10% test.

Families, labels and subsets are data (the tables below), not code paths: adding a family
means adding rows. Splits are data too: a salted SHA-256 rule assigns *groups of identical
networks* (equal ``cg_hash``, or the family's canonical id, :data:`GROUP_COLUMNS`) to one side,
independent of row order and machine, so no network is both fit on and scored; and
``splits/<family>.json`` stores what the rule gave on the population
it was frozen on (the store's arch count and id checksum, and how that store was built: its
source keys and build options), with sizes, a checksum per split and the fine-tune samples.
A store holding exactly those ids is official; any other population (a ``--limit`` build, other
sources such as the full NB-101 tfrecord) gets the same rule on its own ids, flagged unofficial;
only a store built the same way, with as many archs but other ids, is an error (corruption).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "TaskError",
    "Label",
    "Subset",
    "Task",
    "LABELS",
    "SUBSETS",
    "PROTOCOLS",
    "DEFAULT_SEEDS",
    "parse_task",
    "official_tasks",
    "is_label_column",
    "SplitFile",
    "load_split_file",
    "population_of",
    "rule_order",
    "split_salt",
    "in_family_split",
    "fine_tune_sample",
    "freeze_splits",
    "GROUP_COLUMNS",
    "group_columns",
    "arch_groups",
    "fine_tune_salt",
    "shell_name",
    "LABEL_PROVIDERS",
    "label_provider",
    "partition_checksum",
    "group_members",
    "PARTIAL_LABELS",
]

#: version of the split rule and file; results record it (``split.version``). /3 draws every
#: split and fine-tune sample over groups of identical networks (/2 drew single arch ids).
SPLITS_FORMAT = "cgbench-splits/3"
#: family -> the columns whose equal values make two archs the same network (union of the
#: relations); NB-201's ``cg_hash`` keeps isomorphic cells apart, its ``unique_id`` joins them
GROUP_COLUMNS: dict[str, tuple[str, ...]] = {"nb201": ("cg_hash", "unique_id")}
DEFAULT_GROUP_COLUMNS: tuple[str, ...] = ("cg_hash",)
#: manifest ``build`` entries that only set the file layout, not which archs a store holds
_LAYOUT_OPTIONS = frozenset({"chunk_size"})
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
DEFAULT_FINE_TUNE = 50
PROTOCOLS = ("in-family", "zero-shot", "fine-tune")


class TaskError(ValueError):
    """An unknown or malformed task, or splits that do not match the store."""


@dataclass(frozen=True)
class Label:
    """A named label of a family: the store column and what it measures."""

    column: str
    description: str
    paper_note: str = ""  # how it differs from the label GENNAPE used, if it does


@dataclass(frozen=True)
class Subset:
    """Architectures whose boolean ``column`` equals ``value``."""

    column: str
    value: bool
    description: str


# family -> label name -> Label; the first label of a family is its default (transfer source)
LABELS: dict[str, dict[str, Label]] = {
    "nb101": {"cifar10": Label("accuracy", "NB-101 CIFAR-10 accuracy (fraction)")},
    "nb201": {
        "cifar10-valid": Label(
            "val_acc_cifar10_valid",
            "NB-201 cifar10-valid validation accuracy, 200 epochs (fraction)",
            "GENNAPE used the cifar10 'ori-test' accuracy (task label 'cifar10'), not this one",
        ),
        "cifar10": Label(
            "test_acc_cifar10",
            "NB-201 cifar10 ori-test accuracy (GENNAPE's label; needs the official release)",
        ),
        "cifar100": Label("val_acc_cifar100", "NB-201 cifar100 validation accuracy (fraction)"),
        "imagenet16-120": Label(
            "val_acc_imagenet16_120", "NB-201 ImageNet16-120 validation accuracy (fraction)"
        ),
    },
    "nb301": {"cifar10": Label("accuracy", "NB-301 CIFAR-10 accuracy (fraction, surrogate)")},
    "nb_macro": {
        "cifar10": Label("accuracy", "NAS-Bench-Macro CIFAR-10 test accuracy, mean of 3 seeds (fraction)"),
    },
    "anb": {
        "imagenet": Label("accuracy", "Accel-NASBench ImageNet top-1 of its training proxy (fraction)"),
        "imagenet-top5": Label("val_acc_top5", "Accel-NASBench ImageNet top-5, same run (fraction)"),
        **{
            f"throughput-{dev}": Label(f"throughput_{dev}", f"Accel-NASBench throughput on {dev} (images/s)")
            for dev in ("tpuv2", "tpuv3", "a100", "3090", "zcu102", "vck190")
        },
        **{
            f"latency-{dev}": Label(f"latency_{dev}", f"Accel-NASBench latency on {dev} (ms)")
            for dev in ("zcu102", "vck190")
        },
    },
}

# family -> subset name -> Subset
SUBSETS: dict[str, dict[str, Subset]] = {
    "nb201": {
        "nonone": Subset("has_none", False, "cells without the `none` op (GENNAPE's 4,096)"),
        "unique": Subset("is_unique", True, "isomorphism-unique representatives (9,445)"),
    },
}

# family -> the subset GENNAPE evaluated (for notes beside paper figures)
PAPER_SUBSET: dict[str, str] = {"nb201": "nonone"}

# (family, label) -> the subset a label exists on (archs outside it have no value): a task on
# that label is scored on that subset (``ofa_mbv3/imagenet`` = ``ofa_mbv3-dynast/imagenet``)
LABEL_SUBSET: dict[tuple[str, str], str] = {}

# --- Once-for-All families (issue 15): rows only -------------------------------------------
_OFA_GPUS = ("2080ti", "titan_rtx", "titan_xp", "v100")
LABELS.update(
    {
        "ofa_mbv3": {
            "imagenet": Label(
                "accuracy",
                "OFA-MBv3 w1.0 ImageNet top-1 with supernet weights (DyNAS-T; fraction); "
                "use the `dynast` subset (HELP-only archs have no accuracy)",
                "GENNAPE's MBv3 set is 7.5k random w1.2 subnets at 192-224 px; this one is DyNAS-T's "
                "1,668 w1.0 search-trajectory archs at 224 px (biased to good archs)",
            ),
            **{
                f"lat-{gpu}-{batch}": Label(
                    f"lat_{gpu}_{batch}",
                    f"HELP latency (ms) on {gpu} at batch {batch}; use the `help` subset",
                )
                for gpu in _OFA_GPUS
                for batch in (1, 32, 64)
            },
        },
        "ofa_pn": {
            "imagenet": Label(
                "accuracy",
                "OFA-PN w1.3 ImageNet top-1 (GENNAPE's label; needs `--opt gennape_cache=` "
                "gpi_ofa_comp_graph_cache.pkl: the default build is an unlabelled sample)",
            )
        },
        "ofa_resnet": {
            "imagenet": Label(
                "accuracy",
                "OFA-ResNet-50D ImageNet top-1 (GENNAPE's label; needs `--opt gennape_cache=` "
                "gpi_ofa_resnet_comp_graph_cache.pkl: the default build is an unlabelled sample)",
            )
        },
    }
)
SUBSETS["ofa_mbv3"] = {
    "dynast": Subset("in_dynast", True, "the 1,668 archs with DyNAS-T supernet top-1 / params / MACs"),
    "help": Subset("in_help", True, "HELP's 5,000 configs with GPU latencies"),
}
PAPER_SUBSET["ofa_mbv3"] = "dynast"
LABEL_SUBSET[("ofa_mbv3", "imagenet")] = "dynast"
LABEL_SUBSET.update({("ofa_mbv3", label): "help" for label in LABELS["ofa_mbv3"] if label.startswith("lat-")})

# (family, label) -> what provides the label when a default build lacks it (`cgbench tasks`
# shows it; evaluating a task on a store without the label is refused with it)
LABEL_PROVIDERS: dict[tuple[str, str], str] = {
    ("nb201", "cifar10"): "the official NB-201 release: "
    "`cgbench build nb201 --opt official=NAS-Bench-201-v1_1-096897.pth`",
    ("ofa_pn", "imagenet"): "GENNAPE's cache: "
    "`cgbench build ofa_pn --opt gennape_cache=gpi_ofa_comp_graph_cache.pkl`",
    ("ofa_resnet", "imagenet"): "GENNAPE's cache: "
    "`cgbench build ofa_resnet --opt gennape_cache=gpi_ofa_resnet_comp_graph_cache.pkl`",
}


def label_provider(family: str, label_name: str) -> str:
    """What provides label ``label_name`` of ``family`` when a store lacks it."""
    return LABEL_PROVIDERS.get(
        (family, label_name),
        f"a build of {family} from sources that have it (see `cgbench build --help` and the family's docs)",
    )


# --- GENNAPE's families (issue 10): rows only; labels only from GENNAPE's release -----------
def _gennape_rows() -> dict[str, str]:
    from cgbench.loaders.gennape_release import release_message

    return {family: release_message(family) for family in ("hiaml", "two_path", "inception")}


#: family -> why its default build has no labels and which release files provide them
MISSING_LABELS: dict[str, str] = _gennape_rows()
LABELS.update(
    {
        family: {
            "cifar10": Label(
                "accuracy",
                f"{title} CIFAR-10 test accuracy (GENNAPE release max_perf / 100; the default build is "
                "unlabelled: run `cgbench import gennape DIR`)",
            )
        }
        for family, title in (("hiaml", "HiAML"), ("two_path", "Two-Path"), ("inception", "Inception"))
    }
)

# the GENNAPE families' labels come only from GENNAPE's release
LABEL_PROVIDERS.update({(family, "cifar10"): why for family, why in MISSING_LABELS.items()})

# (family, label) -> why upstream has no value for some archs: a task on such a label keeps the
# split of all archs, fits on and scores only archs with a value, and says how many it left out
# (a missing value of any other label is an error naming the archs)
PARTIAL_LABELS: dict[tuple[str, str], str] = {
    ("anb", name): "Accel-NASBench did not measure every arch on every device"
    for name in LABELS["anb"]
    if name.startswith(("throughput-", "latency-"))
}


# Training outcomes (hidden from predictors): any column with an accuracy / loss token
# (accuracy, val_acc_*, test_acc_trained, acc_gennape, ...) or a training-run cost.
_OUTCOME_TOKENS = frozenset({"acc", "accuracy", "loss", "trained"})


def is_label_column(name: str) -> bool:
    """Whether a store column is a training outcome (never shown to a predictor)."""
    return bool(_OUTCOME_TOKENS.intersection(name.split("_"))) or name.startswith("train_time")


@dataclass(frozen=True)
class Task:
    """One evaluation task; build it with :func:`parse_task`."""

    name: str
    family: str
    label_name: str
    label: str  # store column of the target label
    protocol: str  # "in-family" | "zero-shot" | "fine-tune"
    subset: str | None = None
    source: str | None = None  # family to fit on (transfer), or None
    source_label: str | None = None  # its label column
    n_fine_tune: int | None = None
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    fixed_sample: bool = False  # fine-tune: one sample for every seed (else a fresh one per seed)
    paper_note: str = ""
    description: str = field(default="", compare=False)

    @property
    def subset_filter(self) -> Subset | None:
        return SUBSETS[self.family][self.subset] if self.subset else None

    @property
    def has_training_data(self) -> bool:
        """Whether a predictor is fit in this task (source family or target sample)."""
        return self.protocol != "zero-shot" or self.source is not None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "subset": self.subset,
            "label": self.label,
            "label_name": self.label_name,
            "protocol": self.protocol,
            "source": self.source,
            "source_label": self.source_label,
            "n_fine_tune": self.n_fine_tune,
            "fine_tune_sample": (
                None if self.protocol != "fine-tune" else "fixed" if self.fixed_sample else "per-seed"
            ),
            "seeds": list(self.seeds),
        }

    @property
    def shell_name(self) -> str:
        """The name spelt for a shell (see :func:`shell_name`)."""
        return shell_name(self.name)


_TASK_RE = re.compile(
    r"^(?:(?P<source>[a-z0-9_]+)(?:->|~))?(?P<family>[a-z0-9_]+)(?:-(?P<subset>[a-z0-9_]+))?"
    r"/(?P<label>[A-Za-z0-9_.-]+)"
    r":(?P<protocol>in-family|zero-shot|fine-tune(?:-(?P<n>\d+))?(?P<fixed>-fixed)?)$"
)


def shell_name(name: str) -> str:
    """``name`` spelt for a shell: ``SOURCE~TARGET/...`` instead of ``SOURCE->TARGET/...``
    (unquoted, ``>`` would redirect); both spellings name the same task."""
    return name.replace("->", "~")


def _known(options: Iterable[str]) -> str:
    return ", ".join(sorted(options)) or "(none)"


def parse_task(name: str, *, seeds: Sequence[int] | None = None) -> Task:
    """The :class:`Task` called ``name``; :class:`TaskError` says what part is wrong."""
    match = _TASK_RE.match(name.strip())
    if not match:
        raise TaskError(
            f"malformed task name {name!r}: expected [SOURCE~]FAMILY[-SUBSET]/LABEL:PROTOCOL, "
            "e.g. nb201/cifar10-valid:zero-shot or nb101~nb201-nonone/cifar10-valid:"
            "fine-tune-50 (SOURCE->FAMILY works when quoted); see `cgbench tasks`"
        )
    family, subset, source = match["family"], match["subset"], match["source"]
    if family not in LABELS:
        raise TaskError(f"task {name!r}: unknown family {family!r}; known: {_known(LABELS)}")
    if match["label"] not in LABELS[family]:
        raise TaskError(
            f"task {name!r}: family {family!r} has no label {match['label']!r}; "
            f"known: {_known(LABELS[family])}"
        )
    if subset is not None and subset not in SUBSETS.get(family, {}):
        raise TaskError(
            f"task {name!r}: family {family!r} has no subset {subset!r}; "
            f"known: {_known(SUBSETS.get(family, {}))}"
        )
    required = LABEL_SUBSET.get((family, match["label"]))
    if required is not None and subset not in (None, required):
        raise TaskError(
            f"task {name!r}: label {match['label']!r} of {family!r} exists only on subset {required!r}"
        )
    subset = subset or required
    protocol = "fine-tune" if match["protocol"].startswith("fine-tune") else match["protocol"]
    n = None
    fixed = bool(match["fixed"])
    if protocol == "fine-tune":
        n = int(match["n"]) if match["n"] else DEFAULT_FINE_TUNE
        if n < 1:
            raise TaskError(f"task {name!r}: fine-tune needs at least 1 sample, got {n}")
    source_label = None
    if source is not None:
        if source not in LABELS:
            raise TaskError(f"task {name!r}: unknown source family {source!r}; known: {_known(LABELS)}")
        if protocol == "in-family":
            raise TaskError(f"task {name!r}: in-family tasks have no source family")
        if source == family:
            raise TaskError(
                f"task {name!r}: source and target are both {family!r} (the source train split "
                "would be scored); use an in-family or fine-tune task"
            )
        source_label = next(iter(LABELS[source].values())).column
    label = LABELS[family][match["label"]]
    canonical = (
        f"{source + '->' if source else ''}{family}{'-' + subset if subset else ''}"
        f"/{match['label']}:{protocol}{'-' + str(n) if n else ''}{'-fixed' if fixed else ''}"
    )
    return Task(
        name=canonical,
        family=family,
        label_name=match["label"],
        label=label.column,
        protocol=protocol,
        subset=subset,
        source=source,
        source_label=source_label,
        n_fine_tune=n,
        seeds=tuple(seeds) if seeds is not None else DEFAULT_SEEDS,
        fixed_sample=fixed,
        paper_note=label.paper_note,
        description=_describe(family, subset, label, protocol, source, n, fixed),
    )


def _describe(family, subset, label: Label, protocol, source, n, fixed=False) -> str:
    sample = f"{n}-arch sample ({'one for every seed' if fixed else 'a fresh one per seed'})"
    fit = {
        "in-family": "fit: train split (+valid); score: test split",
        "zero-shot": f"fit: {source} train split; score: all" if source else "fit: none; score: all",
        "fine-tune": (
            f"fit: {source} train split, fine-tune: {sample}; score: the rest"
            if source
            else f"fit: {sample}; score: the rest"
        ),
    }[protocol]
    scope = f"{family}-{subset} ({SUBSETS[family][subset].description})" if subset else family
    return f"{fit} [{scope}, label {label.column}]"


def official_tasks() -> list[Task]:
    """The tasks `cgbench tasks` lists: per family and label, in-family, zero-shot and
    fine-tune-50; the same on each subset for the default label; NB-101 -> every other family
    (whole family and the subset GENNAPE scored). Any other well-formed name also works."""
    protocols = ("in-family", "zero-shot", "fine-tune-50")
    names: list[str] = []
    for family, labels in LABELS.items():
        for label in labels:
            names += [f"{family}/{label}:{p}" for p in protocols]
        default = next(iter(labels))
        for subset in SUBSETS.get(family, {}):
            names += [f"{family}-{subset}/{default}:{p}" for p in protocols[1:]]
    for family, labels in LABELS.items():
        if family == "nb101":
            continue
        default = next(iter(labels))
        targets = [family] + ([f"{family}-{PAPER_SUBSET[family]}"] if family in PAPER_SUBSET else [])
        for target in targets:
            names += [f"nb101->{target}/{default}:{p}" for p in protocols[1:]]
    tasks: dict[str, Task] = {}
    for n in names:
        m = _TASK_RE.match(n)
        required = LABEL_SUBSET.get((m["family"], m["label"])) if m else None
        if required is not None and m["subset"] not in (None, required):
            continue  # that label has no values on this subset
        task = parse_task(n)
        tasks.setdefault(task.name, task)
    return list(tasks.values())


# ---------------------------------------------------------------------------- splits
def split_salt(family: str) -> str:
    """The salt of ``family``'s split rule (part of the split version)."""
    return f"cgbench/{family}/splits/v1"


def fine_tune_salt(family: str, seed: int) -> str:
    """The salt of ``family``'s fine-tune sample for ``seed`` (a fresh sample per seed)."""
    return f"cgbench/{family}/fine-tune/seed-{seed}"


def group_columns(family: str) -> tuple[str, ...]:
    """The columns that say which archs of ``family`` are the same network."""
    return GROUP_COLUMNS.get(family, DEFAULT_GROUP_COLUMNS)


def arch_groups(arch_ids: Sequence[str], keys: Mapping[str, Sequence[Any]]) -> dict[str, str]:
    """arch id -> its group's name: archs sharing a value of any column in ``keys`` (column ->
    values aligned with ``arch_ids``; None never matches) are one group (transitively); a group
    is named by its smallest arch id, so the partition depends only on the ids and keys."""
    parent = list(range(len(arch_ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for values in keys.values():
        if len(values) != len(arch_ids):
            raise TaskError(f"group key of {len(values)} values for {len(arch_ids)} archs")
        first: dict[Any, int] = {}
        for i, v in enumerate(values):
            if v is None:
                continue
            j = first.setdefault(v, i)
            if j != i:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    name: dict[int, str] = {}
    for i, a in enumerate(arch_ids):
        r = find(i)
        if r not in name or a < name[r]:
            name[r] = a
    return {a: name[find(i)] for i, a in enumerate(arch_ids)}


def _sha_key(salt: str, name: str) -> bytes:
    return hashlib.sha256(salt.encode() + b"\0" + name.encode()).digest()


def rule_order(arch_ids: Iterable[str], family: str, salt: str | None = None) -> list[str]:
    """``arch_ids`` sorted by SHA-256 of ``salt + NUL + arch_id`` (the split rule's order; the
    salt defaults to :func:`split_salt`).

    The position of an arch depends only on its id and the salt, never on row order,
    platform or the other archs present.
    """
    salt = split_salt(family) if salt is None else salt
    return sorted(arch_ids, key=lambda a: (_sha_key(salt, a), a))


def _grouped(
    arch_ids: Iterable[str], family: str, groups: Mapping[str, str] | None, salt: str | None = None
) -> list[list[str]]:
    """The groups of ``arch_ids`` in the rule order of their names, each in rule order."""
    ordered = rule_order(arch_ids, family, salt)
    if groups is None:
        return [[a] for a in ordered]
    by_group: dict[str, list[str]] = {}
    for a in ordered:
        by_group.setdefault(groups.get(a, a), []).append(a)
    return [by_group[g] for g in rule_order(by_group, family, salt)]


def in_family_split(
    arch_ids: Iterable[str], family: str, groups: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """About 80/10/10 train/valid/test split of ``arch_ids``: groups (``groups``: arch id ->
    group name, see :func:`arch_groups`; None: every arch alone) in the rule order of their
    names fill train up to 80 % of the archs, then valid up to 90 %, the rest is test; a
    group is wholly on one side."""
    chunks = _grouped(list(arch_ids), family, groups)
    n = sum(len(c) for c in chunks)
    n_train = round(SPLIT_FRACTIONS[0] * n)
    n_valid = round(SPLIT_FRACTIONS[1] * n)
    out: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    seen = 0
    for chunk in chunks:
        side = "train" if seen < n_train else "valid" if seen < n_train + n_valid else "test"
        out[side] += chunk
        seen += len(chunk)
    return out


def fine_tune_sample(
    arch_ids: Iterable[str],
    family: str,
    n: int,
    groups: Mapping[str, str] | None = None,
    *,
    seed: int | None = None,
) -> list[str]:
    """``n`` archs of ``n`` different groups: the first member of each of the first ``n``
    groups in the rule order (salt :func:`fine_tune_salt` for ``seed``, the split salt when
    ``seed`` is None: the fixed sample). The other members of those groups are scored by no
    one (see :func:`group_members`)."""
    chunks = _grouped(list(arch_ids), family, groups, None if seed is None else fine_tune_salt(family, seed))
    if len(chunks) <= n:
        raise TaskError(
            f"{family}: fine-tune sample of {n} needs more than {n} distinct networks, but only "
            f"{len(chunks)} are eligible (the built archs in the task's subset); build more (without "
            "--limit) or use a smaller fine-tune sample"
        )
    return [c[0] for c in chunks[:n]]


def group_members(sample: Iterable[str], groups: Mapping[str, str] | None) -> set[str]:
    """Every arch in the groups of ``sample`` (``sample`` itself when ``groups`` is None)."""
    sample = set(sample)
    if groups is None:
        return sample
    names = {groups.get(a, a) for a in sample}
    return sample | {a for a, g in groups.items() if g in names}


def _checksum(ids: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def partition_checksum(groups: Mapping[str, str]) -> str:
    """SHA-256 of the sorted ``arch_id TAB group`` lines of a partition."""
    return _checksum(f"{a}\t{g}" for a, g in groups.items())


def population_of(manifest: Mapping | None) -> dict | None:
    """How a store was built, from its manifest: ``sources`` (the sorted source keys) and
    ``build`` (the manifest's build options: ``key``, which fingerprints the family options,
    source checksums and cgbench version, and ``limit``; ``chunk_size`` is left out as it only
    sets the file layout). None when the manifest does not say (e.g. an in-memory dataset)."""
    if not manifest or "sources" not in manifest or not isinstance(manifest.get("build"), Mapping):
        return None
    sources = sorted(str(s["key"]) if isinstance(s, Mapping) else str(s) for s in manifest["sources"])
    build = {k: v for k, v in sorted(manifest["build"].items()) if k not in _LAYOUT_OPTIONS}
    return {"sources": sources, "build": build}


def _fmt_build(build: Mapping) -> str:
    return ", ".join(f"{k}={v}" for k, v in build.items()) or "none"


def _fmt_sources(sources: Sequence[str]) -> str:
    return ", ".join(sources) or "no source files"


@dataclass(frozen=True)
class SplitFile:
    """The stored splits of one family (``benchmarks/splits/<family>.json``)."""

    family: str
    data: dict

    @property
    def population(self) -> dict:
        """The population the splits were frozen on: ``family``, ``n``, ``sha256`` (of the
        sorted ids), ``sources`` and ``build`` (see :func:`population_of`)."""
        return self.data["population"]

    def scope(self, subset: str | None) -> dict | None:
        return self.data["scopes"].get(subset or "all")

    def check(
        self,
        arch_ids: Sequence[str],
        subset: str | None,
        manifest: Mapping | None = None,
        groups: Mapping[str, str] | None = None,
    ) -> tuple[bool, str | None]:
        """``(official, why_not)`` for a store whose eligible archs (of ``subset``) are
        ``arch_ids`` and whose manifest is ``manifest``.

        Official when the ids are exactly the frozen ones (the splits depend only on the ids).
        Otherwise the store is another population (other sources or build options, e.g. a
        ``--limit`` build or the full NB-101 tfrecord, or another count): not official, and
        ``why_not`` says how it differs. Raises :class:`TaskError` only when the store was built
        from the same sources with the same build options and holds as many archs, yet other
        ids: that indicates a corrupt store (or split file), not another population.
        """
        where = f"{self.family}{'-' + subset if subset else ''}"
        scope = self.scope(subset)
        if scope is None:
            return False, f"no frozen split for {where}"
        n, frozen_n = len(arch_ids), scope["n"]
        if n == frozen_n and _checksum(arch_ids) == scope["sha256"]:
            frozen_groups = scope.get("groups", {})
            if groups is None or partition_checksum(groups) == frozen_groups.get("sha256"):
                return True, None
            return False, (
                f"the store groups its {n:,} {where} archs into {len(set(groups.values())):,} networks, "
                f"the frozen split into {frozen_groups.get('n', '?'):,} (group columns "
                f"{', '.join(frozen_groups.get('columns', []))}): splits follow the same rule on this "
                "store's groups (results are not comparable with official ones)"
            )
        frozen = self.population
        store = population_of(manifest)
        same_sources = store is not None and store["sources"] == frozen["sources"]
        same_build = same_sources and store["build"] == frozen["build"]
        if same_build and n == frozen_n:
            raise TaskError(
                f"{where}: the store was built from the same sources with the same build options "
                f"as the frozen splits ({_fmt_sources(frozen['sources'])}; {_fmt_build(frozen['build'])})"
                f" and holds as many archs ({n:,}), but different arch ids (checksum mismatch): "
                f"the store or the split file is corrupt; rebuild the store (`cgbench build {self.family}`)"
            )
        parts = [
            f"{n:,} {where} archs, frozen on {frozen_n:,}" if n != frozen_n else f"{n:,} other {where} archs"
        ]
        if store is None:
            parts.append("the store's manifest does not say how it was built")
        elif not same_sources:
            parts.append(
                f"sources: {_fmt_sources(store['sources'])}; frozen on: {_fmt_sources(frozen['sources'])}"
            )
        elif not same_build:
            keys = [
                k
                for k in {**store["build"], **frozen["build"]}
                if store["build"].get(k) != frozen["build"].get(k)
            ]
            parts.append(
                f"build {_fmt_build({k: store['build'].get(k) for k in keys})}; frozen on: "
                f"{_fmt_build({k: frozen['build'].get(k) for k in keys})}"
            )
        return False, (
            f"no frozen split for this population ({'; '.join(parts)}); splits follow the same rule "
            "on this store's archs (results are not comparable with official ones)"
        )

    def verify(
        self,
        arch_ids: Sequence[str],
        subset: str | None,
        manifest: Mapping | None = None,
        groups: Mapping[str, str] | None = None,
    ) -> bool:
        """Whether the split is official for these ids (see :meth:`check`)."""
        return self.check(arch_ids, subset, manifest, groups)[0]

    def fine_tune_ids(self, subset: str | None, n: int, seed: int | None = None) -> list[str] | None:
        """The stored fine-tune-``n`` sample of ``seed`` (None: the fixed sample), if stored."""
        scope = self.scope(subset)
        entry = None if scope is None else scope.get("fine_tune", {}).get(str(n))
        if entry is None:
            return None
        return entry.get("fixed") if seed is None else entry.get("seeds", {}).get(str(seed))


def _split_path(family: str) -> Path:
    return Path(str(resources.files("cgbench.benchmarks") / "splits" / f"{family}.json"))


def load_split_file(family: str) -> SplitFile | None:
    """The stored splits of ``family``, or None if none are frozen yet."""
    path = _split_path(family)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("format") != SPLITS_FORMAT:
        raise TaskError(
            f"{path}: splits format {data.get('format')!r}, expected {SPLITS_FORMAT!r} (re-freeze with "
            f"`python -m cgbench.benchmarks.tasks freeze {family}`)"
        )
    return SplitFile(family, data)


def freeze_splits(
    family: str,
    arch_ids: Sequence[str],
    subsets: dict[str, Sequence[str]] | None = None,
    *,
    manifest: Mapping,
    keys: Mapping[str, Sequence[Any]] | None = None,
    fine_tune_sizes: Sequence[int] = (DEFAULT_FINE_TUNE,),
    seeds: Sequence[int] = DEFAULT_SEEDS,
    path: Path | None = None,
) -> Path:
    """Write ``splits/<family>.json`` for the store whose ids are ``arch_ids`` and whose
    manifest is ``manifest``: the population (family, count, id checksum, the store's source
    keys and build options), and per scope (``all`` and each subset) the size and checksum of
    the eligible ids, of their grouping into networks (``keys``: the :func:`group_columns`
    values aligned with ``arch_ids``) and of each in-family split, and the fine-tune samples
    (fixed, and per seed of ``seeds``) as id lists. Run once per release on a complete store
    (``python -m cgbench.benchmarks.tasks freeze FAMILY``)."""
    built = population_of(manifest)
    if built is None:
        raise TaskError(f"{family}: the manifest has no sources/build entries to record")
    if built["build"].get("limit") is not None:
        raise TaskError(
            f"{family}: the store was built with --limit {built['build']['limit']}; freeze a complete store"
        )
    keys = dict(keys or {})
    position = {a: i for i, a in enumerate(arch_ids)}
    scopes = {"all": list(arch_ids), **{k: list(v) for k, v in (subsets or {}).items()}}
    out: dict = {
        "format": SPLITS_FORMAT,
        "family": family,
        "rule": "group archs into networks (equal value of any group column, transitively; a group "
        "is named by its smallest arch id); sort groups by sha256(salt + '\\0' + name), then name; "
        "train/valid/test = groups filling the first 80% / next 10% / rest of the archs (rounded); "
        "fine-tune-N = the first arch (in the same order) of each of the first N groups, with salt "
        "'cgbench/FAMILY/fine-tune/seed-S' per seed, or the split salt for the fixed sample; the "
        "rest of a sampled group is not scored",
        "salt": split_salt(family),
        "group_columns": sorted(keys),
        "fractions": list(SPLIT_FRACTIONS),
        "population": {"family": family, "n": len(arch_ids), "sha256": _checksum(arch_ids), **built},
        "scopes": {},
    }
    for scope, ids in scopes.items():
        rows = [position[a] for a in ids]
        groups = arch_groups(ids, {c: [v[r] for r in rows] for c, v in keys.items()}) if keys else None
        split = in_family_split(ids, family, groups)
        out["scopes"][scope] = {
            "n": len(ids),
            "sha256": _checksum(ids),
            "groups": {
                "columns": sorted(keys),
                "n": len(set(groups.values())) if groups else len(ids),
                "sha256": partition_checksum(groups or {a: a for a in ids}),
            },
            "in_family": {k: {"n": len(v), "sha256": _checksum(v)} for k, v in split.items()},
            "fine_tune": {
                str(n): {
                    "fixed": fine_tune_sample(ids, family, n, groups),
                    "seeds": {str(s): fine_tune_sample(ids, family, n, groups, seed=s) for s in seeds},
                }
                for n in fine_tune_sizes
            },
        }
    path = path or _split_path(family)
    from cgbench.files import atomic_write

    atomic_write(path, json.dumps(out, indent=1) + "\n")
    return path


def _main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cgbench.benchmarks.tasks")
    parser.add_argument("command", choices=["freeze"])
    parser.add_argument("family")
    parser.add_argument("--root", default=None)
    args = parser.parse_args(argv)
    from cgbench.benchmarks.store import open_dataset

    ds = open_dataset(args.family, root=args.root)
    subsets = SUBSETS.get(args.family, {})
    present = set(ds.schema.names)
    missing = [c for c in group_columns(args.family) if c not in present]
    if missing:
        raise SystemExit(f"{args.family}: the store has no group column(s) {', '.join(missing)}; rebuild it")
    cols = ["arch_id", *group_columns(args.family), *(s.column for s in subsets.values())]
    table = ds.table(columns=list(dict.fromkeys(cols)))
    ids = table.column("arch_id").to_pylist()
    by_subset = {}
    for name, sub in subsets.items():
        flags = table.column(sub.column).to_pylist()
        by_subset[name] = [a for a, v in zip(ids, flags, strict=True) if v == sub.value]
    keys = {c: table.column(c).to_pylist() for c in group_columns(args.family)}
    print(freeze_splits(args.family, ids, by_subset, manifest=ds.manifest, keys=keys))


if __name__ == "__main__":
    _main()
