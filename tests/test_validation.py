"""Validation before any score: every error names what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from cgbench.eval.metrics import ndcg_at_k, spearman
from cgbench.eval.validation import (
    ConstantLabelWarning,
    ConstantPredictionWarning,
    ValidationError,
    align_to_ids,
    check_scores,
    warn_if_constant,
)

IDS = ["a", "b", "c", "d"]
Y = [0.9, 0.8, 0.7, 0.6]


def test_valid_inputs_come_back_as_float_arrays():
    yt, yp = check_scores(Y, [4, 3, 2, 1])
    assert yt.dtype == yp.dtype == np.float64
    np.testing.assert_array_equal(yp, [4.0, 3.0, 2.0, 1.0])


def test_column_vectors_are_accepted():
    yt, yp = check_scores(np.array(Y)[:, None], np.arange(4.0)[None, :])
    assert yt.shape == yp.shape == (4,)


def test_missing_labels():
    with pytest.raises(ValidationError, match=r"labels: missing \(got None\)"):
        check_scores(None, [1, 2])


def test_missing_predictions():
    with pytest.raises(ValidationError, match=r"predictions: missing \(got None\)"):
        check_scores(Y, None)


def test_not_one_dimensional():
    with pytest.raises(ValidationError, match=r"expected a 1-D array of numbers, got shape \(2, 2\)"):
        check_scores(Y, np.ones((2, 2)))


@pytest.mark.parametrize("bad", [["x", "y", "z", "w"], [True, False, True, False]])
def test_not_numeric(bad):
    with pytest.raises(ValidationError, match="predictions: expected numbers, got dtype"):
        check_scores(Y, bad)


def test_nan_in_predictions_named_by_position():
    with pytest.raises(ValidationError, match=r"2 non-finite value\(s\).* at positions 1, 3"):
        check_scores(Y, [1.0, np.nan, 2.0, np.inf])


def test_nan_in_predictions_named_by_arch_id():
    with pytest.raises(ValidationError, match=r"non-finite.* at arch_ids 'b'"):
        check_scores(Y, [1.0, np.nan, 2.0, 3.0], ids=IDS)


def test_nan_in_labels_named():
    with pytest.raises(ValidationError, match=r"labels: 1 non-finite value\(s\).* arch_ids 'c'"):
        check_scores([0.9, 0.8, np.nan, 0.6], [1, 2, 3, 4], ids=IDS)


def test_long_lists_are_shortened():
    preds = np.full(20, np.nan)
    with pytest.raises(ValidationError, match=r"positions 0, 1, 2, 3, 4, \.\.\. \(15 more\)"):
        check_scores(np.arange(20.0), preds)


def test_length_mismatch():
    with pytest.raises(ValidationError, match="length mismatch, 4 labels but 3 predictions"):
        check_scores(Y, [1, 2, 3])


def test_ids_and_labels_length_mismatch():
    with pytest.raises(ValidationError, match="labels: 4 values but 3 arch_ids"):
        check_scores(Y, [1, 2, 3, 4], ids=IDS[:3])


def test_k_larger_than_the_evaluated_set():
    with pytest.raises(ValidationError, match="k=10 but only 4 item\\(s\\) are evaluated"):
        ndcg_at_k(Y, [1, 2, 3, 4], k=10)


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_k_must_be_a_positive_integer(k):
    with pytest.raises(ValidationError, match="k must be a positive integer"):
        check_scores(Y, [1, 2, 3, 4], k=k)


def test_too_few_items():
    with pytest.raises(ValidationError, match="only 1 item\\(s\\) to evaluate; need at least 2"):
        spearman([0.5], [1.0])


# ---------------------------------------------------------------------------- id alignment
def test_alignment_reorders_by_id():
    _, yp = check_scores(Y, [3.0, 4.0, 1.0, 2.0], ids=IDS, pred_ids=["c", "d", "a", "b"])
    np.testing.assert_array_equal(yp, [1.0, 2.0, 3.0, 4.0])


def test_missing_ids_named():
    with pytest.raises(ValidationError, match=r"no value for 2 of 4 evaluated arch_id\(s\): 'b', 'd'"):
        check_scores(Y, [1.0, 2.0], ids=IDS, pred_ids=["a", "c"])


def test_extra_ids_named():
    with pytest.raises(ValidationError, match=r"1 arch_id\(s\) not in the evaluated set: 'zz'"):
        check_scores(Y, [1, 2, 3, 4, 5], ids=IDS, pred_ids=[*IDS, "zz"])


def test_known_extra_ids_are_dropped_unknown_ones_named():
    got = align_to_ids(IDS, [*IDS, "e"], [1, 2, 3, 4, 5], known_ids=[*IDS, "e"])
    np.testing.assert_array_equal(got, [1, 2, 3, 4])
    with pytest.raises(ValidationError, match=r"not in the evaluated set or the family: 'zz'"):
        align_to_ids(IDS, [*IDS, "zz"], [1, 2, 3, 4, 5], known_ids=[*IDS, "e"])


def test_duplicated_prediction_ids_named():
    with pytest.raises(ValidationError, match=r"predictions: 1 duplicated arch_id\(s\): 'a'"):
        check_scores(Y, [1, 2, 3, 4, 5], ids=IDS, pred_ids=[*IDS, "a"])


def test_duplicated_evaluated_ids_named():
    with pytest.raises(ValidationError, match=r"evaluated set: 1 duplicated arch_id\(s\): 'a'"):
        align_to_ids(["a", "a"], ["a"], [1.0])


def test_ids_and_values_length_mismatch():
    with pytest.raises(ValidationError, match="3 arch_ids but 2 values"):
        align_to_ids(IDS, ["a", "b", "c"], [1.0, 2.0])


def test_prediction_ids_need_label_ids():
    with pytest.raises(ValidationError, match="arch_ids given for predictions but not for labels"):
        check_scores(Y, [1, 2, 3, 4], pred_ids=IDS)


# ---------------------------------------------------------------------------- constant inputs
def test_constant_prediction_warning_class_and_message():
    with pytest.warns(ConstantPredictionWarning, match=r"srcc: all 3 predictions are equal \(0.5\)"):
        assert warn_if_constant(np.array([1.0, 2.0, 3.0]), np.full(3, 0.5), "srcc")


def test_constant_label_warning_class_and_message():
    with pytest.warns(ConstantLabelWarning, match=r"all 3 labels are equal \(0.9\)"):
        assert warn_if_constant(np.full(3, 0.9), np.array([1.0, 2.0, 3.0]), "srcc")


def test_varying_inputs_do_not_warn(recwarn):
    assert not warn_if_constant(np.array([1.0, 2.0]), np.array([2.0, 1.0]), "srcc")
    assert not recwarn


def test_eval_errors_share_one_base_and_the_cli_treats_them_as_user_errors():
    """Every exception type cgbench.eval exports derives from EvalError and is one of the
    types the CLI prints as ``error: ...`` (exit 1) instead of a traceback."""
    import cgbench.eval as ev
    from cgbench.commands.errors import user_errors
    from cgbench.eval.validation import EvalError

    errors = [
        obj
        for obj in (getattr(ev, name) for name in ev.__all__)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning)
    ]
    assert {e.__name__ for e in errors} >= {
        "ValidationError",
        "PredictorError",
        "ProtocolError",
        "HiddenColumnError",
        "UnknownColumnError",
        "EvalError",
    }
    handled = user_errors()
    for error in errors:
        assert issubclass(error, EvalError) and error in handled, error
