"""The two ECEs (against labels, against the reference model) are drawn apart and named."""

from __future__ import annotations

import json
from pathlib import Path

from monitor.catalog import ECE_SOURCE_LABELS, ECE_SOURCE_REFERENCE

DEBUG = Path(__file__).resolve().parents[2] / "dashboards/generated/dashboards/visionmon-debug.json"


def test_the_debug_dashboard_draws_each_ece_source_as_its_own_named_series() -> None:
    panels = [p for p in json.loads(DEBUG.read_text())["panels"]
              if p.get("title") == "Expected calibration error"]
    assert len(panels) == 1
    targets = panels[0]["targets"]
    by_source = {src: [t for t in targets if f'source="{src}"' in t["expr"]]
                 for src in (ECE_SOURCE_LABELS, ECE_SOURCE_REFERENCE)}
    assert [len(t) for t in by_source.values()] == [1, 1]
    assert by_source[ECE_SOURCE_LABELS][0]["legendFormat"].startswith("vs labels")
    assert by_source[ECE_SOURCE_REFERENCE][0]["legendFormat"].startswith("vs reference model")
    assert "source=reference" in panels[0]["description"]
