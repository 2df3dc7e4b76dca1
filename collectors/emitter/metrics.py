"""The emitter's own Prometheus metrics, read from a counter snapshot on every scrape.

These describe the serving process's side (what it logged, dropped and handed to Kafka).
Their names, help and labels come from `monitor.catalog.CLIENT_CATALOG` (the daemon's
metrics are `CATALOG`), so the naming rules and docs/metrics.md cover them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.catalog import CLIENT_CATALOG, PREFIX

ClientFamily = CounterMetricFamily | GaugeMetricFamily


def family(name: str, value: float | None = None) -> ClientFamily:
    """The family of a `CLIENT_CATALOG` metric (exposition name), named, described and
    labelled by its entry: empty when it has labels, else holding `value`."""
    spec = CLIENT_CATALOG[name]
    cls = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
    if spec.labels:
        return cls(spec.base_name, spec.help, labels=list(spec.labels), unit=spec.unit)
    return cls(spec.base_name, spec.help, value=value, unit=spec.unit)


#: Why an event or image never reached the Kafka client.
DROP_REASONS = ("queue_full", "too_large", "invalid", "closed", "send_error", "shutdown")
KINDS = ("prediction", "image", "label", "lifecycle")


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
        """Drops of one kind (`prediction`, `image`, `label` or `lifecycle`), or of all."""
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
        logged = family(f"{PREFIX}emitter_events_total")
        sent = family(f"{PREFIX}emitter_sent_total")
        messages = family(f"{PREFIX}emitter_messages_total")
        dropped = family(f"{PREFIX}emitter_dropped_total")
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
        yield family(f"{PREFIX}emitter_images_unsampled_total", s.images_unsampled)
        yield family(f"{PREFIX}emitter_queue_events", s.queued_events)
        yield family(f"{PREFIX}emitter_queue_bytes", s.queued_bytes)
