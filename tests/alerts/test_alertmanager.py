"""The example Alertmanager config: valid for amtool, routes pages and tickets apart and
inhibits a ticket while the page of the same SLO and model fires."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from alerts import names
from alerts.alertmanager import GROUP_BY, PAGER, TICKETS, config, route_cases

AMTOOL = shutil.which("amtool")
pytestmark = pytest.mark.skipif(AMTOOL is None, reason="amtool not installed "
                                "(Debian package prometheus-alertmanager)")


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60)


def test_amtool_accepts_the_generated_config(generated):
    result = amtool("check-config", str(generated / names.ALERTMANAGER_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("case", route_cases(), ids=[c.sentence for c in route_cases()])
def test_amtool_routes_each_alert_to_its_receiver(generated, case):
    labels = [f"{k}={v}" for k, v in case.labels]
    result = amtool("config", "routes", "test",
                    f"--config.file={generated / names.ALERTMANAGER_FILE}",
                    f"--verify.receivers={case.receiver}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_receiver_is_reported_by_amtool(generated):
    result = amtool("config", "routes", "test",
                    f"--config.file={generated / names.ALERTMANAGER_FILE}",
                    f"--verify.receivers={TICKETS}", "severity=page", "slo=availability")
    assert result.returncode != 0


def test_tickets_are_inhibited_only_by_the_page_of_the_same_slo_and_model(generated):
    written = yaml.safe_load((generated / names.ALERTMANAGER_FILE).read_text())
    assert written == config()
    (rule,) = written["inhibit_rules"]
    assert 'severity="page"' in rule["source_matchers"]
    assert 'severity="ticket"' in rule["target_matchers"]
    assert set(rule["equal"]) == {names.SLO_LABEL, "model", "class"}
    # only SLO alerts carry `slo`: a threshold page must not silence unrelated tickets
    assert f'alertname="{names.SLO_ALERT}"' in rule["source_matchers"]
    assert {r["name"] for r in written["receivers"]} == {PAGER, TICKETS}


def test_notifications_are_grouped_by_model_and_version(generated):
    """One cause, one notification: every alert of one model version (drift, agreement,
    burn rates) lands in one group per receiver, whatever its name."""
    written = yaml.safe_load((generated / names.ALERTMANAGER_FILE).read_text())
    assert written["route"]["group_by"] == list(GROUP_BY) == [
        "model", "version", "segment_key", "segment"]
    assert all("group_by" not in r for r in written["route"]["routes"])


def test_notifications_group_by_model_version_and_segment():
    """One camera's (or site's) alerts arrive together and apart from another's; alerts
    without segment labels group by model and version as before."""
    group_by = config()["route"]["group_by"]
    assert {"model", "version", "segment_key", "segment"} <= set(group_by)
