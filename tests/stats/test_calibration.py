"""ECE, MCE, Brier and classwise ECE against brute-force loops and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import brier_score_loss

from monitor.stats import calibration_bin_index, ece_from_bins, mce_from_bins
from tests.oracles.calibration import brier_multiclass, calibration_bins, classwise_ece, ece

unit = st.floats(0.0, 1.0, allow_nan=False)


def brute_force_bins(confidence: list[float], n_bins: int) -> list[list[int]]:
    """Members of each bin [lo, hi), last bin closed, by direct comparison with the edges."""
    edges = np.linspace(0.0, 1.0, n_bins + 1).tolist()
    members: list[list[int]] = [[] for _ in range(n_bins)]
    for i, c in enumerate(confidence):
        for b in range(n_bins):
            last = b == n_bins - 1
            if edges[b] <= c and (c < edges[b + 1] or (last and c <= edges[b + 1])):
                members[b].append(i)
                break
    return members


def brute_force_ece(confidence: list[float], correct: list[int], n_bins: int = 15) -> float:
    total = 0.0
    for members in brute_force_bins(confidence, n_bins):
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            conf = sum(confidence[i] for i in members) / len(members)
            total += len(members) / len(confidence) * abs(acc - conf)
    return total


def brute_force_mce(confidence: list[float], correct: list[int], n_bins: int = 15) -> float:
    gaps = []
    for members in brute_force_bins(confidence, n_bins):
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            conf = sum(confidence[i] for i in members) / len(members)
            gaps.append(abs(acc - conf))
    return max(gaps)


@st.composite
def scored_events(draw: st.DrawFn) -> tuple[list[float], list[int]]:
    size = draw(st.integers(1, 80))
    grid = st.integers(0, 30).map(lambda i: i / 30)  # hits bin edges exactly, too
    conf = draw(st.lists(st.one_of(unit, grid), min_size=size, max_size=size))
    hits = draw(st.lists(st.integers(0, 1), min_size=size, max_size=size))
    return conf, hits


def test_bins_are_left_closed_and_the_last_is_closed_on_both_sides() -> None:
    edges = np.linspace(0.0, 1.0, 16)
    assert calibration_bin_index(edges).tolist() == [*range(15), 14]
    assert calibration_bin_index([np.nextafter(edges[3], 0.0)]).tolist() == [2]


@pytest.mark.parametrize("bad", [[-0.01], [1.01], [np.nan]], ids=["below-0", "above-1", "nan"])
def test_confidences_outside_the_unit_interval_are_refused(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        calibration_bin_index(bad)


def test_a_calibrated_bin_has_zero_error() -> None:
    confidence = [0.9] * 10
    correct = [1] * 9 + [0]
    assert ece(confidence, correct) == pytest.approx(0.0, abs=1e-12)


def test_an_overconfident_model_has_ece_equal_to_the_gap() -> None:
    assert ece([0.95] * 4, [1, 0, 1, 0]) == pytest.approx(0.45)
    assert mce_from_bins([4, 0], [3.8, 0.0], [2, 0]) == pytest.approx(0.45)


def test_no_events_has_no_value_not_zero() -> None:
    assert math.isnan(ece_from_bins([0] * 15, [0.0] * 15, [0.0] * 15))
    assert math.isnan(mce_from_bins([0] * 15, [0.0] * 15, [0.0] * 15))
    assert math.isnan(ece([], []))


@pytest.mark.slow  # a simulation or exhaustive comparison
@settings(max_examples=300, deadline=None)
@given(scored_events())
def test_ece_and_mce_match_a_python_loop(events: tuple[list[float], list[int]]) -> None:
    conf, hits = events
    assert ece(conf, hits) == pytest.approx(brute_force_ece(conf, hits), abs=1e-12)
    bins = calibration_bins(conf, hits)
    mce = mce_from_bins(bins.events, bins.confidence_sum, bins.correct_sum)
    assert mce == pytest.approx(brute_force_mce(conf, hits), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(scored_events(), st.integers(1, 40))
def test_ece_lies_in_the_unit_interval_and_below_mce(
    events: tuple[list[float], list[int]], n_bins: int
) -> None:
    conf, hits = events
    value = ece(conf, hits, n_bins)
    bins = calibration_bins(conf, hits, n_bins)
    assert 0.0 <= value <= 1.0
    assert value <= mce_from_bins(bins.events, bins.confidence_sum, bins.correct_sum) + 1e-12


def test_streaming_sums_from_two_batches_give_the_batch_ece() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, size=1000)
    hits = (rng.random(1000) < conf**2).astype(int)
    first, second = (
        calibration_bins(conf[:400], hits[:400]),
        calibration_bins(conf[400:], hits[400:]),
    )
    streamed = ece_from_bins(
        first.events + second.events,
        first.confidence_sum + second.confidence_sum,
        first.correct_sum + second.correct_sum,
    )
    assert streamed == pytest.approx(ece(conf, hits), rel=1e-12)


def test_binary_brier_is_twice_scikit_learns() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(200)
    y = (rng.random(200) < p).astype(int)
    probs = np.column_stack([1 - p, p])
    assert brier_multiclass(probs, y) == pytest.approx(2 * brier_score_loss(y, p), rel=1e-12)


def test_multiclass_brier_matches_a_python_loop() -> None:
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(5), size=100)
    labels = rng.integers(0, 5, size=100)
    expected = 0.0
    for row, label in zip(probs.tolist(), labels.tolist(), strict=True):
        expected += sum((p - (j == label)) ** 2 for j, p in enumerate(row))
    assert brier_multiclass(probs, labels) == pytest.approx(expected / 100, rel=1e-12)


def test_brier_of_certain_answers_is_zero_or_two() -> None:
    probs = np.eye(3)
    assert brier_multiclass(probs, [0, 1, 2]) == 0.0
    assert brier_multiclass(probs, [1, 2, 0]) == 2.0
    assert math.isnan(brier_multiclass(np.zeros((0, 3)), np.zeros(0, dtype=int)))


def test_classwise_ece_averages_one_vs_rest_ece_over_present_classes() -> None:
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), size=300)
    labels = rng.choice([0, 1, 3], size=300)  # class 2 never appears
    expected = np.mean(
        [
            brute_force_ece(probs[:, j].tolist(), (labels == j).astype(int).tolist())
            for j in (0, 1, 3)
        ]
    )
    assert classwise_ece(probs, labels) == pytest.approx(expected, abs=1e-12)
    assert 0.0 <= classwise_ece(probs, labels) <= 1.0


def test_labels_outside_the_class_range_are_refused() -> None:
    with pytest.raises(ValueError):
        brier_multiclass(np.eye(3), [0, 1, 3])
