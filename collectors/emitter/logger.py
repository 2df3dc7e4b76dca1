"""`PredictionLogger`: serving code logs predictions, labels and the model's lifecycle
(loads, failed loads, rollouts); a background thread produces them.

The request path only serializes one JSON line, takes a lock for a few list operations
and returns: it never waits for Kafka. Events wait in a bounded buffer (a count and a byte
limit); when the buffer is full the new event is dropped and counted, never the caller
blocked. A sender thread packs predictions and labels into NDJSON messages of their own
topic (count, size and linger limits) and hands them and the sampled images to the Kafka
client. `close()` drains the buffer and flushes the client.
"""

from __future__ import annotations

import atexit
import logging
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client.registry import CollectorRegistry

from collectors.emitter.batching import Batch, NdjsonBatcher
from collectors.emitter.metrics import KINDS, EmitterCollector, EmitterStats
from collectors.emitter.records import (
    encode_event,
    image_headers,
    label_record,
    lifecycle_record,
    prediction_record,
    sniff_image_type,
)
from collectors.emitter.sampling import sampled
from collectors.kafka.client import Headers, Producer, open_producer
from monitor.config import KafkaConfig, TopicsConfig

log = logging.getLogger(__name__)

Kind = Literal["prediction", "image", "label", "lifecycle"]
#: the kinds packed into NDJSON messages; images are sent one per message
BATCHED: tuple[str, ...] = ("prediction", "label", "lifecycle")
#: the lifecycle topic when the config names none (a daemon without one ignores it)
DEFAULT_LIFECYCLE_TOPIC = "lifecycle"


@dataclass(frozen=True, slots=True)
class EmitterSettings:
    """Limits of the logger. Sizes in bytes, times in milliseconds or seconds as named.

    `batch_max_bytes` must stay below the daemon's `limits.max_message_bytes` (1 MiB by
    default) and `batch_max_events` below `limits.max_batch_events` (10,000).
    """

    batch_max_events: int = 100
    batch_max_bytes: int = 512 * 1024
    linger_ms: float = 50.0
    queue_max_events: int = 10_000
    queue_max_bytes: int = 64 * 1024 * 1024
    image_sample_rate: float = 0.0
    image_max_bytes: int = 5_000_000
    close_timeout_s: float = 10.0
    #: Topic names; None takes them from the KafkaConfig (or the contract's defaults).
    predictions_topic: str | None = None
    images_topic: str | None = None
    feedback_topic: str | None = None
    lifecycle_topic: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.batch_max_events <= 10_000:
            raise ValueError("batch_max_events must be in 1..10000")
        if self.batch_max_bytes < 256:
            raise ValueError("batch_max_bytes must be >= 256")
        if self.linger_ms < 0:
            raise ValueError("linger_ms must be >= 0")
        if self.queue_max_events < 1 or self.queue_max_bytes < 1:
            raise ValueError("queue_max_events and queue_max_bytes must be >= 1")
        if not 0.0 <= self.image_sample_rate <= 1.0:
            raise ValueError("image_sample_rate is a fraction in [0, 1]")


# One buffered item: (kind, payload, headers, key, size in bytes).
_Item = tuple[str, bytes, Headers, bytes | None, int]


