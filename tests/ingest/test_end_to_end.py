"""Ingestion through the real broker: exact counters, rejections, dead letters."""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from tests.conftest import CLASSES, base_config, metric_sum, parse_metrics, scrape, wait_for

pytestmark = pytest.mark.slow  # left out of `make test-fast`

FASHION = [f"c{i}" for i in range(10)]


def _event(i: int, model: str, rng: random.Random, now: float) -> dict[str, Any]:
    classes = CLASSES if model == "digits" else FASHION
    version = f"v{i % 2 + 1}"
    if i % 50 == 0:
        return {"request_id": f"{model}-{i}", "ts": now, "model": model, "version": version,
                "status": "error", "latency_ms": 1500.0}
    k = rng.randrange(10)
    conf = round(rng.uniform(0.2, 0.99), 3)
    ev: dict[str, Any] = {"request_id": f"{model}-{i}", "ts": now - rng.random() * 10,
                          "model": model, "version": version,
                          "pred": classes[k] if i % 3 else k,
                          "confidence": conf, "latency_ms": round(rng.uniform(1, 400), 2)}
    return ev


def _expected(events: list[dict[str, Any]]) -> dict[str, Counter[tuple[str, ...]]]:
    pred: Counter[tuple[str, ...]] = Counter()
    req: Counter[tuple[str, ...]] = Counter()
    for e in events:
        status = e.get("status", "ok")
        req[(e["model"], e["version"], status)] += 1
        if status == "ok":
            classes = CLASSES if e["model"] == "digits" else FASHION
            name = e["pred"] if isinstance(e["pred"], str) else classes[e["pred"]]
            pred[(e["model"], e["version"], name)] += 1
    return {"pred": pred, "req": req}


