"""Labels as producers send them, through the real broker into a running daemon: a JSON
array of labels and NDJSON messages are accepted element by element (a bad element
refused alone and dead-lettered with its own bytes), and a second label for one request
is counted in visionmon_labels_duplicate_total and handled by `labels.duplicates`, with
exact counts under both policies; the emitter's labels join their predictions."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from collectors.emitter import EmitterSettings, PredictionLogger
from monitor.config import KafkaConfig, TopicsConfig
from tests.conftest import CLASSES, base_config, metric_sum, parse_metrics, scrape, wait_for

pytestmark = pytest.mark.slow  # left out of `make test-fast`

Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]
#: the line of the NDJSON message that lacks its label
BAD_LINE = b'{"request_id": "p5", "ts": 1}'


def _label(rid: str, label: int | str, ts: float) -> dict[str, Any]:
    return {"request_id": rid, "label": label, "ts": ts, "source": "review"}


def _prediction(rid: str, ts: float) -> bytes:
    """A prediction of `seven`."""
    return orjson.dumps({"request_id": rid, "ts": ts, "model": "digits", "version": "v1",
                         "pred": "seven", "confidence": 0.9, "latency_ms": 5.0})


class _Daemon:
    """Scrapes one daemon and waits for its counters."""

    def __init__(self, url: str, names: dict[str, str]) -> None:
        self.url = url
        self.names = names

    def metrics(self) -> Metrics:
        return parse_metrics(scrape(self.url))

    def accepted(self, topic: str) -> float:
        return metric_sum(self.metrics(), "visionmon_events_accepted_total",
                          topic=self.names[topic])

    def wait_accepted(self, topic: str, n: int) -> None:
        wait_for(lambda: self.accepted(topic) >= n, 60, what=f"{n} {topic} accepted")
        assert self.accepted(topic) == n


def _labels(m: Metrics) -> dict[tuple[str, str], float]:
    """{(true class, outcome): joined labels} with a non-zero count."""
    out: dict[tuple[str, str], float] = {}
    for (name, labels), v in m.items():
        ls = dict(labels)
        if name == "visionmon_labels_total" and v:
            out[(ls["class"], ls["outcome"])] = v
    return out


@pytest.mark.parametrize(("policy", "joined"), [
    ("first", {("seven", "correct"): 6, ("one", "incorrect"): 2, ("two", "incorrect"): 1}),
    ("last", {("seven", "correct"): 7, ("one", "incorrect"): 1, ("two", "incorrect"): 1}),
])
def test_batched_and_duplicate_labels_are_counted_exactly(broker, topics, start_daemon,
                                                          policy, joined):
    names = topics(partitions=1)  # one partition: each topic is read in the order sent
    daemon = _Daemon(start_daemon(base_config(
        broker.bootstrap, names, labels={"duplicates": policy})).url, names)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    now = time.time()

    def send(topic: str, value: bytes) -> None:
        producer.send(names[topic], value)
        producer.flush()

    # predictions p0..p9 (all `seven`), counted before any label is sent
    for i in range(10):
        send("predictions", _prediction(f"p{i}", now - 100))
    daemon.wait_accepted("predictions", 10)

    # a JSON array of four labels; NDJSON with a bad line between two good ones; NDJSON
    # holding two labels for p7 (the second a duplicate)
    send("feedback", orjson.dumps([_label("p0", "seven", now), _label("p1", "seven", now),
                                   _label("p2", "one", now), _label("p3", 7, now)]))
    send("feedback", b"\n".join([orjson.dumps(_label("p4", "seven", now)), BAD_LINE,
                                 orjson.dumps(_label("p6", "two", now))]))
    send("feedback", b"\n".join(orjson.dumps(_label("p7", c, now)) for c in ("seven", "one")))
    daemon.wait_accepted("feedback", 8)
    # labels for requests already joined (p0 alone, p2 in an array with p8's first label)
    send("feedback", orjson.dumps(_label("p0", "two", now)))
    send("feedback", orjson.dumps([_label("p2", "seven", now), _label("p8", "seven", now)]))
    daemon.wait_accepted("feedback", 11)
    # two labels for p10 before its prediction: the policy picks one
    send("feedback", orjson.dumps(_label("p10", "one", now)))
    send("feedback", orjson.dumps(_label("p10", "seven", now)))
    daemon.wait_accepted("feedback", 13)
    m = daemon.metrics()
    assert metric_sum(m, "visionmon_pending_joins", store="labels_early") == 1
    assert metric_sum(m, "visionmon_labels_duplicate_total") == 3, "p10's when it joins"
    send("predictions", _prediction("p10", now - 50))
    wait_for(lambda: metric_sum(daemon.metrics(), "visionmon_labels_total") >= 9, 60,
             what="p10 joined")

    m = daemon.metrics()
    assert _labels(m) == joined
    assert metric_sum(m, "visionmon_labels_duplicate_total", model="digits",
                      policy=policy) == 4  # p7, p0, p2, p10
    assert metric_sum(m, "visionmon_records_rejected_total", topic=names["feedback"],
                      reason="missing_field") == 1
    assert metric_sum(m, "visionmon_records_rejected_total") == 1
    # nothing parked until the TTL; p5 (its label refused) and p9 still wait for theirs
    assert metric_sum(m, "visionmon_pending_joins", store="labels_early") == 0
    assert metric_sum(m, "visionmon_pending_joins", store="labels_predictions") == 2
    assert _dead_letters(broker.bootstrap, names["dead_letter"], 1) == [
        (BAD_LINE, "missing_field", names["feedback"], "1")]
    producer.close()


def _dead_letters(bootstrap: str, topic: str, n: int) -> list[tuple[bytes, str, str, str]]:
    """(value, error, source-topic, batch-index) of the first `n` dead letters."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=2000, enable_auto_commit=False)
    out: list[tuple[bytes, str, str, str]] = []
    deadline = time.monotonic() + 30
    while len(out) < n and time.monotonic() < deadline:
        for msg in consumer:
            h = {k: v.decode() for k, v in msg.headers}
            out.append((msg.value, h["error"], h["source-topic"], h.get("batch-index", "")))
    consumer.close()
    return out


