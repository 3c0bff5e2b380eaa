"""Accel-NASBench: an MnasNet / EfficientNet-style space on ImageNet with accuracy and hardware labels.

Space (``afzalxo/Accel-NASBench``, ``configurationspaces/searchspaces.py``): 7 blocks with
strides 1, 2, 2, 2, 1, 2, 1 and widths 32 -> 16 -> 24 -> 40 -> 80 -> 112 -> 192 -> 320; per block
an expansion ratio ``e`` in {1, 4, 6}, a depthwise kernel ``k`` in {3, 5}, a number of layers
``l`` in {1, 2, 3, 4} and squeeze-excitation ``se`` on or off.

Network (``afzalxo/ANB-DatasetCollection``, ``models/accelbenchnet.py``, the ``gpu`` platform:
SiLU activations; ImageNet, 224x224, eval mode): 3x3 stride-2 conv (32 ch)-BN-SiLU stem; each
block is ``l`` MBConv layers, the first with the block's stride and input width, the rest stride 1
at the output width; an MBConv has a 1x1 expand conv-BN-SiLU when ``make_divisible(C_in * e, 8)``
differs from ``C_in``, a depthwise conv-BN-SiLU, optional SE (squeeze width ``max(1, C_in // 4)``
with ``C_in`` the layer's input width, SiLU, sigmoid gate), 1x1 project conv-BN, and a residual
when stride 1 and ``C_in == C_out``; head: 1x1 conv to 1280 (4 x 320)-BN-SiLU, global average
pool, dropout, linear to 1000 classes. ``platform="fpga"`` builds the ReLU variant (same params
and MACs).

Labels (``anb_dataset/anb_dataset_jsons.tar.gz``, 5,138 ``result_N.json``): top-1 / top-5
validation accuracy of a shortened ImageNet training proxy (one seed), training time, throughput
on TPUv2/v3, A100, RTX 3090, ZCU102, VCK190 and latency on ZCU102, VCK190, and the upstream
``model_info`` (MACs and params in millions). The tar is read directly (streamed); the 13 archs
that appear twice are merged: labels are the mean of the copies, ``num_results`` counts them and
``val_acc_top1_range`` is the spread of their top-1.
"""

from __future__ import annotations

import itertools
import json
import tarfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch.nn as nn

from cgbench.loaders.base import ArchRecord, Family, LoaderError, ModuleCache, cached, upstream_number
from cgbench.loaders.blocks import ConvBlock, InvertedResidual, SqueezeExcite, make_divisible, set_eval

SOURCE = "anb/anb_dataset_jsons.tar.gz"
NUM_BLOCKS = 7
STRIDES = (1, 2, 2, 2, 1, 2, 1)
IN_CHANNELS = (32, 16, 24, 40, 80, 112, 192)
OUT_CHANNELS = (16, 24, 40, 80, 112, 192, 320)
EXPAND_CHOICES = (1, 4, 6)
KERNEL_CHOICES = (3, 5)
LAYER_CHOICES = (1, 2, 3, 4)
HEAD_CHANNELS = 4 * OUT_CHANNELS[-1]
NUM_CLASSES = 1000
RESOLUTION = 224
NUM_FILES = 5138
NUM_UNIQUE = 5125
# platform_perf keys -> (column, what): throughput in images/s, latency in ms
PLATFORMS = {
    "throughput_tpuv2": "TPUv2 throughput (images/s)",
    "throughput_tpuv3": "TPUv3 throughput (images/s)",
    "throughput_a100": "NVIDIA A100 throughput (images/s)",
    "throughput_3090": "NVIDIA RTX 3090 throughput (images/s)",
    "throughput_zcu102": "Xilinx ZCU102 FPGA throughput (images/s)",
    "throughput_vck190": "Xilinx VCK190 throughput (images/s)",
    "latency_zcu102": "Xilinx ZCU102 FPGA latency (ms)",
    "latency_vck190": "Xilinx VCK190 latency (ms)",
}
ACTIVATIONS = {"gpu": nn.SiLU, "fpga": nn.ReLU}


