"""HiAML (GENNAPE): 14 residual block types, one per stage, 4 stages x 2 blocks, CIFAR-10.

Definition (``docs/gennape_families.md``; GENNAPE ``model_src/search_space/hiaml_two_path/``
``networks_tf.py:101-188``, ``operations_tf.py:385-857``), as GENNAPE traced it from TensorFlow:
stem conv 3x3/2 3->64 (no bias)-BN-ReLU; stages of 64@16x16, 128@8x8, 128@8x8, 256@4x4, block 0
of stages 1 and 3 with stride 2 and doubled width; global average pool, linear 256->10. Blocks
use CBR = conv (no bias)-BN-ReLU (plain ReLU, not the torch files' ReLU6), CB = conv-BN,
IS = 1x3 conv (stride s)-BN-ReLU6 then 3x1 conv-BN-ReLU6, and P = a 1x1 CB projection when the
stride or width changes (else the identity); every block ends in ReLU of a sum.

A config is GENNAPE's list of 4 block names (``["hiaml_src1", "hiaml_src1", "hiaml_r30",
"hiaml_src3"]``); the canonical config is ``{"blocks": [...]}`` and the arch id joins the short
names (``src1-src1-r30-src3``). The whole space (14^4 = 38,416) is enumerated; labels come only
from GENNAPE's release (``gennape=PATH``: ``gpi_test_hiaml_cifar10_labelled_cg_data.json``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import torch.nn as nn

from cgbench.loaders.base import LoaderError, ModuleCache, Segment, cached
from cgbench.loaders.blocks import DagBlock, GlobalAvgPool, PlanNetwork, set_eval, tf_conv, tf_inception_s
from cgbench.loaders.gennape_release import TAG_COLUMNS, GennapeFamily

BLOCKS = (  # GENNAPE's order (constants.py HIAML_OPS)
    "hiaml_z", "hiaml_a22", "hiaml_b23", "hiaml_j30", "hiaml_g30", "hiaml_r30", "hiaml_l20",
    "hiaml_t20", "hiaml_t31", "hiaml_src0", "hiaml_src1", "hiaml_src3", "hiaml_src7", "hiaml_src8",
)  # fmt: skip
NUM_STAGES = 4
BLOCKS_PER_STAGE = 2
REDUCTION_STAGES = (1, 3)
STEM_CHANNELS = 64
NUM_CLASSES = 10
NUM_ARCHS = len(BLOCKS) ** NUM_STAGES
INPUT_SHAPE = (3, 32, 32)


def parse_config(value: Any, *, where: str = "config") -> list[str]:
    """GENNAPE's list of 4 block names (``"hiaml_"`` prefix optional), a ``{"blocks": [...]}``
    dict or an arch id ``"src1-src1-r30-src3"`` -> the 4 full block names."""
    if isinstance(value, Mapping):
        value = value.get("blocks")
    if isinstance(value, str):
        value = value.split("-")
    if not isinstance(value, (list, tuple)):
        raise LoaderError(f"{where}: a HiAML config is a list of {NUM_STAGES} block names, got {value!r}")
    if len(value) != NUM_STAGES:
        raise LoaderError(
            f"{where}: a HiAML config has {NUM_STAGES} stages (one block name each), "
            f"got {len(value)}: {value!r}"
        )
    names = []
    for v in value:
        name = v if isinstance(v, str) and v.startswith("hiaml_") else f"hiaml_{v}"
        if name not in BLOCKS:
            raise LoaderError(f"{where}: unknown HiAML block {v!r}; known: {', '.join(BLOCKS)}")
        names.append(name)
    return names


def canonical_config(value: Any, *, where: str = "config") -> dict:
    return {"blocks": parse_config(value, where=where)}


def arch_id(config: Any) -> str:
    return "-".join(b.removeprefix("hiaml_") for b in parse_config(config))


def all_configs() -> Iterator[dict]:
    """All 38,416 canonical configs, in lexicographic order of block indices."""
    for blocks in itertools.product(BLOCKS, repeat=NUM_STAGES):
        yield {"blocks": list(blocks)}


# ----------------------------------------------------------------------------- blocks
def _cbr(ci: int, co: int, k: int, s: int = 1) -> nn.Module:
    return tf_conv(ci, co, k, s, act=nn.ReLU)


def _cb(ci: int, co: int, k: int, s: int = 1) -> nn.Module:
    return tf_conv(ci, co, k, s)


def _is(ci: int, co: int, s: int = 1) -> nn.Module:
    return tf_inception_s(ci, co, 3, s)


def _proj(ci: int, co: int, s: int) -> nn.Module | None:
    return _cb(ci, co, 1, s) if s != 1 or ci != co else None


def build_block(name: str, ci: int, co: int, s: int) -> DagBlock:
    """One HiAML block (TF semantics; see the table in ``docs/gennape_families.md``)."""
    if name == "hiaml_a22":
        steps = [("o1", _cbr(ci, co, 3, s), "x"), ("o2", _cbr(co, co, 1), "o1"), ("o3", _cb(co, co, 1), "o2")]
        out = ["o1", "o3"]
    elif name == "hiaml_z":
        steps, out = [("o1", _cbr(ci, co, 3, s), "x"), ("o2", _is(co, co), "o1")], ["o1", "o2"]
    elif name == "hiaml_b23":
        steps = [("o1", _is(ci, co, s), "x"), ("o2", _is(co, co), "o1"), ("p", _proj(ci, co, s), "x")]
        out = ["p", "o2"]
    elif name == "hiaml_j30":
        steps = [("o1", _cbr(ci, co, 3, s), "x"), ("o2", _is(co, co), "o1"), ("p", _proj(ci, co, s), "x")]
        out = ["p", "o2"]
    elif name == "hiaml_g30":
        steps = [
            ("o1", _is(ci, co, s), "x"), ("p", _proj(ci, co, s), "x"),
            ("o2", _is(co, co), ("p", "o1")), ("o3", _cb(co, co, 1), "o2"),
        ]  # fmt: skip
        out = ["o1", "o3"]
    elif name == "hiaml_r30":
        steps = [
            ("o1", _is(ci, co, s), "x"), ("p2", _proj(ci, co, s), "x"),
            ("o2", _cb(co, co, 1), ("p2", "o1")), ("o3", _is(co, co), "o1"), ("p4", _proj(ci, co, s), "x"),
        ]  # fmt: skip
        out = ["p4", "o2", "o3"]
    elif name == "hiaml_l20":
        steps, out = [("o1", _cbr(ci, co, 3, s), "x"), ("o2", _cb(co, co, 1), "o1")], ["o2"]
    elif name == "hiaml_t20":
        steps, out = [("o1", _cb(ci, co, 1, s), "x"), ("o2", _is(ci, co, s), "x")], ["o1", "o2"]
    elif name == "hiaml_t31":
        steps = [
            ("o1", _is(ci, co, s), "x"), ("o2", _cbr(co, co, 1), "o1"), ("p3", _proj(ci, co, s), "x"),
            ("o3", _is(co, co), ("p3", "o2")), ("p4", _proj(ci, co, s), "x"),
        ]  # fmt: skip
        out = ["p4", "o2", "o3"]
    elif name == "hiaml_src0":
        steps = [("y", _cbr(ci, co, 1, s), "x"), ("o2", _cbr(co, co, 3), "y"), ("o3", _cb(co, co, 3), "o2")]
        out = ["y", "o3"]
    elif name == "hiaml_src1":
        steps = [
            ("sc", _cbr(ci, co, 1, s), "x"),
            ("o2", _cbr(ci, ci, 3), "x"),
            ("o3", _cb(ci, co, 3, s), "o2"),
        ]
        out = ["sc", "o3"]
    elif name == "hiaml_src3":
        steps = [
            ("sc", _cb(ci, co, 1, s), "x"), ("o2", _cbr(ci, ci, 1), "x"),
            ("o3", _cbr(ci, co, 3, s), "o2"), ("o4", _cb(co, co, 1), "o3"),
        ]  # fmt: skip
        out = ["sc", "o4"]
    elif name == "hiaml_src7":
        steps = [("y", _cb(ci, co, 1, s), "x"), ("o2", _is(co, co), "y"), ("o3", _is(co, co), "o2")]
        out = ["y", "o3"]
    elif name == "hiaml_src8":
        steps = [("y", _cb(ci, co, 1, s), "x"), ("o2", _is(co, co), "y"), ("o3", _cb(co, co, 1), "o2")]
        out = ["y", "o3"]
    else:
        raise LoaderError(f"unknown HiAML block {name!r}; known: {', '.join(BLOCKS)}")
    return DagBlock([(n, m, (i,) if isinstance(i, str) else i) for n, m, i in steps], out, nn.ReLU)


def _stem() -> nn.Module:
    return tf_conv(3, STEM_CHANNELS, 3, 2, act=nn.ReLU)


def _head(c: int) -> nn.Module:
    return nn.Sequential(GlobalAvgPool(), nn.Linear(c, NUM_CLASSES))


def slots() -> list[tuple[int, int, int, int]]:
    """``(stage, C_in, C_out, stride)`` of the 8 block slots."""
    out, c = [], STEM_CHANNELS
    for stage in range(NUM_STAGES):
        for pos in range(BLOCKS_PER_STAGE):
            reduce = stage in REDUCTION_STAGES and pos == 0
            co = 2 * c if reduce else c
            out.append((stage, c, co, 2 if reduce else 1))
            c = co
    return out


def build_plan(config: Any, *, cache: ModuleCache | None = None) -> list[Segment]:
    """The network as a plan: stem, 8 block slots (key: block, C_in, C_out, stride), head."""
    blocks = parse_config(config)
    plan = [Segment(("hiaml_stem",), lambda: cached(cache, ("hiaml_stem",), _stem), (-1,))]
    for i, (stage, ci, co, s) in enumerate(slots()):
        key = ("hiaml_block", blocks[stage], ci, co, s)
        plan.append(Segment(key, lambda k=key: cached(cache, k, lambda: build_block(*k[1:])), (i,)))
    c = slots()[-1][2]
    plan.append(
        Segment(
            ("hiaml_head", c), lambda: cached(cache, ("hiaml_head", c), lambda: _head(c)), (len(plan) - 1,)
        )
    )
    return plan


def build_network(config: Any, *, cache: ModuleCache | None = None) -> nn.Module:
    """The HiAML network (eval mode) of a config."""
    net = PlanNetwork(build_plan(config, cache=cache))
    return net.eval() if cache is None else set_eval(net)


def sample_configs(n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct configs drawn uniformly per stage (GENNAPE ``arch_samplers.py:106``) with
    ``numpy.random.default_rng(seed)``; identical on every machine."""
    import numpy as np

    if n > NUM_ARCHS:
        raise LoaderError(f"hiaml: cannot sample {n} distinct archs from {NUM_ARCHS}")
    rng = np.random.default_rng(seed)
    seen: dict[str, dict] = {}
    while len(seen) < n:
        config = {"blocks": [BLOCKS[int(i)] for i in rng.integers(0, len(BLOCKS), NUM_STAGES)]}
        seen.setdefault(arch_id(config), config)
    return list(seen.values())


class HiAML(GennapeFamily):
    """HiAML on CIFAR-10. Default: all 38,416 archs, unlabelled. ``gennape: Path | None``:
    GENNAPE's ``gpi_test_hiaml_cifar10_labelled_cg_data.json`` (label ``max_perf`` / 100)."""

    name = "hiaml"
    expected_rows = NUM_ARCHS
    release_file = "gpi_test_hiaml_cifar10_labelled_cg_data.json"
    tag_columns = {**TAG_COLUMNS, "sampler": ("string", "how the arch set was made (hiaml: exhaustive)")}

    def default_configs(self) -> Iterator[tuple[dict, dict[str, Any]]]:
        for config in all_configs():
            yield config, {"sampler": "hiaml-exhaustive/1"}

    def canonical(self, value: Any, where: str) -> dict:
        return canonical_config(value, where=where)

    def arch_id(self, config: dict) -> str:
        return arch_id(config)

    def build_plan(self, config: Any, *, cache: ModuleCache | None = None) -> list[Segment]:
        return build_plan(config, cache=cache)
