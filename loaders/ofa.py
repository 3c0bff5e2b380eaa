"""Once-for-All (OFA) sub-networks: ProxylessNAS w1.3, MobileNetV3 w1.2 / w1.0, ResNet-50D.

Three of GENNAPE's target families are static sub-networks of OFA supernets (ImageNet, 1000
classes, input resolution per architecture, 128-224 in steps of 4). This module builds them as
Once-for-All's static networks define them (``docs/ofa.md`` lists the facts and their sources):

- **PN** (``ofa_pn``, width 1.3): stem 3x3/2 -> MBConv e1 k3 (no skip) -> 6 stages of MBConv
  (ReLU6; 4,4,4,4,4,1 blocks max) -> 1x1 conv-BN-ReLU6 -> global average pool -> FC.
- **MBv3** (``ofa_mbv3``, width 1.0 or 1.2): stem (h-swish) -> MBConv e1 k3 ReLU (skip) ->
  5 stages (ReLU/h-swish, SE in stages 2, 4, 5) -> 1x1 conv-BN-h-swish -> pool -> 1x1 conv
  (no BN/bias) -h-swish -> FC.
- **ResNet-50D** (``ofa_resnet``): 3-conv stem (the middle, residual one only when d[0] = 2),
  max pool, bottleneck stages of 2-4 / 2-4 / 4-6 / 2-4 blocks with expand ratios 0.2 / 0.25 /
  0.35 and width multipliers 0.65 / 0.8 / 1.0, average-pool shortcut, pool -> FC.

Every encoding of an architecture (OFA's ``{ks, e, d, r}`` slot lists, ResNet's ``{d, e, w, r}``,
GENNAPE's ``(res, [["mbconv3_e4_k5", ...], ...])``, DyNAS-T's dict strings, HELP's dicts) is
normalised by :func:`canonical_config` to one canonical config (inactive slots dropped), whose
:func:`arch_id` is therefore the same for every encoding of one network.

Data: ``ofa_mbv3`` (w1.0) is labelled from DyNAS-T's four search-trajectory CSVs (supernet top-1,
params, MACs; 1,719 unique archs) and HELP's 5,000 configs with 12 GPU latency columns, as one
dataset joined by canonical config. All three families offer a seeded GENNAPE-sized sample
(``sample=N, seed=S``; :data:`SAMPLER_VERSION`), unlabelled, and read GENNAPE's own OFA caches
(``gennape_cache=...``) through the restricted unpickler.
"""

from __future__ import annotations

import ast
import codecs
import csv
import functools
import io
import itertools
import math
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

from cgbench.loaders.base import ArchRecord, Family, LoaderError, ModuleCache, cached
from cgbench.loaders.blocks import (
    ConvBlock,
    InvertedResidual,
    ResidualBlock,
    SqueezeExcite,
    make_divisible,
    set_eval,
)

NUM_CLASSES = 1000
RESOLUTIONS = range(128, 225, 4)  # OFA's elastic resolution: 128-224, multiples of 4
KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 6)
DEPTHS = (2, 3, 4)
SAMPLER_VERSION = "ofa-sampler/1"
SAMPLE_RESOLUTIONS = (192, 208, 224)  # the authors' sampler (AutoBuild rm_search/ofa_profile)


# ---------------------------------------------------------------------------- the spaces
@dataclass(frozen=True)
class MBConvSpace:
    """An OFA MobileNet-style space (widths are the base widths, scaled by the width multiplier)."""

    name: str
    op_prefix: str  # GENNAPE's op names: "<prefix>_e<e>_k<k>"
    stem: int
    first_block: int
    widths: tuple[int, ...]
    strides: tuple[int, ...]
    acts: tuple[type[nn.Module], ...]
    se: tuple[bool, ...]
    max_depth: tuple[int, ...]
    stem_act: type[nn.Module]
    first_act: type[nn.Module]
    head: tuple[int, ...]  # PN: (final conv,), MBv3: (final expand, feature mix)
    head_act: type[nn.Module]
    default_width: float

    @property
    def slots(self) -> int:
        return sum(self.max_depth)

    def width_of(self, base: int, width: float) -> int:
        return make_divisible(base * width, 8)


PN = MBConvSpace(
    name="ofa_pn",
    op_prefix="mbconv2",
    stem=32,
    first_block=16,
    widths=(24, 40, 80, 96, 192, 320),
    strides=(2, 2, 2, 1, 2, 1),
    acts=(nn.ReLU6,) * 6,
    se=(False,) * 6,
    max_depth=(4, 4, 4, 4, 4, 1),
    stem_act=nn.ReLU6,
    first_act=nn.ReLU6,
    head=(1280,),
    head_act=nn.ReLU6,
    default_width=1.3,
)
MBV3 = MBConvSpace(
    name="ofa_mbv3",
    op_prefix="mbconv3",
    stem=16,
    first_block=16,
    widths=(24, 40, 80, 112, 160),
    strides=(2, 2, 2, 1, 2),
    acts=(nn.ReLU, nn.ReLU, nn.Hardswish, nn.Hardswish, nn.Hardswish),
    se=(False, True, False, True, True),
    max_depth=(4, 4, 4, 4, 4),
    stem_act=nn.Hardswish,
    first_act=nn.ReLU,
    head=(960, 1280),
    head_act=nn.Hardswish,
    default_width=1.2,
)
MBCONV_SPACES = {"ofa_pn": PN, "ofa_mbv3": MBV3}

