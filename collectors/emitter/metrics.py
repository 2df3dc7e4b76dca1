"""The emitter's own Prometheus metrics, read from a counter snapshot on every scrape.

These describe the serving process's side (what it logged, dropped and handed to Kafka),
so they live here and not in `monitor.catalog`, which lists what the daemon exports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "visionmon_emitter_"

#: Why an event or image never reached the Kafka client.
DROP_REASONS = ("queue_full", "too_large", "invalid", "closed", "send_error", "shutdown")
KINDS = ("prediction", "image")


@dataclass(frozen=True, slots=True)
class EmitterStats:
    """A consistent copy of the logger's counters (events unless named otherwise)."""

    logged: Mapping[str, int] = field(default_factory=dict)
    dropped: Mapping[tuple[str, str], int] = field(default_factory=dict)
    sent: Mapping[str, int] = field(default_factory=dict)
    messages: Mapping[str, int] = field(default_factory=dict)
    images_unsampled: int = 0
    queued_events: int = 0
    queued_bytes: int = 0

    def dropped_total(self, kind: str | None = None) -> int:
        """Drops of one kind (`prediction` or `image`), or of both."""
        return sum(n for (k, _), n in self.dropped.items() if kind is None or k == kind)


class EmitterCollector(Collector):
    """Exposes an `EmitterStats` source as `visionmon_emitter_*` families."""

    def __init__(self, stats: Callable[[], EmitterStats]) -> None:
        self._stats = stats

    def describe(self) -> Iterable[Metric]:
        return list(self._families(EmitterStats()))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self._stats()))

    @staticmethod
    def _families(s: EmitterStats) -> Iterable[Metric]:
        logged = CounterMetricFamily(
            f"{PREFIX}events", "Events accepted into the logger's buffer, by kind.",
            labels=["kind"])
        sent = CounterMetricFamily(
            f"{PREFIX}sent", "Events handed to the Kafka client, by kind.", labels=["kind"])
        messages = CounterMetricFamily(
            f"{PREFIX}messages", "Kafka messages handed to the client, by kind.",
            labels=["kind"])
        dropped = CounterMetricFamily(
            f"{PREFIX}dropped", "Events dropped before reaching Kafka, by kind and reason.",
            labels=["kind", "reason"])
        for kind in KINDS:
            logged.add_metric([kind], s.logged.get(kind, 0))
            sent.add_metric([kind], s.sent.get(kind, 0))
            messages.add_metric([kind], s.messages.get(kind, 0))
            for reason in DROP_REASONS:
                dropped.add_metric([kind, reason], s.dropped.get((kind, reason), 0))
        yield logged
        yield sent
        yield messages
        yield dropped
        yield CounterMetricFamily(
            f"{PREFIX}images_unsampled", "Images offered but not selected by sampling.",
            value=s.images_unsampled)
        yield GaugeMetricFamily(f"{PREFIX}queue_events",
                                "Events buffered and not yet handed to Kafka.",
                                value=s.queued_events)
        yield GaugeMetricFamily(f"{PREFIX}queue_bytes",
                                "Bytes buffered and not yet handed to Kafka.",
                                value=s.queued_bytes, unit="bytes")
