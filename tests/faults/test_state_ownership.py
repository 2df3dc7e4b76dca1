"""State knows whose it is: a checkpoint records the Kafka cluster, the consumer group, the
topics and the models, and a daemon started on the same `checkpoint_dir` against other ones
refuses (exit 2, naming both and `--reset-state`) instead of merging the old counts into the
new ones. Against the real broker (Tansu reports the cluster id `tansu_cluster`)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collectors.checkpoint import CheckpointStore
from collectors.checkpoint_format import CheckpointRefused
from monitor.config import load_config
from tests.conftest import (
    CLASSES,
    base_config,
    metric_sum,
    parse_metrics,
    scrape,
    wait_for,
    write_config,
)
from tests.faults.harness import produce_stream
from visionmon.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.slow  # left out of `make test-fast`


def _spawn(cfg_path: Path, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "visionmon", "run", "--config",
                             str(cfg_path), *flags],
                            stdout=log.open("ab"), stderr=subprocess.PIPE)


def _requests(url: str) -> float:
    try:
        return metric_sum(parse_metrics(scrape(url)), "visionmon_requests_total")
    except OSError:
        return -1.0


def _count_and_stop(cfg: dict[str, Any], tmp_path: Path, expected: int, *flags: str) -> None:
    """`visionmon run` until it counted `expected` events, then SIGTERM (exit 0)."""
    url = f"http://127.0.0.1:{cfg['http']['port']}"
    proc = _spawn(write_config(tmp_path, cfg), tmp_path / "daemon.log", *flags)
    try:
        wait_for(lambda: _requests(url) >= expected, 60, what=f"{expected} events counted")
        wait_for(lambda: metric_sum(parse_metrics(scrape(url)),
                                    "visionmon_checkpoint_writes_total", outcome="ok") >= 1, 10)
        assert _requests(url) == expected
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]


def _refused(cfg: dict[str, Any], tmp_path: Path) -> str:
    """`visionmon run`'s message on stderr, after asserting it exited with 2."""
    proc = _spawn(write_config(tmp_path, cfg), tmp_path / "daemon.log")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err.decode()[-2000:]
    return err.decode()


def _config(broker: EmbeddedBroker, names: dict[str, str], state_dir: Path,
            kafka_client: str = "kafka-python", **overrides: Any) -> dict[str, Any]:
    return base_config(broker.bootstrap, names, http={"port": free_port()},
                       kafka={"client": kafka_client, **overrides.pop("kafka", {})},
                       state={"checkpoint_dir": str(state_dir),
                              "checkpoint_interval_seconds": 0.3}, **overrides)


def test_another_group_on_the_same_checkpoint_is_refused_and_reset_state_starts_fresh(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]], tmp_path: Path) -> None:
    names = topics(partitions=2, dead_letter=False)
    state_dir = tmp_path / "state"
    produce_stream(broker.bootstrap, names, 0, 300, 2)
    first = _config(broker, names, state_dir)
    _count_and_stop(first, tmp_path, 300)

    other = _config(broker, names, state_dir, kafka={"group_id": "another-group"})
    message = _refused(other, tmp_path)
    assert str(state_dir / "state.ckpt") in message
    assert f"checkpoint has {first['kafka']['group_id']}; this daemon has another-group" \
        in message
    assert re.search(r"visionmon run --config \S+\.yaml --reset-state", message), message
    assert CheckpointStore(state_dir).load() is not None  # left as it was

    # started fresh: the new group reads the topic from the start and counts it once, not
    # on top of the 300 the checkpoint held
    _count_and_stop(other, tmp_path, 300, "--reset-state")
    assert len(list(state_dir.glob("state.ckpt.reset-*"))) == 1
    saved = CheckpointStore(state_dir).load()
    assert saved["identity"]["group_id"] == "another-group"


def test_other_topics_on_the_same_checkpoint_are_refused(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]],
        start_daemon: Callable[..., Any], tmp_path: Path) -> None:
    names = topics(partitions=1, dead_letter=False)
    state_dir = tmp_path / "state"
    group = {"group_id": "one-group"}
    d = start_daemon(_config(broker, names, state_dir, kafka=group))
    wait_for(lambda: CheckpointStore(state_dir).path.exists(), 10, what="a checkpoint")
    d.stop()
    moved = {**names, "predictions": topics(partitions=1, dead_letter=False)["predictions"]}
    from visionmon.app import App

    with pytest.raises(CheckpointRefused) as refused:
        App(load_config(write_config(tmp_path, _config(broker, moved, state_dir, kafka=group))))
    lines = str(refused.value).splitlines()
    assert [line for line in lines if "checkpoint has" in line] == [
        f"  topics (kafka.topics): checkpoint has feedback={names['feedback']}, "
        f"images={names['images']}, predictions={names['predictions']}; this daemon has "
        f"feedback={names['feedback']}, images={names['images']}, "
        f"predictions={moved['predictions']}"]
    assert "--reset-state" in lines[-1]


def test_a_changed_class_list_is_refused(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]],
        start_daemon: Callable[..., Any], tmp_path: Path) -> None:
    names = topics(partitions=1, dead_letter=False)
    state_dir = tmp_path / "state"
    models = [{"name": "digits", "classes": CLASSES}]
    d = start_daemon(_config(broker, names, state_dir, models=models))
    produce_stream(broker.bootstrap, names, 0, 50, 1)
    wait_for(lambda: metric_sum(parse_metrics(scrape(d.url)),
                                "visionmon_requests_total") >= 50, 30)
    d.stop()
    renamed = [{"name": "digits", "classes": [*CLASSES[:9], "nueve"]}]
    message = _refused(_config(broker, names, state_dir, models=renamed), tmp_path)
    assert "classes of model 'digits'" in message
    assert "class 9 'nine'" in message and "class 9 'nueve'" in message


def test_a_checkpoint_of_another_cluster_is_refused(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]], tmp_path: Path,
        kafka_client: str) -> None:
    names = topics(partitions=1, dead_letter=False)
    state_dir = tmp_path / "state"
    produce_stream(broker.bootstrap, names, 0, 100, 1)
    cfg = _config(broker, names, state_dir, kafka_client)
    _count_and_stop(cfg, tmp_path, 100)
    store = CheckpointStore(state_dir)
    saved = store.load()
    assert saved["identity"]["cluster_id"] == "tansu_cluster"  # what Tansu reports
    # the same directory moved next to another cluster's broker: Tansu reports one fixed
    # id, so the other cluster is the one the checkpoint names
    saved["identity"]["cluster_id"] = "the-old-cluster"
    store.save(saved)
    cfg["http"]["port"] = free_port()
    message = _refused(cfg, tmp_path)
    assert "Kafka cluster id: checkpoint has the-old-cluster; this daemon has tansu_cluster" \
        in message
    assert "--reset-state" in message
    assert store.load()["identity"]["cluster_id"] == "the-old-cluster"  # not overwritten
