"""MMD^2 against a brute-force double loop; permutation test; median heuristic; PCA."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.decomposition import PCA

from monitor.stats import median_heuristic_bandwidth, pca_fit
from tests.oracles.mmd import mmd2_rbf, mmd_permutation_threshold, pca_project


def brute_force_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * sigma**2))

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize(
    ("n", "m", "d", "shift"), [(12, 9, 3, 0.0), (7, 15, 5, 1.0), (2, 2, 1, 0.3)]
)
def test_mmd2_matches_a_double_loop(n: int, m: int, d: int, shift: float) -> None:
    rng = np.random.default_rng(n * m)
    x = rng.normal(size=(n, d))
    y = rng.normal(shift, 1.0, size=(m, d))
    assert mmd2_rbf(x, y, 1.3) == pytest.approx(brute_force_mmd2(x, y, 1.3), rel=1e-10, abs=1e-12)


def test_mmd2_of_the_same_distribution_is_near_zero_and_of_a_shift_is_not() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
    shifted = rng.normal(0.5, 1.0, size=(300, 4))
    assert abs(mmd2_rbf(x, y, 2.0)) < 0.01
    assert mmd2_rbf(x, shifted, 2.0) > 0.05


def test_median_heuristic_is_the_median_pairwise_distance() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    distances = [float(np.linalg.norm(x[i] - x[j])) for i in range(40) for j in range(i + 1, 40)]
    assert median_heuristic_bandwidth(x) == pytest.approx(float(np.median(distances)))


def test_median_heuristic_subsamples_only_with_a_generator() -> None:
    x = np.random.default_rng(2).normal(size=(50, 2))
    with pytest.raises(ValueError, match="rng"):
        median_heuristic_bandwidth(x, max_points=10)
    first = median_heuristic_bandwidth(x, max_points=10, rng=np.random.default_rng(3))
    again = median_heuristic_bandwidth(x, max_points=10, rng=np.random.default_rng(3))
    assert first == again > 0


def test_identical_points_have_no_bandwidth() -> None:
    with pytest.raises(ValueError):
        median_heuristic_bandwidth(np.ones((5, 2)))


def test_permutation_statistics_match_brute_force_relabelling() -> None:
    rng_data = np.random.default_rng(4)
    x, y = rng_data.normal(size=(8, 2)), rng_data.normal(0.3, 1.0, size=(6, 2))
    result = mmd_permutation_threshold(x, y, 1.0, 0.1, 50, np.random.default_rng(5))
    # same permutations as the implementation documents: rows of rng.permuted on the indices
    perms = np.random.default_rng(5).permuted(np.tile(np.arange(14), (50, 1)), axis=1)
    z = np.concatenate([x, y])
    permuted = np.array([brute_force_mmd2(z[p[:8]], z[p[8:]], 1.0) for p in perms])
    observed = brute_force_mmd2(x, y, 1.0)
    assert result.statistic == pytest.approx(observed, rel=1e-10)
    assert result.threshold == pytest.approx(float(np.quantile(permuted, 0.9)), rel=1e-9)
    expected_p = (1 + np.count_nonzero(permuted >= observed - 1e-12)) / 51
    assert result.p_value == pytest.approx(expected_p)


def test_a_clear_shift_gets_the_smallest_possible_p_value() -> None:
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(100, 3)), rng.normal(1.5, 1.0, size=(100, 3))
    result = mmd_permutation_threshold(x, y, median_heuristic_bandwidth(x), 0.05, 200, rng)
    assert result.p_value == pytest.approx(1 / 201)
    assert result.statistic > result.threshold


def test_p_values_under_no_drift_are_roughly_uniform() -> None:
    rng = np.random.default_rng(7)
    p_values = []
    for _ in range(200):
        x, y = rng.normal(size=(20, 2)), rng.normal(size=(25, 2))
        p_values.append(mmd_permutation_threshold(x, y, 1.5, 0.05, 99, rng).p_value)
    rejected = float(np.mean(np.array(p_values) <= 0.1))
    assert 0.03 <= rejected <= 0.2
    assert 0.4 <= float(np.mean(p_values)) <= 0.6


def test_pca_matches_scikit_learn_up_to_sign() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    basis = pca_fit(x, 3)
    reference = PCA(n_components=3).fit(x)
    for ours, theirs in zip(basis.components, reference.components_, strict=True):
        assert abs(float(ours @ theirs)) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(basis.components @ basis.components.T, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(
        np.abs(pca_project(basis, x)), np.abs(reference.transform(x)), atol=1e-9
    )


def test_pca_signs_are_fixed_and_full_rank_projection_is_lossless() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(size=(50, 4))
    basis = pca_fit(x, 4)
    pivots = np.argmax(np.abs(basis.components), axis=1)
    assert (basis.components[np.arange(4), pivots] > 0).all()
    restored = pca_project(basis, x) @ basis.components + basis.mean
    np.testing.assert_allclose(restored, x, atol=1e-10)
    with pytest.raises(ValueError):
        pca_fit(x, 5)
