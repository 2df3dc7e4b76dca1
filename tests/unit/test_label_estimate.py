"""The exported label-free accuracy estimate: exact per-event form, its fall-backs, and
checkpoints written before it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.engine import EventGroup
from monitor.events import PredictionEvent
from monitor.labels import LabelMonitor
from monitor.stats import atc_threshold, estimated_accuracy_from_bins, fit_isotonic
from monitor.windows import WindowSpec
from tests.oracles.accuracy_estimate import estimated_accuracy

CLASSES = ("a", "b", "c")
WINDOWS = (WindowSpec("5m", 300, 60), WindowSpec("1h", 3600, 60))
RNG = np.random.default_rng(7)
# an over-confident model: most confidences near 1, where the map is steep
BASE_CONF = np.clip(RNG.beta(12, 1, 4000), 0.34, 1.0)
MAP = fit_isotonic(BASE_CONF, RNG.random(4000) < BASE_CONF ** 3)


def group(conf: np.ndarray, t0: float) -> dict[tuple[str, str], EventGroup]:
    evs = [PredictionEvent(f"r{t0}-{i}", t0 + i * 0.01, "m", "v1", True, i % 3, float(c),
                           math.nan, math.nan, 0.01) for i, c in enumerate(conf)]
    return {("m", "v1"): EventGroup(evs)}


def monitor(cal: dict[str, object], atc: dict[str, float] | None = None) -> LabelMonitor:
    thresholds = {} if atc is None else atc
    return LabelMonitor({"m": CLASSES}, WINDOWS, 10_000, 3600.0,
                        calibration_for=lambda m: cal.get(m),  # type: ignore[arg-type, return-value]
                        atc_threshold_for=thresholds.get)


def test_the_estimate_is_the_mean_calibrated_confidence_of_the_window() -> None:
    conf = np.clip(RNG.beta(12, 1, 1500), 0.34, 1.0)
    lm = monitor({"m": MAP})
    lm.on_predictions(group(conf[:700], 1000.0))
    lm.on_predictions(group(conf[700:], 1010.0))
    got = lm.window_figures("m", "v1")["5m"]["estimated"]
    assert got == pytest.approx(estimated_accuracy(MAP, conf), rel=1e-12)
    # the binned form it replaces is off here: g is steep inside the top bin
    binned = estimated_accuracy_from_bins(MAP, *_bins(conf))
    assert abs(binned - got) > 1e-3


def _bins(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from monitor.stats import calibration_bin_index

    idx = calibration_bin_index(conf)
    return (np.bincount(idx, minlength=15).astype(float),
            np.bincount(idx, weights=conf, minlength=15))


def test_a_map_that_arrives_mid_window_falls_back_to_the_bins() -> None:
    cal: dict[str, object] = {}
    lm = monitor(cal)
    conf = np.clip(RNG.beta(12, 1, 600), 0.34, 1.0)
    lm.on_predictions(group(conf[:300], 1000.0))
    cal["m"] = MAP  # the baseline froze now
    lm.on_predictions(group(conf[300:], 1010.0))
    got = lm.window_figures("m", "v1")["5m"]["estimated"]
    assert got == pytest.approx(estimated_accuracy_from_bins(MAP, *_bins(conf)), rel=1e-12)


def test_without_a_map_the_estimate_is_the_mean_confidence() -> None:
    lm = monitor({})
    conf = np.array([0.5, 0.9, 1.0])
    lm.on_predictions(group(conf, 1000.0))
    assert lm.window_figures("m", "v1")["5m"]["estimated"] == pytest.approx(conf.mean())


def test_a_checkpoint_from_before_the_exact_estimate_restores() -> None:
    conf = np.clip(RNG.beta(12, 1, 400), 0.34, 1.0)
    lm = monitor({"m": MAP})
    lm.on_predictions(group(conf, 1000.0))
    state = lm.state()
    for ring in state["versions"][0][2]["pred_windows"]:  # drop the estimate's and ATC's
        ring["counts"] = ring["counts"][:, :-4]
    restored = monitor({"m": MAP})
    restored.restore(state)
    got = restored.window_figures("m", "v1")["5m"]["estimated"]
    assert got == pytest.approx(estimated_accuracy_from_bins(MAP, *_bins(conf)), rel=1e-12)
    restored.on_predictions(group(conf, 1020.0))  # and it goes on counting
    assert restored.window_figures("m", "v1")["5m"]["predictions"] == 2 * conf.size


def test_atc_is_the_share_of_confidences_at_or_above_the_threshold() -> None:
    conf = np.clip(RNG.beta(12, 1, 900), 0.34, 1.0)
    t = atc_threshold(BASE_CONF, RNG.random(4000) < BASE_CONF ** 3)
    lm = monitor({"m": MAP}, {"m": t})
    lm.on_predictions(group(conf[:400], 1000.0))
    lm.on_predictions(group(conf[400:], 1010.0))
    figures = lm.window_figures("m", "v1")["5m"]
    assert figures["atc"] == pytest.approx(float(np.mean(conf >= t)), rel=1e-12)
    assert figures["estimated"] == pytest.approx(estimated_accuracy(MAP, conf), rel=1e-12)


def test_without_a_threshold_there_is_no_atc_estimate() -> None:
    lm = monitor({"m": MAP})
    lm.on_predictions(group(np.array([0.5, 0.9]), 1000.0))
    assert math.isnan(lm.window_figures("m", "v1")["5m"]["atc"])


def test_a_threshold_that_arrives_mid_window_covers_the_predictions_after_it() -> None:
    atc: dict[str, float] = {}
    lm = monitor({"m": MAP}, atc)
    lm.on_predictions(group(np.array([0.2, 0.3, 0.4]), 1000.0))
    atc["m"] = 0.6
    lm.on_predictions(group(np.array([0.5, 0.7, 0.9, 0.95]), 1010.0))
    assert lm.window_figures("m", "v1")["5m"]["atc"] == pytest.approx(0.75)


def test_a_checkpoint_from_before_atc_restores_and_atc_counts_from_then_on() -> None:
    conf = np.clip(RNG.beta(12, 1, 400), 0.34, 1.0)
    lm = monitor({"m": MAP}, {"m": 0.9})
    lm.on_predictions(group(conf, 1000.0))
    state = lm.state()
    for ring in state["versions"][0][2]["pred_windows"]:  # drop ATC's two bins
        ring["counts"] = ring["counts"][:, :-2]
    restored = monitor({"m": MAP}, {"m": 0.9})
    restored.restore(state)
    figures = restored.window_figures("m", "v1")["5m"]
    assert figures["estimated"] == pytest.approx(estimated_accuracy(MAP, conf), rel=1e-12)
    assert math.isnan(figures["atc"])
    restored.on_predictions(group(conf, 1020.0))
    assert restored.window_figures("m", "v1")["5m"]["atc"] == pytest.approx(np.mean(conf >= 0.9))


def test_a_checkpoint_round_trip_keeps_the_atc_counts() -> None:
    conf = np.clip(RNG.beta(12, 1, 300), 0.34, 1.0)
    lm = monitor({"m": MAP}, {"m": 0.95})
    lm.on_predictions(group(conf, 1000.0))
    restored = monitor({"m": MAP}, {"m": 0.95})
    restored.restore(lm.state())
    assert restored.window_figures("m", "v1") == lm.window_figures("m", "v1")
