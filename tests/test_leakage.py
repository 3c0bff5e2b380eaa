"""Attacks on the evaluation: identical networks on both sides of a split, and label theft.

Each test is an attack that worked before splits were drawn over groups of identical networks
(``cgbench-splits/3``) and before predictors stood on a label-free feature source / ran in a
worker process. ``perf/leak_attacks.py`` prints the same figures on the full NB-201 store.
"""

from __future__ import annotations

import gc
import sys
import warnings

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from cgbench.benchmarks.tasks import TaskError, group_columns, official_tasks, parse_task
from cgbench.cg.graph import ComputationGraph
from cgbench.eval.data import DataSource, HiddenColumnError, TableDataset
from cgbench.eval.predictor import BasePredictor, predictor_spec
from cgbench.eval.protocols import UnofficialSplitWarning, evaluate, prepare_task
from cgbench.eval.validation import ValidationError
from cgbench.loaders.base import ArchRecord, Family

pytestmark = pytest.mark.filterwarnings("ignore::cgbench.eval.protocols.UnofficialSplitWarning")


# ---------------------------------------------------------------------------- a family with twins
class TwinFamily(Family):
    dataset = "toy"
    input_shape = (3, 8, 8)
    name = "nb301"  # any family the task tables know; its networks are grouped by cg_hash
    label_columns: dict = {}
    tag_columns: dict = {}


def _chain(n_convs: int, n_relus: int) -> ComputationGraph:
    ops = ["input", *["conv"] * n_convs, *["relu"] * n_relus, "output"]
    res = [[8, 8, 8, 8, 4, 4]] * len(ops)
    weight = [[4, 4, 3, 3] if op == "conv" else [0, 0, 0, 0] for op in ops]
    edges = [[i, i + 1] for i in range(len(ops) - 1)]
    return ComputationGraph.from_op_names(ops, res, weight, [False] * len(ops), edges, (3, 8, 8))


