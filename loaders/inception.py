"""Inception (GENNAPE): 4 stages of repeated multi-path blocks, CIFAR-10.

Definition (``docs/gennape_families.md``; GENNAPE ``model_src/search_space/inception/``
``network_tf.py``, ``block_tf.py``, ``operations_tf.py``, ``arch_utils.py``), as traced from
TensorFlow: stem conv 3x3 (bias)-BN-ReLU6 to 32; 4 stages of ``n_blocks`` copies of one block
config (block 0 takes the stage's stride and width change; 32/64/128/256 at 32/16/8/4); head
conv 3x3 (bias) to 512-BN-ReLU6, global average pool, dropout (identity), linear 512->10. Every
conv has a bias and BN, except the depthwise op's input projection (neither).

A block runs 1-4 paths on its input and concatenates them; a 1x1 conv-BN ``C_proj`` maps the
concat to the block width when the paths' widths do not sum to it; the input is added when
stride 1 and the width is kept. In a path, the first C-change-capable op (a conv op,
``conv1x1``, ``double1x1``) maps to ``C_internal``, the first conv op takes the stride, the last
C-change-capable op maps to ``C_out`` (GENNAPE ``block_tf.py:27-79``). Ops: ``convKxK``;
``depthwiseKxK`` = [1x1 projection if the width changes] -> depthwise conv-BN-ReLU6;
``inception_sK`` = 1xK conv stride (1, s) then Kx1 conv stride (s, 1), each -BN-ReLU6;
``inception_pK`` = two branches (1xK | Kx1, each conv-BN; for stride 2 each branch has the
other conv too), concatenated, one ReLU6; ``double1x1``; ``avgpool3x3`` / ``maxpool3x3`` + BN.

Config: GENNAPE's ``NetConfig.state_dict()`` JSON ``{"stages": [{"block": {"paths": [{"ops",
"op_types", "C_internal", "C_out"}]}, "n_blocks", "C_in", "C_out", "stride"}]}`` (GENNAPE's
``load_state_dict`` cannot read it back; :func:`canonical_config` can). Arch set: a seeded
sample of 580 nets (:data:`SAMPLER_VERSION`) with the op limits that match GENNAPE's released
graphs (see :data:`MAX_BLOCK_OPS`); labels only from GENNAPE's release.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

from cgbench.loaders.base import LoaderError, ModuleCache, Segment, cached
from cgbench.loaders.blocks import (
    GlobalAvgPool,
    ParallelConcat,
    PlanNetwork,
    set_eval,
    tf_conv,
    tf_inception_s,
    tf_pool_bn,
)
from cgbench.loaders.gennape_release import TAG_COLUMNS, SampledGennapeFamily, distinct_samples

CONV_OPS = (
    "conv3x3", "inception_s3x3", "inception_p3x3", "depthwise3x3", "conv5x5", "depthwise5x5",
    "inception_s5x5", "inception_p5x5",
)  # fmt: skip
SUPP_OPS = ("conv1x1", "avgpool3x3", "maxpool3x3", "double1x1")
C_CHANGE_SUPP = ("conv1x1", "double1x1")
NUM_STAGES = 4
REDUCTION_STAGES = (1, 2, 3)
STEM_CHANNELS = 32
HEAD_CHANNELS = 512
NUM_CLASSES = 10
MIN_CHANNELS = 16
MIN_BLOCKS, MAX_BLOCKS = 2, 6
# GENNAPE's constants.py:27-38 say {1: 3, 2: 4, 3: 8, 4: 10} with >= 2 ops per path for 3 and 4
# paths, but its released graph InceptionNet226 has a 4-path block of 15 ops and 1-op paths in
# 3/4-path blocks: the labelled set used the commented-out limits (constants.py:21-26).
MAX_BLOCK_OPS = {1: 4, 2: 8, 3: 12, 4: 16}
MIN_PATH_OPS = 1
C_CHANGE_PROBS = (("reduce2", 0.3), ("no_change", 0.6), ("expand2", 0.1))
SAMPLER_VERSION = "inception-sampler/1"
DEFAULT_SAMPLE = 580


def _int(value: Any, where: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LoaderError(f"{where}: `{what}` must be a positive integer, got {value!r}")
    return value


def _boundaries(ops: list[str], types: list[str]) -> tuple[int, int, int]:
    cc = [i for i, (o, t) in enumerate(zip(ops, types)) if t == "conv" or o in C_CHANGE_SUPP]
    return cc[0], types.index("conv"), cc[-1]


def path_channels(
    ops: list[str], types: list[str], ci: int, c_int: int, co: int, s: int
) -> list[tuple[int, int, int]]:
    """``(C_in, C_out, stride)`` of each op of a path (GENNAPE ``block_tf.py:27-79``)."""
    fcc, fconv, lcc = _boundaries(ops, types)
    c, out = ci, []
    for i in range(len(ops)):
        if i == fcc == fconv:
            out.append((c, c_int, s))
            c = c_int
        elif i == fconv == lcc:
            out.append((c, co, s))
            c = co
        elif i == fcc:
            out.append((c, c_int, 1))
            c = c_int
        elif i == fconv:
            out.append((c, c, s))
        elif i == lcc:
            out.append((c, co, 1))
            c = co
        else:
            out.append((c, c, 1))
    if c != co:
        raise ValueError(f"path {ops} ends at width {c}, not its C_out {co}")
    return out


def _path(value: Any, where: str) -> dict:
    if not isinstance(value, Mapping) or not all(
        k in value for k in ("ops", "op_types", "C_internal", "C_out")
    ):
        raise LoaderError(
            f"{where}: an Inception path is {{'ops', 'op_types', 'C_internal', 'C_out'}}, got {value!r}"
        )
    ops, types = list(value["ops"]), list(value["op_types"])
    if not ops or len(ops) != len(types):
        raise LoaderError(f"{where}: ops and op_types must be non-empty and of equal length")
    for o, t in zip(ops, types):
        kind = "conv" if o in CONV_OPS else "supp" if o in SUPP_OPS else None
        if kind is None:
            raise LoaderError(
                f"{where}: unknown Inception op {o!r};"
                f" conv ops: {', '.join(CONV_OPS)}; supp ops: {', '.join(SUPP_OPS)}"
            )
        if t != kind:
            raise LoaderError(f"{where}: op {o!r} has op_type {t!r}, expected {kind!r}")
    if "conv" not in types:
        raise LoaderError(f"{where}: an Inception path needs at least one conv op, got {ops}")
    path = {"ops": ops, "op_types": types, "C_internal": _int(value["C_internal"], where, "C_internal"),
            "C_out": _int(value["C_out"], where, "C_out")}  # fmt: skip
    fcc, _, lcc = _boundaries(ops, types)
    if fcc == lcc and path["C_internal"] != path["C_out"]:
        raise LoaderError(
            f"{where}: C_internal {path['C_internal']} != C_out {path['C_out']} needs two C-change ops"
        )
    return path


def canonical_config(value: Any, *, where: str = "config") -> dict:
    """GENNAPE's ``NetConfig.state_dict()`` JSON (or the object) -> the canonical config."""
    if not isinstance(value, Mapping) and hasattr(value, "stages"):
        value = {"stages": value.stages}
    stages = value.get("stages") if isinstance(value, Mapping) else None
    if not isinstance(stages, (list, tuple)):
        raise LoaderError(f"{where}: an Inception config is {{'stages': [4 stage objects]}}, got {value!r}")
    if len(stages) != NUM_STAGES:
        raise LoaderError(f"{where}: an Inception config has {NUM_STAGES} stages, got {len(stages)}")
    out, c = [], STEM_CHANNELS
    for si, st in enumerate(stages):
        w = f"{where}, stage {si}"
        if not isinstance(st, Mapping):
            raise LoaderError(f"{w}: expected an object with block, n_blocks, C_in, C_out, stride")
        block = st.get("block")
        if hasattr(block, "state_dict"):
            block = block.state_dict()
        paths = block.get("paths") if isinstance(block, Mapping) else None
        if not isinstance(paths, (list, tuple)) or not 1 <= len(paths) <= 4:
            raise LoaderError(f"{w}: `block` must be {{'paths': [1-4 paths]}}, got {block!r}")
        stride = st.get("stride")
        if stride not in (1, 2):
            raise LoaderError(f"{w}: `stride` must be 1 or 2, got {stride!r}")
        ci, co = _int(st.get("C_in"), w, "C_in"), _int(st.get("C_out"), w, "C_out")
        if ci != c:
            raise LoaderError(f"{w}: C_in {ci} does not continue the previous width {c}")
        stage = {
            "block": {"paths": [_path(p, f"{w}, path {pi}") for pi, p in enumerate(paths)]},
            "n_blocks": _int(st.get("n_blocks"), w, "n_blocks"),
            "C_in": ci, "C_out": co, "stride": stride,
        }  # fmt: skip
        for ci_b, s_b in ((ci, stride), (co, 1)):
            for pi, p in enumerate(stage["block"]["paths"]):
                try:
                    path_channels(p["ops"], p["op_types"], ci_b, p["C_internal"], p["C_out"], s_b)
                except ValueError as err:
                    raise LoaderError(f"{w}, path {pi}: {err}") from None
        out.append(stage)
        c = co
    return {"stages": out}


