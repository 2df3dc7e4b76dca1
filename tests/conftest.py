"""Shared fixtures: one real Kafka-protocol broker (Tansu) per test run, topic and
config factories, and a daemon running in-process with its HTTP endpoints."""

from __future__ import annotations

import itertools
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.config import load_config
from visionmon.broker import EmbeddedBroker, create_topics

CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_counter = itertools.count()


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A Tansu broker on a free port for the whole test run."""
    b = EmbeddedBroker(log_path=os.environ.get("VISIONMON_BROKER_LOG"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def topics(broker: EmbeddedBroker) -> Callable[..., dict[str, str]]:
    """Creates fresh, uniquely named topics: returns {role: topic name}."""

    def make(partitions: int = 3, dead_letter: bool = True) -> dict[str, str]:
        n = next(_counter)
        names = {"predictions": f"pred-{n}", "images": f"img-{n}", "feedback": f"fb-{n}"}
        if dead_letter:
            names["dead_letter"] = f"dlq-{n}"
        create_topics(broker.bootstrap, list(names.values()), partitions)
        return names

    return make


def base_config(bootstrap: str, names: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """A config dict for tests: short rebalance timings, free HTTP port."""
    cfg: dict[str, Any] = {
        "version": 1,
        "kafka": {"bootstrap_servers": [bootstrap], "group_id": f"g-{names['predictions']}",
                  "topics": {k: names[k] for k in ("predictions", "images", "feedback")},
                  "poll_timeout_ms": 200, "commit_interval_seconds": 0.2,
                  "lag_interval_seconds": 1.0},
        "models": [{"name": "digits", "classes": CLASSES},
                   {"name": "fashion", "classes": [f"c{i}" for i in range(10)]}],
        # tests read counts a second after the events (the default interval is 5 s)
        "http": {"bind": "127.0.0.1", "port": 0, "snapshot_interval_seconds": 1},
    }
    if "dead_letter" in names:
        cfg["kafka"]["dead_letter_topic"] = names["dead_letter"]
    if "lifecycle" in names:
        cfg["kafka"]["topics"]["lifecycle"] = names["lifecycle"]
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_config(tmp_path: Path, cfg: dict[str, Any]) -> Path:
    import yaml

    path = tmp_path / f"visionmon-{next(_counter)}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Exposition text -> {(sample name, labels): value}, via prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric_sum(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
               **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= set(ls))


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0, every: float = 0.2,
             what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def judge_scrapes(url: str, judge: Callable[[dict[Any, float]], None],
                  timeout_s: float = 30.0) -> None:
    """Run `judge`'s assertions on fresh scrapes of `url` until they hold: the last events'
    statistics may reach /metrics a snapshot or two after the counts a test waited for.
    The last AssertionError is raised after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            judge(parse_metrics(scrape(url)))
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


@pytest.fixture(params=["kafka-python", "confluent-kafka"])
def kafka_client(request: pytest.FixtureRequest) -> str:
    """Runs a test once per Kafka backend."""
    return str(request.param)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Any]]:
    """Starts App(config) in-process; stops every started daemon after the test."""
    from visionmon.app import App, wait_ready

    running: list[Any] = []

    def start(cfg: dict[str, Any], ready: bool = True) -> Any:
        app = App(load_config(write_config(tmp_path, cfg)))
        r = app.start_background()
        running.append(r)
        if ready:
            wait_ready(app.daemon, 60)
        return r

    yield start
    for r in running:
        r.stop()
