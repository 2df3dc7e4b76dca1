"""`visionmon replay`: recompute every metric of a past time range, for postmortems.

Pipeline: a record source (the three Kafka topics read by manual assignment, or JSON-lines
files) -> records merged in record-timestamp order -> the daemon's decoding and applying
step (`collectors.records`) on a fresh engine built by `build_statistics`, exactly as the
daemon builds it -> every `step` seconds of event time, the full snapshot -> an OpenMetrics
file with timestamps that `promtool tsdb create-blocks-from openmetrics` turns into
Prometheus blocks.

The live daemon is never touched: the Kafka reader has no group id, commits nothing and
seeks by itself. It seeks with offsets-for-times, which is only a lower bound (some brokers,
Tansu among them, answer with the earliest offset), then keeps the records whose timestamp
lies in the range and, after decoding, the events whose event time does.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from collectors.exporter import family
from collectors.kafka.client import Record
from collectors.records import (
    DecodedRecords,
    RecordDecoders,
    TopicNames,
    apply_decoded,
    decode_records,
)
from monitor.atomic_write import replacing
from monitor.catalog import CATALOG, Catalog
from monitor.config import ConfigError, LoadedConfig, load_config
from monitor.events import ImageEvent
from monitor.scored import ScoredImage
from monitor.snapshot import Series, SnapshotBuilder
from visionmon import __version__

log = logging.getLogger(__name__)

#: Default spacing of the snapshots written (seconds of event time).
DEFAULT_STEP_S = 15.0
#: Decoded events applied to the engine in one batch (the daemon's poll size).
APPLY_BATCH = 5000
#: A partition is read no further once a record is this far past `until` (record
#: timestamps are producer clocks: roughly, not strictly, ordered within a partition).
DEFAULT_GRACE_S = 300.0
#: Records buffered per partition before its fetching pauses (bounds the merge's memory).
PARTITION_BUFFER = 2000
#: Most seconds one batch of images may take to score before the replay gives up.
SHADOW_TIMEOUT_S = 300.0
#: Giving up on a partition that returns nothing for this long while records remain.
STALL_S = 30.0

_TOPIC_RANK = {"predictions": 0, "feedback": 1, "images": 2}


class ReplayError(Exception):
    """A replay that cannot run or produced nothing; the message says what to change."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[since, until] in epoch seconds, both ends included; infinite ends are open."""

    since: float = -math.inf
    until: float = math.inf

    def __post_init__(self) -> None:
        if self.since > self.until:
            raise ValueError(f"--since ({self.since}) is after --until ({self.until})")

    def contains(self, ts: float) -> bool:
        return self.since <= ts <= self.until

    def contains_ms(self, ts_ms: int) -> bool:
        return self.since * 1000.0 <= ts_ms <= self.until * 1000.0


def parse_time(text: str) -> float:
    """Epoch seconds, `now`, or RFC 3339 with a UTC offset -> epoch seconds."""
    if text == "now":
        return time.time()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither epoch seconds nor RFC 3339") from None
    if dt.tzinfo is None:
        raise ValueError(f"{text!r}: give a UTC offset (e.g. 2026-11-28T00:00:00Z)")
    return dt.timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- sources


