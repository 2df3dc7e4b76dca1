"""Error of the label-free accuracy estimate against realized accuracy, with and without shift.

Real images: scikit-learn's ``load_digits`` (1,797 greyscale 8x8 digits, pixel values 0-16).
For each of several random splits:
  train      50%  fits the "production model" (scikit-learn, here only): a logistic regression
                  and a small MLP, each on pixels / 16
  baseline   25%  clean labeled events: ``fit_isotonic(confidence, correct)`` is the calibration
                  map the baseline file would carry
  pool       25%  unseen images; each window draws WINDOW events from it with replacement and
                  applies a fresh random corruption to every drawn image

Corruptions at three severities (none = the clean row): Gaussian pixel noise, Gaussian blur,
contrast reduction towards the image mean, brightness offset, random rotation. For every window
the realized accuracy (labels known here) is compared with
  isotonic   ``estimated_accuracy(map, confidences)``: mean calibrated confidence per event
  binned     ``estimated_accuracy_from_bins``: the daemon's streaming form, from the 15
             calibration bins (events and confidence sum per bin)
  raw        the mean top-1 confidence, uncalibrated (what a tool without calibration reports)
The table shows means over splits x windows of realized, estimate and |estimate - realized|,
and how often the confidence-drift alarm fires on those windows (PSI of 10 quantile bins of
confidence against the baseline events, above the sample-size-aware threshold at alpha 0.01):
the signal that tells an operator when the estimate is no longer to be trusted.

    .venv/bin/python benchmarks/accuracy_estimate.py [--splits 10] [--windows 4] [--window 1000]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.drift import drift_figures
from monitor.stats import (
    IsotonicMap,
    bin_counts,
    calibration_bin_index,
    estimated_accuracy_from_bins,
    fit_isotonic,
    quantile_edges,
)
from tests.oracles.accuracy_estimate import estimated_accuracy

PIXEL_MAX = 16.0
CALIBRATION_BINS = 15

Corruption = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def gaussian_noise(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(images + rng.normal(0.0, sigma, images.shape), 0.0, PIXEL_MAX)


def blur(images: np.ndarray, sigma: float, _rng: np.random.Generator) -> np.ndarray:
    return ndimage.gaussian_filter(images, sigma=(0.0, sigma, sigma))


def contrast(images: np.ndarray, factor: float, _rng: np.random.Generator) -> np.ndarray:
    mean = images.mean(axis=(1, 2), keepdims=True)
    return mean + factor * (images - mean)


def brightness(images: np.ndarray, offset: float, _rng: np.random.Generator) -> np.ndarray:
    return np.clip(images + offset, 0.0, PIXEL_MAX)


def rotation(images: np.ndarray, max_degrees: float, rng: np.random.Generator) -> np.ndarray:
    angles = rng.uniform(-max_degrees, max_degrees, images.shape[0])
    return np.stack([ndimage.rotate(img, a, reshape=False, order=1, mode="constant")
                     for img, a in zip(images, angles, strict=True)])


def no_shift(images: np.ndarray, _level: float, _rng: np.random.Generator) -> np.ndarray:
    return images


# (name, corruption, three severities in its own unit, unit)
SHIFTS: tuple[tuple[str, Corruption, tuple[float, ...], str], ...] = (
    ("none", no_shift, (0.0,), ""),
    ("gaussian noise", gaussian_noise, (2.0, 4.0, 6.0), "σ px"),
    ("blur", blur, (0.5, 0.75, 1.0), "σ px"),
    ("contrast", contrast, (0.6, 0.4, 0.25), "× contrast"),
    ("brightness", brightness, (2.0, 4.0, 6.0), "+ of 16"),
    ("rotation", rotation, (10.0, 20.0, 30.0), "± deg"),
)


@dataclass(frozen=True, slots=True)
class WindowResult:
    realized: float
    isotonic: float
    binned: float
    raw: float
    drift_alarm: bool


@dataclass(frozen=True, slots=True)
class Reference:
    """What the baseline keeps of its labeled events: the calibration map and the quantile
    bins of confidence (edges and counts)."""

    calibration: IsotonicMap
    edges: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True, slots=True)
class Row:
    model: str
    shift: str
    severity: str
    windows: int
    realized: float
    isotonic: float
    isotonic_err: float
    binned: float
    binned_err: float
    raw: float
    raw_err: float
    drift_alarm_share: float


def production_models(seed: int) -> dict[str, Callable[[], object]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    return {
        "logistic regression": lambda: LogisticRegression(max_iter=2000),
        "MLP (64 hidden)": lambda: MLPClassifier(hidden_layer_sizes=(64,), max_iter=1000,
                                                 random_state=seed),
    }


def top1(model: object, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = model.predict_proba(images.reshape(images.shape[0], -1) / PIXEL_MAX)  # type: ignore[attr-defined]
    return probs.argmax(axis=1), probs.max(axis=1)


def window_result(ref: Reference, pred: np.ndarray, conf: np.ndarray,
                  labels: np.ndarray) -> WindowResult:
    bins = calibration_bin_index(conf, CALIBRATION_BINS)
    events = np.bincount(bins, minlength=CALIBRATION_BINS)
    conf_sum = np.bincount(bins, weights=conf, minlength=CALIBRATION_BINS)
    drift = drift_figures(bin_counts(conf, ref.edges).astype(np.float64), ref.counts,
                          alpha=0.01, min_effect=0.0)
    return WindowResult(
        realized=float(np.mean(pred == labels)),
        isotonic=estimated_accuracy(ref.calibration, conf),
        binned=estimated_accuracy_from_bins(ref.calibration, events, conf_sum),
        raw=float(np.mean(conf)),
        drift_alarm=bool(drift.psi > drift.threshold),
    )


def evaluate(splits: int, windows: int, window: int) -> list[Row]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float64)
    labels = digits.target.astype(np.int64)
    results: dict[tuple[str, str, str], list[WindowResult]] = {}
    for split in range(splits):
        rng = np.random.default_rng([split, 7])
        order = rng.permutation(labels.size)
        train, base, pool = np.split(order, [labels.size // 2, 3 * labels.size // 4])
        for model_name, make in production_models(split).items():
            model = make()
            model.fit(images[train].reshape(train.size, -1) / PIXEL_MAX,  # type: ignore[attr-defined]
                      labels[train])
            pred, conf = top1(model, images[base])
            edges = quantile_edges(conf, 10)
            ref = Reference(fit_isotonic(conf, (pred == labels[base]).astype(np.float64)),
                            edges, bin_counts(conf, edges).astype(np.float64))
            for shift, corrupt, levels, unit in SHIFTS:
                for level in levels:
                    severity = "clean" if shift == "none" else f"{level:g} {unit}"
                    key = (model_name, shift, severity)
                    for _ in range(windows):
                        drawn = rng.choice(pool, size=window, replace=True)
                        shifted = corrupt(images[drawn], level, rng)
                        p, c = top1(model, shifted)
                        results.setdefault(key, []).append(
                            window_result(ref, p, c, labels[drawn]))
    rows = []
    for (model_name, shift, severity), rs in results.items():
        realized = np.array([r.realized for r in rs])

        def mean_and_err(values: list[float], realized: np.ndarray = realized
                         ) -> tuple[float, float]:
            v = np.asarray(values)
            return float(v.mean()), float(np.mean(np.abs(v - realized)))

        iso, iso_err = mean_and_err([r.isotonic for r in rs])
        binned, binned_err = mean_and_err([r.binned for r in rs])
        raw, raw_err = mean_and_err([r.raw for r in rs])
        alarms = float(np.mean([r.drift_alarm for r in rs]))
        rows.append(Row(model_name, shift, severity, len(rs), float(realized.mean()), iso,
                        iso_err, binned, binned_err, raw, raw_err, alarms))
    return rows


def table(rows: list[Row]) -> str:
    lines = []
    for model_name in dict.fromkeys(r.model for r in rows):
        lines += [f"### {model_name}", "",
                  "| shift | severity | realized | isotonic est. | abs err | binned est. "
                  "| abs err | raw mean conf. | abs err | confidence drift alarms |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in rows if r.model == model_name):
            lines.append(f"| {r.shift} | {r.severity} | {r.realized:.3f} | {r.isotonic:.3f} "
                         f"| {r.isotonic_err:.3f} | {r.binned:.3f} | {r.binned_err:.3f} "
                         f"| {r.raw:.3f} | {r.raw_err:.3f} | {100 * r.drift_alarm_share:.0f}% |")
        lines.append("")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """Mean absolute error by model over clean windows, and over shifted ones by severity rank."""
    lines = ["### Mean absolute error (accuracy points ×100), by severity rank", "",
             "| model | estimator | clean | mild | moderate | severe | all shifted |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for model_name in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model_name]
        for label, attr in (("isotonic", "isotonic_err"), ("binned", "binned_err"),
                            ("raw mean confidence", "raw_err")):
            clean = [getattr(r, attr) for r in mine if r.shift == "none"]
            ranks: list[list[float]] = [[], [], []]
            for shift, _, levels, unit in SHIFTS[1:]:
                for rank, level in enumerate(levels):
                    sev = f"{level:g} {unit}"
                    ranks[rank] += [getattr(r, attr) for r in mine
                                    if r.shift == shift and r.severity == sev]
            shifted = [x for rank in ranks for x in rank]
            cells = [100 * float(np.mean(v)) if v else math.nan
                     for v in (clean, *ranks, shifted)]
            lines.append(f"| {model_name} | {label} | "
                         + " | ".join(f"{x:.1f}" for x in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", type=int, default=10, help="random train/baseline/pool splits")
    ap.add_argument("--windows", type=int, default=4, help="windows per split and severity")
    ap.add_argument("--window", type=int, default=1000, help="events per window")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    rows = evaluate(args.splits, args.windows, args.window)
    print(f"{args.splits} splits x {args.windows} windows of {args.window} events per row; "
          "means over windows\n")
    print(table(rows))
    print(summary(rows))
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
