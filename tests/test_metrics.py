"""Metrics: golden values computed by hand, agreement with scipy / scikit-learn, NaN on constants."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import ndcg_score

from cgbench.eval.metrics import (
    best_rank_in_top_k,
    bootstrap_ci,
    compute_metrics,
    get_metric,
    kendall_tau,
    kendall_tau_paper_compatible,
    mae_pct,
    metric_names,
    ndcg_at_k,
    precision_at_k,
    relevance,
    spearman,
)
from cgbench.eval.validation import ConstantLabelWarning, ConstantPredictionWarning


def _rng_cases(n_cases: int, seed: int = 0):
    """Random (labels, predictions) pairs with many ties (rounded values, resampling)."""
    rng = np.random.default_rng(seed)
    for i in range(n_cases):
        n = int(rng.integers(12, 300))
        y = np.round(rng.random(n), int(rng.integers(1, 4)))
        p = np.round(y + rng.normal(0, rng.random(), n), int(rng.integers(0, 3)))
        if i % 2:
            idx = rng.integers(0, n, n)
            y, p = y[idx], p[idx]
        if np.ptp(y) > 0 and np.ptp(p) > 0:
            yield y, p


# ---------------------------------------------------------------------------- golden values
def test_hand_computed_srcc_and_tau():
    y = [1, 2, 3, 4, 5]
    p = [1, 3, 2, 4, 5]  # one swapped pair: sum d^2 = 2, one discordant pair of 10
    assert spearman(y, p) == pytest.approx(1 - 6 * 2 / (5 * 24))
    assert kendall_tau(y, p) == pytest.approx(0.8)


def test_hand_computed_tau_b_with_ties():
    # 6 pairs; the pair (0, 1) is tied in the prediction; the other 5 are concordant
    assert kendall_tau([1, 2, 3, 4], [1, 1, 2, 3]) == pytest.approx(5 / math.sqrt(6 * 5))


def test_hand_computed_ndcg():
    y, p = [0.5, 0.7, 0.9], [3.0, 2.0, 1.0]  # relevance 0, 10, 20; predicted worst first
    l3 = math.log2(3)
    assert ndcg_at_k(y, p, k=3) == pytest.approx((10 / l3 + 20 / 2) / (20 + 10 / l3))
    assert ndcg_at_k(y, p, k=2) == pytest.approx((10 / l3) / (20 + 10 / l3))
    assert ndcg_at_k(y, p, k=1) == 0.0
    assert ndcg_at_k(y, [1.0, 2.0, 3.0], k=2) == pytest.approx(1.0)


def test_relevance_is_min_max_times_20():
    np.testing.assert_allclose(relevance([0.5, 0.7, 0.9]), [0.0, 10.0, 20.0])


def test_hand_computed_precision_and_best_rank():
    y = [0.9, 0.8, 0.7, 0.6, 0.5]
    p = [1, 5, 4, 3, 2]  # predicted top-2: the 2nd and 3rd best
    assert precision_at_k(y, p, k=2) == 0.5
    assert best_rank_in_top_k(y, p, k=2) == 2
    assert precision_at_k(y, p, k=5) == 1.0
    assert best_rank_in_top_k(y, p, k=5) == 1


def test_prediction_ties_at_the_boundary_never_help():
    y = [0.9, 0.5, 0.8, 0.7, 0.6]
    p = [1, 1, 0, 0, 0]  # tie at the top: the worse arch (0.5) is taken first
    assert precision_at_k(y, p, k=1) == 0.0
    assert best_rank_in_top_k(y, p, k=1) == 5
    assert precision_at_k(y, p, k=2) == 0.5


def test_label_ties_share_the_true_top_k():
    y, p = [0.9, 0.9, 0.1], [1, 3, 2]
    assert precision_at_k(y, p, k=1) == 1.0
    assert best_rank_in_top_k(y, p, k=1) == 1


def test_mae_in_percent_points():
    assert mae_pct([0.9, 0.8], [0.88, 0.85]) == pytest.approx(3.5)


# ---------------------------------------------------------------------------- vs scipy / sklearn
def test_agree_with_scipy_and_sklearn():
    for y, p in _rng_cases(60):
        assert spearman(y, p) == pytest.approx(stats.spearmanr(y, p).statistic, abs=1e-12)
        assert kendall_tau(y, p) == pytest.approx(stats.kendalltau(y, p).statistic, abs=1e-12)
        tau_c = stats.kendalltau(y, p, variant="c").statistic
        assert kendall_tau(y, p, variant="c") == pytest.approx(tau_c, abs=1e-12)
        rel = (y - y.min()) / (y.max() - y.min()) * 20
        for k in (1, 3, 10):
            expected = ndcg_score(rel[None], p[None], k=k)
            assert ndcg_at_k(y, p, k=k) == pytest.approx(expected, abs=1e-12)


def test_ndcg_fast_path_matches_sklearn_on_large_tied_input():
    rng = np.random.default_rng(3)
    y = np.round(rng.beta(8, 2, 20_000), 3)
    p = np.round(y + rng.normal(0, 0.1, 20_000), 2)
    rel = (y - y.min()) / (y.max() - y.min()) * 20
    for k in (1, 10, 100):
        assert ndcg_at_k(y, p, k=k) == pytest.approx(ndcg_score(rel[None], p[None], k=k), abs=1e-12)


# ---------------------------------------------------------------------------- paper-compatible tau
def _paper_tau_bruteforce(y, p, min_diff=1e-4):
    t, q = np.round(np.asarray(y) * 1e6), np.round(np.asarray(p) * 1e6)
    signs = []
    for i in range(len(t)):
        for j in range(len(t)):
            if t[i] - t[j] >= round(min_diff * 1e6):
                signs.append(1 if q[i] >= q[j] else -1)
    return sum(signs) / len(signs)


def test_paper_compatible_tau_matches_pair_counting():
    for y, p in _rng_cases(30, seed=1):
        y = y / 10  # label differences around the 1e-4 threshold
        assert kendall_tau_paper_compatible(y, p) == pytest.approx(_paper_tau_bruteforce(y, p))


def test_paper_compatible_tau_hand_case():
    # pair (0.9, 0.90005) differs by < 1e-4: ignored; both remaining pairs are discordant
    assert kendall_tau_paper_compatible([0.9, 0.90005, 0.8], [1.0, 0.0, 2.0]) == -1.0


def test_paper_compatible_tau_is_biased_for_constant_predictions():
    y = np.linspace(0.5, 0.9, 20)
    with pytest.warns(ConstantPredictionWarning, match="biased variant scores it 1 "):
        assert kendall_tau_paper_compatible(y, np.zeros(20)) == 1.0


@pytest.mark.parametrize(
    "y", [np.full(20, 0.9), 0.9 + np.arange(20) * 1e-6], ids=["constant", "within min_diff"]
)
@pytest.mark.parametrize("p", [np.arange(20.0), np.zeros(20)], ids=["varying", "constant"])
def test_paper_compatible_tau_warning_says_what_it_returns(y, p):
    """Without a label pair 1e-4 apart the score is NaN, and the only warning says so."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert math.isnan(kendall_tau_paper_compatible(y, p))
    assert [str(w.message) for w in caught] == [
        "kendall_tau_paper_compatible: no pair of the 20 labels differs by >= 0.0001, so the score is NaN"
    ]
    assert caught[0].category is ConstantLabelWarning


