"""A new user's failures (issue 14 §1, §2, §4, §7, §8, §9): one line naming the problem and the
fix, exit code 1 or 2, no traceback (unless --debug or the user's own predictor code), typed
family options, one family registry, Ctrl-C that says how to resume."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cgbench.cli import app
from cgbench.commands import errors
from cgbench.loaders.base import OptionError, family_options, parse_options, report_step, set_step_hook
from cgbench.loaders.registry import check_family, family_class, family_names

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, columns: int = 80, **kwargs):
    """The CLI at a fixed terminal width (tests must not depend on the real one)."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)}, **kwargs)


def _one_error_line(result) -> str:
    """The output holds exactly one ``error:`` line and no traceback; returns that line."""
    out = result.output
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out
    return lines[0]


# ---------------------------------------------------------------------------- §2 OS errors
@pytest.fixture(autouse=True)
def _no_debug():
    errors.set_debug(False)
    yield
    errors.set_debug(False)


def test_build_root_that_is_a_file_is_one_line(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    result = _run("build", "nb201", "--root", str(target), "--limit", "5", "--offline")
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert str(target) in line and "choose another path" in line


def test_build_root_under_a_file_is_one_line(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    result = _run("build", "nb201", "--root", str(target / "store"), "--limit", "5", "--offline")
    assert result.exit_code == 1
    assert str(target) in _one_error_line(result)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_build_root_under_proc_is_one_line():
    result = _run("build", "nb201", "--root", "/proc/cgbench-store", "--limit", "5", "--offline")
    assert result.exit_code == 1
    assert "/proc/cgbench-store" in _one_error_line(result)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_build_root_read_only_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = _run("build", "nb201", "--root", str(folder / "store"), "--limit", "5", "--offline")
    finally:
        folder.chmod(0o755)
    assert result.exit_code == 1
    assert "permission" in _one_error_line(result).lower()


def test_describe_names_file_and_fix():
    err = PermissionError(13, "Permission denied", "/data/store")
    assert errors.describe(err) == (
        "/data/store: permission denied; check its permissions or choose another folder (e.g. --root)"
    )
    assert "read-only" in errors.describe(OSError(30, "Read-only file system", "/mnt/ro"))
    assert errors.describe(ValueError("not ours")) is None
    network = errors.describe(ConnectionError("Max retries exceeded"))
    assert network.startswith("Max retries exceeded; check") and "damaged" not in network


def test_debug_keeps_the_traceback(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    result = _run("--debug", "build", "nb201", "--root", str(target), "--limit", "5", "--offline")
    assert isinstance(result.exception, FileExistsError)


# ---------------------------------------------------------------------------- §2 damaged shards
def _damaged_copy(store: Path, tmp_path: Path, how: str) -> Path:
    root = tmp_path / f"store-{how}"
    shutil.copytree(store / "nb201", root / "nb201", symlinks=False)
    shard = sorted((root / "nb201").glob("*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    if how == "truncated":
        data = data[:-100]
    else:  # flipped bytes all through the column chunks (the footer kept)
        for i in range(100, len(data) - 4000, 97):
            data[i] ^= 0xFF
    shard.write_bytes(bytes(data))
    return root


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_damaged_shard_during_evaluate_is_one_line(nb201_store, tmp_path, how):
    root = _damaged_copy(nb201_store, tmp_path, how)
    result = _run(
        "evaluate", "--task", "nb201/cifar10-valid:zero-shot", "--predictor", "flops,params",
        "--root", str(root), "--bootstrap", "0", columns=60,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    line = _one_error_line(result)
    assert "nb201" in line and ("--verify" in line or "rebuild" in line), line


# ---------------------------------------------------------------------------- §2 user code
@pytest.fixture
def failing_plugin(tmp_path, monkeypatch):
    name = f"nu_preds_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "class MissingWeights:\n    def predict(self, graphs):\n        open('/nonexistent/weights.pt')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_user_predictor_exception_keeps_its_traceback(nb201_store, failing_plugin):
    result = _run(
        "evaluate", "--task", "nb201/cifar10-valid:zero-shot", "--predictor",
        f"{failing_plugin}:MissingWeights", "--root", str(nb201_store), "--bootstrap", "0",
    )  # fmt: skip
    assert isinstance(result.exception, FileNotFoundError), result.output


# ---------------------------------------------------------------------------- §1 no wrapping
def test_messages_never_wrap_commands_or_paths(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "store"
    args = ["evaluate", "--task", "nb201/cifar10-valid:zero-shot", "--predictor", "flops"]
    result = _run(*args, "--root", str(deep), columns=40)
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "cgbench build nb201" in line


def test_usage_errors_are_plain_lines(tmp_path):
    result = _run("evaluate", "--task", "x", "--predictor", "flops", "--metrics", "auc", columns=30)
    assert result.exit_code == 2 and "╭" not in result.output
    assert any("unknown metric 'auc'" in line for line in result.output.splitlines())


# ---------------------------------------------------------------------------- §7 typed options
def test_every_family_declares_parsable_options():
    for name in family_names():
        for option in family_options(family_class(name)).values():
            assert option.kind in ("bool", "int", "float", "str", "path", "choice", "ints"), (name, option)


def test_options_parse_as_their_declared_types():
    nb101 = family_class("nb101")
    parsed = parse_options(nb101, ["uniform=false", "random-specs=10", "budgets=4,12,36,108", "seed=3"])
    assert parsed == {"uniform": False, "random_specs": 10, "budgets": (4, 12, 36, 108), "seed": 3}
    assert parse_options(nb101, ["uniform=True"])["uniform"] is True
    assert parse_options(family_class("ofa_mbv3"), ["width=none"])["width"] is None
    assert parse_options(family_class("ofa_pn"), ["width=1.2"])["width"] == 1.2
    assert parse_options(family_class("nb201"), ["official=x.pth"])["official"] == Path("x.pth")
    assert parse_options(family_class("anb"), ["platform=fpga"])["platform"] == "fpga"
    with pytest.raises(OptionError, match="random_specs='abc' is not int"):
        parse_options(nb101, ["random_specs=abc"])
    with pytest.raises(OptionError, match="uniform='maybe' is not bool"):
        parse_options(nb101, ["uniform=maybe"])
    with pytest.raises(OptionError, match="platform='tpu' is not gpu|fpga"):
        parse_options(family_class("anb"), ["platform=tpu"])
    with pytest.raises(OptionError, match="unknown option 'unifrm'"):
        parse_options(nb101, ["unifrm=1"])


def test_build_bad_option_is_one_line():
    result = _run("build", "nb101", "--opt", "random_specs=abc")
    assert result.exit_code == 1
    assert "random_specs='abc' is not int" in _one_error_line(result)


def test_build_help_lists_families_and_options():
    plain = _run("build", "--help", columns=200)
    assert all(name in plain.output for name in family_names())
    nb101 = _run("build", "nb101", "--help", columns=200)
    assert "uniform: bool = false" in nb101.output and "random_specs: int | none = none" in nb101.output
    listing = _run("families")
    assert listing.exit_code == 0
    assert "nb_macro: no options" in listing.output and "platform: gpu|fpga = gpu" in listing.output


# ---------------------------------------------------------------------------- §4 one registry
def test_unknown_family_is_named_the_same_everywhere(tmp_path):
    known = ", ".join(family_names())
    with pytest.raises(Exception, match=f"unknown family 'nb999'; known families: {known}"):
        check_family("nb999")
    info = _run("info", "nb999", "--root", str(tmp_path))
    build = _run("build", "nb999", "--root", str(tmp_path))
    download = _run("download", "nb999", "--root", str(tmp_path), "--offline")
    for result in (info, build, download):
        assert result.exit_code in (1, 2)
        line = _one_error_line(result)
        assert "unknown family 'nb999'" in line and known in line, line
        assert "cgbench build nb999" not in line


def test_cli_starts_without_torch():
    code = "import sys; import cgbench.cli; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------- §8 progress, Ctrl-C
def test_build_interrupted_says_how_to_resume(monkeypatch, tmp_path):
    import cgbench.benchmarks.build as engine

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "build_family", interrupted)
    result = _run("build", "nb201", "--root", str(tmp_path))
    assert result.exit_code == 130
    assert "interrupted; rerun the same command to resume" in result.output


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_stopping_the_pool_does_not_wait_for_pending_chunks():
    from cgbench.benchmarks.engines import _stop_pool

    pool = ProcessPoolExecutor(2)
    futures = [pool.submit(_sleep, 30) for _ in range(6)]
    time.sleep(0.5)
    started = time.perf_counter()
    _stop_pool(pool)
    assert time.perf_counter() - started < 10
    assert any(f.cancelled() for f in futures)  # the ones not yet handed to a worker


def test_nb101_enumeration_reports_progress():
    from cgbench.loaders.nb101 import all_specs

    seen: list[tuple] = []
    set_step_hook(lambda what, done, total: seen.append((what, done, total)))
    try:
        next(iter(all_specs()))
        report_step("other", 1, 2)
    finally:
        set_step_hook(None)
    assert seen[0][0] == "nb101: enumerating all cells" and seen[0][1] == 0 and seen[0][2] > 1


# ---------------------------------------------------------------------------- §9
def test_info_never_truncates_at_80_columns(nb201_store):
    result = _run("info", "--root", str(nb201_store), columns=80)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and str(nb201_store) in result.output


def test_too_small_fine_tune_population_is_not_called_the_store():
    from cgbench.benchmarks.tasks import TaskError, fine_tune_sample

    with pytest.raises(TaskError) as caught:
        fine_tune_sample([f"a{i}" for i in range(28)], "toy", 50)
    assert "only 28 are eligible" in str(caught.value) and "the store has" not in str(caught.value)


class _Archs(list):
    @property
    def arch_ids(self) -> list[str]:
        return list(self)


class _PredictOnly:
    def predict(self, graphs):
        import numpy as np

        return np.arange(len(graphs), dtype=float)


class _FitOnly(_PredictOnly):
    def fit(self, graphs, labels):
        self.fitted = len(graphs)


def test_fine_tune_note_only_for_a_class_with_fit():
    """The transfer fine-tune step: "fit on the target sample alone" only for a class with fit()."""
    from types import SimpleNamespace

    import numpy as np

    from cgbench.eval.predictor import PredictorSpec
    from cgbench.eval.protocols import _predict_once

    sample = SimpleNamespace(archs=_Archs(["s0", "s1"]), labels=np.array([0.1, 0.2]))
    scored = SimpleNamespace(archs=_Archs([f"a{i}" for i in range(5)]), labels=np.linspace(0.1, 0.5, 5))
    prep = SimpleNamespace(scored=scored, fit_data=lambda seed: (None, None, sample))
    notes: dict[str, set] = {}
    for cls in (_PredictOnly, _FitOnly):
        notes[cls.__name__] = set()
        _predict_once(prep, PredictorSpec(cls.__name__, lambda seed, c=cls: c()), 0, notes[cls.__name__])
    assert notes["_FitOnly"] == {"_FitOnly has no fine_tune(): fit on the target sample alone"}
    assert notes["_PredictOnly"] == set()
