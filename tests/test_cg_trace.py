"""The CG core: extraction from torch modules, counting, hashing, conversions."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cgbench.cg import (
    ComputationGraph,
    GraphError,
    TraceCache,
    UnsupportedOpError,
    extract_cg,
    from_networkx,
    from_pyg,
    op_index,
)


def torch_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class TwoBranch(nn.Module):
    """Shared-input branches, concat, SE-style multiply, depthwise conv, slicing."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.b = nn.Conv2d(8, 8, 5, stride=1, padding=2, groups=8)  # depthwise with bias
        self.bn = nn.BatchNorm2d(16)
        self.se = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        y = F.relu6(self.bn(y))
        s = torch.sigmoid(self.se(y.mean((2, 3))))
        y = y * s.view(1, 16, 1, 1)
        y = F.avg_pool2d(y[:, :, 1:, 1:], 3, stride=2, padding=1)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


def test_extracts_ops_shapes_and_flow():
    cg = extract_cg(TwoBranch().eval(), (8, 16, 16))
    names = cg.op_names
    assert names[0] == "input" and names[-1] == "output"
    assert names.count("conv") == 1 and names.count("depthwise") == 1 and names.count("concat") == 1
    conv = names.index("conv")
    assert cg.res[conv].tolist() == [16, 16, 16, 16, 8, 8]
    assert cg.weight[conv].tolist() == [8, 8, 3, 3]
    dw = names.index("depthwise")
    assert cg.weight[dw].tolist() == [8, 1, 5, 5] and cg.bias[dw]
    cat = names.index("concat")
    assert {int(s) for s, d in cg.edges if d == cat} == {conv, dw}  # both branches feed the concat
    pool = names.index("avgpool")
    assert cg.res[pool].tolist() == [15, 8, 15, 8, 16, 16]  # sliced 15x15 -> stride-2 pool
    assert cg.weight[pool].tolist() == [16, 16, 3, 3]
    assert (cg.edges[:, 0] < cg.edges[:, 1]).all()


def test_params_equal_torch_count():
    model = TwoBranch().eval()
    assert extract_cg(model, (8, 16, 16)).params() == torch_params(model)


def test_macs_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    cg = extract_cg(model, (3, 16, 16))
    assert cg.flops() == 3 * 4 * 9 * 8 * 8 + 256 * 10
    assert cg.params() == torch_params(model)


def test_unsupported_op_names_op_and_module_path():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=1)

    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sequential(nn.ReLU(), Odd()))
    with pytest.raises(UnsupportedOpError, match=r"cumsum.*'1\.1' \(Odd\)"):
        extract_cg(model, (3, 8, 8))


def test_unsupported_hardtanh_range():
    with pytest.raises(UnsupportedOpError, match="only ReLU6"):
        extract_cg(nn.Hardtanh(-2, 2), (3, 4, 4))


def test_memoised_trace_equals_plain_trace():
    block = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
    block.cg_pure = True  # opt-in: its graph is determined by its structure
    model = nn.Sequential(nn.Conv2d(3, 4, 1), block, block, block)
    cache = TraceCache()
    first = extract_cg(model, (3, 8, 8), cache=cache)
    assert cache.hits >= 2  # the 2nd and 3rd calls of `block` were replayed
    again = extract_cg(model, (3, 8, 8), cache=cache)
    untied = nn.Sequential(model[0], *(copy.deepcopy(block) for _ in range(3)))
    fresh = extract_cg(untied, (3, 8, 8))
    assert first.equals(again) and first.equals(fresh)
    assert first.op_counts()["conv"] == 4
    plain = extract_cg(model, (3, 8, 8), memo=False)
    assert first.params() == again.params() == plain.params() == torch_params(model)  # tied: once
    assert fresh.params() == torch_params(untied)


def test_inplace_ops_update_the_value():
    class Inplace(nn.Module):
        def forward(self, x):
            y = x + 1
            y.relu_()
            y += x
            return y

    cg = extract_cg(Inplace(), (2, 4, 4))
    assert cg.op_names == ["input", "add", "relu", "add", "output"]
    assert sorted(map(tuple, cg.edges.tolist())) == [(0, 1), (0, 3), (1, 2), (2, 3), (3, 4)]


def test_leaf_modules_and_cg_op_marker():
    class Marker(nn.Module):
        cg_op = "zero"

        def forward(self, x):  # never traced inside
            return torch.cumsum(x, 1)

    cg = extract_cg(nn.Sequential(nn.Identity(), nn.Dropout(0.5), Marker()), (3, 4, 4))
    assert cg.op_names == ["input", "identity", "identity", "zero", "output"]


