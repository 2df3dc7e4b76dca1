"""Broker faults: the broker dies (memory-only, so it comes back empty) or the network to a
durable broker is cut. The daemon keeps serving /metrics, reports the outage within
seconds, reconnects and resumes counting, exactly."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import base_config
from tests.faults.harness import (
    TcpProxy,
    http_get,
    parse_metrics,
    produce_stream,
    total,
    wait_for,
)
from visionmon.broker import EmbeddedBroker, create_topics, free_port

pytestmark = pytest.mark.slow  # left out of `make test-fast`

PARTITIONS = 3
NAMES = {"predictions": "bf-pred", "images": "bf-img", "feedback": "bf-fb"}


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[Callable[..., EmbeddedBroker]]:
    """Brokers of the test's own (never the session broker), stopped afterwards."""
    started: list[EmbeddedBroker] = []

    def make(**kwargs: Any) -> EmbeddedBroker:
        b = EmbeddedBroker(log_path=tmp_path / "broker.log", **kwargs).start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


def _metrics(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return parse_metrics(http_get(f"{url}/metrics", timeout_s=2.0)[1])


def _requests(url: str) -> float:
    return total(_metrics(url), "visionmon_requests_total")


def _connected(url: str) -> float:
    return total(_metrics(url), "visionmon_kafka_connected")


def _assert_outage_seen(url: str, hold_s: float) -> None:
    """Within 5 s the gauge drops and readiness fails; meanwhile, and for `hold_s` after,
    every scrape answers promptly and the loop stays healthy."""
    took = wait_for(lambda: _connected(url) == 0, 5.0, what="visionmon_kafka_connected 0")
    assert took < 5.0
    assert http_get(f"{url}/readyz", timeout_s=2.0)[0] == 503
    deadline = time.monotonic() + hold_s
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        m = _metrics(url)  # raises if /metrics stops answering
        assert time.monotonic() - t0 < 2.0
        assert total(m, "visionmon_kafka_connected") == 0
        assert total(m, "visionmon_up") == 1
        assert http_get(f"{url}/healthz", timeout_s=2.0)[0] == 200
        time.sleep(0.5)


def test_memory_only_broker_killed_and_restarted_resumes_counting(
        private_broker: Callable[..., EmbeddedBroker], start_daemon: Callable[..., Any],
        kafka_client: str) -> None:
    broker = private_broker()
    create_topics(broker.bootstrap, list(NAMES.values()), PARTITIONS)
    d = start_daemon(base_config(broker.bootstrap, NAMES, kafka={"client": kafka_client}))
    produce_stream(broker.bootstrap, NAMES, 0, 3000, PARTITIONS)
    wait_for(lambda: _requests(d.url) >= 3000, 30, what="first 3,000 events")

    broker.kill()
    _assert_outage_seen(d.url, hold_s=3.0)
    assert _requests(d.url) == 3000  # statistics survive the outage

    # Tansu keeps nothing: same port, topics created again, offsets start at 0 again,
    # below the positions the daemon had reached (1,000 per partition) ...
    broker.restart()
    create_topics(broker.bootstrap, list(NAMES.values()), PARTITIONS)
    produce_stream(broker.bootstrap, NAMES, 3000, 1500, PARTITIONS)
    wait_for(lambda: _requests(d.url) >= 4500, 60, what="events after the restart counted")
    wait_for(lambda: http_get(f"{d.url}/readyz")[0] == 200, 30, what="ready again")
    assert _connected(d.url) == 1
    # ... and then past them: counting goes on from the new offsets
    produce_stream(broker.bootstrap, NAMES, 4500, 3000, PARTITIONS)
    wait_for(lambda: _requests(d.url) >= 7500, 60, what="later events counted")
    time.sleep(1.0)
    assert _requests(d.url) == 7500


def test_durable_broker_outage_resumes_from_committed_offsets(
        private_broker: Callable[..., EmbeddedBroker], start_daemon: Callable[..., Any],
        kafka_client: str) -> None:
    # the broker advertises the proxy's address, so every client connection crosses it
    proxy_port = free_port()
    broker = private_broker(advertised_port=proxy_port)
    proxy = TcpProxy(broker.port, proxy_port).start()
    try:
        create_topics(broker.bootstrap, list(NAMES.values()), PARTITIONS)
        d = start_daemon(base_config(broker.bootstrap, NAMES, kafka={"client": kafka_client}))
        produce_stream(broker.bootstrap, NAMES, 0, 3000, PARTITIONS)
        wait_for(lambda: _requests(d.url) >= 3000, 30, what="first 3,000 events")
        time.sleep(0.6)  # the periodic commit (every 0.2 s) has stored the positions

        proxy.cut()  # longer than the 6 s session timeout: the group forgets the member
        _assert_outage_seen(d.url, hold_s=7.0)
        proxy.restore()

        produce_stream(broker.bootstrap, NAMES, 3000, 2000, PARTITIONS)
        wait_for(lambda: _requests(d.url) >= 5000, 60, what="events after the outage")
        wait_for(lambda: http_get(f"{d.url}/readyz")[0] == 200, 30, what="ready again")
        time.sleep(1.0)
        # the log survived: reading resumed at the committed offsets, nothing twice
        assert _requests(d.url) == 5000

        # stopping while the broker is unreachable still ends promptly (SIGTERM budget)
        proxy.cut()
        wait_for(lambda: _connected(d.url) == 0, 5.0, what="outage seen again")
        t0 = time.monotonic()
        d.daemon.stop()
        d.thread.join(15)
        assert not d.thread.is_alive()
        assert time.monotonic() - t0 < 10.0
    finally:
        proxy.cut()


# --- offsets going backwards, deterministically (a scripted consumer, no broker) ------
class ScriptedConsumer:
    """Hands out prepared batches of one partition; `end` is the log's end offset and
    `committed` the group's committed offset (None: the group has none). A batch
    "rebalance" revokes the partition and assigns it again (commits never reach a broker
    here, as when they are lost with a revocation)."""

    def __init__(self, batches: list[list[int] | str], end: int,
                 committed: int | None = 0) -> None:
        self.batches = batches
        self.end = end
        self._committed = committed
        self.tp = ("p", 0)
        self._callbacks: tuple[Any, Any] = (None, None)

    def subscribe(self, topics: Any, on_assign: Any, on_revoke: Any) -> None:
        self._callbacks = (on_assign, on_revoke)
        on_assign([self.tp])

    def poll(self, timeout_s: float, max_records: int) -> list[Any]:
        from collectors.kafka.client import Record

        if not self.batches:
            time.sleep(0.01)
            return []
        if self.batches[0] == "rebalance":
            self.batches.pop(0)
            on_assign, on_revoke = self._callbacks
            on_revoke([self.tp])
            on_assign([self.tp])
            return []
        now = time.time()
        return [Record("p", 0, o, orjson.dumps({"request_id": f"r{o}", "ts": now - 1,
                                                "model": "digits", "version": "v1",
                                                "pred": o % 10}), (), 0)
                for o in self.batches.pop(0)]  # type: ignore[union-attr]

    def commit(self, offsets: Any) -> None: ...

    def committed(self, tp: Any) -> int | None:
        return self._committed

    def end_offsets(self, tps: Any) -> dict[Any, int]:
        return dict.fromkeys(tps, self.end)

    def assignment(self) -> list[Any]:
        return [self.tp]

    def connected(self) -> bool:
        return True

    def close(self) -> None: ...


def _run_scripted(consumer: ScriptedConsumer, expected: int, state_dir: Path | None = None,
                  positions: list[list[Any]] | None = None,
                  committed: list[list[Any]] | None = None) -> Any:
    """Run a daemon over the script; returns it, stopped."""
    from collectors.checkpoint import CheckpointStore
    from collectors.daemon import Daemon
    from monitor.config import parse_config, resolve
    from visionmon.app import build_statistics

    # a listening port stands in for the broker, so the daemon's probe finds it reachable
    stand_in = socket.create_server(("127.0.0.1", 0))
    cfg: dict[str, Any] = {"version": 1, "models": [{"name": "digits",
                                                    "classes": [str(i) for i in range(10)]}],
                           "kafka": {"topics": {"predictions": "p", "images": "i",
                                                "feedback": "f"},
                                     "bootstrap_servers": [
                                         f"127.0.0.1:{stand_in.getsockname()[1]}"]}}
    if state_dir is not None:
        cfg["state"] = {"checkpoint_dir": str(state_dir)}
    loaded = resolve(parse_config(cfg))
    stats = build_statistics(loaded)
    if state_dir is not None and positions is not None:
        CheckpointStore(state_dir).save({"engine": build_statistics(loaded).engine.state(),
                                         "positions": positions, "saved_at": 0.0,
                                         "committed": committed or []})
    daemon = Daemon(loaded, stats.engine, consumer_factory=lambda: consumer)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: not consumer.batches, 10, what="the script consumed")
        time.sleep(0.2)
    finally:
        daemon.stop()
        thread.join(10)
        stand_in.close()
    assert stats.engine.accepted.get("p", 0) == expected
    return daemon


