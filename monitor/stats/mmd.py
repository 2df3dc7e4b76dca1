"""Kernel bandwidth and PCA for embedding drift, and the shared kernel helpers.

MMD^2 with the RBF kernel ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))`` is zero exactly when the
two distributions are equal, and sees differences in every moment. The daemon's test against a
fixed reference is ``mmd_null``; the two-sample estimate and the permutation test it replaced
are the tests' and benchmarks' oracles (``tests/oracles/mmd.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "MmdTestResult",
    "PcaBasis",
    "median_heuristic_bandwidth",
    "pca_fit",
]


@dataclass(frozen=True, slots=True)
class MmdTestResult:
    """A test's statistic, its critical value at alpha, and its p-value."""

    statistic: float
    threshold: float
    p_value: float


@dataclass(frozen=True, slots=True, eq=False)
class PcaBasis:
    """``mean`` (d,) and ``components`` (k, d): orthonormal rows, largest variance first."""

    mean: npt.NDArray[np.float64]
    components: npt.NDArray[np.float64]


def _points(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (points, dimensions), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    return arr


def _squared_distances(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    a_sq = np.einsum("ij,ij->i", a, a)
    b_sq = np.einsum("ij,ij->i", b, b)
    d2 = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def _check_bandwidth(bandwidth: float) -> None:
    if not (bandwidth > 0 and np.isfinite(bandwidth)):
        raise ValueError(f"bandwidth must be positive and finite, got {bandwidth}")


def median_heuristic_bandwidth(
    x: npt.ArrayLike, max_points: int = 1000, rng: np.random.Generator | None = None
) -> float:
    """RBF bandwidth sigma = median Euclidean distance between distinct points of x.

    Take it from the baseline, once, so the kernel stays fixed while the stream is scored. Uses a
    random subset of ``max_points`` points when x is larger (``rng`` is then required). Same
    units as x; ``ValueError`` when fewer than two points or all distances are zero.
    """
    pts = _points(x, "x")
    if pts.shape[0] < 2:
        raise ValueError("need at least two points for a median distance")
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    if pts.shape[0] > max_points:
        if rng is None:
            raise ValueError(
                f"x has {pts.shape[0]} points > max_points={max_points}; pass rng to subsample"
            )
        pts = pts[rng.choice(pts.shape[0], size=max_points, replace=False)]
    upper = np.triu_indices(pts.shape[0], k=1)
    median = float(np.median(np.sqrt(_squared_distances(pts, pts)[upper])))
    if median <= 0:
        raise ValueError("all points are identical; the median distance is zero")
    return median


def pca_fit(x: npt.ArrayLike, k: int) -> PcaBasis:
    """Top-k principal axes of x via SVD of the centred data.

    Signs are fixed so the largest-magnitude coordinate of each component is positive, which
    makes the basis reproducible across runs and platforms. ``k`` must be at most
    ``min(points, dimensions)``.
    """
    pts = _points(x, "x")
    if not 1 <= k <= min(pts.shape):
        raise ValueError(f"k must lie in [1, {min(pts.shape)}], got {k}")
    mean = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - mean, full_matrices=False)
    components = vt[:k]
    pivot = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(k), pivot])
    return PcaBasis(mean=mean, components=components * signs[:, None])
