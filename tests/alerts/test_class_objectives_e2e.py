"""End to end: a canary whose high-risk class collapses pages and tickets by class.

An ok/scratch/dent detector with `high_risk_classes: [dent]`: version v1 is right on every
labelled image, the canary v2 passes 93 % of dents as `ok` (dent recall 0.07). Predictions
and their labels go through the real broker into the daemon; a real Prometheus scrapes it
every second and evaluates the rules generated from the config (burn-rate windows
compressed 60x as in test_prometheus_e2e). The class_recall objective pages for
class="dent" of v2, and the high-risk recall threshold alert fires for v2's dent alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer

from alerts import names
from alerts.checks import CHECK
from tests.alerts.test_prometheus_e2e import COMPRESSED_TIERS, rules_in_prometheus
from tests.conftest import base_config, wait_for
from tests.prom_server import PrometheusServer, skip_without_prometheus

pytestmark = [skip_without_prometheus, pytest.mark.slow]

CLASSES = ["ok", "scratch", "dent"]
#: True-class shares of the detector's traffic.
PRIOR = np.array([0.6, 0.2, 0.2])
#: Share of dents the canary predicts as `ok`.
CANARY_DENT_MISS = 0.93


def _config(bootstrap: str, topics: dict[str, str]) -> dict[str, Any]:
    slos = {
        "version": 1, "period": "12h", "windows": COMPRESSED_TIERS,
        "objectives": [{"name": "high-risk-recall", "model": "detector", "version": "v2",
                        "kind": "class_recall", "target": 0.95, "min_labeled_events": 20}],
        "thresholds": {"high_risk_recall": {"window": "1m", "for": "3s", "min_labels": 20}},
    }
    return base_config(bootstrap, topics, slos=slos,
                       models=[{"name": "detector", "classes": CLASSES,
                                "high_risk_classes": ["dent"]}],
                       windows={"sizes": ["1m", "1h"], "slices": 60})


class LabelledTraffic:
    """Predictions of v1 (always right) and v2 (misses dents) with their labels, every
    0.1 s until stopped."""

    def __init__(self, bootstrap: str, topics: dict[str, str], per_tick: int = 20) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        self.topics = topics
        self.per_tick = per_tick
        self.rng = np.random.default_rng(3)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labelled-traffic", daemon=True)

    def _tick(self) -> None:
        now = time.time()
        preds, labels = [], []
        for _ in range(self.per_tick):
            version = "v1" if self.rng.random() < 0.5 else "v2"
            truth = CLASSES[self.rng.choice(len(CLASSES), p=PRIOR)]
            pred = truth
            if version == "v2" and truth == "dent" and self.rng.random() < CANARY_DENT_MISS:
                pred = "ok"
            rid = f"r{self.sent}"
            self.sent += 1
            preds.append({"request_id": rid, "ts": now, "model": "detector",
                          "version": version, "pred": pred, "confidence": 0.9,
                          "latency_ms": 5.0})
            labels.append({"request_id": rid, "label": truth, "ts": now, "source": "review"})
        self.producer.send(self.topics["predictions"],
                           b"\n".join(orjson.dumps(p) for p in preds))
        for label in labels:
            self.producer.send(self.topics["feedback"], orjson.dumps(label))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._tick()
            self._stop.wait(0.1)

    def __enter__(self) -> LabelledTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.producer.flush(5)
        self.producer.close(5)


@pytest.fixture
def monitored(broker, topics, start_daemon, tmp_path: Path
              ) -> Iterator[PrometheusServer]:
    names_ = topics(partitions=1)
    cfg = _config(broker.bootstrap, names_)
    with rules_in_prometheus(cfg, start_daemon, tmp_path) as (_, prom, _files), \
            LabelledTraffic(broker.bootstrap, names_):
        yield prom


def _firing(prom: PrometheusServer, alertname: str) -> list[dict[str, str]]:
    return [a["labels"] for a in prom.alerts()
            if a["labels"].get("alertname") == alertname and a["state"] == "firing"]


def test_a_canary_whose_dent_recall_collapses_pages_and_tickets_for_dent(monitored):
    prom = monitored
    recall = 'visionmon_class_recall_ratio{model="detector",version="v2",class="dent",window="1m"}'
    wait_for(lambda: (prom.value(recall) or 1.0) < 0.2, 60,
             what="v2's dent recall under 0.2 in Prometheus")
    wait_for(lambda: any(a.get("severity") == "page" for a in _firing(prom, names.SLO_ALERT)),
             60, what="the class_recall objective paging")
    pages = [a for a in _firing(prom, names.SLO_ALERT) if a["severity"] == "page"]
    assert {(a["slo"], a["model"], a["version"], a["class"]) for a in pages} == {
        ("high-risk-recall", "detector", "v2", "dent")}, pages

    alert = CHECK["high_risk_recall"].alert
    wait_for(lambda: bool(_firing(prom, alert)), 60, what=f"{alert} firing")
    # v1 keeps dent recall at 1; scratch and ok are not high-risk: only v2's dent fires
    time.sleep(3)
    assert {(a["version"], a["class"]) for a in _firing(prom, alert)} == {("v2", "dent")}
    summary = next(a["annotations"]["summary"] for a in prom.alerts()
                   if a["labels"].get("alertname") == alert)
    assert summary == "detector v2: recall of high-risk class dent is low"
    assert all(a.get("class") == "dent" for a in _firing(prom, names.SLO_ALERT))