def twin_dataset(n_networks: int = 150, copies: int = 3, seed: int = 0) -> TableDataset:
    """``n_networks`` distinct networks, each stored ``copies`` times under different arch ids
    (as NB-201 stores isomorphic cells) with nearly the same label; labels of different
    networks are unrelated to any feature."""
    rng = np.random.default_rng(seed)
    records, graphs = [], []
    for net in range(n_networks):
        acc = float(rng.uniform(0.3, 0.9))
        for c in range(copies):
            records.append(
                ArchRecord(f"net{net:03d}-copy{c}", {"net": net}, {"accuracy": acc + 1e-4 * c}, {})
            )
            graphs.append(_chain(1 + net % 5, 1 + net // 5))
    return TableDataset.from_records(TwinFamily(), records, graphs)


class TwinCopy(BasePredictor):
    """The attack: predict the fit label of the same network (same ``cg_hash``)."""

    hits: list[int] = []

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.known: dict[str, float] = {}

    def fit(self, graphs, labels, valid_graphs=None, valid_labels=None):
        self.known.update(zip(graphs.column("cg_hash"), labels, strict=True))

    def fine_tune(self, graphs, labels):
        self.fit(graphs, labels)

    def predict(self, graphs):
        hashes = graphs.column("cg_hash")
        TwinCopy.hits.append(sum(h in self.known for h in hashes))
        return np.array([self.known.get(h, self.rng.uniform(0.3, 0.9)) for h in hashes])


@pytest.mark.parametrize(
    "task", ["nb301/cifar10:in-family", "nb301/cifar10:fine-tune-30", "nb301/cifar10:fine-tune-30-fixed"]
)
def test_twin_copy_attack_scores_no_better_than_random(task):
    TwinCopy.hits = []
    (res,) = evaluate(task, [predictor_spec(TwinCopy)], datasets={"nb301": twin_dataset()}, n_bootstrap=0)
    assert TwinCopy.hits == [0] * len(res.seeds)  # no scored network was fit on
    assert abs(res.metrics["srcc"].value) < 0.2  # what random guessing gives (it was ~1.0)
    assert abs(res.metrics["srcc"].value - res.random_baseline["srcc"].value) < 0.25


def test_fine_tune_draws_a_fresh_sample_per_seed_and_holds_out_the_rest_of_its_networks():
    prep = prepare_task("nb301/cifar10:fine-tune-30", datasets={"nb301": twin_dataset()})
    samples = [set(s.archs.arch_ids) for s in prep.samples.values()]
    assert len(samples) == 5 and all(len(s) == 30 for s in samples)
    assert len({frozenset(s) for s in samples}) == 5
    nets = lambda ids: {a.split("-")[0] for a in ids}  # noqa: E731
    scored = nets(prep.scored.archs.arch_ids)
    assert all(not nets(s) & scored for s in samples)
    fixed = prepare_task("nb301/cifar10:fine-tune-30-fixed", datasets={"nb301": twin_dataset()})
    assert len({frozenset(s.archs.arch_ids) for s in fixed.samples.values()}) == 1
    assert fixed.split["fine_tune_sample"] == "fixed" and prep.split["fine_tune_sample"] == "per-seed"


# ---------------------------------------------------------------------------- every task of a store
def _hashes(labeled, column: str) -> set:
    archs = labeled.archs
    return set(archs.column(column).tolist()) if column in archs.columns else set()


def check_no_overlap(task_names, root) -> int:
    """For every task: no ``cg_hash`` (nor other group key) of the fit data (train, valid, each
    seed's sample) among the scored archs. Returns the number of tasks checked."""
    checked = 0
    for name in task_names:
        task = parse_task(name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnofficialSplitWarning)
                prep = prepare_task(task, root=root)
        except TaskError as err:
            if "needs more than" in str(err) or "no value of label" in str(err) or "to score" in str(err):
                continue  # a small store, or a label this build lacks
            raise
        except ValidationError as err:
            if "non-finite" in str(err):
                continue  # a label some archs lack (e.g. anb throughputs): not evaluable as is
            raise
        fit_sets = [x for x in (prep.train, prep.valid, *prep.samples.values()) if x is not None]
        for column in group_columns(task.family):
            scored = _hashes(prep.scored, column)
            for fit in fit_sets:
                assert not _hashes(fit, column) & scored, (name, column)
        if prep.train is not None and task.source is not None:
            assert not _hashes(prep.train, "cg_hash") & _hashes(prep.scored, "cg_hash"), name
        checked += 1
    return checked


def test_no_network_is_fit_on_and_scored_small_store(nb201_store):
    names = [t.name for t in official_tasks() if t.family == "nb201" and t.source is None]
    names += ["nb201/cifar10-valid:fine-tune-20", "nb201/cifar10-valid:fine-tune-20-fixed"]
    assert check_no_overlap(names, nb201_store) >= 10


@pytest.mark.slow
def test_no_network_is_fit_on_and_scored_every_built_family():
    """Every official task of every family built under ``$CGBENCH_HOME`` (full stores)."""
    from cgbench.benchmarks.store import StoreError, open_dataset

    built = set()
    for family in {t.family for t in official_tasks()}:
        try:
            open_dataset(family)
            built.add(family)
        except StoreError:
            pass
    if not built:
        pytest.skip("no family is built under $CGBENCH_HOME")
    names = [
        t.name for t in official_tasks() if t.family in built and (t.source in built or t.source is None)
    ]
    assert check_no_overlap(names, None) > 0


# ---------------------------------------------------------------------------- label theft
LABEL = "val_acc_cifar10_valid"


def _walk(root, limit: int = 200_000):
    """Every object reachable from ``root`` through attributes, slots, containers and closures."""
    seen, stack = set(), [root]
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None), type)):
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, dict):
            stack += list(obj.keys()) + list(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack += list(obj)
        if hasattr(obj, "__dict__"):
            stack.append(vars(obj))
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                stack.append(getattr(obj, slot))
        for cell in getattr(obj, "__closure__", None) or ():
            stack.append(cell.cell_contents)
        for name in ("__self__", "__func__", "__wrapped__"):
            if hasattr(obj, name):
                stack.append(getattr(obj, name))


def _nb201_toys():
    rng = np.random.default_rng(0)

    class Fam(Family):
        dataset = "toy"
        input_shape = (3, 8, 8)
        name = "nb201"
        label_columns = {LABEL: "toy"}
        tag_columns: dict = {}

    records = [
        ArchRecord(f"a{i:03d}", {}, {LABEL: float(rng.uniform()), "accuracy": 0.5}, {}) for i in range(60)
    ]
    graphs = [_chain(1 + i % 5, 1 + i // 5) for i in range(60)]
    return {"nb201": TableDataset.from_records(Fam(), records, graphs)}


class Thief(BasePredictor):
    """Tries every way from its input to the labels; returns them if it finds them."""

    found: list[str] = []

    def predict(self, graphs):
        try:
            stolen = graphs._source.raw_column(LABEL).take(pa.array(graphs.row_indices))
            Thief.found.append("raw_column")
            return stolen.to_numpy(zero_copy_only=False)
        except (HiddenColumnError, AttributeError):
            pass
        for obj in _walk(graphs):
            if isinstance(obj, (DataSource, TableDataset)) or (
                isinstance(obj, pa.Table) and LABEL in obj.column_names
            ):
                Thief.found.append(type(obj).__name__)
        return graphs.column("flops")


def test_label_theft_in_process_gets_nothing():
    Thief.found = []
    (res,) = evaluate(
        "nb201/cifar10-valid:zero-shot", [predictor_spec(Thief)], datasets=_nb201_toys(), n_bootstrap=0
    )
    assert Thief.found == []  # neither raw_column nor any reachable object gives the label
    assert res.metrics["srcc"].value < 0.5  # it scored FLOPs (labels are random), not the label


THIEF_MODULE = """
import gc
import numpy as np
import pyarrow as pa

LABEL = "val_acc_cifar10_valid"

class Thief:
    deterministic = True
    def predict(self, graphs):
        try:
            stolen = graphs._source.raw_column(LABEL).take(pa.array(graphs.row_indices))
            return stolen.to_numpy(zero_copy_only=False)
        except Exception:
            pass
        for obj in gc.get_objects():  # everything in this process
            if isinstance(obj, pa.Table) and LABEL in obj.column_names:
                return obj.column(LABEL).to_numpy(zero_copy_only=False)[graphs.row_indices]
            if type(obj).__name__ in ("DataSource", "CGDataset", "TableDataset"):
                return obj.table([LABEL]).column(LABEL).to_numpy(zero_copy_only=False)[graphs.row_indices]
        raise RuntimeError("no label reachable in this process")
"""


def test_label_theft_through_cli_module_class_is_refused(nb201_store, tmp_path, monkeypatch):
    """``module:Class`` runs in a worker process: the label never enters it."""
    from cgbench.cli import app
    from cgbench.eval.results import read_json

    name = f"thief_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(THIEF_MODULE)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--task",
            "nb201/cifar10-valid:zero-shot",
            "--predictor",
            f"{name}:Thief,flops",
            "--root",
            str(nb201_store),
            "--bootstrap",
            "0",
            "--keep-going",
            "--json",
            str(out),
        ],
    )
    sys.modules.pop(name, None)
    records = {r["predictor"]: r for r in read_json(out)}
    thief = records[f"{name}:Thief"]
    assert thief["error"] is not None and "no label reachable in this process" in thief["error"], (
        result.output
    )
    assert records["flops"]["error"] is None
    gc.collect()
