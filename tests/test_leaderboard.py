"""Leaderboard: submission checks, scoring through cgbench.eval, tamper detection, the site."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from cgbench.benchmarks.store import open_dataset
from cgbench.benchmarks.tasks import parse_task
from cgbench.eval import evaluate
from cgbench.leaderboard import SubmissionError, build_site, load_submission, score_submission
from cgbench.leaderboard.scoring import score_baselines

TASK = "nb201/cifar10-valid:zero-shot"
XSS_NAME = "<script>window.__xss=1</script>Evil & Co"
XSS_DESCRIPTION = '<img src=x onerror="window.__xss=1"> "quoted" </td></tr><script>window.__xss=2</script>'
XSS_PAPER = "javascript:window.__xss=1"
XSS_CODE = 'https://example.org/" onmouseover="window.__xss=1'


@pytest.fixture(autouse=True)
def _quiet_unofficial():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 300-arch test store is not the official population
        yield


def _meta(name: str, tasks: list[dict], **extra) -> dict:
    meta = {
        "format": "cgbench-submission/1",
        "name": name,
        "authors": ["A. Author"],
        "contact": "a@example.org",
        "paper_url": "https://example.org/paper",
        "code_url": "https://example.org/code",
        "license": "MIT",
        "description": "FLOPs as a predictor.",
        "training_data": "none",
        "hardware": "2-core CPU",
        "hparam_search_budget": "none",
        "tasks": tasks,
    }
    meta.update(extra)
    return meta


def _flops_table(root: Path) -> pa.Table:
    t = open_dataset("nb201", root=root).table(["arch_id", "flops"])
    return pa.table({"arch_id": t.column("arch_id"), "score": t.column("flops")})


def make_submission(
    directory: Path, root: Path, name: str = "FLOPs file", *, task: str = TASK, per_seed: bool = True, **meta
) -> Path:
    """A submission scoring ``task`` with the store's FLOPs column (one CSV per seed, or one file)."""
    (directory / "predictions").mkdir(parents=True)
    table = _flops_table(root)
    if per_seed:
        predictions = {}
        for seed in parse_task(task).seeds:
            rel = f"predictions/seed{seed}.csv"
            table.to_pandas().to_csv(directory / rel, index=False)
            predictions[seed] = rel
    else:
        predictions = "predictions/all.parquet"
        pq.write_table(table, directory / predictions)
    (directory / "submission.yaml").write_text(
        yaml.safe_dump(_meta(name, [{"task": task, "predictions": predictions}], **meta))
    )
    return directory


def test_flops_submission_scores_exactly_what_evaluate_scores(nb201_store: Path, tmp_path: Path) -> None:
    sub = make_submission(tmp_path / "sub", nb201_store)
    scored = score_submission(sub, tmp_path / "results", root=nb201_store, n_bootstrap=20)
    [path] = scored.records
    rec = json.loads(path.read_text())
    [ref] = evaluate(TASK, ["flops"], root=nb201_store, n_bootstrap=20)
    for metric in ("srcc", "kendall_tau", "ndcg@10"):  # five seeds, each exactly the baseline's score
        assert rec["metrics"][metric]["per_seed"] == [ref.metrics[metric].value] * 5, metric
    block = rec["leaderboard"]
    assert block["kind"] == "submission" and block["submission_sha256"] and block["files"]["submission.yaml"]
    assert rec["data"]["manifest_sha256"] == ref.data["manifest_sha256"]
    assert block["splits_version"].startswith("cgbench-splits/")
    assert rec["versions"]["cgbench"]
    assert len(block["rank_pairs"]) == ref.n_scored  # 300 archs: all points kept
    # the stored copy is what was scored
    assert (scored.directory / "submission" / "predictions" / "seed0.csv").read_bytes() == (
        sub / "predictions" / "seed0.csv"
    ).read_bytes()


def test_one_file_with_seed_column_or_seed_free(nb201_store: Path, tmp_path: Path) -> None:
    sub = make_submission(tmp_path / "sub", nb201_store, per_seed=False)
    [path] = score_submission(sub, tmp_path / "results", root=nb201_store, n_bootstrap=0).records
    [ref] = evaluate(TASK, ["flops"], root=nb201_store, n_bootstrap=0)
    rec = json.loads(path.read_text())
    for metric in ("srcc", "kendall_tau", "ndcg@10"):  # seed-free scores: scored once, as flops is
        assert rec["metrics"][metric]["value"] == ref.metrics[metric].value, metric


