"""Unusualness scores against brute-force oracles: a full numpy distance matrix sorted per
row, scipy's logsumexp written out by hand, and the binomial tail summed term by term."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special

from monitor.stats.unusual import energy_score, exceedance_pvalue, knn_distance


def _brute_knn(x: np.ndarray, sample: np.ndarray, k: int, skip: np.ndarray) -> np.ndarray:
    xu = x / np.linalg.norm(x, axis=1, keepdims=True)
    su = sample / np.linalg.norm(sample, axis=1, keepdims=True)
    d = np.sqrt(((xu[:, None, :] - su[None, :, :]) ** 2).sum(axis=2))
    return np.array([np.sort(row)[k - 1 + int(s)] for row, s in zip(d, skip, strict=True)])


@pytest.mark.parametrize("k", [1, 5, 17])
def test_the_knn_distance_is_the_kth_smallest_of_the_full_distance_matrix(k: int) -> None:
    rng = np.random.default_rng(k)
    sample, x = rng.normal(size=(300, 12)), rng.normal(size=(600, 12))  # > one chunk
    got = knn_distance(x, sample, k)
    np.testing.assert_allclose(got, _brute_knn(x, sample, k, np.zeros(600, bool)), atol=1e-9)
    assert np.all((got >= 0) & (got <= 2))


def test_a_sample_scored_leave_one_out_skips_each_row_itself() -> None:
    rng = np.random.default_rng(3)
    sample = rng.normal(size=(80, 6))
    x = np.vstack([sample[:30], rng.normal(size=(10, 6))])
    skip = np.r_[np.ones(30, bool), np.zeros(10, bool)]
    got = knn_distance(x, sample, 4, skip_self=skip)
    np.testing.assert_allclose(got, _brute_knn(x, sample, 4, skip), atol=1e-9)
    assert np.all(got[:30] > 0)


def test_the_distance_ignores_scale_so_a_brighter_copy_is_not_unusual() -> None:
    rng = np.random.default_rng(4)
    sample = rng.normal(size=(50, 8))
    assert knn_distance(3 * sample[:5], sample, 1) == pytest.approx(np.zeros(5), abs=1e-7)


def test_far_embeddings_score_higher_than_near_ones() -> None:
    rng = np.random.default_rng(5)
    sample = rng.normal(size=(400, 8)) + np.r_[5.0, np.zeros(7)]
    near = rng.normal(size=(50, 8)) + np.r_[5.0, np.zeros(7)]
    far = rng.normal(size=(50, 8)) - np.r_[5.0, np.zeros(7)]
    assert knn_distance(far, sample).min() > knn_distance(near, sample).max()


@pytest.mark.parametrize("bad", [
    dict(x=np.ones((2, 3)), sample=np.ones((10, 4)), k=1),
    dict(x=np.ones((2, 3)), sample=np.ones((3, 3)), k=4),
    dict(x=np.ones((2, 3)), sample=np.ones((3, 3)), k=0),
])
def test_a_sample_that_cannot_answer_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        knn_distance(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("t", [1.0, 0.5, 4.0])
def test_the_energy_is_minus_t_logsumexp_of_the_logits_over_t(t: float) -> None:
    rng = np.random.default_rng(6)
    logits = rng.normal(scale=8, size=(40, 10))
    want = [-t * math.log(sum(math.exp(v / t) for v in row)) for row in logits]
    np.testing.assert_allclose(energy_score(logits, t), want, rtol=1e-12)
    np.testing.assert_allclose(energy_score(logits, t),
                               -t * scipy.special.logsumexp(logits / t, axis=1))


def test_the_energy_of_huge_logits_does_not_overflow() -> None:
    assert energy_score(np.array([[1000.0, 0.0]]))[0] == pytest.approx(-1000.0)


def test_a_confident_answer_has_lower_energy_than_a_flat_one() -> None:
    assert energy_score([[12.0, 0, 0]])[0] < energy_score([[1.0, 1, 1]])[0]


@pytest.mark.parametrize("above, n", [(0, 50), (1, 100), (3, 100), (12, 400), (400, 400)])
def test_the_pvalue_is_the_binomial_upper_tail_summed_by_hand(above: int, n: int) -> None:
    want = sum(math.comb(n, j) * 0.01 ** j * 0.99 ** (n - j) for j in range(above, n + 1))
    assert exceedance_pvalue(above, n) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_an_empty_window_has_no_pvalue_and_an_impossible_count_is_refused() -> None:
    assert math.isnan(exceedance_pvalue(0, 0))
    with pytest.raises(ValueError):
        exceedance_pvalue(5, 4)
