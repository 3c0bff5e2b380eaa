"""PyTorch building blocks shared by the family builders.

Families differ in how they wire blocks, not in the blocks: NB-201's ReLU-conv-BN and NB-101's
conv-BN-ReLU are one :class:`ConvBlock` with a different ``order``. Modules that must appear as
one CG node declare ``cg_op`` (and ``cg_output_shape`` when the shape changes); the tracer in
``cgbench.cg`` reads those attributes, so this module imports nothing from later stages.
"""

from __future__ import annotations

from collections.abc import Sequence

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
            "c": lambda: nn.Conv2d(
                c_in, c_out, kernel, stride, padding, dilation, groups=groups, bias=False
            ),
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
