"""OpenTelemetry export equals the Prometheus exposition for the same input."""

from __future__ import annotations

import math
import random

import orjson
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import generate_latest

from collectors.exporter import build_registry
from collectors.otel_bridge import OtelBridge
from monitor.catalog import CATALOG
from monitor.engine import Engine
from monitor.events import DecodeLimits, ModelClassIndex, PredictionDecoder
from tests.conftest import CLASSES, parse_metrics

NOW = 1_700_000_000.0


def _feed(engine: Engine) -> None:
    rng = random.Random(3)
    dec = PredictionDecoder({"digits": ModelClassIndex.of(CLASSES)}, DecodeLimits())
    for i in range(2000):
        e = {"request_id": f"r{i}", "ts": NOW, "model": "digits", "version": f"v{i % 3}",
             "pred": rng.randrange(10), "confidence": rng.random(),
             "latency_ms": rng.lognormvariate(3, 1)}
        if i % 37 == 0:
            e = {**e, "status": "error"}
        d = dec.decode(orjson.dumps(e), NOW)
        engine.apply_predictions(d.events)
    engine.record_rejection("predictions", "invalid_json", 4)


def test_otel_values_equal_prometheus_values():
    engine = Engine({"digits": CLASSES}, 8)
    reader = InMemoryMetricReader()
    bridge = OtelBridge(engine.snapshot, [reader], cache_seconds=0.0)
    engine.histogram_hook = bridge.observe_histogram
    _feed(engine)
    prom = parse_metrics(generate_latest(build_registry(engine.snapshot)).decode())
    data = reader.get_metrics_data()
    otel: dict[tuple[str, frozenset], object] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    otel[(metric.name, frozenset((k, str(v)) for k, v in p.attributes.items()))] = p
    compared = 0
    for spec in CATALOG:
        for (name, labels), value in prom.items():
            if spec.kind == "counter" and name == spec.name:
                assert otel[(spec.base_name, labels)].value == value
                compared += 1
            elif spec.kind == "histogram" and name == f"{spec.name}_count":
                point = otel[(spec.name, labels)]
                assert point.count == value
                assert math.isclose(point.sum, prom[(f"{spec.name}_sum", labels)], rel_tol=1e-9)
                assert list(point.explicit_bounds) == list(spec.buckets)
                cumulative = 0
                for bound, c in zip([*spec.buckets, math.inf], point.bucket_counts, strict=True):
                    cumulative += c
                    le = "+Inf" if math.isinf(bound) else str(float(bound))
                    assert prom[(f"{spec.name}_bucket", labels | {("le", le)})] == cumulative
                compared += 1
    assert compared >= 6 + 3 * 3  # requests, predictions, rejections; 2 histograms x 3 versions
    bridge.shutdown()
