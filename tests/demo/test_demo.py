"""The incident demo, shortened: each injected incident is caught by the signal designed
for it, and the label-noise incident leaves shadow agreement and estimated accuracy quiet."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # left out of `make test-fast`

pytest.importorskip("torch")

DESIGNED = {
    "colour_shift": "input_drift",
    "bad_canary": "shadow_disagreement_canary",
    "latency_spike": "latency_burn",
    "label_noise": "accuracy_drop",
}


def test_short_demo_catches_every_incident(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "visionmon", "demo", "--duration", "40", "--speed", "20",
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "/metrics" in proc.stdout
    assert "incident timeline" in proc.stdout
    timeline = json.loads((tmp_path / "timeline.json").read_text())
    by_key = {i["incident"]: i for i in timeline["incidents"]}
    assert set(by_key) == set(DESIGNED)
    for key, signal in DESIGNED.items():
        inc = by_key[key]
        assert inc["started_s"] is not None, key
        assert signal in inc["caught"], (key, inc, proc.stdout[-3000:])
        assert inc["caught"][signal]["after_events"] >= 0
    assert by_key["label_noise"]["quiet_violations"] == []
    # the daemon's agreement test against the baseline sees the canary too, and nothing
    # before it
    assert "shadow_agreement_test_canary" in by_key["bad_canary"]["caught"]
    assert "shadow_agreement_test_canary" not in timeline["false_alarms"]
