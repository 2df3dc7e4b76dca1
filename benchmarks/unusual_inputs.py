"""Unusual inputs on the clip-art workload: does each per-image score flag out-of-category
images and corrupted ones, and at what false-alarm cost, next to Alibi Detect's per-instance
outlier detectors on the same embeddings.

Data (benchmarks/workloads, clip-art build; the pool is in a seeded random order):
  baseline      the first 300 (and 1,000) pool images, clean: what the daemon's baseline
                profiles (`baseline.images`)
  clean         pool images 1,000-2,611, clean (held out from both baselines): the false alarms
  out-of-cat.   every clip-art image of the categories the production model was not trained on
                (fewer than `clipart.MIN_PER_CLASS` images each), rendered like the pool
  <shift> s3    pool images 1,000-1,499 under each image shift at severity 3 (the skews hit
                half of the images at severity 3)
Every image goes through visionmon's intake and the workload's reference model (its
`Scorer`), as shadow scoring does; the embeddings and energies are cached beside the
workload (`<workload>/unusual/*.npz`, about 30 ms an image on one CPU thread the first time).

Detectors (larger = more unusual), each thresholded at the 99th percentile of its baseline:
  knn            visionmon: k-NN distance of the unit embedding to the baseline's embedding
                 sample, baseline rows scored leave-one-out (`monitor.unusual`)
  energy         visionmon: -logsumexp of the reference logits
  mahalanobis    class-conditional Mahalanobis (Lee et al. 2018): class means by the
                 reference's own top-1 class, one Ledoit-Wolf shrunk covariance, min over classes
  alibi_iforest  Alibi Detect `IForest` (defaults)
  alibi_mahalanobis  Alibi Detect `Mahalanobis` (defaults: online, 3 components), warmed on the
                 baseline in chunks of 32 rows, then frozen: a fresh copy of the warmed
                 detector scores each chunk of 32 rows of a set (within a chunk it updates
                 itself row by row, as it always does; one call on a whole set would need
                 rows x 1,280 x 1,280 floats)
The peers' baseline percentiles come from 5-fold out-of-fold scores (each fold scored by a
detector fitted on the other four), as the knn's leave-one-out does; their final detector is
fitted on the whole baseline. Alibi Detect runs in .bench-venv-detection
(`benchmarks/peers_detection_env.sh`), by subprocess.

Printed, per baseline size: the share of each set's images above the 99th percentile (TPR; on
`clean` it is the false-positive rate), AUROC against `clean`, and the share of windows of
n = 300, 100 and 30 images (2,000 drawn with replacement) whose count above the percentile
crosses the daemon's beta-binomial critical count at alpha = drift.alpha / 2 = 0.005
(`monitor.stats.unusual.exceedance_critical`); then fit and score times.

    .venv/bin/python benchmarks/unusual_inputs.py [--baselines 300,1000] [--windows 2000]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PEER_PYTHON = ROOT / ".bench-venv-detection" / "bin" / "python"
ALPHA = 0.01 / 2           # the daemon's default: drift.alpha / len(UNUSUAL_SCORES)
QUANTILE = 0.99
HELD_OUT = 1000            # pool rows from here on are never in a baseline
SHIFTED = 500              # pool rows each shift renders
SEVERITY = 3
FOLDS = 5
PEER_CHUNK = 32            # rows per call of Alibi's online Mahalanobis (memory: rows x D x D)
DETECTORS = ("knn", "energy", "mahalanobis", "alibi_iforest", "alibi_mahalanobis")


@dataclass(frozen=True, slots=True)
class ScoredSet:
    """The reference model on one set of images: unit-less embeddings (N, D), energy (N,)
    in logit units and its top-1 class (N,)."""

    embedding: np.ndarray
    energy: np.ndarray
    top1: np.ndarray


@dataclass(frozen=True, slots=True)
class Row:
    """One detector on one set: share above the baseline's 99th percentile, AUROC against
    the clean set, and the share of windows of 300, 100 and 30 images that fire."""

    tpr: float
    auroc: float
    fire_300: float
    fire_100: float
    fire_30: float


# --- the images, scored once -------------------------------------------------------------


def _score(wl: object, images: Sequence[bytes]) -> ScoredSet:
    from benchmarks.workloads.workload import BATCH, decode
    from monitor.reference_config import ImagesConfig
    from reference_model.intake import ImageIntake

    intake = ImageIntake.for_reference(ImagesConfig(), wl.reference)  # type: ignore[attr-defined]
    scorer = wl.scorer()  # type: ignore[attr-defined]
    emb, energy, top1 = [], [], []
    for i in range(0, len(images), BATCH):
        decoded = decode(intake, images[i:i + BATCH])
        result = scorer.score([d.pixels for d in decoded])
        emb.append(result.embeddings)
        energy.append(result.energy)
        top1.append(result.probs.argmax(1))
    return ScoredSet(np.concatenate(emb).astype(np.float64),
                     np.concatenate(energy).astype(np.float64), np.concatenate(top1))


def _out_of_category() -> list[bytes]:
    """Every clip-art source of the categories too small to be classes, as PNG."""
    from benchmarks.workloads import clipart
    from benchmarks.workloads.workload import _png

    root = clipart.clipart_root()
    items = clipart.catalogue(root)
    known = set(clipart.classes_of(items))
    return [_png(clipart.load_source(root, it)) for it in items if it.category not in known]


def scored_sets(cache: Path | None = None) -> tuple[dict[str, ScoredSet], dict[str, str]]:
    """Every set of the benchmark, scored by the clip-art workload's reference model (read
    from `<workload>/unusual/` once computed); and a line describing each."""
    import torch

    from benchmarks.workloads.shifts import CLEAN, IMAGE_SHIFTS
    from benchmarks.workloads.workload import load_workload, render_shift

    torch.set_num_threads(1)
    wl = load_workload("clipart", "full", cache)
    folder = wl.folder / "unusual"
    folder.mkdir(exist_ok=True)
    pool = wl.sources
    plans: dict[str, tuple[Callable[[], list[bytes]], str]] = {
        "baseline": (lambda: render_shift(pool[:HELD_OUT], CLEAN, 0, wl.source_format),
                     f"pool images 0-{HELD_OUT - 1}, clean"),
        "clean": (lambda: render_shift(pool[HELD_OUT:], CLEAN, 0, wl.source_format),
                  f"pool images {HELD_OUT}-{len(pool) - 1}, clean"),
        "out_of_category": (lambda: render_shift(_out_of_category(), CLEAN, 0, "PNG"),
                            "clip-art categories with fewer than 100 images"),
    }
    for shift in IMAGE_SHIFTS:
        plans[f"{shift}_s{SEVERITY}"] = (
            lambda s=shift: render_shift(pool[HELD_OUT:HELD_OUT + SHIFTED], s, SEVERITY,
                                      wl.source_format),
            f"pool images {HELD_OUT}-{HELD_OUT + SHIFTED - 1}, {shift} at severity {SEVERITY}")
    sets: dict[str, ScoredSet] = {}
    for name, (render, _) in plans.items():
        path = folder / f"{name}.npz"
        if not path.exists():
            t0 = time.perf_counter()
            s = _score(wl, render())
            np.savez(path, embedding=s.embedding, energy=s.energy, top1=s.top1)
            print(f"  scored {name}: {len(s.energy)} images in {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr)
        with np.load(path) as z:
            sets[name] = ScoredSet(z["embedding"], z["energy"], z["top1"])
    return sets, {name: line for name, (_, line) in plans.items()}


# --- detectors ---------------------------------------------------------------------------


def visionmon_scores(base: ScoredSet, sets: dict[str, ScoredSet]
                     ) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray], float, float]]:
    """knn and energy as the daemon computes them: (baseline scores, scores per set, fit
    seconds, score seconds per 1,000 images)."""
    from monitor.baseline import embedding_profile
    from monitor.scored import ScoredImage
    from monitor.unusual import baseline_scores, image_scores, unusual_profiles

    t0 = time.perf_counter()
    profile = embedding_profile(base.embedding)
    images = [ScoredImage("r", "m", "v", 0.0, int(c), 1.0, e, (), energy=float(en))
              for e, en, c in zip(base.embedding, base.energy, base.top1, strict=True)]
    profiles = unusual_profiles(images, profile.sample)
    fit_s = time.perf_counter() - t0
    own = baseline_scores(images, profile.sample)
    out: dict[str, dict[str, np.ndarray]] = {"knn": {}, "energy": {}}
    spent, scored = 0.0, 0
    for name, s in sets.items():
        t0 = time.perf_counter()
        got = image_scores(s.embedding, s.energy, profiles, profile.sample)
        spent += time.perf_counter() - t0
        scored += len(s.energy)
        for score in out:
            out[score][name] = got[score]
    ms_per_image = spent / scored * 1000
    return {score: (own[score], out[score], fit_s, ms_per_image) for score in out}


def _fit_mahalanobis(x: np.ndarray, top1: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Class-conditional Mahalanobis with a tied, Ledoit-Wolf shrunk covariance."""
    from sklearn.covariance import LedoitWolf

    classes = np.unique(top1)
    means = np.stack([x[top1 == c].mean(0) for c in classes])
    centred = x - means[np.searchsorted(classes, top1)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_

    def score(q: np.ndarray) -> np.ndarray:
        d = q[:, None, :] - means[None, :, :]
        return np.einsum("nkd,de,nke->nk", d, precision, d).min(1)
    return score


def _folds(n: int) -> list[np.ndarray]:
    return np.array_split(np.random.default_rng(0).permutation(n), FOLDS)


def mahalanobis_scores(base: ScoredSet, sets: dict[str, ScoredSet]
                       ) -> tuple[np.ndarray, dict[str, np.ndarray], float, float]:
    own = np.empty(len(base.energy))
    for fold in _folds(len(own)):
        rest = np.setdiff1d(np.arange(len(own)), fold)
        own[fold] = _fit_mahalanobis(base.embedding[rest], base.top1[rest])(
            base.embedding[fold])
    t0 = time.perf_counter()
    fitted = _fit_mahalanobis(base.embedding, base.top1)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = {name: fitted(s.embedding) for name, s in sets.items()}
    ms_per_image = (time.perf_counter() - t0) / sum(len(s.energy) for s in sets.values()) * 1000
    return own, out, fit_s, ms_per_image


def alibi_scores(base: ScoredSet, sets: dict[str, ScoredSet]
                 ) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray], float, float]]:
    """Alibi Detect's IForest and Mahalanobis, run in the peers' venv (`_peer_main`)."""
    if not PEER_PYTHON.exists():
        raise SystemExit(f"{PEER_PYTHON} is missing: run benchmarks/peers_detection_env.sh")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, base=base.embedding, folds=np.array(len(base.energy)),
                 **{f"set_{k}": v.embedding for k, v in sets.items()})
        proc = subprocess.run([str(PEER_PYTHON), __file__, "--peer", str(src), str(dst)],
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        timings = json.loads(proc.stdout.strip().splitlines()[-1])
        with np.load(dst) as z:
            return {d: (z[f"{d}_own"], {k: z[f"{d}_set_{k}"] for k in sets},
                        timings[d]["fit_s"], timings[d]["ms_per_image"])
                    for d in ("alibi_iforest", "alibi_mahalanobis")}


def _peer_main(src: Path, dst: Path) -> None:
    """In .bench-venv-detection: Alibi Detect's detectors, out-of-fold on the baseline, then
    fitted on all of it and scoring each set."""
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from alibi_detect.od import IForest, Mahalanobis

    def iforest(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        det = IForest(threshold=None)
        det.fit(x.astype(np.float32))
        return lambda q: det.score(q.astype(np.float32))

    def mahalanobis(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        # a batch of n rows costs n x D x D floats (10 GB for 1,600 rows of 1,280): chunks
        det = Mahalanobis(threshold=None)
        for i in range(0, len(x), PEER_CHUNK):   # online: scoring is how it learns
            det.score(x[i:i + PEER_CHUNK].astype(np.float32))
        return lambda q: np.concatenate([
            copy.deepcopy(det).score(q[i:i + PEER_CHUNK].astype(np.float32))
            for i in range(0, len(q), PEER_CHUNK)])

    with np.load(src) as z:
        base = z["base"]
        sets = {k[4:]: z[k] for k in z.files if k.startswith("set_")}
    arrays: dict[str, np.ndarray] = {}
    timings: dict[str, dict[str, float]] = {}
    for name, fit in (("alibi_iforest", iforest), ("alibi_mahalanobis", mahalanobis)):
        own = np.empty(len(base))
        for fold in _folds(len(base)):
            rest = np.setdiff1d(np.arange(len(base)), fold)
            own[fold] = fit(base[rest])(base[fold])
        t0 = time.perf_counter()
        scorer = fit(base)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for k, v in sets.items():
            arrays[f"{name}_set_{k}"] = scorer(v)
        ms_per_image = (time.perf_counter() - t0) / sum(len(v) for v in sets.values()) * 1000
        arrays[f"{name}_own"] = own
        timings[name] = {"fit_s": fit_s, "ms_per_image": ms_per_image}
    np.savez(dst, **arrays)
    print(json.dumps(timings))


# --- measures ----------------------------------------------------------------------------


def auroc(negative: np.ndarray, positive: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney U / n m)."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(positive, negative).statistic) / (len(positive) * len(negative))


def measure(own: np.ndarray, scores: np.ndarray, clean: np.ndarray, windows: int,
            rng: np.random.Generator) -> Row:
    """One detector on one set, thresholded at the 99th percentile of its baseline scores
    `own`; windows drawn from `scores` with replacement."""
    from monitor.stats.unusual import exceedance_critical

    p99 = float(np.quantile(own, QUANTILE))
    above_base = float((own > p99).sum())
    above = scores > p99
    fired = []
    for n in (300, 100, 30):
        critical = exceedance_critical(n, ALPHA, above_base, float(own.size))
        counts = above[rng.integers(0, above.size, (windows, n))].sum(1)
        fired.append(float((counts > critical).mean()))
    return Row(float(above.mean()), auroc(clean, scores), *fired)


def _table(rows: dict[str, dict[str, Row]], sizes: dict[str, int], field: str) -> list[str]:
    head = "| images | n | " + " | ".join(DETECTORS) + " |"
    out = [head, "|---|---:|" + "---:|" * len(DETECTORS)]
    for name, by_detector in rows.items():
        cells = []
        for d in DETECTORS:
            r = by_detector[d]
            if field == "tpr":
                cells.append(f"{r.tpr:.1%} · {r.auroc:.2f}")
            else:
                cells.append(f"{r.fire_300:.2f} · {r.fire_100:.2f} · {r.fire_30:.2f}")
        out.append(f"| {name} | {sizes[name]:,} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baselines", default="300,1000",
                    help="baseline sizes, comma-separated (at most 1,000)")
    ap.add_argument("--windows", type=int, default=2000)
    ap.add_argument("--peer", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        _peer_main(*args.peer)
        return
    sets, lines = scored_sets()
    tested = {k: v for k, v in sets.items() if k != "baseline"}
    print("Sets (reference model: the clip-art workload's EfficientNet-Lite0 + head):")
    for k, line in lines.items():
        print(f"- `{k}`: {line}, {len(sets[k].energy):,} images")
    for size in (int(s) for s in args.baselines.split(",")):
        b = sets["baseline"]
        base = ScoredSet(b.embedding[:size], b.energy[:size], b.top1[:size])
        results = visionmon_scores(base, tested)
        results["mahalanobis"] = mahalanobis_scores(base, tested)
        results.update(alibi_scores(base, tested))
        rng = np.random.default_rng(size)
        rows = {name: {d: measure(results[d][0], results[d][1][name],
                                  results[d][1]["clean"], args.windows, rng)
                       for d in DETECTORS} for name in tested}
        sizes = {k: len(v.energy) for k, v in tested.items()}
        print(f"\n### Baseline of {size:,} images\n")
        print("Share above the baseline's 99th percentile · AUROC against `clean` (on `clean`: "
              "the false-positive rate · 0.50):\n")
        print("\n".join(_table(rows, sizes, "tpr")))
        print(f"\nShare of windows that fire, n = 300 · n = 100 · n = 30 ({args.windows:,} "
              f"windows each, beta-binomial critical count at alpha = {ALPHA}):\n")
        print("\n".join(_table(rows, sizes, "fire")))
        print("\n| detector | fit (s) | score (ms per image) |\n|---|---:|---:|")
        for d in DETECTORS:
            print(f"| {d} | {results[d][2]:.3f} | {results[d][3]:.3f} |")


if __name__ == "__main__":
    main()
