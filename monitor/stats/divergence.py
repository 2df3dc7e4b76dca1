"""Divergences between a current window and the baseline, from bin counts.

Every function takes raw counts (events per bin), smooths both sides with the same pseudocount
and returns a value in nats (natural log). Smoothing is additive::

    p_i = (n_i + a) / (N + a * k)        a = 0.5 by default, k = number of bins

so an empty bin costs a finite amount instead of ``ln 0``. The floor is half an event on both
sides (Jeffreys' prior), which is smaller than Laplace's +1 and far larger than the 1e-4 or
2.2e-308 floors that make other tools' PSI explode on one empty bin.

An empty window (N = 0) or an empty baseline has no value: the result is NaN, never 0, so a
dashboard shows a gap instead of "no drift".
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = [
    "kl_divergence",
    "psi",
    "smoothed_proportions",
]

DEFAULT_PSEUDOCOUNT = 0.5


def _as_counts(counts: npt.ArrayLike, name: str, ndim: int = 1) -> npt.NDArray[np.float64]:
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if arr.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one bin")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    return arr


def _check_pseudocount(pseudocount: float) -> None:
    if not (pseudocount > 0 and math.isfinite(pseudocount)):
        raise ValueError(f"pseudocount must be positive and finite, got {pseudocount}")


def _pair(
    current_counts: npt.ArrayLike, baseline_counts: npt.ArrayLike, ndim: int = 1
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    cur = _as_counts(current_counts, "current_counts", ndim)
    base = _as_counts(baseline_counts, "baseline_counts", ndim)
    if cur.shape[-1] != base.shape[-1]:
        raise ValueError(
            f"current has {cur.shape[-1]} bins but baseline has {base.shape[-1]}; "
            "both must be counted on the same bins"
        )
    return cur, base


def smoothed_proportions(
    counts: npt.ArrayLike, pseudocount: float = DEFAULT_PSEUDOCOUNT
) -> npt.NDArray[np.float64]:
    """Additively smoothed proportions ``(n_i + a) / (N + a * k)``; each in (0, 1), sum 1.

    Works on the last axis, so a 2-D array of counts gives one row of proportions per row.
    """
    _check_pseudocount(pseudocount)
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] < 1:
        raise ValueError("counts must have at least one bin")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError("counts must be finite and non-negative")
    k = arr.shape[-1]
    total = arr.sum(axis=-1, keepdims=True)
    return (arr + pseudocount) / (total + pseudocount * k)


def _psi_rows(
    cur: npt.NDArray[np.float64], base: npt.NDArray[np.float64], pseudocount: float
) -> npt.NDArray[np.float64]:
    c = smoothed_proportions(cur, pseudocount)
    b = smoothed_proportions(base, pseudocount)
    # (ln c - ln b) rather than ln(c / b): swapping the arguments then gives the same bits
    values = np.sum((c - b) * (np.log(c) - np.log(b)), axis=-1)
    empty = (cur.sum(axis=-1) == 0) | (base.sum(axis=-1) == 0)
    return np.where(empty, np.nan, np.maximum(values, 0.0))


def psi(
    current_counts: npt.ArrayLike,
    baseline_counts: npt.ArrayLike,
    pseudocount: float = DEFAULT_PSEUDOCOUNT,
) -> float:
    """Population stability index ``sum_i (c_i - b_i) * ln(c_i / b_i)`` in nats, >= 0.

    ``c`` and ``b`` are the smoothed proportions of the current window and the baseline. PSI is
    the symmetric (Jeffreys) divergence KL(c||b) + KL(b||c), so swapping the arguments gives the
    same value. Under no drift it is about ``chi2(k-1) * (1/n + 1/m)``, so its typical size
    depends on the window size n; compare it with ``thresholds.drift_threshold``, not with a
    fixed 0.1. NaN when either side has no events; ``ValueError`` when bin counts differ.
    """
    _check_pseudocount(pseudocount)
    cur, base = _pair(current_counts, baseline_counts)
    return float(_psi_rows(cur, base, pseudocount))


def kl_divergence(
    current_counts: npt.ArrayLike,
    baseline_counts: npt.ArrayLike,
    pseudocount: float = DEFAULT_PSEUDOCOUNT,
) -> float:
    """KL(current || baseline) = ``sum_i c_i * ln(c_i / b_i)`` in nats, >= 0.

    The direction is fixed: how surprising the current window is under the baseline, so a class
    that appears only now weighs more than one that disappeared. NaN when either side is empty.
    """
    _check_pseudocount(pseudocount)
    cur, base = _pair(current_counts, baseline_counts)
    if cur.sum() == 0 or base.sum() == 0:
        return math.nan
    c = smoothed_proportions(cur, pseudocount)
    b = smoothed_proportions(base, pseudocount)
    return max(float(np.sum(c * np.log(c / b))), 0.0)
