"""Bin edges and bin counts for drift statistics.

Continuous values are binned with interior edges ``e_1 < ... < e_K`` taken from the baseline.
The bins are right-closed::

    bin 0:   (-inf, e_1]
    bin i:   (e_i, e_{i+1}]
    bin K:   (e_K, +inf)

so there are ``len(edges) + 1`` bins and values outside the baseline's range land in the two
end bins instead of being dropped. A value equal to an edge belongs to the bin *below* it; this
matches the quantile definition (``F(e) >= q``), so a point mass sitting on a quantile edge
stays in one bin.

NaN values are never binned: every function here raises ``ValueError`` when it sees one. The
caller filters missing values and counts them separately (a missing value is a data-quality
fact, not a drift fact).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["bin_counts", "bin_index", "categorical_counts", "quantile_edges"]


def _as_1d_float(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; filter missing values before binning")
    return arr


def _check_edges(edges: npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = np.asarray(edges, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"edges must be one-dimensional, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("edges must be finite (the end bins already reach -inf and +inf)")
    if arr.size > 1 and not (np.diff(arr) > 0).all():
        raise ValueError("edges must be strictly increasing")
    return arr


def quantile_edges(values: npt.ArrayLike, k: int = 10) -> npt.NDArray[np.float64]:
    """Interior bin edges at the baseline quantiles 1/k, 2/k, ..., (k-1)/k.

    Quantiles use numpy's default linear interpolation. Equal edges (ties in the baseline, e.g.
    a feature that is 0 for 60% of images) are merged, so the result has at most ``k - 1``
    strictly increasing edges and defines at most ``k`` right-closed bins (see module doc).
    Raises ``ValueError`` on an empty baseline, on NaN or infinite values, or when ``k < 2``.
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    arr = _as_1d_float(values, "values")
    if arr.size == 0:
        raise ValueError("cannot take quantile edges of an empty baseline")
    if not np.isfinite(arr).all():
        raise ValueError("baseline values must be finite to define quantile edges")
    probs = np.arange(1, k, dtype=np.float64) / k
    return np.unique(np.quantile(arr, probs))


def bin_index(values: npt.ArrayLike, edges: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Bin of each value, in ``0 .. len(edges)``, for right-closed bins (value == edge goes low).

    ``-inf`` and ``+inf`` fall in the first and last bin. NaN raises ``ValueError``.
    """
    arr = _as_1d_float(values, "values")
    return np.searchsorted(_check_edges(edges), arr, side="left").astype(np.int64)


def bin_counts(values: npt.ArrayLike, edges: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Number of values in each of the ``len(edges) + 1`` right-closed bins (events).

    NaN raises ``ValueError``; out-of-range values are counted in the end bins.
    """
    checked = _check_edges(edges)
    return np.bincount(bin_index(values, checked), minlength=checked.size + 1).astype(np.int64)


def categorical_counts(indices: npt.ArrayLike, n_classes: int) -> npt.NDArray[np.int64]:
    """Number of events per class index ``0 .. n_classes - 1`` (length ``n_classes``).

    Indices must be integers in range; anything else raises ``ValueError`` (unknown classes are
    a data-quality fact the caller counts separately).
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise ValueError(f"indices must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(n_classes, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"indices must be integers, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n_classes:
        raise ValueError(f"class indices must lie in [0, {n_classes - 1}]")
    return np.bincount(arr.astype(np.int64), minlength=n_classes).astype(np.int64)
