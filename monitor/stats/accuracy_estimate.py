"""Label-free accuracy estimate from top-1 confidences.

On the baseline's labeled events we fit g(confidence) = P(correct | confidence) with isotonic
regression. On live traffic, where labels are late or missing, the expected accuracy of a window
is the mean of g over its confidences. This holds as long as P(correct | confidence) does not
change (confidence may drift; the relation between confidence and correctness may not).

Why isotonic regression and not temperature scaling: temperature scaling rescales logits and
needs the full probability vector (or logits) of every event, but events often carry only the
top-1 confidence. Isotonic regression needs just (confidence, correct) pairs, assumes only that
higher confidence never means lower accuracy, and has no parametric form to get wrong. The price
is a step-shaped map that needs a few hundred labeled events to be smooth enough.

The fit is pool-adjacent-violators in numpy (no scikit-learn at runtime); tests check it against
``sklearn.isotonic.IsotonicRegression``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "IsotonicMap",
    "estimated_accuracy_from_bins",
    "fit_isotonic",
]


@dataclass(frozen=True, slots=True, eq=False)
class IsotonicMap:
    """Monotone map from confidence to expected accuracy, linear between the thresholds.

    ``x_thresholds`` strictly increasing, ``y_values`` non-decreasing, same length (>= 1).
    Outside ``[x_thresholds[0], x_thresholds[-1]]`` the end values are held (clipped).
    """

    x_thresholds: npt.NDArray[np.float64]
    y_values: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        x = np.asarray(self.x_thresholds, dtype=np.float64)
        y = np.asarray(self.y_values, dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape or x.size == 0:
            raise ValueError("x_thresholds and y_values must be non-empty 1-D of equal length")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("isotonic map values must be finite")
        if (np.diff(x) <= 0).any() or (np.diff(y) < 0).any():
            raise ValueError("x_thresholds must increase strictly and y_values must not decrease")
        x.setflags(write=False)
        y.setflags(write=False)
        object.__setattr__(self, "x_thresholds", x)
        object.__setattr__(self, "y_values", y)

    def apply(self, confidence: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Calibrated confidence (expected accuracy, in the range of ``y_values``) per input."""
        conf = np.asarray(confidence, dtype=np.float64)
        if np.isnan(conf).any():
            raise ValueError("confidence contains NaN")
        return np.interp(conf, self.x_thresholds, self.y_values)


def _pool_adjacent_violators(
    y: npt.NDArray[np.float64], w: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Weighted least-squares non-decreasing fit of y (already ordered by x)."""
    sums: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for value, weight in zip(y.tolist(), w.tolist(), strict=True):
        block_sum, block_weight, block_size = value * weight, weight, 1
        while sums and sums[-1] * block_weight >= block_sum * weights[-1]:
            block_sum += sums.pop()
            block_weight += weights.pop()
            block_size += sizes.pop()
        sums.append(block_sum)
        weights.append(block_weight)
        sizes.append(block_size)
    means = np.asarray(sums) / np.asarray(weights)
    return np.repeat(means, sizes)


def fit_isotonic(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    sample_weight: npt.ArrayLike | None = None,
) -> IsotonicMap:
    """Fit a non-decreasing map confidence -> P(correct) on labeled baseline events.

    ``correct`` is 0/1 (or any real target); ``sample_weight`` must be positive. Tied
    confidences are pooled first; only the first and last point of each constant stretch are
    kept, so the map is as small as the data allow. Raises ``ValueError`` on empty input or NaN.
    """
    x = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    w = np.ones_like(x) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.shape != w.shape:
        raise ValueError("confidence, correct and sample_weight must be 1-D of equal length")
    if x.size == 0:
        raise ValueError("cannot fit a calibration map without labeled events")
    if not (np.isfinite(x).all() and np.isfinite(y).all() and np.isfinite(w).all()):
        raise ValueError("confidence, correct and sample_weight must be finite")
    if (w <= 0).any():
        raise ValueError("sample_weight must be positive")
    unique_x, inverse = np.unique(x, return_inverse=True)
    pooled_w = np.asarray(np.bincount(inverse, weights=w), dtype=np.float64)
    pooled_y = np.asarray(np.bincount(inverse, weights=w * y), dtype=np.float64) / pooled_w
    fitted = _pool_adjacent_violators(pooled_y, pooled_w)
    keep = np.ones(fitted.size, dtype=bool)
    if fitted.size > 2:
        inner = fitted[1:-1]
        keep[1:-1] = (inner != fitted[:-2]) | (inner != fitted[2:])
    return IsotonicMap(unique_x[keep], fitted[keep])


def _bin_means(
    bin_events: npt.ArrayLike, bin_confidence_sum: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    n = np.asarray(bin_events, dtype=np.float64)
    s = np.asarray(bin_confidence_sum, dtype=np.float64)
    if n.ndim != 1 or n.shape != s.shape:
        raise ValueError("bin_events and bin_confidence_sum must be 1-D of equal length")
    if (n < 0).any():
        raise ValueError("bin_events must be non-negative")
    return n, np.where(n > 0, s / np.where(n > 0, n, 1.0), 0.0)


def estimated_accuracy_from_bins(
    calibration_map: IsotonicMap,
    bin_events: npt.ArrayLike,
    bin_confidence_sum: npt.ArrayLike,
) -> float:
    """Streaming expected accuracy ``sum_b n_b * g(conf_b) / N`` with conf_b the bin's mean.

    Uses the calibration bins the daemon already keeps (events and confidence sum per bin).
    Approximation: g is applied to each bin's mean confidence instead of to every event, which is
    exact where g is linear within a bin; because g is monotone the error is at most
    ``sum_b (n_b / N) * (g(hi_b) - g(lo_b))`` (``tests/oracles/accuracy_estimate.py``).
    In [0, 1]; NaN when N = 0.
    """
    n, means = _bin_means(bin_events, bin_confidence_sum)
    total = n.sum()
    if total == 0:
        return math.nan
    return float(np.sum(n * calibration_map.apply(means)) / total)