def _expect_refusal(sub: Path, fragment: str, root: Path, results: Path) -> None:
    with pytest.raises((SubmissionError, ValueError)) as info:
        score_submission(sub, results, root=root, n_bootstrap=0)
    assert fragment in str(info.value), str(info.value)
    assert not (results / "submissions" / "x").exists()


def _edit_yaml(sub: Path, **changes) -> None:
    meta = yaml.safe_load((sub / "submission.yaml").read_text())
    meta.update(changes)
    (sub / "submission.yaml").write_text(yaml.safe_dump(meta))


@pytest.mark.parametrize(
    ("attack", "fragment"),
    [
        ("dotdot", "leaves the submission directory"),
        ("absolute", "absolute path"),
        ("symlink", "symbolic link"),
        ("huge", "over the limit"),
        ("custom_tag", "not plain YAML"),
        ("unknown_field", "unknown field"),
        ("missing_seed", "missing seeds [4]"),
        ("bad_task", "tasks[0]"),
        ("unsafe_name", "unsafe file name"),
        ("duplicate_ids", "duplicated arch_id"),
        ("nan_scores", "non-finite"),
        ("extra_ids", "nb201-unknown"),
    ],
)
def test_hostile_submission_is_refused_with_a_named_error(
    attack: str, fragment: str, nb201_store: Path, tmp_path: Path
) -> None:
    sub = make_submission(tmp_path / "x", nb201_store, name="x")
    seed0 = sub / "predictions" / "seed0.csv"
    meta = yaml.safe_load((sub / "submission.yaml").read_text())
    preds = meta["tasks"][0]["predictions"]
    if attack == "dotdot":
        preds[0] = "../outside.csv"
    elif attack == "absolute":
        preds[0] = str(seed0.resolve())
    elif attack == "symlink":
        target = tmp_path / "elsewhere.csv"
        target.write_bytes(seed0.read_bytes())
        seed0.unlink()
        seed0.symlink_to(target)
    elif attack == "huge":
        with open(seed0, "r+b") as fh:
            fh.truncate(1 << 30)  # 1 GB (sparse): refused from its size, never read
    elif attack == "custom_tag":
        text = (sub / "submission.yaml").read_text()
        (sub / "submission.yaml").write_text(text + "extra: !!python/object/apply:os.system ['echo pwned']\n")
    elif attack == "unknown_field":
        meta["favourite_colour"] = "blue"
    elif attack == "missing_seed":
        del preds[4]
    elif attack == "bad_task":
        meta["tasks"][0]["task"] = "nb999/cifar10:zero-shot"
    elif attack == "unsafe_name":
        preds[0] = "predictions/seed 0;rm.csv"
    elif attack in ("duplicate_ids", "nan_scores", "extra_ids"):
        lines = seed0.read_text().splitlines()
        if attack == "duplicate_ids":
            lines.append(lines[1])
        elif attack == "nan_scores":
            arch = lines[1].split(",")[0]
            lines[1] = f"{arch},nan"
        else:
            lines.append("nb201-unknown,1.0")
        seed0.write_text("\n".join(lines) + "\n")
    if attack not in ("custom_tag", "symlink", "huge", "duplicate_ids", "nan_scores", "extra_ids"):
        (sub / "submission.yaml").write_text(yaml.safe_dump(meta))
    _expect_refusal(sub, fragment, nb201_store, tmp_path / "results")


