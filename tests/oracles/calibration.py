"""Batch calibration figures: per-bin sums and ECE of one batch (the streaming
`ece_from_bins` must equal them), the multiclass Brier score and classwise ECE."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitor.stats.calibration import (
    DEFAULT_N_BINS,
    _confidences,
    calibration_bin_index,
    ece_from_bins,
)


@dataclass(frozen=True, slots=True, eq=False)
class CalibrationBins:
    """Per-bin sums: ``events`` (count), ``confidence_sum`` and ``correct_sum`` (count)."""

    events: npt.NDArray[np.int64]
    confidence_sum: npt.NDArray[np.float64]
    correct_sum: npt.NDArray[np.float64]

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
