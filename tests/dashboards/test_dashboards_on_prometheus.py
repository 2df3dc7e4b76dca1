"""Proof against a real Prometheus: every panel query returns data on real traffic.

A daemon configured like examples/visionmon.yaml consumes predictions (two versions, with
failures), ground-truth labels, sampled images (when the digits reference model can be built),
the production model's lifecycle events and malformed records from the real broker; a real
Prometheus scrapes it every second. Each query of each generated panel, with Grafana's
variables replaced by concrete values, must return at least one series: range queries over
the traffic period, instant queries at its end.
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

from alerts.cost_cases import matching
from alerts.generate import rule_outputs
from alerts.model import Cost
from alerts.spec import build_spec
from alerts.writer import write_yaml
from monitor.catalog import metric
from monitor.config import LoadedConfig, load_config
from monitor.cost_series import COST_GROUP
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


def _lifecycle(producer: Any, topic: str, tick: int, ticks: int, now: float) -> None:
    """The production model's lifecycle along the traffic: v1 loaded on two replicas at the
    start; v2 rolled out with its loads (one replica on another artifact) and a failed load
    when it is deployed; a rollback near the end."""
    sha = {"v1": "1" * 64, "v2": "2" * 64, "v2-odd": "3" * 64}
    events: list[dict[str, Any]] = []
    if tick == 0:
        events += [{"kind": "loaded", "ts": now, "model": "digits", "version": "v1",
                    "host": h, "sha256": sha["v1"], "load_seconds": 2.5} for h in ("a", "b")]
    if tick == ticks // 4:
        events += [{"kind": "rolled_out", "ts": now, "model": "digits", "version": "v2",
                    "from_version": "v1"},
                   {"kind": "load_failed", "ts": now, "model": "digits", "version": "v2",
                    "host": "c", "reason": "out_of_memory"}]
        events += [{"kind": "loaded", "ts": now, "model": "digits", "version": "v2",
                    "host": h, "sha256": sha[k], "load_seconds": 7.0}
                   for h, k in (("d", "v2"), ("e", "v2-odd"))]
    if tick == 3 * ticks // 4:
        events.append({"kind": "rolled_back", "ts": now, "model": "digits", "version": "v1",
                       "from_version": "v2"})
    if events:
        producer.send(topic, ndjson(events))


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
        _lifecycle(producer, names["lifecycle"], tick, ticks, now)
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


#: A test-only alert named like visionmon's, and another team's alert in the same Prometheus.
PROBE, OTHER_TEAM = "VisionmonDashboardTestProbe", "OtherTeamDiskFull"


def _always_firing_rule(tmp: Path) -> Path:
    """Test-only alerts that always fire: one named like visionmon's, so the firing-alerts
    table has a row to show, and another team's, which the panels must leave out."""
    path = tmp / "probe-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-probe", "rules": [
        {"alert": name, "expr": "vector(1)", "labels": {"severity": "info"}}
        for name in (PROBE, OTHER_TEAM)]}]}))
    return path


def _literal(name: str, expr: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"record": name, "expr": expr, "labels": labels}


def _cluster_series(cost: Cost) -> list[dict[str, Any]]:
    """The series a cluster with OpenCost, DCGM and Triton would export for this model, as
    literal recordings selected by the model's matchers; counters rise with time()."""
    rules = []
    if cost.kind == "opencost_gpu":
        labels = matching(cost.matchers)
        labels.setdefault("node", "gpu-node-a")
        rules += [_literal("container_gpu_allocation", "vector(1)", labels),
                  _literal("node_gpu_hourly_cost", "vector(2.5)", {"node": labels["node"]})]
    elif cost.kind == "opencost_node":
        rules.append(_literal("node_total_hourly_cost", "vector(3)", matching(cost.matchers)))
    if cost.dcgm:
        gpu = {**matching(cost.dcgm), "UUID": "GPU-0"}
        rules += [_literal("DCGM_FI_DEV_GPU_UTIL", "vector(55)", gpu),
                  _literal("DCGM_FI_DEV_POWER_USAGE", "vector(210)", gpu),
                  _literal("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "time() * 210000", gpu)]
    if cost.triton:
        model = matching(cost.triton)
        rules += [_literal("nv_inference_count", "time() * 40", model),
                  _literal("nv_inference_exec_count", "time() * 8", model),
                  _literal("nv_inference_compute_infer_duration_us", "time() * 400000", model)]
    return rules


def _cost_rules(tmp: Path, loaded: LoadedConfig) -> list[Path]:
    """The generated cost and GPU rule file, and the literal cluster series it reads: the
    Prometheus evaluates the cost and GPU recordings the panels draw over OpenCost, DCGM and
    Triton series recorded from literals (what a cluster with those exporters would hold)."""
    spec = build_spec(loaded)
    cluster = tmp / "cluster-series.yml"
    cluster.write_text(yaml.safe_dump({"groups": [{"name": "cluster-series", "rules": [
        r for c in spec.costs for r in _cluster_series(c)]}]}))
    cost = next(o for o in rule_outputs(spec) if o.name.startswith(COST_GROUP))
    return [cluster, write_yaml(tmp / cost.name, cost.document, "test", cost.what)]


@pytest.fixture(scope="module")
def live(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (Debian: apt-get install prometheus)")
    from visionmon.app import App, wait_ready

    tmp = tmp_path_factory.mktemp("dashboards-live")
    names = {"predictions": "dash-pred", "images": "dash-img", "feedback": "dash-fb",
             "lifecycle": "dash-lc", "dead_letter": "dash-dlq"}
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
        rules = [_always_firing_rule(tmp), *_cost_rules(tmp, loaded)]
        with PrometheusServer(tmp / "prometheus", [host], rules) as prom:
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


def test_the_firing_alerts_panels_show_only_visionmons_alerts(live: Live) -> None:
    """Another team's alert fires in the same Prometheus; the on-call panels count and list
    visionmon's alone."""
    exprs = [e for q, e in live.queries if "ALERTS" in e]
    assert exprs
    prom = live.prometheus
    assert {r["metric"]["alertname"] for r in prom.query("ALERTS")} >= {PROBE, OTHER_TEAM}
    for expr in exprs:
        names = {r["metric"].get("alertname") for r in prom.query(expr, at=live.end)}
        assert OTHER_TEAM not in names, expr
    count = next(e for e in exprs if e.startswith("count("))
    assert prom.value(count) == 1.0
