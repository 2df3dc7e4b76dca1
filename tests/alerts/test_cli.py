"""`visionmon alerts generate` from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.alerts.conftest import EXAMPLE

pytestmark = pytest.mark.slow  # left out of `make test-fast`


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "visionmon", "alerts", "generate", *args],
                          capture_output=True, text=True, timeout=120)


def test_generate_writes_and_lists_every_file(tmp_path: Path):
    result = run("--config", str(EXAMPLE), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    printed = result.stdout.split()
    # 7 SLOs and the thresholds (rules + tests), cost (rules + tests), rollouts, routing
    assert len(printed) == 20
    assert all(Path(p).exists() for p in printed)
    assert sorted(Path(p).name for p in printed) == sorted(p.name for p in (tmp_path / "out")
                                                           .iterdir())


def test_a_bad_spec_exits_2_with_the_key_path(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("latency_threshold_seconds: 0.25",
                                               "latency_threshold_seconds: 0.35"))
    result = run("--config", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "slos.objectives.1.latency_threshold_seconds" in result.stderr
    assert "0.3 and 0.4" in result.stderr
    assert not (tmp_path / "out").exists()
