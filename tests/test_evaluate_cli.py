"""`cgbench evaluate` and `cgbench tasks` on a small real NB-201 store."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
from typer.testing import CliRunner

from cgbench.cli import app
from cgbench.eval.results import RESULT_SCHEMA, read_json

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_tasks_lists_the_documented_names(tmp_path):
    result = _run("tasks", "--root", str(tmp_path))
    assert result.exit_code == 0
    for name in (
        "nb201/cifar10-valid:fine-tune-50",
        "nb101~nb201/cifar10-valid:zero-shot",
        "nb201-nonone/cifar10-valid:zero-shot",
    ):
        assert name in result.output
    assert "->nb" not in result.output  # shell-safe names only (unquoted `>` is a redirect)
    assert "not built: `cgbench build nb201`" in result.output
    only = _run("tasks", "--family", "nb301", "--root", str(tmp_path))
    assert "nb301/cifar10:in-family" in only.output and "nb201/" not in only.output


def test_tasks_unknown_family_is_an_error():
    result = _run("tasks", "--family", "nb999")
    assert result.exit_code != 0
    flat = " ".join(result.output.replace("│", " ").split())
    assert "unknown family 'nb999'" in flat and "nb201" in flat and "ofa_mbv3" in flat


def test_tasks_say_which_labels_the_store_has_and_unlabelled_tasks_are_refused(nb201_store):
    listing = _run("tasks", "--family", "nb201", "--root", str(nb201_store))
    lines = {ln.split()[1]: ln for ln in listing.output.splitlines() if ln.startswith("│ nb201")}
    assert "yes" in lines["nb201/cifar10-valid:zero-shot"]
    assert "official=NAS-Bench-201" in " ".join(listing.output.split())
    assert "no: needs" in lines["nb201/cifar10:zero-shot"]
    result = _run(
        "evaluate", "--task", "nb201/cifar10:zero-shot", "--predictor", "flops", "--root", str(nb201_store)
    )
    flat = " ".join(result.output.split())
    assert result.exit_code == 1 and "non-finite" not in flat
    assert "test_acc_cifar10" in flat and "it comes from the official NB-201 release" in flat
    assert "--opt official=" in flat


def test_shell_safe_transfer_name_is_the_same_task_and_runs_in_a_shell(nb201_store, tmp_path):
    """Unquoted in a real shell: `~` needs no quoting (`->` would redirect to a file)."""
    import os
    import shlex
    import subprocess

    from cgbench.benchmarks.tasks import parse_task

    assert parse_task("nb101~nb201-nonone/cifar10-valid:zero-shot") == parse_task(
        "nb101->nb201-nonone/cifar10-valid:zero-shot"
    )
    name = "nb201/cifar10-valid:fine-tune-20-fixed"
    code = "import sys; from cgbench.cli import main; sys.exit(main())"
    cmd = (
        f"cd {shlex.quote(str(tmp_path))} && {shlex.quote(sys.executable)} -c {shlex.quote(code)} evaluate "
        f"--task nb101~nb201-nonone/cifar10-valid:zero-shot,{name} --predictor flops --bootstrap 0 "
        f"--root {shlex.quote(str(nb201_store))}"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    run = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, timeout=300)
    # parsed fine (the store has no nb101: the error is about that store, not the name)
    assert "malformed" not in run.stderr and "no 'nb101' dataset" in " ".join(run.stderr.split())
    assert list(tmp_path.iterdir()) == []  # no file created by a redirect


def test_evaluate_prints_random_first_and_writes_records(nb201_store, tmp_path):
    out = tmp_path / "results.json"
    result = _run(
        "evaluate",
        "--task",
        "nb201/cifar10-valid:zero-shot",
        "--predictor",
        "flops,params",
        "--predictor",
        "random",
        "--root",
        str(nb201_store),
        "--json",
        str(out),
        "--bootstrap",
        "10",
        "--metrics",
        "srcc,kendall_tau,ndcg@10,precision@10",
    )
    assert result.exit_code == 0, result.output
    table = result.output
    assert table.index("random") < table.index("flops") < table.index("params")
    assert "SRCC" in table and "tau-b" in table and "NDCG@10" in table
    assert "UNOFFICIAL split" in table and "warning:" in table
    records = read_json(out)
    assert [r["predictor"] for r in records] == ["flops", "params", "random"]
    rec = records[0]
    assert rec["schema_version"] == RESULT_SCHEMA and rec["versions"]["cgbench"]
    assert rec["task"]["name"] == "nb201/cifar10-valid:zero-shot"
    assert set(rec["metrics"]) == {"srcc", "kendall_tau", "ndcg@10", "precision@10"}
    assert len(rec["metrics"]["srcc"]["ci"]) == 2
    assert set(rec["random_baseline"]) == set(rec["metrics"])
    assert len(rec["random_baseline"]["srcc"]["per_seed"]) == 5
    manifest = json.loads((nb201_store / "nb201" / "manifest.json").read_text())
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    assert rec["data"]["manifest_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert rec["n_scored"] == 300 and rec["bootstrap"]["resamples"] == 10


def test_baselines_with_paper_figures(nb201_store, tmp_path):
    paper = tmp_path / "paper.csv"
    paper.write_text(
        "table,family,setting,method,metric,mean,std\n"
        "T1,nb201,zero-shot,synflow,srcc,0.823,\nT1,nb201,zero-shot,flops,srcc,0.001,\n"
    )
    result = _run(
        "evaluate",
        "--task",
        "nb201-nonone/cifar10-valid:zero-shot",
        "--predictor",
        "baselines",
        "--root",
        str(nb201_store),
        "--bootstrap",
        "0",
        "--paper",
        str(paper),
    )
    assert result.exit_code == 0, result.output
    for name in ("flops", "params", "zc:synflow", "zc:jacov", "zc:snip", "zc:fisher", "paper SRCC"):
        assert name in result.output
    assert "0.823" in result.output and "ori-test" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "nb201/cifar10-valid:nope", "--predictor", "flops"], "malformed task name"),
        (["--task", "nb201/cifar10-valid:zero-shot", "--predictor", "nope"], "unknown predictor"),
        (
            ["--task", "nb201/cifar10-valid:zero-shot", "--predictor", "zc:synflow"],
            "column 'zc_synflow' of nb201 has no value for",
        ),
        (["--task", "nb201/cifar10-valid:zero-shot", "--predictor", "summary-rf"], "must be fit, but task"),
    ],
)
def test_evaluate_errors_are_clean(nb201_store, args, message):
    result = _run("evaluate", *args, "--root", str(nb201_store), "--bootstrap", "0")
    assert result.exit_code == 1
    assert "error:" in result.output and message in " ".join(result.output.split())


def test_keep_going_reports_failures_as_rows(nb201_store, tmp_path):
    out = tmp_path / "r.json"
    result = _run(
        "evaluate",
        "--task",
        "nb201/cifar10-valid:zero-shot",
        "--predictor",
        "zc:synflow,flops",
        "--root",
        str(nb201_store),
        "--bootstrap",
        "0",
        "--keep-going",
        "--json",
        str(out),
    )
    assert result.exit_code == 1
    assert "zc:synflow failed: ValidationError: column 'zc_synflow'" in result.output
    records = {r["predictor"]: r for r in read_json(out)}
    assert records["zc:synflow"]["error"] and records["zc:synflow"]["metrics"] == {}
    assert records["flops"]["error"] is None and records["flops"]["metrics"]["srcc"]["value"]


def test_unknown_metric_is_a_bad_option(nb201_store):
    result = _run(
        "evaluate",
        "--task",
        "nb201/cifar10-valid:zero-shot",
        "--predictor",
        "flops",
        "--metrics",
        "srcc,auc",
        "--root",
        str(nb201_store),
    )
    assert result.exit_code == 2 and "unknown metric 'auc'" in " ".join(result.output.split())


def test_evaluate_without_store_says_how_to_build(tmp_path):
    result = _run(
        "evaluate", "--task", "nb201/cifar10-valid:zero-shot", "--predictor", "flops", "--root", str(tmp_path)
    )
    assert result.exit_code == 1 and "cgbench build nb201" in result.output


# ---------------------------------------------------------------------------- fail early, keep results
def _flat(output: str) -> str:
    return " ".join(output.replace("│", " ").split())


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A predictor module in the current directory (imported as `module:Class` from there)."""
    name = f"cli_preds_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "import numpy as np\n"
        "class Crash:\n"
        "    def predict(self, graphs):\n"
        "        raise RuntimeError('boom')\n"
        "class FailsAfterFirstTask:\n"
        "    deterministic = True\n"
        "    def predict(self, graphs):\n"
        "        if len(graphs) != 300:\n"
        "            raise RuntimeError('crash in the second task')\n"
        "        return graphs.column('flops')\n"
        "class NeedsArg:\n"
        "    def __init__(self, alpha):\n"
        "        self.alpha = alpha\n"
        "    def predict(self, graphs):\n"
        "        return np.zeros(len(graphs))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield name
    sys.modules.pop(name, None)