@dataclass(frozen=True)
class Block:
    """One searchable block: expansion, kernel, layers, squeeze-excitation."""

    e: int
    k: int
    l: int  # noqa: E741 - the upstream name
    se: bool


def parse_architecture(arch: Any, *, where: str = "architecture") -> tuple[Block, ...]:
    """The 7 blocks of an upstream ``architecture`` dict (``block0_e`` ... ``block6_se``)."""
    if not isinstance(arch, Mapping):
        raise LoaderError(
            f"{where}: expected an object with block0_e ... block6_se, got {type(arch).__name__}"
        )
    blocks = []
    for i in range(NUM_BLOCKS):
        values = {}
        for field, choices in (
            ("e", EXPAND_CHOICES),
            ("k", KERNEL_CHOICES),
            ("l", LAYER_CHOICES),
            ("se", (False, True)),
        ):
            key = f"block{i}_{field}"
            if key not in arch:
                raise LoaderError(
                    f"{where}: missing {key!r} (an Accel-NASBench architecture has block0..6 _e/_k/_l/_se)"
                )
            value = arch[key]
            if field == "se" and isinstance(value, str) and value in ("True", "False"):
                value = value == "True"
            if (field == "se") != isinstance(value, bool) or value not in choices:
                raise LoaderError(f"{where}: {key} = {value!r}, expected one of {list(choices)}")
            values[field] = value
        blocks.append(Block(**values))
    return tuple(blocks)


def arch_id(blocks: Sequence[Block]) -> str:
    """Compact id: per block ``e k l se`` digits, blocks joined by ``-`` (``6310-4520-...``)."""
    return "-".join(f"{b.e}{b.k}{b.l}{int(b.se)}" for b in blocks)


def blocks_from_id(text: str, *, where: str = "arch id") -> tuple[Block, ...]:
    """Inverse of :func:`arch_id`."""
    parts = text.split("-") if isinstance(text, str) else []
    if len(parts) != NUM_BLOCKS or any(len(p) != 4 or not p.isdigit() for p in parts):
        raise LoaderError(f"{where}: {text!r} is not an Accel-NASBench id (7 groups of 4 digits e k l se)")
    arch = {}
    for i, p in enumerate(parts):
        arch.update({f"block{i}_e": int(p[0]), f"block{i}_k": int(p[1]), f"block{i}_l": int(p[2])})
        arch[f"block{i}_se"] = p[3] == "1" if p[3] in "01" else p[3]
    return parse_architecture(arch, where=where)