def test_ten_thousand_predictions_give_exact_counters(broker, topics, start_daemon,
                                                      kafka_client):
    names = topics(partitions=3)
    rng = random.Random(1)
    now = time.time()
    events = [_event(i, "digits" if i % 2 else "fashion", rng, now) for i in range(10_000)]
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    # first half single-event messages, second half in JSON-array and NDJSON batches
    for e in events[:5000]:
        producer.send(names["predictions"], orjson.dumps(e))
    rest = events[5000:]
    for j in range(0, len(rest), 100):
        chunk = rest[j:j + 100]
        value = orjson.dumps(chunk) if (j // 100) % 2 else b"\n".join(map(orjson.dumps, chunk))
        producer.send(names["predictions"], value)
    producer.flush()

    daemon = start_daemon(base_config(broker.bootstrap, names, kafka={"client": kafka_client}))

    def counted() -> float:
        return metric_sum(parse_metrics(scrape(daemon.url)), "visionmon_requests_total")

    wait_for(lambda: counted() >= 10_000, 90, what="10,000 requests counted")
    time.sleep(0.5)
    m = parse_metrics(scrape(daemon.url))
    exp = _expected(events)
    for (model, version, status), n in exp["req"].items():
        got = metric_sum(m, "visionmon_requests_total", model=model, version=version,
                         status=status)
        assert got == n, (model, version, status)
    for (model, version, cls), n in exp["pred"].items():
        got = metric_sum(m, "visionmon_predictions_total", model=model, version=version,
                         **{"class": cls})
        assert got == n, (model, version, cls)
    assert metric_sum(m, "visionmon_predictions_total") == sum(exp["pred"].values())
    assert metric_sum(m, "visionmon_records_consumed_total", topic=names["predictions"]) == \
        5000 + 50
    assert metric_sum(m, "visionmon_records_rejected_total") == 0
    lat_count = metric_sum(m, "visionmon_request_latency_seconds_count")
    assert lat_count == 10_000
    lat_sum = metric_sum(m, "visionmon_request_latency_seconds_sum")
    assert math.isclose(lat_sum, sum(e["latency_ms"] for e in events) / 1000, rel_tol=1e-9)
    conf_count = metric_sum(m, "visionmon_prediction_confidence_count")
    assert conf_count == sum(exp["pred"].values())


BAD_KINDS = [
    ("not json", b"{not json", "invalid_json"),
    ("missing request_id", {"ts": 1.0, "model": "digits", "version": "v1", "pred": 1},
     "missing_field"),
    ("missing ts", {"request_id": "x", "model": "digits", "version": "v1", "pred": 1},
     "missing_field"),
    ("NaN confidence", b'{"request_id":"x","ts":1,"model":"digits","version":"v1","pred":1,'
     b'"confidence":NaN}', "out_of_range"),
    ("confidence above 1", {"request_id": "x", "ts": 1.0, "model": "digits", "version": "v1",
                            "pred": 1, "confidence": 1.5}, "out_of_range"),
    ("probs of the wrong length", {"request_id": "x", "ts": 1.0, "model": "digits",
                                   "version": "v1", "probs": [0.5, 0.5]}, "probs_length"),
    ("probs not summing to 1", {"request_id": "x", "ts": 1.0, "model": "digits",
                                "version": "v1", "probs": [0.2] * 10}, "probs_sum"),
    ("unknown class", {"request_id": "x", "ts": 1.0, "model": "digits", "version": "v1",
                       "pred": "eleven"}, "unknown_class"),
    ("over the size limit", {"request_id": "x" * 10, "ts": 1.0, "model": "digits",
                             "version": "v1", "pred": 1, "pad": "y" * 5000}, "too_large"),
    ("latency as a string", {"request_id": "x", "ts": 1.0, "model": "digits", "version": "v1",
                             "pred": 1, "latency_ms": "fast"}, "wrong_type"),
    ("model as a number", {"request_id": "x", "ts": 1.0, "model": 7, "version": "v1",
                           "pred": 1}, "wrong_type"),
    ("pred as a list", {"request_id": "x", "ts": 1.0, "model": "digits", "version": "v1",
                        "pred": [1]}, "wrong_type"),
    ("status unknown", {"request_id": "x", "ts": 1.0, "model": "digits", "version": "v1",
                        "pred": 1, "status": "maybe"}, "invalid_status"),
    ("unknown model", {"request_id": "x", "ts": 1.0, "model": "cats", "version": "v1",
                       "pred": 1}, "unknown_model"),
    ("not an object", b"[1, 2]", "not_object"),
]


def test_bad_messages_are_counted_by_reason_and_dead_lettered(broker, topics, start_daemon,
                                                              kafka_client):
    names = topics(partitions=3)
    rng = random.Random(2)
    now = time.time()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    sent_bad: Counter[str] = Counter()
    bad_bytes: Counter[bytes] = Counter()
    good = 0
    for i in range(2000):
        if i % 2:
            e = _event(i, "digits", rng, now)
            producer.send(names["predictions"], orjson.dumps(e))
            good += 1
        else:
            _, payload, reason = BAD_KINDS[(i // 2) % len(BAD_KINDS)]
            raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
            if reason == "not_object":
                sent_bad[reason] += 2  # each array element is refused on its own
            else:
                sent_bad[reason] += 1
                bad_bytes[raw] += 1
            producer.send(names["predictions"], raw)
    producer.flush()
    cfg = base_config(broker.bootstrap, names, limits={"max_message_bytes": 4096},
                      kafka={"client": kafka_client})
    daemon = start_daemon(cfg)
    total_bad = sum(sent_bad.values())

    def rejected() -> float:
        return metric_sum(parse_metrics(scrape(daemon.url)), "visionmon_records_rejected_total")

    wait_for(lambda: rejected() >= total_bad, 90, what="all rejections counted")
    time.sleep(0.5)
    m = parse_metrics(scrape(daemon.url))
    for reason, n in sent_bad.items():
        got = metric_sum(m, "visionmon_records_rejected_total", topic=names["predictions"],
                         reason=reason)
        assert got == n, reason
    assert metric_sum(m, "visionmon_requests_total") == good

    consumer = KafkaConsumer(names["dead_letter"], bootstrap_servers=broker.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000,
                             enable_auto_commit=False)
    dlq: Counter[bytes] = Counter()
    reasons: Counter[str] = Counter()
    deadline = time.monotonic() + 30
    while sum(reasons.values()) < total_bad and time.monotonic() < deadline:
        for msg in consumer:
            headers = dict(msg.headers)
            reasons[headers["error"].decode()] += 1
            assert headers["source-topic"].decode() == names["predictions"]
            assert int(headers["source-offset"]) >= 0
            dlq[msg.value] += 1
    consumer.close()
    assert reasons == sent_bad
    for raw, n in bad_bytes.items():
        assert dlq[raw] == n
