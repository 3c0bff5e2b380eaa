"""PyTorch building blocks shared by the family builders.

Families differ in how they wire blocks, not in the blocks: NB-201's ReLU-conv-BN and NB-101's
conv-BN-ReLU are one :class:`ConvBlock` with a different ``order``. Modules that must appear as
one CG node declare ``cg_op`` (and ``cg_output_shape`` when the shape changes); the tracer in
``cgbench.cg`` reads those attributes, so this module imports nothing from later stages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from cgbench.loaders.base import ModuleCache, cached


class ConvBlock(nn.Sequential):
    """Conv + BatchNorm + activation in a given ``order`` of the letters ``a`` (act), ``c``, ``b``.

    ``"acb"`` is NB-201/DARTS's ReLU-Conv-BN, ``"cba"`` is NB-101's Conv-BN-ReLU.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        *,
        order: str = "acb",
        groups: int = 1,
        affine: bool = True,
        act: type[nn.Module] = nn.ReLU,
    ) -> None:
        padding = dilation * (kernel - 1) // 2 if padding is None else padding
        parts = {
            "a": lambda: act(),
            "c": lambda: nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups=groups, bias=False),
            "b": lambda: nn.BatchNorm2d(c_out, affine=affine),
        }
        super().__init__(*(parts[letter]() for letter in order))


class Zero(nn.Module):
    """The ``none`` operation: outputs zeros of the right shape (a ``zero`` CG node)."""

    cg_op = "zero"

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def cg_output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        n, _, h, w = shape
        s = self.stride
        return (n, self.c_out, (h + s - 1) // s, (w + s - 1) // s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.c_in == self.c_out:
            return x[:, :, :: self.stride, :: self.stride].mul(0.0)
        n, _, h, w = x.shape
        s = self.stride
        return x.new_zeros(n, self.c_out, (h + s - 1) // s, (w + s - 1) // s)


class ResidualBlock(nn.Module):
    """``shortcut(x) + body(x)``: the ResNet basic block wiring (NB-201's reduction block)."""

    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.body(x)


def classifier_head(
    c: int, num_classes: int, *, pre_norm: bool, cache: ModuleCache | None = None
) -> nn.Sequential:
    """[BN-ReLU] - global average pool - flatten - linear: the head of the CIFAR families."""
    return cached(
        cache,
        ("classifier_head", c, num_classes, pre_norm),
        lambda: nn.Sequential(
            *((nn.BatchNorm2d(c), nn.ReLU()) if pre_norm else ()),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c, num_classes),
        ),
    )


def sum_inputs(values: Sequence[torch.Tensor]) -> torch.Tensor:
    """Left-to-right sum without the ``0 +`` that Python's ``sum`` adds (one add node per pair)."""
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


# ---------------------------------------------------------------------------------------------
# DARTS / NAS-Bench-301 blocks (issue #4, nb101/nb301 loaders). Appended; the part above is the
# lead's. NB-101's conv-BN-ReLU and DARTS's ReLU-conv-BN are ``ConvBlock(order="cba" / "acb")``.
# ---------------------------------------------------------------------------------------------
class DilConv(nn.Sequential):
    """ReLU - depthwise ``kernel`` conv (``stride``, ``dilation``) - pointwise 1x1 conv - BN.

    DARTS's ``dil_conv_3x3`` / ``dil_conv_5x5`` (dilation 2); with dilation 1 it is one half of
    :class:`SepConv`. Padding keeps the size ("same" for stride 1), as in DARTS.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        dilation: int = 1,
        *,
        affine: bool = True,
    ) -> None:
        padding = dilation * (kernel - 1) // 2
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """DARTS's ``sep_conv_3x3`` / ``sep_conv_5x5``: two :class:`DilConv` units with dilation 1,
    the first carrying the stride (ReLU-dw-pw-BN-ReLU-dw-pw-BN)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, *, affine: bool = True) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, affine=affine),
            DilConv(c_in, c_out, kernel, 1, affine=affine),
        )


class FactorizedReduce(nn.Module):
    """DARTS's stride-2 reduction: ReLU, two 1x1 stride-2 convs (the second on the input shifted
    by one pixel), channel concat, BN. ``c_out`` must be even."""

    def __init__(self, c_in: int, c_out: int, *, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even c_out, got {c_out}")
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def set_eval(module: nn.Module) -> nn.Module:
    """``module.eval()`` that skips subtrees already in eval mode (the shared sub-modules of a
    ``ModuleCache`` are put in eval mode when created): with a cache, switching a new network to
    eval then costs O(its own containers) instead of O(all modules)."""
    if module.training:
        module.training = False
        for child in module.children():
            set_eval(child)
    return module


# ---------------------------------------------------------------------------------------------
# Inverted-residual (MBConv) blocks: MobileNetV2/V3, Once-for-All, MnasNet / Accel-NASBench,
# NAS-Bench-Macro. Families choose widths, activations and SE placement by arguments; they do
# not copy the block.
# ---------------------------------------------------------------------------------------------
def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``), never
    more than 10% below ``value``: the width rule of MobileNet, Once-for-All and EfficientNet."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: per-channel mean -> 1x1 conv (bias) -> ``act`` -> 1x1 conv (bias)
    -> ``gate`` -> multiply the input. ``reduced`` is the bottleneck width (families differ in how
    they derive it: OFA ``make_divisible(C/4)``, MnasNet ``max(1, C_in*ratio)``)."""

    def __init__(
        self,
        channels: int,
        reduced: int,
        *,
        act: type[nn.Module] = nn.ReLU,
        gate: type[nn.Module] = nn.Hardsigmoid,
    ) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = act()
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(scale))))


class InvertedResidual(nn.Module):
    """MBConv: [1x1 expand-BN-act] -> depthwise ``kernel``x``kernel`` (``stride``)-BN-act -> [SE]
    -> 1x1 project-BN, plus the input when ``residual``.

    ``mid`` is the expanded width (default ``c_in``); the expand conv is present when
    ``mid != c_in`` unless ``expand`` forces it on or off. ``residual`` defaults to
    ``stride == 1 and c_in == c_out``. ``se`` builds the SE module from the expanded width
    (``None``: no SE).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        *,
        mid: int | None = None,
        act: type[nn.Module] = nn.ReLU6,
        se: Callable[[int], nn.Module] | None = None,
        residual: bool | None = None,
        expand: bool | None = None,
    ) -> None:
        super().__init__()
        mid = c_in if mid is None else mid
        expand = mid != c_in if expand is None else expand
        if not expand and mid != c_in:
            raise ValueError(f"InvertedResidual without an expand conv needs mid == c_in ({mid} != {c_in})")
        self.residual = (stride == 1 and c_in == c_out) if residual is None else residual
        layers: list[nn.Module] = []
        if expand:
            layers.append(ConvBlock(c_in, mid, 1, order="cba", act=act))
        layers.append(ConvBlock(mid, mid, kernel, stride, order="cba", groups=mid, act=act))
        if se is not None:
            layers.append(se(mid))
        layers.append(ConvBlock(mid, c_out, 1, order="cb"))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out
