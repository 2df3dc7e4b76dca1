"""Recomputing a past time range: records in event time -> the daemon's decoding and
applying step (`collectors.records`) on a fresh engine built by `build_statistics`, exactly
as the daemon builds it -> every `step` seconds of event time, the full snapshot -> an
OpenMetrics spool, written atomically at the end.

After decoding, only the events whose event time lies in the range are applied.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from collectors.kafka.client import Record
from collectors.records import (
    DecodedRecords,
    RecordDecoders,
    TopicNames,
    apply_decoded,
    decode_records,
)
from monitor.atomic_write import replacing
from monitor.baseline import Baseline
from monitor.config import LoadedConfig
from monitor.drift import source_of
from monitor.events import ImageEvent
from monitor.scored import ScoredImage
from monitor.snapshot import Series, SnapshotBuilder
from visionmon import __version__
from visionmon.postmortem.openmetrics import OpenMetricsSpool
from visionmon.postmortem.read import ReplayError
from visionmon.postmortem.timerange import TimeRange

log = logging.getLogger(__name__)

#: Default spacing of the snapshots written (seconds of event time).
DEFAULT_STEP_S = 15.0
#: Decoded events applied to the engine in one batch (the daemon's poll size).
APPLY_BATCH = 5000
#: Most seconds one batch of images may take to score before the replay gives up.
SHADOW_TIMEOUT_S = 300.0


@dataclass(slots=True)
class ReplaySummary:
    """What a replay read, applied and wrote."""

    records: int = 0
    records_outside: int = 0
    predictions: int = 0
    feedback: int = 0
    images: int = 0
    rejections: int = 0
    events_outside: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    steps: int = 0
    series: int = 0
    samples: int = 0
    seconds: float = 0.0
    out: str = ""

    @property
    def events(self) -> int:
        return self.predictions + self.feedback + self.images


class ShadowReplay:
    """The reference model re-scoring a replay's sampled images, synchronously: each
    batch's images are scored and joined before the next batch, as the live daemon's
    scorer would have done in the background. Image timestamps without a `ts` header
    take the record's time, not the wall clock."""

    def __init__(self, loaded: LoadedConfig, clock: Callable[[], float]) -> None:
        from reference_model.shadow import ShadowScorer

        ref = loaded.config.reference
        assert ref is not None
        self._scored: list[ScoredImage] = []
        self._lock = threading.Lock()
        self._queue = ref.queue_size
        # gpu=None: a replay's samples carry past timestamps; today's GPU reads have no place
        self.scorer = ShadowScorer(ref, loaded.config.images, loaded.models[ref.model].classes,
                                   self._collect, clock=clock, gpu=None)

    def _collect(self, items: list[ScoredImage]) -> None:
        with self._lock:
            self._scored.extend(items)

    def _settled(self) -> int:
        counts = self.scorer.counts()
        with self._lock:
            done = len(self._scored)
        return done + sum(counts["dropped"].values()) + sum(counts["rejected"].values())

    def score(self, images: Sequence[ImageEvent], timeout_s: float = SHADOW_TIMEOUT_S
              ) -> list[ScoredImage]:
        """Score `images` (in chunks the queue holds) and return the results."""
        for i in range(0, len(images), self._queue):
            chunk = images[i:i + self._queue]
            target = self._settled() + len(chunk)
            self.scorer.submit(chunk)
            deadline = time.monotonic() + timeout_s
            while self._settled() < target:
                ok, why = self.scorer.ready()
                if not ok or time.monotonic() > deadline:
                    raise ReplayError(f"reference model stopped scoring ({why}); replay "
                                      "with --no-shadow to count images without scoring")
                time.sleep(0.002)
        with self._lock:
            out, self._scored = self._scored, []
        return out

    def close(self) -> None:
        self.scorer.close()


