"""The most confused (true, predicted) class pairs of a confusion matrix.

The confusion matrix counts labeled events: row = true class, column = predicted class. It adds
across batches, so windows keep one matrix and read every figure from it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["top_confused_pairs"]


def _square(confusion: npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = np.asarray(confusion, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError("confusion counts must be finite and non-negative")
    return arr


def top_confused_pairs(confusion: npt.ArrayLike, k: int = 20) -> list[tuple[int, int, int]]:
    """The k largest off-diagonal cells as ``(true, predicted, count)``, count > 0 only.

    Sorted by count descending, then by true class, then by predicted class, so ties are stable.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    c = _square(confusion)
    true_idx, pred_idx = np.nonzero(c)
    off = true_idx != pred_idx
    true_idx, pred_idx = true_idx[off], pred_idx[off]
    counts = c[true_idx, pred_idx]
    order = np.lexsort((pred_idx, true_idx, -counts))[:k]
    return [(int(true_idx[i]), int(pred_idx[i]), round(float(counts[i]))) for i in order]
