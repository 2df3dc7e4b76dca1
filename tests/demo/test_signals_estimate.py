"""The demo's estimated-accuracy signal reads the preferred estimate (the default of
`quality.estimate_methods`: shadow-stratified, then calibrated or mean confidence, then
ATC), whatever other methods the daemon exports beside it."""

from __future__ import annotations

from visionmon.demo.signals import ACCURACY_FLOOR, ESTIMATE_ORDER, evaluate


def snap(**methods: float) -> dict[str, dict[tuple[str, ...], float]]:
    return {"visionmon_estimated_accuracy_ratio": {
        ("digits", "v1", "5m", method): value for method, value in methods.items()}}


def test_the_order_is_the_configs_default() -> None:
    assert ESTIMATE_ORDER == ("shadow_stratified", "calibrated", "mean_confidence", "atc")


def test_the_signal_follows_the_first_method_exported() -> None:
    low, high = ACCURACY_FLOOR - 0.1, ACCURACY_FLOOR + 0.1

    def fires(**methods: float) -> bool:
        return evaluate(snap(**methods), {}, {}, "5m")["estimated_accuracy_drop"]

    assert fires(shadow_stratified=low, calibrated=high, atc=high)
    assert not fires(shadow_stratified=high, calibrated=low, atc=low)
    assert fires(calibrated=low, atc=high)          # no shadow-stratified estimate yet
    assert not fires(calibrated=high, atc=low)
    assert fires(mean_confidence=low, atc=high)     # before the baseline calibrates
    assert fires(atc=low) and not fires(atc=high)   # the last resort
    assert not fires()