class Replayer:
    """Feeds records to a fresh engine in event time and snapshots it every `step`."""

    def __init__(self, loaded: LoadedConfig, window: TimeRange, step_s: float,
                 spool: OpenMetricsSpool, shadow: bool = True,
                 baselines: Mapping[str, Baseline] | None = None) -> None:
        from visionmon.app import build_statistics

        if not step_s > 0:
            raise ValueError("--step must be > 0")
        self.loaded = loaded
        self.window = window
        self.step = float(step_s)
        self.spool = spool
        self.stats = build_statistics(loaded)
        for b in (baselines or {}).values():   # before any event: nothing fits from the range
            # as the live daemon had it: one collected from its first events keeps their
            # events out of its windows and calibrates on the labels after it
            self.stats.drift.set_baseline(b, source_of(b))
        self.topics = TopicNames.of(loaded)
        self.decoders = RecordDecoders.of(loaded)
        self.summary = ReplaySummary()
        self._pending = DecodedRecords()
        self._next: float | None = None
        self._clock = -math.inf
        self._record_time = 0.0
        self.shadow: ShadowReplay | None = None
        if shadow and loaded.config.reference is not None and self.stats.shadow is not None:
            self.shadow = ShadowReplay(loaded, lambda: self._record_time)

    def snapshot(self) -> dict[str, Series]:
        b = SnapshotBuilder()
        b.merge(self.stats.engine.snapshot())
        if self.shadow is not None:
            self.shadow.scorer.snapshot(b)
        b.set("visionmon_build_info", (__version__,), 1.0)
        b.set("visionmon_config_info", (self.loaded.sha256[:16], "1"), 1.0)
        return b.build()

    def feed(self, record: Record) -> int:
        """One record; returns the events it added (for the progress bar)."""
        s = self.summary
        s.records += 1
        self._record_time = record.timestamp_ms / 1000.0
        if not self.window.contains_ms(record.timestamp_ms):
            s.records_outside += 1
            return 0
        d = decode_records((record,), self.topics, self.decoders)
        for line in d.failures:
            log.error("%s", line)
        n_before = len(d.predictions) + len(d.feedback) + len(d.images)
        d.predictions = [e for e in d.predictions if self.window.contains(e.ts)]
        d.feedback = [e for e in d.feedback if self.window.contains(e.ts)]
        d.images = [e for e in d.images if e.ts is None or self.window.contains(e.ts)]
        n = len(d.predictions) + len(d.feedback) + len(d.images)
        s.events_outside += n_before - n
        times = [e.ts for e in d.predictions]
        times.extend(f.ts for f in d.feedback)
        times.extend(i.ts for i in d.images if i.ts is not None)
        if times:
            oldest, newest = min(times), max(times)
            s.first_ts = oldest if s.first_ts is None else min(s.first_ts, oldest)
            s.last_ts = newest if s.last_ts is None else max(s.last_ts, newest)
            if self._next is None:
                self._next = (math.floor(newest / self.step) + 1) * self.step
            while newest >= self._next:
                self._flush()
                self.spool.add(self._next, self.snapshot())
                self._next += self.step
            self._clock = max(self._clock, newest)
        p = self._pending
        p.predictions.extend(d.predictions)
        p.feedback.extend(d.feedback)
        p.images.extend(d.images)
        p.rejections.extend(d.rejections)
        for topic, k in d.consumed.items():
            p.consumed[topic] += k
        s.predictions += len(d.predictions)
        s.feedback += len(d.feedback)
        s.images += len(d.images)
        s.rejections += len(d.rejections)
        if len(p.predictions) + len(p.feedback) + len(p.images) >= APPLY_BATCH:
            self._flush()
        return n

    def _flush(self) -> None:
        p = self._pending
        if not (p.consumed or p.rejections):
            return
        apply_decoded(self.stats.engine, p, self.topics, self.stats.labels,
                      self.stats.lifecycle)
        self._pending = DecodedRecords()
        if self.shadow is not None and p.images and self.stats.shadow is not None:
            self.stats.shadow.apply_scored(self.shadow.score(p.images))

    def finish(self) -> None:
        """Apply what is pending and write the last snapshot (all events included)."""
        self._flush()
        if self.summary.records - self.summary.records_outside == 0:
            raise ReplayError("no records in the time range; check --since/--until (record "
                              "timestamps, epoch seconds or RFC 3339) and the topic names")
        last = self.spool.last_time
        if self._next is not None and self._next <= self.window.until:
            t = self._next
        elif math.isfinite(self.window.until):
            t = self.window.until
        else:
            t = self._clock if math.isfinite(self._clock) else time.time()
        if last is not None and t <= last:
            t = last + 0.001
        self.spool.add(t, self.snapshot())

    def close(self) -> None:
        if self.shadow is not None:
            self.shadow.close()


def run_replay(loaded: LoadedConfig, records: Iterable[Record], window: TimeRange,
               out: str | Path, step_s: float = DEFAULT_STEP_S,
               on_record: Callable[[int], None] | None = None,
               shadow: bool = True,
               baselines: Mapping[str, Baseline] | None = None) -> ReplaySummary:
    """Replay `records` and write the OpenMetrics file `out` (atomically). `shadow`: score
    sampled images with the configured reference model (if any) as the daemon does.
    `baselines`: model -> baseline replacing what the config gives that model (see
    `postmortem.baselines`)."""
    t0 = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    spool = OpenMetricsSpool(tmp_dir=str(out.parent))
    rp: Replayer | None = None
    try:
        rp = Replayer(loaded, window, step_s, spool, shadow, baselines)
        for r in records:
            n = rp.feed(r)
            if on_record is not None:
                on_record(n)
        rp.finish()
        with replacing(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            samples = spool.write(fh)
    finally:
        spool.close()
        if rp is not None:
            rp.close()
    s = rp.summary
    s.steps, s.series, s.samples = spool.steps, spool.series, samples
    s.seconds = time.perf_counter() - t0
    s.out = str(out)
    return s

