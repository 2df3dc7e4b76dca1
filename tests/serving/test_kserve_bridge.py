"""Recorded KServe payload-logger CloudEvents in over HTTP, exact counters out: on the
daemon (through the real broker) and on the bridge's own /metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.registry import CollectorRegistry

from collectors.emitter import EmitterSettings, PredictionLogger, sampled
from collectors.http_server import HttpServer
from collectors.kserve.bridge import BridgeCollector, BridgeSettings, KServeBridge
from collectors.kserve.http_app import BridgeApp
from monitor.config import KafkaConfig, TopicsConfig
from tests.conftest import (
    base_config,
    metric_sum,
    parse_metrics,
    scrape,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow  # left out of `make test-fast`

EVENTS = Path(__file__).parent / "kserve_events"
RATE = 0.5
MODEL_MAP = {"sklearn-iris": "digits", "torchserve-mnist": "digits", "mnist": "digits"}


def recorded(name: str) -> list[dict[str, Any]]:
    return list(json.loads((EVENTS / name).read_text())["messages"])


def post(url: str, message: dict[str, Any]) -> int:
    req = urllib.request.Request(url, data=message["body"].encode(), method="POST",
                                 headers=message["headers"])
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _kafka(bootstrap: str, names: dict[str, str]) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers=[bootstrap],
                       topics=TopicsConfig(predictions=names["predictions"],
                                           images=names["images"], feedback=names["feedback"]))


def test_recorded_kserve_events_give_exact_counters(broker, topics, start_daemon):
    names = topics(partitions=2)
    daemon = start_daemon(base_config(broker.bootstrap, names))
    registry = CollectorRegistry()
    logger = PredictionLogger(_kafka(broker.bootstrap, names),
                              EmitterSettings(image_sample_rate=RATE, linger_ms=10),
                              registry=registry, close_at_exit=False)
    bridge = KServeBridge(logger, BridgeSettings(model_map=MODEL_MAP, pair_ttl_s=0.5))
    registry.register(BridgeCollector(bridge.stats))
    server = HttpServer(BridgeApp(bridge, registry), "127.0.0.1", 0)
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        codes = {}
        for name in ("v1_sklearn_binary.json", "v1_torchserve_mnist_binary.json",
                     "v2_torchserve_mnist_binary.json", "v2_probs_structured.json",
                     "unpaired_and_malformed.json"):
            codes[name] = [post(url + "/", m) for m in recorded(name)]
        time.sleep(0.6)
        bridge.sweep()  # the lonely request and response expire
        bridge_metrics = parse_metrics(scrape(url))
    finally:
        server.stop()
        bridge.close()
        logger.close()

    assert all(c == 200 for name, cs in codes.items() if name != "unpaired_and_malformed.json"
               for c in cs)
    assert codes["unpaired_and_malformed.json"] == [200, 200, 400, 400, 400]
    b = bridge_metrics
    assert metric_sum(b, "visionmon_bridge_pairs_total") == 1 + 8 + 6 + 4
    assert metric_sum(b, "visionmon_bridge_cloudevents_received_total", type="request") == 20
    assert metric_sum(b, "visionmon_bridge_cloudevents_received_total", type="response") == 22
    for reason, n in {"invalid_json": 1, "not_cloudevent": 1, "unsupported_payload": 1,
                      "unsupported_type": 0, "duplicate": 0}.items():
        assert metric_sum(b, "visionmon_bridge_cloudevents_malformed_total", reason=reason) \
            == n, reason
    assert metric_sum(b, "visionmon_bridge_unpaired_total", half="request", reason="ttl") == 1
    assert metric_sum(b, "visionmon_bridge_unpaired_total", half="response", reason="ttl") == 1

    # what the daemon must count: 2 + 8 + 6 digits instances paired, 1 unpaired response
    # (logged without latency), 4 x 3 fashion instances
    expected = {("digits", "default", "ok"): 2 + 8 + 1, ("digits", "1.0", "ok"): 6,
                ("fashion", "7", "ok"): 12}
    image_ids = [m["headers"]["Ce-Id"] for name in ("v1_torchserve_mnist_binary.json",
                                                    "v2_torchserve_mnist_binary.json")
                 for m in recorded(name) if m["headers"]["Ce-Type"].endswith("request")]
    images = sum(sampled(i, RATE) for i in image_ids)
    assert 0 < images < len(image_ids)
    total = sum(expected.values())
    wait_for(lambda: metric_sum(parse_metrics(scrape(daemon.url)),
                                "visionmon_requests_total") >= total, 30, what="requests")
    wait_for(lambda: metric_sum(parse_metrics(scrape(daemon.url)),
                                "visionmon_events_accepted_total", topic=names["images"])
             >= images, 30, what="images")
    time.sleep(0.5)
    m = parse_metrics(scrape(daemon.url))
    for (model, version, status), n in expected.items():
        assert metric_sum(m, "visionmon_requests_total", model=model, version=version,
                          status=status) == n, (model, version)
    assert metric_sum(m, "visionmon_requests_total") == total
    assert metric_sum(m, "visionmon_predictions_total", model="digits", version="default",
                      **{"class": "one"}) == 2 + 1, "sklearn's two 1s and torchserve's 1"
    assert metric_sum(m, "visionmon_request_latency_seconds_count") == total - 1
    assert metric_sum(m, "visionmon_events_accepted_total", topic=names["images"]) == images
    assert metric_sum(m, "visionmon_records_rejected_total") == 0


def test_the_bridge_command_runs_and_stops_on_sigterm(broker, topics, tmp_path):
    names = topics(partitions=1, dead_letter=False)
    config = write_config(tmp_path, base_config(broker.bootstrap, names))
    port_file = tmp_path / "port"
    from visionmon.broker import free_port

    port = free_port()
    port_file.write_text(str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "visionmon", "bridge", "--config", str(config),
         "--port", str(port), "--model", "sklearn-iris=digits"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return urllib.request.urlopen(url + "/readyz", timeout=1).status == 200
            except OSError:
                return False

        wait_for(up, 30, what="bridge ready")
        assert [post(url, m) for m in recorded("v1_sklearn_binary.json")] == [200, 200]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "bridge stopped" in err and "pairs=1" in err and "predictions=2" in err

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(names["predictions"], bootstrap_servers=broker.bootstrap,
                             auto_offset_reset="earliest")
    lines: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(lines) < 2 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            lines.extend(ln for rec in records for ln in rec.value.split(b"\n"))
    consumer.close()
    assert sorted(json.loads(ln)["request_id"] for ln in lines) == [
        "0009174a-24a8-4603-b098-09c8799950e9/0", "0009174a-24a8-4603-b098-09c8799950e9/1"]


def test_the_bridge_command_refuses_a_model_the_config_does_not_know(broker, topics,
                                                                   tmp_path):
    names = topics(partitions=1, dead_letter=False)
    config = write_config(tmp_path, base_config(broker.bootstrap, names))
    from visionmon.cli import main

    assert main(["bridge", "--config", str(config), "--model", "iris=unknown"]) == 2
