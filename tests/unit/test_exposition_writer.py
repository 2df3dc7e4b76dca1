"""The fast /metrics writer gives prometheus_client's bytes: every catalog family, odd label
values and odd numbers, in both formats and for every Accept header a scraper sends."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client import generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from collectors.exporter import build_registry
from collectors.exposition import ExpositionWriter
from monitor.catalog import CATALOG
from monitor.snapshot import HistogramValue, Series

ODD_VALUES = ["digits", "v1", "", 'say "hi"', "back\\slash", "new\nline", "ünïcødé 猫",
              "c\\n", "0", "le"]
ODD_NUMBERS = [0.0, 1.0, -1.0, 0.1, 1 / 3, 1e-9, 123456.0, 1234567.0, 9.87654321e12, 2.0**53,
               -2.5e7, math.inf, -math.inf, 17.0]


def _snapshot(seed: int, series_per_family: int) -> dict[str, Series]:
    """Every catalog family with random series (NaN gauges included, one family of NaN
    gauges only)."""
    rng = random.Random(seed)
    out: dict[str, Series] = {}
    for i, spec in enumerate(CATALOG):
        series: Series = {}
        for _ in range(series_per_family):
            labels = tuple(rng.choice(ODD_VALUES) + str(rng.randrange(3)) for _ in spec.labels)
            if spec.kind == "histogram":
                counts = tuple(float(rng.randrange(5)) for _ in range(len(spec.buckets) + 1))
                series[labels] = HistogramValue(counts, rng.choice(ODD_NUMBERS))
            elif spec.kind == "gauge" and (i % 7 == 0 or rng.random() < 0.1):
                series[labels] = math.nan
            else:
                series[labels] = rng.choice(ODD_NUMBERS)
        out[spec.name] = series
    return out


@pytest.mark.parametrize("seed", range(4))
def test_the_prometheus_text_is_byte_for_byte_prometheus_clients(seed: int) -> None:
    snap = _snapshot(seed, 1 + seed * 3)
    expected = generate_latest(build_registry(lambda: snap))
    assert ExpositionWriter().write(snap, openmetrics=False) == expected


@pytest.mark.parametrize("seed", range(4))
def test_openmetrics_is_byte_for_byte_prometheus_clients(seed: int) -> None:
    snap = _snapshot(seed, 1 + seed * 3)
    expected = openmetrics_latest(build_registry(lambda: snap))
    assert ExpositionWriter().write(snap, openmetrics=True) == expected


ACCEPT = [  # (who sends it, Accept header, handled by the fast writer)
    ("curl or urllib", None, True),
    ("Prometheus 2", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),
    ("Prometheus 3", "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
     "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;"
     "escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2", True),
    ("text 1.0.0", "text/plain;version=1.0.0;escaping=underscores", True),
    ("OpenMetrics without a version", "application/openmetrics-text", True),
    ("text 1.0.0 with dots escaping", "text/plain;version=1.0.0;escaping=dots", False),
    ("OpenMetrics 2.0.0", "application/openmetrics-text;version=2.0.0", False),
]


@pytest.mark.parametrize(("who", "accept", "fast"), ACCEPT, ids=[a[0] for a in ACCEPT])
def test_each_accept_header_gets_the_bytes_its_encoder_writes(who: str, accept: str | None,
                                                              fast: bool) -> None:
    snap = _snapshot(11, 2)
    encoder, content_type = choose_encoder(accept)  # type: ignore[arg-type]
    writer = ExpositionWriter().writer_for(content_type)
    assert (writer is not None) == fast
    if writer is not None:
        assert writer(snap) == encoder(build_registry(lambda: snap))


def test_a_metric_missing_from_the_catalog_is_refused() -> None:
    with pytest.raises(ValueError, match="missing from the catalog"):
        ExpositionWriter().write({"visionmon_no_such_metric": {(): 1.0}})