class KafkaRangeReader:
    """The records of a time range from the three topics, merged in record-timestamp order.

    Manual assignment, no group id, no commits: the live daemon's group never sees it.
    `only` limits the read to some of the topics. Memory is bounded: each partition
    buffers at most PARTITION_BUFFER records (fetching pauses beyond that), and a record
    is released only once every partition still being read has one buffered, so the
    output is ordered whenever each partition is.
    """

    def __init__(self, loaded: LoadedConfig, window: TimeRange,
                 grace_s: float = DEFAULT_GRACE_S, only: Sequence[str] | None = None) -> None:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError
        from kafka.structs import TopicPartition

        from collectors.kafka.kafka_python_backend import _common

        cfg = loaded.config
        self.topics = TopicNames.of(loaded)
        self._rank = {name: _TOPIC_RANK[role] for role, name in
                      (("predictions", self.topics.predictions),
                       ("feedback", self.topics.feedback), ("images", self.topics.images))}
        self.window = window
        self._last_ms = (window.until + grace_s) * 1000.0
        try:
            self._c = KafkaConsumer(
                group_id=None, enable_auto_commit=False, client_id="visionmon-replay",
                max_partition_fetch_bytes=max(1_048_576, cfg.limits.max_message_bytes * 2),
                **_common(cfg.kafka))
        except KafkaError as err:
            raise ReplayError(f"cannot reach Kafka at {cfg.kafka.bootstrap_servers}: {err}; "
                              "check kafka.bootstrap_servers in the config") from None
        parts: list[Any] = []
        for topic in only if only is not None else self.topics.all():
            ids = self._c.partitions_for_topic(topic)
            if not ids:
                log.warning("topic %s has no partitions (does it exist?)", topic)
                continue
            parts.extend(TopicPartition(topic, p) for p in sorted(ids))
        if not parts:
            self._c.close()
            raise ReplayError(f"none of the topics {list(self.topics.all())} exist on "
                              f"{cfg.kafka.bootstrap_servers}")
        self._c.assign(parts)
        ends = self._c.end_offsets(parts)
        starts = self._c.offsets_for_times(
            {tp: max(0, int(window.since * 1000)) if math.isfinite(window.since) else 0
             for tp in parts})
        self._start: dict[Any, int] = {}
        self._end: dict[Any, int] = {}
        for tp in parts:
            found = starts.get(tp)
            self._start[tp] = int(ends[tp]) if found is None else int(found.offset)
            self._end[tp] = int(ends[tp])
            self._c.seek(tp, self._start[tp])
        self._buffers: dict[Any, deque[Record]] = {tp: deque() for tp in parts}
        self._reading = set(parts)
        self._paused: set[Any] = set()
        self.read = 0

    @property
    def total(self) -> int:
        """Records to read, as far as known (for a progress bar)."""
        return sum(max(0, max(self._end[tp], self._c.highwater(tp) or 0) - start)
                   for tp, start in self._start.items())

    def __iter__(self) -> Iterator[Record]:
        heap: list[tuple[int, int, int, int, Any]] = []
        queued: set[Any] = set()
        try:
            while True:
                for tp, buf in self._buffers.items():
                    if buf and tp not in queued:
                        r = buf[0]
                        heapq.heappush(heap, (r.timestamp_ms, self._rank[r.topic], r.partition,
                                              r.offset, tp))
                        queued.add(tp)
                waiting = [tp for tp in self._reading if not self._buffers[tp]]
                if waiting:
                    self._fetch()
                    continue
                if not heap:
                    return
                *_, tp = heapq.heappop(heap)
                queued.discard(tp)
                yield self._buffers[tp].popleft()
        finally:
            self._c.close(autocommit=False)

    def _finished(self, tp: Any) -> bool:
        """Read to the partition's end. The end is the high watermark of the latest fetch:
        ListOffsets can lag behind it (Tansu answers below the real end)."""
        hw = self._c.highwater(tp)
        return hw is not None and self._c.position(tp) >= hw

    def _fetch(self) -> None:
        """Poll until every partition still being read has a record buffered."""
        deadline = time.monotonic() + STALL_S
        while True:
            full = {tp for tp, b in self._buffers.items()
                    if len(b) >= PARTITION_BUFFER or tp not in self._reading}
            if full - self._paused:
                self._c.pause(*(full - self._paused))
            if self._paused - full:
                self._c.resume(*(self._paused - full))
            self._paused = full
            batch = self._c.poll(timeout_ms=500, max_records=PARTITION_BUFFER)
            for tp, msgs in batch.items():
                if tp not in self._reading:
                    continue
                buf = self._buffers[tp]
                for m in msgs:
                    self.read += 1
                    if m.timestamp > self._last_ms:
                        self._reading.discard(tp)
                        break
                    buf.append(Record(tp.topic, tp.partition, m.offset, m.value,
                                      tuple(m.headers or ()), m.timestamp))
                if msgs:
                    deadline = time.monotonic() + STALL_S
            for tp in list(self._reading):
                if self._finished(tp):
                    self._reading.discard(tp)
            if all(self._buffers[tp] for tp in self._reading):
                return
            if time.monotonic() > deadline:
                stalled = sorted(f"{tp.topic}/{tp.partition}" for tp in self._reading
                                 if not self._buffers[tp])
                raise ReplayError(f"no records from {stalled} for {STALL_S:.0f}s although "
                                  "their end was not reached; is the broker up?")


