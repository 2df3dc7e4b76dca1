"""One-vs-rest ranking quality from streaming score bins: ROC-AUC and PR-AUC (average
precision) of one class.

A class's scores are binned into ``n_bins`` equal-width bins on [0, 1]::

    [0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1]      (the last bin is closed)

and two count vectors are kept per class: the positives (events whose label is the class)
and the negatives (the others) by the bin of their score for the class. Both figures are
exactly scikit-learn's `roc_auc_score` / `average_precision_score` on the scores replaced by
their bin (ties within a bin); their distance to the figures on the raw scores is bounded
in docs/statistics.md (ROC-AUC and PR-AUC).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["average_precision_from_bins", "roc_auc_from_bins", "score_bin_index"]


def score_bin_index(scores: npt.ArrayLike, n_bins: int) -> npt.NDArray[np.int64]:
    """Bin ``0 .. n_bins - 1`` of each score in [0, 1]: bin b is [b/n, (b+1)/n), the last
    closed; scores outside [0, 1] land in the end bins."""
    s = np.asarray(scores, dtype=np.float64)
    return np.clip(np.floor(s * n_bins), 0, n_bins - 1).astype(np.int64)


def _counts(pos: npt.ArrayLike, neg: npt.ArrayLike
            ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    p = np.asarray(pos, dtype=np.float64)
    n = np.asarray(neg, dtype=np.float64)
    if p.shape != n.shape or p.ndim != 2:
        raise ValueError(f"positives and negatives must be (classes, bins) count arrays of one "
                         f"shape, got shapes {p.shape} and {n.shape}")
    if (p < 0).any() or (n < 0).any():
        raise ValueError("bin counts must not be negative")
    return p, n


def roc_auc_from_bins(pos: npt.ArrayLike, neg: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Area under the ROC curve of each row (one class's bins), in [0, 1]: the probability
    that a positive scores above a negative, a positive and a negative in one bin counting one
    half (the trapezoid rule). NaN for a row without a positive or without a negative
    (undefined, not 0.5)."""
    p, n = _counts(pos, neg)
    n_pos, n_neg = p.sum(axis=1), n.sum(axis=1)
    below = np.cumsum(n, axis=1) - n  # negatives in lower bins
    wins = (p * (below + 0.5 * n)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), wins / (n_pos * n_neg), np.nan)


def average_precision_from_bins(pos: npt.ArrayLike, neg: npt.ArrayLike
                                ) -> npt.NDArray[np.float64]:
    """Average precision (area under the precision-recall curve, step form) of each row, in
    [0, 1]: the sum over bins b holding positives of (positives in b / all positives) x the
    precision of "score in bin b or above". NaN for a row without a positive."""
    p, n = _counts(pos, neg)
    n_pos = p.sum(axis=1)
    tp = np.cumsum(p[:, ::-1], axis=1)[:, ::-1]  # positives at or above each bin
    fp = np.cumsum(n[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        steps = np.where(p > 0, p * tp / (tp + fp), 0.0).sum(axis=1)
        return np.where(n_pos > 0, steps / n_pos, np.nan)
