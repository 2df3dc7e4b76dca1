"""A simulated serving stack for the demo: real digit images, a real production model
(a small CNN trained at start-up), sampled images and delayed labels, in the event
contract, with the scripted incidents applied."""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field

import numpy as np
import orjson
import torch

from collectors.kafka.client import Producer
from reference_model.digits import DIGIT_CLASSES, DigitsData, model_inputs, render_digit

COLOUR_GAINS = (1.5, 0.7, 0.5)  # a camera firmware update with a warm colour cast
COLLAPSED_CLASS = DIGIT_CLASSES.index("seven")


def sampled(request_id: str, fraction: float) -> bool:
    """Deterministic per request id, as a serving replica's emitter would decide."""
    h = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big")
    return h / 2**64 < fraction


@dataclass
class ServingTopics:
    predictions: str = "predictions"
    images: str = "images"
    feedback: str = "feedback"


@dataclass
class SimulatedServing:
    """Produces one tick of traffic at a time; `sent` counts what went out."""

    data: DigitsData
    model: torch.nn.Module
    producer: Producer
    topics: ServingTopics
    seed: int = 7
    image_fraction: float = 0.1
    label_fraction: float = 0.3
    label_delay_s: tuple[float, float] = (2.0, 5.0)
    canary_share: float = 0.3
    sent: dict[str, int] = field(default_factory=lambda: {"predictions": 0, "images": 0,
                                                          "feedback": 0})
    _pending: list[tuple[float, int, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._n = 0

    def tick(self, n: int, wall: float, event_ts: float, incidents: set[str]) -> None:
        """Serve n requests at event time `event_ts`; release labels that are due."""
        self._release(wall, event_ts, "label_noise" in incidents)
        if n <= 0:
            return
        rng = self.rng
        idx = rng.choice(self.data.test, size=n)
        images = self.data.images[idx]
        if "colour_shift" in incidents:
            images = np.clip(np.rint(images * np.asarray(COLOUR_GAINS)), 0, 255).astype(np.uint8)
        canary = (rng.random(n) < self.canary_share) if "bad_canary" in incidents \
            else np.zeros(n, bool)
        with torch.inference_mode():
            logits = self.model(model_inputs(images))[0]
            # the canary build collapses onto one class for most inputs
            collapse = torch.from_numpy(canary & (rng.random(n) < 0.6))
            if bool(collapse.any()):
                top = logits[collapse].max(dim=1).values
                logits[collapse, COLLAPSED_CLASS] = top + 2.0
            probs = torch.softmax(logits, 1).numpy()
        latency = rng.lognormal(np.log(35.0), 0.35, n)
        if "latency_spike" in incidents:
            latency *= 15.0
        lines = []
        for i in range(n):
            self._n += 1
            rid = f"req-{self.seed}-{self._n}"
            version = "v2" if canary[i] else "v1"
            p = np.round(probs[i].astype(np.float64), 6)
            p[int(np.argmax(p))] += 1.0 - p.sum()
            lines.append(orjson.dumps({
                "request_id": rid, "ts": round(event_ts, 3), "model": "digits",
                "version": version, "probs": p.tolist(),
                "latency_ms": round(float(latency[i]), 2)}))
            if sampled(rid, self.image_fraction):
                self.producer.send(self.topics.images, render_digit(images[i]), headers=(
                    ("request_id", rid.encode()), ("model", b"digits"),
                    ("version", version.encode()), ("content-type", b"image/png"),
                    ("ts", f"{event_ts:.3f}".encode())))
                self.sent["images"] += 1
            if rng.random() < self.label_fraction:
                label = int(self.data.labels[idx[i]])
                due = wall + float(rng.uniform(*self.label_delay_s))
                heapq.heappush(self._pending, (due, self._n, orjson.dumps(
                    {"request_id": rid, "label": DIGIT_CLASSES[label], "ts": 0.0,
                     "source": "review"})))
        for j in range(0, len(lines), 100):
            self.producer.send(self.topics.predictions, b"\n".join(lines[j:j + 100]))
        self.sent["predictions"] += n

    def _release(self, wall: float, event_ts: float, noisy: bool) -> None:
        """Send the labels whose delay has passed; a noisy vendor garbles 60 % of them."""
        while self._pending and self._pending[0][0] <= wall:
            _, _, raw = heapq.heappop(self._pending)
            fb = orjson.loads(raw)
            if noisy and self.rng.random() < 0.6:
                fb["label"] = DIGIT_CLASSES[int(self.rng.integers(len(DIGIT_CLASSES)))]
                fb["source"] = "vendor-b"
            fb["ts"] = round(event_ts, 3)
            self.producer.send(self.topics.feedback, orjson.dumps(fb))
            self.sent["feedback"] += 1

    def flush(self) -> None:
        self.producer.flush(10.0)
