"""End to end on the real broker: lifecycle events from the emitter are counted exactly,
bad ones are refused by reason and dead-lettered, a restart from the checkpoint counts
nothing twice, and a real Prometheus with the generated rules fires
VisionmonArtifactMismatch for the version whose replicas hold two artifacts, and only
for it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from alerts.checks import CHECK
from alerts.generate import write_rules
from collectors.emitter import EmitterSettings, PredictionLogger
from monitor.config import KafkaConfig, load_config
from tests.conftest import base_config, parse_metrics, scrape, wait_for, write_config
from tests.prom_server import PrometheusServer, skip_without_prometheus
from visionmon.broker import create_topics

pytestmark = [skip_without_prometheus, pytest.mark.slow]

A, B, C = "a" * 64, "b" * 64, "c" * 64
MISMATCH = CHECK["artifact_mismatch"].alert


def _lifecycle_events(logger: PredictionLogger, now: float) -> None:
    """v1: replicas h1 and h2 on artifact A, h3 on B (a mismatch); v2: h4 and h5 on C; a
    failed load; a rollout and a rollback."""
    for host, sha, seconds in (("h1", A, 2.0), ("h2", A, 3.0), ("h3", B, 40.0)):
        assert logger.model_loaded("digits", "v1", sha256=sha, load_seconds=seconds,
                                   host=host, ts=now)
    for host in ("h4", "h5"):
        assert logger.model_loaded("digits", "v2", sha256=C, load_seconds=0.5, host=host,
                                   ts=now)
    assert logger.model_load_failed("digits", "v2", "out_of_memory", host="h6", ts=now)
    assert logger.model_rolled_out("digits", "v2", from_version="v1", ts=now)
    assert logger.model_rolled_back("digits", "v1", from_version="v2", ts=now)


def _bad_records(bootstrap: str, topic: str, now: float) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send(topic, orjson.dumps({"kind": "exploded", "ts": now, "model": "digits",
                                       "version": "v1"}))                  # invalid_choice
    producer.send(topic, orjson.dumps({"kind": "loaded", "ts": now, "model": "digits",
                                       "version": "v1", "host": "h9", "sha256": "ABC",
                                       "load_seconds": 1}))                  # out_of_range
    producer.flush()
    producer.close()


class Predictions:
    """digits v1 and v2 predictions every 0.3 s until stopped, so both versions serve."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        self.topic = topic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._n = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            lines = [orjson.dumps({"request_id": f"p{self._n}-{v}", "ts": now,
                                   "model": "digits", "version": v, "pred": 1,
                                   "confidence": 0.9}) for v in ("v1", "v2")]
            self._n += 1
            self.producer.send(self.topic, b"\n".join(lines))
            self._stop.wait(0.3)

    def __enter__(self) -> Predictions:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.producer.flush(5)
        self.producer.close(5)


def _series(url: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in parse_metrics(scrape(url)).items() if n == name}


def _value(url: str, name: str, **labels: str) -> float | None:
    want = set(labels.items())
    found = [v for k, v in _series(url, name).items() if want <= set(k)]
    return sum(found) if found else None


def _expect_counts(url: str, topic: str) -> None:
    """What the events above must come to, exactly."""
    assert _value(url, "visionmon_records_consumed_total", topic=topic) == 3.0  # 1 batch + 2
    assert _value(url, "visionmon_events_accepted_total", topic=topic) == 8.0
    assert _value(url, "visionmon_records_rejected_total", topic=topic,
                  reason="invalid_choice") == 1.0
    assert _value(url, "visionmon_records_rejected_total", topic=topic,
                  reason="out_of_range") == 1.0
    info = {(dict(k)["version"], dict(k)["sha256"]) for k in
            _series(url, "visionmon_model_info")}
    assert info == {("v1", A), ("v1", B), ("v2", C)}
    assert _value(url, "visionmon_model_replicas", version="v1", sha256=A) == 2.0
    assert _value(url, "visionmon_model_replicas", version="v2", sha256=C) == 2.0
    assert _value(url, "visionmon_model_load_seconds_count", version="v1") == 3.0
    assert _value(url, "visionmon_model_load_seconds_sum", version="v1") == 45.0
    assert _value(url, "visionmon_model_load_failures_total", version="v2",
                  reason="out_of_memory") == 1.0
    assert _value(url, "visionmon_model_rollouts_total", version="v2", kind="rolled_out") == 1.0
    assert _value(url, "visionmon_model_rollouts_total", version="v1", kind="rolled_back") == 1.0


def test_lifecycle_events_are_counted_exactly_and_two_artifacts_raise_the_mismatch_alert(
        broker, topics, start_daemon, tmp_path: Path) -> None:
    names = topics(partitions=2)
    names["lifecycle"] = f"lc-{names['predictions']}"
    create_topics(broker.bootstrap, [names["lifecycle"]], 2)
    cfg = base_config(broker.bootstrap, names,
                      state={"checkpoint_dir": str(tmp_path / "state"),
                             "checkpoint_interval_seconds": 0.3},
                      slos={"version": 1, "thresholds": {
                          "artifact_mismatch": {"window": "1m", "for": "2s"}}})
    rules = write_rules(load_config(write_config(tmp_path, cfg)), tmp_path / "rules")
    daemon = start_daemon(cfg)
    now = time.time()
    logger = PredictionLogger(KafkaConfig(bootstrap_servers=[broker.bootstrap],
                                          topics=cfg["kafka"]["topics"]),
                              EmitterSettings(linger_ms=60_000), close_at_exit=False)
    _lifecycle_events(logger, now)
    logger.close()  # one NDJSON message of 9 events, 8 accepted
    _bad_records(broker.bootstrap, names["lifecycle"], now)
    lc = names["lifecycle"]
    wait_for(lambda: _value(daemon.url, "visionmon_records_consumed_total", topic=lc) == 3.0,
             30, what="the lifecycle records consumed")
    _expect_counts(daemon.url, lc)
    wait_for(lambda: _value(daemon.url, "visionmon_dead_letter_records_total",
                            outcome="sent") == 2.0, 15, what="two records dead-lettered")

    # a restart from the checkpoint: the same counts, nothing counted twice
    wait_for(lambda: (tmp_path / "state").exists() and any((tmp_path / "state").iterdir()),
             10, what="a checkpoint")
    time.sleep(1.0)  # a checkpoint, then a commit, after the last record
    daemon.stop()
    daemon = start_daemon(cfg)
    time.sleep(2.0)  # time to (not) read the records again
    _expect_counts(daemon.url, lc)

    host = daemon.url.removeprefix("http://")
    with Predictions(broker.bootstrap, names["predictions"]), \
            PrometheusServer(tmp_path / "prometheus", [host], rules) as prom:
        prom.wait_for_targets_up()

        def firing() -> list[dict[str, str]]:
            return [a["labels"] for a in prom.alerts()
                    if a["labels"].get("alertname") == MISMATCH and a["state"] == "firing"]

        wait_for(lambda: bool(firing()), 45, what=f"{MISMATCH} firing")
        time.sleep(3.0)  # v2 (one artifact, serving) had as long to fire, and must not
        alerts = firing()
        assert [(a["model"], a["version"]) for a in alerts] == [("digits", "v1")], alerts
        assert alerts[0]["severity"] == "ticket"
        assert prom.value(
            'count(count by (sha256) (visionmon_model_info{version="v1"}))') == 2.0
