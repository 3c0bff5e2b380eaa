"""Input validation before any score: the one helper every metric and protocol goes through.

Modelled on scikit-learn's ``check_array`` and OGB's ``Evaluator``: inputs are converted once,
and anything that would make a score meaningless raises :class:`ValidationError` with a message
that names what is wrong (the missing, extra or duplicated arch ids, the positions of NaNs, the
``k`` that is too large). A constant prediction is not an error but has no ranking: rank metrics
return NaN and emit :class:`ConstantPredictionWarning`; they never return a silent number.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "preview",
    "EvalError",
    "ValidationError",
    "ConstantPredictionWarning",
    "ConstantLabelWarning",
    "check_scores",
    "align_to_ids",
    "check_1d",
    "warn_if_constant",
]

#: how many offending ids / positions an error message lists
SHOW = 5


class EvalError(Exception):
    """Base of the evaluation harness's user-facing errors (:class:`ValidationError`,
    ``PredictorError``, ``ProtocolError``, ``HiddenColumnError``, ``UnknownColumnError``): the
    message says what is wrong, so the CLI prints it without a traceback."""


class ValidationError(EvalError, ValueError):
    """Inputs that cannot be scored; the message names the offending ids, positions or sizes."""


class ConstantPredictionWarning(UserWarning):
    """All predictions are equal: rank metrics are undefined and returned as NaN."""


class ConstantLabelWarning(UserWarning):
    """All labels are equal: rank metrics are undefined and returned as NaN."""


def preview(items: Sequence, n: int = SHOW) -> str:
    """The first ``n`` items as a comma-separated repr list, with a count of the rest."""
    shown = ", ".join(repr(x.item() if isinstance(x, np.generic) else x) for x in items[:n])
    more = f", ... ({len(items) - n} more)" if len(items) > n else ""
    return shown + more


def _as_1d(values, what: str) -> np.ndarray:
    if values is None:
        raise ValidationError(f"{what}: missing (got None)")
    arr = np.asarray(values)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValidationError(f"{what}: expected a 1-D array of numbers, got shape {arr.shape}")
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValidationError(f"{what}: expected numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _check_finite(arr: np.ndarray, what: str, ids: Sequence | None) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        where = (
            f"arch_ids {preview([ids[i] for i in bad])}"
            if ids is not None
            else f"positions {preview(bad.tolist())}"
        )
        raise ValidationError(
            f"{what}: {len(bad)} non-finite value(s) (NaN or inf) at {where}; "
            "every evaluated architecture needs a finite number"
        )
    return arr


def check_1d(values, what: str, *, ids: Sequence | None = None) -> np.ndarray:
    """``values`` as a finite 1-D float64 array, or :class:`ValidationError` naming the problem.

    ``what`` names the input in messages ("labels", "predictions of 'flops'"); ``ids``, when
    given (one per value), lets the message name non-finite entries by id instead of position.
    """
    arr = _as_1d(values, what)
    if ids is not None and len(ids) != len(arr):
        raise ValidationError(f"{what}: {len(arr)} values but {len(ids)} arch_ids")
    return _check_finite(arr, what, ids)


def _duplicates(ids: Iterable) -> list:
    return [k for k, c in Counter(ids).items() if c > 1]


def align_to_ids(
    expected_ids: Sequence,
    ids: Sequence,
    values,
    *,
    what: str = "predictions",
    known_ids: Iterable | None = None,
) -> np.ndarray:
    """Reorder ``values`` (given for ``ids``) to follow ``expected_ids``.

    Raises :class:`ValidationError` naming duplicated ids, ids missing for expected
    architectures, and extra ids. An extra id is one not in ``expected_ids``; when ``known_ids``
    (e.g. every arch of the family) is given, ids that are known but not evaluated here (a
    file covering the whole family, used on a subset) are allowed and dropped.
    """
    ids = np.asarray(ids, dtype=object)
    values = np.asarray(values)
    if len(ids) != len(values):
        raise ValidationError(f"{what}: {len(ids)} arch_ids but {len(values)} values")
    dup = _duplicates(ids.tolist())
    if dup:
        raise ValidationError(f"{what}: {len(dup)} duplicated arch_id(s): {preview(dup)}")
    expected = np.asarray(expected_ids, dtype=object)
    dup = _duplicates(expected.tolist())
    if dup:
        raise ValidationError(f"evaluated set: {len(dup)} duplicated arch_id(s): {preview(dup)}")
    position = {k: i for i, k in enumerate(ids.tolist())}
    missing = [k for k in expected.tolist() if k not in position]
    if missing:
        raise ValidationError(
            f"{what}: no value for {len(missing)} of {len(expected)} evaluated arch_id(s): "
            f"{preview(missing)}; every evaluated architecture needs a score"
        )
    allowed = set(expected.tolist())
    if known_ids is not None:
        allowed.update(known_ids)
    extra = [k for k in ids.tolist() if k not in allowed]
    if extra:
        scope = "the evaluated set or the family" if known_ids is not None else "the evaluated set"
        raise ValidationError(
            f"{what}: {len(extra)} arch_id(s) not in {scope}: {preview(extra)} "
            "(wrong family, task or id format?)"
        )
    order = np.fromiter((position[k] for k in expected.tolist()), dtype=np.intp, count=len(expected))
    return values[order]


def check_scores(
    y_true,
    y_pred,
    *,
    k: int | None = None,
    min_items: int = 2,
    ids: Sequence | None = None,
    pred_ids: Sequence | None = None,
    known_ids: Iterable | None = None,
    what: str = "predictions",
) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and predictions; return them as aligned finite float64 arrays.

    - ``y_true`` (labels) must be present and finite;
    - with ``pred_ids``, ``y_pred`` is aligned to ``ids`` through :func:`align_to_ids`
      (duplicated / missing / extra ids are errors); otherwise the two must have equal length;
    - ``y_pred`` must be finite;
    - there must be at least ``max(k, min_items)`` items.
    """
    if y_true is None:
        raise ValidationError("labels: missing (got None); scoring needs the true labels")
    if pred_ids is not None:
        if ids is None:
            raise ValidationError(f"{what}: arch_ids given for predictions but not for labels")
        y_pred = align_to_ids(ids, pred_ids, y_pred, what=what, known_ids=known_ids)
    yt = check_1d(y_true, "labels", ids=ids)
    yp = _as_1d(y_pred, what)
    if len(yt) != len(yp):
        raise ValidationError(f"{what}: length mismatch, {len(yt)} labels but {len(yp)} predictions")
    _check_finite(yp, what, ids)
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValidationError(f"k must be a positive integer, got {k!r}")
        if len(yt) < k:
            raise ValidationError(f"{what}: k={k} but only {len(yt)} item(s) are evaluated; need at least k")
    if len(yt) < min_items:
        raise ValidationError(f"{what}: only {len(yt)} item(s) to evaluate; need at least {min_items}")
    return yt, yp


def _is_constant(a: np.ndarray) -> bool:
    return len(a) > 0 and bool(np.all(a == a[0]))


def warn_if_constant(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    metric: str,
    consequence: str = "so the score is NaN",
) -> bool:
    """Warn and return True when ``y_pred`` or ``y_true`` is constant (the metric is undefined).

    Predictions are checked first: :class:`ConstantPredictionWarning`, else
    :class:`ConstantLabelWarning`.
    """
    if _is_constant(y_pred):
        warnings.warn(
            f"{metric}: all {len(y_pred)} predictions are equal ({float(y_pred[0]):g}); a "
            f"constant prediction has no ranking, {consequence}",
            ConstantPredictionWarning,
            stacklevel=3,
        )
        return True
    if _is_constant(y_true):
        warnings.warn(
            f"{metric}: all {len(y_true)} labels are equal ({float(y_true[0]):g}); the ranking "
            f"is undefined, {consequence}",
            ConstantLabelWarning,
            stacklevel=3,
        )
        return True
    return False
