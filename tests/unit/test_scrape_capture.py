"""A scrape never stalls ingestion: under the daemon's lock a snapshot only copies counts
(`Engine.capture`); the statistics are computed from the copy outside the lock (`render`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from collectors.daemon import Daemon
from monitor.baseline import build_baseline
from monitor.config import parse_config, resolve
from monitor.engine import EngineExtension
from monitor.events import PredictionEvent
from monitor.scored import INPUT_FEATURES, ScoredImage
from monitor.shadow import ShadowMonitor
from monitor.snapshot import SnapshotBuilder
from visionmon.app import Statistics, build_statistics

CLASSES = [f"c{i}" for i in range(5)]
T0 = 1_790_000_000.0


def _loaded():  # type: ignore[no-untyped-def]
    return resolve(parse_config({
        "version": 1, "models": [{"name": "m", "classes": CLASSES}],
        "windows": {"sizes": ["5m", "1h"], "slices": 30},
        "quality": {"eval_slice": "1m", "min_labels": 5}}))


def _predictions(n: int, start: int, version: str = "v1") -> list[PredictionEvent]:
    rng = np.random.default_rng(start)
    conf = rng.uniform(0.3, 1.0, n)
    return [PredictionEvent(f"r{start + i}", T0 + start + i, "m", version, True,
                            int(rng.integers(5)), float(conf[i]), 0.2, 0.5, 0.01)
            for i in range(n)]


def _images(events: list[PredictionEvent], seed: int) -> list[ScoredImage]:
    rng = np.random.default_rng(seed)
    feats = rng.uniform(0, 1, (len(events), len(INPUT_FEATURES)))
    return [ScoredImage(e.request_id, "m", e.version, e.ts,
                        e.pred if rng.random() < 0.8 else int(rng.integers(5)), 0.9,
                        rng.normal(size=6).astype(np.float32), tuple(feats[i].tolist()))
            for i, e in enumerate(events)]


class _Blocking(EngineExtension):
    """An extension whose series take as long as the test wants to compute."""

    def __init__(self) -> None:
        self.computing = threading.Event()
        self.release = threading.Event()

    def capture(self) -> _BlockingSeries:
        return _BlockingSeries(self)

    def snapshot(self, b: SnapshotBuilder) -> None:  # how an engine without capture asks
        self.capture().render(b)


@dataclass(frozen=True)
class _BlockingSeries:
    ext: _Blocking

    def render(self, b: SnapshotBuilder) -> None:
        self.ext.computing.set()
        self.ext.release.wait(30)


def test_a_batch_is_applied_while_a_scrape_is_computing() -> None:
    loaded = _loaded()
    stats = build_statistics(loaded)
    blocking = _Blocking()
    stats.engine.extensions.append(blocking)
    daemon = Daemon(loaded, stats.engine)
    scrape = threading.Thread(target=daemon.snapshot)
    scrape.start()
    try:
        assert blocking.computing.wait(30), "the scrape never computed"
        got = daemon.lock.acquire(timeout=10)   # what the consumer loop does per batch
        if got:
            stats.engine.apply_predictions(_predictions(50, 0))
            daemon.lock.release()
    finally:
        blocking.release.set()
        scrape.join(30)
    assert got, "the scrape held the ingestion lock while it computed"
    assert stats.engine.accepted["predictions"] == 50


def _full() -> Statistics:
    """Every statistics block, the shadow monitor with a baseline that has images."""
    loaded = _loaded()
    stats = build_statistics(loaded)
    base_events = _predictions(600, 10_000, "v0")
    stats.drift.set_baseline(build_baseline("m", CLASSES, base_events,
                                            images=_images(base_events, 1)))
    stats.shadow = ShadowMonitor({"m": CLASSES}, stats.drift.windows, stats.drift,
                                 stats.quality, min_agreement_images=10)
    stats.engine.extensions.append(stats.shadow)
    return stats


def _feed(stats: Statistics, start: int) -> None:
    from monitor.events import FeedbackEvent

    for version in ("v1", "v2"):
        events = _predictions(200, start, version)
        stats.engine.apply_predictions(events)
        stats.labels.apply_feedback([FeedbackEvent(e.request_id, e.pred if i % 4 else 0,
                                                   e.ts + 5.0, None)
                                     for i, e in enumerate(events) if i % 2])
        assert stats.shadow is not None
        stats.shadow.apply_scored(_images(events, start))
        start += 200


def test_a_capture_renders_the_state_it_was_taken_from() -> None:
    """What ingestion does after the copy was taken changes nothing in what it renders."""
    stats = _full()
    _feed(stats, 0)
    captured = stats.engine.capture()
    before = stats.engine.snapshot()
    assert {"visionmon_drift_psi", "visionmon_accuracy_ratio", "visionmon_shadow_agreement_ratio",
            "visionmon_embedding_mmd", "visionmon_labels_total"} <= set(before)
    _feed(stats, 1_000)
    after = stats.engine.snapshot()
    assert after != before
    assert captured.render() == before


def test_the_engine_snapshot_is_the_render_of_its_capture() -> None:
    stats = _full()
    _feed(stats, 0)
    assert stats.engine.capture().render() == stats.engine.snapshot()
    b = SnapshotBuilder()
    for ext in stats.engine.extensions:   # one block at a time, as the detection benchmark
        ext.snapshot(b)
    whole = stats.engine.snapshot()
    assert all(whole[name] == series for name, series in b.build().items())
