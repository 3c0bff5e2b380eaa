"""Two-Path (GENNAPE): two independent chains of single-path blocks from a shared stem, CIFAR-10.

Definition (``docs/gennape_families.md``; GENNAPE ``model_src/search_space/hiaml_two_path/``
``networks_tf.py:9-98``, ``blocks_tf.py:5-45``, ``operations_tf.py``), as traced from TensorFlow:
stem conv 3x3 3->32-BN-ReLU6, conv 3x3/2 32->32-BN-ReLU6 (16x16); each path has 2-4 blocks, two
of them (``pathK_reduce_inds``) with stride 2 and doubled width (32 -> 64 -> 128); the paths'
outputs are concatenated (256@4x4); head conv 3x3 256->512-BN-ReLU6, global average pool,
dropout (identity), linear 512->10. No conv has a bias.

A block runs its ops in sequence: the first op of type ``conv`` takes the block's stride and
width change, every other op keeps the current width (supp ops before it run at C_in); the input
is added when stride 1 and the width is kept; no activation after the block. Ops: ``convKxK`` =
conv-BN-ReLU6; ``double3x3`` = two of them (the first C_in->C_in with the stride);
``bottleneck-rR-kK`` / ``-eE-kK`` = conv-BN (C_in -> max(1, C_in // R) or int(C_in * E), stride)
-> conv-BN (-> C_out), **no activation** (TF; the torch file adds ReLU6); ``inception_sK``;
``avgpool3x3`` / ``maxpool3x3`` = TF 'same' pooling (the average excludes padding) + BN.

Config: GENNAPE's ``TwoPathNetConfig.state_dict()`` JSON ``{"path1": [{"op_names", "op_types"}],
"path2": [...], "path1_reduce_inds", "path2_reduce_inds"}`` (GENNAPE's own ``load_state_dict``
cannot read it back; :func:`canonical_config` can). Arch set: a seeded sample of 6,900 distinct
nets (:data:`SAMPLER_VERSION`), GENNAPE's sampler rules; labels only from GENNAPE's release.
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
from cgbench.loaders.blocks import GlobalAvgPool, PlanNetwork, set_eval, tf_conv, tf_inception_s, tf_pool_bn
from cgbench.loaders.gennape_release import TAG_COLUMNS, SampledGennapeFamily, distinct_samples

CONV_OPS = (
    "conv3x3", "double3x3", "conv5x5", "bottleneck-r2-k3", "bottleneck-r4-k3", "bottleneck-e2-k3",
    "inception_s3x3", "inception_s5x5",
)  # fmt: skip
SUPP_OPS = ("conv1x1", "bottleneck-r2-k1", "bottleneck-e2-k1", "avgpool3x3", "maxpool3x3")
MIN_BLOCKS, MAX_BLOCKS = 2, 4
MIN_OPS, MAX_OPS = 1, 3
NUM_REDUCTIONS = 2
STEM_CHANNELS = 32
HEAD_CHANNELS = 512
NUM_CLASSES = 10
SAMPLER_VERSION = "two_path-sampler/1"
DEFAULT_SAMPLE = 6900


def _block(value: Any, where: str) -> dict:
    if not isinstance(value, Mapping) or "op_names" not in value or "op_types" not in value:
        raise LoaderError(
            f"{where}: a Two-Path block is {{'op_names': [...], 'op_types': [...]}}, got {value!r}"
        )
    names, types = list(value["op_names"]), list(value["op_types"])
    if not names or len(names) != len(types):
        raise LoaderError(f"{where}: op_names and op_types must be non-empty and of equal length")
    for n, t in zip(names, types):
        kind = "conv" if n in CONV_OPS else "supp" if n in SUPP_OPS else None
        if kind is None:
            raise LoaderError(
                f"{where}: unknown Two-Path op {n!r};"
                f" conv ops: {', '.join(CONV_OPS)}; supp ops: {', '.join(SUPP_OPS)}"
            )
        if t != kind:
            raise LoaderError(f"{where}: op {n!r} has op_type {t!r}, expected {kind!r}")
    if "conv" not in types:
        raise LoaderError(f"{where}: a Two-Path block needs at least one conv op, got {names}")
    return {"op_names": names, "op_types": types}


def canonical_config(value: Any, *, where: str = "config") -> dict:
    """GENNAPE's state-dict JSON (or an object with those attributes) -> the canonical config."""
    if not isinstance(value, Mapping) and hasattr(value, "path1"):
        value = {k: getattr(value, k) for k in ("path1", "path2", "path1_reduce_inds", "path2_reduce_inds")}
    if not isinstance(value, Mapping):
        raise LoaderError(f"{where}: a Two-Path config is an object with path1, path2 and their reduce_inds")
    out: dict[str, Any] = {}
    for p in ("path1", "path2"):
        blocks = value.get(p)
        if not isinstance(blocks, (list, tuple)) or not MIN_BLOCKS <= len(blocks) <= MAX_BLOCKS:
            raise LoaderError(
                f"{where}: `{p}` must be a list of {MIN_BLOCKS}-{MAX_BLOCKS} blocks, got {blocks!r}"
            )
        out[p] = [
            _block(b.state_dict() if hasattr(b, "state_dict") else b, f"{where}, {p}[{i}]")
            for i, b in enumerate(blocks)
        ]
        inds = value.get(f"{p}_reduce_inds")
        try:
            inds = sorted(int(i) for i in inds)
        except (TypeError, ValueError):
            raise LoaderError(
                f"{where}: `{p}_reduce_inds` must be a list of block indices, got {inds!r}"
            ) from None
        if (
            len(inds) != NUM_REDUCTIONS
            or len(set(inds)) != NUM_REDUCTIONS
            or not all(0 <= i < len(blocks) for i in inds)
        ):
            raise LoaderError(
                f"{where}: `{p}_reduce_inds` = {inds} must be {NUM_REDUCTIONS} distinct block indices "
                f"in 0..{len(blocks) - 1} (the reduction blocks of the path)"
            )
        out[f"{p}_reduce_inds"] = inds
    return out


