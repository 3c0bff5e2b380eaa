"""The fast sparse layers of ``predictors/nn.py`` compute exactly PyTorch Geometric's maths.

Same weights -> the same outputs and the same gradients (inputs and parameters) as PyG's own
``GraphConv`` / ``GCNConv`` / ``GINConv`` / ``global_mean_pool`` / ``global_add_pool`` on
batches with duplicate edges, a self-loop, isolated nodes and an empty graph.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch_geometric.nn import GCNConv, GINConv, GraphConv, global_add_pool, global_mean_pool

from cgbench.predictors.features import GraphBatch
from cgbench.predictors.nn import Adjacency, Encoder, NodeEmbedding, Regressor, _conv, to_device

ATOL = 1e-5


def _batch(seed: int = 0, graphs: int = 5) -> GraphBatch:
    """Random directed graphs (src < dst mostly, plus a duplicate edge, a self-loop, an empty graph)."""
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(3, 30)) for _ in range(graphs)] + [0, 1]
    edges, eptr = [], [0]
    for n in sizes:
        e = [(int(a), int(b)) for a, b in rng.integers(0, max(n, 1), (2 * n, 2)) if a < b] if n > 1 else []
        if n > 2:
            e += [e[0]] if e else [(0, 1)]  # a duplicate edge
            e += [(1, 1)]  # a self-loop
        edges += e
        eptr.append(eptr[-1] + len(e))
    n_total = sum(sizes)
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    op = rng.integers(0, 30, n_total)
    weighted = rng.random(n_total) < 0.4
    cont = rng.random((n_total, 8)).astype(np.float32)
    cont[~weighted, 6:] = 0
    return GraphBatch(
        "feat/gennape-1",
        op.astype(np.int64),
        np.where(weighted[:, None], rng.integers(0, 8, (n_total, 2)), 0).astype(np.int64),
        weighted,
        cont,
        np.asarray(edges, dtype=np.int64).reshape(-1, 2),
        ptr,
        np.asarray(eptr, dtype=np.int64),
        np.zeros(len(sizes)),
    )


def _reference(kind: str) -> nn.Module:
    if kind == "graphconv":
        return GraphConv(32, 32)
    if kind == "gcn":
        return GCNConv(32, 32)
    return GINConv(nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 32)), eps=0.0)


def _grads(module: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return [x.grad, *(p.grad for p in module.parameters())]


@pytest.mark.parametrize("kind", ["graphconv", "gcn", "gin"])
@pytest.mark.parametrize("reverse", [False, True])
def test_fast_conv_equals_pyg(kind: str, reverse: bool) -> None:
    torch.manual_seed(0)
    t = to_device(_batch())
    n = t.op.shape[0]
    ref, fast = _reference(kind), _conv(kind, 32)
    assert list(fast.state_dict()) == list(ref.state_dict())  # saved models keep their keys
    fast.load_state_dict(ref.state_dict())
    adj = t.adjacency().reversed() if reverse else t.adjacency()
    edge_index = t.edge_index.flip(0) if reverse else t.edge_index
    x0 = torch.randn(n, 32)
    w = torch.randn(n, 32)  # a non-trivial upstream gradient
    xr, xf = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    out_r, out_f = ref(xr, edge_index), fast(xf, adj)
    assert torch.allclose(out_r, out_f, atol=ATOL)
    (out_r * w).sum().backward()
    (out_f * w).sum().backward()
    for gr, gf in zip(_grads(ref, xr), _grads(fast, xf), strict=True):
        assert torch.allclose(gr, gf, atol=1e-4), (gr - gf).abs().max()


@pytest.mark.parametrize("mean", [True, False])
def test_pooling_equals_pyg(mean: bool) -> None:
    t = to_device(_batch(1))
    x0 = torch.randn(t.op.shape[0], 32)
    xr, xf = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    pool = global_mean_pool if mean else global_add_pool
    out_r, out_f = pool(xr, t.batch, size=t.num_graphs), t.pool(xf, mean=mean)
    assert out_f.shape == (t.num_graphs, 32)
    assert torch.allclose(out_r, out_f, atol=ATOL)
    w = torch.randn_like(out_r)
    (out_r * w).sum().backward()
    (out_f * w).sum().backward()
    assert torch.allclose(xr.grad, xf.grad, atol=ATOL)


def test_embedding_equals_the_embedding_modules() -> None:
    torch.manual_seed(0)
    t = to_device(_batch(2))
    emb = NodeEmbedding("feat/gennape-1")
    shape = emb.shape(t.cont[:, :6])
    regular = torch.cat([emb.op_regular(t.op), shape], 1)
    weighted = torch.cat(
        [
            emb.op_weighted(t.op),
            shape,
            emb.k1(t.kernel[:, 0]),
            emb.k2(t.kernel[:, 1]),
            emb.bias(t.cont[:, 6:8]),
        ],
        1,
    )
    expected = torch.where(t.weighted[:, None], weighted, regular)
    assert torch.allclose(emb(t), expected, atol=ATOL)


def test_encoder_takes_an_edge_index_or_an_adjacency() -> None:
    torch.manual_seed(0)
    t = to_device(_batch(3))
    enc = Encoder("graphconv", bidirectional=True)
    x = torch.randn(t.op.shape[0], 32)
    a = enc(x, t.edge_index)
    b = enc(x, Adjacency(t.edge_index, t.op.shape[0]))
    assert torch.allclose(a, b)
    # reference: the same stack through PyG's forward (MessagePassing) on both edge directions
    h = x
    for conv, back in zip(enc.convs, enc.back, strict=True):
        h = torch.tanh(
            GraphConv.forward(conv, h, t.edge_index) + GraphConv.forward(back, h, t.edge_index.flip(0))
        )
    assert torch.allclose(a, h, atol=ATOL)


def test_regressor_scores_do_not_depend_on_batch_composition() -> None:
    torch.manual_seed(0)
    gb = _batch(4, graphs=9)
    model = Regressor("feat/gennape-1").eval()
    with torch.inference_mode():
        whole = model(to_device(gb))
        parts = torch.cat([model(to_device(gb.select(np.array([i])))) for i in range(len(gb))])
    assert torch.allclose(whole, parts, atol=ATOL)


@pytest.mark.parametrize("kind", ["graphconv", "gcn", "gin"])
def test_class_compressed_batches_give_the_same_scores_and_gradients(kind: str) -> None:
    from cgbench.predictors.features import node_classes

    torch.manual_seed(0)
    # repeated graphs and repeated chains inside graphs: many nodes share a class
    gb = _batch(5, graphs=6)
    gb = gb.select(np.array([0, 1, 2, 0, 3, 1, 4, 5, 6, 2, 0]))
    model = Regressor("feat/gennape-1", conv=kind)
    classes = node_classes(gb, 6)
    assert classes.shape == (7, len(gb.op))
    full, small = to_device(gb), to_device(gb, classes=classes)
    assert small.op.shape[0] < full.op.shape[0]  # fewer rows to compute
    out_f = model(full)
    grads_f = torch.autograd.grad(out_f.square().sum(), list(model.parameters()), allow_unused=True)
    out_c = model(small)
    grads_c = torch.autograd.grad(out_c.square().sum(), list(model.parameters()), allow_unused=True)
    assert torch.allclose(out_f, out_c, atol=ATOL)
    for a, b in zip(grads_f, grads_c, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def test_node_classes_separate_what_message_passing_separates() -> None:
    from cgbench.predictors.features import node_classes

    gb = _batch(6, graphs=3)
    classes = node_classes(gb, 3)
    # a class never mixes nodes of different features, and refines the class before it
    key0 = np.concatenate([gb.op[:, None], gb.kernel, gb.cont.view(np.int32)], 1)
    for c in np.unique(classes[0]):
        assert len(np.unique(key0[classes[0] == c], axis=0)) == 1
    for layer in range(1, 4):
        for c in np.unique(classes[layer]):
            assert len(np.unique(classes[layer - 1][classes[layer] == c])) == 1
    twice = gb.select(np.arange(len(gb)).repeat(2))
    assert len(np.unique(node_classes(twice, 3)[3])) == len(np.unique(classes[3]))


def test_compressed_batch_refuses_dropout_and_both_directions() -> None:
    from cgbench.predictors.features import node_classes

    gb = _batch(7)
    t = to_device(gb, classes=node_classes(gb, 6))
    with pytest.raises(ValueError, match="class-compressed"):
        Regressor("feat/gennape-1").embed_graphs(t, node_dropout=0.1)
    with pytest.raises(ValueError, match="class-compressed"):
        Regressor("feat/gennape-1", bidirectional=True)(t)


def test_gennape_member_model_is_compressed_to_the_same_scores() -> None:
    from cgbench.predictors.gennape import FCMRegressor, GennapeConfig

    torch.manual_seed(0)
    gb = _batch(8, graphs=6).select(np.array([0, 1, 0, 2, 3, 1]))
    model = FCMRegressor(GennapeConfig())
    model.centres.copy_(torch.randn_like(model.centres))
    assert model.class_layers() == 6
    with torch.inference_mode():
        full = model(to_device(gb))
        small = model(to_device(gb, classes=gb.classes(6)))
    assert torch.allclose(full, small, atol=ATOL)
    assert Regressor("feat/gennape-1", bidirectional=True).class_layers() is None


def test_kept_collated_batches_hold_no_weights() -> None:
    from cgbench.predictors.gnn import KGNN

    gb = _batch(9, graphs=8)
    a, b = KGNN(seed=0), KGNN(seed=1)
    torch.manual_seed(0)
    a.model = a._build()
    torch.manual_seed(1)
    b.model = b._build()
    first_a = a._scores(a.model, gb, batch=3)  # collates and keeps the batches
    assert any(k[0] == "tensors" for k in gb.memo)
    again_b = b._scores(b.model, gb, batch=3)  # reuses them with other weights
    fresh = _batch(9, graphs=8)
    assert np.allclose(again_b, b._scores(b.model, fresh, batch=3), atol=ATOL)
    assert np.allclose(first_a, a._scores(a.model, fresh, batch=3), atol=ATOL)
    assert not np.allclose(first_a, again_b)


def _wl_reference(gb: GraphBatch, layers: int) -> list[list[int]]:
    """Exact Weisfeiler-Lehman colours along in-edges, by Python tuples (no hashing)."""
    n = len(gb.op)
    edges = gb.global_edges()
    ins: list[list[int]] = [[] for _ in range(n)]
    for s, d in edges.T:
        ins[d].append(int(s))
    colour = [
        (
            int(gb.op[v]),
            tuple(gb.kernel[v]),
            bool(gb.weighted[v]),
            gb.cont[v].tobytes(),
            len(ins[v]),
            v in ins[v],
        )
        for v in range(n)
    ]
    out = [colour]
    for _ in range(layers):
        colour = [(colour[v], tuple(sorted(colour[u] for u in ins[v]))) for v in range(n)]
        out.append(colour)
    return [[{c: i for i, c in enumerate(dict.fromkeys(row))}[c] for c in row] for row in out]


def test_node_classes_are_exactly_the_weisfeiler_lehman_partition() -> None:
    from cgbench.predictors.features import dense_ids, node_classes

    gb = _batch(8, graphs=8)
    gb = gb.select(np.array([0, 1, 2, 0, 3, 1, 4, 5, 6, 7, 2, 8, 9]))  # repeats: shared classes
    ours = node_classes(gb, 6)
    for layer, ref in enumerate(_wl_reference(gb, 6)):
        # same partition: numbering both in order of first appearance gives equal arrays
        np.testing.assert_array_equal(dense_ids(ours[layer]), np.asarray(ref), err_msg=f"layer {layer}")


def test_dense_ids_number_distinct_keys_in_order_of_first_appearance() -> None:
    from cgbench.predictors.features import dense_ids

    key = np.array([7, 2**63 + 5, 7, 3, 2**63 + 5, 2**64 - 1], dtype=np.uint64)
    np.testing.assert_array_equal(dense_ids(key), [0, 1, 0, 2, 1, 3])
    assert dense_ids(np.zeros(0, dtype=np.uint64)).shape == (0,)


def test_selecting_a_run_of_graphs_gives_views_equal_to_a_copying_select() -> None:
    gb = _batch(9, graphs=8)
    run = gb.select(np.arange(2, 6))
    assert np.shares_memory(run.op, gb.op)  # a view, not a copy
    n0, n1, e0, e1 = gb.ptr[2], gb.ptr[6], gb.eptr[2], gb.eptr[6]
    np.testing.assert_array_equal(run.ptr, gb.ptr[2:7] - n0)
    np.testing.assert_array_equal(run.eptr, gb.eptr[2:7] - e0)
    np.testing.assert_array_equal(run.cont, gb.cont[n0:n1])
    np.testing.assert_array_equal(run.edges, gb.edges[e0:e1])
    np.testing.assert_array_equal(run.flops, gb.flops[2:6])
    back = gb.select(np.array([5, 4, 3, 2])).select(np.array([3, 2, 1, 0]))  # the copying path, twice
    assert not np.shares_memory(back.op, gb.op)
    for name in ("op", "kernel", "weighted", "cont", "edges", "ptr", "eptr", "flops"):
        np.testing.assert_array_equal(getattr(run, name), getattr(back, name), err_msg=name)
    np.testing.assert_array_equal(gb.op[gb.node_rows(np.arange(2, 6))], run.op)
    np.testing.assert_array_equal(gb.op[gb.node_rows(np.array([3, 2]))], gb.select(np.array([3, 2])).op)


def test_a_run_of_graphs_slices_its_parents_in_edges() -> None:
    """Inference batches take their in-edges from the whole set's (computed once for the node
    classes): the slice must equal in-edges computed afresh from the batch's own edges."""
    gb = _batch(11, graphs=8)
    gb.in_edges()  # the parent's, kept
    for lo, hi in ((0, 3), (2, 6), (5, 8), (7, 10), (8, 10), (0, 10)):  # 8, 9: empty, 1 node
        run = gb.select(np.arange(lo, hi))
        assert "in_edges" in run.memo  # sliced, not recomputed
        fresh = gb.select(np.arange(lo, hi)[::-1]).select(np.arange(hi - lo)[::-1])  # copies
        assert "in_edges" not in fresh.memo
        for got, want in zip(run.in_edges(), fresh.in_edges(), strict=True):
            np.testing.assert_array_equal(got, want)
    assert "in_edges" not in _batch(11, graphs=8).select(np.arange(2, 5)).memo  # parent had none