@pytest.mark.parametrize(
    ("tasks", "predictors", "message"),
    [
        ("nb201/cifar10-valid:zero-shot,nb201/cifar10-valid:nope", "flops", "malformed task name"),
        ("nb201/cifar10-valid:zero-shot,nb999/x:zero-shot", "flops", "unknown family 'nb999'"),
        ("nb201/cifar10-valid:zero-shot", "flops,nope", "unknown predictor 'nope'"),
        ("nb201/cifar10-valid:zero-shot", "flops,no_such_module_q:X", "cannot import module"),
    ],
)
def test_every_name_is_checked_before_any_data_is_read(tmp_path, tasks, predictors, message):
    # the root holds no store: reading data first would fail with "cgbench build nb201" instead
    out = tmp_path / "r.json"
    args = ["--task", tasks, "--predictor", predictors, "--root", str(tmp_path / "empty"), "--json", str(out)]
    result = _run("evaluate", *args)
    assert result.exit_code == 1 and "error:" in result.output
    assert message in _flat(result.output) and "cgbench build" not in result.output
    assert not out.exists()


def test_finished_tasks_survive_a_crash_in_a_later_task(nb201_store, tmp_path, plugin_dir):
    out = tmp_path / "r.json"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--task",
            "nb201/cifar10-valid:zero-shot,nb201/cifar10-valid:fine-tune-50",
            "--predictor",
            f"{plugin_dir}:FailsAfterFirstTask,flops",
            "--root",
            str(nb201_store),
            "--bootstrap",
            "0",
            "--json",
            str(out),
        ],
    )
    assert isinstance(result.exception, RuntimeError) and "crash in the second task" in str(result.exception)
    records = read_json(out)
    assert [(r["task"]["name"], r["predictor"]) for r in records] == [
        ("nb201/cifar10-valid:zero-shot", f"{plugin_dir}:FailsAfterFirstTask"),
        ("nb201/cifar10-valid:zero-shot", "flops"),
    ]
    assert records[0]["metrics"]["srcc"]["value"] == records[1]["metrics"]["srcc"]["value"]
    assert "finished task(s) are in" in _flat(result.output)
    assert not list(tmp_path.glob("*.tmp"))


