"""Unusualness scores against brute-force oracles: a full numpy distance matrix sorted per
row, scipy's logsumexp written out by hand, the binomial tail summed term by term and
integrated over the baseline's Beta, and the test's level simulated."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

from monitor.stats.unusual import exceedance_critical, knn_distance
from tests.oracles.unusual import energy_score, exceedance_pvalue


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


def _beta_binomial_tail(above: int, n: int, base_above: int, base_n: int) -> float:
    """P(X >= above) integrated numerically: the binomial tail summed by hand, averaged
    over the Beta(base_above + 1, base_n - base_above) density of the clean rate."""
    def tail(q: float) -> float:
        return sum(math.comb(n, j) * q ** j * (1 - q) ** (n - j) for j in range(above, n + 1))
    a, b = base_above + 1, base_n - base_above
    return scipy.integrate.quad(lambda q: tail(q) * scipy.stats.beta.pdf(q, a, b), 0, 1,
                                limit=200, points=[a / (a + b)])[0]


@pytest.mark.parametrize("above, n, base_above, base_n", [
    (0, 50, 3, 300), (1, 100, 3, 300), (3, 100, 3, 300), (8, 200, 20, 2000), (0, 1, 0, 10)])
def test_the_pvalue_is_the_binomial_tail_averaged_over_the_baselines_beta(
        above: int, n: int, base_above: int, base_n: int) -> None:
    want = _beta_binomial_tail(above, n, base_above, base_n)
    assert exceedance_pvalue(above, n, base_above, base_n) == pytest.approx(want, rel=1e-6)


def test_a_huge_baseline_gives_the_binomial_test_against_its_rate() -> None:
    n, above = 400, 9
    want = sum(math.comb(n, j) * 0.01 ** j * 0.99 ** (n - j) for j in range(above, n + 1))
    assert exceedance_pvalue(above, n, 10 ** 7, 10 ** 9) == pytest.approx(want, rel=1e-3)


@pytest.mark.parametrize("n, alpha", [(20, 0.005), (100, 0.005), (500, 0.01), (2000, 0.001)])
def test_the_critical_count_is_the_last_one_the_pvalue_does_not_reject(n: int,
                                                                      alpha: float) -> None:
    x = exceedance_critical(n, alpha, 3, 300)
    assert exceedance_pvalue(x + 1, n, 3, 300) <= alpha < exceedance_pvalue(x, n, 3, 300)


def test_clean_windows_against_a_small_baseline_keep_the_level_whatever_the_scores() -> None:
    """300 baseline values and windows of 200 from one skewed distribution, each time a
    fresh baseline: the test rejects at most alpha of them (the binomial against 1 %
    rejects far more)."""
    rng = np.random.default_rng(11)
    alpha, trials, n = 0.01, 3000, 200
    base = rng.lognormal(size=(trials, 300))
    p99 = np.quantile(base, 0.99, axis=1)
    above_base = (base > p99[:, None]).sum(axis=1)
    window = rng.lognormal(size=(trials, n))
    above = (window > p99[:, None]).sum(axis=1)
    p = np.array([exceedance_pvalue(int(k), n, int(r), 300)
                  for k, r in zip(above, above_base, strict=True)])
    binomial = scipy.stats.binom.sf(above - 1, n, 0.01)
    assert np.mean(p <= alpha) <= alpha + 3 * math.sqrt(alpha / trials)
    assert np.mean(binomial <= alpha) > 3 * alpha


def test_an_empty_window_has_no_pvalue_and_impossible_counts_are_refused() -> None:
    assert math.isnan(exceedance_pvalue(0, 0, 3, 300))
    with pytest.raises(ValueError):
        exceedance_pvalue(5, 4, 3, 300)
    with pytest.raises(ValueError):
        exceedance_pvalue(1, 4, 300, 300)
