"""False-alarm rate of the embedding MMD test on clean windows, against its nominal level.

    .venv/bin/python benchmarks/mmd_level.py [--held-sets 3] [--windows 5000]
        [--held-rows 8000] [--sizes 100,200,256]

Needs the detection benchmark's cache (`benchmarks/detection/run.py` writes
out/detection/workload and out/detection/baseline.json). Takes the baseline's reference
sample, draws `--held-sets` independent held-out sets of `--held-rows` clean images from the
pool (what a baseline's held-out rows are), simulates the null on each with the daemon's
4,000 draws and, for contrast, with 1,000, over the window sizes that many held-out rows
cover (`monitor.baseline.null_sizes`), and tests `--windows` fresh clean windows of each of
`--sizes` images drawn from the pool. `--held-rows 150 --sizes 20,32` is a 300-image
baseline (the daemon's default when it profiles the first scored images). Prints the
rejection rate per cell at alpha 0.005 (the daemon's default level for the MMD test); the
binomial sd of a cell is about sqrt(0.005 / windows).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.detection.scenarios import load_pool  # noqa: E402
from monitor import baseline as baseline_mod  # noqa: E402
from monitor.stats.mmd_null import (  # noqa: E402
    calibrate_mmd_null,
    mean_kernel_to_reference,
    mmd2_to_reference,
    mmd_null_test,
)

ALPHA = 0.005


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--held-sets", type=int, default=3)
    ap.add_argument("--windows", type=int, default=5_000)
    ap.add_argument("--held-rows", type=int, default=8_000)
    ap.add_argument("--sizes", default="100,200,256")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "detection")
    args = ap.parse_args(argv)
    base = baseline_mod.load(args.out / "baseline.json")
    assert base.embedding is not None
    ref = base.embedding.mmd_reference()
    pool = load_pool(args.out / "workload" / "pool-clean.npz").embeddings.astype(np.float64)
    cross = mean_kernel_to_reference(ref, pool)
    sizes = [int(s) for s in args.sizes.split(",")]
    grid = baseline_mod.null_sizes(args.held_rows)
    if not grid or max(sizes) > grid[-1]:
        ap.error(f"{args.held_rows} held-out rows cover windows of up to "
                 f"{grid[-1] if grid else 0}; pick --sizes within that")
    rng = np.random.default_rng(11)
    print(f"alpha {ALPHA}, {args.windows} clean windows per cell, reference "
          f"{ref.sample.shape[0]} rows, {args.held_rows} held-out rows; rejection rate per "
          "window size")
    print(f"| held-out set | null draws | {' | '.join(f'window {n}' for n in sizes)} |")
    print("|---|---|" + "---|" * len(sizes))
    for h in range(args.held_sets):
        held = pool[rng.integers(0, pool.shape[0], args.held_rows)]
        nulls = {draws: calibrate_mmd_null(ref, held, np.random.default_rng(5 + h),
                                           sizes=grid, draws=draws)
                 for draws in (baseline_mod.EMBEDDING_NULL_DRAWS, 1_000)}
        rates: dict[int, list[float]] = {k: [] for k in nulls}
        for n in sizes:
            hits = dict.fromkeys(nulls, 0)
            for _ in range(args.windows):
                idx = rng.integers(0, pool.shape[0], n)
                m2 = mmd2_to_reference(ref, pool[idx], cross[idx])
                for k, null in nulls.items():
                    hits[k] += mmd_null_test(null, m2, n, ALPHA).p_value <= ALPHA
            for k in nulls:
                rates[k].append(100 * hits[k] / args.windows)
        for k, r in rates.items():
            print(f"| {h + 1} | {k:,} | " + " | ".join(f"{v:.2f} %" for v in r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