def _mbconv(c_in: int, c_out: int, stride: int, b: Block, act: type[nn.Module], cache) -> nn.Module:
    mid = make_divisible(c_in * b.e, 8)
    squeeze = max(1, c_in // 4)

    def make() -> nn.Module:
        se = (lambda ch: SqueezeExcite(ch, squeeze, act=act, gate=nn.Sigmoid)) if b.se else None
        return InvertedResidual(c_in, c_out, b.k, stride, mid=mid, act=act, se=se)

    return cached(cache, ("anb_mb", c_in, c_out, stride, b.e, b.k, b.se, act.__name__), make)


class AccelNet(nn.Module):
    """The Accel-NASBench ImageNet network of 7 blocks."""

    def __init__(
        self, blocks: Sequence[Block], *, platform: str = "gpu", cache: ModuleCache | None = None
    ) -> None:
        super().__init__()
        act = ACTIVATIONS[platform]
        c0 = IN_CHANNELS[0]
        self.stem = cached(
            cache, ("anb_stem", c0, act.__name__), lambda: ConvBlock(3, c0, 3, 2, order="cba", act=act)
        )
        layers: list[nn.Module] = []
        for i, b in enumerate(blocks):
            c_in, c_out = IN_CHANNELS[i], OUT_CHANNELS[i]
            for j in range(b.l):
                layers.append(
                    _mbconv(c_in if j == 0 else c_out, c_out, STRIDES[i] if j == 0 else 1, b, act, cache)
                )
        self.features = nn.Sequential(*layers)
        c = OUT_CHANNELS[-1]
        self.head = cached(
            cache,
            ("anb_head", c, HEAD_CHANNELS, NUM_CLASSES, act.__name__),
            lambda: nn.Sequential(
                ConvBlock(c, HEAD_CHANNELS, 1, order="cba", act=act),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Dropout(0.2),
                nn.Linear(HEAD_CHANNELS, NUM_CLASSES),
            ),
        )

    def forward(self, x):  # noqa: D102 - nn.Module
        return self.head(self.features(self.stem(x)))


def build_network(config: Any, *, platform: str = "gpu", cache: ModuleCache | None = None) -> nn.Module:
    """The network (eval mode) of an upstream ``architecture`` dict or a ``{"id": ...}`` config."""
    if isinstance(config, Mapping) and "id" in config:
        blocks = blocks_from_id(config["id"])
    elif isinstance(config, str):
        blocks = blocks_from_id(config)
    else:
        blocks = parse_architecture(config)
    if platform not in ACTIVATIONS:
        raise LoaderError(f"anb: unknown platform {platform!r}; known: {', '.join(ACTIVATIONS)}")
    net = AccelNet(blocks, platform=platform, cache=cache)
    return net.eval() if cache is None else set_eval(net)


# ---------------------------------------------------------------------------- the tar
def iter_tar_results(path: Path) -> Iterator[tuple[str, dict]]:
    """``(member name, parsed JSON)`` of every ``*.json`` member of the tar.gz, streamed.

    A truncated or corrupt archive, or a member that is not JSON, raises :class:`LoaderError`
    naming the file and the member.
    """
    member_name = "(header)"
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                member_name = member.name
                if not member.isfile() or not member.name.endswith(".json"):
                    continue
                f = tar.extractfile(member)
                raw = f.read() if f is not None else b""
                if len(raw) != member.size:
                    raise LoaderError(f"{path}: member {member.name} is truncated; re-download the archive")
                try:
                    yield member.name, json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    raise LoaderError(f"{path}: member {member.name} is not JSON ({err})") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise LoaderError(
            f"{path}: truncated or corrupt tar.gz after member {member_name!r} "
            f"({type(err).__name__}: {err}); "
            "re-download it (`cgbench download anb`)"
        ) from None


def _entry_labels(name: str, entry: Any, where: str) -> tuple[tuple[Block, ...], dict[str, float | None]]:
    if not isinstance(entry, Mapping):
        raise LoaderError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    for key in ("architecture", "metrics"):
        if not isinstance(entry.get(key), Mapping):
            raise LoaderError(
                f"{where}: missing {key!r} (an Accel-NASBench result has architecture, metrics, "
                "model_info, platform_perf); re-download the archive"
            )
    blocks = parse_architecture(entry["architecture"], where=f"{where}, architecture")
    metrics = entry["metrics"]
    top1, top5 = upstream_number(metrics.get("val_top1")), upstream_number(metrics.get("val_top5"))
    if top1 is None:
        raise LoaderError(f"{where}: metrics.val_top1 is missing or not a number")
    labels: dict[str, float | None] = {
        "val_acc_top1": top1 / 100.0,
        "val_acc_top5": None if top5 is None else top5 / 100.0,
        "train_time": upstream_number(metrics.get("train_time")),
    }
    info = entry.get("model_info") if isinstance(entry.get("model_info"), Mapping) else {}
    labels["macs_upstream"] = upstream_number(info.get("macs"))
    labels["params_upstream"] = upstream_number(info.get("params"))
    perf = entry.get("platform_perf") if isinstance(entry.get("platform_perf"), Mapping) else {}
    for key in PLATFORMS:
        value = perf.get(key) if isinstance(perf.get(key), Mapping) else {}
        kind = key.split("_")[0]
        labels[key] = upstream_number(value.get(f"{kind}_mean"))
        labels[f"{key}_std"] = upstream_number(value.get(f"{kind}_std"))
    return blocks, labels


def read_results(path: Path, *, limit: int | None = None) -> list[tuple[str, tuple[Block, ...], dict, int]]:
    """All results of the tar, duplicates merged: ``(arch_id, blocks, labels, copies)`` sorted by
    the first file number of each arch (``result_N``)."""
    merged: dict[str, tuple[int, tuple[Block, ...], list[dict]]] = {}
    for name, entry in iter_tar_results(path):
        stem = Path(name).stem
        try:
            number = int(stem.rsplit("_", 1)[1])
        except (IndexError, ValueError):
            number = len(merged) + 10**9
        blocks, labels = _entry_labels(name, entry, f"{path}: {name}")
        key = arch_id(blocks)
        if key in merged:
            first, _, copies = merged[key]
            merged[key] = (min(first, number), blocks, copies + [labels])
        else:
            merged[key] = (number, blocks, [labels])
    if not merged:
        raise LoaderError(f"{path}: no result_N.json members; is this anb_dataset_jsons.tar.gz?")
    out = []
    for key, (_, blocks, copies) in sorted(merged.items(), key=lambda kv: kv[1][0]):
        out.append((key, blocks, _merge(copies), len(copies)))
    return out[:limit] if limit is not None else out


def _merge(copies: list[dict]) -> dict[str, float | None]:
    labels: dict[str, float | None] = {}
    for name in copies[0]:
        values = [c[name] for c in copies if c.get(name) is not None]
        labels[name] = sum(values) / len(values) if values else None
    top1 = [c["val_acc_top1"] for c in copies]
    labels["val_acc_top1_range"] = max(top1) - min(top1)
    labels["accuracy"] = labels["val_acc_top1"]
    return labels


# ---------------------------------------------------------------------------- the family
LABEL_COLUMNS: dict[str, str] = {
    "val_acc_top1": "ImageNet top-1 validation accuracy (fraction), Accel-NASBench training proxy, one seed",
    "val_acc_top5": "ImageNet top-5 validation accuracy (fraction), same run",
    "val_acc_top1_range": "max - min top-1 over the archive's copies of the arch (0 if single)",
    "train_time": "training time of the proxy run (s; upstream metrics.train_time)",
    "macs_upstream": "upstream model_info.macs: multiply-accumulates in millions (224x224)",
    "params_upstream": "upstream model_info.params: parameters in millions",
    **{key: f"Accel-NASBench {what}, mean" for key, what in PLATFORMS.items()},
    **{
        f"{key}_std": f"Accel-NASBench {what}, std (null where not published)"
        for key, what in PLATFORMS.items()
    },
}
TAG_COLUMNS: dict[str, tuple[str, str]] = {
    "num_results": (
        "int64",
        "result files of the arch in the archive (1, or 2 for 13 archs): labels are their mean",
    ),
    "num_layers": ("int64", "MBConv layers in the network (sum of the blocks' l)"),
}


class ANB(Family):
    """Accel-NASBench (ImageNet; label: top-1 of its training proxy, fraction).

    Options: ``platform`` (str, ``"gpu"`` = SiLU, the network timed on GPUs/TPUs, or
    ``"fpga"`` = ReLU, the FPGA variant; params and MACs are the same).
    """

    name = "anb"
    dataset = "imagenet"
    input_shape = (3, RESOLUTION, RESOLUTION)
    expected_rows = NUM_UNIQUE
    sources = (SOURCE,)
    label_columns = LABEL_COLUMNS
    tag_columns = TAG_COLUMNS

    def __init__(self, *, platform: Literal["gpu", "fpga"] = "gpu") -> None:
        if platform not in ACTIVATIONS:
            raise LoaderError(f"anb: unknown platform {platform!r}; known: {', '.join(ACTIVATIONS)}")
        self.platform = platform

    def iter_records(self, paths: Mapping[str, Path], *, limit: int | None = None) -> Iterator[ArchRecord]:
        try:
            path = paths[SOURCE]
        except KeyError:
            raise LoaderError(
                f"anb: source {SOURCE!r} not given; run `cgbench download anb` or pass a mirror"
            ) from None
        # the whole archive is parsed (and merged) before the first record: a bad file fails early
        rows = read_results(path)
        for key, blocks, labels, copies in itertools.islice(rows, limit):
            tags = {"num_results": copies, "num_layers": sum(b.l for b in blocks)}
            yield ArchRecord(arch_id=key, config={"id": key}, labels=labels, tags=tags)

    def build_model(self, config: Any, *, cache: ModuleCache | None = None) -> nn.Module:
        return build_network(config, platform=self.platform, cache=cache)
