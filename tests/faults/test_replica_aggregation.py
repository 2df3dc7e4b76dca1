"""The fleet recording rules of docs/reliability.md: PSI and ECE of the pooled traffic of
several replicas, computed by Prometheus from summed bin counters, equal numpy's values."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed "
                                "(Debian package prometheus)")

# per-minute increments of two replicas' counters
FEATURE_BINS = {"a": [10, 20, 30], "b": [5, 5, 30]}
BASELINE = [0.2, 0.3, 0.5]
CAL = {  # replica: (events, confidence sum, correct) per calibration bin
    "a": ([4, 6, 10], [1.0, 3.0, 9.0], [1, 4, 9]),
    "b": ([2, 2, 10], [0.5, 1.0, 9.0], [1, 1, 8]),
}


def _rules_from_doc() -> str:
    text = DOC.read_text()
    match = re.search(r"```yaml\n(# visionmon-fleet\.yml.*?)```", text, re.S)
    assert match, "the fleet rules block is missing from docs/reliability.md"
    return match.group(1)


def _series(name: str, replica: str, per_minute: float, **labels: str) -> dict[str, str]:
    ls = ",".join(f'{k}="{v}"' for k, v in {"instance": replica, "model": "m",
                                            "version": "v1", **labels}.items())
    return {"series": f"{name}{{{ls}}}", "values": f"0+{per_minute}x60"}


def test_pooled_psi_and_ece_from_summed_bin_counters(tmp_path: Path) -> None:
    (tmp_path / "fleet.yml").write_text(_rules_from_doc())
    inputs = []
    for r, counts in FEATURE_BINS.items():
        for b, c in enumerate(counts):
            inputs.append(_series("visionmon_feature_bin_total", r, c, feature="confidence",
                                  bin=str(b)))
            inputs.append({**_series("visionmon_baseline_bin_ratio", r, 0,
                                     feature="confidence", bin=str(b)),
                           "values": f"{BASELINE[b]}x60"})
    for r, (events, conf, correct) in CAL.items():
        for b in range(3):
            inputs.append(_series("visionmon_calibration_bin_events_total", r, events[b],
                                  bin=str(b)))
            inputs.append(_series("visionmon_calibration_bin_confidence_sum_total", r,
                                  conf[b], bin=str(b)))
            inputs.append(_series("visionmon_calibration_bin_correct_total", r, correct[b],
                                  bin=str(b)))
    # what numpy says for the pooled traffic
    share = np.sum(list(FEATURE_BINS.values()), axis=0) / np.sum(list(FEATURE_BINS.values()))
    base = np.asarray(BASELINE)
    psi = float(np.sum((share - base) * np.log(share / base)))
    n, conf, correct = (np.sum([CAL[r][i] for r in CAL], axis=0) for i in range(3))
    ece = float(np.sum(n * np.abs(correct / n - conf / n)) / n.sum())  # the definition
    assert math.isclose(ece, float(np.sum(np.abs(correct - conf)) / n.sum()))
    ece = float(np.sum(np.abs(correct - conf)) / n.sum())  # promtool compares exactly
    tests = {"rule_files": ["fleet.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": inputs,
        "promql_expr_test": [
            {"expr": "visionmon:drift_psi:pooled_1h", "eval_time": "60m",
             "exp_samples": [{"labels": 'visionmon:drift_psi:pooled_1h{model="m",version="v1",'
                                        'feature="confidence"}', "value": psi}]},
            {"expr": "visionmon:calibration_ece:pooled_1h", "eval_time": "60m",
             "exp_samples": [{"labels": 'visionmon:calibration_ece:pooled_1h{model="m",'
                                        'version="v1"}', "value": ece}]},
        ]}]}
    (tmp_path / "fleet.test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    assert PROMTOOL is not None
    check = subprocess.run([PROMTOOL, "check", "rules", "fleet.yml"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run([PROMTOOL, "test", "rules", "fleet.test.yml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
