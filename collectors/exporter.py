"""Prometheus exposition built from the catalog and an immutable snapshot.

The collector never computes statistics: on each scrape it asks its snapshot source
for a fresh snapshot and turns every catalog family into a metric family.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from monitor.catalog import CATALOG, Catalog, MetricSpec
from monitor.snapshot import HistogramValue, Series, Snapshot

SnapshotSource = Callable[[], Snapshot]


def bucket_label(bound: float) -> str:
    """A histogram bucket's `le` label: `1.0`, `0.25`, `+Inf`."""
    if math.isinf(bound):
        return "+Inf"
    return repr(float(bound)) if bound != int(bound) else f"{bound:.1f}"


def family(spec: MetricSpec, series: Series) -> Metric:
    """One prometheus_client metric family for a catalog entry and its series."""
    labels = list(spec.labels)
    fam: Metric
    if spec.kind == "counter":
        fam = CounterMetricFamily(spec.base_name, spec.help, labels=labels)
        for values, v in series.items():
            fam.add_metric(list(values), float(v))  # type: ignore[arg-type]
    elif spec.kind == "gauge":
        fam = GaugeMetricFamily(spec.name, spec.help, labels=labels)
        for values, v in series.items():
            assert not isinstance(v, HistogramValue)
            if not math.isnan(v):
                fam.add_metric(list(values), v)
    elif spec.kind == "histogram":
        fam = HistogramMetricFamily(spec.name, spec.help, labels=labels)
        for values, v in series.items():
            assert isinstance(v, HistogramValue)
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, c in zip((*spec.buckets, math.inf), v.counts, strict=True):
                cumulative += c
                buckets.append((bucket_label(bound), cumulative))
            fam.add_metric(list(values), buckets, v.sum)
    else:
        fam = InfoMetricFamily(spec.base_name, spec.help, labels=[])
        for values, _ in series.items():
            fam.add_metric([], dict(zip(labels, values, strict=True)))
    return fam


class SnapshotCollector(Collector):
    """Exposes every catalog family from the latest snapshot."""

    def __init__(self, source: SnapshotSource, catalog: Catalog = CATALOG) -> None:
        self._source = source
        self._catalog = catalog

    def describe(self) -> Iterator[Metric]:
        """Every catalog family, without samples: the registry knows the names (a `name[]`
        filter on /metrics finds them; a name registered twice fails at start)."""
        for spec in self._catalog:
            yield family(spec, {})

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        unknown = set(snapshot) - {s.name for s in self._catalog}
        if unknown:
            raise ValueError(f"snapshot has metrics missing from the catalog: {sorted(unknown)}")
        for spec in self._catalog:
            series = snapshot.get(spec.name)
            if series:
                yield family(spec, series)


def build_registry(source: SnapshotSource) -> CollectorRegistry:
    """A fresh registry (never the global one) holding the snapshot collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(source))
    return registry
