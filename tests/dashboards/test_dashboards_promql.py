"""Every generated panel query parses as PromQL, checked by promtool (Prometheus's own parser)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards.promql import group
from monitor.cost_series import RECORDINGS
from tests.dashboards.panel_queries import example_queries, metrics_in


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def test_every_panel_query_parses_with_promtool(tmp_path: Path) -> None:
    queries = example_queries()
    rules = [{"record": f"dashboard:query_{i}:check", "expr": expr}
             for i, (_, expr) in enumerate(queries)]
    rules_file = tmp_path / "dashboard-queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run([_promtool(), "check", "rules", str(rules_file)],
                          capture_output=True, text=True, timeout=60, check=False)
    index = "\n".join(f"query_{i}: {q.id}: {expr}" for i, (q, expr) in enumerate(queries))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\nqueries:\n{index}"
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_there_are_queries_from_all_three_dashboards() -> None:
    dashboards = {q.dashboard for q, _ in example_queries()}
    assert dashboards == {"visionmon-executive", "visionmon-oncall", "visionmon-debug"}


def test_every_query_reads_a_visionmon_metric_recording_or_prometheus_alerts() -> None:
    for q, expr in example_queries():
        recorded = any(name in expr for name in RECORDINGS)
        assert metrics_in(expr) or recorded or "ALERTS" in expr, q.id


@pytest.mark.parametrize(("expr", "grouped"), [
    ("sum(rate(x[5m]))", "sum(rate(x[5m]))"),
    ('x{a="b - c"}', 'x{a="b - c"}'),
    ("sum(a) / sum(b)", "(sum(a) / sum(b))"),
    ("1 - sum(a)", "(1 - sum(a))"),
    ("sum by (le) (rate(x[1m]))", "sum by (le) (rate(x[1m]))"),
    ("a unless b", "(a unless b)"),
])
def test_group_adds_parentheses_only_around_top_level_operators(expr: str,
                                                                 grouped: str) -> None:
    assert group(expr) == grouped
