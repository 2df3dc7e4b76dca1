"""Restarts: resume from committed offsets and the checkpoint; SIGTERM exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from tests.conftest import base_config, metric_sum, parse_metrics, scrape, wait_for, write_config
from visionmon.broker import free_port

pytestmark = pytest.mark.slow  # left out of `make test-fast`


def _produce(bootstrap: str, topic: str, start: int, n: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    now = time.time()
    for i in range(start, start + n):
        producer.send(topic, orjson.dumps({"request_id": f"r{i}", "ts": now, "model": "digits",
                                           "version": "v1", "pred": i % 10,
                                           "confidence": 0.9, "latency_ms": 12.0}))
    producer.flush()
    producer.close()


def _spawn(cfg_path: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "visionmon", "run", "--config", str(cfg_path)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _requests(url: str) -> float:
    try:
        return metric_sum(parse_metrics(scrape(url)), "visionmon_requests_total")
    except OSError:
        return -1.0


def test_restart_with_same_group_resumes_and_counts_nothing_twice(broker, topics, tmp_path,
                                                                 kafka_client):
    names = topics(partitions=3)
    port = free_port()
    cfg = base_config(broker.bootstrap, names, http={"port": port},
                      kafka={"client": kafka_client},
                      state={"checkpoint_dir": str(tmp_path / "state"),
                             "checkpoint_interval_seconds": 0.3})
    path = write_config(tmp_path, cfg)
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "daemon.log"
    _produce(broker.bootstrap, names["predictions"], 0, 3000)
    proc = _spawn(path, log)
    try:
        wait_for(lambda: _requests(url) >= 1000, 60, what="first events counted")
        # kill at an arbitrary point between (or during) batches: SIGKILL, no clean-up
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        _produce(broker.bootstrap, names["predictions"], 3000, 2000)
        proc = _spawn(path, log)
        try:
            wait_for(lambda: _requests(url) >= 5000, 90, what="all 5,000 events counted")
        except AssertionError as err:
            raise AssertionError(f"counted {_requests(url)}; log:\n{log.read_text()[-3000:]}"
                                 ) from err
        time.sleep(1.5)  # anything counted twice would show up now
        assert _requests(url) == 5000
        m = parse_metrics(scrape(url))
        assert metric_sum(m, "visionmon_predictions_total") == 5000
    finally:
        proc.terminate()
        proc.wait(15)


def test_sigterm_exits_zero_within_ten_seconds_after_final_commit(broker, topics, tmp_path,
                                                                 kafka_client):
    names = topics(partitions=3)
    port = free_port()
    cfg = base_config(broker.bootstrap, names, http={"port": port},
                      kafka={"commit_interval_seconds": 3600,  # only the final commit
                             "client": kafka_client})
    path = write_config(tmp_path, cfg)
    url = f"http://127.0.0.1:{port}"
    _produce(broker.bootstrap, names["predictions"], 0, 500)
    log = tmp_path / "daemon.log"
    proc = _spawn(path, log)
    wait_for(lambda: _requests(url) >= 500, 60, what="events counted")
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    rc = proc.wait(15)
    elapsed = time.monotonic() - t0
    assert rc == 0, log.read_text()[-2000:]
    assert elapsed < 10
    # the final commit happened: a new member of the group starts at the end
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=cfg["kafka"]["group_id"],
                      enable_auto_commit=False)
    committed = sum(c.committed(TopicPartition(names["predictions"], p)) or 0 for p in range(3))
    c.close()
    assert committed == 500


def test_the_first_snapshot_after_a_restart_shows_the_checkpoints_counts(
        broker, topics, tmp_path, start_daemon):
    """The snapshot rendered as the daemon starts (for the first scrape) is rendered from the
    restored checkpoint, not from empty statistics: counters never fall back to 0 on a
    restart, and the consumer loop need not have started for that."""
    from monitor.config import load_config
    from visionmon.app import App

    names = topics(partitions=1)
    cfg = base_config(broker.bootstrap, names,
                      state={"checkpoint_dir": str(tmp_path / "state"),
                             "checkpoint_interval_seconds": 0.3})
    _produce(broker.bootstrap, names["predictions"], 0, 300)
    first = start_daemon(cfg)
    wait_for(lambda: _requests(first.url) == 300, 60, what="300 events counted")
    first.stop()  # final checkpoint
    app = App(load_config(write_config(tmp_path, cfg)))
    try:
        app._start()  # restore, warm and serve; the consumer loop is not started
        snap = app.snapshots.snapshot()
        assert sum(snap["visionmon_requests_total"].values()) == 300
    finally:
        app.close()
