"""Calibration error of confidences from streaming per-bin sums: ECE and MCE.

Confidences are binned into ``n_bins`` equal-width bins on [0, 1] (15 by default)::

    [0, 1/15), [1/15, 2/15), ..., [14/15, 1]      (the last bin is closed)

The streaming form keeps three sums per bin (events, sum of confidence, number correct), which
add across batches and windows; ``ece_from_bins`` and ``mce_from_bins`` read them. The batch
forms the tests compare with (``tests/oracles/calibration.py``) build the same sums.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = [
    "calibration_bin_index",
    "ece_from_bins",
    "mce_from_bins",
]

DEFAULT_N_BINS = 15


def _confidences(confidence: npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = np.asarray(confidence, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"confidence must be one-dimensional, got shape {arr.shape}")
    if np.isnan(arr).any() or (arr < 0).any() or (arr > 1).any():
        raise ValueError("confidence must lie in [0, 1] and not be NaN")
    return arr


def calibration_bin_index(
    confidence: npt.ArrayLike, n_bins: int = DEFAULT_N_BINS
) -> npt.NDArray[np.int64]:
    """Bin ``0 .. n_bins - 1`` of each confidence: bin b is [b/n_bins, (b+1)/n_bins), last closed.

    Edges are ``np.linspace(0, 1, n_bins + 1)``, compared exactly (no ``floor(c * n_bins)``
    rounding). Values outside [0, 1] or NaN raise ``ValueError``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    arr = _confidences(confidence)
    interior = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return np.searchsorted(interior, arr, side="right").astype(np.int64)


def _bin_gaps(
    events: npt.ArrayLike, confidence_sum: npt.ArrayLike, correct_sum: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    n = np.asarray(events, dtype=np.float64)
    conf = np.asarray(confidence_sum, dtype=np.float64)
    hits = np.asarray(correct_sum, dtype=np.float64)
    if n.ndim != 1 or n.shape != conf.shape or n.shape != hits.shape:
        raise ValueError("events, confidence_sum and correct_sum must be 1-D of equal length")
    if (n < 0).any():
        raise ValueError("events must be non-negative")
    safe = np.where(n > 0, n, 1.0)
    gaps = np.where(n > 0, np.abs(hits / safe - conf / safe), 0.0)
    return n, gaps


def ece_from_bins(
    events: npt.ArrayLike, confidence_sum: npt.ArrayLike, correct_sum: npt.ArrayLike
) -> float:
    """Expected calibration error ``sum_b (n_b / N) * |acc_b - conf_b|``, in [0, 1].

    ``acc_b = correct_sum_b / n_b`` and ``conf_b = confidence_sum_b / n_b``; empty bins count
    zero. NaN when there are no events (N = 0).
    """
    n, gaps = _bin_gaps(events, confidence_sum, correct_sum)
    total = n.sum()
    if total == 0:
        return math.nan
    return float(np.sum(n * gaps) / total)


def mce_from_bins(
    events: npt.ArrayLike, confidence_sum: npt.ArrayLike, correct_sum: npt.ArrayLike
) -> float:
    """Maximum calibration error ``max_b |acc_b - conf_b|`` over non-empty bins, in [0, 1].

    NaN when every bin is empty. Noisy for bins with few events; read it with the bin counts.
    """
    n, gaps = _bin_gaps(events, confidence_sum, correct_sum)
    if not (n > 0).any():
        return math.nan
    return float(gaps[n > 0].max())
