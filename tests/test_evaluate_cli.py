"""`cgbench evaluate` and `cgbench tasks` on a small real NB-201 store."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from cgbench.cli import app
from cgbench.eval.results import RESULT_SCHEMA, read_json

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_tasks_lists_the_documented_names():
    result = _run("tasks")
    assert result.exit_code == 0
    for name in (
        "nb201/cifar10-valid:fine-tune-50",
        "nb101->nb201/cifar10-valid:zero-shot",
        "nb201-nonone/cifar10-valid:zero-shot",
    ):
        assert name in result.output
    only = _run("tasks", "--family", "nb301")
    assert "nb301/cifar10:in-family" in only.output and "nb201/" not in only.output


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
