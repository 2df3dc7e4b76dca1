"""Sample-size-aware PSI thresholds: formula, sparse-bin merging, simulation, dispatch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from monitor.stats import (
    apply_bin_map,
    drift_threshold,
    merge_sparse_bins,
    psi_threshold,
)
from tests.oracles.thresholds import simulated_psi_threshold


def zipf(k: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1) ** exponent
    return weights / weights.sum()


@pytest.mark.parametrize(
    ("n", "m", "k", "alpha"),
    [(100, 10_000, 10, 0.01), (1_000, 1_000, 5, 0.05), (100_000, 10_000, 50, 0.001)],
)
def test_threshold_is_the_chi2_quantile_scaled_by_both_sample_sizes(n, m, k, alpha) -> None:
    expected = chi2.ppf(1 - alpha, k - 1) * (1 / n + 1 / m)
    assert psi_threshold(n, m, k, alpha) == pytest.approx(expected, rel=1e-12)


def test_threshold_shrinks_as_the_window_grows() -> None:
    levels = [psi_threshold(n, 100_000, 10) for n in (100, 1_000, 10_000, 100_000)]
    assert levels == sorted(levels, reverse=True)
    assert levels[0] > 0.1 > levels[1]


def test_min_effect_is_a_floor_for_large_windows() -> None:
    assert psi_threshold(10**7, 10**7, 10, min_effect=0.02) == 0.02
    assert psi_threshold(100, 10**7, 10, min_effect=0.02) > 0.02


def test_an_empty_window_has_no_threshold() -> None:
    assert math.isnan(psi_threshold(0, 1000, 10))
    result = drift_threshold([100, 100], 0)
    assert math.isnan(result.threshold)
    assert result.method == "no_value"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": -1, "m": 10, "k": 3},
        {"n": 10, "m": 0, "k": 3},
        {"n": 10, "m": 10, "k": 1},
        {"n": 10, "m": 10, "k": 3, "alpha": 1.0},
        {"n": 10, "m": 10, "k": 3, "min_effect": -0.1},
    ],
    ids=["negative-n", "empty-baseline", "one-bin", "alpha-1", "negative-floor"],
)
def test_invalid_threshold_arguments_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        psi_threshold(**kwargs)


def test_dense_bins_are_left_alone() -> None:
    baseline = np.full(10, 1000)
    assert merge_sparse_bins(baseline, 10.0, 100).tolist() == list(range(10))


def test_sparse_bins_merge_in_index_order_until_each_group_is_large_enough() -> None:
    baseline = np.array([500, 20, 30, 60, 5, 5, 400, 1, 1])
    bin_map = merge_sparse_bins(baseline, 5.0, 1000, min_baseline_count=100)
    # need = max(5 * 1022 / 1000, 100) = 100 baseline events per merged bin
    assert bin_map.tolist() == [0, 1, 1, 1, 2, 2, 2, 2, 2]


def test_a_window_too_small_for_two_groups_gives_one_bin_and_no_threshold() -> None:
    baseline = np.full(10, 100)
    assert merge_sparse_bins(baseline, 10.0, 5).tolist() == [0] * 10
    result = drift_threshold(baseline, 5)
    assert result.n_bins == 1
    assert math.isnan(result.threshold)
    assert result.method == "no_value"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 500), min_size=2, max_size=200).filter(lambda x: sum(x) > 0),
    st.integers(1, 100_000),
    st.sampled_from([5.0, 10.0]),
    st.sampled_from([0.0, 20.0, 100.0]),
)
def test_every_merged_bin_meets_both_floors_when_possible(
    baseline: list[int], n: int, min_expected: float, floor: float
) -> None:
    counts = np.array(baseline)
    bin_map = merge_sparse_bins(counts, min_expected, n, min_baseline_count=floor)
    assert bin_map.shape == counts.shape
    assert bin_map[0] == 0
    assert set(np.diff(bin_map).tolist()) <= {0, 1}  # contiguous, in index order
    merged = apply_bin_map(counts, bin_map)
    m = counts.sum()
    if merged.size > 1 or merged[0] >= max(min_expected * m / n, floor):
        assert (n * merged / m >= min_expected - 1e-9).all()
        assert (merged >= floor).all()


def test_apply_bin_map_sums_counts_like_a_python_loop() -> None:
    counts = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    bin_map = np.array([2, 0, 2, 1, 0, 1, 2, 0])  # any mapping, not only contiguous
    expected = [0, 0, 0]
    for count, target in zip(counts.tolist(), bin_map.tolist(), strict=True):
        expected[target] += count
    merged = apply_bin_map(counts, bin_map)
    assert merged.tolist() == expected
    assert merged.dtype == np.int64
    rows = apply_bin_map(np.stack([counts, 2 * counts]), bin_map)
    assert rows.tolist() == [expected, [2 * e for e in expected]]
    assert apply_bin_map(counts.astype(float) / 2, bin_map).tolist() == [e / 2 for e in expected]


def test_apply_bin_map_refuses_a_map_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="maps 2 bins"):
        apply_bin_map([1, 2, 3], np.array([0, 1]))


def test_dense_baseline_uses_the_chi2_level_on_the_original_bins() -> None:
    baseline = np.full(10, 1000)
    result = drift_threshold(baseline, 1000, alpha=0.01, min_effect=0.001)
    assert result.method == "chi2"
    assert result.n_bins == 10
    assert result.bin_map.tolist() == list(range(10))
    assert result.threshold == psi_threshold(1000, 10_000, 10, 0.01, 0.001)


def test_a_thousand_sparse_classes_are_merged_for_a_small_window() -> None:
    baseline = np.round(zipf(1000, 1.1) * 100_000).astype(np.int64)
    result = drift_threshold(baseline, 100)
    assert result.method == "merged"
    assert 2 <= result.n_bins < 20
    assert result.threshold == psi_threshold(100, int(baseline.sum()), result.n_bins)
    assert not result.bin_map.flags.writeable


def test_the_chi2_level_agrees_with_a_monte_carlo_level_when_bins_are_dense() -> None:
    baseline = np.full(10, 2000)
    simulated = simulated_psi_threshold(baseline, 2000, 0.05, 4000, np.random.default_rng(5))
    assert psi_threshold(2000, 20_000, 10, 0.05) == pytest.approx(simulated, rel=0.1)


def test_sparse_bins_are_always_merged_never_simulated() -> None:
    baseline = np.round(zipf(200, 1.1) * 10_000).astype(np.int64)
    with pytest.raises(TypeError):
        drift_threshold(baseline, 100, 0.05, sparse_method="simulate")  # type: ignore[call-arg]
    assert drift_threshold(baseline, 100, 0.05).method == "merged"


def test_a_baseline_without_events_is_refused() -> None:
    with pytest.raises(ValueError, match="no events"):
        drift_threshold([0, 0, 0], 100)
