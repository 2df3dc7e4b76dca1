"""False-alarm rate of the PSI drift threshold under no drift, by simulation.

For each baseline size m, window size n and feature kind, every trial draws a fresh baseline of
m events and a fresh window of n events from the same distribution, computes PSI the way the
monitor does (``drift_threshold`` picks the bins and the level; PSI on the same bins) and records
whether it alarms. The target is a rate within [0.5, 2] * alpha. The rate of a fixed 0.1 cut-off
on the original bins is shown for comparison.

Features:
  continuous   10 quantile bins; edges from each trial's baseline sample (a log-normal
               variable), window counts drawn from the true mass of those bins
  cat10        10 classes, Zipf prior p_j ~ 1/j
  cat1000      1,000 classes, Zipf prior p_j ~ j^-1.1 (most classes sparse in small windows)

Usage: python benchmarks/threshold_calibration.py [--trials 10000] [--alpha 0.01] [--seed 0]
       [--features continuous cat10 cat1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import lognorm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.stats import (
    apply_bin_map,
    bin_counts,
    drift_threshold,
    psi,
    quantile_edges,
)
from tests.oracles.divergence import psi_per_row

WINDOW_SIZES = (100, 1_000, 10_000, 100_000)
BASELINE_SIZES = (10_000, 100_000)
FEATURES = ("continuous", "cat10", "cat1000")
FIXED_CUTOFF = 0.1
LOGNORMAL_SIGMA = 0.8


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    n: int
    m: int
    feature: str
    false_alarm_rate: float
    fixed_cutoff_rate: float
    mean_bins: float
    method: str


def zipf_prior(k: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def simulate_counts(
    feature: str, m: int, n_values: tuple[int, ...], trials: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Baseline counts (trials, k) and, per n, window counts (trials, k) under no drift."""
    if feature == "continuous":
        dist = lognorm(s=LOGNORMAL_SIGMA)
        baselines = np.empty((trials, 10), dtype=np.int64)
        masses = np.empty((trials, 10), dtype=np.float64)
        for t in range(trials):
            sample = dist.ppf(rng.random(m))
            edges = quantile_edges(sample, k=10)
            if edges.size != 9:
                raise RuntimeError("a continuous baseline produced duplicate quantile edges")
            baselines[t] = bin_counts(sample, edges)
            masses[t] = np.diff(np.concatenate(([0.0], dist.cdf(edges), [1.0])))
        windows = {n: rng.multinomial(n, masses) for n in n_values}
        return baselines, windows
    k, exponent = {"cat10": (10, 1.0), "cat1000": (1000, 1.1)}[feature]
    prior = zipf_prior(k, exponent)
    baselines = rng.multinomial(m, prior, size=trials)
    windows = {n: rng.multinomial(n, prior, size=trials) for n in n_values}
    return baselines, windows


def calibration_rows(
    feature: str, m: int, trials: int, alpha: float, rng: np.random.Generator
) -> list[CalibrationRow]:
    baselines, windows = simulate_counts(feature, m, WINDOW_SIZES, trials, rng)
    rows = []
    for n in WINDOW_SIZES:
        window_counts = windows[n]
        alarms = 0
        bins = 0
        methods: set[str] = set()
        for t in range(trials):
            level = drift_threshold(baselines[t], n, alpha)
            value = psi(
                apply_bin_map(window_counts[t], level.bin_map),
                apply_bin_map(baselines[t], level.bin_map),
            )
            alarms += bool(value > level.threshold)
            bins += level.n_bins
            methods.add(level.method)
        fixed = psi_per_row(window_counts, baselines) > FIXED_CUTOFF
        rows.append(
            CalibrationRow(
                n=n,
                m=m,
                feature=feature,
                false_alarm_rate=alarms / trials,
                fixed_cutoff_rate=float(fixed.mean()),
                mean_bins=bins / trials,
                method="/".join(sorted(methods)),
            )
        )
    return rows


def format_table(rows: list[CalibrationRow], alpha: float, trials: int) -> str:
    lines = [
        f"alpha = {alpha}, {trials} trials per row, target band [{0.5 * alpha:g}, {2 * alpha:g}]",
        "",
        "| n | m | feature | bins used (mean) | method | false-alarm rate | fixed 0.1 rate |",
        "|---:|---:|---|---:|---|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.n:,} | {row.m:,} | {row.feature} | {row.mean_bins:.1f} | {row.method} | "
            f"{row.false_alarm_rate:.4f} | {row.fixed_cutoff_rate:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--features", nargs="+", choices=FEATURES, default=list(FEATURES))
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    rows: list[CalibrationRow] = []
    for feature in args.features:
        for m in BASELINE_SIZES:
            rows.extend(calibration_rows(feature, m, args.trials, args.alpha, rng))
    print(format_table(rows, args.alpha, args.trials))
    outside = [r for r in rows if not 0.5 * args.alpha <= r.false_alarm_rate <= 2 * args.alpha]
    print(f"\nrows outside the band: {len(outside)}; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
