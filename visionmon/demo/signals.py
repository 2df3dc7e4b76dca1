"""Turns daemon snapshots into the demo's named signals (booleans), the way an on-call
dashboard or alert would read them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monitor.catalog import LATENCY_BUCKETS
from monitor.config import DEFAULT_ESTIMATE_METHODS, ESTIMATE_LABELS
from monitor.scored import INPUT_FEATURES
from monitor.slo_spec import ShadowAgreementDropCheck
from monitor.snapshot import HistogramValue

Snapshot = Mapping[str, Mapping[tuple[str, ...], Any]]

ACCURACY_FLOOR = 0.85
AGREEMENT_FLOOR = 0.8


@dataclass(frozen=True, slots=True)
class Floors:
    """The model the signals read and the ratios (0-1) under which accuracy and shadow
    agreement count as dropped: set under the model's normal level."""

    model: str = "digits"
    accuracy: float = ACCURACY_FLOOR
    agreement: float = AGREEMENT_FLOOR


#: level of the shadow agreement test (`slos.thresholds.shadow_agreement_drop.alpha`)
AGREEMENT_TEST_ALPHA = ShadowAgreementDropCheck().alpha
#: the estimate the demo reads: the first exported of quality.estimate_methods' default
ESTIMATE_ORDER = tuple(m for choice in DEFAULT_ESTIMATE_METHODS for m in ESTIMATE_LABELS[choice])
LATENCY_THRESHOLD_S = 0.25
LATENCY_TARGET = 0.99
PAGE_FACTOR = 14.4


def _gauge(snap: Snapshot, name: str, **want: str) -> list[float]:
    from monitor.catalog import CATALOG

    labels = CATALOG[name].labels
    out = []
    for key, value in snap.get(name, {}).items():
        d = dict(zip(labels, key, strict=True))
        if all(d.get(k) == v for k, v in want.items()):
            out.append(float(value))
    return out


def _drift(snap: Snapshot, version: str, window: str, features: tuple[str, ...],
           at_least: int = 2) -> bool:
    """At least `at_least` of the features over their thresholds: each test runs at a 1 %
    false-alarm rate, and a real shift of the camera moves several features at once."""
    psi = {k: v for k, v in snap.get("visionmon_drift_psi", {}).items()
           if k[1] == version and k[3] == window and k[2] in features}
    th = snap.get("visionmon_drift_threshold", {})
    return sum(v > th.get(k, float("inf")) for k, v in psi.items()) >= at_least


def _slow_fraction(now: Snapshot, before: Snapshot) -> float | None:
    """Fraction of requests slower than the SLO threshold between two snapshots."""
    idx = LATENCY_BUCKETS.index(LATENCY_THRESHOLD_S)
    fast = total = 0.0
    for key, hv in now.get("visionmon_request_latency_seconds", {}).items():
        old = before.get("visionmon_request_latency_seconds", {}).get(key)
        assert isinstance(hv, HistogramValue)
        counts = list(hv.counts)
        prev = list(old.counts) if isinstance(old, HistogramValue) else [0.0] * len(counts)
        delta = [a - b for a, b in zip(counts, prev, strict=True)]
        total += sum(delta)
        fast += sum(delta[: idx + 1])
    return None if total < 20 else 1.0 - fast / total


def _recent_agreement(now: Snapshot, before: Snapshot, model: str, version: str,
                      min_images: int = 5) -> float | None:
    """Shadow agreement of the images joined between two snapshots (None: too few)."""
    got = {}
    for outcome in ("agree", "disagree"):
        key = (model, version, outcome)
        got[outcome] = (now.get("visionmon_shadow_scored_total", {}).get(key, 0.0)
                        - before.get("visionmon_shadow_scored_total", {}).get(key, 0.0))
    total = got["agree"] + got["disagree"]
    return None if total < min_images else got["agree"] / total


def evaluate(now: Snapshot, short_ago: Snapshot, long_ago: Snapshot, window: str,
             floors: Floors = Floors()) -> dict[str, bool]:
    """Every demo signal at this moment."""
    out: dict[str, bool] = {}
    out["input_drift"] = _drift(now, "v1", window, INPUT_FEATURES[:6])
    mmd = _gauge(now, "visionmon_embedding_mmd", version="v1", window=window)
    mmd_th = _gauge(now, "visionmon_embedding_mmd_threshold", version="v1", window=window)
    pcs = tuple(f"embedding_pc{i}" for i in range(1, 9))
    out["embedding_drift"] = bool(mmd and mmd_th and mmd[0] > mmd_th[0]) or _drift(
        now, "v1", window, pcs)
    acc = _gauge(now, "visionmon_accuracy_ratio", version="v1", window=window)
    out["accuracy_drop"] = bool(acc) and acc[0] < floors.accuracy
    est = [v for method in ESTIMATE_ORDER  # the preferred estimate (quality.estimate_methods)
           for v in _gauge(now, "visionmon_estimated_accuracy_ratio", version="v1",
                           window=window, method=method)]
    out["estimated_accuracy_drop"] = bool(est) and est[0] < floors.accuracy
    v2 = _recent_agreement(now, long_ago, floors.model, "v2")
    out["shadow_disagreement_canary"] = v2 is not None and v2 < floors.agreement
    # the daemon's own test of v2's agreement, per class, against the baseline's
    p2 = _gauge(now, "visionmon_shadow_agreement_pvalue", version="v2", window=window)
    out["shadow_agreement_test_canary"] = bool(p2) and p2[0] < AGREEMENT_TEST_ALPHA
    v1 = _recent_agreement(now, long_ago, floors.model, "v1", min_images=20)
    out["shadow_disagreement"] = v1 is not None and v1 < floors.agreement
    budget = 1.0 - LATENCY_TARGET
    short, long = _slow_fraction(now, short_ago), _slow_fraction(now, long_ago)
    out["latency_burn"] = (short is not None and long is not None
                           and short > PAGE_FACTOR * budget and long > PAGE_FACTOR * budget)
    return out