def _jsonl_ts(line: bytes, fallback: float) -> float:
    try:
        ts = orjson.loads(line).get("ts")
    except (orjson.JSONDecodeError, AttributeError):
        return fallback
    if isinstance(ts, int | float) and not isinstance(ts, bool) and math.isfinite(ts):
        return float(ts)
    if isinstance(ts, str):
        try:
            return parse_time(ts)
        except ValueError:
            return fallback
    return fallback


def _jsonl_file(path: str, topic: str) -> Iterator[Record]:
    """One record per non-empty line; the record timestamp is the line's event time
    (a line without one keeps the previous line's, so it is refused by the decoder)."""
    last = 0.0
    with open(path, "rb") as fh:
        for n, line in enumerate(fh):
            if not line.strip():
                continue
            last = _jsonl_ts(line, last)
            yield Record(topic, 0, n, line.rstrip(b"\r\n"), (), round(last * 1000))


def count_lines(paths: Sequence[str]) -> int:
    total = 0
    for p in paths:
        last = b"\n"
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                total += chunk.count(b"\n")
                last = chunk[-1:]
        total += last != b"\n"  # a last line without its newline
    return total


def jsonl_records(topics: TopicNames, predictions: str, labels: str | None = None
                  ) -> Iterator[Record]:
    """Predictions (and labels) exported as JSON lines, merged by event time. Each file
    is expected in time order, as exports are; out-of-order lines are still applied (the
    engine is event-time), they only land in a later snapshot."""
    streams = [_jsonl_file(predictions, topics.predictions)]
    if labels:
        streams.append(_jsonl_file(labels, topics.feedback))
    return heapq.merge(*streams, key=lambda r: (r.timestamp_ms, r.topic != topics.predictions))


# --------------------------------------------------------------------------- OpenMetrics


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


@dataclass(slots=True)
class _Family:
    name: str
    kind: str
    help: str
    #: metric (label set without `le`) -> its sample columns, in exposition order
    metrics: dict[tuple[tuple[str, str], ...], list[int]] = field(default_factory=dict)