def arch_id(config: Mapping) -> str:
    """``tp-`` + 16 hex digits of BLAKE2b over the canonical config's sorted JSON."""
    return _id_of(canonical_config(config))


def _id_of(canonical: Mapping) -> str:
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return "tp-" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# ----------------------------------------------------------------------------- network
def build_op(name: str, ci: int, co: int, s: int) -> nn.Module:
    """One Two-Path op (TF semantics, no conv bias)."""
    if name in ("conv3x3", "conv5x5", "conv1x1"):
        return tf_conv(ci, co, int(name[4]), s, act=nn.ReLU6)
    if name == "double3x3":
        return nn.Sequential(tf_conv(ci, ci, 3, s, act=nn.ReLU6), tf_conv(ci, co, 3, 1, act=nn.ReLU6))
    if name.startswith("bottleneck-"):
        _, ratio, k = name.split("-")
        hidden = max(1, ci // int(ratio[1:])) if ratio[0] == "r" else int(ci * int(ratio[1:]))
        return nn.Sequential(tf_conv(ci, hidden, int(k[1:]), s), tf_conv(hidden, co, int(k[1:]), 1))
    if name.startswith("inception_s"):
        return tf_inception_s(ci, co, int(name[-1]), s)
    if name in ("avgpool3x3", "maxpool3x3"):
        return tf_pool_bn(name[:3], ci)
    raise LoaderError(f"unknown Two-Path op {name!r}")


class SinglePathBlock(nn.Sequential):
    """Ops in sequence, plus the input when stride 1 and the width is kept."""

    def __init__(self, op_names, op_types, ci: int, co: int, s: int) -> None:
        first = op_types.index("conv")
        c, ops = ci, []
        for i, name in enumerate(op_names):
            if i == first:
                ops.append(build_op(name, c, co, s))
                c = co
            else:
                ops.append(build_op(name, c, c, 1))
        super().__init__(*ops)
        self.residual = s == 1 and ci == co

    def forward(self, x):  # noqa: D102 - nn.Module
        out = super().forward(x)
        return out + x if self.residual else out


def _stem() -> nn.Module:
    c = STEM_CHANNELS
    return nn.Sequential(tf_conv(3, c, 3, 1, act=nn.ReLU6), tf_conv(c, c, 3, 2, act=nn.ReLU6))


def _head(c: int) -> nn.Module:
    return nn.Sequential(
        tf_conv(c, HEAD_CHANNELS, 3, 1, act=nn.ReLU6),
        GlobalAvgPool(),
        nn.Dropout(0.0),
        nn.Linear(HEAD_CHANNELS, NUM_CLASSES),
    )


def _seg(cache: ModuleCache | None, key: tuple, make, inputs: tuple[int, ...]) -> Segment:
    return Segment(key, lambda: cached(cache, key, make), inputs)


def _plan(config: Any, cache: ModuleCache | None, *, ops: bool) -> list[Segment]:
    cfg = canonical_config(config)
    plan = [_seg(cache, ("tp_stem",), _stem, (-1,))]
    ends = []
    for p in ("path1", "path2"):
        c, prev = STEM_CHANNELS, 0
        for i, block in enumerate(cfg[p]):
            co, s = (2 * c, 2) if i in cfg[f"{p}_reduce_inds"] else (c, 1)
            names, types = tuple(block["op_names"]), tuple(block["op_types"])
            if not ops:
                key = ("tp_block", names, types, c, co, s)
                plan.append(_seg(cache, key, lambda k=key: SinglePathBlock(*k[1:]), (prev,)))
            else:
                block_in, first, cur = prev, types.index("conv"), c
                for j, name in enumerate(names):
                    key = ("tp_op", name, cur, co, s) if j == first else ("tp_op", name, cur, cur, 1)
                    plan.append(
                        _seg(cache, key, lambda k=key: build_op(*k[1:]), (len(plan) - 1 if j else block_in,))
                    )
                    cur = co if j == first else cur
                if s == 1 and c == co:
                    plan.append(Segment(("tp_add",), None, (len(plan) - 1, block_in), join="add"))
            prev, c = len(plan) - 1, co
        ends.append((prev, c))
    plan.append(Segment(("tp_concat",), None, (ends[0][0], ends[1][0]), join="concat"))
    c = ends[0][1] + ends[1][1]
    plan.append(_seg(cache, ("tp_head", c), lambda: _head(c), (len(plan) - 1,)))
    return plan


def block_plan(config: Any, *, cache: ModuleCache | None = None) -> list[Segment]:
    """Stem; path 1's blocks; path 2's blocks (one :class:`SinglePathBlock` each); concat; head."""
    return _plan(config, cache, ops=False)


def build_plan(config: Any, *, cache: ModuleCache | None = None) -> list[Segment]:
    """The network at op granularity for fast CG composition (segments keyed by op, widths,
    stride; residual adds as joins); the composed CG equals the trace of :func:`block_plan`."""
    return _plan(config, cache, ops=True)


# ----------------------------------------------------------------------------- sampler
def _sample_block(rng: np.random.Generator) -> dict:
    n_ops = int(rng.integers(MIN_OPS, MAX_OPS + 1))
    ops = [(CONV_OPS[int(rng.integers(len(CONV_OPS)))], "conv")]
    supp_added = False
    p_supp = len(SUPP_OPS) / (len(CONV_OPS) + len(SUPP_OPS))
    for _ in range(n_ops - 1):
        if rng.random() < p_supp and not supp_added:
            ops.append((SUPP_OPS[int(rng.integers(len(SUPP_OPS)))], "supp"))
            supp_added = True
        else:
            ops.append((CONV_OPS[int(rng.integers(len(CONV_OPS)))], "conv"))
    order = rng.permutation(len(ops))
    return {"op_names": [ops[i][0] for i in order], "op_types": [ops[i][1] for i in order]}


def sample_config(rng: np.random.Generator) -> dict:
    """One config with GENNAPE's rules (``arch_samplers.py:15-76``): path length U{2..4}; per
    block U{1..3} ops, the first a conv op, each further op a supp op with probability 5/13 (at
    most one per block), then shuffled; 2 reduction blocks per path, a random sorted pair."""
    out: dict[str, Any] = {}
    for p in ("path1", "path2"):
        n = int(rng.integers(MIN_BLOCKS, MAX_BLOCKS + 1))
        out[p] = [_sample_block(rng) for _ in range(n)]
        out[f"{p}_reduce_inds"] = sorted(int(i) for i in rng.permutation(n)[:NUM_REDUCTIONS])
    return out


def sample_configs(n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct configs (by arch id) from ``numpy.random.default_rng(seed)``."""
    return distinct_samples(sample_config, _id_of, n, seed)


class TwoPath(SampledGennapeFamily):
    """Two-Path on CIFAR-10. Default: a seeded sample (``sample: int = 6900``, ``seed: int = 0``;
    :data:`SAMPLER_VERSION`), unlabelled. ``gennape: Path | None``: GENNAPE's
    ``gpi_test_two_path_cifar10_labelled_cg_data.json`` (label ``max_perf`` / 100)."""

    name = "two_path"
    release_file = "gpi_test_two_path_cifar10_labelled_cg_data.json"
    tag_columns = {**TAG_COLUMNS, "sampler": ("string", f"sampler version and seed ({SAMPLER_VERSION})")}

    chunk_size = 500  # build-engine chunks: enough of them to keep 2+ workers busy

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
        """The reference network: whole :class:`SinglePathBlock` modules (not the op-level plan)."""
        net = PlanNetwork(block_plan(config, cache=cache))
        return net.eval() if cache is None else set_eval(net)
