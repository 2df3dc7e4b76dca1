"""The demo's incident table: what counts as missed."""

from __future__ import annotations

import io

from rich.console import Console

from visionmon.demo import _timeline
from visionmon.demo.incidents import Detection, Incident, IncidentRecord


def _record() -> IncidentRecord:
    inc = Incident("slow", "latency regression", 0.6, 0.7,
                   ("latency_burn", "alert:VisionmonErrorBudgetBurn/latency/page"))
    rec = IncidentRecord(inc, started_at=10.0)
    rec.detections["latency_burn"] = Detection("latency_burn", 3.0, 120)
    return rec


def test_prometheus_alerts_are_missed_only_when_watched() -> None:
    console = Console(file=io.StringIO())
    unwatched = _timeline([_record()], {}, console, alerts_watched=False)
    assert unwatched["incidents"][0]["missed"] == []
    watched = _timeline([_record()], {}, console, alerts_watched=True)
    assert watched["incidents"][0]["missed"] == ["alert:VisionmonErrorBudgetBurn/latency/page"]
