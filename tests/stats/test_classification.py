"""Per-class SLIs from a confusion matrix, against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from monitor.stats import top_confused_pairs
from tests.oracles.classification import (
    accuracy,
    confusion_matrix,
    per_class_scores,
    topk_correct,
)


@st.composite
def labeled_predictions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    k = draw(st.integers(1, 8))
    size = draw(st.integers(1, 60))
    classes = st.lists(st.integers(0, k - 1), min_size=size, max_size=size)
    return np.array(draw(classes)), np.array(draw(classes)), k


@pytest.mark.filterwarnings("ignore:A single label was found")
@settings(max_examples=200, deadline=None)
@given(labeled_predictions())
def test_confusion_matrix_matches_scikit_learn(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    labels, predictions, k = case
    expected = sk_confusion_matrix(labels, predictions, labels=list(range(k)))
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, k), expected)


@settings(max_examples=200, deadline=None)
@given(labeled_predictions())
def test_per_class_scores_match_scikit_learn_with_nan_for_undefined(
    case: tuple[np.ndarray, np.ndarray, int],
) -> None:
    labels, predictions, k = case
    scores = per_class_scores(confusion_matrix(labels, predictions, k))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=list(range(k)), zero_division=np.nan
    )
    np.testing.assert_allclose(scores.precision, precision, equal_nan=True)
    np.testing.assert_allclose(scores.recall, recall, equal_nan=True)
    np.testing.assert_allclose(scores.f1, f1, equal_nan=True)
    np.testing.assert_array_equal(scores.support, support)
    assert accuracy(confusion_matrix(labels, predictions, k)) == pytest.approx(
        accuracy_score(labels, predictions)
    )


def test_undefined_scores_are_nan_not_zero() -> None:
    # class 0: seen and predicted; class 1: seen, never predicted; class 2: absent everywhere
    confusion = np.array([[5, 0, 0], [3, 0, 0], [0, 0, 0]])
    scores = per_class_scores(confusion)
    assert scores.precision[0] == pytest.approx(5 / 8)
    assert math.isnan(scores.precision[1])
    assert scores.recall[1] == 0.0
    assert scores.f1[1] == 0.0  # present but never found: bad, not unknown
    assert math.isnan(scores.precision[2])
    assert math.isnan(scores.recall[2])
    assert math.isnan(scores.f1[2])
    assert scores.support.tolist() == [5, 3, 0]


def test_accuracy_of_no_labeled_events_has_no_value() -> None:
    assert math.isnan(accuracy(np.zeros((3, 3))))


def test_top_confused_pairs_skip_the_diagonal_and_break_ties_by_index() -> None:
    confusion = np.array(
        [
            [50, 4, 0, 4],
            [7, 60, 4, 0],
            [0, 0, 70, 0],
            [1, 7, 0, 80],
        ]
    )
    assert top_confused_pairs(confusion) == [
        (1, 0, 7),
        (3, 1, 7),
        (0, 1, 4),
        (0, 3, 4),
        (1, 2, 4),
        (3, 0, 1),
    ]
    assert top_confused_pairs(confusion, k=2) == [(1, 0, 7), (3, 1, 7)]
    assert top_confused_pairs(np.diag([5, 5])) == []


def test_topk_correct_checks_the_first_k_columns() -> None:
    topk = np.array([[3, 1, 2], [0, 2, 1], [1, 0, 2]])
    labels = np.array([1, 1, 2])
    assert topk_correct(topk, labels, k=1).tolist() == [False, False, False]
    assert topk_correct(topk, labels, k=2).tolist() == [True, False, False]
    assert topk_correct(topk, labels, k=3).tolist() == [True, True, True]
    with pytest.raises(ValueError):
        topk_correct(topk, labels, k=4)


@pytest.mark.parametrize(
    "confusion", [np.ones((2, 3)), -np.ones((2, 2)), np.ones(3)], ids=["rect", "neg", "1-d"]
)
def test_invalid_confusion_matrices_are_refused(confusion: np.ndarray) -> None:
    with pytest.raises(ValueError):
        per_class_scores(confusion)
