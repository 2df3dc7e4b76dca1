"""Confusion matrix of a batch, per-class precision / recall / F1, accuracy and top-k.

Undefined values are NaN, not 0: precision of a class that was never predicted (among labeled
events), recall of a class that never appeared as a label, F1 of a class that is in neither.
scikit-learn's ``zero_division`` default (0 with a warning) would report such classes as
maximally bad; ``zero_division=np.nan`` gives the same numbers as here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitor.stats.classification import _square


@dataclass(frozen=True, slots=True, eq=False)
class PerClassScores:
    """Per-class precision, recall, F1 (each in [0, 1] or NaN) and support (labeled events)."""

    precision: npt.NDArray[np.float64]
    recall: npt.NDArray[np.float64]
    f1: npt.NDArray[np.float64]
    support: npt.NDArray[np.int64]

def confusion_matrix(
    labels: npt.ArrayLike, predictions: npt.ArrayLike, n_classes: int
) -> npt.NDArray[np.int64]:
    """``(n_classes, n_classes)`` counts: entry [t, p] = events with label t predicted as p."""
    y = np.asarray(labels)
    yhat = np.asarray(predictions)
    if y.ndim != 1 or y.shape != yhat.shape:
        raise ValueError(f"labels {y.shape} and predictions {yhat.shape} must be equal 1-D")
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    if y.size == 0:
        return np.zeros((n_classes, n_classes), dtype=np.int64)
    for name, arr in (("labels", y), ("predictions", yhat)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be integer class indices, got dtype {arr.dtype}")
        if arr.min() < 0 or arr.max() >= n_classes:
            raise ValueError(f"{name} must lie in [0, {n_classes - 1}]")
    flat = y.astype(np.int64) * n_classes + yhat.astype(np.int64)
    counts = np.bincount(flat, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)

def per_class_scores(confusion: npt.ArrayLike) -> PerClassScores:
    """Precision, recall and F1 per class, NaN where undefined (see module doc).

    precision_j = C[j, j] / sum_t C[t, j];  recall_j = C[j, j] / sum_p C[j, p];
    F1_j = 2 C[j, j] / (column sum + row sum), which is 0 for a class that appears but is never
    predicted correctly even when its precision is undefined.
    """
    c = _square(confusion)
    tp = np.diag(c)
    predicted = c.sum(axis=0)
    actual = c.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(actual > 0, tp / actual, np.nan)
        denom = predicted + actual
        f1 = np.where(denom > 0, 2.0 * tp / denom, np.nan)
    return PerClassScores(
        precision=precision, recall=recall, f1=f1, support=np.rint(actual).astype(np.int64)
    )

def accuracy(confusion: npt.ArrayLike) -> float:
    """Share of labeled events predicted correctly, ``trace(C) / sum(C)``; [0, 1], NaN if empty."""
    c = _square(confusion)
    total = c.sum()
    if total == 0:
        return math.nan
    return float(np.trace(c) / total)

def topk_correct(
    topk_classes: npt.ArrayLike, labels: npt.ArrayLike, k: int = 5
) -> npt.NDArray[np.bool_]:
    """Per event, whether the label is among the first k predicted classes.

    ``topk_classes`` is ``(events, >= k)``, most likely class first. Its mean is top-k accuracy.
    """
    top = np.asarray(topk_classes)
    y = np.asarray(labels)
    if top.ndim != 2 or y.ndim != 1 or top.shape[0] != y.shape[0]:
        raise ValueError(
            f"topk_classes must be (events, classes) and labels (events,), got {top.shape} "
            f"and {y.shape}"
        )
    if not 1 <= k <= top.shape[1]:
        raise ValueError(f"k must lie in [1, {top.shape[1]}], got {k}")
    return np.asarray((top[:, :k] == y[:, None]).any(axis=1), dtype=np.bool_)
