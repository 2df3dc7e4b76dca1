"""The consumer loop: poll a batch, decode, apply to the engine, dead-letter the bad,
checkpoint, then commit the highest contiguous processed offset + 1 per partition.

What to count, skip and commit across restarts, rebalances and rewinds is decided by the
position ledger (`collectors/ledger.py`); this loop only does the I/O around it."""

from __future__ import annotations

import bisect
import logging
import math
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

from collectors.checkpoint import (
    CheckpointCorrupt,
    CheckpointHealth,
    CheckpointStore,
    encode_parts,
    failure_reason,
)
from collectors.checkpoint_format import (
    CheckpointRefused,
    OwnerCheck,
    Restored,
    compose,
    identity_of,
    migrate,
    models_only_in,
    parse,
    refusal,
    saved_identity,
)
from collectors.kafka.client import (
    Consumer,
    KafkaUnavailable,
    Producer,
    Record,
    TopicPartition,
    open_consumer,
    open_producer,
)
from collectors.ledger import (
    AskCommitted,
    CountBatch,
    PositionCheck,
    PositionLedger,
    Remembered,
    Rewind,
)
from collectors.records import (
    FeedbackSink,
    LifecycleSink,
    RecordDecoders,
    RejectionLog,
    TopicNames,
    apply_decoded,
    decode_records,
)
from monitor.catalog import BATCH_SECONDS_BUCKETS
from monitor.config import LoadedConfig
from monitor.engine import Engine, EngineCapture
from monitor.events import ImageEvent, Rejection
from monitor.series_cap import SeriesCap
from monitor.snapshot import HistogramValue, Series, SnapshotBuilder

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class ImageSink(Protocol):
    """Takes sampled images; must never block the consumer loop."""

    def submit(self, events: Sequence[ImageEvent]) -> None: ...


@dataclass(slots=True)
class BatchSeconds:
    """Cumulative histogram of the time (s) to decode and apply one polled batch, in the
    catalog's buckets: per-bucket counts (the last is +Inf) and their sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BATCH_SECONDS_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BATCH_SECONDS_BUCKETS, seconds)] += 1  # first le >= s
        self.total += seconds

    def value(self) -> HistogramValue:
        return HistogramValue(tuple(map(float, self.counts)), self.total)


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
    batch_seconds: BatchSeconds = field(default_factory=BatchSeconds)


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


@dataclass(frozen=True, slots=True)
class DaemonCapture:
    """A daemon's snapshot before its statistics: the engine's copy and the loop's series.
    Shares nothing that ingestion changes, so it renders anywhere (another thread or the
    render worker process)."""

    engine: EngineCapture
    runtime: Mapping[str, Series]

    def render(self, cap: SeriesCap) -> dict[str, Series]:
        """The series, each metric within `cap`'s label sets."""
        b = SnapshotBuilder()
        b.merge(self.engine.render())
        b.merge(self.runtime)
        return cap.apply(b.build())