def test_tampered_file_is_refused_and_the_site_still_builds(nb201_store: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    score_submission(make_submission(tmp_path / "a", nb201_store, name="good one"), results, root=nb201_store)
    scored = score_submission(
        make_submission(tmp_path / "b", nb201_store, name="tampered"), results, root=nb201_store
    )
    stored = scored.directory / "submission" / "predictions" / "seed2.csv"
    stored.write_text(stored.read_text().replace("0.", "1.", 1))  # changed after scoring
    (results / "submissions" / "junk").mkdir()
    (results / "submissions" / "junk" / "results").mkdir()
    (results / "submissions" / "junk" / "results" / "t.json").write_text("{not json")
    report = build_site(results, tmp_path / "site")
    assert [e.name for e in report.entries] == ["good one"]
    assert "seed2.csv changed after scoring" in report.refused["submissions/tampered"]
    assert "unreadable result record" in report.refused["submissions/junk"]
    index = (tmp_path / "site" / "index.html").read_text()
    assert "changed after scoring" in index and "good one" in index
    site_json = json.loads((tmp_path / "site" / "results.json").read_text())
    assert [r["name"] for r in site_json["tasks"][TASK]["rows"]] == ["good one"]


def test_other_data_version_is_marked_never_mixed(nb201_store: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    score_baselines(["flops"], [TASK], results, root=nb201_store, n_bootstrap=0)
    score_submission(
        make_submission(tmp_path / "a", nb201_store, name="same data"), results, root=nb201_store
    )
    old = score_submission(
        make_submission(tmp_path / "b", nb201_store, name="old data"), results, root=nb201_store
    )
    [path] = old.records
    rec = json.loads(path.read_text())
    rec["data"]["manifest_sha256"] = "0" * 64  # as if scored on another build of the data
    path.write_text(json.dumps(rec))
    build_site(results, tmp_path / "site")
    site_json = json.loads((tmp_path / "site" / "results.json").read_text())["tasks"][TASK]
    assert sorted(r["name"] for r in site_json["rows"]) == ["flops", "same data"]
    assert [r["entry"] for r in site_json["other_data_version"]] == ["old-data"]
    page = (tmp_path / "site" / "tasks").glob("*.html")
    assert any("Scored on another data version" in p.read_text() for p in page)


def test_user_text_is_escaped_in_every_page(nb201_store: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    sub = make_submission(
        tmp_path / "evil",
        nb201_store,
        name=XSS_NAME,
        description=XSS_DESCRIPTION,
        paper_url=XSS_PAPER,
        code_url=XSS_CODE,
    )
    score_submission(sub, results, root=nb201_store, n_bootstrap=0)
    build_site(results, tmp_path / "site")
    pages = [p.read_text() for p in (tmp_path / "site").rglob("*.html")]
    assert len(pages) >= 3
    for html in pages:
        assert "<script>window.__xss" not in html
        assert 'onerror="window' not in html and '" onmouseover="' not in html
        assert 'href="javascript:' not in html
    entry_page = next(p for p in pages if "Evil &amp; Co" in p and "meta-description" in p)
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in entry_page


def test_publish_copies_the_site_and_a_failed_build_keeps_the_old_one(
    nb201_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    score_submission(make_submission(tmp_path / "a", nb201_store), results, root=nb201_store, n_bootstrap=0)
    build_site(results, tmp_path / "site", publish=tmp_path / "public")
    assert (tmp_path / "public" / "index.html").read_text() == (tmp_path / "site" / "index.html").read_text()
    assert (tmp_path / "public" / "results.json").is_file()
    before = sorted(p.name for p in (tmp_path / "site").rglob("*"))

    def broken_plot(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("cgbench.leaderboard.site._plot_svg", broken_plot)
    with pytest.raises(RuntimeError, match="disk full"):
        build_site(results, tmp_path / "site")
    assert sorted(p.name for p in (tmp_path / "site").rglob("*")) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site.")]  # no staging left behind


def test_load_submission_reports_the_checksum_of_every_file(nb201_store: Path, tmp_path: Path) -> None:
    sub = load_submission(make_submission(tmp_path / "s", nb201_store))
    assert set(sub.files) == {"submission.yaml"} | {f"predictions/seed{s}.csv" for s in range(5)}
    assert len(sub.sha256) == 64 and sub.slug == "flops-file"
    os.utime(tmp_path / "s" / "submission.yaml")  # touching does not change the checksum
    assert load_submission(tmp_path / "s").sha256 == sub.sha256
    np.testing.assert_equal(len(sub.tasks), 1)


def test_cli_submit_then_build_and_a_refusal_is_one_line(nb201_store: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cgbench.cli import app

    runner = CliRunner()
    results, site = tmp_path / "results", tmp_path / "site"
    sub = make_submission(tmp_path / "s", nb201_store)
    args = ["leaderboard", "submit", str(sub), "--results", str(results), "--root", str(nb201_store)]
    out = runner.invoke(app, [*args, "--bootstrap", "0"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["leaderboard", "build", str(results), "--out", str(site)])
    assert out.exit_code == 0, out.output
    assert (site / "index.html").is_file() and "1 entries" in out.output
    (sub / "submission.yaml").write_text("format: cgbench-submission/1\nname: [\n")
    out = runner.invoke(app, [*args])
    assert out.exit_code == 1
    assert "not plain YAML" in out.output and "Traceback" not in out.output


# ---------------------------------------------------------------------------- in a real browser
# Debian's headless chromium through selenium; `.ci/run` installs chromium and chromium-driver.
# Without them these tests fail naming what to install, unless CGBENCH_SKIP_BROWSER=1.
ARTIFACTS = Path(os.environ.get("CGBENCH_ARTIFACTS", Path(__file__).resolve().parents[1] / "out"))


def _driver():
    if os.environ.get("CGBENCH_SKIP_BROWSER") == "1":
        pytest.skip("CGBENCH_SKIP_BROWSER=1")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.fail(
            "headless browser tests need Debian's chromium and chromium-driver: "
            "apt-get install chromium chromium-driver"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--allow-file-access-from-files",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture(scope="module")
def site(nb201_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("leaderboard_site")
    results = base / "results"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score_baselines(["flops", "params"], [TASK], results, root=nb201_store, n_bootstrap=20)
        score_submission(
            make_submission(base / "good", nb201_store, name="FLOPs file"), results, root=nb201_store
        )
        evil = make_submission(
            base / "evil",
            nb201_store,
            name=XSS_NAME,
            description=XSS_DESCRIPTION,
            paper_url=XSS_PAPER,
            code_url=XSS_CODE,
        )
        score_submission(evil, results, root=nb201_store, n_bootstrap=0)
    return build_site(results, base / "site").out


@pytest.fixture(scope="module")
def browser():
    driver = _driver()
    yield driver
    driver.quit()


def _severe_logs(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def test_overview_and_task_page_load_without_console_errors(site: Path, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get((site / "index.html").as_uri())
    assert "Leaderboard" in browser.find_element(By.TAG_NAME, "h1").text
    assert browser.find_elements(By.CSS_SELECTOR, "#protocol-zero-shot table tbody tr")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "leaderboard-overview.png"))
    assert _severe_logs(browser) == []
    browser.find_element(By.CSS_SELECTOR, "#protocol-zero-shot thead a").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == TASK
    assert _severe_logs(browser) == []


def test_a_column_sort_reorders_the_ranking(site: Path, browser) -> None:
    from selenium.webdriver.common.by import By

    page = next((site / "tasks").glob("*.html"))
    browser.get(page.as_uri())

    def column(i: int) -> list[str]:
        return [
            r.find_elements(By.TAG_NAME, "td")[i].get_attribute("data-value")
            for r in browser.find_elements(By.CSS_SELECTOR, "#ranking tbody tr")
        ]

    headers = browser.find_elements(By.CSS_SELECTOR, "#ranking thead th")
    srcc = [h.text for h in headers].index("SRCC")
    headers[srcc].click()  # first click: descending
    values = [float(v) for v in column(srcc) if v]
    assert values == sorted(values, reverse=True) and len(values) >= 4  # entries + random + paper rows
    headers[srcc].click()
    values = [float(v) for v in column(srcc) if v]
    assert values == sorted(values)
    assert headers[srcc].get_attribute("aria-sort") == "ascending"
    assert _severe_logs(browser) == []


def test_submission_page_shows_its_plot(site: Path, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get((site / "entries" / "submission-flops-file.html").as_uri())
    [img] = browser.find_elements(By.CSS_SELECTOR, ".plots img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
    assert _severe_logs(browser) == []


def test_hostile_metadata_renders_as_inert_text(site: Path, browser) -> None:
    from selenium.webdriver.common.by import By

    pages = [
        site / "index.html",
        *sorted((site / "entries").glob("submission-*.html")),
        *(site / "tasks").glob("*.html"),
    ]
    for page in pages:
        browser.get(page.as_uri())
        for a in browser.find_elements(By.TAG_NAME, "a"):  # hover/click-free check of every link
            href = a.get_attribute("href") or ""
            assert not href.lower().startswith("javascript:"), page
            assert a.get_attribute("onmouseover") is None
        assert browser.execute_script("return typeof window.__xss") == "undefined", page
    browser.get((site / "entries" / "submission-script-window-xss-1-script-evil-co.html").as_uri())
    assert browser.find_element(By.ID, "entry-name").text == XSS_NAME  # shown, as text
    assert browser.find_element(By.ID, "meta-description").text == XSS_DESCRIPTION.strip()
    assert browser.find_element(By.ID, "meta-paper_url").text == XSS_PAPER
    assert not browser.find_elements(By.CSS_SELECTOR, "#meta-paper_url a")  # javascript: is never a link
    assert browser.find_elements(By.CSS_SELECTOR, "img[src='x']") == []
    assert browser.execute_script("return typeof window.__xss") == "undefined"
