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

import math

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
    if p.shape != n.shape or p.ndim != 1:
        raise ValueError(f"positives and negatives must be count vectors of one length, got "
                         f"shapes {p.shape} and {n.shape}")
    if (p < 0).any() or (n < 0).any():
        raise ValueError("bin counts must not be negative")
    return p, n


def roc_auc_from_bins(pos: npt.ArrayLike, neg: npt.ArrayLike) -> float:
    """Area under the ROC curve, in [0, 1]: the probability that a positive scores above a
    negative, a positive and a negative in one bin counting one half (the trapezoid rule).
    NaN without a positive or without a negative (undefined, not 0.5)."""
    p, n = _counts(pos, neg)
    n_pos, n_neg = float(p.sum()), float(n.sum())
    if not n_pos or not n_neg:
        return math.nan
    below = np.cumsum(n) - n  # negatives in lower bins
    return float((p * (below + 0.5 * n)).sum() / (n_pos * n_neg))


def average_precision_from_bins(pos: npt.ArrayLike, neg: npt.ArrayLike) -> float:
    """Average precision (area under the precision-recall curve, step form), in [0, 1]:
    sum over bins b holding positives of (positives in b / all positives) x the precision of
    "score in bin b or above". NaN without a positive."""
    p, n = _counts(pos, neg)
    n_pos = float(p.sum())
    if not n_pos:
        return math.nan
    tp = np.cumsum(p[::-1])[::-1]  # positives at or above each bin
    fp = np.cumsum(n[::-1])[::-1]
    has = p > 0
    return float((p[has] / n_pos * tp[has] / (tp[has] + fp[has])).sum())
