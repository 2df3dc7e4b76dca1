"""A Monte Carlo PSI alarm level: the oracle the chi-squared level (`drift_threshold`) is
compared with on dense bins, and the alternative it was preferred to on sparse ones."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from monitor.stats.divergence import DEFAULT_PSEUDOCOUNT
from monitor.stats.thresholds import _baseline, _check_alpha
from tests.oracles.divergence import psi_per_row

#: simulated rows drawn per numpy call (bounds memory at O(CHUNK_ROWS * k))
CHUNK_ROWS = 512


def simulated_psi_threshold(
    baseline_counts: npt.ArrayLike,
    n: int,
    alpha: float,
    trials: int,
    rng: np.random.Generator,
    pseudocount: float = DEFAULT_PSEUDOCOUNT,
) -> float:
    """Monte Carlo PSI alarm level: the (1 - alpha) quantile of PSI under no drift (nats).

    Each trial draws a fresh baseline of m events and a window of n events from the multinomial
    with the baseline's observed proportions (an unbiased plug-in; bins never seen in the
    baseline are never drawn) and computes PSI on the original bins. Needs ``trials`` well above
    ``1 / alpha``; costs O(trials * k). NaN when ``n == 0``.
    """
    _check_alpha(alpha)
    base = _baseline(baseline_counts)
    if n < 0 or trials < 1:
        raise ValueError(f"need n >= 0 and trials >= 1, got n={n}, trials={trials}")
    if n == 0:
        return math.nan
    m = round(float(base.sum()))
    proportions = base / base.sum()
    values = np.empty(trials, dtype=np.float64)
    for lo in range(0, trials, CHUNK_ROWS):
        rows = min(CHUNK_ROWS, trials - lo)
        fresh_baseline = rng.multinomial(m, proportions, size=rows)
        window = rng.multinomial(n, proportions, size=rows)
        values[lo : lo + rows] = psi_per_row(window, fresh_baseline, pseudocount)
    return float(np.quantile(values, 1.0 - alpha, method="higher"))
