"""Scale-out on Kafka's consumer groups: two replicas split six partitions, their counters
add up to what was produced; when one is SIGKILLed the other takes its partitions over,
and when it comes back from its checkpoint the totals still add up."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.harness import (
    DaemonProcess,
    daemon_config,
    daemons,
    produce_stream,
    total,
    wait_for,
)
from visionmon.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.slow  # left out of `make test-fast`

PARTITIONS = 6


def _count(d: DaemonProcess) -> float:
    return total(d.metrics(), "visionmon_requests_total")


def _assigned(d: DaemonProcess, topic: str) -> float:
    return total(d.metrics(), "visionmon_assigned_partitions", topic=topic)


def test_two_replicas_split_partitions_and_survive_losing_one(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]], tmp_path: Path) -> None:
    names = topics(partitions=PARTITIONS, dead_letter=False)
    group = f"scale-{names['predictions']}"
    pred = names["predictions"]

    def replica(name: str) -> DaemonProcess:
        cfg = daemon_config(broker.bootstrap, names, free_port(), group,
                            checkpoint_dir=tmp_path / name / "state",
                            checkpoint_interval_s=0.3)
        return DaemonProcess(cfg, tmp_path / name, name)

    a, b = replica("a"), replica("b")
    with daemons(a, b):
        a.start().wait_ready()
        b.start().wait_ready()
        wait_for(lambda: _assigned(a, pred) == 3 and _assigned(b, pred) == 3, 60,
                 what="six partitions split 3 + 3", on_timeout=lambda: a.log_tail() + b.log_tail())

        # 1. both replicas count; their sum is what was produced
        produce_stream(broker.bootstrap, names, 0, 6000, PARTITIONS)
        wait_for(lambda: _count(a) + _count(b) >= 6000, 60, what="6,000 events counted")
        time.sleep(1.0)
        split = (_count(a), _count(b))
        assert split == (3000, 3000), split

        # 2. a replica dies mid-stream: the survivor takes its partitions over
        stream = threading.Thread(target=produce_stream, daemon=True,
                                  args=(broker.bootstrap, names, 6000, 6000, PARTITIONS),
                                  kwargs={"pace_s": 0.3})
        stream.start()
        wait_for(lambda: _count(a) + _count(b) >= 7500, 60, what="the stream under way")
        a_last = _count(a)
        a.kill()
        stream.join(60)
        wait_for(lambda: _assigned(b, pred) == PARTITIONS, 60, what="takeover of 6 partitions",
                 on_timeout=b.log_tail)
        wait_for(lambda: a_last + _count(b) >= 12_000, 60, what="12,000 events counted")
        time.sleep(1.0)
        after_kill = a_last + _count(b)
        # at-least-once: what A counted but had not committed is read again by B
        assert 12_000 <= after_kill <= 12_000 + 1500, after_kill

        # 3. the dead replica comes back from its checkpoint; the group splits again
        a.start().wait_ready()
        wait_for(lambda: _assigned(a, pred) == 3 and _assigned(b, pred) == 3, 60,
                 what="partitions split again", on_timeout=a.log_tail)
        produce_stream(broker.bootstrap, names, 12_000, 6000, PARTITIONS)
        wait_for(lambda: _count(a) + _count(b) >= 18_000, 60, what="18,000 events counted")
        time.sleep(1.0)
        final = (_count(a), _count(b))
        print(f"\nscale-out totals: first split {split}; after killing A: A's last scrape "
              f"{a_last:.0f} + B {after_kill - a_last:.0f} = {after_kill:.0f} of 12,000; "
              f"after A's restart from its checkpoint: {final} = {sum(final):.0f} of 18,000")
        # checkpoint and commit go together: A's restored state and B's counts meet
        # where A last committed (a kill between the two can repeat one interval)
        assert 18_000 <= sum(final) <= 18_000 + 1500, final
