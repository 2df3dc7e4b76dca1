"""ROC-AUC and PR-AUC from score bins (`monitor.stats.ranking`) against scikit-learn:
exactly its figures on the binned scores, and within the stated binning bound
(`tests/oracles/ranking.py`) of its figures on the raw scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from monitor.stats import average_precision_from_bins as ap_rows
from monitor.stats import roc_auc_from_bins as roc_rows
from monitor.stats import score_bin_index
from tests.oracles.ranking import average_precision_binning_bound, roc_auc_binning_bound


def roc_auc_from_bins(pos: list[float] | np.ndarray, neg: list[float] | np.ndarray) -> float:
    return float(roc_rows([pos], [neg])[0])


def average_precision_from_bins(pos: list[float] | np.ndarray, neg: list[float] | np.ndarray
                                ) -> float:
    return float(ap_rows([pos], [neg])[0])


def _bins(scores: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    b = score_bin_index(scores, n_bins)
    return (np.bincount(b[y == 1], minlength=n_bins).astype(float),
            np.bincount(b[y == 0], minlength=n_bins).astype(float))


@pytest.mark.parametrize("n_bins", [10, 50, 100])
@pytest.mark.parametrize("seed", range(5))
def test_binned_figures_are_scikit_learns_on_binned_scores_and_near_them_on_raw_scores(
        n_bins, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 2000))
    y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
    y[0], y[1] = 0, 1
    scores = np.clip(rng.beta(2, 5, n) + y * rng.uniform(0, 0.5), 0, 1)
    pos, neg = _bins(scores, y, n_bins)
    binned = score_bin_index(scores, n_bins)
    assert roc_auc_from_bins(pos, neg) == pytest.approx(roc_auc_score(y, binned), abs=1e-12)
    assert average_precision_from_bins(pos, neg) == pytest.approx(
        average_precision_score(y, binned), abs=1e-12)
    assert abs(roc_auc_from_bins(pos, neg) - roc_auc_score(y, scores)) \
        <= roc_auc_binning_bound(pos, neg) + 1e-12
    assert abs(average_precision_from_bins(pos, neg) - average_precision_score(y, scores)) \
        <= average_precision_binning_bound(pos, neg) + 1e-12


def test_perfect_ranking_gives_one_and_reversed_ranking_gives_zero():
    assert roc_auc_from_bins([0, 0, 3], [2, 0, 0]) == 1.0
    assert roc_auc_from_bins([3, 0, 0], [0, 0, 2]) == 0.0
    assert average_precision_from_bins([0, 0, 3], [2, 0, 0]) == 1.0


def test_every_pair_in_one_bin_gives_one_half_and_the_base_rate():
    assert roc_auc_from_bins([0, 4, 0], [0, 6, 0]) == 0.5
    assert average_precision_from_bins([0, 4, 0], [0, 6, 0]) == pytest.approx(0.4)


def test_no_positive_or_no_negative_is_undefined_not_a_number():
    assert math.isnan(roc_auc_from_bins([0, 0], [1, 2]))
    assert math.isnan(roc_auc_from_bins([1, 2], [0, 0]))
    assert math.isnan(average_precision_from_bins([0, 0], [1, 2]))
    assert average_precision_from_bins([1, 2], [0, 0]) == 1.0


def test_scores_at_the_edges_land_in_the_end_bins():
    assert score_bin_index([0.0, 0.0999, 0.1, 0.999, 1.0, 1.5, -0.1], 10).tolist() == \
        [0, 0, 1, 9, 9, 9, 0]


def test_rows_are_classes_computed_at_once():
    pos = np.array([[0, 0, 3], [3, 0, 0], [0, 0, 0]])
    neg = np.array([[2, 0, 0], [0, 0, 2], [1, 1, 1]])
    assert roc_rows(pos, neg)[:2].tolist() == [1.0, 0.0]
    assert math.isnan(roc_rows(pos, neg)[2]) and math.isnan(ap_rows(pos, neg)[2])


def test_mismatched_or_negative_counts_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        roc_auc_from_bins([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="negative"):
        average_precision_from_bins([1, -1], [1, 2])
