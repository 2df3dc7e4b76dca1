"""The records of a past time range, for a replay: from the three Kafka topics (read by
manual assignment, merged in record-timestamp order) or from JSON-lines exports.

The live daemon is never touched: the Kafka reader has no group id, commits nothing and
seeks by itself. It seeks with offsets-for-times, which is only a lower bound (some brokers,
Tansu among them, answer with the earliest offset); the replay then keeps the records whose
timestamp lies in the range.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from collectors.kafka.client import Record
from collectors.records import TopicNames
from monitor.config import LoadedConfig
from visionmon.postmortem.timerange import TimeRange, parse_time

log = logging.getLogger(__name__)

#: A partition is read no further once a record is this far past `until` (record
#: timestamps are producer clocks: roughly, not strictly, ordered within a partition).
DEFAULT_GRACE_S = 300.0
#: Records buffered per partition before its fetching pauses (bounds the merge's memory).
PARTITION_BUFFER = 2000
#: Giving up on a partition that returns nothing for this long while records remain.
STALL_S = 30.0

_TOPIC_RANK = {"predictions": 0, "feedback": 1, "images": 2, "lifecycle": 3}


class ReplayError(Exception):
    """A replay that cannot run or produced nothing; the message says what to change."""



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
                       ("feedback", self.topics.feedback), ("images", self.topics.images),
                       ("lifecycle", self.topics.lifecycle)) if name is not None}
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
    """Lines in the files (a last line without its newline counts): the progress total."""
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
