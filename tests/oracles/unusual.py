"""Oracles of the unusual-input statistics (tests only): the energy of logits, which the
scorer computes in torch, and the exceedance test's p-value, whose critical value
`monitor.stats.unusual.exceedance_critical` the daemon exports."""
from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.special import logsumexp
from scipy.stats import betabinom

from monitor.stats.unusual import _beta


def energy_score(logits: npt.ArrayLike, temperature: float = 1.0) -> npt.NDArray[np.float64]:
    """-T * logsumexp(logits / T) per row of `logits` (N x C): lower for images the model
    is sure of, higher for unusual ones. Unit: the logits'."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = np.atleast_2d(np.asarray(logits, dtype=np.float64))
    return np.asarray(-temperature * logsumexp(z / temperature, axis=1), dtype=np.float64)


def exceedance_pvalue(above: int, n: int, base_above: float, base_n: float) -> float:
    """P(X >= above): the one-sided p-value of `above` of a window's `n` images exceeding
    the baseline's quantile that `base_above` of its `base_n` images exceeded. NaN for an
    empty window.

    X ~ BetaBinomial(n, base_above + 1, base_n - base_above): the share of clean images
    above an order statistic of the baseline is Beta-distributed whatever the score's
    distribution, so the test keeps its level with a small baseline (300 images put about
    3 above their 99th percentile); with a large one it is the binomial test against
    base_above / base_n (about 1 %)."""
    if n <= 0:
        return float("nan")
    if not 0 <= above <= n:
        raise ValueError(f"above must be in 0..{n}, got {above}")
    a, b = _beta(base_above, base_n)
    return float(betabinom.sf(above - 1, n, a, b))
