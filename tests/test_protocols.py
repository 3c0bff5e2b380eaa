"""Tasks, splits and protocols: what each predictor is fit on and scored on, on toy and real data."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from cgbench.benchmarks.tasks import (
    DEFAULT_SEEDS,
    LABELS,
    SPLIT_FRACTIONS,
    SPLITS_FORMAT,
    SUBSETS,
    TaskError,
    arch_groups,
    fine_tune_sample,
    in_family_split,
    is_label_column,
    load_split_file,
    official_tasks,
    parse_task,
    population_of,
    rule_order,
    split_salt,
)
from cgbench.cg.graph import ComputationGraph
from cgbench.eval.baselines import summary_features
from cgbench.eval.data import HiddenColumnError, TableDataset, UnknownColumnError
from cgbench.eval.predictor import BasePredictor, PredictorError, predictor_spec
from cgbench.eval.protocols import (
    PartialLabelWarning,
    ProtocolError,
    UnofficialSplitWarning,
    evaluate,
    prepare_task,
)
from cgbench.eval.validation import ValidationError
from cgbench.loaders.base import ArchRecord, Family

pytestmark = pytest.mark.filterwarnings("ignore::cgbench.eval.protocols.UnofficialSplitWarning")


# ---------------------------------------------------------------------------- toy families
class ToyFamily(Family):
    dataset = "toy"
    input_shape = (3, 8, 8)

    def __init__(self, name: str, labels: dict[str, str], tags: dict[str, tuple[str, str]]):
        self.name = name
        self.label_columns = labels
        self.tag_columns = tags


def _graph(n_convs: int, n_relus: int = 1) -> ComputationGraph:
    ops = ["input", *["conv"] * n_convs, *["relu"] * n_relus, "output"]
    n = len(ops)
    res = [[8, 8, 8, 8, 4, 4]] * n
    weight = [[4, 4, 3, 3] if op == "conv" else [0, 0, 0, 0] for op in ops]
    edges = [[i, i + 1] for i in range(n - 1)]
    return ComputationGraph.from_op_names(ops, res, weight, [False] * n, edges, (3, 8, 8))


def toy_dataset(family: str, n: int, label: str, *, seed: int = 0, nan_at: int | None = None):
    """``n`` distinct chain graphs with 1-4 convs (and 1 + i // 4 relus); the label grows with
    the conv count plus noise; every third arch has ``has_none``."""
    rng = np.random.default_rng(seed)
    fam = ToyFamily(
        family,
        {} if label == "accuracy" else {label: "toy label"},
        {"has_none": ("bool", "toy subset flag"), "is_unique": ("bool", "toy")},
    )
    records, graphs = [], []
    for i in range(n):
        convs = 1 + i % 4
        acc = 0.5 + 0.1 * convs + rng.normal(0, 0.02)
        if i == nan_at:
            acc = None
        records.append(
            ArchRecord(
                arch_id=f"{family}-{i:04d}",
                config={"convs": convs},
                labels={"accuracy": acc, label: acc},
                tags={"has_none": i % 3 == 0, "is_unique": True},
            )
        )
        graphs.append(_graph(convs, 1 + i // 4))
    return TableDataset.from_records(fam, records, graphs)


@pytest.fixture(scope="module")
def toys():
    return {
        "nb201": toy_dataset("nb201", 120, "val_acc_cifar10_valid"),
        "nb101": toy_dataset("nb101", 80, "accuracy", seed=1),
    }


class Recorder(BasePredictor):
    """Remembers what the harness gave it; predicts the conv count (a good ranking)."""

    calls: list = []

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, graphs, labels, valid_graphs=None, valid_labels=None):
        Recorder.calls.append(
            (
                "fit",
                self.seed,
                graphs.family,
                list(graphs.arch_ids),
                len(labels),
                None if valid_graphs is None else len(valid_graphs),
            )
        )
        return self

    def fine_tune(self, graphs, labels):
        Recorder.calls.append(("fine_tune", self.seed, graphs.family, list(graphs.arch_ids)))

    def predict(self, graphs):
        Recorder.calls.append(("predict", self.seed, graphs.family, list(graphs.arch_ids)))
        return np.array([g.num_nodes for g in graphs], dtype=float)


@pytest.fixture
def recorder():
    Recorder.calls = []
    return predictor_spec(Recorder, name="recorder")


# ---------------------------------------------------------------------------- task names
def test_parse_task_examples():
    t = parse_task("nb201/cifar10-valid:fine-tune-50")
    assert (t.family, t.label, t.protocol, t.n_fine_tune, t.source) == (
        "nb201",
        "val_acc_cifar10_valid",
        "fine-tune",
        50,
        None,
    )
    t = parse_task("nb101->nb201-nonone/cifar10-valid:zero-shot")
    assert (t.source, t.source_label, t.subset) == ("nb101", "accuracy", "nonone")
    assert t.subset_filter.column == "has_none" and t.subset_filter.value is False
    assert parse_task("nb201/cifar10-valid:fine-tune").name == "nb201/cifar10-valid:fine-tune-50"
    assert parse_task("nb101/cifar10:in-family").seeds == (0, 1, 2, 3, 4)
    assert parse_task("nb101/cifar10:in-family", seeds=[3]).seeds == (3,)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nb201:zero-shot", "malformed task name"),
        ("nb201/cifar10-valid:few-shot", "malformed task name"),
        (
            "nb999/cifar10:zero-shot",
            "unknown family 'nb999'; known: anb, hiaml, inception, nb101, nb201, nb301, nb_macro",
        ),
        ("nb201/cifar11:zero-shot", "family 'nb201' has no label 'cifar11'; known: cifar10, "),
        ("nb201-small/cifar10-valid:zero-shot", "no subset 'small'; known: nonone, unique"),
        ("nb101-nonone/cifar10:zero-shot", "family 'nb101' has no subset 'nonone'; known: (none)"),
        ("nb999->nb201/cifar10-valid:zero-shot", "unknown source family 'nb999'"),
        ("nb101->nb201/cifar10-valid:in-family", "in-family tasks have no source family"),
        ("nb201/cifar10-valid:fine-tune-0", "fine-tune needs at least 1 sample"),
        ("nb201->nb201/cifar10-valid:zero-shot", "source and target are both 'nb201'"),
    ],
)
def test_bad_task_names_say_what_is_wrong(name, message):
    with pytest.raises(TaskError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_task(name)


def test_official_tasks_parse_and_are_unique():
    names = [t.name for t in official_tasks()]
    assert len(names) == len(set(names))
    for example in (
        "nb201/cifar10-valid:fine-tune-50",
        "nb101->nb201/cifar10-valid:zero-shot",
        "nb201-nonone/cifar10-valid:zero-shot",
        "nb101/cifar10:in-family",
    ):
        assert example in names
    assert all(parse_task(n).name == n for n in names)


@pytest.mark.parametrize(
    ("column", "hidden"),
    [
        ("accuracy", True),
        ("val_acc_cifar10_valid", True),
        ("acc_gennape", True),
        ("test_acc_108_run1", True),
        ("train_time_108", True),
        ("epochs_trained", True),
        ("flops", False),
        ("zc_synflow", False),
        ("flops_gennape", False),
        ("has_none", False),
        ("hw_cifar10_valid_fpga_latency", False),
    ],
)
def test_training_outcomes_are_label_columns(column, hidden):
    assert is_label_column(column) is hidden


# ---------------------------------------------------------------------------- splits
def test_split_rule_is_order_independent_and_disjoint():
    ids = [f"arch-{i}" for i in range(1000)]
    split = in_family_split(ids, "toy")
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert in_family_split(shuffled, "toy") == split
    assert [len(split[k]) for k in ("train", "valid", "test")] == [800, 100, 100]
    assert set(itertools.chain(*split.values())) == set(ids)
    assert in_family_split(ids, "other") != split  # salted per family


def test_fine_tune_sample_of_a_subset_is_the_first_of_the_family_order():
    ids = [f"arch-{i}" for i in range(500)]
    subset = [a for a in ids if int(a.split("-")[1]) % 2]
    order = [a for a in rule_order(ids, "toy") if a in set(subset)]
    assert fine_tune_sample(subset, "toy", 20) == order[:20]
    with pytest.raises(TaskError, match="fine-tune sample of 50 needs more than 50 distinct networks"):
        fine_tune_sample(ids[:50], "toy", 50)


def _all_nb201_arch_ids() -> list[str]:
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    out = []
    for o in itertools.product(ops, repeat=6):
        out.append(f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|")
    return out


def _nb201_groups(ids: list[str]) -> dict[str, str]:
    """NB-201's networks: cells with the same canonical form (``unique_id``) are one network
    (``cg_hash`` is distinct for every NB-201 cell, so it joins nothing there)."""
    from cgbench.loaders.nb201 import canonical_arch

    return arch_groups(ids, {"unique_id": [canonical_arch(a) for a in ids]})


def test_stored_nb201_splits_follow_the_rule():
    stored = load_split_file("nb201")
    assert stored is not None
    ids = _all_nb201_arch_ids()
    nonone = [a for a in ids if "none~" not in a]
    groups, groups_nonone = _nb201_groups(ids), _nb201_groups(nonone)
    assert stored.verify(ids, None, groups=groups) and stored.verify(nonone, "nonone", groups=groups_nonone)
    assert len(nonone) == 4096 and len(set(groups.values())) == 9445
    assert stored.fine_tune_ids(None, 50) == fine_tune_sample(ids, "nb201", 50, groups)
    assert stored.fine_tune_ids(None, 50, seed=3) == fine_tune_sample(ids, "nb201", 50, groups, seed=3)
    assert stored.fine_tune_ids("nonone", 50) == fine_tune_sample(nonone, "nb201", 50, groups_nonone)
    scope = stored.scope(None)["in_family"]
    split = in_family_split(ids, "nb201", groups)
    assert [scope[k]["n"] for k in ("train", "valid", "test")] == [len(split[k]) for k in scope]
    # a network is wholly on one side
    side = {groups[a]: k for k, v in split.items() for a in v}
    assert all(side[groups[a]] == k for k, v in split.items() for a in v)
    # other groups of the same ids: not official
    official, why = stored.check(ids, None, None, {a: a for a in ids})
    assert not official and "groups its 15,625 nb201 archs into 15,625 networks" in why


def _manifest(population: dict, **build) -> dict:
    """A store manifest built like ``population`` (with ``build`` entries changed)."""
    return {
        "sources": [{"key": k, "file": k.rsplit("/", 1)[-1]} for k in population["sources"]],
        "build": {**population["build"], "chunk_size": 500, **build},
    }


def test_split_population_semantics():
    stored = load_split_file("nb201")
    frozen = stored.population
    ids = _all_nb201_arch_ids()
    same_build = _manifest(frozen)
    assert population_of(same_build) == {"sources": frozen["sources"], "build": frozen["build"]}
    # the frozen ids: official, however the store was built (the split depends only on the ids)
    assert stored.check(ids, None, same_build) == (True, None)
    assert stored.check(ids, None, {"sources": [], "build": {"key": "other"}}) == (True, None)
    assert stored.verify(ids, None)
    # another population: a --limit build, other sources, or no build record: unofficial
    official, why = stored.check(ids[:300], None, _manifest(frozen, limit=300))
    assert not official and why.startswith(
        "no frozen split for this population (300 nb201 archs, frozen on 15,625"
    )
    assert "limit=300" in why and "splits follow the same rule on this store's archs" in why
    superset = [*ids, "|extra~0|"]
    official, why = stored.check(superset, None, {"sources": [{"key": "nb201/x.pth"}], "build": {"key": "k"}})
    assert not official and "sources: nb201/x.pth; frozen on: nb201/naslib_run" in why
    changed = [*ids[:-1], "|renamed~0|"]
    official, why = stored.check(changed, None, _manifest(frozen, key="0123456789abcdef"))
    assert not official and "15,625 other nb201 archs" in why and "key=0123456789abcdef" in why
    official, why = stored.check(changed, None, None)
    assert not official and "the store's manifest does not say how it was built" in why
    # same sources, same build options, same count, other ids: corruption, an error
    with pytest.raises(TaskError, match="same sources with the same build options .* but different arch ids"):
        stored.check(changed, None, same_build)
    with pytest.raises(TaskError, match="nb201-nonone: the store was built from the same sources"):
        nonone = [a for a in ids if "none~" not in a]
        stored.check([*nonone[:-1], "|renamed~0|"], "nonone", same_build)


# ---------------------------------------------------------------------------- every split file
SPLIT_FILES = sorted(Path(str(resources.files("cgbench.benchmarks") / "splits")).glob("*.json"))


def _sha(ids) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def test_split_files_exist_for_every_family():
    assert {p.stem for p in SPLIT_FILES} == set(LABELS)


@pytest.mark.parametrize("path", SPLIT_FILES, ids=lambda p: p.stem)
def test_split_file_is_consistent_with_the_rule(path):
    """What the file itself allows: format, salt, population, split sizes from the fractions,
    fine-tune samples in rule order."""
    family = path.stem
    data = json.loads(path.read_text())
    assert data["format"] == SPLITS_FORMAT and data["family"] == family
    assert data["salt"] == split_salt(family) and data["fractions"] == list(SPLIT_FRACTIONS)
    population = data["population"]
    assert population["family"] == family and population["build"]["limit"] is None
    assert isinstance(population["sources"], list) and "chunk_size" not in population["build"]
    assert set(data["scopes"]) == {"all", *SUBSETS.get(family, {})}
    assert (data["scopes"]["all"]["n"], data["scopes"]["all"]["sha256"]) == (
        population["n"],
        population["sha256"],
    )
    for scope in data["scopes"].values():
        n = scope["n"]
        sizes = {k: v["n"] for k, v in scope["in_family"].items()}
        n_train, n_valid = round(SPLIT_FRACTIONS[0] * n), round(SPLIT_FRACTIONS[1] * n)
        assert sizes == {"train": n_train, "valid": n_valid, "test": n - n_train - n_valid}
        assert n >= scope["groups"]["n"] > 0
        for size, entry in scope["fine_tune"].items():
            samples = [entry["fixed"], *entry["seeds"].values()]
            assert sorted(entry["seeds"]) == sorted(map(str, DEFAULT_SEEDS))
            for sample in samples:
                assert len(sample) == len(set(sample)) == int(size)
            assert len({tuple(x) for x in samples}) == len(samples)  # a fresh sample per seed


def _population_ids(family: str, population: dict, upstream_dir: Path) -> dict[str, list[str]]:
    """The ids of each scope of the frozen population, read again from its upstream files."""
    from cgbench.loaders.registry import get_family

    fam = get_family(family)
    assert sorted(fam.sources) == population["sources"], "frozen on a non-default build: extend this test"
    records = list(fam.iter_records({k: upstream_dir / k for k in fam.sources}))
    scopes = {"all": [r.arch_id for r in records]}
    for name, sub in SUBSETS.get(family, {}).items():
        scopes[name] = [r.arch_id for r in records if r.tags.get(sub.column) == sub.value]
    return scopes


# nb101's default population (nasbench-vis 20k) needs the NB-101 hash index (minutes to build once)
_POPULATIONS = [pytest.param(p, marks=pytest.mark.slow) if p.stem == "nb101" else p for p in SPLIT_FILES]


@pytest.mark.parametrize("path", _POPULATIONS, ids=lambda p: p.stem)
def test_split_file_matches_the_rule_on_its_population(path, upstream_dir):
    """Every checksum and sample of the file, recomputed from the frozen population's ids."""
    family = path.stem
    stored = load_split_file(family)
    data = stored.data
    scopes = _population_ids(family, stored.population, upstream_dir)
    assert len(scopes["all"]) == stored.population["n"]
    assert _sha(scopes["all"]) == stored.population["sha256"]
    for name, ids in scopes.items():
        scope = data["scopes"][name]
        assert (len(ids), _sha(ids)) == (scope["n"], scope["sha256"]), name
        if family == "nb201":  # its networks follow from the ids; other families need cg_hash
            _check_scope(family, stored, name, ids, _nb201_groups(ids))


def _check_scope(family: str, stored, name: str, ids: list[str], groups: dict[str, str]) -> None:
    """Every checksum and sample of one scope, recomputed from its ids and networks."""
    scope = stored.data["scopes"][name]
    split = in_family_split(ids, family, groups)
    assert {k: {"n": len(v), "sha256": _sha(v)} for k, v in split.items()} == scope["in_family"]
    for size, entry in scope["fine_tune"].items():
        assert entry["fixed"] == fine_tune_sample(ids, family, int(size), groups)
        for seed, sample in entry["seeds"].items():
            assert sample == fine_tune_sample(ids, family, int(size), groups, seed=int(seed))
    assert stored.verify(ids, None if name == "all" else name, groups=groups)


@pytest.mark.slow
@pytest.mark.parametrize("path", SPLIT_FILES, ids=lambda p: p.stem)
def test_split_file_matches_the_rule_on_the_built_store(path):
    """The same, with the networks (``cg_hash``) of a built store under ``$CGBENCH_HOME``
    (skipped when that family is not built, or built as another population)."""
    from cgbench.benchmarks.store import StoreError, open_dataset
    from cgbench.benchmarks.tasks import group_columns

    family = path.stem
    stored = load_split_file(family)
    try:
        ds = open_dataset(family)
    except StoreError:
        pytest.skip(f"no {family} store under $CGBENCH_HOME")
    subsets = SUBSETS.get(family, {})
    cols = list(dict.fromkeys(["arch_id", *group_columns(family), *(s.column for s in subsets.values())]))
    table = ds.table(cols)
    ids = table.column("arch_id").to_pylist()
    if _sha(ids) != stored.population["sha256"]:
        pytest.skip(f"the {family} store is another population")
    scopes = {"all": list(range(len(ids)))}
    for name, sub in subsets.items():
        scopes[name] = [i for i, v in enumerate(table.column(sub.column).to_pylist()) if v == sub.value]
    for name, rows in scopes.items():
        scope_ids = [ids[i] for i in rows]
        keys = {c: [table.column(c)[i].as_py() for i in rows] for c in group_columns(family)}
        _check_scope(family, stored, name, scope_ids, arch_groups(scope_ids, keys))


# ---------------------------------------------------------------------------- protocols on toys
def test_zero_shot_scores_every_arch_beside_random(toys):
    (res,) = evaluate("nb201/cifar10-valid:zero-shot", ["flops"], datasets=toys)
    assert res.n_scored == 120 and res.n_fit == 0
    assert res.metrics["srcc"].value > 0.9
    assert abs(res.random_baseline["srcc"].value) < 0.3
    assert len(res.random_baseline["srcc"].per_seed) == 5
    assert res.seeds == (0,) and res.split["official"] is False
    assert res.data["family"] == "nb201" and len(res.data["manifest_sha256"]) == 64
    assert res.data["files_sha256"] is None  # an in-memory dataset lists no files


def test_subset_and_unofficial_split_warning(toys):
    with pytest.warns(UnofficialSplitWarning, match="no frozen split for this population"):
        prep = prepare_task("nb201-nonone/cifar10-valid:zero-shot", datasets=toys)
    assert len(prep.scored.labels) == 80
    assert all(int(a[-4:]) % 3 for a in prep.scored.archs.arch_ids)


def test_in_family_fits_on_train_offers_valid_scores_test(toys, recorder):
    (res,) = evaluate("nb201/cifar10-valid:in-family", [recorder], datasets=toys, seeds=[0, 1])
    split = in_family_split([f"nb201-{i:04d}" for i in range(120)], "nb201")
    fits = [c for c in Recorder.calls if c[0] == "fit"]
    assert [(c[1], c[3], c[4], c[5]) for c in fits] == [(s, split["train"], 96, 12) for s in (0, 1)]
    predicted = [c[3] for c in Recorder.calls if c[0] == "predict"]
    assert predicted == [split["test"]] * 2
    assert res.n_scored == 12 and res.seeds == (0, 1)
    assert res.metrics["srcc"].std is not None


def test_fine_tune_without_source_fits_on_the_disjoint_sample(toys, recorder):
    (res,) = evaluate("nb201/cifar10-valid:fine-tune-20", [recorder], datasets=toys, seeds=[0])
    (fit,) = [c for c in Recorder.calls if c[0] == "fit"]
    (pred,) = [c for c in Recorder.calls if c[0] == "predict"]
    assert len(fit[3]) == 20 and not set(fit[3]) & set(pred[3])
    assert len(pred[3]) == res.n_scored == 100
    assert not [c for c in Recorder.calls if c[0] == "fine_tune"]
    assert res.split["fine_tune_sha256"]


def test_transfer_fine_tune_fits_source_then_fine_tunes(toys, recorder):
    (res,) = evaluate("nb101->nb201/cifar10-valid:fine-tune-20", [recorder], datasets=toys, seeds=[0])
    kinds = [(c[0], c[2]) for c in Recorder.calls]
    assert kinds == [("fit", "nb101"), ("fine_tune", "nb201"), ("predict", "nb201")]
    assert Recorder.calls[0][4] == 64 and Recorder.calls[0][5] == 8  # nb101 train / valid
    assert res.data["source"] == "nb101" and res.n_fit == 84


def test_transfer_without_fine_tune_method_fits_on_the_sample(toys):
    class NoTune(BasePredictor):
        fitted: list = []

        def fit(self, graphs, labels):
            NoTune.fitted.append(graphs.family)

        def predict(self, graphs):
            return graphs.column("flops") + np.arange(len(graphs)) * 1e-9

    (res,) = evaluate(
        "nb101->nb201/cifar10-valid:fine-tune-20", [predictor_spec(NoTune)], datasets=toys, seeds=[0]
    )
    assert NoTune.fitted == ["nb101", "nb201"]
    assert any("no fine_tune()" in n for n in res.notes)


def test_zero_shot_transfer_fits_on_source(toys, recorder):
    evaluate("nb101->nb201/cifar10-valid:zero-shot", [recorder], datasets=toys, seeds=[0])
    assert [(c[0], c[2]) for c in Recorder.calls] == [("fit", "nb101"), ("predict", "nb201")]


@pytest.mark.parametrize("task", ["nb201/cifar10-valid:zero-shot", "nb101/cifar10:zero-shot"])
def test_learned_predictor_needs_training_data_and_every_suggestion_runs(toys, task):
    message = f"'summary-rf' must be fit, but task '{task}' has no training data"
    with pytest.raises(ProtocolError, match=message) as err:
        evaluate(task, ["summary-rf"], datasets=toys)
    suggested = str(err.value).split("; use ", 1)[1].split(" or ")
    assert len(suggested) == 2
    for name in suggested:  # each suggestion is a valid task that runs with this predictor
        (res,) = evaluate(name, ["summary-rf"], datasets=toys, seeds=[0])
        assert res.error is None and res.n_fit > 0


def test_summary_regressor_learns_on_fine_tune(toys):
    (res,) = evaluate("nb201/cifar10-valid:fine-tune-20", ["summary-rf"], datasets=toys, seeds=[0, 1])
    assert res.metrics["srcc"].value > 0.8
    assert "mae_pct" in res.metrics and res.metrics["mae_pct"].value < 5


def test_labels_are_hidden_from_predictors(toys):
    class Peek(BasePredictor):
        def predict(self, graphs):
            assert "val_acc_cifar10_valid" not in graphs.columns
            assert "accuracy" not in graphs.table().column_names
            return graphs.table(["val_acc_cifar10_valid"])

    with pytest.raises(HiddenColumnError, match="'val_acc_cifar10_valid' are labels and hidden"):
        evaluate("nb201/cifar10-valid:zero-shot", [predictor_spec(Peek)], datasets=toys)


def test_bad_predictions_are_named(toys):
    class Holes(BasePredictor):
        deterministic = True

        def predict(self, graphs):
            out = np.arange(len(graphs), dtype=float)
            out[3] = np.nan
            return out

    with pytest.raises(
        ValidationError,
        match=r"predictions of 'Holes' \(seed 0\): 1 non-finite "
        r"value\(s\) \(NaN or inf\) at arch_ids 'nb201-0003'",
    ):
        evaluate("nb201/cifar10-valid:zero-shot", [predictor_spec(Holes)], datasets=toys)

    class Short(BasePredictor):
        def predict(self, graphs):
            return np.zeros(len(graphs) - 1)

    with pytest.raises(ValidationError, match="length mismatch, 120 labels but 119 predictions"):
        evaluate("nb201/cifar10-valid:zero-shot", [predictor_spec(Short)], datasets=toys)


def test_missing_label_value_named():
    ds = {"nb201": toy_dataset("nb201", 30, "val_acc_cifar10_valid", nan_at=7)}
    with pytest.raises(
        ValidationError,
        match=r"labels 'val_acc_cifar10_valid' of nb201: 1 "
        r"non-finite value\(s\).*'nb201-0007'",
    ):
        prepare_task("nb201/cifar10-valid:zero-shot", datasets=ds)


def test_partial_label_leaves_out_archs_without_a_value():
    """A label upstream measured on some archs only (``PARTIAL_LABELS``): the task keeps the
    official split of all archs, then fits on and scores those with a value, and says how many
    it left out; an unexpected missing value of a complete label stays an error (above)."""
    label = "throughput_tpuv2"
    ds = {"anb": toy_dataset("anb", 40, label, nan_at=5)}
    for protocol in ("zero-shot", "in-family", "fine-tune-10"):
        with pytest.warns(PartialLabelWarning, match=r"1 of 40 archs have no 'throughput_tpuv2' value"):
            prep = prepare_task(f"anb/throughput-tpuv2:{protocol}", datasets=ds)
        parts = [prep.scored, prep.train, prep.valid, *prep.samples.values()]
        for part in (p for p in parts if p is not None):
            assert "anb-0005" not in part.archs.arch_ids and np.isfinite(part.labels).all()
        assert prep.split["n_label_missing"] == 1
    with pytest.warns(PartialLabelWarning):
        assert len(prepare_task("anb/throughput-tpuv2:zero-shot", datasets=ds).scored.labels) == 39


def test_missing_label_column_named(toys):
    with pytest.raises(
        TaskError,
        match="no label column 'test_acc_cifar10'; it comes from the official NB-201 release"
        ".*label columns present: accuracy, val_acc_cifar10_valid",
    ):
        prepare_task("nb201/cifar10:zero-shot", datasets=toys)


def test_missing_subset_column_named():
    ds = {"nb201": toy_dataset("nb201", 30, "val_acc_cifar10_valid")}
    table = ds["nb201"].table().drop_columns(["has_none"])
    with pytest.raises(TaskError, match="has no column 'has_none'"):
        prepare_task("nb201-nonone/cifar10-valid:zero-shot", datasets={"nb201": TableDataset(table)})


def test_keep_going_turns_any_predictor_failure_into_an_error_row(toys, caplog):
    class Crash(BasePredictor):
        def predict(self, graphs):
            raise RuntimeError("boom")

    class NeedsArg(BasePredictor):
        def __init__(self, alpha):
            self.alpha = alpha

    specs = [predictor_spec(Crash), "column:arch_id", "zc:nwot", predictor_spec(NeedsArg), "flops"]
    results = evaluate("nb201/cifar10-valid:zero-shot", specs, datasets=toys, seeds=[0], keep_going=True)
    errors = {r.predictor: r.error for r in results}
    assert errors["Crash"].startswith("RuntimeError: boom (at test_protocols.py:")
    assert errors["Crash"].endswith(" in predict)")
    assert errors["column:arch_id"].startswith("ValidationError: column 'arch_id' of nb201 holds string")
    assert errors["zc:nwot"].startswith("UnknownColumnError: no column 'zc_nwot' in family 'nb201'")
    assert errors["NeedsArg"].startswith("PredictorError: predictor 'NeedsArg': ")
    assert "NeedsArg() failed: TypeError" in errors["NeedsArg"]
    assert errors["flops"] is None and results[-1].metrics["srcc"].value > 0.9
    assert all(r.metrics == {} for r in results[:-1])
    assert "predictor Crash failed: RuntimeError: boom" in caplog.text
    # without keep_going, the first failure is raised as it is
    with pytest.raises(RuntimeError, match="boom"):
        evaluate("nb201/cifar10-valid:zero-shot", [predictor_spec(Crash)], datasets=toys, seeds=[0])
    with pytest.raises(UnknownColumnError):
        evaluate("nb201/cifar10-valid:zero-shot", ["zc:nwot"], datasets=toys, seeds=[0])
    with pytest.raises(PredictorError, match="NeedsArg"):
        evaluate("nb201/cifar10-valid:zero-shot", [predictor_spec(NeedsArg)], datasets=toys, seeds=[0])


@pytest.mark.parametrize("seeds", [[0, 1, 0], [-1], [2**32]])
def test_seeds_must_be_distinct_and_in_numpy_range(toys, seeds):
    with pytest.raises(ValidationError, match="seeds: distinct integers in 0..2"):
        evaluate("nb201/cifar10-valid:zero-shot", ["flops"], datasets=toys, seeds=seeds)


def test_seeded_class_gets_each_seed_and_deterministic_runs_once(toys, recorder):
    (rec, flops) = evaluate(
        "nb201/cifar10-valid:fine-tune-20", [recorder, "flops"], datasets=toys, seeds=[4, 5, 6]
    )
    assert sorted({c[1] for c in Recorder.calls}) == [4, 5, 6]
    assert rec.seeds == (4, 5, 6) and flops.seeds == (4,)
    assert flops.metrics["srcc"].std is None


# ---------------------------------------------------------------------------- on the real store
def test_real_store_zero_shot_and_features(nb201_store):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnofficialSplitWarning)
        prep = prepare_task("nb201/cifar10-valid:fine-tune-50", root=nb201_store)
        results = evaluate(
            "nb201/cifar10-valid:zero-shot", ["flops", "params"], root=nb201_store, n_bootstrap=20
        )
        (synflow,) = evaluate("nb201-nonone/cifar10-valid:zero-shot", ["zc:synflow"], root=nb201_store)
    # a fresh 50-arch sample per seed; every sampled network is left out of the scored archs
    assert prep.train is None and sorted(prep.samples) == [0, 1, 2, 3, 4]
    assert all(len(s.labels) == 50 for s in prep.samples.values())
    assert len(prep.scored.labels) == 300 - prep.split["n_not_scored"] > 0
    flops = results[0]
    assert flops.n_scored == 300 and flops.metrics["srcc"].ci is not None
    assert synflow.metrics["srcc"].value > 0.3
    record = flops.to_dict()
    assert record["data"]["manifest_sha256"] and record["split"]["official"] is False
    assert len(record["data"]["files_sha256"]) == 64
    json.dumps(record)  # serialisable (NaN written as null)
    archs = prep.scored.archs[:15]
    np.testing.assert_allclose(summary_features(archs), summary_features(list(archs)))


def test_each_column_is_read_from_the_dataset_once(toys, recorder):
    """Issue 8 §5: iterating graphs, tables and labels over seeds and predictors reads every
    column of the dataset once (no whole-dataset read per graph or per chunk)."""
    from collections import Counter

    class Counting:
        def __init__(self, inner):
            self.inner, self.reads, self.manifest = inner, Counter(), inner.manifest

        def __len__(self):
            return len(self.inner)

        @property
        def schema(self):
            return self.inner.schema

        def table(self, columns=None):
            self.reads.update(columns if columns is not None else self.inner.schema.names)
            return self.inner.table(columns)

        def graphs(self, indices=None):
            self.reads.update(["graphs()"])
            return self.inner.graphs(indices)

    data = Counting(toy_dataset("nb201", 120, "val_acc_cifar10_valid"))
    evaluate(
        "nb201/cifar10-valid:fine-tune-20",
        [recorder, "flops", "summary-rf"],
        datasets={"nb201": data},
        seeds=[0, 1, 2],
    )
    assert data.reads and max(data.reads.values()) == 1, data.reads
    assert "graphs()" not in data.reads
