"""The shadow agreement test against oracles: the beta-binomial's closed form (itself checked
by quadrature), the stratified overall test by enumeration of every per-class outcome, a
brute-force weighted Bonferroni, and its level and power in simulation."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import beta, binom

from monitor.stats import agreement_drop_pvalues, agreement_drop_test, stratified_drop_pvalue


def _integrated(n: int, a: int, m: int, b: int) -> float:
    """P(A <= a) with A | p ~ Bin(n, p) and p ~ Beta(b + 1/2, m - b + 1/2), summed term by
    term from the integral's closed form C(n, k) B(k + x, n - k + y) / B(x, y)."""
    x, y = b + 0.5, m - b + 0.5

    def log_beta(u: float, v: float) -> float:
        return math.lgamma(u) + math.lgamma(v) - math.lgamma(u + v)

    return sum(math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                        + log_beta(k + x, n - k + y) - log_beta(x, y)) for k in range(a + 1))


def test_closed_form_oracle_is_the_integral() -> None:
    """The oracle itself against quadrature of the binomial over the Beta density."""
    post = beta(950.5, 50.5)
    value, _ = integrate.quad(lambda p: binom.cdf(15, 20, p) * post.pdf(p), 0.0, 1.0,
                              limit=200, points=[0.95])
    assert _integrated(20, 15, 1000, 950) == pytest.approx(value, rel=1e-4)


@pytest.mark.parametrize(("n", "a", "m", "b"), [
    (20, 20, 1000, 950), (20, 15, 1000, 950), (20, 9, 400, 380), (200, 170, 10_000, 8450),
    (1, 0, 50, 49), (35, 35, 3, 3), (10, 4, 0, 0)])
def test_p_value_is_the_beta_binomial_lower_tail(n: int, a: int, m: int, b: int) -> None:
    got = float(agreement_drop_pvalues(np.array(n), np.array(a), np.array(m), np.array(b)))
    assert got == pytest.approx(_integrated(n, a, m, b), rel=1e-6, abs=1e-12)


def test_no_images_give_no_p_value_and_bad_counts_are_refused() -> None:
    p = agreement_drop_pvalues(np.array([0, 5]), np.array([0, 5]), np.array([10, 10]),
                               np.array([9, 9]))
    assert math.isnan(p[0]) and p[1] == pytest.approx(_integrated(5, 5, 10, 9))
    with pytest.raises(ValueError, match="agree <= n"):
        agreement_drop_pvalues(np.array([5]), np.array([6]), np.array([10]), np.array([9]))
    with pytest.raises(ValueError, match="same length"):
        agreement_drop_test(np.ones(3), np.ones(3), np.ones(2), np.ones(2))


def test_window_p_value_is_the_weighted_bonferroni_adjusted_smallest() -> None:
    base_n = np.array([500.0, 500, 0, 500])
    base_a = np.array([480.0, 450, 0, 490])
    n = np.array([20.0, 0, 7, 25])
    a = np.array([12.0, 0, 1, 25])
    got = agreement_drop_test(n, a, base_n, base_a)
    assert got is not None
    # tested: classes 0 and 3 (class 1 has no window image, class 2 no baseline), + overall
    per_class = [_integrated(20, 12, 500, 480), _integrated(25, 25, 500, 490)]
    overall = _enumerated([20, 25], 37, [500, 500], [480, 490])
    assert got.tests == 3
    assert got.worst == 0
    # half the level to the overall test, half shared by the 2 class tests
    assert got.p_value == pytest.approx(min(2 * overall, 4 * min(per_class)), rel=1e-3)
    assert agreement_drop_test(np.zeros(4), np.zeros(4), base_n, base_a) is None


def _pmf(n: int, m: int, b: int) -> list[float]:
    """BetaBinomial(n, b + 1/2, m - b + 1/2) pmf from differences of the closed-form CDF."""
    cdf = [_integrated(n, a, m, b) for a in range(n + 1)]
    return [cdf[0]] + [cdf[a] - cdf[a - 1] for a in range(1, n + 1)]


def _enumerated(n: list[int], a: int, m: list[int], b: list[int]) -> float:
    """P(sum of independent per-class beta-binomials <= a), by enumerating every outcome."""
    pmfs = [_pmf(nc, mc, bc) for nc, mc, bc in zip(n, m, b, strict=True)]
    return sum(math.prod(pmfs[c][k] for c, k in enumerate(ks))
               for ks in itertools.product(*(range(nc + 1) for nc in n)) if sum(ks) <= a)


@pytest.mark.parametrize(("n", "a", "m", "b"), [
    ([3, 4, 5], 9, [100, 200, 50], [99, 150, 40]),
    ([6, 1, 2], 5, [30, 1000, 7], [29, 500, 7]),
    ([4, 4, 4], 12, [10, 10, 10], [9, 5, 1]),
    ([5, 3, 0], 2, [100, 100, 100], [95, 90, 80])])
def test_the_overall_test_is_the_law_of_the_summed_classes(n: list[int], a: int, m: list[int],
                                                          b: list[int]) -> None:
    got = stratified_drop_pvalue(np.array(n), np.array([a, 0, 0]), np.array(m), np.array(b))
    assert got == pytest.approx(_enumerated(n, a, m, b), rel=1e-9, abs=1e-15)


