"""Benchmark tasks: which family, which label, which architectures, which protocol; and splits.

A task name reads ``[SOURCE->]FAMILY[-SUBSET]/LABEL:PROTOCOL``:

- ``nb201/cifar10-valid:zero-shot``: score every NB-201 arch on its cifar10-valid label, no fit;
- ``nb101->nb201-nonone/cifar10-valid:zero-shot``: fit on NB-101's train split, score the
  4,096 none-free NB-201 archs;
- ``nb201/cifar10-valid:fine-tune-50``: fit on a fixed sample of 50 NB-201 archs, score the rest;
- ``nb101/cifar10:in-family``: fit on the 80% train split (10% valid offered), score the 10% test.

Families, labels and subsets are data (the tables below), not code paths: adding a family
means adding rows. Splits are data too: a salted SHA-256 rule assigns arch ids (independent of
row order and machine), and ``splits/<family>.json`` stores what the rule gave on the full
family (sizes, a checksum per split, the fine-tune samples), so a changed store is detected.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

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
    "rule_order",
    "split_salt",
    "in_family_split",
    "fine_tune_sample",
    "freeze_splits",
]

SPLITS_FORMAT = "cgbench-splits/1"
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
            "seeds": list(self.seeds),
        }


_TASK_RE = re.compile(
    r"^(?:(?P<source>[a-z0-9_]+)->)?(?P<family>[a-z0-9_]+)(?:-(?P<subset>[a-z0-9_]+))?"
    r"/(?P<label>[A-Za-z0-9_.-]+):(?P<protocol>in-family|zero-shot|fine-tune(?:-(?P<n>\d+))?)$"
)


def _known(options: Iterable[str]) -> str:
    return ", ".join(sorted(options)) or "(none)"


def parse_task(name: str, *, seeds: Sequence[int] | None = None) -> Task:
    """The :class:`Task` called ``name``; :class:`TaskError` says what part is wrong."""
    match = _TASK_RE.match(name.strip())
    if not match:
        raise TaskError(
            f"malformed task name {name!r}: expected [SOURCE->]FAMILY[-SUBSET]/LABEL:PROTOCOL, "
            "e.g. 'nb201/cifar10-valid:zero-shot' or 'nb101->nb201-nonone/cifar10-valid:"
            "fine-tune-50'; see `cgbench tasks`"
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
    protocol = "fine-tune" if match["protocol"].startswith("fine-tune") else match["protocol"]
    n = None
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
        f"/{match['label']}:{protocol}{'-' + str(n) if n else ''}"
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
        paper_note=label.paper_note,
        description=_describe(family, subset, label, protocol, source, n),
    )


def _describe(family, subset, label: Label, protocol, source, n) -> str:
    fit = {
        "in-family": "fit: train split (+valid); score: test split",
        "zero-shot": f"fit: {source} train split; score: all" if source else "fit: none; score: all",
        "fine-tune": (
            f"fit: {source} train split, fine-tune: {n}-arch sample; score: the rest"
            if source
            else f"fit: {n}-arch sample; score: the rest"
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
    return [parse_task(n) for n in names]


# ---------------------------------------------------------------------------- splits
def split_salt(family: str) -> str:
    """The salt of ``family``'s split rule (part of the split version)."""
    return f"cgbench/{family}/splits/v1"


def rule_order(arch_ids: Iterable[str], family: str) -> list[str]:
    """``arch_ids`` sorted by SHA-256 of ``salt + NUL + arch_id`` (the split rule's order).

    The position of an arch depends only on its id and the family's salt, never on row order,
    platform or the other archs present.
    """
    salt = split_salt(family).encode() + b"\0"
    return sorted(arch_ids, key=lambda a: (hashlib.sha256(salt + a.encode()).digest(), a))


def in_family_split(arch_ids: Iterable[str], family: str) -> dict[str, list[str]]:
    """80/10/10 train/valid/test split of ``arch_ids`` by the rule order."""
    ordered = rule_order(arch_ids, family)
    n = len(ordered)
    n_train = round(SPLIT_FRACTIONS[0] * n)
    n_valid = round(SPLIT_FRACTIONS[1] * n)
    return {
        "train": ordered[:n_train],
        "valid": ordered[n_train : n_train + n_valid],
        "test": ordered[n_train + n_valid :],
    }


