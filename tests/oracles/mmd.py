"""Two-sample MMD^2 with an RBF kernel, its permutation test, and PCA coordinates.

This numpy implementation is the reference: the daemon's fixed-reference test
(`monitor.stats.mmd_null`) and the GPU version (`reference_model.embeddings`) must agree with it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from monitor.stats.mmd import (
    MmdTestResult,
    PcaBasis,
    _check_bandwidth,
    _points,
    _squared_distances,
)


def _rbf(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], bandwidth: float
) -> npt.NDArray[np.float64]:
    return np.exp(-_squared_distances(a, b) / (2.0 * bandwidth**2))


def _mmd2_from_kernel(k: npt.NDArray[np.float64], n: int) -> float:
    m = k.shape[0] - n
    kxx = k[:n, :n]
    kyy = k[n:, n:]
    kxy = k[:n, n:]
    xx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(xx + yy - 2.0 * kxy.mean())

def mmd2_rbf(x: npt.ArrayLike, y: npt.ArrayLike, bandwidth: float) -> float:
    """Unbiased U-statistic estimate of MMD^2 with an RBF kernel of width ``bandwidth``.

    ``mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)``.
    Dimensionless, at most 2; unbiased, so it can be slightly negative when x and y come from
    the same distribution. Needs at least two points on each side. Memory O((n + m)^2).
    """
    _check_bandwidth(bandwidth)
    a = _points(x, "x")
    b = _points(y, "y")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("need at least two points in each sample")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x has {a.shape[1]} dimensions but y has {b.shape[1]}")
    z = np.concatenate([a, b])
    return _mmd2_from_kernel(_rbf(z, z, bandwidth), a.shape[0])

def mmd_permutation_threshold(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    bandwidth: float,
    alpha: float,
    n_permutations: int,
    rng: np.random.Generator,
) -> MmdTestResult:
    """Permutation test of "x and y come from one distribution" with the MMD^2 statistic.

    Pools the points, relabels them at random ``n_permutations`` times (each row of
    ``rng.permuted`` of the pooled indices) and recomputes MMD^2 from one kernel matrix.
    ``threshold`` is the (1 - alpha) quantile of the permuted values; ``p_value`` is
    ``(1 + #{permuted >= observed}) / (1 + n_permutations)``, in (0, 1].
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1, got {n_permutations}")
    _check_bandwidth(bandwidth)
    a = _points(x, "x")
    b = _points(y, "y")
    n, m = a.shape[0], b.shape[0]
    if n < 2 or m < 2:
        raise ValueError("need at least two points in each sample")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x has {a.shape[1]} dimensions but y has {b.shape[1]}")
    z = np.concatenate([a, b])
    kernel = _rbf(z, z, bandwidth)
    observed = _mmd2_from_kernel(kernel, n)
    total = n + m
    diagonal = np.diag(kernel)
    kernel_sum = kernel.sum()
    trace = diagonal.sum()
    permutations = rng.permuted(np.tile(np.arange(total), (n_permutations, 1)), axis=1)
    in_x = np.zeros((n_permutations, total), dtype=np.float64)
    np.put_along_axis(in_x, permutations[:, :n], 1.0, axis=1)
    # sums over the permuted blocks from one matrix product: a^T K a, a^T K 1, diag terms
    k_in_x = in_x @ kernel  # (permutations, total)
    xx_all = np.einsum("pi,pi->p", k_in_x, in_x)
    x_row = k_in_x.sum(axis=1)
    x_diag = in_x @ diagonal
    xy = x_row - xx_all
    yy_all = kernel_sum - 2.0 * x_row + xx_all
    y_diag = trace - x_diag
    permuted = (
        (xx_all - x_diag) / (n * (n - 1)) + (yy_all - y_diag) / (m * (m - 1)) - 2.0 * xy / (n * m)
    )
    return MmdTestResult(
        statistic=observed,
        threshold=float(np.quantile(permuted, 1.0 - alpha)),
        p_value=float((1 + np.count_nonzero(permuted >= observed)) / (1 + n_permutations)),
    )

def pca_project(basis: PcaBasis, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Coordinates of x in the basis, ``(x - mean) @ components.T``; shape (points, k)."""
    pts = _points(x, "x")
    if pts.shape[1] != basis.mean.shape[0]:
        raise ValueError(f"x has {pts.shape[1]} dimensions, the basis {basis.mean.shape[0]}")
    return np.asarray((pts - basis.mean) @ basis.components.T, dtype=np.float64)