class PredictionLogger:
    """Logs predictions (and sampled images) and labels to the visionmon topics without
    blocking.

    `kafka` is a `KafkaConfig` (the logger opens, flushes and closes its own producer,
    with whichever backend the config names) or an open `Producer` (flushed on close but
    left open). Metrics go to `registry` when one is given, else to a private registry
    (`self.registry`); never to prometheus_client's global one.
    """

    def __init__(self, kafka: KafkaConfig | Producer, settings: EmitterSettings | None = None,
                 *, registry: CollectorRegistry | None = None, deployment: str | None = None,
                 clock: Callable[[], float] = time.time, close_at_exit: bool = True) -> None:
        self.settings = settings or EmitterSettings()
        topics = kafka.topics if isinstance(kafka, KafkaConfig) else TopicsConfig()
        self.predictions_topic = self.settings.predictions_topic or topics.predictions
        self.images_topic = self.settings.images_topic or topics.images
        self.feedback_topic = self.settings.feedback_topic or topics.feedback
        self.lifecycle_topic = (self.settings.lifecycle_topic or topics.lifecycle
                                or DEFAULT_LIFECYCLE_TOPIC)
        self._batch_topics = {"prediction": self.predictions_topic,
                              "label": self.feedback_topic, "lifecycle": self.lifecycle_topic}
        self._deployment = deployment
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: deque[_Item] = deque()
        self._pending_events = 0
        self._pending_bytes = 0
        self._logged = dict.fromkeys(KINDS, 0)
        self._sent = dict.fromkeys(KINDS, 0)
        self._messages = dict.fromkeys(KINDS, 0)
        self._dropped: dict[tuple[str, str], int] = {}
        self._unsampled = 0
        self._warned: dict[str, float] = {}
        self._closed = False
        self._stopping = False
        self._flush_now = False
        self._wake = threading.Event()
        self.registry = registry if registry is not None else CollectorRegistry()
        self._collector = EmitterCollector(self.stats)
        self.registry.register(self._collector)  # a second logger in one registry: error
        if isinstance(kafka, KafkaConfig):
            try:
                self._producer: Producer = open_producer(kafka, client_id="visionmon-emitter")
            except Exception:
                self.registry.unregister(self._collector)
                raise
            self._owns_producer = True
        else:
            self._producer = kafka
            self._owns_producer = False
        self._thread = threading.Thread(target=self._run, name="visionmon-emitter",
                                        daemon=True)
        self._thread.start()
        if close_at_exit:
            ref = weakref.ref(self)
            self._atexit: Callable[[], None] | None = lambda: _close_if_alive(ref)
            atexit.register(self._atexit)
        else:
            self._atexit = None

    # ------------------------------------------------------------------ request path

    def wants_image(self, request_id: str) -> bool:
        """Whether `log()` would keep this request's image (skip encoding it if not)."""
        return sampled(request_id, self.settings.image_sample_rate)

    def log(self, request_id: str, model: str, version: str, *, probs: Any = None,
            pred: int | str | None = None, confidence: float | None = None,
            topk: Sequence[tuple[int | str, float]] | Mapping[str, float] | None = None,
            latency_s: float | None = None, latency_ms: float | None = None,
            status: str = "ok", image_bytes: bytes | None = None,
            image_content_type: str | None = None, ts: float | None = None,
            segments: Mapping[str, str] | None = None) -> bool:
        """Buffer one prediction (and its image when sampling selects it); never blocks.

        Give `probs` (the full distribution), or `pred` with an optional `confidence`,
        and/or `topk`; `latency_s` (seconds) or `latency_ms` (milliseconds); `ts` in
        epoch seconds (default: now); `segments` says where the request came from
        (`{"camera": "c12"}`), sent with the prediction and as its image's
        `segment.<key>` headers. Returns True when the prediction was buffered,
        False when it was dropped (counted by reason; invalid arguments are dropped as
        `invalid` and logged, never raised, so monitoring cannot fail a request).
        """
        when = self._clock() if ts is None else ts
        try:
            line = encode_event(prediction_record(
                request_id, model, version, when, probs=probs, pred=pred,
                confidence=confidence, topk=topk, latency_s=latency_s, latency_ms=latency_ms,
                status=status, deployment=self._deployment, segments=segments))
        except (TypeError, ValueError) as err:
            self._count_drop("prediction", "invalid", 1)
            self._warn(f"prediction for {request_id!r} not logged: {err}")
            return False
        image: _Item | None = None
        if image_bytes is not None:
            if self.wants_image(request_id):
                data = bytes(image_bytes)
                ctype = image_content_type or sniff_image_type(data)
                image = ("image", data,
                         image_headers(request_id, model, version, when, ctype, segments),
                         request_id.encode(), len(data))
            else:
                with self._lock:
                    self._unsampled += 1
        refused = self._offer(("prediction", line, (), None, len(line)),
                              self.settings.batch_max_bytes)
        if image is not None:
            if refused is None:
                self._offer(image, self.settings.image_max_bytes)
            else:  # no image without its prediction
                self._count_drop("image", refused, 1)
        self._wake_if_full()
        return refused is None

    def label(self, request_id: str, label: int | str, *, source: str | None = None,
              model: str | None = None, ts: float | None = None) -> bool:
        """Buffer one ground-truth label for an earlier (or later) request; never blocks.

        `label` is a class index or name; `source` says who gave it (free text); `model`
        lets the daemon check the label on arrival; `ts` in epoch seconds (default: now).
        Labels go to the feedback topic in NDJSON messages of their own, under the same
        buffer, limits and drop counting as `log()` (kind `label`). Returns True when
        buffered, False when dropped (invalid arguments as `invalid`, never raised).
        """
        when = self._clock() if ts is None else ts
        return self._offer_line("label", lambda: label_record(
            request_id, label, when, source=source, model=model), f"label for {request_id!r}")

    # ------------------------------------------------------------------ lifecycle

    def model_loaded(self, model: str, version: str, *, sha256: str, load_seconds: float,
                     host: str | None = None, ts: float | None = None) -> bool:
        """Report that this replica loaded `version` of `model` from the artifact whose
        SHA-256 is `sha256` (64 hex digits; `file_sha256(path)` computes it) in
        `load_seconds` seconds. `host` defaults to this machine's name. Never blocks;
        returns False when dropped (as `log()`)."""
        return self._lifecycle("loaded", model, version, ts, host=host or socket.gethostname(),
                               sha256=sha256, load_seconds=load_seconds)

    def model_load_failed(self, model: str, version: str, reason: str, *,
                          detail: str | None = None, host: str | None = None,
                          ts: float | None = None) -> bool:
        """Report that this replica failed to load `version`: `reason` is one of not_found,
        corrupt, checksum_mismatch, out_of_memory, timeout, incompatible, other (docs/events.md);
        `detail` free text such as the error message."""
        return self._lifecycle("load_failed", model, version, ts,
                               host=host or socket.gethostname(), reason=reason,
                               detail=detail)

    def model_rolled_out(self, model: str, version: str, *, from_version: str | None = None,
                         detail: str | None = None, ts: float | None = None) -> bool:
        """Report that `version` was rolled out (replacing `from_version`), from the
        deploy step: a "recent deploy" on the on-call dashboard."""
        return self._lifecycle("rolled_out", model, version, ts, from_version=from_version,
                               detail=detail)

    def model_rolled_back(self, model: str, version: str, *,
                          from_version: str | None = None, detail: str | None = None,
                          ts: float | None = None) -> bool:
        """Report that the deployment was rolled back to `version` (from `from_version`)."""
        return self._lifecycle("rolled_back", model, version, ts, from_version=from_version,
                               detail=detail)

    def _lifecycle(self, kind: str, model: str, version: str, ts: float | None,
                   **fields: Any) -> bool:
        when = self._clock() if ts is None else ts
        return self._offer_line("lifecycle", lambda: lifecycle_record(
            kind, model, version, when, **fields),
            f"lifecycle event {kind} of {model!r} {version!r}")

    def _offer_line(self, kind: str, record: Callable[[], Mapping[str, Any]], what: str
                    ) -> bool:
        """Buffer one NDJSON line of a batched kind built by `record`; a record that cannot
        be built (misuse) is dropped as `invalid` and warned about, never raised."""
        try:
            line = encode_event(record())
        except (TypeError, ValueError) as err:
            self._count_drop(kind, "invalid", 1)
            self._warn(f"{what} not logged: {err}")
            return False
        refused = self._offer((kind, line, (), None, len(line)), self.settings.batch_max_bytes)
        self._wake_if_full()
        return refused is None

    def _wake_if_full(self) -> None:
        """Wake the sender once a message's worth of events waits (else it lingers)."""
        if self._pending_events >= self.settings.batch_max_events and not self._wake.is_set():
            self._wake.set()

    def _offer(self, item: _Item, max_size: int) -> str | None:
        """Buffer one item; returns None, or why it was dropped (counted)."""
        kind, size = item[0], item[4]
        s = self.settings
        with self._lock:
            if self._closed:
                reason = "closed"
            elif size > max_size:
                reason = "too_large"
            elif (self._pending_events >= s.queue_max_events
                  or self._pending_bytes + size > s.queue_max_bytes):
                reason = "queue_full"
            else:
                self._queue.append(item)
                self._pending_events += 1
                self._pending_bytes += size
                self._logged[kind] += 1
                return None
            key = (kind, reason)
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return reason

    # ------------------------------------------------------------------ sender thread

    def _run(self) -> None:
        s = self.settings
        linger = s.linger_ms / 1000.0
        batchers = {kind: NdjsonBatcher(s.batch_max_events, s.batch_max_bytes)
                    for kind in BATCHED}
        while True:
            opened = [b.opened_at for b in batchers.values() if b.opened_at is not None]
            timeout = linger if not opened else max(0.0, min(opened) + linger - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()
            while True:
                chunk = self._take(s.batch_max_events)
                if not chunk:
                    break
                for item in chunk:
                    self._handle(item, batchers)
            for kind, batcher in batchers.items():
                started = batcher.opened_at
                if started is not None and (self._stopping or self._flush_now
                                            or time.monotonic() - started >= linger):
                    batch = batcher.flush()
                    if batch is not None:
                        self._send_batch(kind, batch)
            self._flush_now = False
            if self._stopping and not self._queue:
                return

    def _take(self, n: int) -> list[_Item]:
        with self._lock:
            q = self._queue
            return [q.popleft() for _ in range(min(n, len(q)))]

    def _handle(self, item: _Item, batchers: Mapping[str, NdjsonBatcher]) -> None:
        kind, value, headers, key, _ = item
        try:
            batcher = batchers.get(kind)
            if batcher is not None:
                for batch in batcher.add(value, time.monotonic()):
                    self._send_batch(kind, batch)
            else:
                self._send_image(value, headers, key)
        except Exception:  # the sender thread must survive anything
            log.exception("emitter: unexpected error; item dropped")
            self._release(kind, 1, len(value), "send_error")

    def _send_batch(self, kind: str, batch: Batch) -> None:
        """Produce one NDJSON message of predictions or labels to its topic."""
        size = len(batch.value) - (batch.events - 1)
        topic = self._batch_topics[kind]
        try:
            self._producer.send(topic, batch.value)
        except Exception as err:
            self._warn(f"emitter: {topic} message not sent: {err!r}")
            self._release(kind, batch.events, size, "send_error")
        else:
            self._release(kind, batch.events, size, None)

    def _send_image(self, data: bytes, headers: Headers, key: bytes | None) -> None:
        try:
            self._producer.send(self.images_topic, data, headers, key)
        except Exception as err:
            self._warn(f"emitter: image not sent: {err!r}")
            self._release("image", 1, len(data), "send_error")
        else:
            self._release("image", 1, len(data), None)

    def _release(self, kind: str, events: int, size: int, dropped: str | None) -> None:
        with self._lock:
            self._pending_events -= events
            self._pending_bytes -= size
            if dropped is None:
                self._sent[kind] += events
                self._messages[kind] += 1
            else:
                key = (kind, dropped)
                self._dropped[key] = self._dropped.get(key, 0) + events

    def _warn(self, message: str, every_s: float = 60.0) -> None:
        """Log a warning at most once a minute per message prefix (no per-record logging)."""
        key = message[:40]
        now = time.monotonic()
        if now - self._warned.get(key, -every_s) >= every_s:
            self._warned[key] = now
            log.warning("%s", message)

    def _count_drop(self, kind: str, reason: str, n: int) -> None:
        with self._lock:
            self._dropped[(kind, reason)] = self._dropped.get((kind, reason), 0) + n

    # ------------------------------------------------------------------ control

    def stats(self) -> EmitterStats:
        """A consistent snapshot of the counters (also what /metrics exports)."""
        with self._lock:
            return EmitterStats(dict(self._logged), dict(self._dropped), dict(self._sent),
                                dict(self._messages), self._unsampled, self._pending_events,
                                self._pending_bytes)

    def alive(self) -> bool:
        """Whether the sender thread runs (for liveness probes)."""
        return self._thread.is_alive()

    def has_room(self) -> bool:
        """Whether the buffer can take another event now (for readiness probes)."""
        s = self.settings
        return (not self._closed and self._pending_events < s.queue_max_events
                and self._pending_bytes < s.queue_max_bytes)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Send everything buffered now and wait for the Kafka client to deliver it.

        Returns False when the buffer did not empty within `timeout_s` seconds.
        """
        deadline = time.monotonic() + timeout_s
        self._flush_now = True
        self._wake.set()
        while self._pending_events > 0 and time.monotonic() < deadline:
            self._flush_now = True
            self._wake.set()
            time.sleep(0.005)
        self._producer.flush(max(0.1, deadline - time.monotonic()))
        return self._pending_events == 0

    def close(self, timeout_s: float | None = None) -> None:
        """Stop accepting events, drain the buffer, flush (and close an owned) producer.

        Whatever is still buffered after `timeout_s` seconds (default
        `settings.close_timeout_s`) is dropped and counted as `shutdown`. Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._atexit is not None:
            atexit.unregister(self._atexit)
        timeout = self.settings.close_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._lock:
                left = list(self._queue)
                self._queue.clear()
            for kind, value, _, _, _ in left:
                self._release(kind, 1, len(value), "shutdown")
            log.warning("emitter: %d buffered events dropped at close (Kafka too slow)",
                        len(left))
        try:
            self._producer.flush(max(0.1, deadline - time.monotonic()))
            if self._owns_producer:
                self._producer.close()
        except Exception as err:
            log.warning("emitter: flushing the Kafka client at close failed: %r", err)
        if self._owns_producer:
            # Release the client here, where waiting is expected: left to the garbage
            # collector, librdkafka's destructor would block whichever thread runs it.
            self._producer = _ClosedProducer()

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ClosedProducer:
    """Stands in for a closed client: nothing is sent after `close()`."""

    def send(self, topic: str, value: bytes, headers: Headers = (),
             key: bytes | None = None, partition: int | None = None) -> None:
        raise RuntimeError("the logger is closed")

    def flush(self, timeout_s: float = 10.0) -> None:
        pass

    def close(self) -> None:
        pass


def _close_if_alive(ref: weakref.ReferenceType[PredictionLogger]) -> None:
    logger = ref()
    if logger is not None:
        logger.close()