def test_offsets_going_backwards_within_an_assignment_restart_the_tracking(tmp_path: Path
                                                                           ) -> None:
    from collectors.checkpoint import CheckpointStore

    # the log was recreated under the consumer: 0..4 arrive after 100..109
    consumer = ScriptedConsumer([list(range(100, 110)), list(range(5))], end=5)
    _run_scripted(consumer, expected=15, state_dir=tmp_path / "c")
    saved = CheckpointStore(tmp_path / "c").load()
    assert saved["positions"] == [["p", 0, 5]]  # positions (and commits) follow the new log


def test_a_checkpoint_position_is_not_used_when_the_group_has_no_offsets(tmp_path: Path
                                                                        ) -> None:
    # restart from a checkpoint at offset 50 that saw offset 40 committed, but the broker
    # lost its log and the group its offsets: records 0..9 are new, not the ones counted
    consumer = ScriptedConsumer([list(range(10))], end=10, committed=None)
    _run_scripted(consumer, expected=10, state_dir=tmp_path / "a", positions=[["p", 0, 50]],
                  committed=[["p", 0, 40]])


def test_a_checkpoint_written_before_the_first_commit_keeps_its_position(tmp_path: Path
                                                                        ) -> None:
    # killed after its first checkpoint (offset 50) but before its first commit: the group
    # has no offset because none was ever committed, so 0..49 were counted and 50..59 are new
    consumer = ScriptedConsumer([list(range(60))], end=60, committed=None)
    _run_scripted(consumer, expected=10, state_dir=tmp_path / "f", positions=[["p", 0, 50]])


