"""The threshold contract, reduced: no-drift false-alarm rate within [0.5, 2] * alpha.

Each trial draws a fresh baseline of m events and a fresh window of n events from the same
distribution. alpha = 0.05 with 2,000 trials puts the band's edges 5 and 10 binomial standard
errors from alpha, so the checks are not flaky. The full grid (alpha = 0.01, n up to 100,000,
m in {10,000, 100,000}) is ``benchmarks/threshold_calibration.py``; its table is in
docs/statistics.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from monitor.stats import (
    apply_bin_map,
    bin_counts,
    drift_threshold,
    psi,
    quantile_edges,
)
from tests.oracles.divergence import psi_per_row

pytestmark = pytest.mark.slow  # left out of `make test-fast`

ALPHA = 0.05
TRIALS = 2000


def zipf(k: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1) ** exponent
    return weights / weights.sum()


def continuous_counts(
    n: int, m: int, trials: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """10 quantile bins with edges from each trial's baseline; windows from the true bin mass."""
    baselines = np.empty((trials, 10), dtype=np.int64)
    masses = np.empty((trials, 10))
    for t in range(trials):
        sample = rng.normal(size=m)
        edges = quantile_edges(sample, k=10)
        baselines[t] = bin_counts(sample, edges)
        masses[t] = np.diff(np.concatenate(([0.0], norm.cdf(edges), [1.0])))
    return baselines, rng.multinomial(n, masses)


def categorical_counts(
    prior: np.ndarray, n: int, m: int, trials: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    return rng.multinomial(m, prior, size=trials), rng.multinomial(n, prior, size=trials)


def false_alarm_rate(baselines: np.ndarray, windows: np.ndarray, n: int, alpha: float) -> float:
    alarms = 0
    for base, window in zip(baselines, windows, strict=True):
        level = drift_threshold(base, n, alpha)
        value = psi(apply_bin_map(window, level.bin_map), apply_bin_map(base, level.bin_map))
        alarms += bool(value > level.threshold)
    return alarms / len(baselines)


@pytest.mark.parametrize(
    ("feature", "n", "m", "seed"),
    [
        ("continuous", 100, 10_000, 1),
        ("continuous", 10_000, 10_000, 2),
        ("cat10", 100, 100_000, 3),
        ("cat1000", 100, 10_000, 4),
        ("cat1000", 1_000, 10_000, 5),
        ("cat1000", 100_000, 100_000, 6),
    ],
)
def test_no_drift_windows_alarm_at_about_alpha(feature: str, n: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if feature == "continuous":
        baselines, windows = continuous_counts(n, m, TRIALS, rng)
    else:
        k, exponent = {"cat10": (10, 1.0), "cat1000": (1000, 1.1)}[feature]
        baselines, windows = categorical_counts(zipf(k, exponent), n, m, TRIALS, rng)
    rate = false_alarm_rate(baselines, windows, n, ALPHA)
    assert 0.5 * ALPHA <= rate <= 2 * ALPHA, f"{feature} n={n} m={m}: rate {rate}"


def test_a_fixed_cutoff_alarms_far_more_often_than_alpha_on_small_windows() -> None:
    rng = np.random.default_rng(7)
    baselines, windows = continuous_counts(100, 10_000, TRIALS, rng)
    continuous_rate = float(np.mean(psi_per_row(windows, baselines) > 0.1))
    # PSI * (1/n + 1/m)^-1 ~ chi2(9): P(chi2(9) > 0.1 / 0.0101) is about 0.36, not 0.01
    assert 0.2 < continuous_rate < 0.5
    baselines, windows = categorical_counts(zipf(1000, 1.1), 100, 10_000, TRIALS, rng)
    assert float(np.mean(psi_per_row(windows, baselines) > 0.1)) > 0.9