def test_keep_going_turns_any_failure_into_an_error_row(nb201_store, tmp_path, plugin_dir):
    out = tmp_path / "r.json"
    predictors = f"{plugin_dir}:Crash,column:arch_id,zc:bogus,{plugin_dir}:NeedsArg,flops"
    result = _run(
        "evaluate",
        "--task",
        "nb201/cifar10-valid:zero-shot",
        "--predictor",
        predictors,
        "--root",
        str(nb201_store),
        "--bootstrap",
        "0",
        "--seeds",
        "0,1",
        "--keep-going",
        "--json",
        str(out),
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = {r["predictor"]: r["error"] for r in read_json(out)}
    assert errors[f"{plugin_dir}:Crash"].startswith("RuntimeError: boom (at ")
    assert errors["column:arch_id"].startswith("ValidationError: column 'arch_id' of nb201 holds string")
    assert errors["zc:bogus"].startswith("UnknownColumnError: no column 'zc_bogus' in family 'nb201'")
    assert "NeedsArg() failed: TypeError" in errors[f"{plugin_dir}:NeedsArg"]
    assert errors["flops"] is None
    flat = _flat(result.output)
    assert f"{plugin_dir}:Crash failed: RuntimeError: boom" in flat


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing_dir/r.json", "does not exist"),
        (".", "is a directory"),
        ("file.txt/r.json", "does not exist"),
    ],
)
def test_unwritable_json_path_fails_before_any_computation(nb201_store, tmp_path, where, message):
    (tmp_path / "file.txt").write_text("x")
    result = _run(
        "evaluate",
        "--task",
        "nb201/cifar10-valid:zero-shot",
        "--predictor",
        "flops",
        "--root",
        str(nb201_store),
        "--json",
        str(tmp_path / where),
    )
    assert result.exit_code == 2 and message in _flat(result.output)
    assert "archs scored" not in result.output


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--seeds", "0,1,0"], "duplicated seed(s) 0"),
        (["--seeds=-1"], "seeds must be in 0..4294967295"),
        (["--seeds", "1,4294967296"], "got 4294967296"),
        (["--seeds", ","], "at least one seed"),
        (["--metrics", ""], "at least one metric"),
        (["--paper", "no_such_paper.csv"], "not found"),
    ],
)
def test_bad_options_are_clean_errors(tmp_path, option, message):
    args = ["--task", "nb201/cifar10-valid:zero-shot", "--predictor", "flops", "--root", str(tmp_path)]
    result = _run("evaluate", *args, *option)
    assert result.exit_code == 2 and message in _flat(result.output)


def test_malformed_paper_file_is_a_clean_error(tmp_path):
    paper = tmp_path / "paper.csv"
    paper.write_text("a,b\n1,2\n")
    args = ["--task", "nb201/cifar10-valid:zero-shot", "--predictor", "flops", "--root", str(tmp_path)]
    result = _run("evaluate", *args, "--paper", str(paper))
    assert result.exit_code == 2 and "expected the columns" in _flat(result.output)
