"""Ranking and regression metrics for performance predictors, on top of scipy and scikit-learn.

Every public metric takes ``(y_true, y_pred)`` over the *evaluated set* (the labels and the
predicted scores of the same architectures, in the same order), validates them with
:func:`cgbench.eval.validation.check_scores`, and returns a float. Higher is better except for
``best_rank@k`` and ``mae_pct``.

Conventions (GENNAPE, AAAI-23, and AceNAS for NDCG):

- ``srcc``: Spearman's rank correlation (:func:`scipy.stats.spearmanr`).
- ``kendall_tau``: Kendall's tau-b (:func:`scipy.stats.kendalltau`), which corrects for ties.
- ``ndcg@k``: relevance = label min-max scaled over the evaluated set to [0, 1], times 20;
  :func:`sklearn.metrics.ndcg_score` with ties in the predictions averaged.
- ``precision@k``: fraction of the predicted top-k that is in the true top-k (GENNAPE's
  "top-k overlap"); the true top-k includes every architecture tied with the k-th best label.
- ``best_rank@k``: the best true rank (1 = best architecture) among the predicted top-k.
- ``mae_pct``: mean absolute error in percentage points (labels and predictions are fractions).

Ties in the predictions at the top-k boundary are broken against the predictor (the tied
architecture with the lower label goes first) for ``precision@k`` and ``best_rank@k``, so ties
never help those; ``ndcg@k`` averages the gain over tied predictions (sklearn's
``ignore_ties=False``), so a tie there scores between its best and worst order. A constant prediction has
no ranking: rank metrics return NaN with :class:`ConstantPredictionWarning`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import ndcg_score

from cgbench.eval.validation import (
    ConstantLabelWarning,
    ConstantPredictionWarning,
    ValidationError,
    check_scores,
    warn_if_constant,
)

__all__ = [
    "NDCG_SCALE",
    "DEFAULT_METRICS",
    "MetricValue",
    "Metric",
    "spearman",
    "kendall_tau",
    "kendall_tau_paper_compatible",
    "ndcg_at_k",
    "relevance",
    "precision_at_k",
    "best_rank_in_top_k",
    "mae_pct",
    "bootstrap_ci",
    "get_metric",
    "compute_metrics",
]

#: relevance scale of NDCG (AceNAS / GENNAPE): min-max scaled label times 20
NDCG_SCALE = 20.0
DEFAULT_METRICS: tuple[str, ...] = ("srcc", "kendall_tau", "ndcg@10")


# ---------------------------------------------------------------------------- unchecked kernels
# Each kernel takes validated float64 arrays; the public functions below validate first.
def _spearman(yt: np.ndarray, yp: np.ndarray) -> float:
    if warn_if_constant(yt, yp, "srcc"):
        return float("nan")
    return float(stats.spearmanr(yt, yp).statistic)


def _kendall(yt: np.ndarray, yp: np.ndarray, variant: str = "b") -> float:
    if warn_if_constant(yt, yp, f"kendall_tau ({variant})"):
        return float("nan")
    return float(stats.kendalltau(yt, yp, variant=variant).statistic)


def relevance(y_true, scale: float = NDCG_SCALE) -> np.ndarray:
    """Labels min-max scaled over the given set to [0, 1], times ``scale`` (NDCG relevance)."""
    yt = np.asarray(y_true, dtype=np.float64)
    lo, hi = yt.min(), yt.max()
    if hi == lo:
        raise ValidationError("labels: all equal, relevance (min-max scaling) is undefined")
    return (yt - lo) / (hi - lo) * scale


def _ndcg(yt: np.ndarray, yp: np.ndarray, k: int, scale: float = NDCG_SCALE) -> float:
    if warn_if_constant(yt, yp, f"ndcg@{k}"):
        return float("nan")
    rel = relevance(yt, scale)
    n = len(yp)
    if n > 4 * k:
        # NDCG@k only depends on the archs predicted in the top k (with every arch tied with
        # the k-th prediction, whose gains sklearn averages) and on the k largest relevances
        # (the ideal DCG). Keeping just those gives sklearn the same value in O(n).
        keep = yp >= np.partition(yp, n - k)[n - k]
        keep |= rel >= np.partition(rel, n - k)[n - k]
        if np.count_nonzero(keep) >= 2:  # sklearn needs two documents
            rel, yp = rel[keep], yp[keep]
    return float(ndcg_score(rel[None, :], yp[None, :], k=k, ignore_ties=False))


def _predicted_top_k(yt: np.ndarray, yp: np.ndarray, k: int) -> np.ndarray:
    """Indices of the predicted top-k; ties at the boundary go to the lower labels first."""
    n = len(yp)
    kth = np.partition(yp, n - k)[n - k]
    above = np.flatnonzero(yp > kth)
    tied = np.flatnonzero(yp == kth)
    tied = tied[np.argsort(yt[tied], kind="stable")][: k - len(above)]
    return np.concatenate([above, tied])


def _precision(yt: np.ndarray, yp: np.ndarray, k: int) -> float:
    if warn_if_constant(yt, yp, f"precision@{k}"):
        return float("nan")
    n = len(yt)
    true_kth = np.partition(yt, n - k)[n - k]
    return float(np.count_nonzero(yt[_predicted_top_k(yt, yp, k)] >= true_kth) / k)


def _best_rank(yt: np.ndarray, yp: np.ndarray, k: int) -> float:
    if warn_if_constant(yt, yp, f"best_rank@{k}"):
        return float("nan")
    best = yt[_predicted_top_k(yt, yp, k)].max()
    return float(1 + np.count_nonzero(yt > best))


def _mae_pct(yt: np.ndarray, yp: np.ndarray, scale: float = 100.0) -> float:
    return float(np.mean(np.abs(yt - yp)) * scale)


def _kendall_paper(yt: np.ndarray, yp: np.ndarray, min_diff: float = 1e-4) -> float:
    # GENNAPE (model_src/demo_functions.py, pairwise_kt): values rounded to 1e-6; over pairs
    # (i, j) with label_i - label_j >= min_diff, +1 if pred_i >= pred_j else -1; mean of signs.
    # Counted here in O(n log n): walk labels upwards, admit j once label_j <= label_i - min_diff
    # into a Fenwick tree over prediction ranks, and count the admitted j with pred_j > pred_i.
    t = np.round(yt * 1e6)
    p = np.round(yp * 1e6)
    thresh = np.round(min_diff * 1e6)
    _, p_rank = np.unique(p, return_inverse=True)  # 0-based dense ranks of predictions
    p_rank = p_rank.astype(np.int64) + 1
    m = int(p_rank.max())
    tree = [0] * (m + 1)
    order = np.argsort(t, kind="stable")
    t_sorted = t[order].tolist()
    ranks = p_rank[order].tolist()
    pairs = discordant = admitted = 0
    for i in range(len(t_sorted)):
        limit = t_sorted[i] - thresh
        while admitted < i and t_sorted[admitted] <= limit:
            r = ranks[admitted]
            while r <= m:
                tree[r] += 1
                r += r & -r
            admitted += 1
        r, at_most = ranks[i], 0
        while r > 0:
            at_most += tree[r]
            r -= r & -r
        pairs += admitted
        discordant += admitted - at_most  # admitted j with pred_j > pred_i
    if pairs == 0:
        warnings.warn(
            f"kendall_tau_paper_compatible: no pair of the {len(yt)} labels differs by >= "
            f"{min_diff}, so the score is NaN",
            ConstantLabelWarning,
            stacklevel=3,
        )
        return float("nan")
    value = float((pairs - 2 * discordant) / pairs)
    # documented bias: the paper's count gives a constant prediction 1.0; warn, don't hide it
    # (labels vary here, so only the prediction warning can fire)
    warn_if_constant(
        yt,
        yp,
        "kendall_tau_paper_compatible",
        f"yet this biased variant scores it {value:g} (tied predictions count as concordant)",
    )
    return value


# ---------------------------------------------------------------------------- public metrics
def spearman(y_true, y_pred) -> float:
    """Spearman's rank correlation (SRCC) between labels and predictions."""
    return _spearman(*check_scores(y_true, y_pred))