# ResNet-50D: base depths, max extra depth 2, strides, widths per width index 0/1/2.
RN_BASE_DEPTH = (2, 2, 4, 2)
RN_STRIDES = (1, 2, 2, 2)
RN_EXPANDS = (0.2, 0.25, 0.35)
RN_WIDTH_MULTS = (0.65, 0.8, 1.0)
RN_STAGE_BASE = (256, 512, 1024, 2048)
RN_SLOTS = tuple(b + 2 for b in RN_BASE_DEPTH)  # 4, 4, 6, 4 -> 18 e slots


def rn_stem_out(w: int) -> int:
    return make_divisible(64 * RN_WIDTH_MULTS[w], 8)


def rn_stem_mid(w: int) -> int:
    return make_divisible(rn_stem_out(w) // 2, 8)


def rn_stage_width(stage: int, w: int) -> int:
    return make_divisible(RN_STAGE_BASE[stage] * RN_WIDTH_MULTS[w], 8)


# ---------------------------------------------------------------------------- encodings
def _bad(where: str, msg: str) -> LoaderError:
    return LoaderError(f"{where}: {msg}")


def _int(value: Any, where: str, slot: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise _bad(where, f"{slot} = {value!r} is not an integer")
    if float(value) != int(value):
        raise _bad(where, f"{slot} = {value!r} is not an integer")
    return int(value)


def _resolution(value: Any, where: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise _bad(where, f"r = {value!r}: expected one resolution")
        value = value[0]
    r = _int(value, where, "r")
    if r % 4 or not RESOLUTIONS.start <= r < RESOLUTIONS.stop:
        raise _bad(where, f"r = {r}: OFA resolutions are 128-224 in steps of 4")
    return r


def _choice(value: Any, allowed: Sequence, where: str, slot: str) -> Any:
    if isinstance(value, (float, np.floating)) and isinstance(allowed[0], float):
        v = float(value)
        if v in allowed:
            return v
    elif (
        not isinstance(value, (bool, np.bool_))
        and isinstance(value, (int, np.integer))
        and int(value) in allowed
    ):
        return int(value)
    choices = ", ".join(str(a) for a in allowed)
    raise _bad(where, f"{slot} = {value!r}: must be one of {choices}")


def _parse_text(text: str, where: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
        raise _bad(where, f"not a Python literal config ({type(err).__name__}): {text[:120]!r}") from None


def _slot_list(config: Mapping, key: str, n: int, where: str) -> list:
    value = config.get(key)
    if not isinstance(value, (list, tuple)):
        raise _bad(where, f"'{key}' must be a list of {n} values, got {type(value).__name__}")
    if len(value) != n:
        raise _bad(where, f"'{key}' has {len(value)} slots, expected {n}")
    return list(value)


def _mbconv_from_slots(space: MBConvSpace, config: Mapping, width: float, where: str) -> dict:
    d = _slot_list(config, "d", len(space.max_depth), where)
    ks = _slot_list(config, "ks", space.slots, where)
    e = _slot_list(config, "e", space.slots, where)
    if "r" not in config:
        raise _bad(where, "no resolution 'r'")
    r = _resolution(config["r"], where)
    for i, v in enumerate(ks):
        _choice(v, KERNELS, where, f"ks[{i}]")
    for i, v in enumerate(e):
        _choice(v, EXPANDS, where, f"e[{i}]")
    stages, start = [], 0
    for i, (di, dmax) in enumerate(zip(d, space.max_depth)):
        depth = _choice(di, (1,) if dmax == 1 else DEPTHS, where, f"d[{i}]")
        stages.append([[int(ks[start + j]), int(e[start + j])] for j in range(depth)])
        start += dmax
    return {"r": r, "width": width, "stages": stages}


def _mbconv_from_gennape(space: MBConvSpace, res: Any, net: Any, width: float, where: str) -> dict:
    r = _resolution(res, where)
    if not isinstance(net, (list, tuple)) or len(net) != len(space.max_depth):
        raise _bad(where, f"GENNAPE net config must be a list of {len(space.max_depth)} stages")
    stages = []
    for i, (stage, dmax) in enumerate(zip(net, space.max_depth)):
        if not isinstance(stage, (list, tuple)):
            raise _bad(where, f"stage {i} is not a list of ops")
        _choice(len(stage), (1,) if dmax == 1 else DEPTHS, where, f"depth of stage {i}")
        blocks = []
        for j, op in enumerate(stage):
            parts = op.split("_") if isinstance(op, str) else []
            if len(parts) != 3 or parts[0] != space.op_prefix or parts[1][:1] != "e" or parts[2][:1] != "k":
                raise _bad(where, f"stage {i} block {j}: {op!r} is not '{space.op_prefix}_e<E>_k<K>'")
            try:
                e_val, k_val = int(parts[1][1:]), int(parts[2][1:])
            except ValueError:
                raise _bad(
                    where, f"stage {i} block {j}: {op!r} is not '{space.op_prefix}_e<E>_k<K>'"
                ) from None
            blocks.append(
                [_choice(k_val, KERNELS, where, f"kernel of stage {i} block {j}"),
                 _choice(e_val, EXPANDS, where, f"expand of stage {i} block {j}")]
            )  # fmt: skip
        stages.append(blocks)
    return {"r": r, "width": width, "stages": stages}


def _mbconv_from_canonical(space: MBConvSpace, config: Mapping, width: float, where: str) -> dict:
    r = _resolution(config.get("r"), where)
    if "width" in config and float(config["width"]) != width:
        raise _bad(where, f"width {config['width']} differs from the family's width {width}")
    stages = config.get("stages")
    if not isinstance(stages, (list, tuple)) or len(stages) != len(space.max_depth):
        raise _bad(where, f"'stages' must be a list of {len(space.max_depth)} stages")
    net = [[f"{space.op_prefix}_e{b[1]}_k{b[0]}" if isinstance(b, (list, tuple)) and len(b) == 2 else repr(b)
            for b in stage] if isinstance(stage, (list, tuple)) else stage for stage in stages]  # fmt: skip
    return _mbconv_from_gennape(space, r, net, width, where)


def _resnet_from_dict(config: Mapping, r: Any, where: str) -> dict:
    r = _resolution(r, where)
    d = _slot_list(config, "d", 5, where)
    w = _slot_list(config, "w", 6, where)
    e = config.get("e")
    if isinstance(e, (list, tuple)) and len(e) == 4 and all(isinstance(s, (list, tuple)) for s in e):
        e_flat, per_stage = None, [list(s) for s in e]  # canonical: active e per stage
    else:
        e_flat, per_stage = _slot_list(config, "e", sum(RN_SLOTS), where), None
    dd = [_choice(d[0], (0, 2), where, "d[0]")] + [
        _choice(v, (0, 1, 2), where, f"d[{i}]") for i, v in enumerate(d[1:], 1)
    ]
    ww = [_choice(v, (0, 1, 2), where, f"w[{i}]") for i, v in enumerate(w)]
    stages, start = [], 0
    for s, base in enumerate(RN_BASE_DEPTH):
        depth = base + dd[s + 1]
        if per_stage is not None:
            if len(per_stage[s]) != depth:
                raise _bad(where, f"e of stage {s} has {len(per_stage[s])} values, stage depth is {depth}")
            values = per_stage[s]
            names = [f"e[{s}][{j}]" for j in range(depth)]
        else:
            for j in range(RN_SLOTS[s]):
                _choice(e_flat[start + j], RN_EXPANDS, where, f"e[{start + j}]")
            values = e_flat[start : start + depth]
            names = [f"e[{start + j}]" for j in range(depth)]
        stages.append([_choice(v, RN_EXPANDS, where, n) for v, n in zip(values, names)])
        start += RN_SLOTS[s]
    return {"r": r, "d": dd, "e": stages, "w": ww}


def canonical_config(family: str, value: Any, *, width: float | None = None, where: str = "config") -> dict:
    """The canonical config of one ``family`` architecture (``ofa_pn``, ``ofa_mbv3``,
    ``ofa_resnet``) from any supported encoding; :class:`LoaderError` names the bad slot.

    Encodings: OFA/HELP dicts ``{"ks", "e", "d", "r"}`` (PN 21/21/6 slots, MBv3 20/20/5),
    ResNet ``{"d": [5], "e": [18], "w": [6], "r"}``, DyNAS-T dict strings (read with
    ``ast.literal_eval``), GENNAPE's ``(res, net_config)``, and the canonical dict itself
    (``{"r", "width", "stages": [[[k, e], ...], ...]}`` / ``{"r", "d", "e": [[...]...], "w"}``).
    ``width`` is the MobileNet width multiplier (default: the family's GENNAPE width).
    """
    if isinstance(value, str):
        value = _parse_text(value, where)
    if family == "ofa_resnet":
        if isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[1], Mapping):
            return _resnet_from_dict(value[1], value[0], where)
        if isinstance(value, Mapping):
            if "r" not in value:
                raise _bad(where, "no resolution 'r'")
            return _resnet_from_dict(value, value["r"], where)
        raise _bad(
            where, f"expected an OFA ResNet dict {{d, e, w, r}} or (res, dict), got {type(value).__name__}"
        )
    space = MBCONV_SPACES.get(family)
    if space is None:
        raise LoaderError(f"unknown OFA family {family!r}; known: ofa_pn, ofa_mbv3, ofa_resnet")
    w = space.default_width if width is None else float(width)
    if isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[1], (list, tuple)):
        return _mbconv_from_gennape(space, value[0], value[1], w, where)
    if isinstance(value, Mapping):
        if "stages" in value:
            return _mbconv_from_canonical(space, value, w, where)
        wid = value.get("wid")
        if wid is not None:
            raise _bad(where, f"'wid' = {wid!r}: elastic width is not part of this space (use width=)")
        return _mbconv_from_slots(space, value, w, where)
    raise _bad(
        where,
        f"expected an OFA {{ks, e, d, r}} dict, a GENNAPE (res, stages) pair or a dict string, "
        f"got {type(value).__name__}",
    )


def canonical_from_gennape(
    original_config: Any, *, width: float | None = None, where: str = "config"
) -> tuple[str, dict]:
    """GENNAPE's ``original config`` (``(res, net_config)``; PN ops ``mbconv2_*``, MBv3
    ``mbconv3_*``, ResNet a ``{d, e, w}`` dict) -> ``(family, canonical config)``."""
    if isinstance(original_config, str):
        original_config = _parse_text(original_config, where)
    if not isinstance(original_config, (tuple, list)) or len(original_config) != 2:
        raise _bad(where, "GENNAPE's OFA 'original config' is a (resolution, net config) pair")
    net = original_config[1]
    if isinstance(net, Mapping):
        family = "ofa_resnet"
    else:
        first = (
            next((op for stage in net if isinstance(stage, (list, tuple)) for op in stage), None)
            if isinstance(net, (list, tuple))
            else None
        )
        prefix = first.split("_")[0] if isinstance(first, str) else None
        family = {"mbconv2": "ofa_pn", "mbconv3": "ofa_mbv3"}.get(prefix)
        if family is None:
            raise _bad(
                where,
                f"cannot tell the OFA space of a net config starting with {first!r} "
                "(mbconv2_* = PN, mbconv3_* = MBv3)",
            )
    return family, canonical_config(family, original_config, width=width, where=where)


def arch_id(family: str, config: Mapping) -> str:
    """The id of a canonical config: MBConv spaces ``w<width>-r<res>-<k><e>..._...`` (one digit
    pair per active block, stages joined by ``_``); ResNet ``r<res>-d<d>-w<w>-e<idx>..._...``."""
    if family == "ofa_resnet":
        e = "_".join("".join(str(RN_EXPANDS.index(v)) for v in stage) for stage in config["e"])
        return f"r{config['r']}-d{''.join(map(str, config['d']))}-w{''.join(map(str, config['w']))}-e{e}"
    stages = "_".join("".join(f"{k}{e}" for k, e in stage) for stage in config["stages"])
    w = float(config["width"])
    return f"w{w:.1f}-r{config['r']}-{stages}" if round(w, 1) == w else f"w{w:g}-r{config['r']}-{stages}"


def to_ofa_slots(family: str, config: Mapping) -> dict:
    """A canonical config as OFA's slot dict (inactive slots filled with the smallest choice)."""
    if family == "ofa_resnet":
        e = []
        for stage, n in zip(config["e"], RN_SLOTS):
            e += list(stage) + [RN_EXPANDS[0]] * (n - len(stage))
        return {"d": list(config["d"]), "e": e, "w": list(config["w"]), "r": config["r"]}
    space = MBCONV_SPACES[family]
    ks, ex = [], []
    for stage, n in zip(config["stages"], space.max_depth):
        ks += [k for k, _ in stage] + [KERNELS[0]] * (n - len(stage))
        ex += [e for _, e in stage] + [EXPANDS[0]] * (n - len(stage))
    return {"ks": ks, "e": ex, "d": [len(s) for s in config["stages"]], "r": config["r"]}


# ---------------------------------------------------------------------------- PyTorch models
def _se() -> Callable[[int], nn.Module]:
    """OFA's SE: reduce to make_divisible(C / 4), ReLU, expand, h-sigmoid gate."""
    return lambda c: SqueezeExcite(c, make_divisible(c // 4, 8), act=nn.ReLU, gate=nn.Hardsigmoid)


def build_mbconv_network(
    space: MBConvSpace, config: Mapping, *, cache: ModuleCache | None = None
) -> nn.Sequential:
    """The static OFA sub-network of a canonical PN / MBv3 config (eval mode)."""
    w = float(config["width"])
    name = space.name
    stem = space.width_of(space.stem, w)
    first = space.width_of(space.first_block, w)
    layers: list[nn.Module] = [
        cached(
            cache, (name, "stem", stem), lambda: ConvBlock(3, stem, 3, 2, order="cba", act=space.stem_act)
        ),
        cached(
            cache, (name, "first", stem, first), lambda: InvertedResidual(stem, first, 3, act=space.first_act)
        ),
    ]
    c_in = first
    for s, stage in enumerate(config["stages"]):
        c_out = space.width_of(space.widths[s], w)
        for j, (k, e) in enumerate(stage):
            stride = space.strides[s] if j == 0 else 1
            mid = make_divisible(round(c_in * e), 8)
            act, se = space.acts[s], space.se[s]
            key = (name, "mb", c_in, c_out, k, stride, mid, act.__name__, se)
            layers.append(cached(cache, key, _mbconv_factory(c_in, c_out, k, stride, mid, act, se)))
            c_in = c_out
    layers.append(cached(cache, (name, "head", c_in, w), lambda: _mbconv_head(space, c_in, w)))
    network = nn.Sequential(*layers)
    return network.eval() if cache is None else set_eval(network)


def _mbconv_factory(
    c_in: int, c_out: int, k: int, stride: int, mid: int, act: type[nn.Module], se: bool
) -> Callable[[], nn.Module]:
    se_factory = _se() if se else None
    return lambda: InvertedResidual(c_in, c_out, k, stride, mid=mid, act=act, se=se_factory)


def _mbconv_head(space: MBConvSpace, c_in: int, w: float) -> nn.Sequential:
    widths = [space.width_of(c, w) for c in space.head]
    parts: list[nn.Module] = [
        ConvBlock(c_in, widths[0], 1, order="cba", act=space.head_act),
        nn.AdaptiveAvgPool2d(1),
    ]
    if len(widths) > 1:  # MBv3 feature-mix layer: 1x1 conv without BN or bias
        parts += [nn.Conv2d(widths[0], widths[1], 1, bias=False), space.head_act()]
    parts += [nn.Flatten(), nn.Linear(widths[-1], NUM_CLASSES)]
    return nn.Sequential(*parts)


def _bottleneck(c_in: int, c_out: int, stride: int, mid: int) -> nn.Sequential:
    body = nn.Sequential(
        ConvBlock(c_in, mid, 1, order="cba"),
        ConvBlock(mid, mid, 3, stride, order="cba"),
        ConvBlock(mid, c_out, 1, order="cb"),
    )
    if stride == 1 and c_in == c_out:
        shortcut: nn.Module = nn.Identity()
    else:  # ResNet-D shortcut: average pool (k = s, ceil mode), 1x1 conv, BN
        shortcut = nn.Sequential(
            nn.AvgPool2d(stride, stride, 0, ceil_mode=True), ConvBlock(c_in, c_out, 1, order="cb")
        )
    return nn.Sequential(ResidualBlock(body, shortcut), nn.ReLU())


def build_resnet(config: Mapping, *, cache: ModuleCache | None = None) -> nn.Sequential:
    """The static OFA ResNet-50D sub-network of a canonical config (eval mode)."""
    d, w = config["d"], config["w"]
    mid, out = rn_stem_mid(w[0]), rn_stem_out(w[1])
    layers: list[nn.Module] = [
        cached(cache, ("rn", "stem0", mid), lambda: ConvBlock(3, mid, 3, 2, order="cba"))
    ]
    if d[0] == 2:
        residual_conv = lambda: ResidualBlock(ConvBlock(mid, mid, 3, order="cba"), nn.Identity())  # noqa: E731
        layers.append(cached(cache, ("rn", "stem1", mid), residual_conv))
    layers.append(cached(cache, ("rn", "stem2", mid, out), lambda: ConvBlock(mid, out, 3, order="cba")))
    layers.append(cached(cache, ("rn", "maxpool"), lambda: nn.MaxPool2d(3, 2, 1)))
    c_in = out
    for s, stage in enumerate(config["e"]):
        c_out = rn_stage_width(s, w[s + 2])
        for j, e in enumerate(stage):
            stride = RN_STRIDES[s] if j == 0 else 1
            m = make_divisible(round(c_out * e), 8)
            factory = functools.partial(_bottleneck, c_in, c_out, stride, m)
            layers.append(cached(cache, ("rn", "block", c_in, c_out, stride, m), factory))
            c_in = c_out
    layers.append(
        cached(cache, ("rn", "head", c_in),
               lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, NUM_CLASSES)))
    )  # fmt: skip
    network = nn.Sequential(*layers)
    return network.eval() if cache is None else set_eval(network)


def build_network(
    family: str, config: Any, *, width: float | None = None, cache: ModuleCache | None = None
) -> nn.Sequential:
    """The network of any encoding of a ``family`` architecture."""
    canonical = canonical_config(family, config, width=width)
    if family == "ofa_resnet":
        return build_resnet(canonical, cache=cache)
    return build_mbconv_network(MBCONV_SPACES[family], canonical, cache=cache)


# ---------------------------------------------------------------------------- sampler
def sample_configs(family: str, n: int, seed: int = 0, *, width: float | None = None) -> list[dict]:
    """``n`` distinct canonical configs drawn by :data:`SAMPLER_VERSION` (numpy PCG64 seeded by
    ``seed``: the same list on every machine).

    PN / MBv3 (the authors' sampler): resolution uniform over 192/208/224; per stage, depth
    uniform over {2, 3, 4} (PN's last stage: 1); per block, op uniform over the 9 (e, k) pairs.
    ResNet (OFA ``sample_active_subnet``): 18 expand ratios, d[0] in {2, 0}, stage d in
    {0, 1, 2}, 6 width indices, then the resolution; inactive slots are drawn and dropped.
    """
    if n < 1:
        raise LoaderError(f"sample={n}: need at least 1 architecture")
    rng = np.random.Generator(np.random.PCG64(seed))
    seen: dict[str, dict] = {}
    ops = [(k, e) for e in EXPANDS for k in KERNELS]
    space = MBCONV_SPACES.get(family)
    tries = 0
    while len(seen) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise LoaderError(f"{family}: could not draw {n} distinct architectures")
        if space is None:
            e = [RN_EXPANDS[i] for i in rng.integers(0, 3, sum(RN_SLOTS))]
            d = [(2, 0)[int(rng.integers(0, 2))]] + [int(v) for v in rng.integers(0, 3, 4)]
            w = [int(v) for v in rng.integers(0, 3, 6)]
            r = SAMPLE_RESOLUTIONS[int(rng.integers(0, 3))]
            config = _resnet_from_dict({"d": d, "e": e, "w": w}, r, "sampler")
        else:
            r = SAMPLE_RESOLUTIONS[int(rng.integers(0, 3))]
            stages = []
            for dmax in space.max_depth:
                depth = 1 if dmax == 1 else DEPTHS[int(rng.integers(0, 3))]
                stages.append([list(ops[int(i)]) for i in rng.integers(0, 9, depth)])
            w_ = space.default_width if width is None else float(width)
            config = {"r": r, "width": w_, "stages": stages}
        seen.setdefault(arch_id(family, config), config)
    return list(seen.values())


# ---------------------------------------------------------------------------- upstream data
DYNAST_FILES = tuple(
    f"ofa_mbv3/mbnv3w10_{n}.csv"
    for n in ("evoga_acc", "evonsga2_acc_macs", "linasga_acc", "linasnsga2_acc_macs")
)
HELP_GPUS = ("2080ti", "titan_rtx", "titan_xp", "v100")
HELP_BATCHES = (1, 32, 64)
HELP_ARCHS = "ofa_mbv3/help_latency/ofa_archs.pt"
HELP_FILES = {(g, b): f"ofa_mbv3/help_latency/{g}_{b}.pt" for g in HELP_GPUS for b in HELP_BATCHES}
DYNAST_COLUMNS = ("Sub-network", "Model Parameters", "MACs", "Top-1 Acc (%)")


@dataclass
class DynastArch:
    config: dict
    params: int
    macs: int
    top1: list[float]
    files: list[str]


def read_dynast(paths: Sequence[Path]) -> dict[str, DynastArch]:
    """DyNAS-T's MBv3 w1.0 CSVs -> ``{arch_id: DynastArch}`` (rows of one arch merged)."""
    out: dict[str, DynastArch] = {}
    for path in paths:
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                missing = [c for c in DYNAST_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise LoaderError(f"{path}: missing column(s) {missing}; is this a DyNAS-T results CSV?")
                rows = list(enumerate(reader, start=2))
        except (UnicodeDecodeError, csv.Error, OSError) as err:
            raise LoaderError(f"{path}: not a readable CSV ({err}); re-download it") from None
        for row_no, row in rows:
            where = f"{path}, row {row_no}"
            if None in row or any(row.get(c) in (None, "") for c in DYNAST_COLUMNS):
                raise LoaderError(
                    f"{where}: incomplete row (truncated file?); "
                    "re-download it with `cgbench download ofa_mbv3`"
                )
            config = canonical_config("ofa_mbv3", row["Sub-network"], width=1.0, where=where)
            try:
                params, macs = int(row["Model Parameters"]), int(row["MACs"])
                top1 = float(row["Top-1 Acc (%)"])
            except ValueError as err:
                raise LoaderError(f"{where}: {err}") from None
            if not math.isfinite(top1):
                raise LoaderError(f"{where}: top-1 {top1} is not finite")
            key = arch_id("ofa_mbv3", config)
            entry = out.get(key)
            if entry is None:
                out[key] = DynastArch(config, params, macs, [top1], [path.stem])
                continue
            if (entry.params, entry.macs) != (params, macs):
                raise LoaderError(
                    f"{where}: arch {key} has params/MACs {params}/{macs} but {entry.params}/{entry.macs} "
                    f"in {entry.files[0]}; the files disagree"
                )
            entry.top1.append(top1)
            entry.files.append(path.stem)
    return out


def _help_globals() -> dict[tuple[str, str], Any]:
    from cgbench.loaders.gennape import _numpy_globals

    return {**_numpy_globals(), ("_codecs", "encode"): codecs.encode}


def read_torch_pickle(path: Path) -> Any:
    """A torch zip file holding only pickled plain data (lists, dicts, numbers, NumPy scalars),
    read through the project's restricted unpickler: no other global, no tensor storage."""
    from cgbench.loaders.gennape import PickleRefused, RestrictedUnpickler

    class PlainDataUnpickler(RestrictedUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) not in self.allowed:
                raise PickleRefused(
                    f"{self.source}: refusing to unpickle {module}.{name}: HELP's files hold only "
                    "plain lists/dicts/numbers and NumPy scalars; the file is not HELP's (or was "
                    "tampered with); do not load it with plain pickle or torch.load(weights_only=False)"
                )
            return self.allowed[(module, name)]

    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                raise LoaderError(f"{path}: expected one data.pkl in the torch archive, found {len(names)}")
            data = zf.read(names[0])
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise LoaderError(f"{path}: corrupt or truncated torch file ({err}); re-download it") from None
    try:
        return PlainDataUnpickler(io.BytesIO(data), _help_globals(), str(path)).load()
    except LoaderError:
        raise
    except Exception as err:  # noqa: BLE001 - any unpickling failure of an untrusted file
        raise LoaderError(f"{path}: not a plain-data torch file ({type(err).__name__}: {err})") from None


def read_help(
    archs_path: Path, latency_paths: Mapping[tuple[str, int], Path]
) -> list[tuple[str, dict, dict[str, float]]]:
    """HELP's OFA-MBv3 configs and latencies -> ``[(arch_id, config, {lat_<gpu>_<batch>: ms})]``
    in file order (one entry per config of ``ofa_archs.pt``)."""
    data = read_torch_pickle(archs_path)
    archs = data.get("arch") if isinstance(data, dict) else None
    if not isinstance(archs, list):
        raise LoaderError(f"{archs_path}: expected a dict with an 'arch' list (HELP ofa_archs.pt)")
    configs = [
        canonical_config("ofa_mbv3", a, width=1.0, where=f"{archs_path}, arch {i}")
        for i, a in enumerate(archs)
    ]
    lat: dict[str, list[float]] = {}
    for (gpu, batch), path in latency_paths.items():
        values = read_torch_pickle(path)
        if not isinstance(values, list) or len(values) != len(configs):
            n = len(values) if isinstance(values, list) else type(values).__name__
            raise LoaderError(f"{path}: expected a list of {len(configs)} latencies, got {n}")
        col = []
        for i, v in enumerate(values):
            if (
                isinstance(v, (bool, np.bool_))
                or not isinstance(v, (int, float, np.integer, np.floating))
                or not math.isfinite(float(v))
            ):
                raise LoaderError(f"{path}, entry {i}: {v!r} is not a finite latency")
            col.append(float(v))
        lat[f"lat_{gpu}_{batch}"] = col
    return [(arch_id("ofa_mbv3", c), c, {k: v[i] for k, v in lat.items()}) for i, c in enumerate(configs)]


def read_gennape_ofa_cache(
    path: str | Path, family: str, *, width: float | None = None
) -> Iterator[ArchRecord]:
    """Records of ``family`` from GENNAPE's ``gpi_ofa_comp_graph_cache.pkl`` (PN and MBv3,
    told apart by op names) or ``gpi_ofa_resnet_comp_graph_cache.pkl``, read through the
    restricted unpickler. Labels: ``acc_gennape`` (``accuracy`` too, as a fraction),
    ``flops_gennape``, ``params_gennape`` as stored; the network is rebuilt from the config."""
    from cgbench.loaders.gennape import load_pickle

    data = load_pickle(path)
    if not isinstance(data, list):
        raise LoaderError(f"{path}: expected a list of dicts (GENNAPE cache), got {type(data).__name__}")
    for i, item in enumerate(data):
        where = f"{path}, entry {i}"
        if not isinstance(item, dict) or "original config" not in item:
            raise LoaderError(f"{where}: expected a dict with an 'original config' key")
        fam, config = canonical_from_gennape(item["original config"], width=width, where=where)
        if fam != family:
            continue
        acc = _number(item.get("acc"), where, "acc")
        labels = {
            "acc_gennape": acc,
            "accuracy": None if acc is None else (acc / 100.0 if acc > 1.0 else acc),
            "flops_gennape": _number(item.get("flops"), where, "flops"),
            "params_gennape": _number(item.get("n_params"), where, "n_params"),
        }
        yield ArchRecord(
            arch_id(fam, config), config, labels, {"gennape_index": i}, (3, config["r"], config["r"])
        )


def _number(value: Any, where: str, key: str) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise LoaderError(f"{where}: '{key}' = {value!r} is not a number") from None
    return out if math.isfinite(out) else None


# ---------------------------------------------------------------------------- families
class _OFAFamily(Family):
    """Shared behaviour of the three OFA families."""

    dataset = "imagenet"
    input_shape = (3, 224, 224)
    width: float | None = None

    def _sampled(self, limit: int | None) -> Iterator[ArchRecord]:
        n = self.sample if limit is None else min(self.sample, limit)
        for config in sample_configs(self.name, n, self.seed, width=self.width):
            yield ArchRecord(
                arch_id(self.name, config), config, {"accuracy": None},
                {"sampler": f"{SAMPLER_VERSION}/seed={self.seed}"}, (3, config["r"], config["r"]),
            )  # fmt: skip

    def build_model(self, config: Any, *, cache: ModuleCache | None = None) -> nn.Module:
        return build_network(self.name, config, width=self.width, cache=cache)


_SAMPLE_TAGS = {
    "sampler": ("string", f"sampler version and seed ({SAMPLER_VERSION}) of sampled sets"),
    "gennape_index": ("int64", "entry of GENNAPE's OFA cache (gennape_cache= builds)"),
}
_GENNAPE_LABELS = {
    "acc_gennape": "GENNAPE cache `acc`, as stored",
    "flops_gennape": "GENNAPE cache `flops`, as stored (GENNAPE's units)",
    "params_gennape": "GENNAPE cache `n_params`, as stored (GENNAPE's units)",
}


class _SampledFamily(_OFAFamily):
    def __init__(self, sample: int, seed: int, gennape_cache: str | Path | None, width: float | None) -> None:
        self.sample = int(sample)
        self.seed = int(seed)
        self.width = width
        self.gennape_cache = Path(gennape_cache) if gennape_cache is not None else None
        self.expected_rows = None if self.gennape_cache else self.sample

    def iter_records(self, paths: Mapping[str, Path], *, limit: int | None = None) -> Iterator[ArchRecord]:
        if self.gennape_cache is not None:
            records = read_gennape_ofa_cache(self.gennape_cache, self.name, width=self.width)
            for i, rec in enumerate(records):
                if limit is not None and i >= limit:
                    return
                yield rec
            return
        yield from self._sampled(limit)


class OFAPN(_SampledFamily):
    """OFA ProxylessNAS (ImageNet), GENNAPE's ``PN`` family: an unlabelled seeded sample.

    Options: ``width: float = 1.3`` (width multiplier); ``sample: int = 8200`` (GENNAPE's size)
    and ``seed: int = 0`` (the sampler, :data:`SAMPLER_VERSION`); ``gennape_cache: Path | None``
    (GENNAPE's ``gpi_ofa_comp_graph_cache.pkl``: its PN entries and labels instead of a sample).
    """

    name = "ofa_pn"
    label_columns = _GENNAPE_LABELS
    tag_columns = _SAMPLE_TAGS

    def __init__(
        self, width: float = 1.3, sample: int = 8200, seed: int = 0, gennape_cache: str | Path | None = None
    ) -> None:
        super().__init__(sample, seed, gennape_cache, float(width))


class OFAResNet(_SampledFamily):
    """OFA ResNet-50D (ImageNet), GENNAPE's ``OFA-RN`` family: an unlabelled seeded sample.

    Options: ``sample: int = 10000`` and ``seed: int = 0`` (the sampler,
    :data:`SAMPLER_VERSION`); ``gennape_cache: Path | None`` (GENNAPE's
    ``gpi_ofa_resnet_comp_graph_cache.pkl``: its entries and labels instead of a sample).
    """

    name = "ofa_resnet"
    label_columns = _GENNAPE_LABELS
    tag_columns = _SAMPLE_TAGS

    def __init__(self, sample: int = 10000, seed: int = 0, gennape_cache: str | Path | None = None) -> None:
        super().__init__(sample, seed, gennape_cache, None)


class OFAMBv3(_OFAFamily):
    """OFA MobileNetV3 (ImageNet). By default the labelled w1.0 set: DyNAS-T's 1,719 archs
    (supernet top-1 = ``accuracy``, params, MACs) joined with HELP's 5,000 configs (12 GPU
    latency columns) by canonical config; NaN where a source has no value.

    Options: ``width: float | None`` (default 1.0 for the labelled set, 1.2 = GENNAPE's for
    samples; the labelled set needs 1.0); ``sample: int | None`` (e.g. 7500: an unlabelled
    GENNAPE-sized sample instead) and ``seed: int = 0``; ``gennape_cache: Path | None``
    (GENNAPE's ``gpi_ofa_comp_graph_cache.pkl``: its MBv3 entries and labels).
    """

    name = "ofa_mbv3"
    expected_rows = None
    sources = (*DYNAST_FILES, HELP_ARCHS, *HELP_FILES.values())
    label_columns = {
        "supernet_acc_spread": "max - min supernet top-1 (fraction) over the DyNAS-T rows of the arch",
        "params_dynast": "DyNAS-T `Model Parameters`",
        "macs_dynast": "DyNAS-T `MACs` (torchprofile, 1x3x224x224)",
        **{
            f"lat_{g}_{b}": f"HELP latency on {g} at batch size {b} (ms)"
            for g in HELP_GPUS
            for b in HELP_BATCHES
        },
        **_GENNAPE_LABELS,
    }
    tag_columns = {
        "in_dynast": ("bool", "the arch has DyNAS-T labels (supernet top-1, params, MACs)"),
        "in_help": ("bool", "the arch has HELP latencies"),
        "dynast_rows": ("int64", "number of DyNAS-T rows merged into the arch"),
        "dynast_files": ("string", "DyNAS-T files the arch appears in (comma-separated)"),
        "help_index": ("int64", "first index of the arch in HELP's ofa_archs.pt"),
        "help_count": ("int64", "HELP configs that map to the arch (latencies averaged)"),
        **_SAMPLE_TAGS,
    }

    def __init__(
        self,
        width: float | None = None,
        sample: int | None = None,
        seed: int = 0,
        gennape_cache: str | Path | None = None,
    ) -> None:
        self.sample = None if sample is None else int(sample)
        self.seed = int(seed)
        self.gennape_cache = Path(gennape_cache) if gennape_cache is not None else None
        labelled = self.sample is None and self.gennape_cache is None
        if labelled and width is not None and float(width) != 1.0:
            raise LoaderError(
                f"ofa_mbv3: the labelled DyNAS-T/HELP set is width 1.0, got width={width}; "
                "use --opt sample=N for a sample at another width"
            )
        self.width = float(width) if width is not None else (1.0 if labelled else MBV3.default_width)
        if not labelled:
            self.sources = ()
            self.expected_rows = self.sample

    def iter_records(self, paths: Mapping[str, Path], *, limit: int | None = None) -> Iterator[ArchRecord]:
        if self.gennape_cache is not None:
            for i, rec in enumerate(read_gennape_ofa_cache(self.gennape_cache, self.name, width=self.width)):
                if limit is not None and i >= limit:
                    return
                yield rec
            return
        if self.sample is not None:
            yield from self._sampled(limit)
            return
        yield from itertools.islice(self._labelled(paths), limit)

    def _labelled(self, paths: Mapping[str, Path]) -> Iterator[ArchRecord]:
        dynast = read_dynast([paths[k] for k in DYNAST_FILES])
        help_rows = read_help(paths[HELP_ARCHS], {k: paths[v] for k, v in HELP_FILES.items()})
        help_by: dict[str, tuple[int, dict, list[dict[str, float]]]] = {}
        for i, (key, config, lat) in enumerate(help_rows):
            help_by.setdefault(key, (i, config, []))[2].append(lat)
        for key in sorted(set(dynast) | set(help_by)):
            labels: dict[str, float | None] = {}
            tags: dict[str, Any] = {"in_dynast": key in dynast, "in_help": key in help_by}
            if key in dynast:
                d = dynast[key]
                config = d.config
                labels["accuracy"] = float(np.mean(d.top1)) / 100.0
                labels["supernet_acc_spread"] = (max(d.top1) - min(d.top1)) / 100.0
                labels["params_dynast"] = float(d.params)
                labels["macs_dynast"] = float(d.macs)
                tags["dynast_rows"] = len(d.top1)
                tags["dynast_files"] = ",".join(sorted(set(d.files)))
            if key in help_by:
                index, config, lats = help_by[key]
                for col in lats[0]:
                    labels[col] = float(np.mean([x[col] for x in lats]))
                tags["help_index"] = index
                tags["help_count"] = len(lats)
            yield ArchRecord(key, config, labels, tags, (3, config["r"], config["r"]))