def fine_tune_sample(arch_ids: Iterable[str], family: str, n: int) -> list[str]:
    """The first ``n`` of ``arch_ids`` in the rule order (a subset's sample is thus the
    first ``n`` of the family's order that fall in the subset)."""
    ordered = rule_order(arch_ids, family)
    if len(ordered) <= n:
        raise TaskError(
            f"{family}: fine-tune sample of {n} needs more than {n} archs, the store has {len(ordered)}"
        )
    return ordered[:n]


def _checksum(ids: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


@dataclass(frozen=True)
class SplitFile:
    """The stored splits of one family (``benchmarks/splits/<family>.json``)."""

    family: str
    data: dict

    def scope(self, subset: str | None) -> dict | None:
        return self.data["scopes"].get(subset or "all")

    def verify(self, arch_ids: Sequence[str], subset: str | None) -> bool:
        """True when ``arch_ids`` (the eligible archs of the store) are the ones the splits were
        frozen on; False when the store is partial (fewer archs, e.g. ``--limit`` builds).

        Raises :class:`TaskError` when the store holds the full number of archs but different
        ids: the official splits would silently change.
        """
        scope = self.scope(subset)
        if scope is None or len(arch_ids) != scope["n"]:
            return False
        if _checksum(arch_ids) != scope["sha256"]:
            raise TaskError(
                f"{self.family}{'-' + subset if subset else ''}: the store holds "
                f"{len(arch_ids)} archs, as many as the official splits, but different arch ids "
                "(checksum mismatch); rebuild the store with this cgbench version"
            )
        return True

    def fine_tune_ids(self, subset: str | None, n: int) -> list[str] | None:
        scope = self.scope(subset)
        return None if scope is None else scope.get("fine_tune", {}).get(str(n))


def _split_path(family: str) -> Path:
    return Path(str(resources.files("cgbench.benchmarks") / "splits" / f"{family}.json"))


def load_split_file(family: str) -> SplitFile | None:
    """The stored splits of ``family``, or None if none are frozen yet."""
    path = _split_path(family)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("format") != SPLITS_FORMAT:
        raise TaskError(f"{path}: unknown splits format {data.get('format')!r}")
    return SplitFile(family, data)


def freeze_splits(
    family: str,
    arch_ids: Sequence[str],
    subsets: dict[str, Sequence[str]] | None = None,
    *,
    fine_tune_sizes: Sequence[int] = (DEFAULT_FINE_TUNE,),
    path: Path | None = None,
) -> Path:
    """Write ``splits/<family>.json`` for the full family: per scope (``all`` and each subset)
    the size and checksum of the eligible ids and of each in-family split, and the explicit
    fine-tune samples. Run once per release on a complete store (``python -m
    cgbench.benchmarks.tasks freeze FAMILY``)."""
    scopes = {"all": list(arch_ids), **{k: list(v) for k, v in (subsets or {}).items()}}
    out: dict = {
        "format": SPLITS_FORMAT,
        "family": family,
        "rule": "sort by sha256(salt + '\\0' + arch_id), then arch_id; train/valid/test = "
        "first 80% / next 10% / rest (rounded); fine-tune-N = first N",
        "salt": split_salt(family),
        "fractions": list(SPLIT_FRACTIONS),
        "scopes": {},
    }
    for scope, ids in scopes.items():
        split = in_family_split(ids, family)
        out["scopes"][scope] = {
            "n": len(ids),
            "sha256": _checksum(ids),
            "in_family": {k: {"n": len(v), "sha256": _checksum(v)} for k, v in split.items()},
            "fine_tune": {str(n): fine_tune_sample(ids, family, n) for n in fine_tune_sizes},
        }
    path = path or _split_path(family)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(path)
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
    table = ds.table(columns=["arch_id", *(s.column for s in subsets.values())])
    ids = table.column("arch_id").to_pylist()
    by_subset = {}
    for name, sub in subsets.items():
        flags = table.column(sub.column).to_pylist()
        by_subset[name] = [a for a, v in zip(ids, flags, strict=True) if v == sub.value]
    print(freeze_splits(args.family, ids, by_subset))


if __name__ == "__main__":
    _main()
