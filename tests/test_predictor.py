"""Predictor protocol: built-in names, module:Class, predictions files, what predictors see."""

from __future__ import annotations

import sys
import textwrap
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from cgbench.benchmarks.tasks import is_label_column
from cgbench.cg.graph import ComputationGraph
from cgbench.eval.baselines import ColumnPredictor, RandomPredictor
from cgbench.eval.data import DataSource, HiddenColumnError, TableDataset, UnknownColumnError, column_names
from cgbench.eval.predictor import (
    BasePredictor,
    PredictionsFile,
    Predictor,
    PredictorError,
    PredictorSpec,
    load_predictor,
    read_predictions,
)
from cgbench.eval.protocols import UnofficialSplitWarning, evaluate
from cgbench.eval.validation import EvalError, ValidationError


@pytest.fixture(scope="module")
def archs(nb201_store):
    from cgbench.benchmarks.store import open_dataset

    ds = open_dataset("nb201", root=nb201_store)
    labels = frozenset(c for c in column_names(ds) if is_label_column(c)) | {"accuracy"}
    return DataSource(ds, "nb201", labels).all()


def _columns_source(**columns) -> DataSource:
    return DataSource(TableDataset(pa.table(columns)), "toy", frozenset({"accuracy"}))


# ---------------------------------------------------------------------------- built-in names
def test_builtin_names():
    rnd = load_predictor("random")
    assert not rnd.deterministic and isinstance(rnd.make(3), RandomPredictor)
    assert rnd.make(3).seed == 3
    flops = load_predictor("flops")
    assert flops.deterministic and flops.make(0).column == "flops"
    zc = load_predictor("zc:synflow").make(0)
    assert (zc.column, zc.negate) == ("zc_synflow", False)
    neg = load_predictor("column:-params").make(0)
    assert (neg.column, neg.negate) == ("params", True)
    rf = load_predictor("summary-rf")
    assert rf.requires_fit and rf.predicts_label


def test_unknown_predictor_lists_the_options():
    with pytest.raises(
        PredictorError,
        match="unknown predictor 'nope': use a built-in "
        r"\(random, flops, params, summary-rf, .*zc:NAME",
    ):
        load_predictor("nope")


def test_random_is_reproducible_per_seed():
    xs = list(range(50))
    a, b = RandomPredictor(1).predict(xs), RandomPredictor(1).predict(xs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, RandomPredictor(2).predict(xs))