# ---------------------------------------------------------------------------- constants -> NaN
@pytest.mark.parametrize(
    "fn",
    [spearman, kendall_tau, ndcg_at_k, precision_at_k, best_rank_in_top_k],
    ids=lambda f: f.__name__,
)
def test_constant_prediction_is_nan_with_named_warning(fn):
    y = np.linspace(0.5, 0.9, 20)
    with pytest.warns(ConstantPredictionWarning, match="all 20 predictions are equal"):
        assert math.isnan(fn(y, np.full(20, 0.3)))


@pytest.mark.parametrize("fn", [spearman, kendall_tau, ndcg_at_k], ids=lambda f: f.__name__)
def test_constant_labels_are_nan_with_named_warning(fn):
    with pytest.warns(ConstantLabelWarning, match="all 20 labels are equal"):
        assert math.isnan(fn(np.full(20, 0.9), np.arange(20.0)))


def test_mae_of_constant_prediction_is_a_number():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mae_pct([0.9, 0.8], [0.85, 0.85]) == pytest.approx(5.0)


# ---------------------------------------------------------------------------- registry, seeds, CIs
def test_metric_registry():
    assert get_metric("ndcg@5").k == 5
    assert get_metric("best_rank@3").higher_is_better is False
    assert "ndcg@k" in metric_names()
    for bad in ("ndcg", "ndcg@0", "spearman_rho", "precision@-1"):
        with pytest.raises(ValueError, match="unknown metric"):
            get_metric(bad)
    y, p = [0.1, 0.2, 0.3], [1, 3, 2]
    assert get_metric("srcc")(y, p) == pytest.approx(spearman(y, p))


