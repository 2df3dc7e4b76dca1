"""Binning: quantile edges from the baseline, right-closed bins, overflow bins, NaN refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from monitor.stats import bin_counts, bin_index, categorical_counts, quantile_edges

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def brute_force_bin(value: float, edges: list[float]) -> int:
    """Bins (-inf, e1], (e1, e2], ..., (e_last, +inf), by direct comparison."""
    for i, edge in enumerate(edges):
        if value <= edge:
            return i
    return len(edges)


def test_edges_are_the_baseline_deciles() -> None:
    values = np.arange(1.0, 101.0)
    np.testing.assert_allclose(
        quantile_edges(values, k=10), np.quantile(values, np.arange(1, 10) / 10)
    )


def test_tied_baseline_values_give_merged_edges() -> None:
    values = np.concatenate([np.zeros(60), np.arange(1.0, 41.0)])
    edges = quantile_edges(values, k=10)
    assert edges[0] == 0.0
    assert (np.diff(edges) > 0).all()
    assert edges.size < 9
    # the point mass at 0 stays in one bin, the first
    assert bin_counts(values, edges)[0] == 60


def test_a_value_on_an_edge_goes_to_the_lower_bin() -> None:
    edges = np.array([1.0, 2.0, 3.0])
    assert bin_index([1.0, 2.0, 3.0], edges).tolist() == [0, 1, 2]
    assert bin_index([1.0 + 1e-12, 3.0 + 1e-12], edges).tolist() == [1, 3]


def test_out_of_range_values_land_in_the_end_bins() -> None:
    edges = np.array([0.0, 1.0])
    counts = bin_counts([-np.inf, -1e300, 0.5, 1e300, np.inf], edges)
    assert counts.tolist() == [2, 1, 2]


def test_there_is_one_more_bin_than_edges_and_every_value_is_counted() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=1000)
    edges = quantile_edges(values, k=10)
    counts = bin_counts(values, edges)
    assert counts.shape == (edges.size + 1,)
    assert counts.dtype == np.int64
    assert counts.sum() == 1000
    assert counts.tolist() == [100] * 10


@pytest.mark.parametrize(
    "call",
    [
        lambda: bin_counts([0.1, np.nan], [0.0]),
        lambda: bin_index([np.nan], [0.0]),
        lambda: quantile_edges([1.0, np.nan, 2.0]),
    ],
    ids=["bin_counts", "bin_index", "quantile_edges"],
)
def test_nan_is_refused_not_binned(call) -> None:
    with pytest.raises(ValueError, match="NaN"):
        call()


@pytest.mark.parametrize(
    ("values", "edges"),
    [([1.0], [2.0, 1.0]), ([1.0], [1.0, 1.0]), ([1.0], [0.0, np.inf]), ([1.0], [[0.0]])],
    ids=["decreasing", "repeated", "infinite", "two-dimensional"],
)
def test_bad_edges_are_refused(values, edges) -> None:
    with pytest.raises(ValueError):
        bin_counts(values, edges)


@pytest.mark.parametrize(
    "values", [[], [1.0, np.inf], [[1.0, 2.0]]], ids=["empty", "infinite", "2-d"]
)
def test_quantile_edges_need_a_finite_non_empty_baseline(values) -> None:
    with pytest.raises(ValueError):
        quantile_edges(values)


def test_quantile_edges_need_two_bins() -> None:
    with pytest.raises(ValueError):
        quantile_edges([1.0, 2.0], k=1)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(finite, max_size=60),
    edges=st.lists(finite, min_size=1, max_size=8, unique=True).map(sorted),
)
def test_bin_counts_match_a_python_loop(values: list[float], edges: list[float]) -> None:
    expected = [0] * (len(edges) + 1)
    for value in values:
        expected[brute_force_bin(value, edges)] += 1
    assert bin_counts(values, edges).tolist() == expected


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.integers(1, 200), elements=finite), st.integers(2, 20))
def test_quantile_edges_are_strictly_increasing(values: np.ndarray, k: int) -> None:
    edges = quantile_edges(values, k)
    assert edges.size <= k - 1
    assert (np.diff(edges) > 0).all()


def test_categorical_counts_keep_unseen_classes_as_zero() -> None:
    assert categorical_counts(np.array([0, 2, 2]), 5).tolist() == [1, 0, 2, 0, 0]
    assert categorical_counts(np.array([], dtype=np.int64), 3).tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    "indices",
    [np.array([0, 5]), np.array([-1]), np.array([0.0, 1.0])],
    ids=["too-large", "negative", "float"],
)
def test_categorical_counts_refuse_invalid_indices(indices: np.ndarray) -> None:
    with pytest.raises(ValueError):
        categorical_counts(indices, 5)