# ---------------------------------------------------------------------------- module:Class
@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "my_predictors.py").write_text(
        textwrap.dedent("""
        import numpy as np

        class Seeded:
            deterministic = False
            def __init__(self, seed=0):
                self.seed = seed
            def predict(self, graphs):
                return np.full(len(graphs), float(self.seed))

        class SkStyle:
            requires_fit = True
            def __init__(self, random_state=None):
                self.random_state = random_state
            def predict(self, graphs):
                return np.zeros(len(graphs))

        class NoSeed:
            def predict(self, graphs):
                return np.zeros(len(graphs))

        class NoPredict:
            pass

        class NeedsArg:
            def __init__(self, alpha):
                self.alpha = alpha
            def predict(self, graphs):
                return np.zeros(len(graphs))

        VALUE = 3
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_predictors"


def test_module_class_gets_the_seed(plugin):
    spec = load_predictor(f"{plugin}:Seeded")  # runs in a worker process (issue 8 §2)
    assert spec.name == f"{plugin}:Seeded" and spec.source == "class"
    assert isinstance(spec.make(0), Predictor)
    assert load_predictor(f"{plugin}:SkStyle").requires_fit
    # inside the worker, the class is resolved and seeded by predictor_spec
    from cgbench.eval.predictor import _import_target, predictor_spec

    assert predictor_spec(_import_target(f"{plugin}:Seeded")).make(7).seed == 7
    assert predictor_spec(_import_target(f"{plugin}:SkStyle")).make(4).random_state == 4
    assert predictor_spec(_import_target(f"{plugin}:NoSeed")).make(4) is not None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:Thing", "cannot import module 'no_such_module_xyz'"),
        ("{plugin}:Missing", "module '{plugin}' has no 'Missing'"),
        ("{plugin}:VALUE", "'VALUE' is not a class or callable"),
    ],
)
def test_module_class_errors(plugin, spec, message):
    with pytest.raises(PredictorError, match=message.format(plugin=plugin)):
        load_predictor(spec.format(plugin=plugin))


def test_object_without_predict_is_refused(plugin):
    with pytest.raises(PredictorError, match="NoPredict has no predict\\(graphs\\) method"):
        load_predictor(f"{plugin}:NoPredict").make(0)


def test_constructor_failure_is_a_predictor_error_naming_the_class(plugin):
    spec = load_predictor(f"{plugin}:NeedsArg")
    with pytest.raises(PredictorError, match=r"'my_predictors:NeedsArg': NeedsArg\(\) failed: TypeError: "):
        spec.make(0)

    def broken(seed):
        raise ValueError("no model file")

    with pytest.raises(
        PredictorError, match="predictor 'mine': creating it failed: ValueError: no model file"
    ):
        PredictorSpec("mine", broken).make(0)


def test_module_class_is_imported_from_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "cwd_pred_7f3a.py").write_text(
        "import numpy as np\n"
        "class MyPred:\n"
        "    def predict(self, graphs):\n"
        "        return np.zeros(len(graphs))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_pred_7f3a", raising=False)
    from cgbench.eval.predictor import _import_target, predictor_spec

    assert load_predictor("cwd_pred_7f3a:MyPred").source == "class"  # the worker imported it
    spec = predictor_spec(_import_target("cwd_pred_7f3a:MyPred"))
    assert spec.make(0).predict([1, 2]).tolist() == [0.0, 0.0]
    monkeypatch.delitem(sys.modules, "cwd_pred_7f3a")


# ---------------------------------------------------------------------------- predictions files
def _write(path, table):
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predictions_file_gives_the_same_scores_as_the_builtin(archs, nb201_store, tmp_path, suffix):
    ids = archs.arch_ids[::-1]  # any row order
    flops = archs.column("flops")[::-1]
    path = _write(tmp_path / f"preds{suffix}", pa.table({"arch_id": ids, "score": flops}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnofficialSplitWarning)
        from_file, builtin = evaluate("nb201/cifar10-valid:zero-shot", [str(path), "flops"], root=nb201_store)
    assert from_file.predictor == path.name
    assert from_file.metrics["srcc"].value == pytest.approx(builtin.metrics["srcc"].value)


def test_predictions_file_errors_name_ids(archs, tmp_path):
    ids = archs.arch_ids
    part = archs[:5]
    missing = _write(tmp_path / "m.csv", pa.table({"arch_id": ids[1:5], "score": [1.0] * 4}))
    with pytest.raises(
        ValidationError,
        match=f"no value for 1 of 5 evaluated arch_id.*'{ids[0]}'".replace("|", r"\|").replace("+", r"\+"),
    ):
        PredictionsFile(missing).predict(part)
    extra = _write(tmp_path / "e.csv", pa.table({"arch_id": [*ids[:5], "bogus"], "score": [1.0] * 6}))
    with pytest.raises(ValidationError, match="not in the evaluated set or the family: 'bogus'"):
        PredictionsFile(extra).predict(part)
    dup = _write(tmp_path / "d.csv", pa.table({"arch_id": [*ids[:5], ids[0]], "score": [1.0] * 6}))
    with pytest.raises(ValidationError, match=r"1 duplicated arch_id\(s\)"):
        PredictionsFile(dup).predict(part)
    whole = _write(tmp_path / "w.csv", pa.table({"arch_id": ids, "score": np.arange(len(ids))}))
    np.testing.assert_array_equal(PredictionsFile(whole).predict(part), np.arange(5))


def test_predictions_file_format_errors(tmp_path):
    bad = _write(tmp_path / "bad.csv", pa.table({"id": ["a"], "value": [1.0]}))
    with pytest.raises(PredictorError, match="missing column\\(s\\) arch_id, score; found id, value"):
        load_predictor(str(bad))
    with pytest.raises(PredictorError, match="not found"):
        load_predictor(str(tmp_path / "absent.parquet"))
    text = _write(tmp_path / "text.csv", pa.table({"arch_id": ["a"], "score": ["high"]}))
    with pytest.raises(PredictorError, match="non-numeric score"):
        load_predictor(str(text))
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet")
    with pytest.raises(PredictorError, match="unreadable"):
        load_predictor(str(garbage))


def test_predictions_file_rows_without_seed_are_named(tmp_path):
    seed = pa.array([0, 0, None, 1, None], pa.int64())
    table = pa.table({"arch_id": ["a", "b", "a", "b", "c"], "score": [1.0, 2.0, 3.0, 4.0, 5.0], "seed": seed})
    with pytest.raises(PredictorError, match=r"2 row\(s\) without a seed \(data rows 3, 5\)") as err:
        load_predictor(str(_write(tmp_path / "s.parquet", table)))
    assert len(str(err.value)) < 200


def test_predictions_file_boolean_score_is_refused(tmp_path):
    table = pa.table({"arch_id": ["a", "b"], "score": [True, False]})
    for suffix in (".parquet", ".csv"):
        with pytest.raises(PredictorError, match="column 'score' is boolean; it must hold numbers"):
            load_predictor(str(_write(tmp_path / f"b{suffix}", table)))


def test_predictions_csv_header_and_ids_with_spaces(tmp_path):
    path = tmp_path / "spaced.csv"
    path.write_text('arch_id, score , seed\n"a, b", 1.5, 0\nc , 2.5, 0\n')
    table = read_predictions(path)
    assert table.column_names == ["arch_id", "score", "seed"]
    assert table.column("arch_id").to_pylist() == ["a, b", "c"]
    assert table.column("score").to_pylist() == [1.5, 2.5]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(PredictorError, match="empty"):
        read_predictions(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("arch_id,score\n")
    with pytest.raises(PredictorError, match="no rows"):
        read_predictions(header_only)


def test_predictions_file_with_seeds(tmp_path):
    table = pa.table({"arch_id": ["a", "b", "a", "b"], "score": [1.0, 2.0, 3.0, 4.0], "seed": [0, 0, 1, 1]})
    spec = load_predictor(str(_write(tmp_path / "s.parquet", table)))
    assert not spec.deterministic
    src = _columns_source(arch_id=["b", "a"], flops=[1.0, 2.0])
    np.testing.assert_array_equal(spec.make(1).predict(src.all()), [4.0, 3.0])
    with pytest.raises(PredictorError, match=r"no rows for seed 2 \(seeds in file: 0, 1\)"):
        spec.make(2)


# ---------------------------------------------------------------------------- what predictors see
def test_archset_is_a_sequence_of_graphs_with_table_views(archs):
    assert len(archs) == 300 and archs.family == "nb201"
    first = archs[0]
    assert isinstance(first, ComputationGraph)
    head = archs[:3]
    assert len(head) == 3 and head.arch_ids == archs.arch_ids[:3]
    assert [g.num_nodes for g in head] == [g.num_nodes for g in archs.graphs()[:3]]
    rec = head.records()[0]
    assert set(rec) == {"arch_id", "config", "flops", "params"} and isinstance(rec["config"], dict)
    assert head.table(["arch_id", "flops"]).num_rows == 3
    assert "val_acc_cifar10_valid" not in archs.columns and "zc_synflow" in archs.columns
    assert archs[[2, 0]].arch_ids == [archs.arch_ids[2], archs.arch_ids[0]]


def test_archset_refuses_labels_and_unknown_columns(archs):
    with pytest.raises(HiddenColumnError, match="'accuracy' are labels and hidden from predictors"):
        archs.column("accuracy")
    with pytest.raises(KeyError, match="no column 'nope' in family 'nb201'"):
        archs.table(["nope"])


def test_unknown_column_is_a_clear_eval_error():
    src = _columns_source(arch_id=["a", "b"], zc_snip=[1.0, 2.0], zc_jacov=[2.0, 1.0], flops=[1.0, 2.0])
    with pytest.raises(UnknownColumnError) as err:
        ColumnPredictor("zc_nwot").predict(src.all())
    assert isinstance(err.value, KeyError) and isinstance(err.value, EvalError)
    assert str(err.value) == (
        "no column 'zc_nwot' in family 'toy' (this store); columns starting with 'zc_': zc_snip, zc_jacov"
    )


@pytest.mark.parametrize(
    ("column", "kind"), [("arch_id", "string"), ("has_none", "bool"), ("config", "string")]
)
def test_column_predictor_refuses_non_numeric_columns(column, kind):
    src = _columns_source(arch_id=["a", "b"], has_none=[True, False], config=["{}", "{}"])
    with pytest.raises(ValidationError, match=f"column '{column}' of toy holds {kind} values, not numbers"):
        ColumnPredictor(column).predict(src.all())


def test_column_predictor_fills_from_representatives():
    src = _columns_source(
        arch_id=["a", "b", "c", "d"],
        zc_x=pa.array([1.0, None, 3.0, None]),
        unique_id=["a", "a", "c", "d"],
    )
    with pytest.raises(
        ValidationError,
        match="column 'zc_x' of toy has no value for 1 of 3 "
        "evaluated archs \\('d'\\); their 'unique_id' representatives have none",
    ):
        ColumnPredictor("zc_x").predict(src.all()[1:])
    np.testing.assert_array_equal(ColumnPredictor("zc_x").predict(src.all()[:3]), [1.0, 1.0, 3.0])
    np.testing.assert_array_equal(ColumnPredictor("zc_x", negate=True).predict(src.all()[1:2]), [-1.0])


def test_column_predictor_without_representatives_names_the_gap():
    src = _columns_source(arch_id=["a", "b"], zc_x=pa.array([1.0, None]))
    with pytest.raises(ValidationError, match="the store has no 'unique_id' column to fill them"):
        ColumnPredictor("zc_x").predict(src.all())


def test_base_predictor_fit_is_optional():
    class Minimal(BasePredictor):
        def predict(self, graphs):
            return np.zeros(len(graphs))

    p = Minimal()
    assert p.fit([], np.array([])) is p and isinstance(p, Predictor)
