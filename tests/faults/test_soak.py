"""Load and memory, the short version of benchmarks/soak.py (which runs 5,000,000 events):
RSS flat after warm-up and below the bound computed from the config; fds and threads flat;
every prediction counted and every label joined. Runs in a fresh process, so that memory
held by other tests does not count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # left out of `make test-fast`

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_memory_stays_flat_and_bounded_under_sustained_load(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, str(SOAK), "--events", "200000",
                           "--max-entries", "20000", "--every", "0.5",
                           "--checkpoint-interval", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    print(proc.stdout)
    r = json.loads(out.read_text())
    assert r["counted"] == r["events"] == 200_000
    assert r["labels_joined"] == r["labels_produced"] > 0
    assert r["checkpoints"] >= 2
    assert r["samples_after_warmup"] >= 3
    assert r["growth"] < 0.05, f"peak RSS grew {r['growth']:.1%} after warm-up"
    assert r["peak_mb"] < r["bound_mb"], f"peak {r['peak_mb']:.0f} MB > bound {r['bound_mb']:.0f}"
    assert r["fd_spread"] <= 4 and r["thread_spread"] <= 2
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
