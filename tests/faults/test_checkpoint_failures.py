"""A checkpoint write that keeps failing is visible: counted by reason on /metrics, logged
once per minute at most, and /readyz answers 503 once writes have failed for three
checkpoint intervals. Against the real broker, with the daemon in-process."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collectors.checkpoint import FILENAME
from monitor.engine import EngineExtension
from tests.conftest import base_config, metric_sum, parse_metrics, scrape, wait_for
from tests.faults.harness import http_get, produce_stream
from visionmon.broker import EmbeddedBroker

pytestmark = pytest.mark.slow  # left out of `make test-fast`

INTERVAL_S = 0.2


class _Unencodable(EngineExtension):
    """An extension whose state the checkpoint cannot serialise (a set)."""

    name = "unencodable"

    def state(self) -> Any:
        return {1, 2}


def _failures(url: str, reason: str) -> float:
    return metric_sum(parse_metrics(scrape(url)), "visionmon_checkpoint_failures_total",
                      reason=reason)


def _start(broker: EmbeddedBroker, topics: Callable[..., dict[str, str]],
           start_daemon: Callable[..., Any], state_dir: Path) -> Any:
    names = topics(partitions=1, dead_letter=False)
    return start_daemon(base_config(broker.bootstrap, names, state={
        "checkpoint_dir": str(state_dir), "checkpoint_interval_seconds": INTERVAL_S}))


def _committed(broker: EmbeddedBroker, group: str, topic: str) -> int | None:
    """The group's committed offset of partition 0 of `topic`, asked without joining it."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                      enable_auto_commit=False)
    try:
        return c.committed(TopicPartition(topic, 0))
    finally:
        c.close()


def _failure_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("checkpoint write failed")]


def test_an_unencodable_state_is_counted_logged_once_and_fails_readiness(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]],
        start_daemon: Callable[..., Any], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="collectors.daemon")
    d = _start(broker, topics, start_daemon, tmp_path / "state")
    assert _failures(d.url, "encode") == 0  # exported before any failure, so rate() works
    assert http_get(f"{d.url}/readyz")[0] == 200
    bad = _Unencodable()
    with d.daemon.lock:
        d.daemon.engine.extensions.append(bad)
    wait_for(lambda: _failures(d.url, "encode") >= 5, 20, what="failed writes counted")
    wait_for(lambda: http_get(f"{d.url}/readyz")[0] == 503, 10, what="/readyz 503")
    status, body = http_get(f"{d.url}/readyz")
    assert status == 503 and "checkpoint writes have failed" in body and "encode" in body
    logs = _failure_logs(caplog)
    assert len(logs) == 1, logs  # several failures within a minute, one line
    assert "not JSON serializable: set" in logs[0]

    with d.daemon.lock:  # the cause goes away: writes succeed and readiness returns
        d.daemon.engine.extensions.remove(bad)
    wait_for(lambda: http_get(f"{d.url}/readyz")[0] == 200, 10, what="/readyz 200 again")
    assert _failures(d.url, "encode") >= 5  # a counter: it never goes back
    assert _failures(d.url, "io") == 0


def test_a_checkpoint_file_that_cannot_be_replaced_is_an_io_failure(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]],
        start_daemon: Callable[..., Any], tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    d = _start(broker, topics, start_daemon, state_dir)
    path = state_dir / FILENAME
    wait_for(lambda: path.exists(), 10, what="a first checkpoint")

    def block() -> bool:
        # a non-empty directory where the file goes: the rename fails (also as root, where
        # a read-only directory would not)
        try:
            path.unlink(missing_ok=True)
            path.mkdir()
        except (FileExistsError, FileNotFoundError):
            return False  # the daemon wrote in between: try again
        (path / "keep").write_bytes(b"x")
        return True

    wait_for(block, 10, every=0.01, what="the checkpoint file replaced by a directory")
    wait_for(lambda: _failures(d.url, "io") >= 3, 20, what="io failures counted")
    wait_for(lambda: http_get(f"{d.url}/readyz")[0] == 503, 10, what="/readyz 503")
    assert not [p for p in state_dir.iterdir() if ".tmp-" in p.name]  # no garbage left
    assert os.path.isdir(path)


def test_offsets_are_not_committed_past_the_last_good_checkpoint(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]],
        start_daemon: Callable[..., Any], tmp_path: Path) -> None:
    """While writes fail, a restart must re-read what the lost state held: the group's
    committed offset stays where the last good checkpoint was, and a restart after the
    failures (the cause gone) counts every record exactly once."""
    state_dir = tmp_path / "state"
    names = topics(partitions=1, dead_letter=False)
    cfg = base_config(broker.bootstrap, names, state={
        "checkpoint_dir": str(state_dir), "checkpoint_interval_seconds": INTERVAL_S})
    d = start_daemon(cfg)
    produce_stream(broker.bootstrap, names, 0, 100, partitions=1)
    accepted = lambda: metric_sum(parse_metrics(scrape(d.url)),  # noqa: E731
                                  "visionmon_events_accepted_total", topic=names["predictions"])
    wait_for(lambda: accepted() == 100, 20, what="the first 100 counted")
    group = cfg["kafka"]["group_id"]
    wait_for(lambda: _committed(broker, group, names["predictions"]) == 100, 20,
             what="the first 100 committed")
    bad = _Unencodable()
    with d.daemon.lock:
        d.daemon.engine.extensions.append(bad)
    produce_stream(broker.bootstrap, names, 100, 50, partitions=1)
    wait_for(lambda: accepted() == 150 and _failures(d.url, "encode") >= 3, 20,
             what="50 more counted while checkpoints fail")
    assert _committed(broker, group, names["predictions"]) == 100
    d.stop()  # the shutdown's checkpoint fails too: nothing more is committed
    assert _committed(broker, group, names["predictions"]) == 100

    again = start_daemon(cfg)  # restored from the last good checkpoint: 100 counted
    counted = lambda: metric_sum(parse_metrics(scrape(again.url)),  # noqa: E731
                                 "visionmon_events_accepted_total", topic=names["predictions"])
    wait_for(lambda: counted() == 150, 20, what="the 50 re-read after the restart")
    assert counted() == 150
