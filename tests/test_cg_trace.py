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
    model = nn.Sequential(nn.Conv2d(3, 4, 1), block, block, block)
    cache = TraceCache()
    first = extract_cg(model, (3, 8, 8), cache=cache)
    assert cache.hits >= 2  # the 2nd and 3rd calls of `block` were replayed
    again = extract_cg(model, (3, 8, 8), cache=cache)
    untied = nn.Sequential(model[0], *(copy.deepcopy(block) for _ in range(3)))
    fresh = extract_cg(untied, (3, 8, 8))
    assert first.equals(again) and first.equals(fresh)
    assert first.op_counts()["conv"] == 4


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
    for width in [4, 8, 12] * 30:
        cell = nn.Sequential(shared, nn.Conv2d(4, width, 1), nn.ReLU())  # a new instance each time
        model = nn.Sequential(nn.Conv2d(3, 4, 1), shared, cell, cell)
        cached = extract_cg(model, (3, 8, 8), cache=cache)
        assert cached.equals(extract_cg(model, (3, 8, 8), memo=False))
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
