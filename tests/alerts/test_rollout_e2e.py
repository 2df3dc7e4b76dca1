"""End to end: a declared rollout in a real Prometheus holds back the canary's drift ticket
and pages through the rollout tier.

The daemon consumes digits/v1 predictions from the real broker; the config declares a
rollout of v1 from an hour ago to an hour from now (`slos.rollouts`), and the rules generated
from it (rollout recording included) are loaded into a real Prometheus scraping every second.
Burn-rate windows are compressed 60x as in test_prometheus_e2e; the rollout tier too
(15m/5m -> 15s/5s).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alerts import names
from alerts.checks import CHECK
from tests.alerts.test_prometheus_e2e import TrafficPump, e2e_slos, rules_in_prometheus
from tests.conftest import CLASSES, base_config, scrape, wait_for
from tests.prom_server import PrometheusServer, skip_without_prometheus

pytestmark = [skip_without_prometheus, pytest.mark.slow]


def _slos() -> dict[str, Any]:
    now = datetime.now(UTC)
    slos = e2e_slos()
    slos["rollouts"] = [{"model": "digits", "version": "v1",
                         "start": (now - timedelta(hours=1)).isoformat(),
                         "end": (now + timedelta(hours=1)).isoformat()}]
    slos["rollout_tier"] = {"severity": "page", "long": "15s", "short": "5s", "factor": 4}
    return slos


@pytest.fixture
def monitored(broker, topics, start_daemon, tmp_path: Path
              ) -> Iterator[tuple[Any, PrometheusServer, TrafficPump]]:
    names_ = topics(partitions=1)
    cfg = base_config(broker.bootstrap, names_, slos=_slos(),
                      baseline={"mode": "first_events", "events": 500})
    with rules_in_prometheus(cfg, start_daemon, tmp_path) as (daemon, prom, rule_files), \
            TrafficPump(broker.bootstrap, names_["predictions"]) as pump:
        assert any(p.name == f"{names.ROLLOUT_GROUP}{names.RULES_SUFFIX}" for p in rule_files)
        yield daemon, prom, pump


def _alerts(prom: PrometheusServer, alertname: str, **labels: str) -> list[dict[str, Any]]:
    return [a for a in prom.alerts() if a["labels"].get("alertname") == alertname
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def test_a_rollout_holds_back_the_drift_ticket_and_pages_through_the_rollout_tier(monitored):
    daemon, prom, pump = monitored
    active = f'{names.ROLLOUT_ACTIVE}{{model="digits",version="v1"}}'
    wait_for(lambda: prom.value(active) == 1.0, 20, what="the declared rollout recorded")
    wait_for(lambda: pump.sent > 1500, 30, what="baseline traffic")
    wait_for(lambda: "visionmon_drift_psi{" in scrape(daemon.url), 15,
             what="visionmon_drift_psi on /metrics")

    prior = np.full(len(CLASSES), 0.02)
    prior[0] = 1 - 0.02 * (len(CLASSES) - 1)
    pump.set_prior(prior)
    over = f'{names.DRIFT_FEATURES_OVER}{{model="digits",version="v1",window="5m"}}'
    wait_for(lambda: (prom.value(over) or 0) > 0, 60, what="drift tests over their critical value")
    # the drift condition holds well past the alert's 3 s `for:`, yet nothing is pending
    held_until = time.monotonic() + 10
    while time.monotonic() < held_until:
        assert (prom.value(over) or 0) > 0
        assert not _alerts(prom, CHECK["drift"].alert), prom.alerts()
        time.sleep(0.5)

    pump.set_error_rate(0.05)
    wait_for(lambda: any(a["state"] == "firing" for a in _alerts(
        prom, names.SLO_ALERT, tier=names.ROLLOUT_TIER_LABEL)), 45,
        what="the rollout tier paging")
    (page,) = [a for a in _alerts(prom, names.SLO_ALERT, tier=names.ROLLOUT_TIER_LABEL)
               if a["labels"]["slo"] == "availability"]
    assert page["labels"]["version"] == "v1" and page["labels"]["severity"] == "page"
    assert page["annotations"]["summary"] == (
        "digits availability SLO: v1 burns its error budget faster than 4x during its rollout "
        "(15s and 5s windows)")