def arch_id(config: Mapping) -> str:
    """``inc-`` + 16 hex digits of BLAKE2b over the canonical config's sorted JSON."""
    return _id_of(canonical_config(config))


def _id_of(canonical: Mapping) -> str:
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return "inc-" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# ----------------------------------------------------------------------------- network
def build_op(name: str, ci: int, co: int, s: int) -> nn.Module:
    """One Inception op (TF semantics: every conv has a bias and BN)."""
    if name.startswith("conv"):
        return tf_conv(ci, co, int(name[-1]), s, bias=True, act=nn.ReLU6)
    if name.startswith("depthwise"):
        k = int(name[-1])
        proj = [tf_conv(ci, co, 1, 1, bn=False)] if ci != co else []
        return nn.Sequential(*proj, tf_conv(co, co, k, s, bias=True, act=nn.ReLU6, depthwise=True))
    if name.startswith("inception_s"):
        return tf_inception_s(ci, co, int(name[-1]), s, split_stride=True, bias=True)
    if name.startswith("inception_p"):
        k, c1 = int(name[-1]), co // 2
        if s == 1:
            b1, b2 = tf_conv(ci, c1, (1, k), 1, bias=True), tf_conv(ci, co - c1, (k, 1), 1, bias=True)
        else:
            b1 = nn.Sequential(
                tf_conv(ci, c1, (1, k), (1, s), bias=True), tf_conv(c1, c1, (k, 1), (s, 1), bias=True)
            )
            c2 = co - c1
            b2 = nn.Sequential(
                tf_conv(ci, c2, (k, 1), (s, 1), bias=True), tf_conv(c2, c2, (1, k), (1, s), bias=True)
            )
        return ParallelConcat([b1, b2], nn.ReLU6())
    if name == "double1x1":
        return nn.Sequential(
            tf_conv(ci, co, 1, 1, bias=True, act=nn.ReLU6), tf_conv(co, co, 1, s, bias=True, act=nn.ReLU6)
        )
    if name in ("avgpool3x3", "maxpool3x3"):
        if s != 1:
            raise LoaderError(f"Inception pooling op {name} cannot take stride {s}")
        return tf_pool_bn(name[:3], ci)
    raise LoaderError(f"unknown Inception op {name!r}")


