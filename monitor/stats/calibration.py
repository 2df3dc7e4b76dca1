"""Calibration error of confidences: ECE, MCE, Brier score, classwise ECE.

Confidences are binned into ``n_bins`` equal-width bins on [0, 1] (15 by default)::

    [0, 1/15), [1/15, 2/15), ..., [14/15, 1]      (the last bin is closed)

The streaming form keeps three sums per bin (events, sum of confidence, number correct), which
add across batches and windows; ``ece_from_bins`` and ``mce_from_bins`` read them. The batch
forms build the same sums, so both paths give the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "CalibrationBins",
    "brier_multiclass",
    "calibration_bin_index",
    "calibration_bins",
    "classwise_ece",
    "ece",
    "ece_from_bins",
    "mce_from_bins",
]

DEFAULT_N_BINS = 15


@dataclass(frozen=True, slots=True, eq=False)
class CalibrationBins:
    """Per-bin sums: ``events`` (count), ``confidence_sum`` and ``correct_sum`` (count)."""

    events: npt.NDArray[np.int64]
    confidence_sum: npt.NDArray[np.float64]
    correct_sum: npt.NDArray[np.float64]


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


def calibration_bins(
    confidence: npt.ArrayLike, correct: npt.ArrayLike, n_bins: int = DEFAULT_N_BINS
) -> CalibrationBins:
    """Per-bin sums of a batch of (confidence, correct) pairs; ``correct`` is 0/1 or bool."""
    conf = _confidences(confidence)
    hits = np.asarray(correct, dtype=np.float64)
    if hits.shape != conf.shape:
        raise ValueError(f"correct has shape {hits.shape}, confidence has {conf.shape}")
    index = calibration_bin_index(conf, n_bins)
    return CalibrationBins(
        events=np.bincount(index, minlength=n_bins).astype(np.int64),
        confidence_sum=np.asarray(
            np.bincount(index, weights=conf, minlength=n_bins), dtype=np.float64
        ),
        correct_sum=np.asarray(np.bincount(index, weights=hits, minlength=n_bins), np.float64),
    )


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


def ece(confidence: npt.ArrayLike, correct: npt.ArrayLike, n_bins: int = DEFAULT_N_BINS) -> float:
    """Top-label ECE of a batch: confidence of the predicted class vs. whether it was right.

    In [0, 1]; NaN for an empty batch. Same value as ``ece_from_bins`` on ``calibration_bins``.
    """
    bins = calibration_bins(confidence, correct, n_bins)
    return ece_from_bins(bins.events, bins.confidence_sum, bins.correct_sum)


def _probs_labels(
    probs: npt.ArrayLike, labels: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2:
        raise ValueError(f"probs must be (events, classes), got shape {p.shape}")
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(f"labels must be 1-D with {p.shape[0]} entries, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must lie in [0, {p.shape[1] - 1}]")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("probs must lie in [0, 1] and not be NaN")
    return p, y.astype(np.int64)


def brier_multiclass(probs: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Multiclass Brier score ``mean_i sum_j (p_ij - y_ij)^2`` with one-hot y, in [0, 2].

    Lower is better. For two classes this is twice the usual binary Brier score. NaN for an
    empty batch.
    """
    p, y = _probs_labels(probs, labels)
    if p.shape[0] == 0:
        return math.nan
    squared = np.sum(p**2, axis=1) - 2.0 * p[np.arange(p.shape[0]), y] + 1.0
    return float(np.mean(squared))


def classwise_ece(
    probs: npt.ArrayLike, labels: npt.ArrayLike, n_bins: int = DEFAULT_N_BINS
) -> float:
    """Mean over the classes present in ``labels`` of the one-vs-rest ECE, in [0, 1].

    For class j the confidence is ``probs[:, j]`` for every event and "correct" means
    ``label == j``. Classes absent from the labels are skipped (their ECE only measures how
    small their probabilities are). NaN for an empty batch.
    """
    p, y = _probs_labels(probs, labels)
    present = np.unique(y)
    if present.size == 0:
        return math.nan
    values = [ece(p[:, j], y == j, n_bins) for j in present]
    return float(np.mean(values))