def kendall_tau(y_true, y_pred, *, variant: str = "b") -> float:
    """Kendall's tau, variant ``"b"`` (default, tie-corrected) or ``"c"``, via scipy."""
    if variant not in ("b", "c"):
        raise ValueError(f"variant must be 'b' or 'c', got {variant!r}")
    return _kendall(*check_scores(y_true, y_pred), variant=variant)


def kendall_tau_paper_compatible(y_true, y_pred, *, min_diff: float = 1e-4) -> float:
    """GENNAPE's pair-counting Kendall tau, offered only to compare with the paper. Biased.

    Pairs whose labels differ by less than ``min_diff`` (label units, i.e. fractions) are
    ignored; a remaining pair counts as concordant when the better architecture's prediction is
    ``>=`` the other's. Ties in the prediction therefore count as agreement, so a constant
    predictor scores 1.0 (a :class:`ConstantPredictionWarning` is still emitted). Values are
    rounded to 1e-6 first, as in the reference code (which also rounds the result to 4
    decimals; this function does not). Use :func:`kendall_tau` (tau-b) for real evaluation.
    """
    return _kendall_paper(*check_scores(y_true, y_pred), min_diff=min_diff)


def ndcg_at_k(y_true, y_pred, k: int = 10, *, scale: float = NDCG_SCALE) -> float:
    """NDCG@k with relevance = min-max scaled label x ``scale`` (see :func:`relevance`)."""
    yt, yp = check_scores(y_true, y_pred, k=k)
    return _ndcg(yt, yp, k, scale)


