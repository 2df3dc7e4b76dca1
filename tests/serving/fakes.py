"""Test doubles for the serving-side tests: an in-memory Kafka producer, image bytes, and
the daemon's decoders set up for the test models."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from collectors.kafka.client import Headers
from monitor.events import (
    DecodeLimits,
    FeedbackDecoder,
    ImageDecoder,
    ModelClassIndex,
    PredictionDecoder,
)
from monitor.lifecycle_events import LifecycleDecoder
from tests.conftest import CLASSES

FASHION = [f"c{i}" for i in range(10)]
MODELS = {"digits": ModelClassIndex.of(CLASSES), "fashion": ModelClassIndex.of(FASHION)}


def png(value: int = 128, size: int = 8) -> bytes:
    """A small grey PNG (bytes)."""
    out = io.BytesIO()
    Image.new("L", (size, size), value).save(out, "PNG")
    return out.getvalue()


@dataclass
class RecordingProducer:
    """A `Producer` that keeps what it is sent. `gate` (when set) makes `send` wait for it,
    like a stalled broker; `fail` makes `send` raise."""

    sent: list[tuple[str, bytes, Headers, bytes | None]] = field(default_factory=list)
    gate: threading.Event | None = None
    fail: bool = False
    delay_s: float = 0.0
    flushed: int = 0
    closed: bool = False

    def send(self, topic: str, value: bytes, headers: Headers = (),
             key: bytes | None = None, partition: int | None = None) -> None:
        if self.gate is not None:
            self.gate.wait()
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("broker unavailable")
        self.sent.append((topic, value, headers, key))

    def flush(self, timeout_s: float = 10.0) -> None:
        self.flushed += 1

    def close(self) -> None:
        self.closed = True

    def on(self, topic: str) -> list[tuple[str, bytes, Headers, bytes | None]]:
        return [m for m in self.sent if m[0] == topic]


def _decode_all(dec: PredictionDecoder | FeedbackDecoder | LifecycleDecoder,
                messages: list[Any]) -> list[Any]:
    """Every message through one of the daemon's decoders; fails on any rejection."""
    events: list[Any] = []
    for _, value, _, _ in messages:
        d = dec.decode(value, time.time())
        assert not d.rejections, d.rejections
        events.extend(d.events)
    return events


def decode_predictions(messages: list[Any]) -> list[Any]:
    return _decode_all(PredictionDecoder(MODELS, DecodeLimits()), messages)


def decode_feedback(messages: list[Any]) -> list[Any]:
    return _decode_all(FeedbackDecoder(MODELS, DecodeLimits()), messages)


def decode_lifecycle(messages: list[Any]) -> list[Any]:
    return _decode_all(LifecycleDecoder(MODELS, DecodeLimits()), messages)


def decode_images(messages: list[Any]) -> list[Any]:
    dec = ImageDecoder(MODELS, 5_000_000, DecodeLimits())
    events: list[Any] = []
    for _, value, headers, _ in messages:
        d = dec.decode(value, headers, time.time())
        assert not d.rejections, d.rejections
        events.extend(d.events)
    return events