class InceptionBlock(nn.Module):
    """Parallel paths -> concat -> [1x1 C_proj conv-BN] -> [+ input]."""

    def __init__(self, block: Mapping, ci: int, co: int, s: int) -> None:
        super().__init__()
        paths = []
        for p in block["paths"]:
            chans = path_channels(p["ops"], p["op_types"], ci, p["C_internal"], p["C_out"], s)
            paths.append(nn.Sequential(*(build_op(o, a, b, st) for o, (a, b, st) in zip(p["ops"], chans))))
        total = sum(p["C_out"] for p in block["paths"])
        proj = tf_conv(total, co, 1, 1, bias=True) if total != co else None
        self.body = ParallelConcat(paths, proj)
        self.residual = s == 1 and ci == co

    def forward(self, x):  # noqa: D102 - nn.Module
        out = self.body(x)
        return out + x if self.residual else out


def _plan_network(plan: list[Segment], cache: ModuleCache | None) -> nn.Module:
    net = PlanNetwork(plan)
    return net.eval() if cache is None else set_eval(net)


def _stem() -> nn.Module:
    return tf_conv(3, STEM_CHANNELS, 3, 1, bias=True, act=nn.ReLU6)


def _head(c: int) -> nn.Module:
    return nn.Sequential(
        tf_conv(c, HEAD_CHANNELS, 3, 1, bias=True, act=nn.ReLU6),
        GlobalAvgPool(),
        nn.Dropout(0.0),
        nn.Linear(HEAD_CHANNELS, NUM_CLASSES),
    )


