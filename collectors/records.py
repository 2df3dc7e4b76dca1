"""Kafka records -> typed events -> the engine: the steps shared by the daemon and `replay`.

No consumer, no I/O. `decode_records` sorts each record by topic into predictions,
feedback, images and rejections (each rejection with its record, for the dead-letter
topic) and counts the records read per topic; `apply_decoded` applies such a batch to the
engine in the daemon's order. `RejectionLog` tells the operator about refused records
without a line per record.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Protocol

from collectors.kafka.client import Record
from monitor.config import LoadedConfig
from monitor.engine import Engine
from monitor.events import (
    DecodeLimits,
    FeedbackDecoder,
    FeedbackEvent,
    ImageDecoder,
    ImageEvent,
    ModelClassIndex,
    PredictionDecoder,
    PredictionEvent,
    Rejection,
    RejectReason,
)
from monitor.lifecycle_events import LifecycleDecoder, LifecycleEvent

log = logging.getLogger(__name__)


class FeedbackSink(Protocol):
    def apply_feedback(self, events: Sequence[FeedbackEvent]) -> None: ...


class LifecycleSink(Protocol):
    def apply_lifecycle(self, events: Sequence[LifecycleEvent]) -> None: ...


@dataclass(frozen=True, slots=True)
class TopicNames:
    predictions: str
    images: str
    feedback: str
    #: None: the lifecycle topic is not read
    lifecycle: str | None = None

    @classmethod
    def of(cls, loaded: LoadedConfig) -> TopicNames:
        t = loaded.config.kafka.topics
        return cls(t.predictions, t.images, t.feedback, t.lifecycle)

    def all(self) -> tuple[str, ...]:
        """The topics read: the three, and the lifecycle topic when configured."""
        three = (self.predictions, self.images, self.feedback)
        return three if self.lifecycle is None else (*three, self.lifecycle)


@dataclass(frozen=True, slots=True)
class RecordDecoders:
    """The decoders, built from the config exactly as the daemon builds them."""

    predictions: PredictionDecoder
    feedback: FeedbackDecoder
    images: ImageDecoder
    lifecycle: LifecycleDecoder

    @classmethod
    def of(cls, loaded: LoadedConfig) -> RecordDecoders:
        cfg = loaded.config
        index = {name: ModelClassIndex.of(m.classes) for name, m in loaded.models.items()}
        limits = DecodeLimits(cfg.limits.max_message_bytes, cfg.limits.max_batch_events,
                              cfg.limits.max_future_skew_seconds,
                              cfg.limits.max_request_id_chars)
        return cls(PredictionDecoder(index, limits), FeedbackDecoder(index, limits),
                   ImageDecoder(index, cfg.images.max_bytes, limits),
                   LifecycleDecoder(index, limits))


@dataclass(slots=True)
class DecodedRecords:
    """What a list of records decoded into."""

    predictions: list[PredictionEvent] = field(default_factory=list)
    feedback: list[FeedbackEvent] = field(default_factory=list)
    images: list[ImageEvent] = field(default_factory=list)
    lifecycle: list[LifecycleEvent] = field(default_factory=list)
    rejections: list[tuple[Record, Rejection]] = field(default_factory=list)
    consumed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: one line per record a decoder raised on (a bug, refused and counted): the caller
    #: decides how loudly to log them
    failures: list[str] = field(default_factory=list)


def decode_records(records: Iterable[Record], topics: TopicNames, decoders: RecordDecoders,
                   now: float | None = None, into: DecodedRecords | None = None
                   ) -> DecodedRecords:
    """Decode records of the topics read; records of other topics are ignored.

    `now` is the clock the future-skew check compares event times with; None uses each
    record's own timestamp (what `replay` wants: the time the record was written).
    `into` appends to an existing result instead of a new one.
    """
    out = into if into is not None else DecodedRecords()
    if now is not None:
        records = _decode_single_event_runs(list(records), topics, decoders, now, out)
    for r in records:
        at = r.timestamp_ms / 1000.0 if now is None else now
        rejections: list[Rejection] = []
        try:
            if r.topic == topics.predictions:
                events: list[PredictionEvent] = []
                decoders.predictions.decode_into(r.value, at, events, rejections)
                out.predictions.extend(events)
            elif r.topic == topics.feedback:
                d = decoders.feedback.decode(r.value, at)
                out.feedback.extend(d.events)
                rejections = d.rejections
            elif r.topic == topics.images:
                d = decoders.images.decode(r.value, r.headers, at)
                out.images.extend(d.events)
                rejections = d.rejections
            elif r.topic == topics.lifecycle:
                d = decoders.lifecycle.decode(r.value, at)
                out.lifecycle.extend(d.events)
                rejections = d.rejections
            else:
                continue
        except Exception as err:  # a decoder bug must not stop the stream on one record
            out.failures.append(f"decoder failed on {r.topic}[{r.partition}]@{r.offset} "
                                f"({type(err).__name__}: {str(err)[:200]}); record refused")
            rejections = [Rejection(RejectReason.OUT_OF_RANGE,
                                    f"decoder failed: {type(err).__name__}: {str(err)[:200]}",
                                    r.value or b"")]
        out.consumed[r.topic] += 1
        for rej in rejections:
            out.rejections.append((r, rej))
    return out


#: prediction records decoded together by `PredictionDecoder.decode_singles`
SINGLES_CHUNK = 256


def _decode_single_event_runs(records: list[Record], topics: TopicNames,
                              decoders: RecordDecoders, now: float, out: DecodedRecords
                              ) -> list[Record]:
    """Decode prediction records of one event each in chunks, one parser call per chunk;
    returns the records still to decode one by one (other topics, and every chunk with a
    record that is not one valid event, so that its refusals keep their reasons)."""
    names = list(map(itemgetter(0), records))
    if names.count(topics.predictions) == len(names):  # the usual poll: predictions only
        preds, rest = records, []
    else:
        preds = [r for r in records if r.topic == topics.predictions]
        rest = [r for r in records if r.topic != topics.predictions]
    if len(preds) < 2:
        return records
    decode = decoders.predictions.decode_singles
    for i in range(0, len(preds), SINGLES_CHUNK):
        chunk = preds[i:i + SINGLES_CHUNK]
        try:
            events = decode(list(map(itemgetter(3), chunk)), now)
        except Exception:  # a decoder bug: decode one by one, so it is refused per record
            events = None
        if events is None:
            rest.extend(chunk)
        else:
            out.predictions.extend(events)
            out.consumed[topics.predictions] += len(chunk)
    return rest


def apply_decoded(engine: Engine, decoded: DecodedRecords, topics: TopicNames,
                  feedback_sink: FeedbackSink | None,
                  lifecycle_sink: LifecycleSink | None = None) -> None:
    """Apply one decoded batch to the engine, in the daemon's order: counts, rejections,
    predictions, feedback, then lifecycle events. Images are only counted here; scoring
    them is the caller's business (the daemon hands them to the shadow scorer)."""
    for topic, n in decoded.consumed.items():
        engine.record_consumed(topic, n)
    for r, rej in decoded.rejections:
        engine.record_rejection(r.topic, rej.reason.value)
    engine.apply_predictions(decoded.predictions, topics.predictions)
    if decoded.feedback:
        engine.count_accepted(topics.feedback, len(decoded.feedback))
        if feedback_sink is not None:
            feedback_sink.apply_feedback(decoded.feedback)
    if decoded.images:
        engine.count_accepted(topics.images, len(decoded.images))
    if decoded.lifecycle and topics.lifecycle is not None:
        engine.count_accepted(topics.lifecycle, len(decoded.lifecycle))
        if lifecycle_sink is not None:
            lifecycle_sink.apply_lifecycle(decoded.lifecycle)


class RejectionLog:
    """Logs refused records at INFO, never one line per record: the first rejection of
    each (topic, reason) in `every_s` seconds is logged with its detail and how many of
    that reason were refused since the previous line for it (itself included)."""

    def __init__(self, every_s: float = 60.0) -> None:
        self._every_s = every_s
        self._logged_at: dict[tuple[str, str], float] = {}
        self._since: dict[tuple[str, str], int] = defaultdict(int)

    def note(self, rejections: Iterable[tuple[Record, Rejection]], now: float) -> list[str]:
        """Count `rejections` (seen at `now`, s); log and return the lines now due."""
        lines = []
        for r, rej in rejections:
            key = (r.topic, rej.reason.value)
            self._since[key] += 1
            if now - self._logged_at.get(key, -math.inf) < self._every_s:
                continue
            self._logged_at[key] = now
            n = self._since.pop(key)
            lines.append(f"{r.topic}: record refused ({rej.reason.value}: {rej.detail[:200]}) "
                         f"at partition {r.partition} offset {r.offset}; {n} refused for this "
                         f"reason since the last such line")
        for line in lines:
            log.info("%s", line)
        return lines
