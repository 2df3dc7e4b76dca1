"""The GPU machine's scripts must run the first time they get there: smoke runs on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # left out of `make test-fast`

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_reference_benchmark_prints_decode_in_threads_and_processes_and_end_to_end() -> None:
    out = run("reference.py", "--device", "cpu", "--images", "32", "--repeats", "1",
              "--workers", "1", "--cpu-threads", "1", "--batch-sizes", "8",
              "--models", "digits", "--decode-mode", "processes")
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert any("1 threads" in r for r in rows) and any("1 processes" in r for r in rows)
    assert any("end to end" in r and "decode in processes" in r for r in rows)


def test_cuda_parity_smoke_run_on_the_cpu_agrees_with_itself() -> None:
    out = run("cuda_parity.py", "--device", "cpu", "--skip-mmd", "--cpu-threads", "1")
    assert out.count("|   100.00 |") == 2  # both artifact formats, every top-1 the same
    assert "449 of 449 reference predictions equal the CPU scorer's" in out


def test_fast_decode_benchmark_prints_top1_parity_and_decode_speed() -> None:
    out = run("fast_decode.py", "--variants", "0", "--large-variants", "1", "--repeats", "1",
              "--networks", "mobilenet-v2")
    rows = [line for line in out.splitlines() if line.startswith("| mobilenet-v2 |")]
    assert rows[0] == "| mobilenet-v2 | 0.90 | 1.00 | 0.90 |"  # top-1, top-5, top-1 fast
    assert [r.split(" | ")[1] for r in rows[1:]] == ["500-1,000 px", "1,500-3,000 px"]
    assert all("% (" in r and r.endswith("x |") for r in rows[1:])
