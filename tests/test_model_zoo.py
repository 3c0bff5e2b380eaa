"""Acceptance zoo for ``extract_cg`` on models it was not written for (issue 8 §3).

The networks are written here, following torchvision's definitions layer for layer (its wheel
does not load with the CPU torch wheel), plus a ViT-style transformer, weight tying, hooks and
Python state. For each: ``params()`` equals torch's count over unique parameters exactly; the
multiply-accumulates of conv / linear / matmul equal half of
``torch.utils.flop_counter.FlopCounterMode``'s count exactly (a real forward pass); the graph is
the same with the memo on, off, and with every sub-module marked memoisable. Parameter counts
of the torchvision-architecture models also match the published figures (torchvision's model
cards), which checks that the zoo's networks are the real ones.

Counts do not depend on the resolution, so the models run at small inputs to stay fast.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cgbench.cg import TraceCache, extract_cg


def _div8(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class ConvBNAct(nn.Sequential):
    """torchvision ``Conv2dNormActivation``: conv (no bias), BatchNorm, optional activation."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1, act=nn.ReLU):
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision ``ops.SqueezeExcitation``: pool, 1x1 conv, act, 1x1 conv, gate, multiply."""

    def __init__(self, c: int, squeeze: int, act=nn.ReLU, gate=nn.Sigmoid) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.activation, self.scale_activation = act(), gate()

    def forward(self, x):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


# ---------------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, block: type, layers: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.c = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._layer(block, 64, layers[0], 1)
        self.layer2 = self._layer(block, 128, layers[1], 2)
        self.layer3 = self._layer(block, 256, layers[2], 2)
        self.layer4 = self._layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _layer(self, block: type, planes: int, blocks: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or self.c != planes * block.expansion:
            down = nn.Sequential(
                nn.Conv2d(self.c, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.c, planes, stride, down)]
        self.c = planes * block.expansion
        layers += [block(self.c, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------------------- MobileNetV2
class InvertedResidualV2(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = round(c_in * expand)
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(c_in, hidden, 1, act=nn.ReLU6))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    SETTING = [
        [1, 16, 1, 1],
        [6, 24, 2, 2],
        [6, 32, 3, 2],
        [6, 64, 4, 2],
        [6, 96, 3, 1],
        [6, 160, 3, 2],
        [6, 320, 1, 1],
    ]

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        c = 32
        features: list[nn.Module] = [ConvBNAct(3, c, stride=2, act=nn.ReLU6)]
        for t, ch, n, s in self.SETTING:
            for i in range(n):
                features.append(InvertedResidualV2(c, _div8(ch), s if i == 0 else 1, t))
                c = _div8(ch)
        features.append(ConvBNAct(c, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------------------- MobileNetV3-Large
class InvertedResidualV3(nn.Module):
    def __init__(self, c_in: int, k: int, expanded: int, c_out: int, se: bool, act: str, stride: int):
        super().__init__()
        a = nn.Hardswish if act == "HS" else nn.ReLU
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expanded != c_in:
            layers.append(ConvBNAct(c_in, expanded, 1, act=a))
        layers.append(ConvBNAct(expanded, expanded, k, stride, groups=expanded, act=a))
        if se:
            layers.append(SqueezeExcitation(expanded, _div8(expanded // 4), gate=nn.Hardsigmoid))
        layers.append(ConvBNAct(expanded, c_out, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        out = self.block(x)
        return out + x if self.use_res_connect else out


class MobileNetV3Large(nn.Module):
    CONF = [
        (16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2), (24, 3, 72, 24, False, "RE", 1),
        (24, 5, 72, 40, True, "RE", 2), (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
        (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
        (80, 3, 184, 80, False, "HS", 1), (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
        (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1),
        (160, 5, 960, 160, True, "HS", 1),
    ]  # fmt: skip

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 16, 3, 2, act=nn.Hardswish)]
        layers += [InvertedResidualV3(*conf) for conf in self.CONF]
        layers.append(ConvBNAct(160, 960, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(960, 1280), nn.Hardswish(inplace=True), nn.Dropout(0.2), nn.Linear(1280, num_classes)
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---------------------------------------------------------------------------- EfficientNet-B0
class MBConv(nn.Module):
    def __init__(self, expand: int, k: int, stride: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and c_in == c_out
        expanded = _div8(c_in * expand)
        layers: list[nn.Module] = []
        if expanded != c_in:
            layers.append(ConvBNAct(c_in, expanded, 1, act=nn.SiLU))
        layers.append(ConvBNAct(expanded, expanded, k, stride, groups=expanded, act=nn.SiLU))
        layers.append(SqueezeExcitation(expanded, max(1, c_in // 4), act=nn.SiLU))
        layers.append(ConvBNAct(expanded, c_out, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = nn.Dropout(0.0)  # torchvision's StochasticDepth: identity in eval

    def forward(self, x):
        out = self.block(x)
        return self.stochastic_depth(out) + x if self.use_res_connect else out


class EfficientNetB0(nn.Module):
    CONF = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
            (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]  # fmt: skip

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 32, 3, 2, act=nn.SiLU)]
        for expand, k, stride, c_in, c_out, n in self.CONF:
            stage = [
                MBConv(expand, k, stride if i == 0 else 1, c_in if i == 0 else c_out, c_out) for i in range(n)
            ]
            layers.append(nn.Sequential(*stage))
        layers.append(ConvBNAct(320, 1280, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2, inplace=True), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---------------------------------------------------------------------------- ShuffleNetV2 x1.0
def channel_shuffle(x, groups: int):
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        bf = c_out // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(c_in, c_in, 3, stride, 1, bias=False, groups=c_in), nn.BatchNorm2d(c_in),
                nn.Conv2d(c_in, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True),
            )  # fmt: skip
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(c_in if stride > 1 else bf, bf, 1, bias=False), nn.BatchNorm2d(bf),
            nn.ReLU(inplace=True),
            nn.Conv2d(bf, bf, 3, stride, 1, bias=False, groups=bf), nn.BatchNorm2d(bf),
            nn.Conv2d(bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True),
        )  # fmt: skip

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, repeats=(4, 8, 4), channels=(24, 116, 232, 464, 1024), num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, channels[0], 3, 2, 1, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True)
        )
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c = channels[0]
        for i, (n, out) in enumerate(zip(repeats, channels[1:4]), start=2):
            setattr(
                self,
                f"stage{i}",
                nn.Sequential(ShuffleUnit(c, out, 2), *(ShuffleUnit(out, out, 1) for _ in range(n - 1))),
            )
            c = out
        self.conv5 = nn.Sequential(
            nn.Conv2d(c, channels[-1], 1, bias=False), nn.BatchNorm2d(channels[-1]), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean([2, 3]))


# ---------------------------------------------------------------------------- DenseNet-121
class DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(c_in), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, bn_size * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * growth), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, inputs):
        prev = [inputs] if isinstance(inputs, torch.Tensor) else inputs
        bottleneck = self.conv1(self.relu1(self.norm1(torch.cat(prev, 1))))
        return self.conv2(self.relu2(self.norm2(bottleneck)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, n: int, c_in: int, growth: int, bn_size: int) -> None:
        super().__init__(
            {f"denselayer{i + 1}": DenseLayer(c_in + i * growth, growth, bn_size) for i in range(n)}
        )

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseNet121(nn.Module):
    def __init__(self, growth: int = 32, blocks=(6, 12, 24, 16), c0: int = 64, num_classes: int = 1000):
        super().__init__()
        layers: list[tuple[str, nn.Module]] = [
            ("conv0", nn.Conv2d(3, c0, 7, 2, 3, bias=False)), ("norm0", nn.BatchNorm2d(c0)),
            ("relu0", nn.ReLU(inplace=True)), ("pool0", nn.MaxPool2d(3, 2, 1)),
        ]  # fmt: skip
        c = c0
        for i, n in enumerate(blocks):
            layers.append((f"denseblock{i + 1}", DenseBlock(n, c, growth, 4)))
            c += n * growth
            if i != len(blocks) - 1:
                transition = nn.Sequential(
                    nn.BatchNorm2d(c),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(c, c // 2, 1, bias=False),
                    nn.AvgPool2d(2, 2),
                )
                layers.append((f"transition{i + 1}", transition))
                c //= 2
        layers.append(("norm5", nn.BatchNorm2d(c)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        out = F.relu(self.features(x), inplace=True)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1))


# ---------------------------------------------------------------------------- ViT-style transformer
class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp, dim))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    def __init__(
        self,
        image: int = 32,
        patch: int = 4,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        classes: int = 10,
    ):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, (image // patch) ** 2 + 1, dim))
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads, 2 * dim) for _ in range(depth)))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        return self.head(self.ln(self.blocks(x))[:, 0])


# ---------------------------------------------------------------------------- tying, hooks, state
class TiedNet(nn.Module):
    """One conv used twice, and a Linear sharing its weight with another (weight tying)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.enc, self.dec = nn.Linear(8, 8), nn.Linear(8, 8, bias=False)
        self.dec.weight = self.enc.weight

    def forward(self, x):
        x = self.conv(F.relu(self.conv(x)))
        return self.dec(self.enc(x.mean((2, 3))))