class OpenMetricsSpool:
    """Collects one snapshot per step and writes them as one OpenMetrics exposition.

    OpenMetrics wants each family contiguous and each series' points in time order, so
    the file cannot be written step by step. Each step's values go to a temporary file
    as one row of float64 (NaN: series absent at that step), so memory stays at one row
    whatever the length of the range; `write` then reads them back column by column.
    """

    def __init__(self, catalog: Catalog = CATALOG, tmp_dir: str | None = None) -> None:
        self._catalog = catalog
        self._order = {spec.name: i for i, spec in enumerate(catalog)}
        self._families: dict[str, _Family] = {}
        self._family_order: dict[str, int] = {}
        self._columns: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._prefixes: list[str] = []
        self._times: list[float] = []
        self._lengths: list[int] = []
        fd, self._path = tempfile.mkstemp(prefix="visionmon-replay-", suffix=".f64",
                                          dir=tmp_dir)
        self._fh: IO[bytes] | None = os.fdopen(fd, "wb")

    @property
    def steps(self) -> int:
        return len(self._times)

    @property
    def series(self) -> int:
        return len(self._columns)

    @property
    def last_time(self) -> float | None:
        return self._times[-1] if self._times else None

    def add(self, t: float, snapshot: dict[str, Series]) -> None:
        if self._times and t <= self._times[-1]:
            raise ValueError(f"snapshot at {t} is not after the previous one ({self._times[-1]})")
        assert self._fh is not None, "spool already written"
        cols: list[int] = []
        vals: list[float] = []
        for spec in self._catalog:
            series = snapshot.get(spec.name)
            if not series:
                continue
            fam = family(spec, series)
            meta = self._families.get(fam.name)
            if meta is None:
                meta = self._families[fam.name] = _Family(fam.name, fam.type, fam.documentation)
                self._family_order[fam.name] = self._order[spec.name]
            for s in fam.samples:
                labels = tuple(s.labels.items())
                key = (s.name, labels)
                col = self._columns.get(key)
                if col is None:
                    col = self._columns[key] = len(self._prefixes)
                    self._prefixes.append(_sample_prefix(s.name, labels))
                    metric = tuple(kv for kv in labels if kv[0] != "le")
                    meta.metrics.setdefault(metric, []).append(col)
                cols.append(col)
                vals.append(float(s.value))
        row = np.full(len(self._prefixes), np.nan)
        if cols:
            row[np.asarray(cols)] = vals
        row.tofile(self._fh)
        self._times.append(t)
        self._lengths.append(row.size)

    def write(self, out: IO[str]) -> int:
        """Write the exposition (ending in `# EOF`); returns the number of samples."""
        assert self._fh is not None, "spool already written"
        self._fh.close()
        self._fh = None
        lengths = np.asarray(self._lengths, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if lengths.size else lengths
        flat = np.memmap(self._path, dtype=np.float64, mode="r") if lengths.sum() else None
        stamps = [f"{t:.3f}" for t in self._times]
        samples = 0
        for fam in sorted(self._families.values(), key=lambda f: self._family_order[f.name]):
            out.write(f"# TYPE {fam.name} {fam.kind}\n")
            out.write(f"# HELP {fam.name} {_escape(fam.help)}\n")
            for cols_list in fam.metrics.values():
                cols = np.asarray(cols_list, dtype=np.int64)
                assert flat is not None
                valid = cols[None, :] < lengths[:, None]
                idx = np.where(valid, offsets[:, None] + cols[None, :], 0)
                block = np.where(valid, flat[idx], np.nan)
                prefixes = [self._prefixes[c] for c in cols_list]
                for step, values in enumerate(block.tolist()):
                    if all(math.isnan(v) for v in values):
                        continue
                    stamp = stamps[step]
                    for prefix, v in zip(prefixes, values, strict=True):
                        if not math.isnan(v):
                            out.write(f"{prefix} {format_value(v)} {stamp}\n")
                            samples += 1
        out.write("# EOF\n")
        return samples

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        Path(self._path).unlink(missing_ok=True)


def _sample_prefix(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return f"{name}{{{inner}}}"


# --------------------------------------------------------------------------- the replay


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
        self.scorer = ShadowScorer(ref, loaded.config.images, loaded.models[ref.model].classes,
                                   self._collect, clock=clock)

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
                 spool: OpenMetricsSpool, shadow: bool = True) -> None:
        from visionmon.app import build_statistics

        if not step_s > 0:
            raise ValueError("--step must be > 0")
        self.loaded = loaded
        self.window = window
        self.step = float(step_s)
        self.spool = spool
        self.stats = build_statistics(loaded)
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
        apply_decoded(self.stats.engine, p, self.topics, self.stats.labels)
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
               shadow: bool = True) -> ReplaySummary:
    """Replay `records` and write the OpenMetrics file `out` (atomically). `shadow`: score
    sampled images with the configured reference model (if any) as the daemon does."""
    t0 = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    spool = OpenMetricsSpool(tmp_dir=str(out.parent))
    rp: Replayer | None = None
    try:
        rp = Replayer(loaded, window, step_s, spool, shadow)
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


# --------------------------------------------------------------------------- CLI


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class EventsPerSecond(ProgressColumn):
        def render(self, task: Task) -> Text:
            elapsed = task.elapsed or 0.0
            rate = task.fields.get("events", 0) / elapsed if elapsed > 0 else 0.0
            return Text(f"{rate:,.0f} events/s")

    console = Console(stderr=True)
    return Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("records"), EventsPerSecond(), TimeRemainingColumn(),
                    console=console, disable=not (enabled and console.is_terminal),
                    transient=False)


