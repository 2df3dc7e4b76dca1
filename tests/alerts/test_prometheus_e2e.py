"""End to end: daemon on the real broker -> real Prometheus with the generated rules.

Time is compressed honestly: the test spec overrides the burn-rate windows (1 h -> 1 m,
5 m -> 5 s, ...) and the period (12 h); the production rules generated from
examples/visionmon.yaml keep the workbook's windows. Scrape and evaluation every second.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaProducer

from alerts import names
from alerts.checks import CHECK
from alerts.generate import write_rules
from monitor.config import load_config
from tests.conftest import CLASSES, base_config, scrape, wait_for, write_config
from tests.prom_server import PrometheusServer, skip_without_prometheus
from visionmon.traffic import SyntheticTraffic, TrafficShape, ndjson

pytestmark = [skip_without_prometheus, pytest.mark.slow]

#: The workbook's tiers, 60x faster; a short `for:` on the fast page makes the pending
#: state observable.
COMPRESSED_TIERS = [
    {"severity": "page", "long": "1m", "short": "5s", "factor": 14.4, "for": "3s"},
    {"severity": "page", "long": "6m", "short": "30s", "factor": 6},
    {"severity": "ticket", "long": "24m", "short": "2m", "factor": 3},
    {"severity": "ticket", "long": "72m", "short": "6m", "factor": 1},
]


def e2e_slos(drift_window: str = "5m") -> dict[str, Any]:
    return {
        "version": 1, "period": "12h", "windows": COMPRESSED_TIERS,
        "objectives": [
            {"name": "availability", "model": "digits", "kind": "availability", "target": 0.999},
            {"name": "latency", "model": "digits", "kind": "latency", "target": 0.99,
             "latency_threshold_seconds": 0.25},
        ],
        "thresholds": {"drift": {"window": drift_window, "for": "3s"}},
    }


class TrafficPump:
    """Produces digits/v1 predictions in NDJSON batches every 0.1 s until stopped;
    `error_rate` and `prior` can be changed while it runs."""

    def __init__(self, bootstrap: str, topic: str, per_second: int = 400) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        self.topic = topic
        self.per_batch = max(1, per_second // 10)
        self.traffic = SyntheticTraffic("digits", "v1", CLASSES, seed=7,
                                        shape=TrafficShape(error_rate=0.0))
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic-pump", daemon=True)

    def set_error_rate(self, rate: float) -> None:
        self.traffic.shape = TrafficShape(error_rate=rate)

    def set_prior(self, prior: np.ndarray) -> None:
        self.traffic.prior = prior

    def _run(self) -> None:
        while not self._stop.is_set():
            events = self.traffic.events(self.per_batch, time.time())
            self.producer.send(self.topic, ndjson(events))
            self.sent += len(events)
            self._stop.wait(0.1)

    def __enter__(self) -> TrafficPump:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.producer.flush(5)
        self.producer.close(5)


def _host(url: str) -> str:
    return url.removeprefix("http://")


@contextmanager
def rules_in_prometheus(cfg: dict[str, Any], start_daemon: Any, tmp_path: Path
                        ) -> Iterator[tuple[Any, PrometheusServer, list[Path]]]:
    """A daemon started on `cfg`, and a real Prometheus scraping it with every rule file
    generated from `cfg` loaded and healthy."""
    rule_files = write_rules(load_config(write_config(tmp_path, cfg)), tmp_path / "rules")
    daemon = start_daemon(cfg)
    with PrometheusServer(tmp_path / "prometheus", [_host(daemon.url)], rule_files) as prom:
        prom.wait_for_targets_up()
        assert all(r["health"] == "ok" for g in prom.rules() for r in g["rules"]), prom.rules()
        yield daemon, prom, rule_files


@pytest.fixture
def monitored(broker, topics, start_daemon, tmp_path: Path
              ) -> Iterator[tuple[Any, PrometheusServer, TrafficPump]]:
    """A daemon, a Prometheus scraping it with the rules generated from the test spec,
    and a running traffic pump."""
    names_ = topics(partitions=1)
    cfg = base_config(broker.bootstrap, names_, slos=e2e_slos(),
                      baseline={"mode": "first_events", "events": 500})
    with rules_in_prometheus(cfg, start_daemon, tmp_path) as (daemon, prom, _), \
            TrafficPump(broker.bootstrap, names_["predictions"]) as pump:
        yield daemon, prom, pump


def _alerts(prom: PrometheusServer, alertname: str, **labels: str) -> list[dict[str, Any]]:
    return [a for a in prom.alerts() if a["labels"].get("alertname") == alertname
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def _watch_states(prom: PrometheusServer, alertname: str, timeout_s: float, **labels: str
                  ) -> list[str]:
    """Poll until the alert fires; the distinct states seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for a in _alerts(prom, alertname, **labels):
            if not seen or seen[-1] != a["state"]:
                seen.append(a["state"])
        if seen and seen[-1] == "firing":
            return seen
        time.sleep(0.2)
    raise AssertionError(f"{alertname} {labels} did not fire within {timeout_s}s; "
                         f"states seen {seen}; alerts: {prom.alerts()}")