def test_hash_is_stable_under_node_renumbering_and_sensitive_to_change():
    cg = extract_cg(TwoBranch().eval(), (8, 16, 16))
    g = cg.to_networkx()
    rng = np.random.default_rng(0)
    perm = rng.permutation(cg.num_nodes)
    import networkx as nx

    shuffled = from_networkx(nx.relabel_nodes(g, {i: int(p) for i, p in enumerate(perm)}))
    assert shuffled.cg_hash() == cg.cg_hash()
    other = extract_cg(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1)), (8, 16, 16))
    assert other.cg_hash() != cg.cg_hash()
    changed_res = ComputationGraph.from_arrays(
        cg.ops, cg.res + (np.arange(cg.num_nodes)[:, None] == 3), cg.weight, cg.bias, cg.edges, cg.input_shape
    )
    assert changed_res.cg_hash() != cg.cg_hash()


def test_pyg_and_networkx_round_trip():
    cg = extract_cg(TwoBranch().eval(), (8, 16, 16))
    data = cg.to_pyg(y=0.5)
    assert data.num_nodes == cg.num_nodes and data.edge_index.shape[1] == cg.num_edges
    assert from_pyg(data, cg.input_shape).equals(cg)
    assert from_networkx(cg.to_networkx()).equals(cg)
    assert "conv" in cg.to_dot().source


def test_validation_names_the_problem():
    with pytest.raises(GraphError, match="topological"):
        ComputationGraph.from_arrays(
            [op_index("input"), op_index("relu")],
            [[1] * 6] * 2,
            [[0] * 4] * 2,
            [False] * 2,
            [[1, 0]],
            (1, 1, 1),
        )
    with pytest.raises(GraphError, match="out of range"):
        ComputationGraph.from_arrays([1, 6], [[1] * 6] * 2, [[0] * 4] * 2, [False] * 2, [[0, 5]], (1, 1, 1))


def test_trace_cache_is_bounded_and_stays_exact():
    """Thousands of throw-away modules: the cache keeps at most max_modules, results stay exact."""
    cache = TraceCache(max_modules=8)
    shared = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
    shared.cg_shared = True
    for width in [4, 8, 12] * 30:
        # a new instance each time (ends with 4 channels: the 2nd call feeds `shared` again)
        cell = nn.Sequential(shared, nn.Conv2d(4, width, 1), nn.ReLU(), nn.Conv2d(width, 4, 1))
        cell.cg_shared = True
        model = nn.Sequential(nn.Conv2d(3, 4, 1), shared, cell, cell)
        cached = extract_cg(model, (3, 8, 8), cache=cache)
        plain = extract_cg(model, (3, 8, 8), memo=False)
        assert cached.equals(plain) and cached.params() == plain.params()
        assert len(cache._modules) <= 8
    assert cache.hits > 0


# ---------------------------------------------------------------------------- review regressions
def test_replayed_module_returning_a_view_keeps_its_shape():
    class Shift(nn.Module):
        def forward(self, x):
            return x[:, :, 1:, 1:]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.s, self.a, self.b = Shift(), nn.Conv2d(3, 3, 3), nn.Conv2d(3, 3, 3)

        def forward(self, x):
            return self.a(self.s(x)) + self.b(self.s(x))  # second Shift call is replayed

    cg = extract_cg(Net(), (3, 9, 9))
    assert [int(cg.res[i, 0]) for i, o in enumerate(cg.op_names) if o == "conv"] == [8, 8]
    assert cg.equals(extract_cg(Net(), (3, 9, 9), memo=False))


