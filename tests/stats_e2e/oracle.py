"""What the through-the-broker tests share: a PSI computed by a plain loop (the oracle of
the daemon's drift figures) and a baseline built by the real CLI from a JSONL file."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from monitor import baseline as baseline_mod


def smooth(counts: np.ndarray) -> np.ndarray:
    """Proportions with half an event added to every bin (the product's smoothing)."""
    return (counts + 0.5) / (counts.sum() + 0.5 * counts.size)


def psi_loop(cur: np.ndarray, base: np.ndarray) -> float:
    """PSI of two count vectors, one bin at a time."""
    c, b = smooth(cur), smooth(base)
    total = 0.0
    for i in range(len(c)):
        total += (c[i] - b[i]) * math.log(c[i] / b[i])
    return total


def build_baseline(config: Path, events: Path, out: Path, model: str = "digits"
                   ) -> baseline_mod.Baseline:
    """`visionmon baseline build` of `events` (JSONL) into `out`, loaded back."""
    build = subprocess.run(
        [sys.executable, "-m", "visionmon", "baseline", "build", "--config", str(config),
         "--model", model, "--from-jsonl", str(events), "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    return baseline_mod.load(out)