class Daemon:
    """One consumer-group member over the input topics: a thin loop around the position
    ledger (`collectors/ledger.py`), which decides what to count, skip and commit.
    `stop()` is safe from a signal."""

    def __init__(self, loaded: LoadedConfig, engine: Engine, clock: Clock = time.time,
                 consumer_factory: Callable[[], Consumer] | None = None,
                 producer_factory: Callable[[], Producer] | None = None,
                 feedback_sink: FeedbackSink | None = None,
                 lifecycle_sink: LifecycleSink | None = None,
                 image_sink: ImageSink | None = None,
                 extra_ready: Callable[[], tuple[bool, str]] | None = None,
                 reset_state: bool = False) -> None:
        """Raises CheckpointRefused when `state.checkpoint_dir` holds another group's,
        topics' or model's state (unless `reset_state` moves it aside first)."""
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
        self._ledger = PositionLedger()
        #: the cap on label sets per metric of this daemon's snapshots
        self.series_cap = SeriesCap(cfg.limits.max_series_per_metric)
        self._feedback_sink = feedback_sink
        self._lifecycle_sink = lifecycle_sink
        self._image_sink = image_sink
        self._extra_ready = extra_ready
        self._probe = BrokerProbe(cfg.kafka.bootstrap_servers,
                                  on_change=lambda _now: self._update_connected())
        self._decoder_failures = 0
        self._decoder_failure_logged = -math.inf
        self._rejection_log = RejectionLog()
        self._decoders = RecordDecoders.of(loaded)
        self._topic_names = TopicNames.of(loaded)
        self.topics = self._topic_names.all()
        self._ckpt_interval = cfg.state.checkpoint_interval_seconds
        self._ckpt_health = CheckpointHealth()
        self._ckpt: CheckpointStore | None = None
        #: whose state this is: checked against a restored checkpoint, recorded in new ones
        self._owner = OwnerCheck(identity_of(loaded))
        #: the checkpoint belongs to another cluster: neither checkpoint nor commit
        self._refused = False
        #: the checkpoint `run()` restores (loaded and checked here, so a refusal comes
        #: before anything starts)
        self._saved: Restored | None = None
        if cfg.state.checkpoint_dir:
            self._ckpt = CheckpointStore(cfg.state.checkpoint_dir)
            if reset_state:
                self._reset_state()
            self._saved = self._load_checkpoint()

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
        failing_s = self._ckpt_health.failing_for(self.clock())
        if failing_s >= 3 * self._ckpt_interval:
            return False, (f"checkpoint writes have failed for {failing_s:.0f}s "
                           f"({self._ckpt_health.last_reason}; see the log)")
        if not self.status.connected:
            return False, "not connected to Kafka"
        if not self.status.assigned:
            return False, "no partitions assigned yet"
        if self._extra_ready is not None:
            return self._extra_ready()
        return True, "ready"

    # --- snapshot ---------------------------------------------------------------
    def snapshot(self) -> dict[str, Series]:
        """The engine's and the loop's series, each metric within
        `limits.max_series_per_metric` label sets (`SeriesCap`)."""
        return self.capture().render(self.series_cap)

    def capture(self) -> DaemonCapture:
        """What a snapshot needs: the engine's copy (taken under the lock; the statistics
        are computed by `render`, outside it, so a scrape never stalls the consumer loop)
        and the loop's own series (cheap)."""
        with self.lock:
            captured = self.engine.capture()
        return DaemonCapture(captured, self._runtime_series())

    def _runtime_series(self) -> dict[str, Series]:
        b = SnapshotBuilder()
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
        for topic in self.topics:
            b.set("visionmon_duplicates_skipped_total", (topic,),
                  float(self._ledger.duplicates[topic]))
        b.set("visionmon_poll_batch_seconds", (), s.batch_seconds.value())
        for outcome, n in list(s.commits.items()):
            b.set("visionmon_commits_total", (outcome,), float(n))
        for outcome, n in list(s.dead_letters.items()):
            b.set("visionmon_dead_letter_records_total", (outcome,), float(n))
        for outcome, n in list(s.checkpoints.items()):
            b.set("visionmon_checkpoint_writes_total", (outcome,), float(n))
        if self._ckpt is not None:
            b.set("visionmon_checkpoint_corrupt_total", (), float(s.checkpoint_corrupt))
            for reason, n in list(self._ckpt_health.failures.items()):
                b.set("visionmon_checkpoint_failures_total", (reason,), float(n))
        if s.last_checkpoint is not None:
            b.set("visionmon_last_checkpoint_timestamp_seconds", (), s.last_checkpoint)
        return b.build()

    # --- the loop -----------------------------------------------------------------
    def run(self) -> None:
        """Consume until `stop()`; then drain, checkpoint, commit and close. Raises
        CheckpointRefused when the broker's cluster is not the restored checkpoint's."""
        self.status.alive_at = self.clock()
        self._restore()
        self._probe.start()
        self._consumer = self._open_consumer()
        if self._consumer is None:
            self._probe.stop()
            return
        try:
            self._check_cluster(final=False)
            if self._kcfg.dead_letter_topic:
                try:
                    self._dlq = self._producer_factory()
                except Exception as err:
                    log.error("dead-letter producer could not start: %s", err)
            self._consumer.subscribe(list(self.topics), self._on_assign, self._on_revoke)
            self._loop(self._consumer)
        finally:
            self._shutdown()

    def _open_consumer(self) -> Consumer | None:
        """A consumer, retried with backoff until the broker answers or `stop()`."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                return self._consumer_factory()
            except Exception as err:  # broker not reachable yet: retry with backoff
                log.warning("kafka consumer could not start (%s); retrying in %.1fs", err, backoff)
                self.status.alive_at = self.clock()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        return None

    def _loop(self, consumer: Consumer) -> None:
        last_commit = last_lag = last_ckpt = self.clock()
        while not self._stop.is_set():
            self.status.alive_at = self.clock()
            self._update_connected()
            try:
                records = consumer.poll(self._kcfg.poll_timeout_ms / 1e3,
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
            elif now - last_ckpt >= self._ckpt_interval:
                self._checkpoint_and_commit()
                last_ckpt = now
            if now - last_lag >= self._kcfg.lag_interval_seconds:
                self._update_lag()
                last_lag = now

    def _update_connected(self) -> None:
        was = self.status.connected
        now = self._probe.reachable
        if not now:
            self._ledger.link_lost()
        if now != was:
            log.log(logging.INFO if now else logging.WARNING, "kafka connection %s",
                    "regained" if now else "lost")
        self.status.connected = now

    def _process(self, records: Sequence[Record]) -> None:
        t0 = time.perf_counter()
        now = self.clock()
        self._check_cluster(final=True)
        batch = self._count(records)
        for chunk in apply_chunks(batch.records):
            decoded = decode_records(chunk, self._topic_names, self._decoders, now)
            if decoded.failures:
                self._log_decoder_failures(decoded.failures, now)
            with self.lock:
                apply_decoded(self.engine, decoded, self._topic_names, self._feedback_sink,
                              self._lifecycle_sink)
            if decoded.images and self._image_sink is not None:
                self._image_sink.submit(decoded.images)
            if decoded.rejections:
                self._rejection_log.note(decoded.rejections, now)
                self._dead_letter(decoded.rejections)
        self._ledger.applied(batch)
        self.status.batch_seconds.observe(time.perf_counter() - t0)

    def _count(self, records: Sequence[Record]) -> CountBatch:
        """The ledger's decision on a batch, once it has the committed offsets it asks for."""
        decision = self._ledger.polled(records)
        if isinstance(decision, AskCommitted):
            _log_rewinds(decision.rewound)
            self._ask_committed(decision.partitions)
            decision = self._ledger.polled(records)
            if not isinstance(decision, CountBatch):
                raise RuntimeError(f"the ledger asked again about {decision.partitions}")
        _log_rewinds(decision.rewound)
        return decision

    def _ask_committed(self, tps: Sequence[TopicPartition]) -> None:
        """Ask the broker for the group's committed offsets the ledger needs."""
        if self._consumer is None:
            return
        for tp in tps:
            try:
                committed = self._consumer.committed(tp)
            except Exception as err:
                log.debug("committed offset of %s[%d] unknown: %s", tp[0], tp[1], err)
                check = self._ledger.unanswered(tp)
            else:
                check = self._ledger.answered(tp, committed)
            if check is not None:
                _log_position_check(check)

    def _log_decoder_failures(self, failures: Sequence[str], now: float) -> None:
        """A decoder bug is refused and counted per record; logged at most once a minute."""
        self._decoder_failures += len(failures)
        level = logging.DEBUG
        if now - self._decoder_failure_logged >= 60.0:
            level, self._decoder_failure_logged = logging.ERROR, now
        log.log(level, "%s (%d so far)", failures[-1], self._decoder_failures)

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
        if self._consumer is None or self._refused or not self._probe.reachable:
            return  # pending offsets stay tracked and are committed once it is back
        points = self._ledger.to_commit()
        if not points:
            return
        if self._dlq is not None:
            try:
                self._dlq.flush(5.0)  # dead letters are durable before their offsets commit
            except Exception as err:
                log.warning("dead-letter flush failed: %s", err)
        try:
            self._consumer.commit(points)
            self._ledger.commit_succeeded(points)
            self.status.commits["ok"] += 1
        except Exception as err:
            self.status.commits["failed"] += 1
            log.warning("offset commit failed (will retry): %s", err)

    def _checkpoint_and_commit(self) -> None:
        """Commit only what a checkpoint holds: while writes fail, offsets stay where the
        last good checkpoint left them, so a restart re-reads (at-least-once) instead of
        losing what was counted since."""
        if self._checkpoint():
            self._commit()

    def _checkpoint(self) -> bool:
        """Write the state; True when it is durable (or no checkpoint is configured)."""
        if self._ckpt is None:
            return True
        if self._refused:
            return False
        try:
            with self.lock:  # encoded under the lock: the inference thread changes the state
                positions = self._ledger.checkpoint()
                parts = encode_parts(compose(self._owner.recorded(), self.engine.state(),
                                             positions.covered, positions.committed,
                                             self.clock()))
            self._ckpt.write(parts)
        except Exception as err:
            reason = failure_reason(err)
            self.status.checkpoints["failed"] += 1
            if self._ckpt_health.failed(reason, self.clock()):
                log.error("checkpoint write failed (%s): %s (%d failed writes so far; logged "
                          "at most once a minute)", reason, err,
                          sum(self._ckpt_health.failures.values()))
            return False
        self._ckpt_health.succeeded()
        self.status.checkpoints["ok"] += 1
        self.status.last_checkpoint = self.clock()
        return True

    def _reset_state(self) -> None:
        """`--reset-state`: move the old checkpoint aside (kept, never loaded) and start
        with empty state."""
        assert self._ckpt is not None
        aside = self._ckpt.set_aside("reset")
        if aside is None:
            log.info("--reset-state: no checkpoint in %s, starting with empty state",
                     self._ckpt.dir)
        else:
            log.warning("--reset-state: moved the checkpoint %s aside to %s; starting with "
                        "empty state", self._ckpt.path, aside)

    def _load_checkpoint(self) -> Restored | None:
        """The checkpoint to restore, in the current format and checked against this
        config's group, topics and models (its cluster is checked once the broker tells
        it). Raises CheckpointRefused."""
        assert self._ckpt is not None
        try:
            state = self._ckpt.load()
        except CheckpointCorrupt as err:
            self.status.checkpoint_corrupt += 1
            log.error("checkpoint is corrupt, starting clean: %s", err)
            return None
        if state is None:
            return None
        state = migrate(state, self._ckpt.path)
        saved = saved_identity(state)
        if saved is None:
            log.info("%s does not record whose state it is (written by an older visionmon): "
                     "restoring it as this group's", self._ckpt.path)
        diffs = self._owner.loaded(saved)
        if diffs:
            raise CheckpointRefused(refusal(self._ckpt.path, diffs, self.loaded.path))
        if saved is not None:
            dropped, added = models_only_in(saved, identity_of(self.loaded))
            if dropped:
                log.warning("%s: models %s are no longer configured: their state is dropped",
                            self._ckpt.path, ", ".join(dropped))
            if added:
                log.info("%s: models %s are new: they start with empty state",
                         self._ckpt.path, ", ".join(added))
        return parse(state)

    def restore(self) -> None:
        """Load the checkpoint read at start into the statistics, once (`run` does it when
        nobody did before): whoever reads the state before the loop starts, as the first
        snapshot does, sees the restored counts, not empty ones."""
        self._restore()

    def _restore(self) -> None:
        saved, self._saved = self._saved, None
        if saved is None or self._ckpt is None:
            return
        with self.lock:
            self.engine.restore(saved.engine)
        self._ledger.restored(saved.positions, saved.committed)
        log.info("state restored from %s (%d partition positions)", self._ckpt.path,
                 len(saved.positions))

    def _check_cluster(self, final: bool) -> None:
        """Compare the broker's cluster id with the restored checkpoint's: at start, and
        before the first batch is applied if the broker had not told it yet (`final`)."""
        if self._ckpt is None or not self._owner.cluster_pending:
            return
        ask = getattr(self._consumer, "cluster_id", None)  # a test double may lack it
        diffs = self._owner.cluster(ask() if ask is not None else None, final)
        if diffs:
            self._refused = True
            raise CheckpointRefused(refusal(self._ckpt.path, diffs, self.loaded.path))
        if self._owner.unverified_cluster is not None:
            log.warning("the broker does not report its cluster id: cannot check that it is "
                        "cluster %s, whose state %s holds", self._owner.unverified_cluster,
                        self._ckpt.path)

    def _on_assign(self, tps: list[TopicPartition]) -> None:
        self._ledger.assigned(tps)
        self.status.assigned = sorted(set(self.status.assigned) | set(tps))
        log.info("partitions assigned: %s", ", ".join(f"{t}[{p}]" for t, p in sorted(tps)) or "-")

    def _on_revoke(self, tps: list[TopicPartition]) -> None:
        if tps:
            self._checkpoint_and_commit()
        self._ledger.revoked(tps)
        for tp in tps:
            self.status.lag.pop(tp, None)
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
        lag = self._ledger.lag(ends)
        if lag.ask:
            if not self._probe.reachable:
                return  # each call would wait out its timeout
            self._ask_committed(lag.ask)
            lag = self._ledger.lag(ends)
        self.status.lag = lag.records

    def _shutdown(self) -> None:
        log.info("stopping: final checkpoint and commit")
        try:
            self._checkpoint_and_commit()
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


def _log_rewinds(rewinds: Sequence[Rewind]) -> None:
    for r in rewinds:
        log.warning("%s[%d]: offset went back from %d to %d (partition recreated?): "
                    "tracking it afresh", r.tp[0], r.tp[1], r.was, r.now)


def _log_position_check(check: PositionCheck) -> None:
    (topic, part), pos = check.tp, check.position
    if check.outcome is Remembered.DROPPED:
        log.warning("%s[%d]: the group has no committed offset, so the remembered position %d "
                    "may belong to a log that is gone (broker restarted empty, topic "
                    "recreated): counting its records as new", topic, part, pos)
    elif check.outcome is Remembered.KEPT_NEVER_COMMITTED:
        log.info("%s[%d]: the group has no committed offset yet and none was ever seen "
                 "committed (stopped before its first commit): keeping the remembered "
                 "position %d", topic, part, pos)
    elif check.outcome is Remembered.KEPT_UNANSWERED:
        log.debug("%s[%d]: committed offset unknown; keeping the remembered position %d",
                  topic, part, pos)


def batch_summary(status: RuntimeStatus) -> dict[str, Any]:
    """Small dict for the CLI's live line."""
    return {"connected": status.connected, "lag": sum(status.lag.values())}
