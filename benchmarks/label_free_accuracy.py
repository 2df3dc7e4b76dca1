"""Error of every label-free accuracy estimate against realized accuracy under covariate shift.

The digits workload of benchmarks/accuracy_estimate.py (scikit-learn's ``load_digits``; per
random split: 50 % train the production model and a reference model of the other kind, 25 %
are the labelled, shadow-scored baseline, 25 % the pool windows draw from with replacement,
each drawn image corrupted afresh). Per window of WINDOW predictions, |estimate − realized| for

  mean confidence      the raw mean top-1 confidence (method="mean_confidence")
  calibrated           mean isotonic-calibrated confidence (method="calibrated")
  ATC-MC               share of top-1 confidences >= t, t fitted on the baseline (method="atc";
                       what the daemon exports: events carry the top-1 confidence)
  ATC-MC (TS)          the same after temperature scaling fitted on the baseline's probabilities
  ATC-NE (TS)          negative entropy of the temperature-scaled probabilities as the score
  shadow-stratified    P(correct | agrees with the reference × 15 confidence bins) on the
                       baseline, reweighted by the window's mix (method="shadow_stratified")

Prints the per-shift table and the mean absolute error in accuracy points (×100) by severity.

`--variants DIR` instead reads the cached variants of a built realistic workload
(benchmarks/workloads/, e.g. ~/.cache/visionmon-workloads/clipart-full-v2/variants): the
baseline is the clean pool beyond the first N images, and windows draw from the first N
images of every `<shift>-s<severity>-n<N>.npz` there (and of the clean pool).

    .venv/bin/python benchmarks/label_free_accuracy.py [--splits 10] [--windows 4] [--window 1000]
    .venv/bin/python benchmarks/label_free_accuracy.py --variants DIR [--windows 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.accuracy_estimate import PIXEL_MAX, SHIFTS, production_models
from monitor.stats import fit_isotonic
from monitor.stats.label_free import (
    ShadowStrata,
    atc_estimate,
    atc_threshold,
    fit_shadow_strata,
    shadow_stratified_estimate,
    stratum_counts,
)

ESTIMATORS = ("mean confidence", "calibrated", "ATC-MC", "ATC-MC (TS)", "ATC-NE (TS)",
              "shadow-stratified")


def probabilities(model: object, images: np.ndarray) -> np.ndarray:
    return model.predict_proba(images.reshape(images.shape[0], -1) / PIXEL_MAX)  # type: ignore[attr-defined,no-any-return]


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the baseline's negative log-likelihood of softmax(log p / T)."""
    logp = np.log(np.clip(probs, 1e-12, 1.0))

    def nll(t: float) -> float:
        z = logp / t
        z = z - z.max(axis=1, keepdims=True)
        return float(-np.mean(z[np.arange(labels.size), labels]
                              - np.log(np.exp(z).sum(axis=1))))

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


def scaled(probs: np.ndarray, t: float) -> np.ndarray:
    z = np.log(np.clip(probs, 1e-12, 1.0)) / t
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def neg_entropy(probs: np.ndarray) -> np.ndarray:
    return np.sum(probs * np.log(np.clip(probs, 1e-12, 1.0)), axis=1)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Fitted:
    """What a baseline holds for each estimator."""

    calibration: object
    t_mc: float
    temperature: float
    t_mc_ts: float
    t_ne_ts: float
    strata: ShadowStrata


def fit(prod: np.ndarray, ref: np.ndarray, labels: np.ndarray) -> Fitted:
    pred, conf = prod.argmax(axis=1), prod.max(axis=1)
    ok = pred == labels
    temp = fit_temperature(prod, labels)
    ts = scaled(prod, temp)
    return Fitted(fit_isotonic(conf, ok.astype(np.float64)), atc_threshold(conf, ok), temp,
                  atc_threshold(ts.max(axis=1), ok), atc_threshold(neg_entropy(ts), ok),
                  fit_shadow_strata(conf, pred == ref.argmax(axis=1), ok))


def estimates(f: Fitted, prod: np.ndarray, ref: np.ndarray,
              images: int | None = None) -> dict[str, float]:
    """Every estimate of one window; the shadow-stratified one from its first `images`
    predictions only (the daemon has it from the sampled, shadow-scored images), all
    predictions when None."""
    conf, n = prod.max(axis=1), prod.shape[0]
    ts = scaled(prod, f.temperature)
    scored = slice(None) if images is None else slice(0, images)
    counts = stratum_counts(conf[scored], prod[scored].argmax(axis=1)
                            == ref[scored].argmax(axis=1))
    k = f.strata.bins
    return {
        "mean confidence": float(conf.mean()),
        "calibrated": float(np.mean(f.calibration.apply(conf))),  # type: ignore[attr-defined]
        "ATC-MC": atc_estimate(float((conf >= f.t_mc).sum()), n),
        "ATC-MC (TS)": atc_estimate(float((ts.max(axis=1) >= f.t_mc_ts).sum()), n),
        "ATC-NE (TS)": atc_estimate(float((neg_entropy(ts) >= f.t_ne_ts).sum()), n),
        "shadow-stratified": shadow_stratified_estimate(f.strata, counts[k:], counts[:k]),
    }


