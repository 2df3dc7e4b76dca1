"""An example Alertmanager configuration matching the generated alerts' labels.

Notifications are grouped by alert, SLO, model, version and segment (`segment_key`,
`segment`: the labels of the `visionmon_segment_*` series), so that one camera's alerts
arrive together and apart from another's.
`severity="page"` goes to a pager receiver, `severity="ticket"` to a ticket queue, and a
ticket is inhibited while a page for the same SLO, model and class fires (only SLO alerts
carry `slo`, so a threshold page never silences an unrelated ticket; a class objective's
page never silences another class's ticket). Notifications are grouped by model,
version and segment (`GROUP_BY`): whatever fires for one model version (and one camera or
site, when an alert names one), one notification per receiver.
Receivers are webhooks on localhost: swap in `pagerduty_configs`, `opsgenie_configs`,
`jira_configs`, ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alerts import names
from alerts.checks import CHECK
from monitor.segment_config import SEGMENT_LABELS

#: Labels one notification is grouped by: one cause (a model version) is one notification.
GROUP_BY: tuple[str, ...] = ("model", "version", *SEGMENT_LABELS)
PAGER = "oncall-pager"
TICKETS = "ticket-queue"


@dataclass(frozen=True, slots=True)
class RouteCase:
    """Labels of an alert and the receiver `amtool config routes test` must pick."""

    sentence: str
    labels: tuple[tuple[str, str], ...]
    receiver: str


def config() -> dict[str, Any]:
    """The Alertmanager configuration document."""
    slo_alert = f'alertname="{names.SLO_ALERT}"'
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": TICKETS,
            # one notification per cause: a model's version, and the segment (camera,
            # site) an alert names; alerts without those labels group by model and version
            "group_by": list(GROUP_BY),
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"receiver": PAGER, "matchers": ['severity="page"'], "group_wait": "10s",
                 "repeat_interval": "1h"},
                {"receiver": TICKETS, "matchers": ['severity="ticket"'], "group_wait": "5m",
                 "group_interval": "30m", "repeat_interval": "24h"},
            ],
        },
        "inhibit_rules": [{
            "source_matchers": [slo_alert, 'severity="page"'],
            "target_matchers": [slo_alert, 'severity="ticket"'],
            "equal": [names.SLO_LABEL, "model", "class"],
        }],
        "receivers": [
            {"name": PAGER, "webhook_configs": [
                {"url": "http://127.0.0.1:9095/page", "send_resolved": True}]},
            {"name": TICKETS, "webhook_configs": [
                {"url": "http://127.0.0.1:9095/ticket", "send_resolved": False}]},
        ],
    }


def route_cases() -> tuple[RouteCase, ...]:
    """Routing the generated alerts must get (checked with amtool in the tests)."""
    slo = (("alertname", names.SLO_ALERT), (names.SLO_LABEL, "availability"),
           ("model", "digits"))
    return (
        RouteCase("an SLO page reaches the pager", (*slo, ("severity", "page")), PAGER),
        RouteCase("an SLO ticket reaches the ticket queue", (*slo, ("severity", "ticket")),
                  TICKETS),
        RouteCase("a canary's rollout-tier page reaches the pager",
                  (*slo, ("version", "v2"), ("tier", names.ROLLOUT_TIER_LABEL),
                   ("severity", "page")), PAGER),
        RouteCase("a drift ticket reaches the ticket queue",
                  (("alertname", CHECK["drift"].alert), ("model", "digits"),
                   ("severity", "ticket")), TICKETS),
        RouteCase("a Kafka page reaches the pager",
                  (("alertname", CHECK["kafka_disconnected"].alert), ("severity", "page")), PAGER),
        RouteCase("an alert without severity falls back to the ticket queue",
                  (("alertname", "Unrelated"),), TICKETS),
    )
