"""Hostile input: every decoder accepts or refuses with a reason, never raises, never
hangs. CI runs a few hundred generated inputs per property plus a table of named hostile
events; `tests/faults/fuzz_decoders.py` runs the full count (>= 100,000 inputs)."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest

from monitor.config import parse_config, resolve
from monitor.events import DecodeLimits, ModelClassIndex, PredictionDecoder
from tests.faults.fuzz_decoders import (
    CLASSES,
    LIMITS,
    NOW,
    DecoderHarness,
    hypothesis_properties,
    run_atheris,
)

pytestmark = pytest.mark.slow  # left out of `make test-fast`

CI_EXAMPLES = 150


@pytest.fixture(scope="module")
def harness() -> DecoderHarness:
    return DecoderHarness()


@pytest.mark.parametrize("index", range(5), ids=[
    "raw bytes to every decoder", "arbitrary JSON to every decoder",
    "mutated prediction messages", "mutated feedback", "mutated image records"])
def test_generated_inputs_are_accepted_or_refused_with_a_reason(harness: DecoderHarness,
                                                                index: int) -> None:
    prop = hypothesis_properties(harness, CI_EXAMPLES, derandomize=True)[index]
    prop()


def test_coverage_guided_fuzzing_finds_no_crash() -> None:
    pytest.importorskip("atheris")
    result = run_atheris(20_000, seed=1)
    assert result["exit"] == 0 and not result["crashes"], result["tail"]
    assert result["runs"] == 20_000


def _event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"request_id": "r1", "ts": NOW - 60, "model": "digits",
                            "version": "v1", "pred": 3, "confidence": 0.8, "latency_ms": 9.0}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def _raw(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


BIG = "x" * 10_000_000  # 10 MB
HOSTILE_PREDICTIONS: dict[str, tuple[bytes, str]] = {
    # name: (message, expected: "accepted" or the rejection reason)
    "NaN confidence": (_raw(_event(confidence=math.nan)), "out_of_range"),
    "Infinity latency": (_raw(_event(latency_ms=math.inf)), "out_of_range"),
    "-Infinity timestamp": (_raw(_event(ts=-math.inf)), "invalid_timestamp"),
    "NaN timestamp": (_raw(_event(ts=math.nan)), "invalid_timestamp"),
    "NaN inside probs": (_raw(_event(pred=..., probs=[math.nan] + [0.1] * 9)), "out_of_range"),
    "1e400 confidence (parses as infinity)": (
        _raw(_event(confidence=0.5)).replace(b"0.5", b"1e400"), "out_of_range"),
    # orjson reads integers beyond 64 bits as floats: a float is no class index
    "huge integer class index": (_raw(_event(pred=10**300)), "wrong_type"),
    "huge negative latency": (_raw(_event(latency_ms=-10**30)), "out_of_range"),
    "integer with 5,000 digits": (_raw(_event()).replace(b'"pred": 3', b'"pred": ' + b"9" * 5000),
                                  "invalid_json"),
    "timestamp 1e300 (far future)": (_raw(_event(ts=1e300)), "timestamp_in_future"),
    "timestamp in year 9999": (_raw(_event(ts="9999-12-31T23:59:59+00:00")),
                               "timestamp_in_future"),
    "timestamp one hour ahead": (_raw(_event(ts=NOW + 3600)), "timestamp_in_future"),
    "timestamp in year 1 (negative epoch)": (_raw(_event(ts="0001-01-01T00:00:00+00:00")),
                                             "invalid_timestamp"),
    "timestamp without UTC offset": (_raw(_event(ts="2025-01-01T00:00:00")),
                                     "invalid_timestamp"),
    "negative timestamp": (_raw(_event(ts=-1)), "invalid_timestamp"),
    "timestamp 0 (1970: old, valid; windows ignore it)": (_raw(_event(ts=0)), "accepted"),
    "100,000 nested arrays": (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    "100,000 nested objects": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "invalid_json"),
    "2,000 nested arrays in a field": (
        _raw(_event()).replace(b'"v1"', b"[" * 2000 + b"]" * 2000), "invalid_json"),
    "500 nested arrays in a field": (
        _raw(_event()).replace(b'"v1"', b"[" * 500 + b"]" * 500), "wrong_type"),
    "10 MB request id": (_raw(_event(request_id=BIG)), "too_large"),
    "10 MB of whitespace": (b" " * 10_000_000, "too_large"),
    "unknown class name": (_raw(_event(pred="dog")), "unknown_class"),
    "class index past the end": (_raw(_event(pred=10)), "unknown_class"),
    "negative class index": (_raw(_event(pred=-1)), "unknown_class"),
    "unknown class in topk": (_raw(_event(pred=..., topk=[["dog", 0.9]])), "unknown_class"),
    "unknown model": (_raw(_event(model="resnet-9000")), "unknown_model"),
    "boolean as confidence": (_raw(_event(confidence=True)), "wrong_type"),
    "control characters": (_raw(_event(request_id="\x00\x1b[2J")), "accepted"),
    "lone surrogate (no checkpoint could hold it)": (
        _raw(_event(request_id="\x00\ud800\x1b[2J")), "invalid_utf8"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_PREDICTIONS))
def test_hostile_prediction_events(harness: DecoderHarness, name: str) -> None:
    raw, expected = HOSTILE_PREDICTIONS[name]
    t0 = time.perf_counter()
    d = harness.prediction.decode(raw, NOW)
    assert time.perf_counter() - t0 < 1.0
    harness.check_prediction(raw)
    if expected == "accepted":
        assert len(d.events) == 1 and not d.rejections
    else:
        assert not d.events and [r.reason.value for r in d.rejections] == [expected], \
            [(r.reason.value, r.detail) for r in d.rejections]


def test_10_mb_strings_past_a_raised_size_limit_are_refused_quickly() -> None:
    dec = PredictionDecoder({"digits": ModelClassIndex.of(CLASSES)},
                            DecodeLimits(max_message_bytes=16 * 1024 * 1024))
    for field in ("request_id", "model", "version"):
        raw = _raw(_event(**{field: BIG}))
        t0 = time.perf_counter()
        d = dec.decode(raw, NOW)
        assert time.perf_counter() - t0 < 1.0
        assert [r.reason.value for r in d.rejections] == ["out_of_range"], field
        assert len(d.rejections[0].detail) < 200  # the string is not echoed back
    # an unknown 10 MB field is ignored: the event is accepted and does not keep it
    d = dec.decode(_raw(_event(comment=BIG)), NOW)
    assert len(d.events) == 1 and all(len(str(f)) < 100 for f in d.events[0])


HOSTILE_FEEDBACK: dict[str, tuple[dict[str, Any], str]] = {
    "unknown class name for a named model": (
        {"request_id": "r", "label": "dog", "ts": NOW, "model": "digits"}, "unknown_class"),
    "class index past the end for a named model": (
        {"request_id": "r", "label": 99, "ts": NOW, "model": "digits"}, "unknown_class"),
    "negative label": ({"request_id": "r", "label": -1, "ts": NOW}, "unknown_class"),
    "NaN timestamp": ({"request_id": "r", "label": 1, "ts": math.nan}, "invalid_timestamp"),
    "far-future timestamp": ({"request_id": "r", "label": 1, "ts": 4e9}, "timestamp_in_future"),
    "10 kB label": ({"request_id": "r", "label": "y" * 10_000, "ts": NOW}, "out_of_range"),
    "label as a list": ({"request_id": "r", "label": [1], "ts": NOW}, "wrong_type"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FEEDBACK))
def test_hostile_feedback_events(harness: DecoderHarness, name: str) -> None:
    obj, expected = HOSTILE_FEEDBACK[name]
    harness.check_feedback(_raw(obj))
    d = harness.feedback.decode(_raw(obj), NOW)
    assert [r.reason.value for r in d.rejections] == [expected]


@pytest.mark.parametrize("decoder", ["prediction", "feedback"])
def test_integer_timestamp_beyond_the_float_range_is_refused(harness: DecoderHarness,
                                                             decoder: str) -> None:
    big = 10**400
    if decoder == "prediction":
        d = harness.prediction.decode(_raw(_event(ts=big)), NOW)
    else:
        d = harness.feedback.decode(_raw({"request_id": "r", "label": 1, "ts": big}), NOW)
    assert [r.reason.value for r in d.rejections] == ["invalid_timestamp"]


def test_duplicate_request_ids_never_count_a_label_twice() -> None:
    from visionmon.app import build_statistics

    loaded = resolve(parse_config({"version": 1, "models": [{"name": "digits",
                                                             "classes": CLASSES}]}))
    stats = build_statistics(loaded)
    harness = DecoderHarness()
    preds = [_event(request_id="r1", pred=3), _event(request_id="r1", pred=4),
             _event(request_id="r2", pred=5)]
    d = harness.prediction.decode(b"\n".join(_raw(p) for p in preds), NOW)
    assert len(d.events) == 3  # decoding is stateless: duplicates are accepted there
    stats.engine.apply_predictions(d.events)
    labels = [{"request_id": "r1", "label": 4, "ts": NOW - 10},
              {"request_id": "r1", "label": 4, "ts": NOW - 9},   # the same label again
              {"request_id": "r9", "label": 1, "ts": NOW - 9}]   # no such prediction
    fb = [harness.feedback.decode(_raw(x), NOW).events[0] for x in labels]
    stats.labels.apply_feedback(fb)
    snap = stats.engine.snapshot()
    joined = sum(v for v in snap["visionmon_labels_total"].values())
    assert joined == 1
    requests = sum(v for v in snap["visionmon_requests_total"].values())
    assert requests == 3
    # the store holds one entry per id, whatever the repetition (memory stays bounded);
    # the second label of r1 is counted as a duplicate, not parked until the TTL
    assert len(stats.labels.predictions) == 1 and len(stats.labels.early) == 1
    assert stats.labels.duplicates == {"digits": 1}
    assert snap["visionmon_labels_duplicate_total"] == {("digits", "first"): 1.0}


def test_limits_used_by_the_harness_are_the_defaults() -> None:
    defaults = DecodeLimits()
    assert LIMITS.max_message_bytes == defaults.max_message_bytes
    assert LIMITS.max_request_id_chars == defaults.max_request_id_chars


def test_a_record_that_breaks_a_decoder_is_refused_and_the_daemon_goes_on(
        broker: Any, topics: Any, start_daemon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: a decoder bug (simulated) must not crash-loop the daemon on one
    poisoned record that would be redelivered after every restart."""
    from monitor import events
    from tests.conftest import base_config, metric_sum, parse_metrics, scrape, wait_for
    from tests.faults.harness import FastProducer

    def flaky(real: Any) -> Any:
        def check(self: Any, wire: Any, *args: float) -> Any:
            if "poison" in wire.request_id:
                raise RuntimeError("decoder bug")
            return real(self, wire, *args)
        return check

    for name in ("_checked", "_common"):  # the slow path's checks and the fast path's
        monkeypatch.setattr(events.PredictionDecoder, name,
                            flaky(getattr(events.PredictionDecoder, name)))
    names = topics(partitions=1, dead_letter=False)
    d = start_daemon(base_config(broker.bootstrap, names))
    p = FastProducer(broker.bootstrap)
    now = time.time()
    for i in range(3):
        p.send(names["predictions"], _raw(_event(request_id=f"ok{i}", ts=now - 5)), 0)
        p.send(names["predictions"], _raw(_event(request_id=f"poison{i}", ts=now - 5)), 0)
    p.flush()

    def metrics() -> Any:
        return parse_metrics(scrape(d.url))

    wait_for(lambda: metric_sum(metrics(), "visionmon_records_consumed_total") >= 6, 30)
    m = metrics()
    assert metric_sum(m, "visionmon_requests_total") == 3
    assert metric_sum(m, "visionmon_records_rejected_total", topic=names["predictions"]) == 3
    assert d.thread.is_alive() and metric_sum(m, "visionmon_up") == 1
