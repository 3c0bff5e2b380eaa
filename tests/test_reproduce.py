"""``cgbench reproduce``: the smoke profile end to end on a small store, paper numbers, errors."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest

from cgbench.predictors.reproduce import PROFILES, TARGETS, ReproduceError, paper_table, reproduce


def test_paper_numbers_ship_with_the_package() -> None:
    rows = paper_table()
    cells = {(r["table"], r["family"], r["setting"], r["method"], r["metric"]): r["mean"] for r in rows}
    assert cells[("T5", "nb201", "zero-shot", "gennape", "srcc")] == pytest.approx(0.8146)
    assert cells[("T3", "nb101", "in-family", "kgnn", "srcc")] == pytest.approx(0.814)
    # the leaderboard's lookup path
    from importlib import resources

    assert resources.files("cgbench.predictors").joinpath("data/paper_tables.csv").is_file()


def test_bad_requests_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ReproduceError, match="unknown table.*T7"):
        reproduce(["T7"], out=tmp_path)
    with pytest.raises(ReproduceError, match="unknown profile 'fast'"):
        reproduce(["T5"], profile="fast", out=tmp_path)
    with pytest.raises(ReproduceError, match="unknown learned predictor"):
        reproduce(["T5"], predictors=["xgb"], out=tmp_path)
    with pytest.raises(ReproduceError, match="unknown target"):
        reproduce(["T5"], targets=["cifar"], out=tmp_path)
    with pytest.raises(ReproduceError, match="seeds"):
        reproduce(["T5"], seeds=0, out=tmp_path)


def test_profiles_and_offline_reasons() -> None:
    assert PROFILES["quick"].seeds == (0, 1) and PROFILES["quick"].reduced
    assert PROFILES["full"].epochs == 40 and len(PROFILES["full"].seeds) == 5 and not PROFILES["full"].reduced
    offline = {t.family for t in TARGETS if t.stem is not None}
    assert set(PROFILES["quick"].targets) == offline == {"nb201", "nb301", "ofa_mbv3", "nb_macro", "anb"}
    assert "HiAML labels" in next(t.reason for t in TARGETS if t.family == "hiaml")


@pytest.fixture(scope="module")
def two_families(nb201_store, upstream_dir, tmp_path_factory):
    """A data root with 150 NB-301 archs (the source) and the 300-arch NB-201 test store."""
    from cgbench.benchmarks.build import build_family

    root = tmp_path_factory.mktemp("reproduce_root")
    build_family("nb301", root=root, mirror=upstream_dir, limit=150, workers=1)
    (root / "nb201").symlink_to((nb201_store / "nb201").resolve())
    return root


def test_smoke_profile_end_to_end(two_families, tmp_path) -> None:
    """Source NB-301 and target NB-201 (small test stores): train, evaluate through the harness,
    write every output, fill the paper column, give reasons for cells that cannot run."""
    out = tmp_path / "rep"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = reproduce(
            ["T3", "T5", "T6"],
            profile="smoke",
            source="nb301",
            targets=["nb201"],
            root=two_families,
            predictors=["kgnn"],
            out=out,
            workers=1,
            echo=lambda s: None,
        )
    for name in ("results.json", "results.csv", "tables.md"):
        assert (out / name).is_file()
    rows = result["rows"]
    # every cell: our number, or the reason it has none; the paper's number wherever it has one
    assert all(r["ours_mean"] is not None or r["reason"] for r in rows)
    assert all(r["label"] for r in rows)
    assert any(p.startswith("t5_") and p.endswith(".png") for p in result["files"]), result["files"]
    zs = [r for r in rows if r["table"] == "T5" and r["family"] == "nb201" and r["method"] == "kgnn"]
    assert {r["setting"] for r in zs} == {"zero-shot", "fine-tune-50"}
    assert all(r["ours_mean"] is not None for r in zs), zs
    assert next(r for r in zs if r["setting"] == "zero-shot")["paper_mean"] == pytest.approx(0.4930)
    flops = [r for r in rows if r["method"] == "flops" and r["table"] == "T6"]
    assert flops and all(r["ours_mean"] is not None for r in flops)
    hiaml = [r for r in rows if r["family"] == "hiaml"]
    assert hiaml and all(r["ours_mean"] is None and "HiAML labels" in r["reason"] for r in hiaml)
    t3 = [r for r in rows if r["table"] == "T3"]
    assert {r["metric"] for r in t3} == {"srcc", "mae_pct"}
    md = (out / "tables.md").read_text()
    assert "Reduced setting" in md and "Table 5" in md
    # the source model was trained once and found in the cache by the evaluation
    assert len(list((out / "cache").glob("kgnn-*.safetensors"))) == 1
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["training"][0]["predictor"] == "kgnn"
    # a rerun trains nothing
    again = _smoke_t5(two_families, out, workers=1)
    assert all(r["cached"] for r in again["meta"]["training"])
    # ... and evaluates nothing: every finished cell is read back with the same numbers
    assert again["meta"]["evaluation"] and all(c["cached"] for c in again["meta"]["evaluation"])
    t5 = lambda rows: [r for r in rows if r["table"] == "T5"]  # noqa: E731
    assert t5(again["rows"]) == t5(rows)


def _smoke_t5(root, out, workers: int) -> dict:
    """Table 5 of the smoke profile: k-GNN trained on NB-301, scored on NB-201."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reproduce(
            ["T5"], profile="smoke", source="nb301", targets=["nb201"], root=root, predictors=["kgnn"],
            out=out, workers=workers, plots=False, echo=lambda s: None,
        )  # fmt: skip