def test_a_checkpoint_records_the_offsets_it_saw_committed(tmp_path: Path) -> None:
    from collectors.checkpoint import CheckpointStore

    # the commit at the revocation follows its checkpoint; the final checkpoint records it
    consumer = ScriptedConsumer([list(range(10)), "rebalance"], end=10)
    _run_scripted(consumer, expected=10, state_dir=tmp_path / "g")
    saved = CheckpointStore(tmp_path / "g").load()
    assert saved["committed"] == [["p", 0, 10]]


def test_a_checkpoint_position_inside_the_log_skips_what_it_already_counted(tmp_path: Path
                                                                             ) -> None:
    # the same log (committed 40, checkpoint 50): 40..49 were counted before the crash;
    # a lagging end offset (some brokers report one) does not matter
    consumer = ScriptedConsumer([list(range(40, 60))], end=45, committed=40)
    _run_scripted(consumer, expected=10, state_dir=tmp_path / "b", positions=[["p", 0, 50]])


def test_records_delivered_again_after_a_rebalance_are_not_counted_twice(tmp_path: Path
                                                                         ) -> None:
    from collectors.checkpoint import CheckpointStore

    # the commit was lost with the revocation: the partition comes back at offset 0
    consumer = ScriptedConsumer([list(range(10)), "rebalance", list(range(15))], end=15)
    daemon = _run_scripted(consumer, expected=15, state_dir=tmp_path / "d")
    saved = CheckpointStore(tmp_path / "d").load()
    assert saved["positions"] == [["p", 0, 15]]
    # and the ten records delivered again are exported as skipped duplicates
    assert daemon.snapshot()["visionmon_duplicates_skipped_total"] == {
        ("p",): 10.0, ("i",): 0.0, ("f",): 0.0}


def test_a_checkpoint_keeps_the_position_of_a_partition_revoked_before_it(tmp_path: Path
                                                                          ) -> None:
    from collectors.checkpoint import CheckpointStore

    # revoked and assigned again, nothing read since: the state still covers 0..9
    consumer = ScriptedConsumer([list(range(10)), "rebalance"], end=10)
    _run_scripted(consumer, expected=10, state_dir=tmp_path / "e")
    saved = CheckpointStore(tmp_path / "e").load()
    assert saved["positions"] == [["p", 0, 10]]
