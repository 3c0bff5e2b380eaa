"""NAS-Bench-Macro: a MobileNetV2-like macro search space on CIFAR-10, the whole space labelled.

Space (``xiusu/NAS-Bench-Macro``, ``train/model.py``): 8 searchable layers in three stages of
2 / 3 / 3 layers; each layer is one of ``0`` identity, ``1`` inverted residual expand 3 kernel
3, ``2`` inverted residual expand 6 kernel 5, so 3^8 = 6,561 archs named by their 8 digits.

Network (CIFAR-10, 32x32, eval mode): 3x3 conv (32 ch)-BN-ReLU stem; the first layer of each
stage has stride 2 and doubles the channels (32 -> 64 -> 128 -> 256), the others keep them; an
identity layer with stride 2 / new width is a 1x1 conv (stride 2)-BN projection, otherwise a
no-op; an inverted residual is 1x1 expand-BN-ReLU, depthwise-BN-ReLU, 1x1 project-BN with
``round(C_in * t)`` hidden channels (ReLU, no SE), plus the input when stride 1 and the width is
kept; head: 1x1 conv to 1280-BN-ReLU, global average pool, linear to 10 classes.

Labels (``data/nas-bench-macro_cifar10.json``): CIFAR-10 test accuracy of three training seeds
(percent upstream, fractions here); ``accuracy`` = their mean. The file's ``params`` equal our
parameter count and its ``flops`` equal our MACs (convolution and linear multiply-accumulates,
biases and element-wise ops not counted: cgbench's ``macs`` convention) for every arch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch.nn as nn

from cgbench.loaders.base import ArchRecord, Family, LoaderError, ModuleCache, cached, read_json
from cgbench.loaders.blocks import ConvBlock, InvertedResidual, set_eval

SOURCE = "nb_macro/nas-bench-macro_cifar10.json"
CHOICES = ("identity", "mb_e3_k3", "mb_e6_k5")
CHOICE_SHAPES = {1: (3, 3), 2: (6, 5)}  # digit -> (expand ratio, kernel)
STAGES = (2, 3, 3)
NUM_LAYERS = sum(STAGES)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 10
NUM_ARCHS = len(CHOICES) ** NUM_LAYERS
SEEDS = 3


def parse_arch(arch: Any, *, where: str = "arch") -> tuple[int, ...]:
    """The 8 layer choices of an arch string such as ``"02012100"`` (or a sequence of ints)."""
    try:
        digits = tuple(int(c) for c in arch)
    except (TypeError, ValueError):
        digits = ()
    if len(digits) != NUM_LAYERS or any(d not in range(len(CHOICES)) for d in digits):
        raise LoaderError(
            f"{where}: {arch!r} is not a NAS-Bench-Macro arch: expected {NUM_LAYERS} digits, each "
            f"0 ({CHOICES[0]}), 1 ({CHOICES[1]}) or 2 ({CHOICES[2]}), e.g. '02012100'"
        )
    return digits


def all_archs() -> Iterator[str]:
    """All 6,561 arch strings in lexicographic order."""
    for digits in itertools.product("012", repeat=NUM_LAYERS):
        yield "".join(digits)


def _layer(choice: int, c_in: int, c_out: int, stride: int, cache: ModuleCache | None) -> nn.Module:
    if choice == 0:
        if stride == 1 and c_in == c_out:
            return cached(cache, ("macro_id",), nn.Identity)
        return cached(
            cache,
            ("macro_proj", c_in, c_out, stride),
            lambda: ConvBlock(c_in, c_out, 1, stride, order="cb"),
        )
    expand, kernel = CHOICE_SHAPES[choice]
    return cached(
        cache,
        ("macro_mb", expand, kernel, c_in, c_out, stride),
        lambda: InvertedResidual(
            c_in, c_out, kernel, stride, mid=round(c_in * expand), act=nn.ReLU, expand=True
        ),
    )


class MacroNetwork(nn.Module):
    """The NAS-Bench-Macro CIFAR-10 network of 8 layer choices."""

    def __init__(self, digits: Sequence[int], *, cache: ModuleCache | None = None) -> None:
        super().__init__()
        c = STEM_CHANNELS
        self.stem = cached(cache, ("macro_stem", c), lambda: ConvBlock(3, c, 3, order="cba"))
        layers: list[nn.Module] = []
        choices = iter(digits)
        for size in STAGES:
            for idx in range(size):
                stride, c_out = (2, 2 * c) if idx == 0 else (1, c)
                layers.append(_layer(next(choices), c, c_out, stride, cache))
                c = c_out
        self.features = nn.Sequential(*layers)
        self.head = cached(
            cache,
            ("macro_head", c, HEAD_CHANNELS, NUM_CLASSES),
            lambda: nn.Sequential(
                ConvBlock(c, HEAD_CHANNELS, 1, order="cba"),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(HEAD_CHANNELS, NUM_CLASSES),
            ),
        )

    def forward(self, x):  # noqa: D102 - nn.Module
        return self.head(self.features(self.stem(x)))


def build_network(arch: Any, *, cache: ModuleCache | None = None) -> nn.Module:
    """The network (eval mode) of an arch string or a ``{"arch": "..."}`` config."""
    if isinstance(arch, Mapping):
        arch = arch.get("arch")
    net = MacroNetwork(parse_arch(arch), cache=cache)
    return net.eval() if cache is None else set_eval(net)


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LoaderError(f"{where}: expected a number (percent), got {value!r}")
    return float(value) / 100.0


def read_results(path: Path) -> Iterator[tuple[str, dict[str, float | None]]]:
    """``nas-bench-macro_cifar10.json`` -> ``(arch, labels)`` per arch, in file order."""
    data = read_json(path)
    if not isinstance(data, Mapping):
        raise LoaderError(f"{path}: expected an object {{'<8 digits>': {{test_acc, ...}}}} (NAS-Bench-Macro)")
    for key, entry in data.items():
        where = f"{path}, arch {key!r}"
        parse_arch(key, where=where)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("test_acc"), list):
            raise LoaderError(f"{where}: expected an object with `test_acc` (a list of {SEEDS} percents)")
        seeds = [_fraction(v, f"{where}, test_acc") for v in entry["test_acc"]]
        if len(seeds) != SEEDS:
            raise LoaderError(f"{where}: `test_acc` has {len(seeds)} values, expected {SEEDS} seeds")
        labels: dict[str, float | None] = {f"test_acc_seed{i}": v for i, v in enumerate(seeds)}
        labels["accuracy"] = sum(seeds) / SEEDS
        std = entry.get("std")
        labels["test_acc_std"] = float(std) / 100.0 if isinstance(std, (int, float)) else None
        for name in ("params", "flops"):
            value = entry.get(name)
            labels[f"{name}_upstream"] = float(value) if isinstance(value, (int, float)) else None
        yield key, labels


LABEL_COLUMNS = {
    **{
        f"test_acc_seed{i}": f"NAS-Bench-Macro: CIFAR-10 test accuracy (fraction), training seed {i}"
        for i in range(SEEDS)
    },
    "test_acc_std": "NAS-Bench-Macro: std of the 3 seeds' test accuracy (fraction; the file's `std`)",
    "params_upstream": "NAS-Bench-Macro `params`: trainable parameters (count)",
    "flops_upstream": "NAS-Bench-Macro `flops`: conv + linear MACs per image (cgbench convention `macs`)",
}
TAG_COLUMNS = {
    "num_identity": ("int64", "layers set to identity (0-8): the network's effective depth is 8 minus this"),
}


class NBMacro(Family):
    """NAS-Bench-Macro on CIFAR-10 (label: mean test accuracy of 3 seeds, fraction).

    No options: the default build reads the one upstream file (all 6,561 archs).
    """

    name = "nb_macro"
    dataset = "cifar10"
    input_shape = (3, 32, 32)
    expected_rows = NUM_ARCHS
    sources = (SOURCE,)
    label_columns = LABEL_COLUMNS
    tag_columns = TAG_COLUMNS

    def iter_records(self, paths: Mapping[str, Path], *, limit: int | None = None) -> Iterator[ArchRecord]:
        try:
            path = paths[SOURCE]
        except KeyError:
            raise LoaderError(
                f"nb_macro: source {SOURCE!r} not given; run `cgbench download nb_macro` or pass a mirror"
            ) from None
        return itertools.islice(self._records(path), limit)

    def _records(self, path: Path) -> Iterator[ArchRecord]:
        rows = list(read_results(path))  # every row is checked before the first record
        for arch, labels in rows:
            tags = {"num_identity": arch.count("0")}
            yield ArchRecord(arch_id=arch, config={"arch": arch}, labels=labels, tags=tags)

    def build_model(self, config: Any, *, cache: ModuleCache | None = None) -> nn.Module:
        return build_network(config, cache=cache)
