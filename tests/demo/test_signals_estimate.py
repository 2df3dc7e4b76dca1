"""The demo's estimated-accuracy signal reads the default estimate, whatever other methods
(ATC, shadow-stratified) the daemon exports beside it."""

from __future__ import annotations

from visionmon.demo.signals import ACCURACY_FLOOR, evaluate


def snap(**methods: float) -> dict[str, dict[tuple[str, ...], float]]:
    return {"visionmon_estimated_accuracy_ratio": {
        ("digits", "v1", "5m", method): value for method, value in methods.items()}}


def test_the_signal_follows_the_calibrated_estimate_not_atc() -> None:
    low, high = ACCURACY_FLOOR - 0.1, ACCURACY_FLOOR + 0.1
    assert not evaluate(snap(atc=low, calibrated=high), {}, {}, "5m")["estimated_accuracy_drop"]
    assert evaluate(snap(shadow_stratified=high, calibrated=low), {}, {},
                    "5m")["estimated_accuracy_drop"]
    assert evaluate(snap(mean_confidence=low), {}, {}, "5m")["estimated_accuracy_drop"]
