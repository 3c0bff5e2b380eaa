"""Once-for-All families: builders against published figures, encodings, data, sampler, attacks."""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cgbench.cg import TraceCache, extract_cg
from cgbench.cg.counting import count_params, macs
from cgbench.loaders.base import LoaderError, ModuleCache
from cgbench.loaders.ofa import (
    DYNAST_FILES,
    HELP_ARCHS,
    HELP_FILES,
    MBCONV_SPACES,
    OFAPN,
    OFAMBv3,
    OFAResNet,
    arch_id,
    build_network,
    canonical_config,
    canonical_from_gennape,
    read_dynast,
    read_gennape_ofa_cache,
    read_help,
    read_torch_pickle,
    sample_configs,
    to_ofa_slots,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _cg(family: str, config, *, cache=None, traces=None):
    canonical = canonical_config(
        family, config, width=config.get("width") if isinstance(config, dict) else None
    )
    model = build_network(family, canonical, width=canonical.get("width"), cache=cache)
    return extract_cg(model, (3, canonical["r"], canonical["r"]), cache=traces)


# ---------------------------------------------------------------------------- specialised nets
# OFA's specialised nets (han-cai/files ofa/ofa_specialized/<id>/net.config; params and MACs from
# the OFA README), active blocks only, as listed in FAMILIES.md section 2.
SPECIALISED = [
    # id, family, width, r, depths, ks, e, params, MACs (M, README rounding)
    ("1080ti_gpu64-12ms_top1-72.6", "ofa_pn", 1.3, 128, "233441", "33355557373375753", "33644633436464336",
     5_903_488, 165.0),
    ("v100_gpu64-5ms_top1-71.6", "ofa_pn", 1.3, 128, "223331", "33533533373553", "33364464646444",
     5_186_720, 141.2),
    ("flops-389M_top1-79.1", "ofa_mbv3", 1.2, 224, "23344", "3355355355333373", "3336344364446663",
     8_386_544, 389.5),
    ("note10_lat-64ms_top1-80.2", "ofa_mbv3", 1.2, 260, "34444", "3335335553753333353",
     "3634633664466646663", 9_109_040, 743.1),
    ("LG-G8_lat-24ms_top1-76.4", "ofa_mbv3", 1.0, 220, "23334", "337535553755733", "334336434436664",
     5_809_576, 229.8),
]  # fmt: skip


@pytest.mark.parametrize("net", SPECIALISED, ids=[n[0] for n in SPECIALISED])
def test_specialised_nets_match_ofa_readme(net):
    from cgbench.loaders.ofa import build_mbconv_network

    _, family, width, r, depths, ks, e, params, mmacs = net
    blocks = iter(zip(ks, e, strict=True))
    stages = [[[int(k), int(x)] for k, x in (next(blocks) for _ in range(int(d)))] for d in depths]
    model = build_mbconv_network(MBCONV_SPACES[family], {"r": r, "width": width, "stages": stages})
    cg = extract_cg(model, (3, r, r))
    assert count_params(cg) == params == sum(p.numel() for p in model.parameters())
    assert round(macs(cg) / 1e6, 1) == mmacs


# ---------------------------------------------------------------------------- DyNAS-T oracle
@pytest.fixture(scope="module")
def dynast(upstream_dir):
    return read_dynast([upstream_dir / k for k in DYNAST_FILES])


@pytest.fixture(scope="module")
def help_rows(upstream_dir):
    return read_help(upstream_dir / HELP_ARCHS, {k: upstream_dir / v for k, v in HELP_FILES.items()})


def _dynast_check(archs: dict, limit: int | None) -> int:
    modules, traces = ModuleCache(), TraceCache()
    checked = 0
    for key, a in list(archs.items())[:limit]:
        cg = _cg("ofa_mbv3", a.config, cache=modules, traces=traces)
        assert (count_params(cg), macs(cg)) == (a.params, a.macs), key
        checked += 1
    return checked


def test_dynast_params_macs_subset(dynast):
    assert _dynast_check(dynast, 40) == 40


@pytest.mark.slow
def test_dynast_params_macs_all_rows(dynast):
    # 1,719 distinct encodings in the four files = 1,668 networks once inactive slots are masked
    assert _dynast_check(dynast, None) == 1668


def test_dynast_merge_and_spread(dynast, help_rows):
    archs = dynast
    assert len(archs) == 1668
    rows = sum(len(a.top1) for a in archs.values())
    assert rows == 364 + 540 + 361 + 554
    multi = [a for a in archs.values() if len(a.top1) > 1]
    assert multi and max(max(a.top1) - min(a.top1) for a in multi) < 0.2
    # the union of the two sources (no HELP config is in DyNAS-T: HELP varies the resolution)
    assert len(set(archs) | {r[0] for r in help_rows}) == 1668 + 5000


# ---------------------------------------------------------------------------- ResNet-50D
def _ofa_make_div(v: float) -> int:  # OFA's make_divisible(v, 8), written out independently
    new = max(8, int(v + 4) // 8 * 8)
    return new + 8 if new < 0.9 * v else new


STEM_OUT, STEM_MID = (40, 48, 64), (24, 24, 32)  # FAMILIES.md section 2
STAGE_W = ((168, 208, 256), (336, 408, 512), (664, 816, 1024), (1328, 1640, 2048))


def _resnet_params_closed_form(d, e, w) -> int:
    bn = 2
    mid, out = STEM_MID[w[0]], STEM_OUT[w[1]]
    total = 27 * mid + bn * mid + 9 * mid * out + bn * out
    if d[0] == 2:
        total += 9 * mid * mid + bn * mid
    c_in, slot = out, 0
    for s, (base, n_slots) in enumerate(zip((2, 2, 4, 2), (4, 4, 6, 4))):
        c = STAGE_W[s][w[s + 2]]
        for j in range(base + d[s + 1]):
            m = _ofa_make_div(round(c * e[slot + j]))
            total += c_in * m + 9 * m * m + m * c + bn * (2 * m + c)
            if not (j > 0 or (s == 0 and c_in == c)):  # first block of a stage: conv shortcut
                total += c_in * c + bn * c
            c_in = c
        slot += n_slots
    return total + c_in * 1000 + 1000


def test_resnet_params_closed_form():
    rng = np.random.default_rng(7)
    for _ in range(10):
        d = [int(rng.choice([0, 2]))] + [int(v) for v in rng.integers(0, 3, 4)]
        e = [float(rng.choice([0.2, 0.25, 0.35])) for _ in range(18)]
        w = [int(v) for v in rng.integers(0, 3, 6)]
        config = {"d": d, "e": e, "w": w, "r": int(rng.choice([128, 176, 224]))}
        with torch.device("meta"):  # shapes only: no weights allocated
            model = build_network("ofa_resnet", config)
        expected = _resnet_params_closed_form(d, e, w)
        assert sum(p.numel() for p in model.parameters()) == expected
        assert count_params(extract_cg(model, (3, config["r"], config["r"]))) == expected


# ---------------------------------------------------------------------------- encodings
MBV3_SLOTS = {
    "ks": [5, 7, 5, 5, 3, 3, 3, 7, 5, 5, 3, 7, 7, 3, 3, 3, 5, 5, 5, 5],
    "e": [4, 3, 4, 4, 4, 6, 3, 4, 4, 3, 4, 3, 3, 6, 6, 6, 4, 3, 4, 4],
    "d": [2, 3, 2, 4, 3],
    "r": [224],
}


def test_encodings_share_one_arch_id():
    base = canonical_config("ofa_mbv3", MBV3_SLOTS, width=1.0)
    other_inactive = {**MBV3_SLOTS, "ks": list(MBV3_SLOTS["ks"]), "r": np.int64(224)}
    other_inactive["ks"][3] = 7  # slot 3 is inactive (stage 0 has depth 2)
    dynast = "{'wid': None, " + repr({k: v for k, v in MBV3_SLOTS.items()})[1:]
    gennape = (224, [[f"mbconv3_e{e}_k{k}" for k, e in stage] for stage in base["stages"]])
    variants = [other_inactive, dynast, gennape, base, to_ofa_slots("ofa_mbv3", base)]
    ids = {arch_id("ofa_mbv3", canonical_config("ofa_mbv3", v, width=1.0)) for v in variants}
    assert ids == {arch_id("ofa_mbv3", base)}
    assert base["stages"][0] == [[5, 4], [7, 3]]
    assert canonical_from_gennape(gennape, width=1.0) == ("ofa_mbv3", base)


def test_resnet_and_pn_encodings():
    rn = {"d": [0, 1, 2, 0, 1], "e": [0.2] * 18, "w": [0, 1, 2, 0, 1, 2], "r": 208}
    c = canonical_config("ofa_resnet", rn)
    assert [len(s) for s in c["e"]] == [3, 4, 4, 3]
    variant = {**rn, "e": [0.2] * 3 + [0.35] + [0.2] * 14}  # inactive slot 3 differs
    assert arch_id("ofa_resnet", canonical_config("ofa_resnet", variant)) == arch_id("ofa_resnet", c)
    assert canonical_config("ofa_resnet", (208, {k: v for k, v in rn.items() if k != "r"})) == c
    assert canonical_config("ofa_resnet", repr(rn)) == c
    assert canonical_from_gennape((208, {"d": rn["d"], "e": rn["e"], "w": rn["w"]}))[1] == c
    pn = {"ks": [3] * 21, "e": [6] * 21, "d": [2, 2, 3, 4, 2, 1], "r": 192}
    cp = canonical_config("ofa_pn", pn)
    assert cp["width"] == 1.3 and [len(s) for s in cp["stages"]] == [2, 2, 3, 4, 2, 1]


@pytest.mark.parametrize(
    "family, config, needle",
    [
        ("ofa_mbv3", {**MBV3_SLOTS, "ks": MBV3_SLOTS["ks"][:19]}, "'ks' has 19 slots, expected 20"),
        ("ofa_mbv3", {**MBV3_SLOTS, "ks": [9] + MBV3_SLOTS["ks"][1:]}, "ks[0] = 9"),
        ("ofa_mbv3", {**MBV3_SLOTS, "d": [2, 3, 5, 4, 3]}, "d[2] = 5"),
        ("ofa_mbv3", {**MBV3_SLOTS, "r": [130]}, "r = 130"),
        ("ofa_mbv3", {**MBV3_SLOTS, "r": 256}, "r = 256"),
        ("ofa_mbv3", {**MBV3_SLOTS, "e": MBV3_SLOTS["e"][:5] + [5] + MBV3_SLOTS["e"][6:]}, "e[5] = 5"),
        ("ofa_mbv3", "{'ks': [3, 5", "not a Python literal"),
        ("ofa_mbv3", "__import__('os').system('true')", "not a Python literal"),
        ("ofa_mbv3", (224, [["mbconv3_e4_k9"] * 2] * 5), "kernel of stage 0 block 0"),
        ("ofa_mbv3", (224, [["mbconv2_e4_k3"] * 2] * 5), "is not 'mbconv3_e<E>_k<K>'"),
        ("ofa_mbv3", (224, [["mbconv3_e4_k3"] * 5] * 5), "depth of stage 0 = 5"),
        ("ofa_pn", {"ks": [3] * 21, "e": [3] * 21, "d": [2, 2, 2, 2, 2, 2], "r": 224}, "d[5] = 2"),
        ("ofa_pn", {"ks": [3] * 20, "e": [3] * 21, "d": [2] * 5 + [1], "r": 224}, "'ks' has 20 slots"),
        ("ofa_resnet", {"d": [1, 0, 0, 0, 0], "e": [0.2] * 18, "w": [0] * 6, "r": 224}, "d[0] = 1"),
        ("ofa_resnet", {"d": [0] * 5, "e": [0.2] * 17, "w": [0] * 6, "r": 224}, "'e' has 17 slots"),
        ("ofa_resnet", {"d": [0] * 5, "e": [0.3] + [0.2] * 17, "w": [0] * 6, "r": 224}, "e[0] = 0.3"),
        ("ofa_resnet", {"d": [0] * 5, "e": [0.2] * 18, "w": [0] * 5 + [3], "r": 224}, "w[5] = 3"),
        ("ofa_resnet", {"d": [0] * 5, "e": [0.2] * 18, "w": [0] * 6}, "no resolution"),
    ],
)
def test_bad_configs_name_the_slot(family, config, needle):
    with pytest.raises(LoaderError) as err:
        canonical_config(family, config, where="cfg#7")
    assert needle in str(err.value) and "cfg#7" in str(err.value)


# ---------------------------------------------------------------------------- sampler
def test_sampler_is_seeded_distinct_and_follows_the_space():
    a = sample_configs("ofa_mbv3", 300, seed=0)
    assert a == sample_configs("ofa_mbv3", 300, seed=0)
    assert a != sample_configs("ofa_mbv3", 300, seed=1)
    ids = [arch_id("ofa_mbv3", c) for c in a]
    assert len(set(ids)) == 300
    assert {c["r"] for c in a} == {192, 208, 224} and {c["width"] for c in a} == {1.2}
    depths = {len(s) for c in a for s in c["stages"]}
    assert depths == {2, 3, 4}
    ops = {tuple(b) for c in a for s in c["stages"] for b in s}
    assert len(ops) == 9
    pn = sample_configs("ofa_pn", 50, seed=0)
    assert all(len(c["stages"][-1]) == 1 for c in pn)
    rn = sample_configs("ofa_resnet", 200, seed=0)
    assert {c["d"][0] for c in rn} == {0, 2} and {c["r"] for c in rn} == {192, 208, 224}


def test_sampler_pinned():
    """The sample is versioned: these digests change only with SAMPLER_VERSION."""
    digests = {}
    for family in ("ofa_pn", "ofa_mbv3", "ofa_resnet"):
        ids = "\n".join(arch_id(family, c) for c in sample_configs(family, 100, seed=0))
        digests[family] = hashlib.sha256(ids.encode()).hexdigest()[:16]
    assert digests == PINNED_SAMPLE_DIGESTS


PINNED_SAMPLE_DIGESTS = {
    "ofa_pn": "dd38dc22c2e1411b",
    "ofa_mbv3": "aff5d105f5b06967",
    "ofa_resnet": "42e840e548e10bf2",
}


# ---------------------------------------------------------------------------- HELP and attacks
def test_help_latencies(help_rows):
    rows = help_rows
    assert len(rows) == 5000 and len({r[0] for r in rows}) == 5000
    assert len(rows[0][2]) == 12 and all(v > 0 for v in rows[0][2].values())
    assert {r[1]["r"] for r in rows} == set(range(128, 225, 4))


def _torch_zip(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
    return path


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled",))


def test_help_file_with_foreign_globals_is_refused(tmp_path, capsys):
    bad = _torch_zip(tmp_path / "v100_1.pt", pickle.dumps([1.0, _Evil()], protocol=2))
    with pytest.raises(LoaderError, match=r"refusing to unpickle (__builtin__|builtins)\.print: HELP"):
        read_torch_pickle(bad)
    assert "unpickled" not in capsys.readouterr().out
    odd = _torch_zip(tmp_path / "odd.pt", pickle.dumps([1.0, "x"], protocol=2))
    with pytest.raises(LoaderError, match="entry 1: 'x' is not a finite latency"):
        read_help(
            _torch_zip(tmp_path / "a.pt", pickle.dumps({"arch": [MBV3_SLOTS, MBV3_SLOTS]}, protocol=2)),
            {("v100", 1): odd},
        )
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(_torch_zip(tmp_path / "full.pt", pickle.dumps([1.0] * 100)).read_bytes()[:60])
    with pytest.raises(LoaderError, match="corrupt or truncated"):
        read_torch_pickle(truncated)


def test_truncated_dynast_csv(upstream_dir, tmp_path):
    src = upstream_dir / DYNAST_FILES[0]
    text = src.read_bytes()
    cut = tmp_path / src.name
    cut.write_bytes(text[: len(text) // 2])
    with pytest.raises(LoaderError, match=rf"{cut.name}, row \d+"):
        read_dynast([cut])


# ---------------------------------------------------------------------------- GENNAPE caches
def test_gennape_ofa_cache_fixture():
    mb = list(read_gennape_ofa_cache(FIXTURES / "gennape_ofa_cache_mini.pkl", "ofa_mbv3"))
    pn = list(read_gennape_ofa_cache(FIXTURES / "gennape_ofa_cache_mini.pkl", "ofa_pn"))
    rn = list(read_gennape_ofa_cache(FIXTURES / "gennape_ofa_resnet_cache_mini.pkl", "ofa_resnet"))
    assert (len(mb), len(pn), len(rn)) == (2, 1, 2)
    assert mb[0].labels["accuracy"] == pytest.approx(0.7712) and mb[0].config["width"] == 1.2
    assert mb[0].input_shape == (3, 224, 224) and pn[0].input_shape == (3, 208, 208)
    assert [len(s) for s in pn[0].config["stages"]] == [2, 3, 4, 2, 2, 1]
    assert rn[1].config["d"] == [0, 2, 2, 0, 1] and rn[0].labels["params_gennape"] == 2.4e7
    for fam, recs in (("ofa_mbv3", mb), ("ofa_pn", pn), ("ofa_resnet", rn)):
        for r in recs:
            assert _cg(fam, r.config).num_nodes > 50


def test_gennape_cache_with_foreign_globals(tmp_path):
    bad = tmp_path / "gpi_ofa_comp_graph_cache.pkl"
    bad.write_bytes(pickle.dumps([{"original config": _Evil()}]))
    with pytest.raises(LoaderError, match="refusing to unpickle"):
        list(read_gennape_ofa_cache(bad, "ofa_mbv3"))


# ---------------------------------------------------------------------------- builds
def _mirror(upstream_dir: Path, tmp_path: Path, truncate: str | None = None) -> Path:
    mirror = tmp_path / "mirror"
    for key in (*DYNAST_FILES, HELP_ARCHS, *HELP_FILES.values()):
        dst = mirror / key
        dst.parent.mkdir(parents=True, exist_ok=True)
        if key == truncate:
            data = (upstream_dir / key).read_bytes()
            dst.write_bytes(data[: len(data) - 200])
        else:
            dst.symlink_to(upstream_dir / key)
    return mirror


def test_build_labelled_mbv3_and_read_with_datasets(upstream_dir, tmp_path):
    import datasets

    from cgbench.benchmarks.build import build_family

    fam = OFAMBv3()
    result = build_family(
        fam, root=tmp_path / "home", mirror=str(upstream_dir), offline=True, limit=30, workers=1
    )
    files = sorted(str(p) for p in result.path.glob("*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert ds.num_rows == 30 and "lat_v100_64" in ds.column_names
    assert all(r["in_dynast"] != r["in_help"] for r in ds)
    assert all((r["accuracy"] is None) == r["in_help"] for r in ds)
    row = ds[0]
    assert row["input_shape"][1] == int(row["arch_id"].split("-")[1][1:])


def test_build_samples_and_nothing_half_written(upstream_dir, tmp_path):
    from cgbench.benchmarks.build import build_family
    from cgbench.benchmarks.download import SourceError

    for family in (OFAPN(sample=12), OFAResNet(sample=12), OFAMBv3(sample=12)):
        result = build_family(family, root=tmp_path / "home", offline=True, workers=1)
        assert result.rows == 12
    home = tmp_path / "home2"
    mirror = _mirror(upstream_dir, tmp_path, truncate=DYNAST_FILES[1])
    with pytest.raises((LoaderError, SourceError)):
        build_family(OFAMBv3(), root=home, mirror=str(mirror), offline=True, workers=1)
    assert not (home / "ofa_mbv3").exists()


def test_mbv3_width_option():
    with pytest.raises(LoaderError, match="width 1.0"):
        OFAMBv3(width=1.2)
    assert OFAMBv3(sample=5).width == 1.2 and OFAMBv3().width == 1.0


def test_torch_pickle_reader_matches_restricted_torch_load(upstream_dir):
    """Cross-check: torch.load(weights_only=True) with only NumPy's scalar globals allowed."""
    np_core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    path = upstream_dir / HELP_FILES[("v100", 1)]
    allowed = [(np_core.scalar, "numpy.core.multiarray.scalar"), np.dtype, type(np.dtype(np.float64))]
    with torch.serialization.safe_globals(allowed):
        ref = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)
    assert [float(v) for v in ref] == read_torch_pickle(path)


def test_tasks_use_the_subset_where_the_label_exists():
    from cgbench.benchmarks.tasks import TaskError, official_tasks, parse_task

    assert (
        parse_task("nb101->ofa_mbv3/imagenet:zero-shot").name == "nb101->ofa_mbv3-dynast/imagenet:zero-shot"
    )
    assert parse_task("ofa_mbv3/lat-v100-64:in-family").subset == "help"
    with pytest.raises(TaskError, match="exists only on subset 'dynast'"):
        parse_task("ofa_mbv3-help/imagenet:zero-shot")
    names = [t.name for t in official_tasks()]
    assert len(names) == len(set(names)) and "ofa_mbv3-help/imagenet:zero-shot" not in names
    assert (
        "nb101->ofa_mbv3-dynast/imagenet:zero-shot" in names
        and "ofa_mbv3-help/lat-2080ti-1:in-family" in names
    )