def hooked_net() -> nn.Module:
    """Hooks that change the graph: a pre-hook scales the input, a forward hook adds a ReLU."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 8 * 8, 10)
    )
    net[1].register_forward_pre_hook(lambda m, args: (args[0] * 0.5,))
    net[1].register_forward_hook(lambda m, args, out: F.relu(out))
    return net


class Stateful(nn.Module):
    """Python state decides the path: the first call convolves, later calls only activate."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.conv(x) if self.calls == 1 else F.relu(x)


class StatefulNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.s = nn.Conv2d(3, 8, 1), Stateful()

    def forward(self, x):
        self.s.calls = 0  # the same path on every forward pass
        return self.s(self.s(self.s(self.stem(x))))


# ---------------------------------------------------------------------------- the zoo
# name -> (factory, input shape (C, H, W), published parameter count or None)
ZOO: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int], int | None]] = {
    "resnet18": (lambda: ResNet(BasicBlock, [2, 2, 2, 2]), (3, 32, 32), 11_689_512),
    "resnet50": (lambda: ResNet(Bottleneck, [3, 4, 6, 3]), (3, 32, 32), 25_557_032),
    "mobilenet_v2": (MobileNetV2, (3, 32, 32), 3_504_872),
    "mobilenet_v3_large": (MobileNetV3Large, (3, 32, 32), 5_483_032),
    "efficientnet_b0": (EfficientNetB0, (3, 32, 32), 5_288_548),
    "shufflenet_v2_x1_0": (ShuffleNetV2, (3, 32, 32), 2_278_604),
    "densenet121": (DenseNet121, (3, 32, 32), 7_978_856),
    "vit_tiny": (ViT, (3, 32, 32), None),
    "weight_tying": (TiedNet, (8, 6, 6), None),
    "hooked": (hooked_net, (3, 8, 8), None),
    "stateful": (StatefulNet, (3, 6, 6), None),
}
# models whose every sub-module may be marked memoisable (no Python state, no hooks)
PURE = {"resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0",
        "shufflenet_v2_x1_0", "densenet121", "vit_tiny", "weight_tying"}  # fmt: skip


