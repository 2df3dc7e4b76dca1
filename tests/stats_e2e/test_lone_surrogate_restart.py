"""A record with a lone UTF-16 surrogate cannot switch off durability: it is refused and
dead-lettered, every checkpoint after it is written, and a restart counts exactly."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from tests.conftest import base_config, metric_sum, parse_metrics, scrape, wait_for

pytestmark = pytest.mark.slow  # left out of `make test-fast`

# escaped in JSON text, as a producer's `json.dumps("\ud800")` writes it
SURROGATE_PREDICTION = (b'{"request_id":"\\ud800","ts":%d,"model":"digits","version":"v1",'
                        b'"pred":1,"confidence":0.9}')
SURROGATE_LABEL = b'{"request_id":"r1","label":"\\udc00","ts":%d}'


def _predictions(start: int, n: int, t0: float) -> list[bytes]:
    return [orjson.dumps({"request_id": f"r{i}", "ts": t0 + i * 0.1, "model": "digits",
                          "version": "v1", "pred": i % 10, "confidence": 0.8})
            for i in range(start, start + n)]


def _send(bootstrap: str, topic: str, values: list[bytes]) -> None:
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for v in values:
        p.send(topic, v)
    p.flush()
    p.close()


def test_a_lone_surrogate_is_refused_and_a_restart_counts_exactly(broker, topics,
                                                                  start_daemon, tmp_path):
    names = topics(partitions=1, dead_letter=True)
    t0 = time.time() - 600
    bad = [SURROGATE_PREDICTION % int(t0), SURROGATE_LABEL % int(t0)]
    cfg = base_config(broker.bootstrap, names,
                      state={"checkpoint_dir": str(tmp_path / "ck"),
                             "checkpoint_interval_seconds": 0.3})
    _send(broker.bootstrap, names["predictions"], [*_predictions(0, 100, t0), bad[0]])
    _send(broker.bootstrap, names["feedback"], [bad[1]])
    a = start_daemon(cfg)

    def metrics(d: Any) -> dict:
        return parse_metrics(scrape(d.url))

    def checkpoints(d: Any, outcome: str) -> float:
        return metric_sum(metrics(d), "visionmon_checkpoint_writes_total", outcome=outcome)

    wait_for(lambda: metric_sum(metrics(a), "visionmon_records_rejected_total") >= 2, 60,
             what="both records refused")
    written = checkpoints(a, "ok")
    wait_for(lambda: checkpoints(a, "ok") >= written + 2, 30, what="checkpoints after them")
    m = metrics(a)
    assert metric_sum(m, "visionmon_records_rejected_total", reason="invalid_utf8") == 2
    assert metric_sum(m, "visionmon_requests_total") == 100
    assert checkpoints(a, "failed") == 0
    a.stop()

    _send(broker.bootstrap, names["predictions"], _predictions(100, 50, t0))
    b = start_daemon(cfg)
    wait_for(lambda: metric_sum(metrics(b), "visionmon_requests_total") >= 150, 60,
             what="the restarted daemon catches up")
    time.sleep(0.5)
    m = metrics(b)
    assert metric_sum(m, "visionmon_requests_total") == 150
    assert metric_sum(m, "visionmon_records_rejected_total", reason="invalid_utf8") == 2

    consumer = KafkaConsumer(names["dead_letter"], bootstrap_servers=broker.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000,
                             enable_auto_commit=False)
    dead = {msg.value: dict(msg.headers)["error"] for msg in consumer}
    consumer.close()
    assert dead == {raw: b"invalid_utf8" for raw in bad}
