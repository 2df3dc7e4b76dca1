"""The emitter library without a broker: what it produces is what the daemon accepts, it
batches within limits, samples deterministically, never blocks and counts every drop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from collectors.emitter import EmitterSettings, PredictionLogger, sample_fraction, sampled
from collectors.emitter.batching import NdjsonBatcher
from tests.conftest import metric_sum, parse_metrics
from tests.serving.fakes import (
    RecordingProducer,
    decode_feedback,
    decode_images,
    decode_lifecycle,
    decode_predictions,
    png,
)


def _logger(producer: RecordingProducer, **settings: object) -> PredictionLogger:
    return PredictionLogger(producer, EmitterSettings(**settings),  # type: ignore[arg-type]
                            close_at_exit=False)


# ----------------------------------------------------------------- contract


def test_every_form_of_prediction_is_accepted_by_the_daemons_decoder() -> None:
    producer = RecordingProducer()
    logger = _logger(producer)
    probs = np.full(10, 0.02, dtype=np.float32)
    probs[7] = 0.82
    assert logger.log("a", "digits", "v1", probs=probs, latency_s=0.041)
    assert logger.log("b", "digits", "v1", pred="seven", confidence=0.93, latency_ms=12.5)
    assert logger.log("c", "digits", "v1", pred=np.int64(3))
    assert logger.log("d", "fashion", "v2", topk=[("c1", 0.2), ("c4", 0.7)])
    assert logger.log("e", "fashion", "v2", topk={"c1": 0.5, "c2": 0.3}, ts=time.time() - 5)
    assert logger.log("f", "digits", "v1", status="error", latency_s=1.5)
    logger.close()
    events = {e.request_id: e for e in decode_predictions(producer.on("predictions"))}
    assert sorted(events) == ["a", "b", "c", "d", "e", "f"]
    assert events["a"].pred == 7 and events["a"].latency_s == pytest.approx(0.041)
    assert events["b"].pred == 7 and events["b"].confidence == pytest.approx(0.93)
    assert events["c"].pred == 3
    assert events["d"].top5 == (4, 1), "topk is sent in descending order"
    assert events["e"].top5 == (1, 2)
    assert not events["f"].ok


def test_sampled_images_carry_the_headers_the_images_topic_requires() -> None:
    producer = RecordingProducer()
    logger = _logger(producer, image_sample_rate=1.0)
    logger.log("img-1", "digits", "v1", pred=1, image_bytes=png(), ts=1_700_000_000.5)
    logger.close()
    (image,) = decode_images(producer.on("images"))
    assert (image.request_id, image.model, image.version) == ("img-1", "digits", "v1")
    assert image.content_type == "image/png" and image.ts == 1_700_000_000.5
    assert producer.on("images")[0][3] == b"img-1", "keyed by request id"


def test_invalid_arguments_are_counted_as_dropped_never_raised() -> None:
    producer = RecordingProducer()
    logger = _logger(producer)
    assert not logger.log("x", "digits", "v1", pred=1, latency_s=1.0, latency_ms=1000.0)
    assert not logger.log("y", "digits", "v1", pred=1, status="timeout")
    assert not logger.log("", "digits", "v1", pred=1)
    assert not logger.log("z", "digits", "v1", probs=object())
    assert not logger.log(42, "digits", "v1", pred=1, image_bytes=png())  # type: ignore[arg-type]
    logger.close()
    assert logger.stats().dropped == {("prediction", "invalid"): 5}
    assert producer.sent == []


# ----------------------------------------------------------------- labels


def test_every_form_of_label_is_accepted_by_the_daemons_feedback_decoder() -> None:
    producer = RecordingProducer()
    logger = PredictionLogger(producer, EmitterSettings(linger_ms=60_000),  # sent at close
                              clock=lambda: 1_700_000_000.0, close_at_exit=False)
    assert logger.label("a", "seven", source="review")
    assert logger.label("b", 3, model="digits")
    assert logger.label("c", np.int64(2), ts=1_600_000_000.5)
    logger.close()
    assert [m[0] for m in producer.sent] == ["feedback"], "one NDJSON message, own topic"
    events = {e.request_id: e for e in decode_feedback(producer.on("feedback"))}
    assert events["a"][1:] == ("seven", 1_700_000_000.0, "review", None)
    assert events["b"][1:] == (3, 1_700_000_000.0, None, "digits")
    assert events["c"].label == 2 and events["c"].ts == 1_600_000_000.5


def test_every_lifecycle_event_is_accepted_by_the_daemons_decoder() -> None:
    producer = RecordingProducer()
    logger = PredictionLogger(producer, EmitterSettings(linger_ms=60_000),  # sent at close
                              clock=lambda: 1_700_000_000.0, close_at_exit=False)
    sha = "0f" * 32
    assert logger.model_loaded("digits", "v3", sha256=sha, load_seconds=4.25, host="pod-a")
    assert logger.model_loaded("digits", "v3", sha256=sha, load_seconds=1)  # host: this one
    assert logger.model_load_failed("digits", "v3", "corrupt", detail="bad zip", host="pod-b")
    assert logger.model_rolled_out("digits", "v3", from_version="v2")
    assert logger.model_rolled_back("digits", "v2", from_version="v3", ts=1_600_000_000.0)
    logger.close()
    assert [m[0] for m in producer.sent] == ["lifecycle"], "one NDJSON message, own topic"
    events = decode_lifecycle(producer.on("lifecycle"))
    assert [(e.kind, e.version, e.host) for e in events] == [
        ("loaded", "v3", "pod-a"), ("loaded", "v3", socket.gethostname()),
        ("load_failed", "v3", "pod-b"), ("rolled_out", "v3", None), ("rolled_back", "v2", None)]
    assert events[0].sha256 == sha and events[0].load_seconds == 4.25
    assert events[2].reason == "corrupt" and events[3].from_version == "v2"
    assert events[4].ts == 1_600_000_000.0 and events[3].ts == 1_700_000_000.0
    assert logger.stats().sent["lifecycle"] == 5


def test_invalid_lifecycle_events_are_counted_as_dropped_never_raised() -> None:
    producer = RecordingProducer()
    logger = _logger(producer)
    assert not logger.model_loaded("", "v1", sha256="0f" * 32, load_seconds=1)
    assert not logger.model_loaded("digits", "v1", sha256="", load_seconds=1)
    assert not logger.model_load_failed("digits", "v1", "", host="h")
    assert not logger.model_rolled_out("digits", 3)  # type: ignore[arg-type]
    logger.close()
    assert logger.stats().dropped == {("lifecycle", "invalid"): 4}
    assert producer.sent == []


def test_labels_and_predictions_are_batched_into_messages_of_their_own_topic() -> None:
    producer = RecordingProducer()
    logger = _logger(producer, batch_max_events=7, linger_ms=60_000)  # no partial batches
    for i in range(40):
        logger.log(f"r{i}", "digits", "v1", pred=i % 10)
        logger.label(f"r{i}", i % 10)
    logger.close()
    labels, predictions = producer.on("feedback"), producer.on("predictions")
    # 5 full messages of 7 events each, and the 5 left at close
    assert [v.count(b"\n") + 1 for _, v, _, _ in labels] == [7] * 5 + [5]
    assert [v.count(b"\n") + 1 for _, v, _, _ in predictions] == [7] * 5 + [5]
    assert [e.request_id for e in decode_feedback(labels)] == [f"r{i}" for i in range(40)]
    assert len(decode_predictions(predictions)) == 40
    stats = logger.stats()
    assert stats.sent == {"prediction": 40, "image": 0, "label": 40, "lifecycle": 0}
    assert stats.messages["label"] == 6


def test_invalid_labels_are_counted_as_dropped_never_raised() -> None:
    producer = RecordingProducer()
    logger = _logger(producer)
    assert not logger.label("", 1)
    assert not logger.label("x", -1)
    assert not logger.label("x", True)
    assert not logger.label("x", "")
    assert not logger.label("x", 1.5)  # type: ignore[arg-type]
    assert not logger.label("x", 1, source="")
    assert not logger.label(7, 1)  # type: ignore[arg-type]
    logger.close()
    assert logger.stats().dropped == {("label", "invalid"): 7}
    assert producer.sent == []


def test_label_never_blocks_when_the_broker_stalls_and_overflow_is_counted() -> None:
    gate = threading.Event()
    producer = RecordingProducer(gate=gate)
    registry = CollectorRegistry()
    logger = PredictionLogger(producer, EmitterSettings(queue_max_events=100,
                                                        batch_max_events=10, linger_ms=1),
                              registry=registry, close_at_exit=False)
    accepted = sum(logger.label(f"r{i}", i % 10) for i in range(2000))
    stats = logger.stats()
    assert stats.logged["label"] == accepted
    assert stats.dropped[("label", "queue_full")] == 2000 - accepted > 1800
    text = parse_metrics(generate_latest(registry).decode())
    assert metric_sum(text, "visionmon_emitter_dropped_total", kind="label",
                      reason="queue_full") == 2000 - accepted
    gate.set()
    logger.close()
    assert len(decode_feedback(producer.on("feedback"))) == accepted
    assert logger.stats().sent["label"] == accepted


# ----------------------------------------------------------------- batching


@pytest.mark.parametrize(("what", "max_events", "max_bytes", "lines", "expected"), [
    ("count limit closes a message", 2, 100, [b"a", b"b", b"c"], [2]),
    ("size limit closes the message before the line that would overflow", 10, 6,
     [b"aaa", b"bbb", b"c"], [1]),
    ("lines and newlines exactly at the size limit fit", 10, 7, [b"aaa", b"bbb", b"c"], [2]),
    ("a line exactly at the size limit fits alone", 10, 3, [b"aaa", b"bbb"], [1]),
    ("nothing closes below both limits", 10, 100, [b"a", b"b"], []),
])
def test_batcher_limits(what: str, max_events: int, max_bytes: int, lines: list[bytes],
                        expected: list[int]) -> None:
    b = NdjsonBatcher(max_events, max_bytes)
    done = [batch for line in lines for batch in b.add(line, 0.0)]
    assert [d.events for d in done] == expected, what
    assert all(len(d.value) <= max_bytes for d in done)
    rest = b.flush()
    assert sum(d.events for d in done) + (rest.events if rest else 0) == len(lines)


def test_messages_respect_count_and_size_limits_and_are_ndjson() -> None:
    producer = RecordingProducer()
    logger = _logger(producer, batch_max_events=7, batch_max_bytes=1000, linger_ms=5)
    for i in range(100):
        logger.log(f"r{i}", "digits", "v1", pred=i % 10, confidence=0.5, latency_ms=float(i))
    logger.close()
    messages = producer.on("predictions")
    assert all(len(v) <= 1000 and v.count(b"\n") < 7 for _, v, _, _ in messages)
    assert len(decode_predictions(messages)) == 100
    assert logger.stats().messages["prediction"] == len(messages)


def test_linger_sends_a_partial_batch_without_close() -> None:
    producer = RecordingProducer()
    logger = _logger(producer, batch_max_events=100, linger_ms=20)
    logger.log("only", "digits", "v1", pred=1)
    deadline = time.monotonic() + 5
    while not producer.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(producer.sent) == 1
    logger.close()


# ----------------------------------------------------------------- sampling


def test_image_sampling_is_a_fixed_function_of_the_request_id() -> None:
    ids = [f"req-{i}" for i in range(20_000)]
    picked = [r for r in ids if sampled(r, 0.1)]
    assert 0.09 < len(picked) / len(ids) < 0.11
    assert set(picked) <= {r for r in ids if sampled(r, 0.2)}, "a higher rate only adds"
    # another interpreter with another hash seed (another replica) decides the same
    code = ("from collectors.emitter import sampled;"
            "print(','.join(r for r in (f'req-{i}' for i in range(2000)) if sampled(r, 0.1)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.stdout.strip().split(",") == [r for r in ids[:2000] if sampled(r, 0.1)]
    assert sample_fraction("req-1") == sample_fraction("req-1")


def test_two_loggers_sample_the_same_requests() -> None:
    a, b = RecordingProducer(), RecordingProducer()
    la, lb = _logger(a, image_sample_rate=0.3), _logger(b, image_sample_rate=0.3)
    image = png()
    for i in range(300):
        la.log(f"r{i}", "digits", "v1", pred=1, image_bytes=image)
        lb.log(f"r{i}", "digits", "v1", pred=1, image_bytes=image)
    la.close()
    lb.close()
    keys_a = [k for _, _, _, k in a.on("images")]
    assert keys_a == [k for _, _, _, k in b.on("images")]
    assert keys_a == [f"r{i}".encode() for i in range(300) if sampled(f"r{i}", 0.3)]
    assert la.stats().images_unsampled == 300 - len(keys_a)


# ----------------------------------------------------------------- never blocking


def test_log_never_blocks_when_the_broker_stalls_and_overflow_is_counted() -> None:
    gate = threading.Event()
    producer = RecordingProducer(gate=gate)
    registry = CollectorRegistry()
    logger = PredictionLogger(producer, EmitterSettings(queue_max_events=200,
                                                        batch_max_events=10, linger_ms=1),
                              registry=registry, close_at_exit=False)
    durations = []
    accepted = 0
    for i in range(5000):
        t0 = time.perf_counter()
        accepted += logger.log(f"r{i}", "digits", "v1", pred=i % 10)
        durations.append(time.perf_counter() - t0)
    assert max(durations) < 0.05, f"log() took {max(durations) * 1000:.1f} ms"
    stats = logger.stats()
    assert stats.logged["prediction"] == accepted
    assert stats.dropped[("prediction", "queue_full")] == 5000 - accepted > 4000
    assert stats.queued_events <= 200
    text = parse_metrics(generate_latest(registry).decode())
    assert metric_sum(text, "visionmon_emitter_dropped_total", kind="prediction",
                      reason="queue_full") == 5000 - accepted
    gate.set()
    logger.close()
    assert len(decode_predictions(producer.on("predictions"))) == accepted
    assert logger.stats().sent["prediction"] == accepted


def test_the_buffer_is_bounded_in_bytes_too() -> None:
    gate = threading.Event()
    producer = RecordingProducer(gate=gate)
    logger = _logger(producer, queue_max_bytes=50_000, image_sample_rate=1.0)
    image = png() + bytes(2000)  # a PNG signature and 2 kB
    for i in range(200):
        logger.log(f"r{i}", "digits", "v1", pred=1, image_bytes=image)
    assert logger.stats().queued_bytes <= 50_000
    assert logger.stats().dropped[("image", "queue_full")] > 0
    gate.set()
    logger.close()


def test_send_errors_are_counted_per_event() -> None:
    producer = RecordingProducer(fail=True)
    logger = _logger(producer, batch_max_events=10, image_sample_rate=1.0)
    for i in range(25):
        logger.log(f"r{i}", "digits", "v1", pred=1, image_bytes=png())
    logger.close()
    stats = logger.stats()
    assert stats.dropped[("prediction", "send_error")] == 25
    assert stats.dropped[("image", "send_error")] == 25
    assert stats.queued_events == 0


def test_close_drains_the_buffer_at_once_and_later_logs_count_as_closed() -> None:
    producer = RecordingProducer()
    logger = _logger(producer, linger_ms=60_000)
    for i in range(30):
        logger.log(f"r{i}", "digits", "v1", pred=1)
    t0 = time.monotonic()
    logger.close()
    assert time.monotonic() - t0 < 2
    assert len(decode_predictions(producer.on("predictions"))) == 30
    assert producer.flushed >= 1 and not producer.closed, "a borrowed producer stays open"
    assert not logger.log("late", "digits", "v1", pred=1)
    assert logger.stats().dropped == {("prediction", "closed"): 1}


def test_close_gives_up_after_its_timeout_and_counts_what_was_left() -> None:
    gate = threading.Event()
    producer = RecordingProducer(gate=gate)
    logger = _logger(producer, batch_max_events=5)
    for i in range(50):
        logger.log(f"r{i}", "digits", "v1", pred=1)
    logger.close(timeout_s=0.3)
    gate.set()
    time.sleep(0.2)
    stats = logger.stats()
    assert stats.logged["prediction"] == 50
    left = stats.dropped.get(("prediction", "shutdown"), 0)
    assert left > 0 and stats.sent.get("prediction", 0) + left + stats.queued_events == 50


# ----------------------------------------------------------------- packaging


def test_metric_names_are_registered_once_per_registry() -> None:
    registry = CollectorRegistry()
    first = PredictionLogger(RecordingProducer(), registry=registry, close_at_exit=False)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PredictionLogger(RecordingProducer(), registry=registry, close_at_exit=False)
    first.close()


def test_the_emitter_imports_without_torch() -> None:
    code = ("import sys; import collectors.emitter, collectors.kserve.bridge; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'collectors.daemon' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