def precision_at_k(y_true, y_pred, k: int = 10) -> float:
    """Fraction of the predicted top-k that belongs to the true top-k (top-k overlap / k)."""
    return _precision(*check_scores(y_true, y_pred, k=k), k)


def best_rank_in_top_k(y_true, y_pred, k: int = 10) -> float:
    """Best true rank (1 = best label; tied labels share the better rank) in the predicted
    top-k. Lower is better; returned as float so that an undefined score can be NaN."""
    return _best_rank(*check_scores(y_true, y_pred, k=k), k)


def mae_pct(y_true, y_pred, *, scale: float = 100.0) -> float:
    """Mean absolute error in percentage points (inputs are fractions; ``scale`` = 100).

    Only meaningful for predictors that output the label itself, not a score.
    """
    return _mae_pct(*check_scores(y_true, y_pred, min_items=1), scale=scale)


# ---------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Metric:
    """A named metric: ``fn(y_true, y_pred)`` on validated arrays, plus its properties."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    k: int | None = None
    higher_is_better: bool = True
    min_items: int = 2

    def __call__(self, y_true, y_pred) -> float:
        """Validate, then compute."""
        return self.fn(*check_scores(y_true, y_pred, k=self.k, min_items=self.min_items))


_FIXED: dict[str, Metric] = {
    "srcc": Metric("srcc", _spearman),
    "kendall_tau": Metric("kendall_tau", _kendall),
    "kendall_tau_c": Metric("kendall_tau_c", lambda t, p: _kendall(t, p, "c")),
    "kendall_tau_paper_compatible": Metric("kendall_tau_paper_compatible", _kendall_paper),
    "mae_pct": Metric("mae_pct", _mae_pct, higher_is_better=False, min_items=1),
}
_AT_K: dict[str, tuple[Callable[[np.ndarray, np.ndarray, int], float], bool]] = {
    "ndcg": (_ndcg, True),
    "precision": (_precision, True),
    "best_rank": (_best_rank, False),
}
_AT_K_RE = re.compile(r"^([a-z_]+)@(\d+)$")


def metric_names() -> list[str]:
    """The metric names :func:`get_metric` accepts (``@k`` metrics with any positive k)."""
    return sorted(_FIXED) + [f"{name}@k" for name in sorted(_AT_K)]


def get_metric(name: str) -> Metric:
    """The :class:`Metric` called ``name``: ``srcc``, ``kendall_tau``, ``ndcg@10``, ..."""
    if name in _FIXED:
        return _FIXED[name]
    match = _AT_K_RE.match(name)
    if match and match.group(1) in _AT_K and int(match.group(2)) >= 1:
        base, k = match.group(1), int(match.group(2))
        fn, higher = _AT_K[base]
        return Metric(name, lambda t, p, _fn=fn, _k=k: _fn(t, p, _k), k=k, higher_is_better=higher)
    raise ValueError(f"unknown metric {name!r}; known: {', '.join(metric_names())}")


# ---------------------------------------------------------------------------- several seeds, CIs
@dataclass(frozen=True)
class MetricValue:
    """A metric over one or more prediction rows (seeds) with an optional bootstrap interval.

    ``value`` is the mean over seeds, ``std`` their unbiased standard deviation (``None`` for a
    single seed), ``ci_low``/``ci_high`` the percentile bootstrap interval of ``value``.
    """

    value: float
    std: float | None = None
    per_seed: tuple[float, ...] = ()
    ci_low: float | None = None
    ci_high: float | None = None

    @property
    def ci(self) -> tuple[float, float] | None:
        return None if self.ci_low is None else (self.ci_low, self.ci_high)

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "std": self.std,
            "per_seed": list(self.per_seed),
            "ci": None if self.ci is None else list(self.ci),
        }


class _Rows:
    """Prediction rows (one per seed), scored once per distinct row."""

    def __init__(self, rows: list[np.ndarray]):
        self.rows = rows
        keys = [r.tobytes() for r in rows]
        first = {key: i for i, key in reversed(list(enumerate(keys)))}
        self.unique = sorted(set(first.values()))
        self.of_row = [self.unique.index(first[key]) for key in keys]

    def per_row(self, metric: Metric, yt: np.ndarray, idx: np.ndarray | None = None) -> list[float]:
        if idx is None:
            values = [metric.fn(yt, self.rows[u]) for u in self.unique]
        else:
            values = [metric.fn(yt, self.rows[u][idx]) for u in self.unique]
        return [values[j] for j in self.of_row]


def _validated_rows(y_true, y_pred, k: int | None, min_items: int) -> tuple[np.ndarray, _Rows]:
    arr = np.asarray(y_pred) if not isinstance(y_pred, np.ndarray) else y_pred
    if arr.ndim == 2 and arr.shape[1] == 1:  # an (n, 1) column vector is one prediction, not n seeds
        arr = arr[:, 0]
    rows = list(arr) if arr.ndim == 2 else [arr]
    yt = None
    for i, yp in enumerate(rows):
        what = "predictions" if len(rows) == 1 else f"predictions (seed row {i})"
        yt, rows[i] = check_scores(y_true, yp, k=k, min_items=min_items, what=what)
    return yt, _Rows(rows)


def _bootstrap(
    metric: Metric, yt: np.ndarray, rows: _Rows, n_resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    n = len(yt)
    samples = np.empty(n_resamples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantPredictionWarning)
        warnings.simplefilter("ignore", ConstantLabelWarning)
        for b in range(n_resamples):
            idx = rng.integers(0, n, size=n)
            samples[b] = np.mean(rows.per_row(metric, yt[idx], idx))
    finite = samples[np.isfinite(samples)]
    if len(finite) < n_resamples / 2:  # mostly undefined resamples: no interval
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(
    metric: str | Metric,
    y_true,
    y_pred,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric`` over architectures resampled with
    replacement. ``y_pred`` may be 2-D, shaped (seeds, archs): every resample scores each row
    on the same architectures and averages, giving the interval of the seed mean. An (n, 1)
    column vector is one prediction of n archs."""
    metric = get_metric(metric) if isinstance(metric, str) else metric
    yt, rows = _validated_rows(y_true, y_pred, metric.k, metric.min_items)
    return _bootstrap(metric, yt, rows, n_resamples, confidence, seed)


def compute_metrics(
    y_true,
    y_pred,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    n_bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, MetricValue]:
    """Validate once, then compute each metric (mean, std over seeds, optional bootstrap CI).

    ``y_pred`` is 1-D, or 2-D shaped (seeds, archs): one row per seed of the predictor, every
    row scoring the same architectures as ``y_true``. An (n, 1) column vector is one prediction
    of n archs (not n seeds). Identical rows are scored once.
    """
    resolved = [get_metric(m) for m in metrics]
    max_k = max((m.k for m in resolved if m.k is not None), default=None)
    yt, rows = _validated_rows(y_true, y_pred, max_k, min(m.min_items for m in resolved))
    out: dict[str, MetricValue] = {}
    for metric in resolved:
        per_seed = tuple(float(v) for v in rows.per_row(metric, yt))
        value = float(np.mean(per_seed))
        std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None
        lo = hi = None
        if n_bootstrap > 0 and np.isfinite(value):
            lo, hi = _bootstrap(metric, yt, rows, n_bootstrap, confidence, seed)
        out[metric.name] = MetricValue(value, std, per_seed, lo, hi)
    return out
