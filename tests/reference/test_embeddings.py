"""Torch embedding statistics against direct numpy formulas."""

from __future__ import annotations

import numpy as np
import pytest

from reference_model.embeddings import (
    median_heuristic_sigma,
    mmd2_permutation_test,
    mmd2_rbf,
    pca_fit,
    pca_project,
)


def naive_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * sigma**2))

    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
                 + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * k(x, y).mean())


def test_mmd2_matches_the_definition_and_separates_shifted_samples() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 5)), rng.normal(size=(40, 5))
    sigma = median_heuristic_sigma(x)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))[np.triu_indices(60, 1)]
    assert sigma == pytest.approx(float(np.median(d)))
    assert mmd2_rbf(x, y, sigma) == pytest.approx(naive_mmd2(x, y, sigma), abs=1e-12)
    assert mmd2_rbf(x, y + 1.0, sigma) > 10 * abs(mmd2_rbf(x, y, sigma))


def test_permutation_test_p_values() -> None:
    rng = np.random.default_rng(1)
    x, same, shifted = (rng.normal(size=(50, 4)), rng.normal(size=(50, 4)),
                        rng.normal(size=(50, 4)) + 0.8)
    sigma = median_heuristic_sigma(x)
    stat, p_same = mmd2_permutation_test(x, same, sigma, permutations=200)
    assert stat == pytest.approx(naive_mmd2(x, same, sigma), abs=1e-12)
    assert p_same > 0.05
    _, p_shift = mmd2_permutation_test(x, shifted, sigma, permutations=200)
    assert p_shift == pytest.approx(1 / 201)


def test_pca_fit_and_project() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 3)) * np.array([5.0, 2.0, 0.1]) + 7.0
    mean, basis = pca_fit(x, 2)
    np.testing.assert_allclose(mean, x.mean(0))
    np.testing.assert_allclose(basis.T @ basis, np.eye(2), atol=1e-9)
    assert abs(basis[0, 0]) > 0.99 and abs(basis[1, 1]) > 0.99  # largest-variance axes first
    scores = pca_project(x, mean, basis)
    np.testing.assert_allclose(scores, (x - mean) @ basis, atol=1e-9)