def test_beyond_the_exact_limit_the_pooled_law_is_used_and_is_weaker() -> None:
    rng = np.random.default_rng(3)
    rates = np.array([0.99, 0.97, 0.95, 0.9, 0.85, 0.8, 0.93, 0.96, 0.75, 0.98])
    base_n = np.full(10, 2000.0)
    base_a = np.round(base_n * rates)
    n = rng.multinomial(3000, np.full(10, 0.1)).astype(float)
    a = np.floor(n * (rates - 0.02))
    exact = stratified_drop_pvalue(n, a, base_n, base_a)
    pooled = stratified_drop_pvalue(n, a, base_n, base_a, exact_images=1000)
    rate = float(np.dot(n, (base_a + 0.5) / (base_n + 1)) / n.sum())
    assert pooled == pytest.approx(float(agreement_drop_pvalues(
        np.array(n.sum()), np.array(a.sum()), np.array(20_000.0), np.array(rate * 20_000))))
    assert 1e-6 < exact < pooled < 1


def test_stratifying_by_class_makes_the_overall_test_stronger() -> None:
    """Classes that agree at different rates: pooling them into one beta-binomial at the
    mix's rate overstates the variance. The same 8-point spread drop gets a smaller p-value
    from the stratified law, and an unchanged window a p-value that is no smaller than
    half."""
    rates = np.array([0.99, 0.98, 0.6, 0.7, 0.99, 0.65, 0.95, 0.97, 0.99, 0.6])
    base_n = np.full(10, 1000.0)
    base_a = base_n * rates
    n = np.full(10, 20.0)
    rate = float(np.mean((base_a + 0.5) / (base_n + 1)))
    for a_total in (round(float(np.sum(n * (rates - 0.08)))), round(float(np.sum(n * rates)))):
        a = np.zeros(10)
        a[0] = a_total
        stratified = stratified_drop_pvalue(n, a, base_n, base_a)
        pooled = float(agreement_drop_pvalues(np.array(200), np.array(a_total),
                                              np.array(10_000), np.array(rate * 10_000)))
        if a_total < np.sum(n * rates) - 1:
            assert stratified < pooled / 3
        else:
            assert stratified > 0.3


def _clean_alarm_share(p_value: Callable[..., float], rates: np.ndarray, baseline: int,
                       window: int, alpha: float, seed: int, trials: int = 4000) -> float:
    """Share of clean windows (baseline and window drawn from the same per-class rates, an
    even class mix) whose p-value falls under alpha."""
    rng = np.random.default_rng(seed)
    mix = np.full(rates.size, 1 / rates.size)
    below = 0
    for _ in range(trials):
        m = rng.multinomial(baseline, mix)
        n = rng.multinomial(window, mix)
        below += p_value(n, rng.binomial(n, rates), m, rng.binomial(m, rates)) < alpha
    return below / trials


def _under_level(share: float, alpha: float, trials: int = 4000) -> bool:
    """At most alpha plus three binomial standard errors: fails only if the level is wrong."""
    return share <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


def test_the_overall_test_keeps_its_level_with_classes_at_different_rates() -> None:
    rates = np.array([0.99, 0.98, 0.6, 0.7, 0.99, 0.65, 0.95, 0.97, 0.99, 0.6])
    assert _under_level(_clean_alarm_share(stratified_drop_pvalue, rates, 3000, 150, 0.02, 11),
                        0.02)


def test_level_holds_when_nothing_changed() -> None:
    """The window's p-value falls under alpha in at most alpha of clean windows (the test is
    conservative: discrete counts, Bonferroni)."""
    rates = np.array([0.99, 0.97, 0.95, 0.9, 0.85, 0.8, 0.93, 0.96, 0.75, 0.98])

    def p_value(n: np.ndarray, a: np.ndarray, m: np.ndarray, b: np.ndarray) -> float:
        got = agreement_drop_test(n, a, m, b)
        assert got is not None
        return got.p_value

    assert _under_level(_clean_alarm_share(p_value, rates, 5000, 100, 0.01, 7), 0.01)


def test_a_class_mix_shift_alone_is_no_drop() -> None:
    """All the window's images from the class that agrees least: the overall ratio falls,
    the test does not fire (the overall test expects the window's own class mix)."""
    base_n = np.array([1000.0, 1000.0])
    base_a = np.array([990.0, 700.0])
    n = np.array([0.0, 200.0])
    got = agreement_drop_test(n, np.array([0.0, 140.0]), base_n, base_a)
    assert got is not None and got.p_value > 0.2


def test_one_broken_class_is_found_within_a_few_dozen_images() -> None:
    """Class 3 served as class 8: production's 'eight' now agrees half the time. With ~20
    images of each class the per-class test names it."""
    rates = np.full(10, 0.95)
    base_n = np.full(10, 1000.0)
    base_a = base_n * rates
    n = np.full(10, 20.0)
    n[3], n[8] = 0.0, 40.0
    a = np.round(n * rates)
    a[8] = 19.0
    got = agreement_drop_test(n, a, base_n, base_a)
    assert got is not None and got.worst == 8 and got.p_value < 1e-6


def test_a_spread_drop_is_found_by_the_overall_test() -> None:
    """10 % of predictions wrong in every class: each class alone moves little, all of them
    together move a lot."""
    base_n = np.full(10, 1000.0)
    base_a = np.full(10, 950.0)
    n = np.full(10, 20.0)
    a = np.full(10, 17.0)   # 0.85 against 0.95
    got = agreement_drop_test(n, a, base_n, base_a)
    assert got is not None and got.worst == -1 and got.p_value < 1e-3
