"""PSI of many count rows at once (simulations, the threshold benchmark) and the
Jensen-Shannon divergence, on the product's smoothing (`monitor.stats.divergence`)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from monitor.stats.divergence import (
    DEFAULT_PSEUDOCOUNT,
    _check_pseudocount,
    _pair,
    _psi_rows,
    smoothed_proportions,
)


def psi_per_row(
    current_counts: npt.ArrayLike,
    baseline_counts: npt.ArrayLike,
    pseudocount: float = DEFAULT_PSEUDOCOUNT,
) -> npt.NDArray[np.float64]:
    """PSI of each row of two ``(rows, k)`` count arrays (e.g. simulated windows); NaN if empty."""
    _check_pseudocount(pseudocount)
    cur, base = _pair(current_counts, baseline_counts, ndim=2)
    if cur.shape[0] != base.shape[0]:
        raise ValueError(f"row counts differ: {cur.shape[0]} vs {base.shape[0]}")
    return _psi_rows(cur, base, pseudocount)

def js_divergence(
    current_counts: npt.ArrayLike,
    baseline_counts: npt.ArrayLike,
    pseudocount: float = DEFAULT_PSEUDOCOUNT,
) -> float:
    """Jensen-Shannon divergence ``(KL(c||h) + KL(b||h)) / 2`` with ``h = (c + b) / 2``.

    In nats, within [0, ln 2]; symmetric and bounded. NaN when either side is empty.
    """
    _check_pseudocount(pseudocount)
    cur, base = _pair(current_counts, baseline_counts)
    if cur.sum() == 0 or base.sum() == 0:
        return math.nan
    c = smoothed_proportions(cur, pseudocount)
    b = smoothed_proportions(base, pseudocount)
    h = 0.5 * (c + b)
    value = 0.5 * float(np.sum(c * np.log(c / h))) + 0.5 * float(np.sum(b * np.log(b / h)))
    return min(max(value, 0.0), math.log(2.0))