def _seg(cache: ModuleCache | None, key: tuple, make, inputs: tuple[int, ...]) -> Segment:
    return Segment(key, lambda: cached(cache, key, make), inputs)


def block_plan(config: Any, *, cache: ModuleCache | None = None) -> list[Segment]:
    """Stem; every block as one :class:`InceptionBlock` segment; head (the reference network)."""
    cfg = canonical_config(config)
    plan = [_seg(cache, ("inc_stem",), _stem, (-1,))]
    for st in cfg["stages"]:
        text = json.dumps(st["block"], sort_keys=True)
        for b in range(st["n_blocks"]):
            ci, s = (st["C_in"], st["stride"]) if b == 0 else (st["C_out"], 1)
            key = ("inc_block", text, ci, st["C_out"], s)
            plan.append(
                _seg(cache, key, lambda k=key: InceptionBlock(json.loads(k[1]), *k[2:]), (len(plan) - 1,))
            )
    c = cfg["stages"][-1]["C_out"]
    plan.append(_seg(cache, ("inc_head", c), lambda: _head(c), (len(plan) - 1,)))
    return plan


def build_plan(config: Any, *, cache: ModuleCache | None = None) -> list[Segment]:
    """The network at op granularity, for fast CG composition: every op of every path is a
    segment keyed by (op, C_in, C_out, stride), joined by concat / C_proj / residual add as
    :class:`InceptionBlock` does; the composed CG equals the trace of :func:`block_plan`."""
    cfg = canonical_config(config)
    plan = [_seg(cache, ("inc_stem",), _stem, (-1,))]
    for st in cfg["stages"]:
        co = st["C_out"]
        for b in range(st["n_blocks"]):
            ci, s = (st["C_in"], st["stride"]) if b == 0 else (co, 1)
            block_in, ends = len(plan) - 1, []
            for p in st["block"]["paths"]:
                prev = block_in
                chans = path_channels(p["ops"], p["op_types"], ci, p["C_internal"], p["C_out"], s)
                for op, (a, o, st_) in zip(p["ops"], chans):
                    key = ("inc_op", op, a, o, st_)
                    plan.append(_seg(cache, key, lambda k=key: build_op(*k[1:]), (prev,)))
                    prev = len(plan) - 1
                ends.append(prev)
            if len(ends) > 1:
                plan.append(Segment(("inc_concat",), None, tuple(ends), join="concat"))
            total = sum(p["C_out"] for p in st["block"]["paths"])
            if total != co:
                key = ("inc_proj", total, co)
                plan.append(
                    _seg(cache, key, lambda k=key: tf_conv(k[1], k[2], 1, 1, bias=True), (len(plan) - 1,))
                )
            if s == 1 and ci == co:
                plan.append(Segment(("inc_add",), None, (len(plan) - 1, block_in), join="add"))
    c = cfg["stages"][-1]["C_out"]
    plan.append(_seg(cache, ("inc_head", c), lambda: _head(c), (len(plan) - 1,)))
    return plan