def test_replayed_namedtuple_output():
    from collections import namedtuple

    Out = namedtuple("Out", "main aux")

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return Out(self.c(x), x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.h = Head()

        def forward(self, x):
            return self.h(self.h(x).main).main

    assert extract_cg(Net(), (4, 4, 4)).op_counts()["conv"] == 2


def test_linear_and_layernorm_act_on_the_last_dimension():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln, self.fc = nn.LayerNorm(32), nn.Linear(32, 64)

        def forward(self, x):
            return self.fc(self.ln(x.flatten(2).transpose(1, 2)))  # (N, 16 tokens, 32)

    m = Tokens()
    cg = extract_cg(m, (32, 4, 4))
    assert cg.params() == torch_params(m)
    assert cg.flops() == 16 * 32 * 64
    fc = cg.op_names.index("matmul")
    assert cg.res[fc].tolist() == [16, 16, 1, 1, 32, 64]


def test_iteration_and_index_bounds():
    class Iterate(nn.Module):
        def forward(self, x):
            return torch.cat([xi for xi in x.view(4, 3, 2, 2)], 0)

    assert extract_cg(Iterate(), (3, 4, 4)).num_nodes == 3  # input, concat, output

    class OutOfRange(nn.Module):
        def forward(self, x):
            return x[:, 7]

    with pytest.raises(IndexError, match="out of bounds"):
        extract_cg(OutOfRange(), (3, 4, 4))


def test_more_shape_rules():
    assert extract_cg(nn.AdaptiveAvgPool2d((1, None)), (3, 8, 6)).res[1].tolist() == [8, 1, 6, 6, 3, 3]
    with pytest.raises(UnsupportedOpError, match="return_indices"):
        extract_cg(nn.MaxPool2d(2, return_indices=True), (3, 8, 8))

    class Negate(nn.Module):
        def forward(self, x):
            return 1 - (-x)

    assert extract_cg(Negate(), (3, 4, 4)).op_names == ["input", "mul", "sub", "output"]


def test_root_module_with_cg_op_is_one_node():
    class Marker(nn.Module):
        cg_op = "identity"

    assert extract_cg(Marker(), (3, 4, 4)).op_names == ["input", "identity", "output"]


def test_other_threads_run_normally_during_a_trace():
    import threading

    model = nn.Sequential(nn.Linear(4, 4), nn.Identity())
    errors: list[BaseException] = []
    stop = threading.Event()

    def infer():
        while not stop.is_set():
            try:
                model(torch.randn(1, 4))
            except Exception as err:  # noqa: BLE001 - any failure is the finding
                errors.append(err)
                return

    worker = threading.Thread(target=infer)
    worker.start()
    big = nn.Sequential(*[nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()) for _ in range(200)])
    try:
        for _ in range(20):
            extract_cg(big, (4, 8, 8), memo=False)
    finally:
        stop.set()
        worker.join()
    assert not errors, errors[0]


# ---------------------------------------------------------------- issue 8 §3: memo only skips work
def _mark_shared(module: nn.Module) -> nn.Module:
    module.cg_shared = True
    return module


def test_stateful_forward_is_traced_as_it_runs():
    """A module whose forward depends on Python state: the 2nd call must not replay the 1st."""

    class Toggle(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.first = nn.Conv2d(3, 3, 1), True

        def forward(self, x):
            if self.first:
                self.first = False
                return self.conv(x)
            return F.relu(x)

    t = Toggle()
    assert extract_cg(nn.Sequential(t, t), (3, 4, 4)).op_names == ["input", "conv", "relu", "output"]


def test_shared_trace_cache_sees_a_replaced_child():
    """A TraceCache shared across extractions must not return the graph of a replaced child."""
    for mark in (False, True):  # a user model, and a module marked as shared by a builder
        cache = TraceCache()
        block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        if mark:
            _mark_shared(block)
        model = nn.Sequential(nn.Identity(), block)
        assert extract_cg(model, (4, 8, 8), cache=cache).params() == 148
        block[0] = nn.Conv2d(4, 8, 3, padding=1)
        block[1] = nn.Conv2d(8, 4, 3, padding=1)
        cg = extract_cg(model, (4, 8, 8), cache=cache)
        assert cg.params() == torch_params(model) == 296 + 292
        assert cg.op_counts()["conv"] == 2


def test_forward_hooks_and_pre_hooks_are_honoured():
    conv = nn.Conv2d(3, 3, 1)
    seen = []
    conv.register_forward_pre_hook(lambda m, args: (args[0] * 2,))
    conv.register_forward_hook(lambda m, args, out: F.relu(out))
    conv.register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape)))
    model = nn.Sequential(conv, nn.Identity(), conv)
    cg = extract_cg(model, (3, 4, 4))
    assert cg.op_names == ["input", "mul", "conv", "relu", "identity", "mul", "conv", "relu", "output"]
    assert seen == [(1, 3, 4, 4)] * 2
    kw = nn.Conv2d(3, 3, 1)
    kw.register_forward_hook(lambda m, args, kwargs, out: torch.sigmoid(out), with_kwargs=True)
    assert extract_cg(kw, (3, 4, 4)).op_names == ["input", "conv", "sigmoid", "output"]


def test_global_module_hooks_are_honoured():
    from torch.nn.modules.module import register_module_forward_hook

    handle = register_module_forward_hook(
        lambda m, args, out: F.relu(out) if isinstance(m, nn.Conv2d) else None
    )
    try:
        cg = extract_cg(nn.Sequential(nn.Conv2d(3, 3, 1)), (3, 4, 4))
    finally:
        handle.remove()
    assert cg.op_names == ["input", "conv", "relu", "output"]


def test_hook_below_a_memoised_module_is_not_skipped():
    block = _mark_shared(nn.Sequential(nn.Conv2d(3, 3, 1)))
    calls = []
    block[0].register_forward_hook(lambda m, a, o: calls.append(1))
    extract_cg(nn.Sequential(block, block), (3, 4, 4))
    assert len(calls) == 2