def test_an_outage_pages_through_the_fast_tier_and_healthy_traffic_pages_nobody(monitored):
    _, prom, pump = monitored
    ratio = names.sli_error_record(5)
    wait_for(lambda: prom.value(f'{ratio}{{slo="availability",model="digits"}}') == 0.0,
             30, what="the availability SLI recorded as 0 on healthy traffic")

    # Healthy: every window has data, no SLO alert is pending or firing.
    quiet_until = time.monotonic() + 12
    while time.monotonic() < quiet_until:
        burning = _alerts(prom, names.SLO_ALERT)
        assert not burning, f"an SLO alert on healthy traffic: {burning}"
        time.sleep(0.5)

    pump.set_error_rate(0.5)
    states = _watch_states(prom, names.SLO_ALERT, 45, slo="availability", severity="page",
                           long_window="1m")
    assert states[-2:] == ["pending", "firing"], states
    firing = _alerts(prom, names.SLO_ALERT, slo="availability", severity="page",
                     long_window="1m")[0]
    assert firing["labels"]["model"] == "digits"
    # the description says how many events the 1m window holds, read from Prometheus
    assert re.search(r"of the [1-9][0-9]* requests visionmon counted over the last 1m failed",
                     firing["annotations"]["description"])
    assert "unknown" not in firing["annotations"]["description"]
    assert firing["annotations"]["runbook_url"].endswith(f"/{names.SLO_ALERT}.md")
    assert not _alerts(prom, names.SLO_ALERT, slo="latency")


def test_a_class_prior_shift_raises_the_drift_alert(monitored):
    daemon, prom, pump = monitored
    wait_for(lambda: pump.sent > 1500, 30, what="baseline traffic")
    wait_for(lambda: 'visionmon_drift_psi{' in scrape(daemon.url), 15,
             what="visionmon_drift_psi on /metrics")
    prior = np.full(len(CLASSES), 0.02)
    prior[0] = 1 - 0.02 * (len(CLASSES) - 1)
    shifted_at = time.time()
    pump.set_prior(prior)
    labels = {"model": "digits", "version": "v1", "window": "5m"}
    states = _watch_states(prom, CHECK["drift"].alert, 60, **labels)
    assert states[-2:] == ["pending", "firing"], states
    # one alert for the model version, whatever the number of features, which it lists
    (alert,) = _alerts(prom, CHECK["drift"].alert, model="digits")
    assert "feature" not in alert["labels"]
    assert "predicted_class (" in alert["annotations"]["description"]
    assert "worst " in alert["annotations"]["summary"]
    active_at = datetime.fromisoformat(alert["activeAt"][:26].rstrip("Z") + "+00:00")
    assert active_at.timestamp() > shifted_at - 1, "the drift alert predates the shift"
    assert alert["labels"]["severity"] == "ticket"
