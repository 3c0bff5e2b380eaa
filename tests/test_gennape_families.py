"""HiAML, Two-Path and Inception (issue #10): builders, outside check, composition, samplers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from cgbench.cg import ComputationGraph, extract_cg
from cgbench.cg.compose import PlanComposer
from cgbench.loaders import hiaml, inception, two_path
from cgbench.loaders.base import LoaderError
from cgbench.loaders.registry import get_family

FIXTURES = Path(__file__).parent / "fixtures"
BEST = json.loads((FIXTURES / "gennape_best_configs.json").read_text())

# GENNAPE's real graphs (AutoGO architectures/<family>_best.pkl) and FAMILIES.md section 4:
# conv / depthwise / linear counts, params, MACs, nodes / edges.
OUTSIDE = {
    "hiaml": (31, 0, 1, 2_220_746, 122_079_744, 107, 118),
    "two_path": (20, 0, 1, 1_780_362, 57_709_568, 56, 58),
    "inception": (120, 18, 1, 3_537_898, 242_841_088, 403, 445),
}


def _ours(family: str, config) -> ComputationGraph:
    fam = get_family(family)
    return extract_cg(fam.build_model(fam.canonical(config, "test")), (3, 32, 32))


@pytest.mark.parametrize("family", sorted(OUTSIDE))
def test_outside_check_against_gennape_real_graph(family, upstream_dir):
    from cgbench.loaders.gennape import read_gennape_graph

    g = read_gennape_graph(upstream_dir / "gennape_cg" / f"{family}_best.pkl")
    theirs = ComputationGraph.from_arrays(g.op_type_idx, g.res, g.weight, g.bias, g.edges, g.input_shape)
    ours = _ours(family, BEST[family])
    conv, dw, linear, params, macs, nodes, edges = OUTSIDE[family]
    for cg in (theirs, ours):
        counts = cg.op_counts()
        assert (counts["conv"], counts["depthwise"], counts["matmul"]) == (conv, dw, linear)
        assert (cg.params(), cg.flops(), cg.num_nodes, cg.num_edges) == (params, macs, nodes, edges)
    # No other op-count difference exists to pin: every op count, every kernel shape and the
    # WL hash (node res/weight/bias and wiring) agree with GENNAPE's TF graph.
    assert ours.op_counts() == theirs.op_counts()
    assert ours.weighted_kernel_counts() == theirs.weighted_kernel_counts()
    assert ours.cg_hash() == theirs.cg_hash()


def test_torch_activation_variants_would_differ():
    """The TF semantics matter: HiAML's CBR uses ReLU (the torch file's ReLU6 would turn the
    21 relu nodes of hiaml_best into relu6), and the outside check would catch it."""
    cg = _ours("hiaml", BEST["hiaml"])
    assert cg.op_counts()["relu"] == 21 and cg.op_counts()["relu6"] == 8


def _sample_configs():
    rng = random.Random(7)
    out = [("hiaml", {"blocks": [rng.choice(hiaml.BLOCKS) for _ in range(4)]}) for _ in range(20)]
    out += [("two_path", c) for c in two_path.sample_configs(12, seed=3)]
    out += [("inception", c) for c in inception.sample_configs(4, seed=3)]
    return out


def test_composed_cg_equals_fully_traced_cg():
    composer = PlanComposer()
    for family, config in _sample_configs():
        fam = get_family(family)
        traced = extract_cg(fam.build_model(config), (3, 32, 32))
        composed = composer.compose(fam.build_plan(config), (3, 32, 32))
        assert composed.equals(traced), (family, config)
        assert composed.cg_hash() == traced.cg_hash()
        assert composed.params() == traced.params() and composed.flops() == traced.flops()
    before = composer.traced
    for family, config in _sample_configs():  # a second pass re-traces nothing
        composer.compose(get_family(family).build_plan(config), (3, 32, 32))
    assert composer.traced == before


def test_composer_traces_each_hiaml_slot_once():
    composer = PlanComposer()
    fam = get_family("hiaml")
    for config in list(hiaml.all_configs())[:500]:
        composer.compose(fam.build_plan(config), (3, 32, 32))
    # stem + head + at most 14 blocks x 8 slots
    assert composer.traced <= 2 + 14 * 8


def test_hiaml_enumerates_whole_space():
    configs = list(hiaml.all_configs())
    assert len(configs) == hiaml.NUM_ARCHS == 38_416
    assert len({hiaml.arch_id(c) for c in configs}) == 38_416
    assert hiaml.arch_id(BEST["hiaml"]) == "src1-src1-r30-src3"
    assert hiaml.canonical_config("src1-src1-r30-src3") == {"blocks": BEST["hiaml"]}


@pytest.mark.parametrize(
    "module, version", [(two_path, "two_path-sampler/1"), (inception, "inception-sampler/1")]
)
def test_samplers_seeded_and_versioned(module, version):
    assert module.SAMPLER_VERSION == version
    a, b = module.sample_configs(30, seed=0), module.sample_configs(30, seed=0)
    assert a == b
    assert module.sample_configs(30, seed=1) != a
    ids = [module.arch_id(c) for c in a]
    assert len(set(ids)) == 30
    for c in a:  # every sample is a valid config of the space
        assert module.canonical_config(c) == c


def test_sampler_output_pinned():
    """PCG64 streams are identical on every platform: pin the first ids of the default seeds."""
    assert [two_path.arch_id(c) for c in two_path.sample_configs(2, 0)] == PINNED_TWO_PATH
    assert [inception.arch_id(c) for c in inception.sample_configs(2, 0)] == PINNED_INCEPTION


def test_inception_sampler_respects_release_limits():
    for c in inception.sample_configs(200, seed=5):
        for st in c["stages"]:
            paths = st["block"]["paths"]
            assert sum(len(p["ops"]) for p in paths) <= inception.MAX_BLOCK_OPS[len(paths)]
            assert 2 <= st["n_blocks"] <= 6


def test_two_path_sampler_rules():
    for c in two_path.sample_configs(200, seed=5):
        for p in ("path1", "path2"):
            assert 2 <= len(c[p]) <= 4 and len(c[f"{p}_reduce_inds"]) == 2
            for b in c[p]:
                assert 1 <= len(b["op_names"]) <= 3 and b["op_types"].count("supp") <= 1


# ----------------------------------------------------------------------------- bad input
def test_unknown_hiaml_block():
    with pytest.raises(LoaderError, match="unknown HiAML block 'hiaml_x9'"):
        hiaml.canonical_config(["hiaml_x9", "hiaml_z", "hiaml_z", "hiaml_z"])


def test_wrong_stage_count():
    with pytest.raises(LoaderError, match="4 stages"):
        hiaml.canonical_config(["hiaml_z"] * 3)
    bad = dict(BEST["inception"], stages=BEST["inception"]["stages"][:3])
    with pytest.raises(LoaderError, match="4 stages, got 3"):
        inception.canonical_config(bad)


@pytest.mark.parametrize("family", ["two_path", "inception"])
def test_sample_size_must_be_positive(family):
    with pytest.raises(LoaderError, match=f"{family}: sample=-3: need at least 1 architecture"):
        get_family(family, sample=-3)


def test_reduction_index_out_of_range():
    bad = dict(BEST["two_path"], path1_reduce_inds=[0, 5])
    with pytest.raises(LoaderError, match=r"path1_reduce_inds.*0\.\.1"):
        two_path.canonical_config(bad)


def test_unknown_op_names():
    bad = json.loads(json.dumps(BEST["two_path"]))
    bad["path2"][0]["op_names"][0] = "conv9x9"
    with pytest.raises(LoaderError, match="unknown Two-Path op 'conv9x9'"):
        two_path.canonical_config(bad)
    bad = json.loads(json.dumps(BEST["inception"]))
    bad["stages"][2]["block"]["paths"][0]["ops"] = ["sep7x7"]
    with pytest.raises(LoaderError, match="stage 2, path 0: unknown Inception op 'sep7x7'"):
        inception.canonical_config(bad)


def test_same_padding_conv_matches_tf_on_real_tensors():
    """SameConv2d pads bottom/right for stride 2 (TF); the CG path keeps one conv node."""
    import torch

    from cgbench.loaders.blocks import SameConv2d

    conv = SameConv2d(1, 1, 3, 2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # picks the top-left tap of each window
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = conv(x)
    # TF 'same', k3 s2 on 4x4: pad (0 top, 1 bottom): windows start at rows/cols 0 and 2
    assert y.shape == (1, 1, 2, 2)
    assert y.flatten().tolist() == [0.0, 2.0, 8.0, 10.0]
    assert np.array_equal(extract_cg(conv, (1, 4, 4)).op_counts()["conv"], 1)


def test_avgpool_excludes_padding():
    import torch

    from cgbench.loaders.blocks import SamePool2d

    y = SamePool2d("avg")(torch.ones(1, 1, 4, 4))
    assert torch.allclose(y, torch.ones_like(y))  # TF: corners average 4 ones, not 4/9


PINNED_TWO_PATH = ["tp-fdc6f98922f81ca0", "tp-e56cd272e88f47be"]
PINNED_INCEPTION = ["inc-2737e56d078bfc3b", "inc-563de321a5910264"]


def test_batched_hashes_equal_single_hashes():
    from cgbench.cg.graph import cg_hashes

    composer = PlanComposer()
    graphs = [composer.compose(get_family(f).build_plan(c), (3, 32, 32)) for f, c in _sample_configs()]
    graphs.append(extract_cg(__import__("torch").nn.Identity(), (3, 8, 8)))  # 3-node graph
    assert cg_hashes(graphs) == [g.cg_hash() for g in graphs]
    assert cg_hashes([]) == []


def test_batched_params_and_macs_equal_single():
    from cgbench.cg.counting import params_and_macs

    composer = PlanComposer()
    graphs = [composer.compose(get_family(f).build_plan(c), (3, 32, 32)) for f, c in _sample_configs()]
    params, macs = params_and_macs(graphs)
    assert params == [g.params() for g in graphs]
    assert macs == [g.flops() for g in graphs]
    assert params_and_macs([]) == ([], [])
