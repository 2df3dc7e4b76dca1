"""Isotonic calibration map (checked against scikit-learn) and label-free accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression

from monitor.stats import IsotonicMap, estimated_accuracy_from_bins, fit_isotonic
from tests.oracles.accuracy_estimate import estimated_accuracy, estimated_accuracy_bin_error_bound
from tests.oracles.calibration import calibration_bins


def sklearn_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> IsotonicRegression:
    return IsotonicRegression(out_of_bounds="clip").fit(x, y, sample_weight=w)


@st.composite
def regression_data(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size = draw(st.integers(1, 60))
    x = st.integers(0, 20).map(lambda i: i / 20)  # many ties
    xs = draw(st.lists(x, min_size=size, max_size=size))
    ys = draw(st.lists(st.integers(0, 1), min_size=size, max_size=size))
    ws = draw(st.lists(st.floats(0.1, 10.0), min_size=size, max_size=size))
    return np.array(xs), np.array(ys, dtype=float), np.array(ws)


@pytest.mark.slow  # a simulation or exhaustive comparison
@settings(max_examples=300, deadline=None)
@given(regression_data())
def test_isotonic_fit_matches_scikit_learn(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    x, y, w = data
    grid = np.linspace(-0.1, 1.1, 121)
    for weights in (None, w):
        ours = fit_isotonic(x, y, weights)
        theirs = sklearn_fit(x, y, weights)
        np.testing.assert_allclose(ours.apply(grid), theirs.predict(grid), atol=1e-12)
        np.testing.assert_allclose(ours.apply(x), theirs.predict(x), atol=1e-12)


def test_isotonic_thresholds_match_scikit_learn_on_continuous_confidences() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, size=5000)
    correct = (rng.random(5000) < conf**1.5).astype(float)
    ours = fit_isotonic(conf, correct)
    theirs = sklearn_fit(conf, correct)
    np.testing.assert_allclose(ours.x_thresholds, theirs.X_thresholds_)
    np.testing.assert_allclose(ours.y_values, theirs.y_thresholds_, atol=1e-12)


def test_a_single_distinct_confidence_gives_a_constant_map() -> None:
    fitted = fit_isotonic([0.7, 0.7, 0.7], [1, 0, 1])
    np.testing.assert_allclose(fitted.apply([0.0, 0.7, 1.0]), [2 / 3] * 3)


def test_decreasing_data_pools_into_its_mean() -> None:
    fitted = fit_isotonic([0.1, 0.5, 0.9], [1, 1, 0])
    np.testing.assert_allclose(fitted.apply([0.1, 0.5, 0.9]), [2 / 3] * 3)


@pytest.mark.parametrize(
    ("x", "y"),
    [([], []), ([0.5, np.nan], [1, 0]), ([0.5], [1, 0])],
    ids=["empty", "nan", "length"],
)
def test_invalid_fit_input_is_refused(x: list[float], y: list[float]) -> None:
    with pytest.raises(ValueError):
        fit_isotonic(x, y)


def test_a_map_must_be_monotone() -> None:
    with pytest.raises(ValueError):
        IsotonicMap(np.array([0.1, 0.2]), np.array([0.9, 0.1]))
    with pytest.raises(ValueError):
        IsotonicMap(np.array([0.2, 0.2]), np.array([0.1, 0.2]))


def test_estimated_accuracy_follows_a_confidence_shift_without_labels() -> None:
    rng = np.random.default_rng(1)

    def accuracy_given(conf: np.ndarray) -> np.ndarray:
        return conf**2  # an overconfident model

    baseline_conf = rng.uniform(0.3, 1.0, size=20_000)
    baseline_correct = rng.random(20_000) < accuracy_given(baseline_conf)
    fitted = fit_isotonic(baseline_conf, baseline_correct)
    shifted_conf = rng.beta(2, 3, size=20_000) * 0.7 + 0.3  # traffic got harder
    actual = float(np.mean(rng.random(20_000) < accuracy_given(shifted_conf)))
    assert estimated_accuracy(fitted, shifted_conf) == pytest.approx(actual, abs=0.015)
    assert float(np.mean(shifted_conf)) - actual > 0.15  # raw confidence would be far off


def test_binned_estimate_stays_within_its_error_bound() -> None:
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.0, 1.0, size=5000)
    fitted = fit_isotonic(conf, rng.random(5000) < conf**3)
    window = rng.beta(5, 2, size=3000)
    bins = calibration_bins(window, np.zeros(3000))
    binned = estimated_accuracy_from_bins(fitted, bins.events, bins.confidence_sum)
    exact = estimated_accuracy(fitted, window)
    bound = estimated_accuracy_bin_error_bound(fitted, bins.events)
    assert abs(binned - exact) <= bound + 1e-12
    assert abs(binned - exact) < 0.005  # the bound is a worst case; the gap is far smaller


def test_linear_map_makes_the_binned_estimate_exact() -> None:
    identity = IsotonicMap(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    window = np.random.default_rng(3).random(500)
    bins = calibration_bins(window, np.zeros(500))
    assert estimated_accuracy_from_bins(
        identity, bins.events, bins.confidence_sum
    ) == pytest.approx(float(np.mean(window)), rel=1e-12)


def test_an_empty_window_has_no_estimate() -> None:
    identity = IsotonicMap(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    assert math.isnan(estimated_accuracy(identity, []))
    assert math.isnan(estimated_accuracy_from_bins(identity, [0] * 15, [0.0] * 15))
    assert math.isnan(estimated_accuracy_bin_error_bound(identity, [0] * 15))
