"""The shadow agreement test against oracles: the beta-binomial's closed form (itself checked
by quadrature), a brute-force weighted Bonferroni, and its level and power in simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import beta, binom

from monitor.stats import agreement_drop_pvalues, agreement_drop_test


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
    rate = (20 * 480.5 / 501 + 25 * 490.5 / 501) / 45
    overall = _integrated(45, 37, 1000, round(rate * 1000))
    assert got.tests == 3
    assert got.worst == 0
    # half the level to the overall test, half shared by the 2 class tests
    assert got.p_value == pytest.approx(min(2 * overall, 4 * min(per_class)), rel=1e-3)
    assert agreement_drop_test(np.zeros(4), np.zeros(4), base_n, base_a) is None


def test_level_holds_when_nothing_changed() -> None:
    """Baseline and window drawn from the same per-class rates: the window's p-value falls
    under alpha in at most alpha of the draws (the test is conservative: discrete counts,
    Bonferroni)."""
    rng = np.random.default_rng(7)
    rates = np.array([0.99, 0.97, 0.95, 0.9, 0.85, 0.8, 0.93, 0.96, 0.75, 0.98])
    mix = np.full(10, 0.1)
    alpha, trials, below = 0.01, 4000, 0
    for _ in range(trials):
        m = rng.multinomial(5000, mix)
        n = rng.multinomial(100, mix)
        got = agreement_drop_test(n, rng.binomial(n, rates), m, rng.binomial(m, rates))
        assert got is not None
        below += got.p_value < alpha
    # binomial 3-sigma above alpha: fails only if the level is wrong
    assert below / trials <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


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