def unique_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields each tensor once


def flop_counter_macs(model: nn.Module, shape: tuple[int, ...]) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randn(1, *shape))
    return counter.get_total_flops() / 2


@pytest.fixture(scope="module")
def built() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: factory().eval() for name, (factory, _, _) in ZOO.items()}


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_params_and_macs_match_torch(name, built):
    model, (_, shape, published) = built[name], ZOO[name]
    cg = extract_cg(model, shape)
    assert cg.params() == unique_params(model)
    if published is not None:
        assert unique_params(model) == published  # the zoo network is the real one
    assert cg.flops() == flop_counter_macs(model, shape)


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_memo_never_changes_the_graph(name, built):
    model, shape = built[name], ZOO[name][1]
    cache = TraceCache()
    plain = extract_cg(model, shape, memo=False)
    memo = extract_cg(model, shape, cache=cache)
    assert memo.cg_hash() == plain.cg_hash() and memo.params() == plain.params()
    if name in PURE:  # every sub-module marked memoisable: replays happen, the graph is the same
        for m in model.modules():
            m.cg_pure = True
        try:
            for _ in range(2):
                marked = extract_cg(model, shape, cache=cache)
                assert marked.equals(plain) and marked.params() == plain.params()
        finally:
            for m in model.modules():
                del m.cg_pure
        if name not in {"weight_tying", "vit_tiny"}:  # repeated blocks were replayed
            assert cache.hits > 0


def test_zoo_special_cases_are_traced_as_they_run(built):
    ops = extract_cg(built["hooked"], ZOO["hooked"][1]).op_names
    assert ops[:5] == ["input", "conv", "mul", "conv", "relu"]
    ops = extract_cg(built["stateful"], ZOO["stateful"][1]).op_names
    assert ops == ["input", "conv", "conv", "relu", "relu", "output"]
    tied = built["weight_tying"]
    cg = extract_cg(tied, ZOO["weight_tying"][1])
    assert cg.op_counts()["conv"] == 2 and cg.params() == 8 * 8 * 9 + 8 + 64 + 8
    shuffle = extract_cg(built["shufflenet_v2_x1_0"], (3, 32, 32))
    assert shuffle.op_counts()["concat"] == 16 and shuffle.op_counts()["depthwise"] == 16 + 3
    vit = extract_cg(built["vit_tiny"], (3, 32, 32)).op_counts()
    assert vit["layernorm"] == 5 and vit["softmax"] == 2 and vit["matmul"] == 2 * 6 + 1
    assert math.isclose(built["vit_tiny"].blocks[0].attn.scale, 0.25)
