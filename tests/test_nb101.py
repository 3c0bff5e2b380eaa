"""NAS-Bench-101 loader: spec handling and the official hash, the network (params / FLOPs against
published figures), the tfrecord reader (official format, bad files), NASLib and GENNAPE
readers, generators, and the build engine on top."""

from __future__ import annotations

import collections
import json
import pickle
import shutil
import struct
from pathlib import Path

import pytest
import torch

from cgbench.cg import TraceCache, count_flops, count_params, extract_cg
from cgbench.cg.compose import PlanComposer
from cgbench.cg.ops import OPS as CG_OPS
from cgbench.loaders import nb101
from cgbench.loaders.base import LoaderError, ModuleCache
from cgbench.loaders.nasbench_tfrecord import (
    encode_nasbench_record,
    frame_record,
    iter_tfrecord_frames,
    masked_crc32c,
)

FIXTURES = Path(__file__).parent / "fixtures"
TFRECORD = FIXTURES / "nb101_mini.tfrecord"
NASLIB = "nb101/naslib_zc_nasbench101_500archs.json"
C3, C1, MP = nb101.CONV3X3, nb101.CONV1X1, nb101.MAXPOOL3X3

# Official row 00005c142e6f48ac74fdcf73e3439874 (NNI / searchspace_train tests: inputs per vertex)
ROW_HASH = "00005c142e6f48ac74fdcf73e3439874"
ROW_OPS = ["input", C3, MP, C3, C3, C1, "output"]
ROW_INPUTS = {1: [0], 2: [1], 3: [2], 4: [0], 5: [0, 3, 4], 6: [2, 5]}
ROW_PARAMS = 8_555_530
# The official README's Inception-like cell (vertex order as written) and its stored form
README_MATRIX = [
    [0, 1, 1, 1, 0, 1, 0],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 1, 0, 0],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 0],
]
README_OPS = ["input", C1, C3, C3, C3, MP, "output"]
README_STORED = (
    [[0, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
     [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    ["input", C3, C1, MP, C3, C3, "output"],
)  # fmt: skip
README_PARAMS = 2_694_282


def _matrix(inputs: dict[int, list[int]], n: int = 7) -> list[list[int]]:
    m = [[0] * n for _ in range(n)]
    for dst, srcs in inputs.items():
        for s in srcs:
            m[s][dst] = 1
    return m


def _params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------------- specs and hash
def test_official_hash_of_a_known_row():
    spec = nb101.make_spec(_matrix(ROW_INPUTS), ROW_OPS)
    assert spec.hash() == ROW_HASH


def test_hash_is_isomorphism_invariant():
    written = nb101.make_spec(README_MATRIX, README_OPS)
    stored = nb101.make_spec(*README_STORED)
    assert written.hash() == stored.hash()
    # relabel the interior vertices of the known row (a different topological order)
    perm = {0: 0, 1: 1, 2: 2, 3: 4, 4: 3, 5: 5, 6: 6}  # swap vertices 3 and 4: 4 <- 0 only
    m = _matrix(ROW_INPUTS)
    pm = [[0] * 7 for _ in range(7)]
    for s in range(7):
        for d in range(7):
            if m[s][d]:
                pm[perm[s]][perm[d]] = 1
    pops = [None] * 7
    for v, op in enumerate(ROW_OPS):
        pops[perm[v]] = op
    assert nb101.make_spec(pm, pops).hash() == ROW_HASH
    # a different op changes the hash
    other = list(ROW_OPS)
    other[5] = C3
    assert nb101.make_spec(_matrix(ROW_INPUTS), other).hash() != ROW_HASH


def test_pruning_removes_vertices_off_the_input_output_paths():
    m = _matrix({1: [0], 2: [1], 3: [0], 6: [2], 5: [4]})  # 3 is a dead end, 4/5 unreachable
    spec = nb101.make_spec(m, ["input", C3, C1, MP, C3, C3, "output"])
    assert spec.ops == ("input", C3, C1, "output")
    assert spec.matrix == ((0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1), (0, 0, 0, 0))
    assert spec.hash() == nb101.make_spec(spec.matrix, spec.ops).hash()


@pytest.mark.parametrize(
    ("matrix", "ops", "message"),
    [
        (_matrix({1: [0], 6: [1]}) + [[0] * 7], ["input", C3, C3, C3, C3, C3, "output"], "not square"),
        ([[0, 1], [1, 0]], ["input", "output"], "upper-triangular"),
        ([[0, 2], [0, 0]], ["input", "output"], "upper-triangular"),
        (_matrix({1: [0], 6: [1]}), ["input", "conv5x5", C3, C3, C3, C3, "output"], "unknown op"),
        (_matrix({1: [0], 6: [1]}), [C3, C3, C3, C3, C3, C3, "output"], "first op"),
        (_matrix({1: [0], 2: [1]}), ["input", C3, C3, C3, C3, C3, "output"], "disconnected"),
        (_matrix({1: [0], 6: [1]}), ["input", C3, "output"], "3 ops for a 7x7"),
        (_matrix({i: list(range(i)) for i in range(1, 7)}), ["input"] + [C3] * 5 + ["output"],
         "outside NAS-Bench-101's space"),
    ],
)  # fmt: skip
def test_malformed_specs_raise_one_clear_error(matrix, ops, message):
    with pytest.raises(LoaderError, match=message) as err:
        nb101.make_spec(matrix, ops, where="my.json row 7")
    assert "my.json row 7" in str(err.value)


def test_naslib_tuple_decoding_errors():
    with pytest.raises(LoaderError, match="56"):
        nb101.from_naslib_tuple("(0, 1, 2)", where="row 3")
    with pytest.raises(LoaderError, match="op indices"):
        nb101.from_naslib_tuple([0] * 49 + [0, 9, 2, 2, 2, 2, 1], where="row 3")


def test_vertex_channels_follow_the_official_split():
    # 3 vertices feed the output: 128 = 43 + 43 + 42; vertex 1 feeds only vertex 2 -> max(43)
    m = [[0, 1, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]
    m[1][4] = 1
    assert nb101.compute_vertex_channels(64, 128, m) == [64, 43, 43, 42, 128]
    assert nb101.compute_vertex_channels(64, 128, [[0, 1], [0, 0]]) == [64, 128]


# ---------------------------------------------------------------------------- network fidelity
def test_trainable_parameters_equal_the_official_figures():
    row = nb101.build_network(nb101.make_spec(_matrix(ROW_INPUTS), ROW_OPS))
    assert _params(row) == ROW_PARAMS
    readme = nb101.build_network(nb101.make_spec(README_MATRIX, README_OPS))
    assert _params(readme) == README_PARAMS
    assert not readme.training and all(not m.training for m in readme.modules())


def test_forward_runs_in_eval_mode_and_matches_the_traced_graph():
    spec = nb101.make_spec(*README_STORED)
    net = nb101.build_network(spec)
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    cg = extract_cg(net, (3, 32, 32))
    assert count_params(cg) == README_PARAMS
    tied = extract_cg(nb101.build_network(spec, cache=ModuleCache()), (3, 32, 32))
    assert tied.cg_hash() == cg.cg_hash()


def test_naslib_params_and_flops_are_reproduced_exactly(upstream_dir):
    """All 292 unique cells of NASLib's 500 (the file repeats isomorphic cells): parameters and
    FLOPs (tensorwatch rules = cgbench convention ``nb101``) exactly."""
    modules, traces = ModuleCache(), TraceCache()
    seen, worst_p, worst_f = set(), 0.0, 0.0
    for _key, spec, labels in nb101.read_naslib_json(upstream_dir / NASLIB):
        if spec.hash() in seen:
            continue
        seen.add(spec.hash())
        cg = extract_cg(nb101.build_network(spec, cache=modules), (3, 32, 32), cache=traces)
        worst_p = max(worst_p, abs(count_params(cg) / (labels["params_upstream"] * 1e6) - 1))
        worst_f = max(worst_f, abs(count_flops(cg, "nb101") / (labels["flops_upstream"] * 1e6) - 1))
    assert len(seen) == 292
    assert worst_p < 1e-9 and worst_f < 1e-9


def test_graph_matches_gennape_nb101_best(upstream_dir):
    """GENNAPE's CG of NB-101's best cell (AutoGO nb101_best.pkl) vs ours for the same cell:
    same convs/BN/ReLU/pools/mean/linear; GENNAPE's vertex ``addn`` (one node for n inputs) is
    n-1 binary adds in PyTorch, the only difference."""
    from cgbench.loaders.gennape import read_gennape_graph

    theirs = read_gennape_graph(upstream_dir / "gennape_cg" / "nb101_best.pkl")
    # the cell, read off GENNAPE's node names (vertex_1..5 of stack0/module1)
    best = _matrix({1: [0], 2: [0], 3: [1], 4: [3], 5: [1, 2, 4], 6: [0, 5]})
    spec = nb101.make_spec(best, ["input", C3, C3, MP, C3, C3, "output"])
    ours = extract_cg(nb101.build_network(spec), (3, 32, 32))
    t = collections.Counter(CG_OPS[i] for i in theirs.op_type_idx)
    o = collections.Counter(CG_OPS[i] for i in ours.ops)
    for op in ("conv", "batchnorm", "relu", "maxpool", "mean", "matmul", "input", "output"):
        assert o[op] == t[op], op
    extra_adds = o["add"] - t["add"]
    assert extra_adds == 9  # one 3-input addn per cell, 9 cells
    assert ours.num_nodes - len(theirs.op_type_idx) == extra_adds
    assert ours.num_edges - len(theirs.edges) == extra_adds
    assert sorted(ours.res[ours.ops == CG_OPS.index("conv")][:, 5].tolist()) == sorted(
        r[5] for r, op in zip(theirs.res, theirs.op_type_idx) if CG_OPS[op] == "conv"
    )


# ---------------------------------------------------------------------------- tfrecord
def test_tfrecord_fixture_is_in_the_official_format():
    frames = list(iter_tfrecord_frames(TFRECORD))
    assert len(frames) == 9
    raw = TFRECORD.read_bytes()
    length = struct.unpack("<Q", raw[:8])[0]
    assert struct.unpack("<I", raw[8:12])[0] == masked_crc32c(raw[:8])
    assert struct.unpack("<I", raw[12 + length : 16 + length])[0] == masked_crc32c(raw[12 : 12 + length])
    assert frames[0][2].startswith(b'["00005c142e6f48ac74fdcf73e3439874", 4, "0100110')


def test_tfrecord_records_keep_mean_and_per_run_labels():
    rows = {h: (spec, labels, n) for h, spec, labels, n in nb101.read_tfrecord(TFRECORD)}
    assert list(rows)[0] == ROW_HASH
    spec, labels, n = rows[ROW_HASH]
    assert n == 3  # the 4-epoch run is skipped with budgets=(108,)
    assert labels["val_acc_108_run0"] == pytest.approx(0.9264155824979147)
    assert labels["test_acc_108_run0"] == pytest.approx(0.9206063151359558)
    assert labels["test_acc_108"] == pytest.approx((0.9206063151359558 + 0.9211 + 0.9190) / 3)
    assert labels["accuracy"] == labels["test_acc_108"]
    assert labels["params_upstream"] == pytest.approx(ROW_PARAMS / 1e6)
    assert labels["train_time_108"] == pytest.approx((1768.7849527994792 + 1770 + 1767) / 3)
    _, incomplete, n_c = list(rows.values())[2]
    assert n_c == 2 and incomplete["val_acc_108_run2"] is None
    full = {h: labels for h, _, labels, _ in nb101.read_tfrecord(TFRECORD, budgets=(4, 108))}
    assert full[ROW_HASH]["val_acc_4"] == pytest.approx(0.70)


def test_tfrecord_family_records_and_built_params_match():
    fam = nb101.NB101(tfrecord=TFRECORD)
    records = list(fam.iter_records({}))
    assert [r.arch_id for r in records][:1] == [ROW_HASH]
    assert records[0].tags == {"label_source": "test_acc_108", "cell_vertices": 7, "cell_edges": 9,
                               "num_runs": 3}  # fmt: skip
    for r in records:
        cg = extract_cg(fam.build_model(r.config, cache=ModuleCache()), fam.input_shape)
        assert count_params(cg) == round(r.labels["params_upstream"] * 1e6)
    assert len(list(fam.iter_records({}, limit=2))) == 2


def test_truncated_tfrecord_names_record_and_offset(tmp_path):
    bad = tmp_path / "nasbench_only108.tfrecord"
    raw = TFRECORD.read_bytes()
    bad.write_bytes(raw[:-7])
    with pytest.raises(LoaderError, match=r"record 8 at byte offset \d+.*truncated") as err:
        list(nb101.read_tfrecord(bad))
    assert str(bad) in str(err.value) and "download it again" in str(err.value)
    bad.write_bytes(raw[: -len(raw) + 5])  # ends inside the first header
    with pytest.raises(LoaderError, match="record 0 at byte offset 0.*truncated"):
        list(nb101.read_tfrecord(bad))


def test_wrong_crc_is_detected(tmp_path):
    raw = bytearray(TFRECORD.read_bytes())
    length = struct.unpack("<Q", raw[:8])[0]
    raw[12 + length // 2] ^= 0x01  # flip one bit of record 0's data
    bad = tmp_path / "flipped.tfrecord"
    bad.write_bytes(bytes(raw))
    with pytest.raises(LoaderError, match="record 0 at byte offset 0: data checksum mismatch"):
        list(nb101.read_tfrecord(bad))
    raw = bytearray(TFRECORD.read_bytes())
    raw[9] ^= 0xFF  # the length CRC
    bad.write_bytes(bytes(raw))
    with pytest.raises(LoaderError, match="length checksum mismatch"):
        list(nb101.read_tfrecord(bad))
    # with checks off the corrupt data surfaces as a decoding error, still a LoaderError
    assert len(list(iter_tfrecord_frames(bad, check_crc=False))) == 9


def test_bad_record_content_errors(tmp_path):
    spec = nb101.make_spec(*README_STORED)
    evals = [{"validation_accuracy": 0.9, "test_accuracy": 0.9}]
    cases = {
        "wrong_hash": encode_nasbench_record("0" * 32, 108, [list(r) for r in spec.matrix],
                                             list(spec.ops), 1, 1.0, evals),  # fmt: skip
        "not_json": b"hello",
        "bad_ops": encode_nasbench_record(spec.hash(), 108, [list(r) for r in spec.matrix],
                                          ["input", "conv9x9"] + list(spec.ops[2:]), 1, 1.0, evals),
        "bad_metrics": b'["abc", 108, "0100", "input,output", "%%%not base64"]',
    }  # fmt: skip
    messages = {"wrong_hash": "hashes to", "not_json": "not a NAS-Bench-101 record",
                "bad_ops": "unknown op", "bad_metrics": "base64"}  # fmt: skip
    for name, data in cases.items():
        path = tmp_path / f"{name}.tfrecord"
        path.write_bytes(frame_record(data))
        with pytest.raises(LoaderError, match=messages[name]) as err:
            list(nb101.read_tfrecord(path))
        assert "record 0" in str(err.value), name


# ---------------------------------------------------------------------------- NASLib, GENNAPE
def test_naslib_family_records(upstream_dir):
    fam = nb101.NB101()
    records = list(fam.iter_records({NASLIB: upstream_dir / NASLIB}))
    assert len(records) == 292 and len({r.arch_id for r in records}) == 292
    r = records[0]
    assert r.tags["label_source"] == "val_acc_108_naslib"
    assert r.labels["accuracy"] == pytest.approx(0.92578125)
    assert r.labels["params_upstream"] == pytest.approx(4.095778)
    assert r.labels["zc_synflow"] == pytest.approx(88.08498394991342)
    assert set(r.labels) - {"accuracy"} <= set(fam.label_columns)
    with pytest.raises(LoaderError, match="cgbench download nb101"):
        list(fam.iter_records({}))


def test_gennape_cache_fixture():
    records = list(nb101.NB101(gennape_cache=FIXTURES / "gennape_nb101_cache_mini.pkl").iter_records({}))
    assert [r.arch_id for r in records] == [ROW_HASH, nb101.make_spec(*README_STORED).hash()]
    assert records[0].labels["accuracy"] == pytest.approx(0.9206)
    assert records[0].labels["params_gennape"] == ROW_PARAMS
    assert records[0].tags["label_source"] == "acc_gennape"


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_gennape_cache_with_unexpected_classes_is_refused(tmp_path):
    path = tmp_path / "gpi_nb101_comp_graph_cache.pkl"
    path.write_bytes(pickle.dumps([{"compute graph": _Evil(), "acc": 0.9}]))
    with pytest.raises(LoaderError, match=r"refusing to unpickle builtins\.print") as err:
        list(nb101.read_gennape_cache(path))
    assert str(path) in str(err.value)
    bad = tmp_path / "bad_config.pkl"
    shutil.copy(FIXTURES / "gennape_nb101_cache_mini.pkl", bad)
    data = bad.read_bytes().replace(b"conv3x3-bn-relu", b"conv3x3-bn-reLU")
    bad.write_bytes(data)
    with pytest.raises(LoaderError, match="entry 0.*unknown op"):
        list(nb101.read_gennape_cache(bad))


# ---------------------------------------------------------------------------- generators, engine
def test_random_specs_are_valid_unique_and_deterministic():
    a = list(nb101.random_specs(300, seed=5))
    b = list(nb101.random_specs(300, seed=5))
    assert a == b and len({s.hash() for s in a}) == 300
    assert all(s.in_space() and s.ops[0] == "input" for s in a)
    assert a != list(nb101.random_specs(300, seed=6))


@pytest.mark.slow
def test_full_enumeration_has_423624_unique_cells():
    hashes = {h for h, _ in nb101.all_specs()}
    assert len(hashes) == nb101.NUM_UNIQUE_SPECS
    assert ROW_HASH in hashes


@pytest.mark.slow
def test_uniform_sample_of_the_enumerated_space():
    sample = list(nb101.uniform_specs(1000, seed=3))
    assert len({h for h, _ in sample}) == 1000
    assert all(spec.hash() == h for h, spec in sample[:50])
    sizes = collections.Counter(spec.num_vertices for _, spec in sample)
    assert sizes[7] > 800  # most of the 423,624 cells have 7 vertices


def test_options_are_exclusive():
    with pytest.raises(LoaderError, match="at most one"):
        nb101.NB101(tfrecord="x", random_specs=3)


def test_build_engine_end_to_end(tmp_path, upstream_dir):
    import pyarrow.parquet as pq

    from cgbench.benchmarks.build import build_family

    result = build_family(nb101.NB101(random_specs=40, seed=1), root=tmp_path, workers=1, chunk_size=16)
    assert result.rows == 40
    table = pq.read_table(sorted(Path(result.path).resolve().rglob("*.parquet"))[0])
    assert table.column("label_source").to_pylist()[0] == "none"
    naslib_only = nb101.NB101()
    naslib_only.sources = (NASLIB,)  # the default build also reads the 20k file: needs the full index
    result = build_family(naslib_only, root=tmp_path, mirror=upstream_dir, workers=1, limit=12)
    rows = pq.read_table(sorted(Path(result.path).resolve().rglob("*.parquet"))[0]).to_pylist()
    for row in rows:
        assert row["params"] == pytest.approx(row["params_upstream"] * 1e6)


def test_later_record_with_another_spec_under_the_same_hash_is_refused(tmp_path):
    spec = nb101.make_spec(*README_STORED)
    pooled = ["input", *["maxpool3x3"] * (len(spec.ops) - 2), "output"]  # same wiring, other ops
    evals = [{"validation_accuracy": 0.9, "test_accuracy": 0.9}]
    matrix = [list(r) for r in spec.matrix]
    first = encode_nasbench_record(spec.hash(), 108, matrix, list(spec.ops), 1, 1.0, evals)
    second = encode_nasbench_record(spec.hash(), 108, matrix, pooled, 1, 1.0, evals)
    path = tmp_path / "mixed.tfrecord"
    path.write_bytes(frame_record(first) + frame_record(second))
    with pytest.raises(LoaderError, match=r"record 1 .*earlier records of this hash had another spec"):
        list(nb101.read_tfrecord(path))


def test_naslib_table_of_the_wrong_type_is_named(tmp_path):
    path = tmp_path / "zc_nasbench101.json"
    path.write_text(json.dumps({"nasbench101": {"cifar10": [1, 2]}}))
    with pytest.raises(LoaderError, match=r"zc_nasbench101.json: 'nasbench101' -> 'cifar10' is a list"):
        list(nb101.read_naslib_json(path))


def _composed_vs_traced(specs) -> list:
    """Specs whose composed graph (``build_plan`` + ``PlanComposer``) differs from the full trace."""
    composer, modules, traces = PlanComposer(), ModuleCache(), TraceCache()
    bad = []
    for spec in specs:
        full = extract_cg(nb101.build_network(spec, cache=modules), (3, 32, 32), cache=traces)
        fast = composer.compose(nb101.build_plan(spec), (3, 32, 32))
        same = fast.equals(full) and fast.cg_hash() == full.cg_hash()
        if not (same and count_params(fast) == count_params(full)):
            bad.append(spec)
    return bad


def test_composed_graph_equals_the_full_trace():
    """The build's fast path (the network as a plan of per-op segments, composed from graphs
    traced once) gives the full trace's graph array for array: random specs, the official rows
    above, and corner cases (input -> output only; the input feeding the output beside interior
    vertices; truncated edges between interior vertices of different widths; a lone max-pool)."""
    specs = list(nb101.random_specs(120, seed=7))
    specs += [
        nb101.make_spec(_matrix(ROW_INPUTS), ROW_OPS),
        nb101.make_spec(README_MATRIX, README_OPS),
        nb101.make_spec([[0, 1], [0, 0]], ["input", "output"]),
        nb101.make_spec([[0, 1, 1], [0, 0, 1], [0, 0, 0]], ["input", MP, "output"]),
        nb101.make_spec(_matrix({1: [0], 2: [1], 3: [1, 2], 4: [0, 3]}, 5), ["input", C3, C1, MP, "output"]),
        nb101.make_spec(
            _matrix({1: [0], 2: [0, 1], 3: [1], 4: [2, 3], 5: [0, 2, 4]}, 6),
            ["input", C1, C3, MP, C3, "output"],
        ),
    ]
    truncating = [
        s for s in specs
        if any(
            s.matrix[a][b] and ch[a] > ch[b]
            for ch in [nb101.compute_vertex_channels(128, 128, s.matrix)]
            for a in range(1, s.num_vertices - 1)
            for b in range(a + 1, s.num_vertices - 1)
        )
    ]  # fmt: skip
    assert len(truncating) >= 5  # the slice path is exercised
    assert _composed_vs_traced(specs) == []
    assert nb101.NB101().build_plan(specs[-1].config())[-1].key[0] == "nb101_head"


# ---------------------------------------------------------------------------- hash index, 20k file
VIS = "nb101/nasbench_vis_data-20k.json"


def _partial_index(chunks) -> nb101.HashIndex:
    """A :class:`HashIndex` over part of the enumeration (first spec per hash)."""
    import numpy as np

    first: dict[str, int] = {}
    for chunk in chunks:
        for h, code in nb101.enumerate_chunk(*chunk):
            first.setdefault(h, code)
    order = sorted(first)
    return nb101.HashIndex(np.asarray(order, "S32"), np.asarray([first[h] for h in order], np.int64))


@pytest.fixture(scope="module")
def small_index() -> nb101.HashIndex:
    """Cells with at most 5 vertices and the first 6-vertex ones (cheap: a few seconds). A prefix
    of the enumeration, so each hash gets its canonical spec (the first in the enumeration order:
    isomorphic specs can differ in params, as the output channels are split in vertex order)."""
    chunks = nb101.enumeration_chunks()
    assert chunks[3] == (5, 0, 1 << 10) and chunks[4] == (6, 0, 1 << 15)
    return _partial_index([*chunks[:4], (6, 0, (1 << 14) + 1024)])


@pytest.fixture(scope="module")
def vis_file(upstream_dir) -> dict:
    return json.loads((upstream_dir / VIS).read_text())


def _vis_subset(vis_file: dict, index: nb101.HashIndex, path: Path) -> dict[str, int]:
    """Write the rows of the 20k file that ``index`` knows to ``path``; ``hash -> params``."""
    codes = index.find(vis_file["key"])
    rows = [i for i, c in enumerate(codes) if c >= 0]
    path.write_text(json.dumps({k: [v[i] for i in rows] for k, v in vis_file.items()}))
    return {vis_file["key"][i]: vis_file["trainable_parameters"][i] for i in rows}


def test_enumeration_codes_round_trip_to_their_hash():
    chunk = nb101.enumeration_chunks()[3]
    for number, (h, code) in enumerate(nb101.enumerate_chunk(*chunk)):
        if number % 13 == 0:
            spec = nb101.spec_from_code(code)
            assert (
                spec.hash() == h
                and spec.in_space()
                and nb101.prune(spec.matrix, spec.ops) == (spec.matrix, spec.ops)
            )
    with pytest.raises(LoaderError, match="not an NB-101 enumeration code"):
        nb101.spec_from_code(1)


def test_20k_file_params_equal_ours_on_the_cheaply_enumerated_archs(tmp_path, small_index, vis_file):
    """The fast version of the full check (slow test below): every 20k-file arch whose hash is
    among the cheaply enumerated cells, built from its recovered spec."""
    path = tmp_path / "data-20k.json"
    expected = _vis_subset(vis_file, small_index, path)
    assert len(expected) >= 300
    records = list(nb101.read_label_files({VIS: path}, small_index))
    assert [r.arch_id for r in records] == list(expected)
    modules, traces = ModuleCache(), TraceCache()
    for r in records:
        cg = extract_cg(nb101.build_network(r.config, cache=modules), (3, 32, 32), cache=traces)
        assert count_params(cg) == expected[r.arch_id], r.arch_id
        assert (
            r.labels["accuracy"] == r.labels["val_acc_108_vis"]
            and r.tags["label_source"] == "val_acc_108_vis"
        )
        assert nb101.spec_from_config(r.config).hash() == r.arch_id
    # the build engine's composed graphs (segments traced once) equal the full traces
    composer = PlanComposer()
    for r in records[::7]:
        full = extract_cg(nb101.build_network(r.config, cache=modules), (3, 32, 32), cache=traces)
        fast = composer.compose(nb101.NB101().build_plan(r.config), (3, 32, 32))
        assert fast.equals(full) and fast.cg_hash() == full.cg_hash(), r.arch_id


def test_20k_and_naslib_union(tmp_path, small_index, vis_file, upstream_dir):
    path = tmp_path / "data-20k.json"
    expected = _vis_subset(vis_file, small_index, path)
    naslib = list(nb101.NB101().iter_records({NASLIB: upstream_dir / NASLIB}))
    overlap = {r.arch_id for r in naslib} & set(expected)
    records = list(nb101.read_label_files({VIS: path, NASLIB: upstream_dir / NASLIB}, small_index))
    assert len(records) == len(expected) + len(naslib) - len(overlap)
    assert len({r.arch_id for r in records}) == len(records)
    sources = collections.Counter(r.tags["label_source"] for r in records)
    assert sources == {"val_acc_108_vis": len(expected), "val_acc_108_naslib": len(naslib) - len(overlap)}


def test_hash_outside_the_space_is_one_clear_error(tmp_path, small_index, vis_file):
    path = tmp_path / "data-20k.json"
    _vis_subset(vis_file, small_index, path)
    data = json.loads(path.read_text())
    data["key"][3] = "0" * 32
    path.write_text(json.dumps(data))
    with pytest.raises(LoaderError, match=r"row 3: key '0{32}' is not the module hash of any NAS-Bench-101"):
        list(nb101.read_vis_json(path, small_index))
    del data["trainable_parameters"]
    path.write_text(json.dumps(data))
    with pytest.raises(LoaderError, match=r"\['trainable_parameters'\] missing"):
        list(nb101.read_vis_json(path, small_index))
    with pytest.raises(LoaderError, match="not the module hash"):
        small_index.spec("not a hash")


def test_hash_index_is_built_in_parallel_resumed_and_verified(tmp_path, monkeypatch):
    """The index machinery on a small space (cells of at most 5 vertices)."""
    chunks = nb101.enumeration_chunks()[:4]
    expected = _partial_index(chunks)
    monkeypatch.setattr(nb101, "enumeration_chunks", lambda: chunks)
    monkeypatch.setattr(nb101, "NUM_UNIQUE_SPECS", len(expected))
    work = tmp_path / f"{nb101.INDEX_NAME}.partial"
    work.mkdir()
    nb101._index_chunk((0, chunks[0], str(work)))  # an interrupted earlier run finished chunk 0
    done = []
    index = nb101.hash_index(tmp_path, workers=2, progress=lambda d, n: done.append(d))
    assert done == [2, 3, 4]  # chunk 0 was reused
    assert (index.hashes == expected.hashes).all() and (index.codes == expected.codes).all()
    assert not work.exists()
    loaded = nb101.load_hash_index(tmp_path)
    assert (loaded.codes == index.codes).all()
    data = tmp_path / f"{nb101.INDEX_NAME}.npz"
    data.write_bytes(data.read_bytes()[:-10])
    with pytest.raises(LoaderError, match="checksum mismatch.*delete"):
        nb101.load_hash_index(tmp_path)
    assert nb101.load_hash_index(tmp_path / "empty") is None


@pytest.mark.slow
def test_20k_file_params_equal_ours_for_all_20001(vis_file, upstream_dir):
    """Needs the full hash index (built once, cached: see ``nb101.hash_index``)."""
    index = nb101.hash_index()
    records = list(nb101.read_label_files({VIS: upstream_dir / VIS}, index))
    assert len(records) == 20_001
    expected = dict(zip(vis_file["key"], vis_file["trainable_parameters"], strict=True))
    modules, traces = ModuleCache(), TraceCache()
    bad = []
    for r in records:
        cg = extract_cg(nb101.build_network(r.config, cache=modules), (3, 32, 32), cache=traces)
        if count_params(cg) != expected[r.arch_id]:
            bad.append(r.arch_id)
    assert bad == []
