"""Synthetic prediction traffic in the event contract, for the demo and benchmarks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import orjson


@dataclass(frozen=True, slots=True)
class TrafficShape:
    error_rate: float = 0.005
    latency_median_ms: float = 40.0
    latency_sigma: float = 0.5
    concentration: float = 8.0   # how peaked the probability vectors are


class SyntheticTraffic:
    """Draws prediction events: class from a prior, probs peaked on it, lognormal latency."""

    def __init__(self, model: str, version: str, classes: Sequence[str], seed: int = 0,
                 prior: np.ndarray | None = None, shape: TrafficShape = TrafficShape()) -> None:
        self.model = model
        self.version = version
        self.classes = list(classes)
        self.rng = np.random.default_rng(seed)
        k = len(classes)
        self.prior = prior if prior is not None else np.full(k, 1.0 / k)
        self.shape = shape
        self._n = 0

    def events(self, n: int, ts: float) -> list[dict[str, object]]:
        rng, k, sh = self.rng, len(self.classes), self.shape
        cls = rng.choice(k, size=n, p=self.prior)
        noise = rng.dirichlet(np.ones(k), size=n)
        probs = noise / sh.concentration
        probs[np.arange(n), cls] += 1.0
        probs /= probs.sum(axis=1, keepdims=True)
        probs = np.round(probs, 5)
        probs[np.arange(n), cls] += 1.0 - probs.sum(axis=1)
        lat = rng.lognormal(np.log(sh.latency_median_ms), sh.latency_sigma, size=n)
        err = rng.random(n) < sh.error_rate
        out: list[dict[str, object]] = []
        for i in range(n):
            self._n += 1
            rid = f"{self.model}-{self.version}-{self._n}"
            if err[i]:
                out.append({"request_id": rid, "ts": ts, "model": self.model,
                            "version": self.version, "status": "error",
                            "latency_ms": round(float(lat[i]), 3)})
            else:
                p = probs[i]
                out.append({"request_id": rid, "ts": ts, "model": self.model,
                            "version": self.version, "pred": int(p.argmax()),
                            "probs": [round(float(x), 5) for x in p],
                            "latency_ms": round(float(lat[i]), 3)})
        return out


def ndjson(events: Sequence[dict[str, object]]) -> bytes:
    """One batch message: newline-delimited JSON objects."""
    return b"\n".join(orjson.dumps(e) for e in events)


def chunks(events: Sequence[dict[str, object]], size: int) -> Iterator[Sequence[dict[str, object]]]:
    for i in range(0, len(events), size):
        yield events[i:i + size]