def test_the_emitters_labels_join_their_predictions(broker, topics, start_daemon):
    names = topics(partitions=3)
    daemon = _Daemon(start_daemon(base_config(broker.bootstrap, names)).url, names)
    kafka = KafkaConfig(bootstrap_servers=[broker.bootstrap],
                        topics=TopicsConfig(predictions=names["predictions"],
                                            images=names["images"],
                                            feedback=names["feedback"]))
    n = 500
    with PredictionLogger(kafka, EmitterSettings(batch_max_events=50),
                          close_at_exit=False) as logger:
        for i in range(n):
            assert logger.log(f"e{i}", "digits", "v1", pred=i % 10, confidence=0.8)
        assert logger.flush()
    daemon.wait_accepted("predictions", n)
    # no linger: messages close at 50 labels, and at close
    with PredictionLogger(kafka, EmitterSettings(batch_max_events=50, linger_ms=60_000),
                          close_at_exit=False) as logger:
        for i in range(n):  # every fourth label wrong; every tenth sent twice, the same
            # class by index (the two may travel on different partitions, in any order)
            k = (i + (i % 4 == 0)) % 10
            assert logger.label(f"e{i}", CLASSES[k], source="review")
            if i % 10 == 0:
                assert logger.label(f"e{i}", k, model="digits")
    stats = logger.stats()
    assert stats.sent["label"] == n + n // 10 and stats.messages["label"] == 11
    daemon.wait_accepted("feedback", n + n // 10)
    m = daemon.metrics()
    assert metric_sum(m, "visionmon_labels_total") == n
    assert metric_sum(m, "visionmon_labels_total", outcome="incorrect") == n // 4
    assert metric_sum(m, "visionmon_labels_duplicate_total", policy="first") == n // 10
    assert metric_sum(m, "visionmon_records_rejected_total") == 0
