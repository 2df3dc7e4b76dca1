"""The label-free accuracy estimate computed per event on a batch (the daemon sums it as
events arrive), and the bound on the binned fall-back's error."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from monitor.stats.accuracy_estimate import IsotonicMap


def estimated_accuracy(calibration_map: IsotonicMap, confidences: npt.ArrayLike) -> float:
    """Expected accuracy of a window, the mean calibrated confidence; in [0, 1], NaN if empty."""
    conf = np.asarray(confidences, dtype=np.float64)
    if conf.ndim != 1:
        raise ValueError(f"confidences must be one-dimensional, got shape {conf.shape}")
    if conf.size == 0:
        return math.nan
    return float(np.mean(calibration_map.apply(conf)))

def estimated_accuracy_bin_error_bound(
    calibration_map: IsotonicMap, bin_events: npt.ArrayLike
) -> float:
    """Largest possible gap between the binned and the per-event estimate, in accuracy units.

    ``sum_b (n_b / N) * (g(hi_b) - g(lo_b))`` over equal-width bins on [0, 1]; NaN when N = 0.
    """
    n = np.asarray(bin_events, dtype=np.float64)
    if n.ndim != 1 or n.size == 0 or (n < 0).any():
        raise ValueError("bin_events must be a non-empty, non-negative 1-D vector")
    total = n.sum()
    if total == 0:
        return math.nan
    edges = np.linspace(0.0, 1.0, n.size + 1)
    rise = np.diff(calibration_map.apply(edges))
    return float(np.sum(n * rise) / total)
