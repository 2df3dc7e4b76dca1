"""Engine state survives a checkpoint round trip exactly, mid-stream."""

from __future__ import annotations

import numpy as np
import orjson

from collectors.checkpoint import decode, encode
from monitor.config import parse_config, resolve
from monitor.events import DecodeLimits, FeedbackDecoder, ModelClassIndex, PredictionDecoder
from tests.conftest import CLASSES
from visionmon.app import build_statistics

NOW = 1_800_000_000.0


def _loaded():
    return resolve(parse_config({
        "version": 1, "models": [{"name": "digits", "classes": CLASSES}],
        "windows": {"sizes": ["5m", "1h"], "slices": 30},
        "baseline": {"mode": "first_events", "events": 500},
        "quality": {"eval_slice": "1m", "min_labels": 5}}))


def _batches(seed: int) -> list[tuple[str, list[bytes]]]:
    rng = np.random.default_rng(seed)
    out = []
    for b in range(40):
        preds, labels = [], []
        for i in range(b * 100, b * 100 + 100):
            k = int(rng.integers(10))
            p = rng.dirichlet(np.ones(10)) * 0.5
            p[k] += 0.5
            p = np.round(p / p.sum(), 6)
            p[k] += 1 - p.sum()
            preds.append(orjson.dumps({"request_id": f"r{i}", "ts": NOW + i * 0.5,
                                       "model": "digits", "version": f"v{i % 2}",
                                       "probs": p.tolist(), "latency_ms": float(i % 50)}))
            if i % 3 == 0:
                labels.append(orjson.dumps({"request_id": f"r{i - 150}",
                                            "label": int(rng.integers(10)), "ts": NOW + i * 0.5}))
        out.append(("p", preds))
        out.append(("f", labels))
    return out


def _feed(stats, loaded, batches) -> None:
    index = {"digits": ModelClassIndex.of(CLASSES)}
    pdec = PredictionDecoder(index, DecodeLimits(max_future_skew_seconds=1e12))
    fdec = FeedbackDecoder(index, DecodeLimits(max_future_skew_seconds=1e12))
    for kind, msgs in batches:
        if kind == "p":
            events = [e for m in msgs for e in pdec.decode(m, NOW).events]
            stats.engine.apply_predictions(events)
        else:
            stats.labels.apply_feedback([e for m in msgs for e in fdec.decode(m, NOW).events])


def test_checkpoint_round_trip_mid_stream_changes_nothing():
    loaded = _loaded()
    batches = _batches(1)
    straight = build_statistics(loaded)
    _feed(straight, loaded, batches)
    first = build_statistics(loaded)
    _feed(first, loaded, batches[:37])
    restored = build_statistics(loaded)
    restored.engine.restore(decode(encode(first.engine.state())))
    _feed(restored, loaded, batches[37:])
    a, b = straight.engine.snapshot(), restored.engine.snapshot()
    assert set(a) == set(b)
    assert "visionmon_eval_windows_total" in a and "visionmon_drift_psi" in a
    assert "visionmon_labels_total" in a
    for name in a:
        assert a[name] == b[name], name