def test_params_count_each_tensor_once():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    twice = nn.Sequential(conv, nn.ReLU(), conv)
    assert extract_cg(twice, (4, 8, 8)).params() == torch_params(twice) == 148

    class TiedLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x.flatten(1)))

    tied = TiedLinear()
    assert extract_cg(tied, (8, 1, 1)).params() == torch_params(tied) == 80
    ln = nn.LayerNorm([4, 8, 8])
    assert extract_cg(ln, (4, 8, 8)).params() == torch_params(ln) == 512


def test_builder_shared_modules_count_per_use():
    """cg_shared marks a builder's sharing device, not weight tying: the graph is the untied net."""
    block = _mark_shared(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)))
    model = nn.Sequential(block, block, block)
    untied = nn.Sequential(*(copy.deepcopy(block) for _ in range(3)))
    for m in untied:
        del m.cg_shared
    cache = TraceCache()
    for _ in range(2):
        cg = extract_cg(model, (4, 8, 8), cache=cache)
        assert cg.params() == torch_params(untied) == 3 * 156
    assert cg.equals(extract_cg(untied, (4, 8, 8))) and cache.hits > 0


def test_matmul_of_activations_counts_macs():
    class Attn(nn.Module):
        def forward(self, x):
            t = x.flatten(2).transpose(1, 2)  # (1, 16 tokens, 8)
            return (t @ t.transpose(1, 2)).softmax(-1) @ t

    cg = extract_cg(Attn(), (8, 4, 4))
    assert cg.flops() == 16 * 8 * 16 + 16 * 16 * 8


def test_params_survive_the_store_row():
    from cgbench.benchmarks.schema import graph_from_row

    ln = nn.LayerNorm([4, 8, 8])
    cg = extract_cg(ln, (4, 8, 8))
    row = {
        "node_op": cg.op_names, "node_res": cg.res.tolist(), "node_weight": cg.weight.tolist(),
        "node_bias": cg.bias.tolist(), "edge_index": cg.edges.tolist(),
        "input_shape": list(cg.input_shape), "params": float(cg.params()),
    }  # fmt: skip
    assert graph_from_row(row).params() == 512


# ---------------------------------------------------------------- issue 14 §6: shapes as torch checks them
def _shape_error(model, shape, *needles):
    from cgbench.cg import ShapeError

    with pytest.raises(ShapeError) as info:
        extract_cg(model, shape)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    return str(info.value)


def test_conv_channel_mismatch_is_a_shape_error():
    model = nn.Sequential(nn.Conv2d(3, 8, 3))
    _shape_error(model, (1, 32, 32), "'0' (Conv2d)", "(1, 1, 32, 32)", "(8, 3, 3, 3)")


def test_conv_output_below_one_is_a_shape_error():
    model = nn.Sequential(nn.Conv2d(3, 8, 5))
    _shape_error(model, (3, 3, 3), "'0' (Conv2d)", "(1, 3, 3, 3)", "(8, 3, 5, 5)")
    _shape_error(nn.Sequential(nn.MaxPool2d(4)), (3, 3, 3), "'0' (MaxPool2d)", "(1, 3, 3, 3)")


def test_linear_feature_mismatch_is_a_shape_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(6272, 10))
    _shape_error(model, (32, 6, 6), "'1' (Linear)", "(1, 1152)", "(10, 6272)")


def test_batch_dimension_in_input_shape_is_a_shape_error():
    msg = _shape_error(nn.Sequential(nn.Conv2d(3, 8, 3)), (1, 3, 32, 32), "'0' (Conv2d)", "(1, 1, 3, 32, 32)")
    assert "batch" in msg


def test_other_shape_mismatches_are_shape_errors():
    _shape_error(nn.Sequential(nn.BatchNorm2d(8)), (3, 4, 4), "'0' (BatchNorm2d)", "(1, 3, 4, 4)")
    _shape_error(nn.Sequential(nn.LayerNorm(8)), (3, 4, 4), "'0' (LayerNorm)", "(1, 3, 4, 4)")

    class Add(nn.Module):
        def forward(self, x):
            return x + x[:, :2]

    _shape_error(Add(), (3, 4, 4), "(1, 3, 4, 4)", "(1, 2, 4, 4)")

    class Cat(nn.Module):
        def forward(self, x):
            return torch.cat([x, x[:, :, :2]], 1)

    _shape_error(Cat(), (3, 4, 4), "(1, 3, 4, 4)", "(1, 3, 2, 4)")

    class View(nn.Module):
        def forward(self, x):
            return x.view(1, 7, -1)

    _shape_error(View(), (3, 4, 4), "(1, 3, 4, 4)", "(1, 7, -1)")
