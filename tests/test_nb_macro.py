"""NAS-Bench-Macro loader: the network against the file's published params and FLOPs, the label
reader (seeds, mean, bad files) and the build engine on top."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cgbench.cg import TraceCache, count_flops, count_params, extract_cg
from cgbench.loaders import nb_macro
from cgbench.loaders.base import LoaderError, ModuleCache

SOURCE = nb_macro.SOURCE


@pytest.fixture(scope="module")
def macro_file(upstream_dir: Path) -> dict:
    return json.loads((upstream_dir / SOURCE).read_text())


def _fidelity(table: dict, archs: list[str]) -> list[tuple[str, int, int, float, float]]:
    """Archs whose params or MACs differ from the file's ``params`` / ``flops``."""
    modules, traces = ModuleCache(), TraceCache()
    bad = []
    for arch in archs:
        cg = extract_cg(nb_macro.build_network(arch, cache=modules), (3, 32, 32), cache=traces)
        params, flops = count_params(cg), count_flops(cg, "macs")
        if params != table[arch]["params"] or flops != table[arch]["flops"]:
            bad.append((arch, params, table[arch]["params"], flops, table[arch]["flops"]))
    return bad


def test_params_and_flops_equal_the_file_on_a_sample(macro_file):
    archs = sorted(macro_file)[::9]  # 729 archs; every choice at every layer occurs
    assert len(archs) == 729
    assert _fidelity(macro_file, archs) == []


@pytest.mark.slow
def test_params_and_flops_equal_the_file_for_all_6561(macro_file):
    assert len(macro_file) == nb_macro.NUM_ARCHS
    assert _fidelity(macro_file, sorted(macro_file)) == []


def test_untied_network_runs_and_counts_like_torch(macro_file):
    for arch in ("00000000", "22222222", "12012021"):
        net = nb_macro.build_network(arch)
        assert sum(p.numel() for p in net.parameters()) == macro_file[arch]["params"]
        with torch.no_grad():
            assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    # the identity choice keeps no module when stride 1, a 1x1 projection when it downsamples
    names = [type(m).__name__ for m in nb_macro.build_network("00000000").features]
    assert names == [
        "ConvBlock",
        "Identity",
        "ConvBlock",
        "Identity",
        "Identity",
        "ConvBlock",
        "Identity",
        "Identity",
    ]


@pytest.mark.parametrize("arch", ["0120", "012012013", "0120121x", None, 12])
def test_bad_arch_strings_are_named(arch):
    with pytest.raises(LoaderError, match="not a NAS-Bench-Macro arch"):
        nb_macro.parse_arch(arch)


def test_records_keep_seeds_and_mean(upstream_dir, macro_file):
    fam = nb_macro.NBMacro()
    records = list(fam.iter_records({SOURCE: upstream_dir / SOURCE}))
    assert len(records) == 6561 and len({r.arch_id for r in records}) == 6561
    r = next(r for r in records if r.arch_id == "22222222")
    seeds = [r.labels[f"test_acc_seed{i}"] for i in range(3)]
    assert seeds == pytest.approx([v / 100 for v in macro_file["22222222"]["test_acc"]])
    assert r.labels["accuracy"] == pytest.approx(macro_file["22222222"]["mean_acc"] / 100)
    assert r.tags["num_identity"] == 0 and r.config == {"arch": "22222222"}
    assert set(r.labels) - {"accuracy"} <= set(fam.label_columns)
    with pytest.raises(LoaderError, match="cgbench download nb_macro"):
        list(fam.iter_records({}))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"01201201": {"mean_acc": 90.0}}, "arch '01201201'.*test_acc"),
        ({"01201201": {"test_acc": [90.0, 91.0]}}, "2 values, expected 3 seeds"),
        ({"01201201": {"test_acc": [90.0, "x", 91.0]}}, "test_acc: expected a number"),
        ({"0120120": {"test_acc": [90.0, 91.0, 92.0]}}, "'0120120' is not a NAS-Bench-Macro arch"),
        ([1, 2], "expected an object"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path, entry, message):
    path = tmp_path / "nas-bench-macro_cifar10.json"
    path.write_text(json.dumps(entry))
    with pytest.raises(LoaderError, match=message) as err:
        list(nb_macro.NBMacro().iter_records({SOURCE: path}))
    assert str(path) in str(err.value)


def test_build_engine_end_to_end(tmp_path, upstream_dir):
    import pyarrow.parquet as pq

    from cgbench.benchmarks.build import build_family

    result = build_family("nb_macro", root=tmp_path, mirror=upstream_dir, workers=1, limit=30, chunk_size=16)
    assert result.rows == 30
    rows = [
        r
        for f in sorted(Path(result.path).resolve().rglob("*.parquet"))
        for r in pq.read_table(f).to_pylist()
    ]
    assert len(rows) == 30
    for row in rows:
        assert row["params"] == row["params_upstream"] and row["flops"] == row["flops_upstream"]
        assert 0.1 < row["accuracy"] < 1.0
