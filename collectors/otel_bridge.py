"""The same catalog exported through the OpenTelemetry SDK (OTLP/HTTP when configured).

Counters and gauges are observable instruments read from the snapshot at each
collection; histograms are synchronous instruments fed by the engine's histogram hook
with the catalog's bucket bounds, so OTel and Prometheus agree bucket for bucket.
"""

from __future__ import annotations

import importlib.metadata
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from monitor.catalog import CATALOG, Catalog, MetricSpec
from monitor.config import OtelConfig
from monitor.snapshot import HistogramValue, Snapshot


def package_version() -> str:
    """The installed `visionmon` distribution's version (package metadata, so that this
    edge module does not import the composition root); `0+unknown` when not installed."""
    try:
        return importlib.metadata.version("visionmon")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


_UNITS = {"seconds": "s", "ratio": "1", "records": "{record}", "bytes": "By", "": "1"}


def otel_name(spec: MetricSpec) -> str:
    """Instrument name: the catalog's base name (no `_total`; the OTel side adds it)."""
    return spec.base_name


class OtelBridge:
    """Owns a MeterProvider whose instruments mirror the catalog."""

    def __init__(self, source: Callable[[], Snapshot], readers: Sequence[MetricReader],
                 service_name: str = "visionmon", catalog: Catalog = CATALOG,
                 cache_seconds: float = 0.5) -> None:
        self._source = source
        self._cache: tuple[float, Snapshot] | None = None
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self.provider = MeterProvider(
            metric_readers=list(readers),
            resource=Resource.create({"service.name": service_name,
                                      "service.version": package_version()}))
        meter = self.provider.get_meter("visionmon", package_version())
        self._histograms: dict[str, Any] = {}
        for spec in catalog:
            unit = _UNITS.get(spec.unit, "1")
            if spec.kind == "counter":
                meter.create_observable_counter(otel_name(spec), [self._callback(spec)],
                                                unit=unit, description=spec.help)
            elif spec.kind in ("gauge", "info"):
                meter.create_observable_gauge(otel_name(spec), [self._callback(spec)],
                                              unit=unit, description=spec.help)
            else:
                self._histograms[spec.name] = (spec, meter.create_histogram(
                    otel_name(spec), unit=unit, description=spec.help,
                    explicit_bucket_boundaries_advisory=list(spec.buckets)))

    @classmethod
    def for_endpoint(cls, source: Callable[[], Snapshot], cfg: OtelConfig) -> OtelBridge:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=cfg.endpoint),
                                               export_interval_millis=cfg.interval_seconds * 1e3)
        return cls(source, [reader], cfg.service_name)

    def _snapshot(self) -> Snapshot:
        with self._lock:
            now = time.monotonic()
            if self._cache is None or now - self._cache[0] > self._cache_seconds:
                self._cache = (now, self._source())
            return self._cache[1]

    def _callback(self, spec: MetricSpec) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            series = self._snapshot().get(spec.name, {})
            out = []
            for labels, value in series.items():
                if isinstance(value, HistogramValue):
                    continue
                out.append(Observation(float(value), dict(zip(spec.labels, labels, strict=True))))
            return out
        return observe

    def observe_histogram(self, name: str, labels: tuple[str, ...], values: np.ndarray) -> None:
        """The engine's histogram hook: record raw observations (base units)."""
        entry = self._histograms.get(name)
        if entry is None:
            return
        spec, hist = entry
        attrs = dict(zip(spec.labels, labels, strict=True))
        for v in values.tolist():
            hist.record(v, attrs)

    def shutdown(self) -> None:
        self.provider.shutdown()