def _splitmix_reference(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def test_node_class_keys_do_not_depend_on_the_hashing_chunk(monkeypatch) -> None:
    """The keys are hashed in cache-sized chunks: with a 7-node chunk (many boundaries, a short
    last chunk) they must equal whole-array arithmetic, word by word and layer by layer."""
    import cgbench.predictors.features as features

    gb = _batch(13, graphs=6)
    monkeypatch.setattr(features, "_CHUNK", 7)
    got = features.node_classes(gb, 3)
    mix = np.uint64(0x9E3779B97F4A7C15)
    indeg = np.bincount(gb.global_edges()[1], minlength=len(gb.op)).astype(np.uint64)
    loop = np.zeros(len(gb.op), dtype=np.uint64)
    src, dst = gb.global_edges()
    loop[dst[src == dst]] = 1
    k = gb.kernel.astype(np.uint64)
    # the first word, packed as node_classes packs it
    small = gb.op.astype(np.uint64) | (indeg << np.uint64(16)) | (loop << np.uint64(40))
    small |= gb.weighted.astype(np.uint64) << np.uint64(41)
    small |= (k[:, 0] << np.uint64(42)) | (k[:, 1] << np.uint64(50))
    key = np.zeros(len(gb.op), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j, word in enumerate([small, *gb.cont.view(np.uint64).T]):
            key = _splitmix_reference(key * mix + word + np.uint64(j))
        want = [key]
        for _ in range(3):
            h = np.zeros_like(key)
            np.add.at(h, dst, want[-1][src])
            want.append(_splitmix_reference(want[-1] * mix + h))
    np.testing.assert_array_equal(got, np.stack(want))
