"""Daemon crashes: SIGKILL mid-stream loses nothing and counts nothing twice; checkpoints
are never half-written; a corrupt one is set aside, reported, and the daemon starts clean."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.crash_trials import run_trial
from collectors import checkpoint as ckpt
from collectors.checkpoint import CheckpointCorrupt, CheckpointStore
from tests.conftest import base_config, metric_sum, parse_metrics, scrape, wait_for
from tests.faults.harness import produce_stream
from visionmon.broker import EmbeddedBroker

pytestmark = pytest.mark.slow  # left out of `make test-fast`

STATE = {"engine": {"consumed": {"p": 3}, "values": [1.5, 2.5]},
         "positions": [["p", 0, 17]], "saved_at": 1.0}


def test_sigkill_at_random_points_counts_every_event_exactly_once(
        broker: EmbeddedBroker, tmp_path: Path, kafka_client: str) -> None:
    # the short CI version of benchmarks/crash_trials.py (which runs 10 x 100,000)
    seed = 101 if kafka_client == "kafka-python" else 102
    r = run_trial(broker.bootstrap, seed, 15_000, tmp_path, kafka_client, max_kills=2)
    assert r.kills, "no kill happened"
    assert r.counted == r.events, f"counted {r.counted} of {r.events} (kills: {r.kills})"
    assert r.labels == r.labels_expected
    assert r.exit_code == 0


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def _valid() -> bytes:
    return ckpt.encode(STATE)


def _hash_ok_but_not_json() -> bytes:
    body = b'{"engine": '
    return ckpt.MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


CORRUPTIONS: dict[str, Callable[[], bytes]] = {
    "truncated to half": lambda: _valid()[: len(_valid()) // 2],
    "truncated by one byte": lambda: _valid()[:-1],
    "one bit flipped in the body": lambda: _flip(_valid(), len(_valid()) - 5),
    "one bit flipped in the recorded hash": lambda: _flip(_valid(), len(ckpt.MAGIC) + 3),
    "empty file": lambda: b"",
    "header without body separator": lambda: ckpt.MAGIC + b"00",
    "random bytes": lambda: os.urandom(300),
    "hash matches but the body is not JSON": _hash_ok_but_not_json,
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_checkpoint_is_detected_and_set_aside(tmp_path: Path, corruption: str
                                                         ) -> None:
    store = CheckpointStore(tmp_path / "state")
    data = CORRUPTIONS[corruption]()
    store.path.write_bytes(data)
    with pytest.raises(CheckpointCorrupt) as err:
        store.load()
    assert "moved to" in str(err.value)
    aside = list(store.dir.glob("state.ckpt.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == data
    assert store.load() is None  # the next start is clean


def test_a_valid_checkpoint_round_trips(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "state")
    store.save(STATE)
    assert store.load() == STATE


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path: Path,
                                                              monkeypatch: Any) -> None:
    store = CheckpointStore(tmp_path / "state")
    store.save(STATE)

    def crash(*_args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        store.save({**STATE, "saved_at": 2.0})
    monkeypatch.undo()
    assert store.load() == STATE
    assert [p.name for p in store.dir.iterdir()] == ["state.ckpt"]


def test_a_writer_killed_mid_write_leaves_no_garbage_for_the_next_start(tmp_path: Path
                                                                        ) -> None:
    store = CheckpointStore(tmp_path / "state")
    store.save(STATE)
    (store.dir / "state.tmp-4242").write_bytes(_valid()[:40])  # SIGKILL during write()
    store = CheckpointStore(tmp_path / "state")
    assert [p.name for p in store.dir.iterdir()] == ["state.ckpt"]
    assert store.load() == STATE


def test_checkpoint_directory_is_private_even_if_it_existed(tmp_path: Path) -> None:
    d = tmp_path / "state"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    store = CheckpointStore(d)
    store.save(STATE)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_daemon_with_a_corrupt_checkpoint_starts_clean_and_reports_it(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]],
        start_daemon: Callable[..., Any], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    names = topics(partitions=3, dead_letter=False)
    state_dir = tmp_path / "state"
    CheckpointStore(state_dir).path.write_bytes(_valid()[:-7])
    cfg = base_config(broker.bootstrap, names, state={"checkpoint_dir": str(state_dir),
                                                      "checkpoint_interval_seconds": 0.3})
    with caplog.at_level(logging.ERROR, logger="collectors.daemon"):
        d = start_daemon(cfg)
    assert any("checkpoint is corrupt, starting clean" in r.getMessage()
               and "moved to" in r.getMessage() for r in caplog.records)
    produce_stream(broker.bootstrap, names, 0, 500, 3)
    wait_for(lambda: metric_sum(parse_metrics(scrape(d.url)),
                                "visionmon_requests_total") >= 500, 30)
    m = parse_metrics(scrape(d.url))
    assert metric_sum(m, "visionmon_checkpoint_corrupt_total") == 1
    assert metric_sum(m, "visionmon_requests_total") == 500
    assert len(list(state_dir.glob("state.ckpt.corrupt-*"))) == 1
    wait_for(lambda: metric_sum(parse_metrics(scrape(d.url)),
                                "visionmon_checkpoint_writes_total", outcome="ok") >= 1, 10)
    assert CheckpointStore(state_dir).load() is not None  # a fresh, valid one replaced it