def test_engine_requests_are_checked(tmp_path) -> None:
    with pytest.raises(ReproduceError, match="unknown engine 'spark'"):
        reproduce(["T5"], engine="spark", out=tmp_path)
    with pytest.raises(ReproduceError, match="--ray-address only applies to --engine ray"):
        reproduce(["T5"], ray_address="127.0.0.1:6379", out=tmp_path)


@pytest.mark.slow
def test_local_engine_processes_give_the_in_process_numbers(two_families, tmp_path) -> None:
    """Two spawned workers (the engine path) and one in-process run give the same table."""
    runs = {workers: _smoke_t5(two_families, tmp_path / f"w{workers}", workers) for workers in (1, 2)}
    key = lambda r: (r["family"], r["setting"], r["method"], r["metric"], r["ours_mean"])  # noqa: E731
    assert sorted(map(key, runs[1]["rows"]), key=str) == sorted(map(key, runs[2]["rows"]), key=str)


def test_missing_family_is_a_reason_not_a_crash(nb201_store, tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = reproduce(
            ["T5"],
            profile="smoke",
            source="nb201",
            targets=["nb301"],
            root=nb201_store,
            predictors=[],
            out=tmp_path,
            workers=1,
            plots=False,
            echo=lambda s: None,
        )
    cells = [r for r in result["rows"] if r["family"] == "nb301" and r["method"] == "flops"]
    assert cells and all(r["ours_mean"] is None and "nb301" in r["reason"] for r in cells)
    assert not list(tmp_path.glob("cells/*.json"))  # a failed cell is not kept: a rerun retries it


def test_each_baseline_trains_its_own_layer_type() -> None:
    """gcn and gin were trained as k-GNN (the profile started from the base config, conv=graphconv):
    every reproduce config keeps the layer type its predictor class defines."""
    from cgbench.predictors.gnn import GCN, GIN, KGNN
    from cgbench.predictors.reproduce import predictor_config

    for name, cls, conv in (("kgnn", KGNN, "graphconv"), ("gcn", GCN, "gcn"), ("gin", GIN, "gin")):
        cfg = predictor_config(name, PROFILES["quick"], "cpu", None)
        assert cfg.conv == conv == cls().config.conv, name
        assert cfg.epochs == PROFILES["quick"].epochs


def test_full_profile_trains_cgb_rank_with_its_own_defaults() -> None:
    """The full profile is "each predictor's own settings on all the data". cgb-rank's training
    length was chosen on the development targets (perf/transfer_curve_cgb_rank.py: transfer falls
    after ~60 Adam steps), so no profile may impose the baselines' 40 epochs (the full profile did:
    the 40-epoch models scored below FLOPs alone on every development target but ANB)."""
    from cgbench.predictors.ours import CgbRank
    from cgbench.predictors.reproduce import predictor_config

    own = CgbRank().config
    cfg = predictor_config("cgb-rank", PROFILES["full"], "cpu", None)
    assert (cfg.epochs, cfg.max_steps, cfg.n_members) == (own.epochs, own.max_steps, own.n_members)
    assert cfg.max_train is None
    assert PROFILES["full"].ours_epochs is None  # taken from the predictor, not a second copy
    assert PROFILES["full"].ours_members is None
    # the script's choice; change it only with the script's table (docs/predictors.md)
    assert (own.epochs, own.max_steps, own.flops_prior, own.featuriser) == (1, 63, 0.5, "feat/cgbench-4")
    assert cfg.flops_prior == own.flops_prior and cfg.featuriser == own.featuriser
    quick = predictor_config("cgb-rank", PROFILES["quick"], "cpu", None)  # quick: fewer archs to draw from
    assert (quick.epochs, quick.max_steps) == (own.epochs, own.max_steps)
    assert PROFILES["quick"].ours_epochs is None
    assert predictor_config("kgnn", PROFILES["full"], "cpu", None).epochs == 40  # the paper's
    # a profile that names cgb-rank's epochs gets those epochs whole, not cut at the 63-step cap
    longer = dataclasses.replace(PROFILES["quick"], ours_epochs=3)
    named = predictor_config("cgb-rank", longer, "cpu", None)
    assert (named.epochs, named.max_steps) == (3, None)


def test_cells_use_the_runs_models_even_if_the_code_changes_meanwhile(
    two_families, tmp_path, monkeypatch
) -> None:
    """The predictors' code digest is taken once per run: an edit on disk between the training
    phase and the cells must not make the cells retrain (it did, silently, for 40-minute models)."""
    import itertools

    import cgbench.predictors.base as base

    edits = itertools.count()
    monkeypatch.setattr(base, "source_digest", lambda *packages: f"edit {next(edits)}")  # each read differs
    out = tmp_path / "rep"
    result = _smoke_t5(two_families, out, workers=1)
    assert [r["cached"] for r in result["meta"]["training"]] == [False]
    assert len(list((out / "cache").glob("kgnn-*.safetensors"))) == 1  # the cells trained nothing