def print_summary(s: ReplaySummary, window: TimeRange, file: IO[str] | None = None) -> None:
    span = "no events" if s.first_ts is None or s.last_ts is None else \
        f"{iso(s.first_ts)} .. {iso(s.last_ts)}"
    rng = "everything" if window == TimeRange() else \
        f"{iso(window.since) if math.isfinite(window.since) else 'the start'} .. " \
        f"{iso(window.until) if math.isfinite(window.until) else 'the end'}"
    rate = s.events / s.seconds if s.seconds > 0 else 0.0
    print(f"replayed {rng}\n"
          f"  records   {s.records:,} read, {s.records_outside:,} outside the range\n"
          f"  events    {s.events:,} ({s.predictions:,} predictions, {s.feedback:,} labels, "
          f"{s.images:,} images); {s.events_outside:,} outside the range by event time\n"
          f"  rejected  {s.rejections:,}\n"
          f"  events at {span}\n"
          f"  output    {s.out}: {s.steps:,} snapshots, {s.series:,} series, "
          f"{s.samples:,} samples\n"
          f"  took      {s.seconds:.1f}s ({rate:,.0f} events/s)\n"
          f"  next      promtool tsdb create-blocks-from openmetrics {s.out} <prometheus data dir>",
          file=file or sys.stdout)


def replay_command(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.config)
        since = parse_time(args.since) if args.since else -math.inf
        until = parse_time(args.until) if args.until else math.inf
        window = TimeRange(since, until)
        topics = TopicNames.of(loaded)
        if args.from_jsonl:
            paths = [args.from_jsonl, *([args.labels_jsonl] if args.labels_jsonl else [])]
            total: int | None = count_lines(paths)
            records: Iterable[Record] = jsonl_records(topics, args.from_jsonl, args.labels_jsonl)
        else:
            if args.labels_jsonl:
                raise ConfigError("--labels-jsonl goes with --from-jsonl")
            if not (args.since and args.until):
                raise ConfigError("reading Kafka needs --since and --until "
                                  "(epoch seconds or RFC 3339 with offset)")
            reader = KafkaRangeReader(loaded, window)
            total, records = reader.total, reader
        with _progress(not args.no_progress) as bar:
            task = bar.add_task("replay", total=total, events=0)
            events = seen = 0

            def tick(n: int) -> None:
                nonlocal events, seen
                events += n
                seen += 1
                if seen % 1000 == 0 and isinstance(records, KafkaRangeReader):
                    bar.update(task, total=records.total)  # the end moves as it is found
                bar.update(task, advance=1, events=events)

            summary = run_replay(loaded, records, window, args.out, args.step, tick,
                                 shadow=not args.no_shadow)
            bar.update(task, total=seen, completed=seen)
    except (ConfigError, ReplayError, ValueError, OSError) as err:
        print(f"replay failed: {err}", file=sys.stderr)
        return 2
    print_summary(summary, window)
    return 0


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `visionmon replay` (the CLI adds the logging ones)."""
    p.add_argument("--config", required=True, help="the daemon's YAML config")
    p.add_argument("--since", default=None, help="start: epoch seconds or RFC 3339")
    p.add_argument("--until", default=None, help="end: epoch seconds, RFC 3339 or 'now'")
    p.add_argument("--out", required=True, help="OpenMetrics file to write (e.g. incident.om)")
    p.add_argument("--step", type=float, default=DEFAULT_STEP_S,
                   help="seconds of event time between snapshots (default 15)")
    p.add_argument("--from-jsonl", default=None,
                   help="read predictions from a JSON-lines file instead of Kafka")
    p.add_argument("--labels-jsonl", default=None, help="feedback labels as JSON lines")
    p.add_argument("--no-shadow", action="store_true",
                   help="count sampled images without scoring them with the reference model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