def test_compute_metrics_over_seeds():
    rng = np.random.default_rng(0)
    y = rng.random(200)
    rows = np.stack([y + rng.normal(0, s, 200) for s in (0.1, 0.2, 0.3)])
    out = compute_metrics(y, rows, ["srcc", "ndcg@10"])
    per = [spearman(y, r) for r in rows]
    assert out["srcc"].per_seed == pytest.approx(per)
    assert out["srcc"].value == pytest.approx(np.mean(per))
    assert out["srcc"].std == pytest.approx(np.std(per, ddof=1))
    assert out["srcc"].ci is None
    single = compute_metrics(y, rows[0], ["srcc"])["srcc"]
    assert single.std is None and single.per_seed == (pytest.approx(per[0]),)


def test_bootstrap_interval_is_reproducible_and_brackets_the_value():
    rng = np.random.default_rng(1)
    y = rng.random(300)
    p = y + rng.normal(0, 0.3, 300)
    out = compute_metrics(y, p, ["srcc", "kendall_tau"], n_bootstrap=200, seed=7)
    lo, hi = out["srcc"].ci
    assert lo < out["srcc"].value < hi
    assert bootstrap_ci("srcc", y, p, n_resamples=200, seed=7) == pytest.approx((lo, hi))
    assert bootstrap_ci("srcc", y, p, n_resamples=200, seed=8) != pytest.approx((lo, hi))


def test_column_vector_is_one_prediction_not_n_seeds():
    """2-D predictions are (seeds, archs); an (n, 1) column vector is one row of n archs."""
    rng = np.random.default_rng(3)
    y = rng.random(50)
    p = y + rng.normal(0, 0.3, 50)
    one = compute_metrics(y, p, ["srcc", "ndcg@10"], n_bootstrap=20)
    col = compute_metrics(y, p[:, None], ["srcc", "ndcg@10"], n_bootstrap=20)
    assert col == one and len(col["srcc"].per_seed) == 1 and col["srcc"].std is None
    assert bootstrap_ci("srcc", y, p[:, None], n_resamples=20) == bootstrap_ci("srcc", y, p, n_resamples=20)
    assert compute_metrics(y, p[None, :], ["srcc"]) == compute_metrics(y, p, ["srcc"])


def test_bootstrap_of_identical_seed_rows_equals_single_row():
    rng = np.random.default_rng(2)
    y = rng.random(100)
    p = y + rng.normal(0, 0.3, 100)
    one = bootstrap_ci("ndcg@10", y, p, n_resamples=50)
    assert bootstrap_ci("ndcg@10", y, np.stack([p, p, p]), n_resamples=50) == pytest.approx(one)
