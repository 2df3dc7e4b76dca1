"""The consumer loop: poll a batch, decode, apply to the engine, dead-letter the bad,
checkpoint, then commit the highest contiguous processed offset + 1 per partition."""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

from collectors.checkpoint import CheckpointCorrupt, CheckpointStore
from collectors.kafka.client import (
    Consumer,
    KafkaUnavailable,
    Producer,
    Record,
    TopicPartition,
    open_consumer,
    open_producer,
)
from collectors.offsets import OffsetTracker
from collectors.records import (
    FeedbackSink,
    RecordDecoders,
    RejectionLog,
    TopicNames,
    apply_decoded,
    decode_records,
)
from monitor.config import LoadedConfig
from monitor.engine import Engine
from monitor.events import ImageEvent, Rejection
from monitor.snapshot import Series, SnapshotBuilder

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class ImageSink(Protocol):
    """Takes sampled images; must never block the consumer loop."""

    def submit(self, events: Sequence[ImageEvent]) -> None: ...


@dataclass(slots=True)
class RuntimeStatus:
    """What the loop knows about itself, exported beside the engine's statistics."""

    connected: bool = False
    alive_at: float = 0.0
    lag: dict[TopicPartition, int] = field(default_factory=dict)
    assigned: list[TopicPartition] = field(default_factory=list)
    commits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dead_letters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    checkpoints: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    checkpoint_corrupt: int = 0
    last_checkpoint: float | None = None
    batch_seconds: list[float] = field(default_factory=list)
    duplicates_skipped: int = 0