# ----------------------------------------------------------------------------- sampler
def _choice(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _sample_path(rng: np.random.Generator, n_ops: int, c_ext: int) -> dict:
    ops = [(_choice(rng, CONV_OPS), "conv")]
    p_supp = len(SUPP_OPS) / (len(CONV_OPS) + len(SUPP_OPS))
    supp_added = False
    for _ in range(n_ops - 1):
        if rng.random() < p_supp and not supp_added:
            ops.append((_choice(rng, SUPP_OPS), "supp"))
            supp_added = True
        else:
            ops.append((_choice(rng, CONV_OPS), "conv"))
    order = rng.permutation(len(ops))
    names, types = [ops[i][0] for i in order], [ops[i][1] for i in order]
    fcc, _, lcc = _boundaries(names, types)
    c_int = c_ext
    if fcc != lcc:
        change = C_CHANGE_PROBS[int(rng.choice(len(C_CHANGE_PROBS), p=[p for _, p in C_CHANGE_PROBS]))][0]
        c_int = {"reduce2": c_ext // 2, "no_change": c_ext, "expand2": c_ext * 2}[change]
    return {"ops": names, "op_types": types, "C_internal": max(c_int, MIN_CHANNELS), "C_out": c_ext}


def _sample_block(rng: np.random.Generator, c_block: int) -> dict:
    n_paths = int(rng.integers(1, 5))
    if n_paths == 3:
        c = c_block // 4
        widths = [2 * c, c, c + c_block - 4 * c]
    else:
        c = c_block // n_paths
        widths = [c] * n_paths
        widths[-1] += c_block - c * n_paths
    widths = [widths[i] for i in rng.permutation(n_paths)]
    paths, used = [], 0
    for pi in range(n_paths):
        budget = MAX_BLOCK_OPS[n_paths] - used - MIN_PATH_OPS * (n_paths - pi - 1)
        n_ops = int(rng.integers(MIN_PATH_OPS, budget + 1))
        paths.append(_sample_path(rng, n_ops, max(widths[pi], MIN_CHANNELS)))
        used += n_ops
    return {"paths": paths}


def sample_config(rng: np.random.Generator) -> dict:
    """One config with GENNAPE's rules (``arch_sampler.py:16-163``) and :data:`MAX_BLOCK_OPS`."""
    stages, c = [], STEM_CHANNELS
    for si in range(NUM_STAGES):
        n_blocks = int(rng.integers(MIN_BLOCKS, MAX_BLOCKS + 1))
        co, s = (2 * c, 2) if si in REDUCTION_STAGES else (c, 1)
        stages.append(
            {"block": _sample_block(rng, co), "n_blocks": n_blocks, "C_in": c, "C_out": co, "stride": s}
        )
        c = co
    return {"stages": stages}


def sample_configs(n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct configs (by arch id) from ``numpy.random.default_rng(seed)``."""
    return distinct_samples(sample_config, _id_of, n, seed)


class Inception(SampledGennapeFamily):
    """Inception on CIFAR-10. Default: a seeded sample (``sample: int = 580``, ``seed: int = 0``;
    :data:`SAMPLER_VERSION`), unlabelled. ``gennape: Path | None``: GENNAPE's
    ``inception_cifar10_labelled_cg_data.json`` (label ``max_perf`` / 100)."""

    name = "inception"
    release_file = "inception_cifar10_labelled_cg_data.json"
    tag_columns = {**TAG_COLUMNS, "sampler": ("string", f"sampler version and seed ({SAMPLER_VERSION})")}

    chunk_size = 100  # build-engine chunks: enough of them to keep 2+ workers busy

    sampler_version = SAMPLER_VERSION
    sample_configs = staticmethod(sample_configs)
    canonical_config = staticmethod(canonical_config)
    config_id = staticmethod(arch_id)
    plan = staticmethod(build_plan)

    def __init__(
        self, gennape: str | Path | None = None, sample: int = DEFAULT_SAMPLE, seed: int = 0
    ) -> None:
        super().__init__(gennape, sample, seed)

    def build_model(self, config: Any, *, cache: ModuleCache | None = None) -> nn.Module:
        """The reference network: whole :class:`InceptionBlock` modules (not the op-level plan)."""
        return _plan_network(block_plan(config, cache=cache), cache)
