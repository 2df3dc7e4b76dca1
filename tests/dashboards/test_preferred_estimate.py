"""The executive dashboard's estimate is, per model, version and window, the first method of
`quality.estimate_methods` exported, evaluated by Prometheus itself (promtool)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards.queries import preferred_estimate
from monitor.config import DEFAULT_ESTIMATE_METHODS

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed "
                                "(Debian package prometheus)")

# (version, method) -> value: v1 has every method, v2 no shadow-stratified estimate yet,
# v3 is not calibrated yet, v4 has ATC alone
EXPORTED = {("v1", "shadow_stratified"): 0.71, ("v1", "calibrated"): 0.82, ("v1", "atc"): 0.93,
            ("v2", "calibrated"): 0.84, ("v2", "atc"): 0.95,
            ("v3", "mean_confidence"): 0.86, ("v3", "atc"): 0.97,
            ("v4", "atc"): 0.98}
# what the panel shows per version, in the default order and in one that puts ATC first
SHOWN = {
    DEFAULT_ESTIMATE_METHODS: {"v1": ("shadow_stratified", 0.71), "v2": ("calibrated", 0.84),
                               "v3": ("mean_confidence", 0.86), "v4": ("atc", 0.98)},
    ("atc", "calibrated"): {"v1": ("atc", 0.93), "v2": ("atc", 0.95), "v3": ("atc", 0.97),
                            "v4": ("atc", 0.98)},
    ("calibrated",): {"v1": ("calibrated", 0.82), "v2": ("calibrated", 0.84),
                      "v3": ("mean_confidence", 0.86)},
}


def _labels(version: str, method: str) -> str:
    return (f'{{model="m",version="{version}",window="5m",method="{method}"}}')


@pytest.mark.parametrize("methods", list(SHOWN), ids=[",".join(m) for m in SHOWN])
def test_each_version_shows_its_first_exported_method(tmp_path: Path,
                                                      methods: tuple[str, ...]) -> None:
    expr = (preferred_estimate(methods).replace("$model", "m").replace("$version", ".*")
            .replace("$window", "5m"))
    inputs = [{"series": f"visionmon_estimated_accuracy_ratio{_labels(v, m)}",
               "values": f"{value}x10"} for (v, m), value in EXPORTED.items()]
    want = [{"labels": f"visionmon_estimated_accuracy_ratio{_labels(v, m)}", "value": value}
            for v, (m, value) in SHOWN[methods].items()]
    (tmp_path / "none.yml").write_text("groups: []\n")
    tests = {"rule_files": ["none.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": inputs,
        "promql_expr_test": [{"expr": expr, "eval_time": "5m", "exp_samples": want}]}]}
    (tmp_path / "t.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    assert PROMTOOL is not None
    run = subprocess.run([PROMTOOL, "test", "rules", "t.yml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
