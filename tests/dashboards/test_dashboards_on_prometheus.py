"""Proof against a real Prometheus: every panel query returns data on real traffic.

A daemon configured like examples/visionmon.yaml consumes predictions (two versions, with
failures), ground-truth labels, sampled images (when the digits reference model can be built)
and malformed records from the real broker; a real Prometheus scrapes it every second. Each
query of each generated panel, with Grafana's variables replaced by concrete values, must
return at least one series: range queries over the traffic period, instant queries at its end.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from monitor.catalog import metric
from monitor.config import load_config
from tests.conftest import CLASSES, base_config, metric_sum, parse_metrics, scrape, wait_for
from tests.dashboards.panel_queries import (
    EXAMPLE_CONFIG,
    PanelQuery,
    concrete_queries,
    example_queries,
)
from tests.prom_server import PrometheusServer
from visionmon.broker import create_topics
from visionmon.traffic import SyntheticTraffic, ndjson

pytestmark = pytest.mark.slow  # left out of `make test-fast`

TRAFFIC_SECONDS = 20.0
TICK_SECONDS = 0.25
EVENTS_PER_TICK = 20


def _params() -> list[Any]:
    return [pytest.param(q, expr, id=q.id) for q, expr in example_queries()]


@dataclass
class Live:
    """A daemon with traffic behind a real Prometheus; `start`/`end` bound the traffic."""

    prometheus: PrometheusServer
    metrics_text: str
    start: float
    end: float
    queries: list[tuple[PanelQuery, str]]


def _reference(tmp: Path) -> Any | None:
    """The digits reference artifact, or None where torch or the builder is unavailable."""
    try:
        import torch

        from reference_model.digits import build_digits_reference
    except ImportError:
        return None
    torch.set_num_threads(1)
    tmp.mkdir(parents=True, exist_ok=True)
    return build_digits_reference(tmp, epochs=2)


def _config(bootstrap: str, names: dict[str, str], tmp: Path, artifact: Any | None) -> Path:
    cfg: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    test = base_config(bootstrap, names)
    cfg["kafka"] = test["kafka"]
    cfg["http"] = test["http"]
    cfg["state"] = {"checkpoint_dir": str(tmp / "state"), "checkpoint_interval_seconds": 1}
    cfg["baseline"] = {"mode": "first_events", "events": 200}
    # evaluation slices of 5 s, so that some close during the 20 s of traffic
    cfg["quality"] = {**cfg.get("quality", {}), "eval_slice": "5s", "min_labels": 5}
    if artifact is not None:
        cfg["reference"] = artifact.config.model_dump(mode="json")
    path = tmp / "visionmon.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _feed(bootstrap: str, names: dict[str, str], artifact: Any | None) -> int:
    """Send TRAFFIC_SECONDS of traffic; returns the number of prediction events sent."""
    from kafka import KafkaProducer

    rng = random.Random(3)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    v1 = SyntheticTraffic("digits", "v1", CLASSES, seed=1)
    v2 = SyntheticTraffic("digits", "v2", CLASSES, seed=2)
    images: dict[int, list[bytes]] = {}
    if artifact is not None:
        from reference_model.digits import render_digit

        data = artifact.data
        for k in range(len(CLASSES)):
            rows = [i for i in range(len(data.labels)) if data.labels[i] == k][:5]
            images[k] = [render_digit(data.images[i]) for i in rows]
    sent, previous = 0, []
    ticks = int(TRAFFIC_SECONDS / TICK_SECONDS)
    for tick in range(ticks):
        now = time.time()
        events = v1.events(EVENTS_PER_TICK, now)
        if tick >= ticks // 4:  # v2 is deployed a few seconds in: a version-change annotation
            events += v2.events(EVENTS_PER_TICK, now)
        for i, e in enumerate(events):  # the example's segment keys: camera and site
            if i % 10:
                e["segments"] = {"camera": f"cam-{i % 3 + 1}", "site": f"plant-{'ab'[i % 2]}"}
        producer.send(names["predictions"], ndjson(events))
        sent += len(events)
        for e in previous:  # labels arrive a tick later, for most successful predictions
            if "pred" not in e or rng.random() < 0.3:
                continue
            pred = int(e["pred"])
            label = pred if rng.random() < 0.9 else (pred + 1) % len(CLASSES)
            producer.send(names["feedback"], orjson.dumps(
                {"request_id": e["request_id"], "label": label, "ts": now, "model": "digits"}))
            if images and rng.random() < 0.5:
                producer.send(names["images"], rng.choice(images[label]), headers=[
                    ("request_id", str(e["request_id"]).encode()), ("model", b"digits"),
                    ("version", str(e["version"]).encode()), ("content-type", b"image/png")])
        producer.send(names["predictions"], b"{not json")           # rejected: invalid_json
        producer.send(names["feedback"], orjson.dumps({"request_id": "r"}))  # missing label
        previous = events
        time.sleep(TICK_SECONDS)
    producer.flush()
    producer.close()
    return sent


def _always_firing_rule(tmp: Path) -> Path:
    """A test-only alert that always fires, so the firing-alerts table has a row to show."""
    path = tmp / "probe-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-probe", "rules": [{
        "alert": "DashboardTestProbe", "expr": "vector(1)",
        "labels": {"severity": "info"}}]}]}))
    return path


@pytest.fixture(scope="module")
def live(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (Debian: apt-get install prometheus)")
    from visionmon.app import App, wait_ready

    tmp = tmp_path_factory.mktemp("dashboards-live")
    names = {"predictions": "dash-pred", "images": "dash-img", "feedback": "dash-fb",
             "dead_letter": "dash-dlq"}
    create_topics(broker.bootstrap, list(names.values()), 2)
    artifact = _reference(tmp / "reference")
    loaded = load_config(_config(broker.bootstrap, names, tmp, artifact))
    queries = concrete_queries(loaded)
    assert [e for _, e in queries] == [e for _, e in example_queries()], \
        "the live config must generate the same queries as examples/visionmon.yaml"
    app = App(loaded)
    running = app.start_background()
    try:
        wait_ready(app.daemon, 60)
        host = f"127.0.0.1:{app.http.port}"
        with PrometheusServer(tmp / "prometheus", [host], [_always_firing_rule(tmp)]) as prom:
            start = time.time()
            sent = _feed(broker.bootstrap, names, artifact)

            def counted() -> bool:
                m = parse_metrics(scrape(running.url))
                return metric_sum(m, metric("requests_total")) >= sent

            wait_for(counted, 60, what=f"{sent} requests counted")
            time.sleep(4.0)  # a few more scrapes and rule evaluations
            yield Live(prom, scrape(running.url), start, time.time(), queries)
    finally:
        running.stop()


def _result(live: Live, q: PanelQuery, expr: str) -> list[dict[str, Any]]:
    if q.instant:
        return live.prometheus.query(expr, at=live.end)
    return live.prometheus.query_range(expr, live.start, live.end, "1s")


def _finite_values(result: list[dict[str, Any]]) -> int:
    """How many samples of an instant or range result are numbers (not NaN or +-Inf)."""
    samples = [s for r in result for s in (r.get("values") or [r["value"]])]
    return sum(1 for _, v in samples if math.isfinite(float(v)))


def _exported(live: Live) -> set[str]:
    return {name for name, _ in parse_metrics(live.metrics_text)}


@pytest.mark.parametrize(("q", "expr"), _params())
def test_panel_query_returns_series(live: Live, q: PanelQuery, expr: str) -> None:
    result = _result(live, q, expr)
    assert result, f"{q.id}: no series for {expr}"
    assert _finite_values(result), f"{q.id}: only NaN/Inf samples for {expr}"


def test_template_variables_find_their_values(live: Live) -> None:
    prom = live.prometheus
    assert prom.label_values("model", metric("requests_total")) == ["digits"]
    assert set(prom.label_values("version", f'{metric("requests_total")}{{model="digits"}}')) \
        == {"v1", "v2"}
    assert set(prom.label_values("class", f'{metric("predictions_total")}{{model="digits"}}')) \
        == set(CLASSES)
    segment = metric("segment_requests_total")
    assert set(prom.label_values("segment", f'{segment}{{model="digits",segment_key="camera"}}')) \
        == {"cam-1", "cam-2", "cam-3", "_none"}
    assert set(prom.label_values("segment", f'{segment}{{model="digits",segment_key="site"}}')) \
        == {"plant-a", "plant-b", "_none"}