Results = dict[tuple[str, str, int], list[dict[str, float]]]


def evaluate(splits: int, windows: int, window: int, images: int | None = None) -> Results:
    """Per (production model, shift, severity rank) the windows' realized and estimates."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float64)
    labels = digits.target.astype(np.int64)
    out: Results = {}
    for split in range(splits):
        rng = np.random.default_rng([split, 7])
        order = rng.permutation(labels.size)
        train, base, pool = np.split(order, [labels.size // 2, 3 * labels.size // 4])
        trained = {}
        for name, make in production_models(split).items():
            model = make()
            model.fit(images[train].reshape(train.size, -1) / PIXEL_MAX,  # type: ignore[attr-defined]
                      labels[train])
            trained[name] = model
        for name, model in trained.items():
            reference = next(m for other, m in trained.items() if other != name)
            f = fit(probabilities(model, images[base]), probabilities(reference, images[base]),
                    labels[base])
            for shift, corrupt, levels, _unit in SHIFTS:
                for rank, level in enumerate(levels):
                    for _ in range(windows):
                        drawn = rng.choice(pool, size=window, replace=True)
                        shifted = corrupt(images[drawn], level, rng)
                        prod = probabilities(model, shifted)
                        row = estimates(f, prod, probabilities(reference, shifted), images)
                        row["realized"] = float(np.mean(prod.argmax(axis=1) == labels[drawn]))
                        out.setdefault((name, shift, rank), []).append(row)
    return out


def _outputs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(path) as z:
        return (z["production_probs"].astype(np.float64),
                z["reference_probs"].astype(np.float64), z["labels"].astype(np.int64))


def evaluate_variants(folder: Path, windows: int, window: int,
                      images: int | None = None) -> Results:
    """Per (workload, shift, severity) windows drawn from cached workload variants."""
    prod, ref, labels = _outputs(folder / "clean.npz")
    out: Results = {}
    rng = np.random.default_rng(0)
    for path in sorted(folder.glob("*-s*-n*.npz")):
        stem, n_txt = path.stem.rsplit("-n", 1)
        shift, severity = stem.rsplit("-s", 1)
        n = int(n_txt)
        f = fit(prod[n:], ref[n:], labels[n:])
        for name, rank, (p, r, y) in (("none", 0, (prod[:n], ref[:n], labels[:n])),
                                      (shift, int(severity) - 1, _outputs(path))):
            for _ in range(windows):
                rows = rng.choice(n, size=window, replace=True)
                row = estimates(f, p[rows], r[rows], images)
                row["realized"] = float(np.mean(p[rows].argmax(axis=1) == y[rows]))
                out.setdefault((folder.parent.name, name, rank), []).append(row)
    return out


def mae(rows: list[dict[str, float]], estimator: str) -> float:
    return 100 * float(np.mean([abs(r[estimator] - r["realized"]) for r in rows]))


def tables(results: Results) -> str:
    head = "| model | shift | severity | realized | " + " | ".join(ESTIMATORS) + " |"
    rule = "|---|---|---:|---:|" + "---:|" * len(ESTIMATORS)
    lines = ["MAE per shift, accuracy points (×100)", "", head, rule]
    for (model, shift, rank), rows in results.items():
        realized = 100 * float(np.mean([r["realized"] for r in rows]))
        lines.append(f"| {model} | {shift} | {'clean' if shift == 'none' else rank + 1} "
                     f"| {realized:.1f} | "
                     + " | ".join(f"{mae(rows, e):.1f}" for e in ESTIMATORS) + " |")
    lines += ["", "Mean absolute error, accuracy points (×100)", "",
              "| model | windows | " + " | ".join(ESTIMATORS) + " |",
              "|---|---|" + "---:|" * len(ESTIMATORS)]
    for model in dict.fromkeys(k[0] for k in results):
        for label, keep in (("clean", lambda s: s == "none"),
                            ("shifted", lambda s: s != "none")):
            rows = [r for (m, s, _), rs in results.items() if m == model and keep(s) for r in rs]
            lines.append(f"| {model} | {label} ({len(rows)}) | "
                         + " | ".join(f"{mae(rows, e):.1f}" for e in ESTIMATORS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", type=int, default=10, help="random train/baseline/pool splits")
    ap.add_argument("--windows", type=int, default=4, help="windows per split and severity")
    ap.add_argument("--window", type=int, default=1000, help="predictions per window")
    ap.add_argument("--images", type=int, default=None,
                    help="shadow-scored images per window (the shadow-stratified estimate "
                         "uses only these, as the daemon does; default: every prediction)")
    ap.add_argument("--variants", type=Path, default=None,
                    help="a built workload's variants folder (see the module docstring)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    if args.variants is not None:
        results = evaluate_variants(args.variants, args.windows, args.window, args.images)
        print(f"{args.variants}; {args.windows} windows of {args.window} predictions per row"
              f"{'' if args.images is None else f', {args.images} of them shadow-scored'}\n")
    else:
        results = evaluate(args.splits, args.windows, args.window, args.images)
        print(f"digits; {args.splits} splits x {args.windows} windows of {args.window} "
              "predictions per row\n")
    print(tables(results))
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
