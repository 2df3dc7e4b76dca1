"""Single-window power of vm MMD and of a permutation MMD built like Alibi Detect's, at the
same false-alarm rate, on the shifts where the benchmark found vm MMD slower than Alibi.

    .venv/bin/python benchmarks/detection/mmd_power.py                      # digits
    .venv/bin/python benchmarks/detection/mmd_power.py --dataset fashion
    options: --windows N (default 300 per row), --shifts a-s1,b-s2 (default: the shifts the
             last full run's goal row names as slower), --seed S, --docs FILE (default
             docs/detection-mmd-power.md, or docs/detection-fashion-mmd-power.md)

Reads what `run.py` left in OUT (the baseline file, the image pools' embeddings and
results-full.json); run that first. A delay is the first of ~60 overlapping looks to cross,
so between two tests of similar power which one crosses first is partly chance; this
measures the power itself. Each window holds 200 embeddings (a 1,000-request window here),
a share f of them drawn from the shifted pool and the rest from the clean one. The permutation test
follows Alibi's MMDDrift (0.13, its defaults and the benchmark's p_val) in numpy: 500
reference rows drawn from vm MMD's reference sample, unbiased MMD² with an RBF kernel whose
sigma² is half the median squared distance between reference rows (inferred once, from the
reference: `configure_kernel_from_x_ref`), 100 permutations, p the share of permutations whose
MMD² reaches the observed one, drift when p < 0.01. Its
rate is measured here on three times as many clean windows as a row has, and vm MMD's cutoff
is set to the same rate on its own simulated null (the baseline's, at 200 embeddings). A
prior shift's window replaces the scenario's share of its requests by class-zero images of
the clean pool. Prints a markdown table and writes it to --docs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.detection.scenarios import OTHER  # noqa: E402
from benchmarks.detection.tables import write_page  # noqa: E402
from monitor import baseline as baseline_file  # noqa: E402
from monitor.stats.mmd import _squared_distances  # noqa: E402
from monitor.stats.mmd_null import mmd2_to_reference, mmd_null_test  # noqa: E402

WINDOW = 200            # embeddings in a 1,000-request window at 20 % image sampling
REFERENCE_ROWS = 500    # the benchmark's Alibi reference
PERMUTATIONS = 100      # Alibi's default
P_VAL = 0.01            # the benchmark's Alibi p_val (drift when p < P_VAL)
SHARES = (0.5, 1.0)     # share of the window from the shifted pool


def reference_median(ref: np.ndarray) -> float:
    """Median squared distance between distinct reference rows: 2 sigma² of the kernel."""
    d2 = _squared_distances(ref, ref)
    return float(np.median(d2[~np.eye(ref.shape[0], dtype=bool)]))


def permutation_mmd_pvalue(ref: np.ndarray, x: np.ndarray, rng: np.random.Generator,
                           median: float, permutations: int = PERMUTATIONS) -> float:
    """Share of random relabellings of the pooled sample whose unbiased MMD² reaches the
    observed one (Alibi's p-value); RBF kernel exp(-d² / median), `median` from
    `reference_median` (sigma² = median / 2)."""
    z = np.vstack([ref, x])
    m, n = ref.shape[0], x.shape[0]
    k = np.exp(-_squared_distances(z, z) / median)
    np.fill_diagonal(k, 0.0)
    labels = np.zeros((m + n, permutations + 1))
    labels[:m, 0] = 1.0
    for j in range(1, permutations + 1):
        labels[rng.permutation(m + n)[:m], j] = 1.0
    stats = unbiased_mmd2_of_splits(k, labels, m, n)
    return float(np.mean(stats[1:] >= stats[0]))


def unbiased_mmd2_of_splits(k: np.ndarray, labels: np.ndarray, m: int, n: int) -> np.ndarray:
    """Unbiased MMD² for each column of `labels` (1: the m-row group, 0: the n-row group) of
    a pooled kernel `k` with a zero diagonal; one matrix product for all splits."""
    ku = k @ labels
    within_a = np.sum(labels * ku, axis=0)
    cross = np.sum((1.0 - labels) * ku, axis=0)
    within_b = k.sum() - within_a - 2.0 * cross
    return (within_a / (m * (m - 1)) + within_b / (n * (n - 1)) - 2.0 * cross / (m * n))


def slower_shifts(out: Path) -> list[str]:
    """The shifts the last full run's goal row names as slower than Alibi at its rate."""
    import json

    from benchmarks.detection import tables

    results = json.loads((out / "results-full.json").read_text())
    col = tables.collect(results)
    slow = []
    for name, d in sorted(col["delays"].items()):
        vm, alibi = d.get("vm_mmd_eq"), d.get("alibi_mmd")
        if alibi is not None and (vm is None or vm[0] > alibi[0]):
            slow.append(name)
    return slow


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=("digits", "fashion"), default="digits")
    ap.add_argument("--windows", type=int, default=300)
    ap.add_argument("--shifts", default="")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--docs", default="")
    args = ap.parse_args()
    suffix = "" if args.dataset == "digits" else f"-{args.dataset}"
    out = ROOT / f"out/detection{suffix}"
    docs = Path(args.docs) if args.docs else ROOT / f"docs/detection{suffix}-mmd-power.md"
    base = baseline_file.load(out / "baseline.json")
    if base.embedding is None or base.embedding.null is None:
        print(f"{out / 'baseline.json'}: no embedding profile with an MMD null", file=sys.stderr)
        return 2
    ref, null = base.embedding.mmd_reference(), base.embedding.null
    pools = out / "workload"
    with np.load(pools / "pool-clean.npz") as z:
        clean = z["embeddings"].astype(np.float64)
        zeros = clean[z["labels"] == 0]
    shifts = [s for s in args.shifts.split(",") if s] or slower_shifts(out)
    rng = np.random.default_rng(args.seed)
    ref500 = base.embedding.sample[rng.choice(base.embedding.sample.shape[0], REFERENCE_ROWS,
                                              replace=False)]
    median = reference_median(ref500)

    def draw(pool: np.ndarray, share: float) -> np.ndarray:
        k = int(rng.binomial(WINDOW, share))
        return np.vstack([clean[rng.integers(0, clean.shape[0], WINDOW - k)],
                          pool[rng.integers(0, pool.shape[0], k)]])

    def vm_stat(x: np.ndarray) -> float:
        return mmd_null_test(null, mmd2_to_reference(ref, x), x.shape[0], P_VAL).statistic

    r = args.windows
    clean_vm, clean_perm = [], []
    for _ in range(3 * r):
        x = draw(clean, 0.0)
        clean_vm.append(vm_stat(x))
        clean_perm.append(permutation_mmd_pvalue(ref500, x, rng, median))
    rate = float(np.mean(np.asarray(clean_perm) < P_VAL))
    g = int(np.argmin(np.abs(np.log(null.sizes) - np.log(WINDOW))))
    cutoff = float(np.quantile(null.aggregate[g], 1.0 - max(rate, 1.0 / (3 * r))))
    lines = ["<!-- generated by benchmarks/detection/mmd_power.py; do not edit by hand -->",
             f"# vm MMD and a permutation MMD built like Alibi's: power of one window "
             f"({args.dataset})", "",
             " ".join(__doc__.split("\n\n")[2].split()).replace(
                 " Prints a markdown table and writes it to --docs.", ""), "",
             f"Regenerate with `.venv/bin/python benchmarks/detection/mmd_power.py"
             f"{'' if args.dataset == 'digits' else ' --dataset ' + args.dataset}` after "
             f"`run.py --full` (seed {args.seed}). {r} windows of {WINDOW} embeddings per row. "
             f"On {3 * r} clean windows the Alibi-like test alarmed on {rate:.3f}; vm MMD's "
             f"cutoff at that rate of its null is {cutoff:.2f}, and it was above it on "
             f"{np.mean(np.asarray(clean_vm) > cutoff):.3f} of the same clean windows. "
             f"A binomial standard error at {r} windows is at most {0.5 / np.sqrt(r):.3f}.", "",
             "| shift | share shifted | vm MMD power | Alibi-like power |",
             "|---|---|---|---|"]
    print("\n".join(lines[5:]), flush=True)
    for name in shifts:
        family, severity = name.rsplit("-s", 1)
        if family == "prior_shift":
            pool, scale = zeros, OTHER[family][2][int(severity) - 1]
        else:
            pool = np.load(pools / f"pool-{name}.npz")["embeddings"].astype(np.float64)
            scale = 1.0
        for share in SHARES:
            vm_hits = perm_hits = 0
            for _ in range(r):
                x = draw(pool, share * scale)
                vm_hits += vm_stat(x) > cutoff
                perm_hits += permutation_mmd_pvalue(ref500, x, rng, median) < P_VAL
            lines.append(f"| {name} | {share:g} | {vm_hits / r:.3f} | {perm_hits / r:.3f} |")
            print(lines[-1], flush=True)
    write_page(docs, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
