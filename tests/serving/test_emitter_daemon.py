"""The emitter through the real broker into a running daemon: the daemon counts exactly
what was logged minus what the logger counted as dropped, with either Kafka backend."""

from __future__ import annotations

import random
import time
from collections import Counter

import numpy as np
import pytest

from collectors.emitter import EmitterSettings, PredictionLogger, sampled
from monitor.config import KafkaConfig, TopicsConfig
from tests.conftest import CLASSES, base_config, metric_sum, parse_metrics, scrape, wait_for
from tests.serving.fakes import png

pytestmark = pytest.mark.slow  # left out of `make test-fast`

N = 3000
RATE = 0.25


def test_daemon_counts_what_was_logged_minus_what_was_dropped(broker, topics, start_daemon,
                                                              kafka_client):
    names = topics(partitions=3)
    daemon = start_daemon(base_config(broker.bootstrap, names))
    kafka = KafkaConfig(bootstrap_servers=[broker.bootstrap], client=kafka_client,
                        topics=TopicsConfig(predictions=names["predictions"],
                                            images=names["images"],
                                            feedback=names["feedback"]))
    # a small buffer and a burst: some events are dropped, and must be the only ones missing
    logger = PredictionLogger(kafka, EmitterSettings(queue_max_events=800, linger_ms=20,
                                                     image_sample_rate=RATE),
                              close_at_exit=False)
    rng = random.Random(3)
    image = png(77)
    logged: Counter[tuple[str, str]] = Counter()
    for i in range(N):
        rid = f"{kafka_client}-{i}"
        status = "error" if i % 40 == 0 else "ok"
        probs = None
        if status == "ok" and i % 2:
            probs = np.full(10, 0.05)
            probs[rng.randrange(10)] = 0.55
        accepted = logger.log(rid, "digits", f"v{i % 2}", probs=probs,
                              pred=None if probs is not None or status == "error"
                              else CLASSES[i % 10],
                              latency_ms=rng.uniform(1, 50), status=status,
                              image_bytes=image if i % 3 == 0 else None)
        if accepted:
            logged[(f"v{i % 2}", status)] += 1
    logger.close()
    stats = logger.stats()
    dropped_predictions = stats.dropped_total("prediction")
    assert stats.logged["prediction"] == N - dropped_predictions == sum(logged.values())
    images_offered = sum(1 for i in range(0, N, 3) if sampled(f"{kafka_client}-{i}", RATE))
    assert stats.logged["image"] + stats.dropped_total("image") == images_offered
    expected_images = stats.sent["image"]

    def counted() -> float:
        return metric_sum(parse_metrics(scrape(daemon.url)), "visionmon_requests_total")

    wait_for(lambda: counted() >= N - dropped_predictions, 60, what="requests counted")
    time.sleep(0.5)
    m = parse_metrics(scrape(daemon.url))
    assert metric_sum(m, "visionmon_requests_total") == N - dropped_predictions
    for (version, status), n in logged.items():
        assert metric_sum(m, "visionmon_requests_total", model="digits", version=version,
                          status=status) == n
    assert metric_sum(m, "visionmon_events_accepted_total",
                      topic=names["predictions"]) == N - dropped_predictions
    wait_for(lambda: metric_sum(parse_metrics(scrape(daemon.url)),
                                "visionmon_events_accepted_total",
                                topic=names["images"]) >= expected_images, 30,
             what="images counted")
    m = parse_metrics(scrape(daemon.url))
    assert metric_sum(m, "visionmon_events_accepted_total", topic=names["images"]) \
        == expected_images
    assert metric_sum(m, "visionmon_records_rejected_total") == 0
