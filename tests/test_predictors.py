"""Learned predictors: featurisers, k-GNN/GCN/GIN, GENNAPE re-implementation, cgb-rank,
save/load (safetensors + JSON), the fit cache and the eval registry hook. Small data only."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch_geometric.nn import GCNConv, GINConv, GraphConv

from cgbench.cg.graph import ComputationGraph
from cgbench.cg.ops import op_index
from cgbench.predictors.base import PredictorError, PredictorFileError
from cgbench.predictors.features import FEATURISERS, FeatureError, featurise
from cgbench.predictors.gennape import Gennape, fuzzy_cmeans, memberships, spectral_contrastive_loss
from cgbench.predictors.gnn import GCN, GIN, KGNN
from cgbench.predictors.ours import CgbRank
from cgbench.predictors.spectra import graph_spectrum

TINY = dict(epochs=1, max_train=48, max_valid=24, fine_tune_epochs=1)


def _graph() -> ComputationGraph:
    names = ["input", "conv", "batchnorm", "relu", "matmul", "output"]
    res = [[32, 32, 32, 32, 3, 3], [32, 16, 32, 16, 3, 64], [16, 16, 16, 16, 64, 64]]
    res += [[16, 16, 16, 16, 64, 64], [1, 1, 1, 1, 64, 10], [1, 1, 1, 1, 10, 10]]
    weight = [[0, 0, 0, 0], [3, 64, 3, 3], [0, 0, 0, 0], [0, 0, 0, 0], [64, 10, 0, 0], [0, 0, 0, 0]]
    bias = [False, False, True, False, True, False]
    edges = [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]]
    return ComputationGraph.from_op_names(names, res, weight, bias, edges, (3, 32, 32))


def test_gennape_features_follow_the_reference() -> None:
    gb = featurise([_graph()], "feat/gennape-1")
    assert gb.op.tolist() == [op_index(n) for n in ["input", "conv", "batchnorm", "relu", "matmul", "output"]]
    np.testing.assert_allclose(gb.cont[1, :6], [32 / 256, 16 / 256, 32 / 256, 16 / 256, 3 / 512, 64 / 512])
    assert gb.cont[1, 6:].tolist() == [1.0, 0.0]  # conv without bias -> [1, 0]
    assert gb.cont[4, 6:].tolist() == [0.0, 1.0]  # linear with bias -> [0, 1]
    assert gb.cont[2, 6:].tolist() == [0.0, 0.0]  # regular node: no bias one-hot
    assert gb.kernel.tolist() == [[0, 0], [3, 3], [0, 0], [0, 0], [0, 0], [0, 0]]
    assert gb.weighted.tolist() == [False, True, False, False, True, False]
    assert gb.ptr.tolist() == [0, 6] and gb.edges.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]]


def test_unknown_featuriser_is_a_clear_error() -> None:
    with pytest.raises(FeatureError, match="unknown featuriser 'feat/x'.*feat/gennape-1"):
        featurise([_graph()], "feat/x")


@pytest.fixture(scope="module")
def prep(nb201_store):
    from cgbench.eval.protocols import prepare_task

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_task("nb201/cifar10-valid:in-family", root=nb201_store)


@pytest.mark.parametrize("featuriser", FEATURISERS)
def test_columns_and_graphs_give_the_same_features(prep, featuriser) -> None:
    archs = prep.train.archs[:20]
    a, b = featurise(archs, featuriser), featurise(list(archs), featuriser)
    for field in ("op", "kernel", "weighted", "edges", "ptr", "eptr"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_allclose(a.cont, b.cont, atol=1e-6)
    sel = a.select(np.array([3, 1]))
    assert len(sel) == 2 and sel.ptr[-1] == a.num_nodes[3] + a.num_nodes[1]
    np.testing.assert_array_equal(sel.op[: a.num_nodes[3]], a.op[a.ptr[3] : a.ptr[4]])


@pytest.mark.parametrize("cls", [KGNN, GCN, GIN])
def test_gnn_fit_predict_save_load(prep, cls, tmp_path) -> None:
    p = cls(seed=0, **TINY).fit(
        prep.train.archs, prep.train.labels, valid_graphs=prep.valid.archs, valid_labels=prep.valid.labels
    )
    pred = p.predict(prep.scored.archs)
    assert pred.shape == (len(prep.scored.archs),) and np.isfinite(pred).all()
    base = p.save(tmp_path / "model")
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "model.json").is_file()
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["config"]["layers"] == 6 and meta["config"]["hidden"] == 32 and meta["config"]["lr"] == 1e-4
    q = cls.load(base)
    np.testing.assert_allclose(q.predict(prep.scored.archs), pred, rtol=1e-6)
    assert not list(tmp_path.glob("*.pkl"))


def test_reference_settings() -> None:
    k = KGNN()
    c = k.config
    assert (c.layers, c.hidden, c.activation, c.epochs, c.batch_size, c.lr, c.select) == (
        6,
        32,
        "tanh",
        40,
        32,
        1e-4,
        "srcc",
    )
    assert not c.bidirectional and c.pooling == "mean" and c.fine_tune_batch_size == 1
    model = k._build()
    # PyG's layers (their parameters and init); the forward is the sparse one of predictors/nn.py,
    # checked against PyG's in tests/test_predictor_layers.py
    assert len(model.encoder.convs) == 6 and isinstance(model.encoder.convs[0], GraphConv)
    assert isinstance(GCN()._build().encoder.convs[0], GCNConv)
    gin = GIN()._build().encoder.convs[0]
    assert isinstance(gin, GINConv) and float(gin.eps) == 0.0
    assert [type(m).__name__ for m in model.head.post_proj] == [
        "Linear",
        "Linear",
        "ReLU",
        "Linear",
        "Linear",
    ]
    assert KGNN(select="mape").config.select == "mape"


def test_weights_that_do_not_match_the_config_are_refused(prep, tmp_path) -> None:
    p = KGNN(seed=0, **TINY).fit(prep.train.archs, prep.train.labels)
    p.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["config"]["pooling"] = "mean+sum"  # head input 64 wide: same tensors, other shapes
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorFileError, match="weights do not match the config: tensor .* has shape"):
        KGNN.load(tmp_path / "m")
    meta["config"]["hidden"] = 16
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorFileError, match="config builds no model"):
        KGNN.load(tmp_path / "m")
    meta["config"].update(hidden=32, pooling="mean", layers=4)
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorFileError, match="unexpected"):
        KGNN.load(tmp_path / "m")
    (tmp_path / "m.safetensors").unlink()
    with pytest.raises(PredictorFileError, match="needs both"):
        KGNN.load(tmp_path / "m")


def test_wrong_class_and_bad_labels_are_clear_errors(prep, tmp_path) -> None:
    from cgbench.eval.predictor import PredictorError

    p = KGNN(seed=0, **TINY).fit(prep.train.archs, prep.train.labels)
    p.save(tmp_path / "k")
    with pytest.raises(PredictorFileError, match="holds .*KGNN, not .*GCN"):
        GCN.load(tmp_path / "k")
    with pytest.raises(PredictorError, match="needs labelled architectures"):
        KGNN(**TINY).fit(prep.train.archs[:0], np.zeros(0))
    with pytest.raises(PredictorError, match="NaN"):
        KGNN(**TINY).fit(prep.train.archs[:4], np.array([0.5, np.nan, 0.4, 0.3]))
    with pytest.raises(PredictorError, match="predict before fit"):
        KGNN().predict(prep.train.archs[:2])


def test_fit_cache_reuses_the_trained_model(prep, tmp_path) -> None:
    a = KGNN(seed=3, cache_dir=str(tmp_path), **TINY).fit(prep.train.archs, prep.train.labels)
    b = KGNN(seed=3, cache_dir=str(tmp_path), **TINY).fit(prep.train.archs, prep.train.labels)
    c = KGNN(seed=4, cache_dir=str(tmp_path), **TINY).fit(prep.train.archs, prep.train.labels)
    assert not a.from_cache and b.from_cache and not c.from_cache
    np.testing.assert_array_equal(a.predict(prep.scored.archs), b.predict(prep.scored.archs))


def test_fcm_and_spectra() -> None:
    z = np.vstack(
        [np.random.default_rng(0).normal(0, 0.1, (20, 2)), np.random.default_rng(1).normal(5, 0.1, (20, 2))]
    )
    centres = fuzzy_cmeans(z, 2, seed=0)
    assert sorted(np.round(centres[:, 0]).tolist()) == [0.0, 5.0]
    u = memberships(torch.as_tensor(z), torch.as_tensor(centres), 2.0)
    np.testing.assert_allclose(u.sum(1).numpy(), 1.0)
    assert (u.max(1).values > 0.99).all()
    # path of 2 nodes: normalised Laplacian eigenvalues 0 and 2, zero padded to q
    np.testing.assert_allclose(graph_spectrum(2, np.array([[0, 1]]), q=4), [0, 2, 0, 0], atol=1e-12)
    # with a tiny spectrum temperature the soft targets are the identity: standard NT-Xent
    p = torch.randn(5, 8)
    spectra = torch.arange(5.0)[:, None].repeat(1, 3)
    soft = spectral_contrastive_loss(p, p, spectra, 0.5, 1e-6)
    logits = torch.nn.functional.normalize(p, dim=1) @ torch.nn.functional.normalize(p, dim=1).T / 0.5
    hard = torch.nn.functional.cross_entropy(logits, torch.arange(5))
    assert abs(float(soft) - float(hard)) < 1e-5


def test_gennape_and_ours_fit_fine_tune_save(prep, tmp_path) -> None:
    for cls, extra in ((Gennape, dict(cl_epochs=1, n_members=2, min_acc=0.0)), (CgbRank, dict(n_members=2))):
        p = cls(seed=1, **TINY, **extra).fit(
            prep.train.archs, prep.train.labels, valid_graphs=prep.valid.archs, valid_labels=prep.valid.labels
        )
        zero = p.predict(prep.scored.archs)
        np.testing.assert_allclose(p.weights, [0.5, 0.5])
        p.save(tmp_path / cls.name)
        q = cls.load(tmp_path / cls.name)
        np.testing.assert_allclose(q.predict(prep.scored.archs), zero, rtol=1e-6)
        p.fine_tune(prep.valid.archs[:10], prep.valid.labels[:10])
        assert abs(p.weights.sum() - 1) < 1e-9 and len(p.weights) == 2
        assert np.isfinite(p.predict(prep.scored.archs)).all()


def test_eval_finds_learned_predictors_by_name_without_importing_them() -> None:
    from cgbench.eval.predictor import load_predictor

    spec = load_predictor("kgnn")
    assert spec.name == "kgnn" and spec.requires_fit and type(spec.make(2)).__name__ == "KGNN"
    code = "import sys, cgbench.eval, cgbench.eval.baselines; print('cgbench.predictors' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cgb_rank_flops_prior_blends_ranks_and_keeps_accuracy_values(prep, tmp_path) -> None:
    from cgbench.predictors.ours import blend_with_flops

    acc = np.array([0.9, 0.8, 0.7, 0.6])
    flops = np.array([1.0, 2.0, 3.0, 4.0])  # FLOPs order is the reverse of the network's
    np.testing.assert_allclose(blend_with_flops(acc, flops, 0.0), acc)
    np.testing.assert_allclose(blend_with_flops(acc, flops, 1.0), [0.6, 0.7, 0.8, 0.9])
    assert sorted(blend_with_flops(acc, flops, 0.5)) == sorted(acc)  # values stay accuracies
    p = CgbRank(seed=0, **TINY, n_members=1, flops_prior=0.25).fit(prep.train.archs, prep.train.labels)
    assert p.prior == 0.25
    p.fine_tune(prep.valid.archs[:10], prep.valid.labels[:10])
    assert p.prior in p.config.prior_grid  # refitted on the labelled sample
    p.save(tmp_path / "m")
    assert CgbRank.load(tmp_path / "m").prior == p.prior


def test_cgbench_2_gives_unseen_ops_the_id_of_the_op_playing_their_role(prep) -> None:
    from cgbench.cg.ops import OPS
    from cgbench.predictors.features import _ROLE_OF

    archs = prep.train.archs[:5]
    one, two = featurise(archs, "feat/cgbench-1"), featurise(archs, "feat/cgbench-2")
    np.testing.assert_array_equal(one.cont, two.cont)  # same floats
    np.testing.assert_array_equal(one.weighted, two.weighted)
    avgpool, maxpool = OPS.index("avgpool"), OPS.index("maxpool")
    assert (one.op == avgpool).any()  # NB-201 cells: avgpool and identity nodes
    assert not (two.op == avgpool).any() and not (two.op == OPS.index("identity")).any()
    np.testing.assert_array_equal(two.op[one.op == avgpool], maxpool)
    np.testing.assert_array_equal(one.kernel[one.op == avgpool], two.kernel[one.op == avgpool])
    np.testing.assert_array_equal(two.op[one.op == OPS.index("conv")], OPS.index("conv"))
    assert all(OPS.index(role) != OPS.index(op) and role in OPS for op, role in _ROLE_OF.items())


def _scaled_graph(width: int, size: int) -> ComputationGraph:
    """A stem conv, a depthwise conv, a strided dense conv and a linear head; ``width`` channels."""
    names = ["input", "conv", "relu", "depthwise", "conv", "matmul", "output"]
    w, s, h = width, size, size // 2
    res = [[s, s, s, s, 3, 3], [s, s, s, s, 3, w], [s, s, s, s, w, w], [s, s, s, s, w, w]]
    res += [[s, h, s, h, w, 2 * w], [1, 1, 1, 1, 2 * w, 10], [1, 1, 1, 1, 10, 10]]
    weight = [[0] * 4, [3, w, 3, 3], [0] * 4, [w, 1, 3, 3], [w, 2 * w, 1, 1], [2 * w, 10, 0, 0], [0] * 4]
    edges = [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 6]]
    return ComputationGraph.from_op_names(names, res, weight, [False] * 7, edges, (3, s, s))


def test_cgbench_3_sizes_are_relative_to_the_graph() -> None:
    """NB-101 (128-512 channels) and NB-201 (16-64) must look alike: scaling every width, or the
    input resolution, leaves the channel and resolution features of ``feat/cgbench-3`` unchanged."""
    sizes = ((16, 32), (128, 32), (16, 224))
    base, wide, big = (featurise([_scaled_graph(w, s)], "feat/cgbench-3") for w, s in sizes)
    hidden = slice(1, 5)  # the head (1x1, 10 classes) does not scale
    np.testing.assert_allclose(base.cont[2:5, 4:6], wide.cont[2:5, 4:6], atol=1e-6)  # node channels
    np.testing.assert_allclose(base.cont[4, 7:9], wide.cont[4, 7:9], atol=1e-6)  # weight channels
    np.testing.assert_allclose(base.cont[3, 7], wide.cont[3, 7], atol=1e-6)
    np.testing.assert_allclose(base.cont[hidden, :4], big.cont[hidden, :4], atol=1e-6)  # resolution
    assert base.cont[4, 0] == 0 and base.cont[4, 1] == pytest.approx(1 / 8)  # one halving below the input
    assert base.cont[4, 5] - base.cont[4, 4] == pytest.approx(1 / 4)  # the widening conv doubles
    assert base.cont[3, 8] < base.cont[4, 8] - 0.5  # depthwise: one channel per group
    share = (10 ** (4 * base.cont[:, 9].astype(np.float64)) - 1) / 1e4  # each node's share of the MACs
    assert share.sum() == pytest.approx(1.0, rel=1e-4) and share[base.weighted].min() > 0
    narrow, wide = (featurise([_scaled_graph(w, 32)], "feat/cgbench-1").cont for w in (16, 128))
    assert not np.allclose(narrow[2:5, 4:6], wide[2:5, 4:6])  # feat/cgbench-1's are absolute


def test_a_pinned_code_digest_keys_the_fit_cache(prep, tmp_path, monkeypatch) -> None:
    import cgbench.predictors.base as base

    kw = dict(**TINY, cache_dir=str(tmp_path))
    KGNN(seed=0, code_digest="run 1", **kw).fit(prep.train.archs, prep.train.labels)
    monkeypatch.setattr(base, "source_digest", lambda *packages: "edited")  # the code on disk changed
    assert KGNN(seed=0, code_digest="run 1", **kw).fit(prep.train.archs, prep.train.labels).from_cache
    assert not KGNN(seed=0, code_digest="run 2", **kw).fit(prep.train.archs, prep.train.labels).from_cache
    unpinned = KGNN(seed=0, **kw).fit(prep.train.archs, prep.train.labels)  # keyed on the code now
    assert not unpinned.from_cache
    assert "code_digest" not in unpinned.config.key_dict()


def test_cgbench_4_reads_flops_as_a_percentile_of_the_population(prep) -> None:
    """``feat/cgbench-4``: ``feat/cgbench-2`` with the graph's FLOPs as its percentile among the
    graphs featurised together, so a family 100x smaller in FLOPs fills the same 0..1 range."""
    from cgbench.predictors.features import flops_percentile

    small = [_scaled_graph(w, 32) for w in (16, 32, 64)]
    large = [_scaled_graph(w, 32) for w in (128, 256, 512)]
    a, b = featurise(small, "feat/cgbench-4"), featurise(large, "feat/cgbench-4")
    last = [a.cont[a.ptr[g], -1] for g in range(3)]
    assert last == pytest.approx([0.0, 0.5, 1.0])
    np.testing.assert_array_equal(a.cont[:, -1], b.cont[:, -1])  # scale-free
    two = featurise(small, "feat/cgbench-2")
    np.testing.assert_array_equal(a.cont[:, :-1], two.cont[:, :-1])  # the rest is feat/cgbench-2's
    np.testing.assert_array_equal(a.op, two.op)
    absolute = [featurise(g, "feat/cgbench-2").cont[:, -1] for g in (small, large)]
    assert not np.array_equal(*absolute)  # feat/cgbench-2's log-FLOPs differ
    assert featurise(small[:1], "feat/cgbench-4").cont[0, -1] == 0.5  # one graph: the middle
    assert flops_percentile(np.array([3.0, 1.0, 3.0])).tolist() == [0.75, 0.0, 0.75]  # ties share
    # an unknown FLOPs figure takes the middle and leaves the others' ranks alone (rankdata alone
    # would make every graph of the population NaN)
    assert flops_percentile(np.array([2.0, np.nan, 1.0, np.inf])).tolist() == [1.0, 0.5, 0.0, 0.5]
    archs = prep.train.archs[:20]
    full = featurise(archs, "feat/cgbench-4")
    cut = full.select(np.array([3, 7]))
    rows = [full.cont[full.ptr[g] : full.ptr[g + 1]] for g in (3, 7)]
    np.testing.assert_array_equal(cut.cont, np.vstack(rows))  # a selection keeps the set's percentiles


def test_max_steps_stops_training_mid_epoch(prep) -> None:
    """``max_steps`` caps the Adam steps of training (cgb-rank trains 63), not of fine-tuning."""
    from cgbench.predictors.gnn import KGNN

    capped = KGNN(seed=0, epochs=5, max_steps=3, batch_size=8, max_train=48, layers=2)
    capped.fit(prep.train.archs, prep.train.labels, prep.valid.archs[:16], prep.valid.labels[:16])
    assert [h["steps"] for h in capped.history] == [3]  # one partial epoch, scored like a whole one
    assert "dev" in capped.history[0]
    whole = KGNN(seed=0, epochs=2, batch_size=8, max_train=48, layers=2)
    whole.fit(prep.train.archs, prep.train.labels)
    assert [h["steps"] for h in whole.history] == [6, 6]
    n = len(capped.history)
    capped.fine_tune(prep.valid.archs[:10], prep.valid.labels[:10])  # fine-tuning ignores max_steps
    assert len(capped.history) == n + capped.config.fine_tune_epochs
    assert capped.history[-1]["steps"] == 10
    for bad in (0, -1):
        with pytest.raises(PredictorError, match="max_steps"):
            KGNN(seed=0, max_steps=bad).fit(prep.train.archs[:8], prep.train.labels[:8])


def test_a_file_saved_before_max_steps_loads_as_trained(prep, tmp_path) -> None:
    """Files written before ``max_steps`` existed trained every epoch: loading one must not give
    it today's default cap (cgb-rank's 63 steps), which a refit from its config would apply."""
    p = CgbRank(seed=0, **TINY, n_members=1).fit(prep.train.archs, prep.train.labels)
    p.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old.json").read_text())
    del meta["config"]["max_steps"]
    (tmp_path / "old.json").write_text(json.dumps(meta))
    q = CgbRank.load(tmp_path / "old")
    assert q.config.max_steps is None
    np.testing.assert_allclose(q.predict(prep.scored.archs), p.predict(prep.scored.archs), rtol=1e-6)
