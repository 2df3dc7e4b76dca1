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


@dataclass(kw_only=True)
class Serving:
    """What both serving stacks share: the producer, the traffic's knobs, the counts of what
    went out (`sent`) and the labels waiting for their delay."""

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

    @property
    def label_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def tick(self, n: int, wall: float, event_ts: float, incidents: set[str]) -> None:
        """Serve n requests at event time `event_ts`; release labels that are due."""
        self._release(wall, event_ts, "label_noise" in incidents)
        if n > 0:
            self._serve(n, wall, event_ts, incidents)

    def _serve(self, n: int, wall: float, event_ts: float, incidents: set[str]) -> None:
        """Send n requests' predictions, sampled images and queued labels."""
        raise NotImplementedError

    def _faults(self, n: int, incidents: set[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per request: served by the canary (v2), collapsed onto one class by it, and its
        latency in ms (15x during a latency spike); drawn in this order from `rng`."""
        rng = self.rng
        canary = (rng.random(n) < self.canary_share) if "bad_canary" in incidents \
            else np.zeros(n, bool)
        collapse = canary & (rng.random(n) < 0.6)   # the canary collapses most inputs
        latency = rng.lognormal(np.log(35.0), 0.35, n)
        if "latency_spike" in incidents:
            latency *= 15.0
        return canary, collapse, latency

    def _image_and_label(self, rid: str, version: str, model: str, image: bytes,
                         content_type: str, event_ts: float, label: str, wall: float) -> None:
        """Send the request's image when it is sampled; queue its label (delayed) when it
        is one of the labelled ones."""
        if sampled(rid, self.image_fraction):
            self.producer.send(self.topics.images, image, headers=(
                ("request_id", rid.encode()), ("model", model.encode()),
                ("version", version.encode()), ("content-type", content_type.encode()),
                ("ts", f"{event_ts:.3f}".encode())))
            self.sent["images"] += 1
        if self.rng.random() < self.label_fraction:
            due = wall + float(self.rng.uniform(*self.label_delay_s))
            heapq.heappush(self._pending, (due, self._n, orjson.dumps(
                {"request_id": rid, "label": label, "ts": 0.0, "source": "review"})))

    def _send_predictions(self, lines: list[bytes]) -> None:
        for j in range(0, len(lines), 100):
            self.producer.send(self.topics.predictions, b"\n".join(lines[j:j + 100]))
        self.sent["predictions"] += len(lines)

    def _release(self, wall: float, event_ts: float, noisy: bool) -> None:
        """Send the labels whose delay has passed; a noisy vendor garbles 60 % of them."""
        names = self.label_names
        while self._pending and self._pending[0][0] <= wall:
            _, _, raw = heapq.heappop(self._pending)
            fb = orjson.loads(raw)
            if noisy and self.rng.random() < 0.6:
                fb["label"] = names[int(self.rng.integers(len(names)))]
                fb["source"] = "vendor-b"
            fb["ts"] = round(event_ts, 3)
            self.producer.send(self.topics.feedback, orjson.dumps(fb))
            self.sent["feedback"] += 1

    def flush(self) -> None:
        self.producer.flush(10.0)


@dataclass(kw_only=True)
class SimulatedServing(Serving):
    """Produces one tick of traffic at a time, running the production CNN on each batch."""

    data: DigitsData
    model: torch.nn.Module

    @property
    def label_names(self) -> tuple[str, ...]:
        return DIGIT_CLASSES

    def _serve(self, n: int, wall: float, event_ts: float, incidents: set[str]) -> None:
        rng = self.rng
        idx = rng.choice(self.data.test, size=n)
        images = self.data.images[idx]
        if "colour_shift" in incidents:
            images = np.clip(np.rint(images * np.asarray(COLOUR_GAINS)), 0, 255).astype(np.uint8)
        canary, collapsed, latency = self._faults(n, incidents)
        with torch.inference_mode():
            logits = self.model(model_inputs(images))[0]
            collapse = torch.from_numpy(collapsed)
            if bool(collapse.any()):
                top = logits[collapse].max(dim=1).values
                logits[collapse, COLLAPSED_CLASS] = top + 2.0
            probs = torch.softmax(logits, 1).numpy()
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
            self._image_and_label(rid, version, "digits", render_digit(images[i]), "image/png",
                                  event_ts, DIGIT_CLASSES[int(self.data.labels[idx[i]])], wall)
        self._send_predictions(lines)



@dataclass(kw_only=True)
class PoolServing(Serving):
    """Serves a precomputed pool: the production model's softmax for each image was computed
    once (a 1,000-class network is too slow to run per request on a demo machine), and the
    colour incident switches to the pool's shifted images and their softmax. Same incidents,
    labels and counts as `SimulatedServing`."""

    model: str
    classes: tuple[str, ...]
    pools: dict[str, tuple[list[bytes], np.ndarray]]   # "clean" / "colour_shift"
    labels: np.ndarray
    collapsed_class: int
    content_type: str
    _text: dict[tuple[str, int, bool], bytes] = field(default_factory=dict)

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.classes

    def _probs(self, pool: str, j: int, collapsed: bool) -> bytes:
        """The probs array as JSON text, formatted once per (pool, image, collapsed)."""
        key = (pool, j, collapsed)
        text = self._text.get(key)
        if text is None:
            p = self.pools[pool][1][j].astype(np.float64)
            if collapsed:   # the canary's logit for one class jumps above the top one
                logits = np.log(np.maximum(p, 1e-12))
                logits[self.collapsed_class] = logits.max() + 2.0
                p = np.exp(logits - logits.max())
                p /= p.sum()
            p = np.round(p, 6)
            p[int(np.argmax(p))] += 1.0 - p.sum()
            text = orjson.dumps(p.tolist())
            self._text[key] = text
        return text

    def _serve(self, n: int, wall: float, event_ts: float, incidents: set[str]) -> None:
        rng = self.rng
        pool = "colour_shift" if "colour_shift" in incidents else "clean"
        images = self.pools[pool][0]
        idx = rng.integers(0, len(images), size=n)
        canary, collapse, latency = self._faults(n, incidents)
        lines = []
        for i in range(n):
            self._n += 1
            j = int(idx[i])
            rid = f"req-{self.seed}-{self._n}"
            version = "v2" if canary[i] else "v1"
            lines.append(b'{"request_id":"' + rid.encode() + b'","ts":'
                         + f"{event_ts:.3f}".encode() + b',"model":' + orjson.dumps(self.model)
                         + b',"version":"' + version.encode() + b'","probs":'
                         + self._probs(pool, j, bool(collapse[i])) + b',"latency_ms":'
                         + f"{float(latency[i]):.2f}".encode() + b"}")
            self._image_and_label(rid, version, self.model, images[j], self.content_type,
                                  event_ts, self.classes[int(self.labels[j])], wall)
        self._send_predictions(lines)
