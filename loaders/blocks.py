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


# ---------------------------------------------------------------------------------------------
# TensorFlow-style blocks (GENNAPE's HiAML, Two-Path and Inception families, issue #10). GENNAPE
# traced Keras networks: convs with padding="same" (asymmetric for stride 2: the extra row/column
# goes bottom/right), average pooling that excludes the padding, BN with eps 1e-3.
# ---------------------------------------------------------------------------------------------
TF_BN_EPS = 1e-3


def _pair2(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v[0]), int(v[-1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def tf_same_pads(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> tuple[int, ...]:
    """TF 'same' padding of a (H, W) input: ``(top, bottom, left, right)``; output = ceil(in / s)."""
    pads: list[int] = []
    for n, k, s in zip(size, kernel, stride):
        out = -(-int(n) // s)
        total = max((out - 1) * s + k - int(n), 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's ``padding="same"``.

    On real tensors an asymmetric padding is applied exactly as TF does (``F.pad`` then a valid
    conv). TF's ``Conv2D(padding="same")`` is one operator, so on the shape-only stand-ins of CG
    extraction the conv is called with the symmetric padding that gives the same output shape,
    and the CG has one conv node, like GENNAPE's.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel, stride=1, *, bias: bool = False, groups: int = 1
    ) -> None:
        super().__init__(c_in, c_out, _pair2(kernel), _pair2(stride), padding=0, bias=bias, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom, left, right = tf_same_pads(x.shape[-2:], self.kernel_size, self.stride)
        if (top, left) == (bottom, right) or not isinstance(x, torch.Tensor):
            pad = (bottom, right)
        else:
            x, pad = torch.nn.functional.pad(x, (left, right, top, bottom)), (0, 0)
        return torch.nn.functional.conv2d(x, self.weight, self.bias, self.stride, pad, 1, self.groups)


def tf_conv(
    c_in: int,
    c_out: int,
    kernel,
    stride=1,
    *,
    bias: bool = False,
    bn: bool = True,
    act: type[nn.Module] | None = None,
    depthwise: bool = False,
) -> nn.Sequential:
    """Keras conv (``padding="same"``) [+ BN (eps 1e-3)] [+ ``act``] as one ``nn.Sequential``."""
    layers: list[nn.Module] = [
        SameConv2d(c_in, c_out, kernel, stride, bias=bias, groups=c_in if depthwise else 1)
    ]
    if bn:
        layers.append(nn.BatchNorm2d(c_out, eps=TF_BN_EPS))
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SamePool2d(nn.Module):
    """TF ``MaxPooling2D`` / ``AveragePooling2D`` with ``padding="same"`` (the average excludes
    the padding) and ``stride`` 1; ``kind`` is ``"max"`` or ``"avg"``."""

    def __init__(self, kind: str, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        if kind not in ("max", "avg") or kernel % 2 == 0 or stride != 1:
            raise ValueError(f"SamePool2d: max/avg, odd kernel, stride 1; got {kind}, {kernel}, {stride}")
        self.kind, self.kernel = kind, kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.kernel // 2
        if self.kind == "max":
            return torch.nn.functional.max_pool2d(x, self.kernel, 1, p)
        return torch.nn.functional.avg_pool2d(x, self.kernel, 1, p, count_include_pad=False)


class GlobalAvgPool(nn.Module):
    """Keras ``GlobalAveragePooling2D``: mean over H and W, output (N, C) (one ``mean`` node)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


class DagBlock(nn.Module):
    """A block given as a small data-flow program: ``steps`` are ``(name, module | None, inputs)``
    run in order on ``x``; a step's inputs are summed left to right (``None``: the sum itself, e.g.
    an identity projection); the output is ``act(sum of outputs)`` (``act=None``: no activation)."""

    def __init__(
        self,
        steps: Sequence[tuple[str, nn.Module | None, Sequence[str]]],
        outputs: Sequence[str],
        act: type[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.plan = [(name, tuple(inputs)) for name, _, inputs in steps]
        self.ops = nn.ModuleDict({name: m for name, m, _ in steps if m is not None})
        self.outputs = tuple(outputs)
        self.act = act() if act is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {"x": x}
        for name, inputs in self.plan:
            total = sum_inputs([values[i] for i in inputs])
            values[name] = self.ops[name](total) if name in self.ops else total
        out = sum_inputs([values[o] for o in self.outputs])
        return self.act(out) if self.act is not None else out


class ParallelConcat(nn.Module):
    """Branches applied to the same input, concatenated on channels, then ``post`` (or nothing)."""

    def __init__(self, branches: Sequence[nn.Module], post: nn.Module | None = None) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.post = post

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        out = torch.cat(outs, 1) if len(outs) > 1 else outs[0]
        return self.post(out) if self.post is not None else out


class PlanNetwork(nn.Module):
    """A network given as a plan of :class:`cgbench.loaders.base.Segment` steps (see there):
    each step is a module applied to one earlier step's output (or the input), or a join
    (``concat`` on channels / ``add``) of several; the last step's output is the output."""

    def __init__(self, plan: Sequence) -> None:
        super().__init__()
        self.steps = [(s.join, tuple(s.inputs)) for s in plan]
        self.mods = nn.ModuleList([s.factory() if s.join is None else nn.Identity() for s in plan])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for (join, inputs), mod in zip(self.steps, self.mods):
            args = [x if i < 0 else outs[i] for i in inputs]
            if join == "concat":
                outs.append(torch.cat(args, 1))
            elif join == "add":
                outs.append(sum_inputs(args))
            else:
                outs.append(mod(args[0]))
        return outs[-1]


def tf_inception_s(
    c_in: int,
    c_out: int,
    kernel: int,
    stride: int = 1,
    *,
    split_stride: bool = False,
    bias: bool = False,
    act: type[nn.Module] = nn.ReLU6,
) -> nn.Sequential:
    """GENNAPE's ``inception_s`` op: conv 1xK -> BN -> act, then conv Kx1 -> BN -> act, both to
    ``c_out``. The stride goes to the first conv in both dimensions (HiAML, Two-Path) or, with
    ``split_stride``, as (1, s) then (s, 1) (Inception)."""
    s1, s2 = ((1, stride), (stride, 1)) if split_stride else (stride, 1)
    return nn.Sequential(
        tf_conv(c_in, c_out, (1, kernel), s1, bias=bias, act=act),
        tf_conv(c_out, c_out, (kernel, 1), s2, bias=bias, act=act),
    )


def tf_pool_bn(kind: str, channels: int, kernel: int = 3) -> nn.Sequential:
    """GENNAPE's ``avgpool3x3`` / ``maxpool3x3`` ops: TF 'same' pooling (stride 1) + BN."""
    return nn.Sequential(SamePool2d(kind, kernel), nn.BatchNorm2d(channels, eps=TF_BN_EPS))
