"""The exposition: promtool's linter is silent, health and readiness endpoints answer."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request

import orjson
import pytest
from kafka import KafkaProducer

from tests.conftest import base_config, metric_sum, parse_metrics, scrape, wait_for

PROMTOOL = shutil.which("promtool")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_scrape_is_lint_clean_and_endpoints_answer(broker, topics, start_daemon):
    if PROMTOOL is None:
        pytest.fail("promtool is required (Debian package 'prometheus'); .ci/run installs it")
    names = topics()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    now = time.time()
    for i in range(200):
        producer.send(names["predictions"], orjson.dumps(
            {"request_id": f"r{i}", "ts": now, "model": "digits", "version": "v1",
             "probs": [0.91] + [0.01] * 9, "latency_ms": 20}))
    producer.send(names["predictions"], b"garbage")
    producer.flush()
    daemon = start_daemon(base_config(broker.bootstrap, names))
    wait_for(lambda: metric_sum(parse_metrics(scrape(daemon.url)),
                                "visionmon_requests_total") >= 200, 60)
    text = scrape(daemon.url)
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout.strip() == "" and lint.stderr.strip() == ""
    m = parse_metrics(text)
    assert metric_sum(m, "visionmon_kafka_connected") == 1
    assert metric_sum(m, "visionmon_build_info") == 1
    assert _status(f"{daemon.url}/healthz") == 200
    assert _status(f"{daemon.url}/readyz") == 200
    assert _status(f"{daemon.url}/nope") == 404


def test_readyz_is_503_before_partitions_are_assigned(broker, topics, start_daemon):
    names = topics()
    cfg = base_config(broker.bootstrap, names)
    daemon = start_daemon(cfg, ready=False)
    first = _status(f"{daemon.url}/readyz")
    wait_for(lambda: _status(f"{daemon.url}/readyz") == 200, 60, what="ready")
    assert first == 503