class BrokerProbe:
    """Background TCP reachability check of the bootstrap servers (library-neutral).

    `on_change` is called from the probe's thread when reachability flips, so the
    exported state follows the broker even while the consumer loop is blocked in a call."""

    def __init__(self, servers: Sequence[str], interval_s: float = 1.0,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self._servers = [s.rsplit(":", 1) for s in servers]
        self._interval = interval_s
        self._stop = threading.Event()
        self._on_change = on_change
        self.reachable = False
        self._thread = threading.Thread(target=self._run, name="visionmon-probe", daemon=True)

    def start(self) -> None:
        self.reachable = self._check()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _check(self) -> bool:
        for host, port in self._servers:
            try:
                socket.create_connection((host, int(port)), timeout=1.0).close()
                return True
            except OSError:
                continue
        return False

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            now = self._check()
            changed = now != self.reachable
            self.reachable = now
            if changed and self._on_change is not None:
                self._on_change(now)


#: polled records are decoded and applied in chunks of about this many value bytes (about
#: 6,000 events of 150 bytes): a poll of 10,000 batched messages holds a million events,
#: and applying them at once ran 1.5x slower than in chunks (benchmarks/ingest.py)
APPLY_CHUNK_BYTES = 1 << 20


def apply_chunks(records: Sequence[Record], max_bytes: int = APPLY_CHUNK_BYTES
                 ) -> list[Sequence[Record]]:
    """`records` cut, in order, into runs of at most `max_bytes` of values (a larger record
    forms a run of its own)."""
    out: list[Sequence[Record]] = []
    if not records:
        return out
    if sum(map(len, filter(None, map(itemgetter(3), records)))) <= max_bytes:
        return [records]  # the usual case, summed in C
    start = size = 0
    for i, r in enumerate(records):
        n = len(r.value) if r.value else 0
        if size + n > max_bytes and i > start:
            out.append(records[start:i])
            start, size = i, 0
        size += n
    out.append(records[start:])
    return out


def _partitions_and_offsets(records: Sequence[Record]
                            ) -> tuple[list[TopicPartition], list[int]]:
    """The (topic, partition) and offset of each record, gathered in C."""
    keys = list(zip(map(itemgetter(0), records), map(itemgetter(1), records), strict=True))
    return keys, list(map(itemgetter(2), records))


class Daemon:
    """One consumer-group member over the three topics. `stop()` is safe from a signal."""

    def __init__(self, loaded: LoadedConfig, engine: Engine, clock: Clock = time.time,
                 consumer_factory: Callable[[], Consumer] | None = None,
                 producer_factory: Callable[[], Producer] | None = None,
                 feedback_sink: FeedbackSink | None = None,
                 image_sink: ImageSink | None = None,
                 extra_ready: Callable[[], tuple[bool, str]] | None = None) -> None:
        cfg = loaded.config
        self.loaded = loaded
        self.engine = engine
        self.clock = clock
        self.lock = threading.Lock()
        self.status = RuntimeStatus()
        self._stop = threading.Event()
        self._kcfg = cfg.kafka
        self._limits = cfg.limits
        self._consumer_factory = consumer_factory or (
            lambda: open_consumer(cfg.kafka, cfg.limits.max_message_bytes))
        self._producer_factory = producer_factory or (lambda: open_producer(cfg.kafka))
        self._consumer: Consumer | None = None
        self._dlq: Producer | None = None
        self._tracker = OffsetTracker()
        self._skip_below: dict[TopicPartition, int] = {}
        #: offsets this daemon (or the one whose checkpoint it restored) saw the group
        #: commit: a partition in here that the broker has no committed offset for lost
        #: its log; one not in here may simply never have been committed (killed before
        #: the first commit), and then its remembered position stands
        self._known_committed: dict[TopicPartition, int] = {}
        #: restored from a checkpoint written before `committed` was recorded in it
        self._legacy_checkpoint = False
        self._feedback_sink = feedback_sink
        self._image_sink = image_sink
        self._extra_ready = extra_ready
        self._probe = BrokerProbe(cfg.kafka.bootstrap_servers,
                                  on_change=lambda _now: self._update_connected())
        self._decoder_failures = 0
        self._decoder_failure_logged = -math.inf
        self._rejection_log = RejectionLog()
        #: position of each partition when it was revoked: its records below it are in the
        #: state, so if the partition comes back and they are delivered again (the commit
        #: was lost with the revocation) they are skipped. Forgotten after the broker was
        #: unreachable: a broker that comes back may have lost its log.
        self._revoked_at: dict[TopicPartition, int] = {}
        self._link_lost = False
        #: partitions whose skip position was checked against the log's end
        self._skip_checked: set[TopicPartition] = set()
        #: committed offset of each assigned partition nothing was processed from yet: it
        #: cannot change until this member commits, so it is asked once per assignment
        #: (kafka-python 3 stalls a rebalance when asked repeatedly while it runs)
        self._committed_at_assign: dict[TopicPartition, int | None] = {}
        self._decoders = RecordDecoders.of(loaded)
        self._topic_names = TopicNames.of(loaded)
        self.topics = self._topic_names.all()
        self._ckpt: CheckpointStore | None = None
        if cfg.state.checkpoint_dir:
            self._ckpt = CheckpointStore(cfg.state.checkpoint_dir)

    # --- control --------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def healthy(self) -> bool:
        stall_s = max(30.0, 20 * self._kcfg.poll_timeout_ms / 1e3)
        return self.clock() - self.status.alive_at < stall_s

    def ready(self) -> tuple[bool, str]:
        if not self.status.connected:
            return False, "not connected to Kafka"
        if not self.status.assigned:
            return False, "no partitions assigned yet"
        if self._extra_ready is not None:
            return self._extra_ready()
        return True, "ready"

    # --- snapshot ---------------------------------------------------------------
    def snapshot(self) -> dict[str, Series]:
        # only the copy is taken under the lock; the statistics are computed outside it,
        # so a scrape never stalls the consumer loop
        with self.lock:
            captured = self.engine.capture()
        b = SnapshotBuilder()
        b.merge(captured.render())
        s = self.status
        b.set("visionmon_up", (), 1.0 if not self._stop.is_set() else 0.0)
        b.set("visionmon_kafka_connected", (), 1.0 if s.connected else 0.0)
        for (topic, part), lag in list(s.lag.items()):
            b.set("visionmon_consumer_lag_records", (topic, str(part)), float(lag))
        per_topic: dict[str, int] = {t: 0 for t in self.topics}
        for topic, _ in s.assigned:
            per_topic[topic] = per_topic.get(topic, 0) + 1
        for topic, n in per_topic.items():
            b.set("visionmon_assigned_partitions", (topic,), float(n))
        for outcome, n in list(s.commits.items()):
            b.set("visionmon_commits_total", (outcome,), float(n))
        for outcome, n in list(s.dead_letters.items()):
            b.set("visionmon_dead_letter_records_total", (outcome,), float(n))
        for outcome, n in list(s.checkpoints.items()):
            b.set("visionmon_checkpoint_writes_total", (outcome,), float(n))
        if self._ckpt is not None:
            b.set("visionmon_checkpoint_corrupt_total", (), float(s.checkpoint_corrupt))
        if s.last_checkpoint is not None:
            b.set("visionmon_last_checkpoint_timestamp_seconds", (), s.last_checkpoint)
        return b.build()

    # --- the loop -----------------------------------------------------------------
    def run(self) -> None:
        """Consume until `stop()`; then drain, checkpoint, commit and close."""
        self.status.alive_at = self.clock()
        self._restore()
        self._probe.start()
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._consumer = self._consumer_factory()
                break
            except Exception as err:  # broker not reachable yet: retry with backoff
                log.warning("kafka consumer could not start (%s); retrying in %.1fs", err, backoff)
                self.status.alive_at = self.clock()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        if self._consumer is None:
            self._probe.stop()
            return
        if self._kcfg.dead_letter_topic:
            try:
                self._dlq = self._producer_factory()
            except Exception as err:
                log.error("dead-letter producer could not start: %s", err)
        self._consumer.subscribe(list(self.topics), self._on_assign, self._on_revoke)
        last_commit = last_lag = last_ckpt = self.clock()
        ckpt_interval = self.loaded.config.state.checkpoint_interval_seconds
        try:
            while not self._stop.is_set():
                self.status.alive_at = self.clock()
                self._update_connected()
                try:
                    records = self._consumer.poll(self._kcfg.poll_timeout_ms / 1e3,
                                                  self._kcfg.max_poll_records)
                except KafkaUnavailable as err:
                    log.warning("kafka poll failed: %s", err)
                    self._stop.wait(0.5)
                    continue
                if records:
                    self._process(records)
                now = self.clock()
                if self._ckpt is None:
                    if now - last_commit >= self._kcfg.commit_interval_seconds:
                        self._commit()
                        last_commit = now
                elif now - last_ckpt >= ckpt_interval:
                    self._checkpoint_and_commit()
                    last_ckpt = now
                if now - last_lag >= self._kcfg.lag_interval_seconds:
                    self._update_lag()
                    last_lag = now
        finally:
            self._shutdown()

    def _update_connected(self) -> None:
        was = self.status.connected
        now = self._probe.reachable
        if not now:
            self._link_lost = True
        if now != was:
            log.log(logging.INFO if now else logging.WARNING, "kafka connection %s",
                    "regained" if now else "lost")
        self.status.connected = now

    def _process(self, records: Sequence[Record]) -> None:
        t0 = time.perf_counter()
        now = self.clock()
        self._detect_rewinds(records)
        kept = self._without_duplicates(records) if self._skip_below or self._revoked_at \
            else records
        for chunk in apply_chunks(kept):
            decoded = decode_records(chunk, self._topic_names, self._decoders, now)
            if decoded.failures:
                self._log_decoder_failures(decoded.failures, now)
            with self.lock:
                apply_decoded(self.engine, decoded, self._topic_names, self._feedback_sink)
            if decoded.images and self._image_sink is not None:
                self._image_sink.submit(decoded.images)
            if decoded.rejections:
                self._rejection_log.note(decoded.rejections, now)
                self._dead_letter(decoded.rejections)
        keys, offsets = _partitions_and_offsets(records)
        last = dict(zip(keys, offsets, strict=True))  # in offset order: the last one wins
        for tp, offset in last.items():
            self._tracker.processed_through(tp, offset)
        self._forget_passed_skips()
        self.status.batch_seconds.append(time.perf_counter() - t0)
        if len(self.status.batch_seconds) > 1000:
            del self.status.batch_seconds[:500]

    def _without_duplicates(self, records: Sequence[Record]) -> list[Record]:
        """The records not already in the state (restored, or counted before a rebalance)."""
        kept: list[Record] = []
        for r in records:
            tp = (r.topic, r.partition)
            if r.offset < self._skip_for(tp) and self._skip_still_valid(tp):
                self.status.duplicates_skipped += 1
            else:
                kept.append(r)
        return kept

    def _forget_passed_skips(self) -> None:
        """A remembered position the processing has passed can skip nothing any more."""
        if not (self._skip_below or self._revoked_at):
            return
        positions = self._tracker.positions()
        for skips in (self._skip_below, self._revoked_at):
            for tp in [tp for tp, pos in skips.items() if positions.get(tp, -1) >= pos]:
                del skips[tp]

    def _log_decoder_failures(self, failures: Sequence[str], now: float) -> None:
        """A decoder bug is refused and counted per record; logged at most once a minute."""
        self._decoder_failures += len(failures)
        level = logging.DEBUG
        if now - self._decoder_failure_logged >= 60.0:
            level, self._decoder_failure_logged = logging.ERROR, now
        log.log(level, "%s (%d so far)", failures[-1], self._decoder_failures)

    def _detect_rewinds(self, records: Sequence[Record]) -> None:
        """A partition whose offsets went backwards within one assignment was recreated
        (a memory-only broker restarted, or the topic was deleted and created again):
        track it afresh from the new offsets and forget its checkpointed position."""
        keys, offsets = _partitions_and_offsets(records)
        # a partition's records arrive in offset order: read backwards, the first one wins
        first = dict(zip(reversed(keys), reversed(offsets), strict=True))
        positions = self._tracker.positions()
        for tp, offset in first.items():
            pos = positions.get(tp)
            if pos is not None and offset < pos:
                log.warning("%s[%d]: offset went back from %d to %d (partition recreated?): "
                            "tracking it afresh", tp[0], tp[1], pos, offset)
                self._tracker.assign(tp, None)
                self._skip_below.pop(tp, None)
                self._revoked_at.pop(tp, None)

    def _skip_for(self, tp: TopicPartition) -> int:
        """Records of `tp` below this offset are already in the state."""
        return max(self._skip_below.get(tp, -1), self._revoked_at.get(tp, -1))

    def _skip_still_valid(self, tp: TopicPartition) -> bool:
        """A remembered position of a partition is only meaningful for the log it was
        taken from. The group's committed offset tells: a broker that lost its log (a
        memory-only broker restarted) or a topic deleted and created again has none for
        a partition that was seen committed, so the records are new and are counted
        (at-least-once). A partition never seen committed (the daemon was killed before
        its first commit) keeps its position. End offsets cannot tell: some brokers
        report a lagging end (Tansu answers with the base offset of the last batch)."""
        if tp in self._skip_checked:
            return self._skip_for(tp) >= 0
        self._skip_checked.add(tp)
        if self._consumer is None:
            return True
        try:
            committed = self._consumer.committed(tp)
        except Exception as err:
            log.debug("committed offset of %s[%d] unknown (%s); keeping its remembered "
                      "position", tp[0], tp[1], err)
            return True
        if committed is None and (tp in self._known_committed or self._legacy_checkpoint):
            log.warning("%s[%d]: the group has no committed offset, so the remembered "
                        "position %d may belong to a log that is gone (broker restarted "
                        "empty, topic recreated): counting its records as new", tp[0], tp[1],
                        self._skip_for(tp))
            self._skip_below.pop(tp, None)
            self._revoked_at.pop(tp, None)
            self._known_committed.pop(tp, None)
            return False
        if committed is None:
            log.info("%s[%d]: the group has no committed offset yet and none was ever seen "
                     "committed (stopped before its first commit): keeping the remembered "
                     "position %d", tp[0], tp[1], self._skip_for(tp))
        return True

    def _dead_letter(self, rejects: Sequence[tuple[Record, Rejection]]) -> None:
        topic = self._kcfg.dead_letter_topic
        if not topic or self._dlq is None:
            return
        for r, rej in rejects:
            headers: list[tuple[str, bytes | None]] = [
                ("error", rej.reason.value.encode()),
                ("error-detail", rej.detail.encode()[:512]),
                ("source-topic", r.topic.encode()),
                ("source-partition", str(r.partition).encode()),
                ("source-offset", str(r.offset).encode()),
            ]
            if rej.index is not None:
                headers.append(("batch-index", str(rej.index).encode()))
            headers.extend((k, v) for k, v in r.headers if k.lower() in ("request_id", "model"))
            try:
                self._dlq.send(topic, rej.raw, tuple(headers))
                self.status.dead_letters["sent"] += 1
            except Exception as err:
                self.status.dead_letters["failed"] += 1
                log.debug("dead-letter send failed: %s", err)

    # --- offsets, checkpoints -------------------------------------------------------
    def _commit(self) -> None:
        if self._consumer is None or not self._probe.reachable:
            return  # pending offsets stay tracked and are committed once it is back
        points = self._tracker.commit_points()
        if not points:
            return
        if self._dlq is not None:
            try:
                self._dlq.flush(5.0)  # dead letters are durable before their offsets commit
            except Exception as err:
                log.warning("dead-letter flush failed: %s", err)
        try:
            self._consumer.commit(points)
            self._tracker.mark_committed(points)
            self._known_committed.update(points)
            self.status.commits["ok"] += 1
        except Exception as err:
            self.status.commits["failed"] += 1
            log.warning("offset commit failed (will retry): %s", err)

    def _checkpoint_and_commit(self) -> None:
        self._checkpoint()
        self._commit()

    def _checkpoint(self) -> None:
        if self._ckpt is None:
            return
        with self.lock:
            state = {"engine": self.engine.state(),
                     "positions": [[t, p, o] for (t, p), o in self._covered().items()],
                     "committed": [[t, p, o] for (t, p), o in self._known_committed.items()],
                     "saved_at": self.clock()}
        try:
            self._ckpt.save(state)
            self.status.checkpoints["ok"] += 1
            self.status.last_checkpoint = self.clock()
        except Exception as err:
            self.status.checkpoints["failed"] += 1
            log.error("checkpoint write failed: %s", err)

    def _covered(self) -> dict[TopicPartition, int]:
        """Per partition, the offset below which every record is in the state: what was
        processed now, or earlier (restored, or before a revocation), whichever is further.
        A partition revoked, or assigned but not read yet, keeps its earlier position."""
        covered = dict(self._skip_below)
        for source in (self._revoked_at, self._tracker.positions()):
            for tp, pos in source.items():
                covered[tp] = max(pos, covered.get(tp, pos))
        return covered

    def _restore(self) -> None:
        if self._ckpt is None:
            return
        try:
            state = self._ckpt.load()
        except CheckpointCorrupt as err:
            self.status.checkpoint_corrupt += 1
            log.error("checkpoint is corrupt, starting clean: %s", err)
            return
        if state is None:
            return
        with self.lock:
            self.engine.restore(state["engine"])
        for t, p, o in state.get("positions", []):
            self._skip_below[(t, int(p))] = int(o)
        self._legacy_checkpoint = "committed" not in state
        for t, p, o in state.get("committed", []):
            self._known_committed[(t, int(p))] = int(o)
        log.info("state restored from %s (%d partition positions)", self._ckpt.path,
                 len(self._skip_below))

    def _on_assign(self, tps: list[TopicPartition]) -> None:
        if self._link_lost:  # see _revoked_at
            self._revoked_at.clear()
            self._link_lost = False
        for tp in tps:
            self._tracker.assign(tp, None)
            self._committed_at_assign.pop(tp, None)
        self.status.assigned = sorted(set(self.status.assigned) | set(tps))
        log.info("partitions assigned: %s", ", ".join(f"{t}[{p}]" for t, p in sorted(tps)) or "-")

    def _on_revoke(self, tps: list[TopicPartition]) -> None:
        if tps:
            if self._ckpt is not None:
                self._checkpoint()
            self._commit()
        positions = self._tracker.positions()
        for tp in tps:
            if tp in positions and not self._link_lost:
                self._revoked_at[tp] = max(positions[tp], self._revoked_at.get(tp, -1))
            self._skip_checked.discard(tp)  # check against the log's end again if it returns
            self._tracker.revoke(tp)
            self.status.lag.pop(tp, None)
            self._committed_at_assign.pop(tp, None)
        self.status.assigned = sorted(set(self.status.assigned) - set(tps))
        log.info("partitions revoked: %s", ", ".join(f"{t}[{p}]" for t, p in sorted(tps)) or "-")

    def _update_lag(self) -> None:
        if self._consumer is None or not self.status.connected:
            return
        tps = self._consumer.assignment()
        if not tps:
            return
        try:
            ends = self._consumer.end_offsets(tps)
        except Exception as err:
            log.debug("lag update failed: %s", err)
            return
        positions = self._tracker.positions()
        lag: dict[TopicPartition, int] = {}
        for tp, end in ends.items():
            pos = positions.get(tp)
            if pos is None:
                if tp not in self._committed_at_assign:
                    if not self._probe.reachable:
                        return  # each call would wait out its timeout
                    try:
                        self._committed_at_assign[tp] = self._consumer.committed(tp)
                    except Exception as err:
                        log.debug("committed offset of %s[%d] unknown: %s", tp[0], tp[1], err)
                        continue
                committed = self._committed_at_assign[tp]
                pos = committed if committed is not None else 0
            lag[tp] = max(0, end - pos)
        self.status.lag = lag

    def _shutdown(self) -> None:
        log.info("stopping: final checkpoint and commit")
        try:
            if self._ckpt is not None:
                self._checkpoint()
            self._commit()
        finally:
            self._probe.stop()
            if self._dlq is not None:
                try:
                    self._dlq.flush(5.0)
                    self._dlq.close()
                except Exception as err:
                    log.warning("dead-letter producer close failed: %s", err)
            if self._consumer is not None:
                self._consumer.close()
            self.status.connected = False


def batch_summary(status: RuntimeStatus) -> dict[str, Any]:
    """Small dict for the CLI's live line."""
    return {"connected": status.connected, "lag": sum(status.lag.values())}
