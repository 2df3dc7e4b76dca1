"""PSI, KL and JS: oracles, worked examples and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.stats import kl_divergence, psi, smoothed_proportions
from tests.oracles.divergence import js_divergence, psi_per_row


def brute_force_psi(current: list[float], baseline: list[float], a: float = 0.5) -> float:
    k = len(current)
    n, m = sum(current), sum(baseline)
    total = 0.0
    for c_i, b_i in zip(current, baseline, strict=True):
        c = (c_i + a) / (n + a * k)
        b = (b_i + a) / (m + a * k)
        total += (c - b) * math.log(c / b)
    return total


@st.composite
def count_pairs(draw: st.DrawFn, min_total: int = 1) -> tuple[list[int], list[int]]:
    k = draw(st.integers(1, 30))
    counts = st.lists(st.integers(0, 10_000), min_size=k, max_size=k).filter(
        lambda xs: sum(xs) >= min_total
    )
    return draw(counts), draw(counts)


def test_smoothing_adds_half_an_event_to_every_bin() -> None:
    np.testing.assert_allclose(smoothed_proportions([3, 0, 1]), [3.5 / 5.5, 0.5 / 5.5, 1.5 / 5.5])


def test_identical_inputs_have_zero_psi() -> None:
    assert psi([10, 20, 30], [10, 20, 30]) == 0.0


def test_a_known_shift_matches_the_hand_computed_value() -> None:
    # smoothed: current (60.5, 40.5)/101, baseline (40.5, 60.5)/101
    c, b = 60.5 / 101, 40.5 / 101
    expected = 2 * (c - b) * math.log(c / b)
    assert psi([60, 40], [40, 60]) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.1589, abs=1e-4)


def test_empty_window_has_no_value_not_zero() -> None:
    assert math.isnan(psi([0, 0, 0], [5, 5, 5]))
    assert math.isnan(kl_divergence([0, 0, 0], [5, 5, 5]))
    assert math.isnan(js_divergence([0, 0, 0], [5, 5, 5]))


def test_empty_baseline_has_no_value_either() -> None:
    assert math.isnan(psi([5, 5], [0, 0]))
    assert math.isnan(kl_divergence([5, 5], [0, 0]))


def test_an_empty_bin_costs_a_finite_amount() -> None:
    value = psi([100, 0], [50, 50])
    assert math.isfinite(value)
    assert value == pytest.approx(brute_force_psi([100, 0], [50, 50]))


@pytest.mark.parametrize("fn", [psi, kl_divergence, js_divergence], ids=["psi", "kl", "js"])
def test_mismatched_bin_counts_are_refused(fn) -> None:
    with pytest.raises(ValueError, match="same bins"):
        fn([1, 2, 3], [1, 2])


@pytest.mark.parametrize(
    ("current", "baseline", "pseudocount"),
    [([-1, 2], [1, 2], 0.5), ([np.nan, 2], [1, 2], 0.5), ([1, 2], [1, 2], 0.0)],
    ids=["negative", "nan", "zero-pseudocount"],
)
def test_invalid_inputs_are_refused(current, baseline, pseudocount) -> None:
    with pytest.raises(ValueError):
        psi(current, baseline, pseudocount)


def test_kl_is_current_given_baseline_so_a_new_class_weighs_more() -> None:
    baseline = [500, 500, 0]
    current = [450, 450, 100]
    forward = kl_divergence(current, baseline)
    assert forward > kl_divergence(baseline, current)
    c, b = smoothed_proportions(current), smoothed_proportions(baseline)
    assert forward == pytest.approx(float(scipy.stats.entropy(c, b)), rel=1e-12)


@settings(max_examples=300, deadline=None)
@given(count_pairs())
def test_psi_matches_a_python_loop(pair: tuple[list[int], list[int]]) -> None:
    current, baseline = pair
    assert psi(current, baseline) == pytest.approx(
        brute_force_psi(current, baseline), rel=1e-9, abs=1e-12
    )


@settings(max_examples=300, deadline=None)
@given(count_pairs())
def test_kl_matches_scipy_entropy_on_the_same_proportions(
    pair: tuple[list[int], list[int]],
) -> None:
    current, baseline = pair
    expected = scipy.stats.entropy(smoothed_proportions(current), smoothed_proportions(baseline))
    assert kl_divergence(current, baseline) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(count_pairs())
def test_psi_is_the_sum_of_both_kl_directions(pair: tuple[list[int], list[int]]) -> None:
    c, b = pair
    both = kl_divergence(c, b) + kl_divergence(b, c)
    assert psi(c, b) == pytest.approx(both, rel=1e-9, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(count_pairs(min_total=0))
def test_psi_is_non_negative_and_symmetric(pair: tuple[list[int], list[int]]) -> None:
    c, b = pair
    forward, backward = psi(c, b), psi(b, c)
    if sum(c) == 0 or sum(b) == 0:
        assert math.isnan(forward) and math.isnan(backward)
        return
    assert forward >= 0.0
    assert forward == backward


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=30).filter(lambda x: sum(x) > 0))
def test_psi_and_kl_of_equal_inputs_are_zero(counts: list[int]) -> None:
    assert psi(counts, counts) == 0.0
    assert kl_divergence(counts, counts) == 0.0
    assert js_divergence(counts, counts) == 0.0


@settings(max_examples=200, deadline=None)
@given(count_pairs(), st.randoms(use_true_random=False))
def test_psi_does_not_depend_on_bin_order(pair: tuple[list[int], list[int]], random) -> None:
    c, b = pair
    order = list(range(len(c)))
    random.shuffle(order)
    shuffled = psi([c[i] for i in order], [b[i] for i in order])
    assert shuffled == pytest.approx(psi(c, b), rel=1e-9, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(count_pairs())
def test_kl_is_non_negative_and_js_is_bounded(pair: tuple[list[int], list[int]]) -> None:
    c, b = pair
    assert kl_divergence(c, b) >= 0.0
    assert 0.0 <= js_divergence(c, b) <= math.log(2.0)


def test_js_matches_scipy_jensenshannon() -> None:
    c, b = [90, 5, 5], [10, 45, 45]
    expected = (
        scipy.spatial.distance.jensenshannon(smoothed_proportions(c), smoothed_proportions(b)) ** 2
    )
    assert js_divergence(c, b) == pytest.approx(expected, rel=1e-9)


def test_psi_per_row_agrees_with_psi_row_by_row() -> None:
    rng = np.random.default_rng(3)
    current = rng.integers(0, 50, size=(20, 7))
    baseline = rng.integers(0, 50, size=(20, 7))
    current[4] = 0
    rows = psi_per_row(current, baseline)
    for i in range(20):
        expected = psi(current[i], baseline[i])
        if math.isnan(expected):
            assert math.isnan(rows[i])
        else:
            assert rows[i] == pytest.approx(expected, rel=1e-12)
    assert math.isnan(rows[4])
