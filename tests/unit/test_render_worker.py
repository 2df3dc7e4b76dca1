"""The render worker process renders a snapshot to the same bytes as the daemon would, keeps
what copies share, is restarted (and counted) when it dies or hangs, while scrapes are served
from a render in the daemon meanwhile, and stops with the daemon."""

from __future__ import annotations

import gzip
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.exposition import choose_encoder

from collectors.bodies import BodyFormat
from collectors.daemon import DaemonCapture
from collectors.render_worker import RenderWorker, WorkerOrigin
from collectors.snapshot_cache import RENDER_SECONDS, SnapshotCache
from monitor.baseline import build_baseline
from monitor.series_cap import SeriesCap
from monitor.snapshot import Snapshot
from tests.unit.test_scrape_capture import CLASSES, _feed, _full, _predictions
from visionmon.app import Statistics

_ENCODER, _OPENMETRICS = choose_encoder("application/openmetrics-text;version=1.0.0")
OPENMETRICS_GZIP = BodyFormat(_OPENMETRICS, _ENCODER, gzipped=True)
WALL = 1_800_000_000.0


def _copies(stats: Statistics) -> Callable[[], DaemonCapture]:
    """The daemon's copies of `stats` (no loop series: no loop runs here)."""
    return lambda: DaemonCapture(stats.engine.capture(), {})


def _ready(worker: RenderWorker, timeout_s: float = 60.0) -> None:
    """Wait until the worker answers (it imports for a second or more on a busy machine)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = worker(0.0, WALL, ())
        if isinstance(got._origin, WorkerOrigin):
            return
        time.sleep(0.2)
    raise TimeoutError("the render worker never became ready")


@pytest.fixture
def stats() -> Statistics:
    stats = _full()
    _feed(stats, 0)
    return stats


@pytest.fixture
def worker(stats: Statistics) -> Iterator[RenderWorker]:
    w = RenderWorker(_copies(stats), SeriesCap(30_000), timeout_s=20.0, restart_backoff_s=0.0)
    w.start()
    _ready(w)
    yield w
    w.close()


def _text(body: bytes) -> list[str]:
    """The lines of a gzipped body, without the render time (it differs run to run)."""
    return [ln for ln in gzip.decompress(body).decode().splitlines()
            if not ln.startswith(RENDER_SECONDS)]


def _without_render_time(snapshot: Snapshot) -> dict:  # type: ignore[type-arg]
    return {k: v for k, v in snapshot.items() if k != RENDER_SECONDS}


def test_the_worker_writes_the_bytes_the_daemon_would(stats: Statistics,
                                                      worker: RenderWorker) -> None:
    here = SnapshotCache(lambda: SeriesCap(30_000).apply(stats.engine.snapshot()), 0.0,
                         wall_clock=lambda: WALL)
    there = SnapshotCache(lambda: {}, 0.0, wall_clock=lambda: WALL, renderer=worker)
    for start in (1_000, 2_000):  # the second copy shares the baseline, memos, embeddings
        _feed(stats, start)
        theirs = there.latest()
        assert isinstance(theirs._origin, WorkerOrigin)
        ours = here.latest()
        assert _text(theirs.body(OPENMETRICS_GZIP)) == _text(ours.body(OPENMETRICS_GZIP))
        assert _without_render_time(theirs.snapshot) == _without_render_time(ours.snapshot)
        assert {"visionmon_embedding_mmd", "visionmon_shadow_agreement_pvalue",
                "visionmon_drift_psi"} <= set(theirs.snapshot)


def test_what_copies_share_is_sent_once_and_dropped_when_unused(
        stats: Statistics, worker: RenderWorker) -> None:
    channel = worker._channel
    assert channel is not None
    worker(0.0, WALL, ())
    held = dict(channel.sent)
    old = stats.drift.baselines["m"]
    assert id(old) in held
    worker(0.0, WALL, ())
    assert channel.sent.keys() == held.keys()  # nothing new: the same parts, by reference
    new = build_baseline("m", CLASSES, _predictions(600, 20_000, "v0"))
    stats.drift.set_baseline(new)              # no copy uses the old baseline any more
    got = worker(0.0, WALL, ())
    assert id(old) not in channel.sent and channel.sent[id(new)] is new
    assert got.snapshot["visionmon_baseline_info"] == {
        ("m", new.baseline_version, "file", "sealed", new.sha256[:16]): 1.0}


@pytest.mark.parametrize(("how", "reason"), [(signal.SIGKILL, "exited"),
                                             (signal.SIGSTOP, "timeout")],
                         ids=["a worker that died", "a worker that hangs"])
def test_is_restarted_and_counted_while_scrapes_are_rendered_in_the_daemon(
        worker: RenderWorker, how: signal.Signals, reason: str) -> None:
    pid = worker.pid
    assert pid is not None
    worker._timeout = 2.0  # seconds a hung worker is waited for
    os.kill(pid, how)
    got = worker(0.0, WALL, (OPENMETRICS_GZIP,))  # served: rendered here
    assert not isinstance(got._origin, WorkerOrigin)
    assert gzip.decompress(got.body(OPENMETRICS_GZIP)).endswith(b"# EOF\n")
    assert worker.restarts[reason] == 1
    _ready(worker)                                 # a new worker
    assert worker.pid != pid
    assert worker.restarts == {"exited": int(reason == "exited"),
                               "timeout": int(reason == "timeout")}


def test_close_stops_the_worker(worker: RenderWorker) -> None:
    channel = worker._channel
    assert channel is not None
    worker.close()
    assert channel.proc.poll() == 0
    got = worker(0.0, WALL, ())  # after close, renders are done here
    assert not isinstance(got._origin, WorkerOrigin)


def test_a_worker_whose_daemon_went_away_exits(worker: RenderWorker) -> None:
    channel = worker._channel
    assert channel is not None
    channel.conn.close()  # as when the daemon's process dies: the channel closes
    assert channel.proc.wait(30) == 0


def test_a_render_asked_for_while_the_worker_starts_is_done_here_without_waiting(
        stats: Statistics) -> None:
    w = RenderWorker(_copies(stats), SeriesCap(30_000), timeout_s=20.0)
    w.start()
    try:
        # the worker is still importing: the first render is this process's (before, it
        # waited up to 10 s for the worker and came back from it)
        first = w(0.0, WALL, (OPENMETRICS_GZIP,))
        assert not isinstance(first._origin, WorkerOrigin)
        assert any(ln.startswith("visionmon_") for ln in _text(first.body(OPENMETRICS_GZIP)))
        _ready(w)                                       # later renders go to the worker
    finally:
        w.close()
