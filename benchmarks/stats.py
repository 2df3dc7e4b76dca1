"""Streaming drift statistics vs batch tools, on the same window pairs.

For N = 10^4, 10^5, 10^6 events and C = 10 and 1,000 classes, a reference window and a current
window of N events each are drawn once (predicted class: Zipf prior, mildly shifted in the
current window; top-1 confidence: Beta(6, 2) vs Beta(5, 2)). Each measurement then runs in a fresh
subprocess, three times (median), and reports its peak RSS (VmHWM of the child; ru_maxrss would
carry the parent's peak over exec).

Streaming update, current window fed in batches (the baseline is built from the reference):
  columnar      DriftMonitor.add_values for predicted_class and confidence (column arrays)
  events        DriftMonitor.on_predictions on lists of decoded PredictionEvent
  engine        Engine.apply_predictions of the daemon's wiring (build_statistics: request
                counters, drift, label join store, quality), drift on class + confidence
  numpy         plain fixed-bin counting (searchsorted + bincount into two count vectors,
                no windows): the ceiling for a vectorised update
  Windows: the default 5m/1h/1d with 60 slices each; events arrive at 1,000 per second of
  event time, so the 1h window holds the whole current window. Batches are built before the
  clock starts; only the update calls are timed.

Evaluation, once the current window is in:
  project       PSI, KL and the sample-size-aware threshold of class and confidence plus
                ECE and MCE (15 bins) for one window, from its ring totals (median of 200)
  numpy batch   plain numpy on the raw arrays: quantile edges from the reference, bin both
                windows, PSI and KL of class and confidence
  evidently     Report([DataDriftPreset(method="psi" | "kl_div")]) on class (categorical) and
                confidence (numerical), Dataset.from_pandas included (both methods in one
                child, so its peak RSS is the larger of the two); and the bare
                psi_stat_test / kl_div_stat_test on the two columns. Runs in .bench-venv/
                (benchmarks/peers_env.sh); warm-up calls on 1,000 rows run first.

    .venv/bin/python benchmarks/stats.py [--runs 3] [--sizes 10000 100000 1000000]
        [--classes 10 1000] [--peers-python .bench-venv/bin/python] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = 20240603
CHUNK = 1_000                 # events per generated chunk; windows and batches are whole chunks
EVENT_RATE = 1_000.0          # events per second of event time
T0 = 1_800_000_000.0
ZIPF_EXPONENT = 1.1
SHIFT_MIX = 0.1               # current prior = 0.9 * reference prior + 0.1 * uniform
QUANTILE_BINS = 10
EVAL_REPEATS = 200
MODEL, VERSION = "bench", "v1"
UPDATE_GOAL = 5e6             # events/s
EVAL_GOAL_MS = 1.0
REPORT_RATIO_GOAL = 1_000.0

PROJECT_KINDS = ("columnar-1000", "columnar-5000", "events-1000", "events-5000",
                 "engine-5000", "numpy-1000", "eval", "numpy-batch")
PEER_KINDS = ("evidently-report", "evidently-stattest")


# --- data ---------------------------------------------------------------------------------


def zipf_prior(c: int) -> np.ndarray:
    w = 1.0 / np.arange(1, c + 1, dtype=np.float64) ** ZIPF_EXPONENT
    return w / w.sum()


def chunk(c: int, side: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunk j of a window (side 0: reference, 1: current): predicted class, confidence,
    correct (Bernoulli(confidence): a calibrated model). Deterministic in (c, side, j)."""
    rng = np.random.default_rng([SEED, c, side, j])
    prior = zipf_prior(c)
    if side == 1:
        prior = (1 - SHIFT_MIX) * prior + SHIFT_MIX / c
    pred = rng.choice(c, size=CHUNK, p=prior)
    conf = rng.beta(6.0 if side == 0 else 5.0, 2.0, CHUNK)
    correct = (rng.random(CHUNK) < conf).astype(np.float64)
    return pred.astype(np.int64), conf, correct


def batches(n: int, c: int, side: int, batch: int) -> Iterator[tuple[np.ndarray, ...]]:
    """(ts, pred, conf, correct) of a window, `batch` events at a time."""
    per = batch // CHUNK
    for first in range(0, n // CHUNK, per):
        parts = [chunk(c, side, j) for j in range(first, min(first + per, n // CHUNK))]
        pred = np.concatenate([p[0] for p in parts])
        conf = np.concatenate([p[1] for p in parts])
        correct = np.concatenate([p[2] for p in parts])
        ts = T0 + (first * CHUNK + np.arange(pred.size)) / EVENT_RATE
        yield ts, pred, conf, correct


def window(n: int, c: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    preds, confs = [], []
    for _, pred, conf, _ in batches(n, c, side, CHUNK):
        preds.append(pred)
        confs.append(conf)
    return np.concatenate(preds), np.concatenate(confs)


def prepare(data: Path, n: int, c: int) -> None:
    """Write both windows (.npy, for the batch tools) and the baseline file of the reference."""
    from monitor.baseline import Baseline, FeatureProfile, save
    from monitor.stats import bin_counts, categorical_counts, quantile_edges

    ref_pred, ref_conf = window(n, c, 0)
    cur_pred, cur_conf = window(n, c, 1)
    tag = f"{n}-{c}"
    for name, arr in (("ref_pred", ref_pred), ("ref_conf", ref_conf),
                      ("cur_pred", cur_pred), ("cur_conf", cur_conf)):
        np.save(data / f"{name}-{tag}.npy", arr)
    edges = quantile_edges(ref_conf, QUANTILE_BINS)
    features = {
        "predicted_class": FeatureProfile("predicted_class", np.empty(0),
                                          categorical_counts(ref_pred, c).astype(np.float64)),
        "confidence": FeatureProfile("confidence", edges,
                                     bin_counts(ref_conf, edges).astype(np.float64)),
    }
    save(Baseline(MODEL, class_names(c), n, T0, features, source="benchmarks/stats.py"),
         data / f"baseline-{tag}.json")


def class_names(c: int) -> tuple[str, ...]:
    return tuple(f"c{i}" for i in range(c))


def load_window(data: Path, n: int, c: int) -> dict[str, np.ndarray]:
    tag = f"{n}-{c}"
    return {k: np.load(data / f"{k}-{tag}.npy")
            for k in ("ref_pred", "ref_conf", "cur_pred", "cur_conf")}


# --- child-side measurements ---------------------------------------------------------------


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


def _drift_monitor(data: Path, n: int, c: int, window_sizes: tuple[str, ...]) -> Any:
    from monitor.baseline import load
    from monitor.config import parse_duration
    from monitor.drift import DriftMonitor
    from monitor.windows import WindowSpec

    baseline = load(data / f"baseline-{n}-{c}.json", MODEL, class_names(c))
    specs = tuple(WindowSpec(s, parse_duration(s), 60) for s in window_sizes)
    return DriftMonitor({MODEL: class_names(c)}, specs,
                        features=("predicted_class", "confidence"), baselines={MODEL: baseline})


def _state_bytes(drift: Any) -> int:
    return sum(arr.nbytes for state in drift.by_version.values()
               for rings in state.windows.values() for ring in rings.state()
               for arr in ring.values())


def _events(ts: np.ndarray, pred: np.ndarray, conf: np.ndarray, offset: int) -> list[Any]:
    from monitor.events import PredictionEvent

    nan = math.nan
    return [PredictionEvent(f"r{offset + i}", t, MODEL, VERSION, True, p, cf, nan, nan, 0.01)
            for i, (t, p, cf) in enumerate(zip(ts.tolist(), pred.tolist(), conf.tolist(),
                                               strict=True))]


def _timed_stream(n: int, c: int, batch: int, prepare_batch: Callable[..., Any],
                  update: Callable[[Any], None]) -> float:
    """Seconds spent in `update` over the current window; batches are prepared off the clock."""
    spent = 0.0
    done = 0
    for ts, pred, conf, _ in batches(n, c, 1, batch):
        item = prepare_batch(ts, pred, conf, done)
        done += pred.size
        start = time.perf_counter()
        update(item)
        spent += time.perf_counter() - start
    return spent


def _columns(ts: np.ndarray, pred: np.ndarray, conf: np.ndarray, _offset: int) -> Any:
    return ts, pred, conf


def _update_path(path: str, data: Path, n: int, c: int
                 ) -> tuple[Callable[..., Any], Callable[[Any], None], Callable[[], int]]:
    """(prepare a batch, apply it, window-state bytes) of one fresh instance of a path."""
    if path == "columnar":
        drift = _drift_monitor(data, n, c, ("5m", "1h", "1d"))

        def add_columns(item: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
            ts, pred, conf = item
            drift.add_values(MODEL, VERSION, "predicted_class", ts, pred)
            drift.add_values(MODEL, VERSION, "confidence", ts, conf)

        def as_float(ts: np.ndarray, pred: np.ndarray, conf: np.ndarray, _o: int) -> Any:
            return ts, pred.astype(np.float64), conf

        return as_float, add_columns, lambda: _state_bytes(drift)
    if path == "events":
        events_drift = _drift_monitor(data, n, c, ("5m", "1h", "1d"))
        from monitor.engine import EventGroup

        # the group (and its numpy columns, built on first use) is made inside the timed
        # call, as the engine makes it for every batch
        return (_events,
                lambda evs: events_drift.on_predictions({(MODEL, VERSION): EventGroup(evs)}),
                lambda: _state_bytes(events_drift))
    if path == "engine":
        from monitor.config import parse_config, resolve
        from visionmon.app import build_statistics

        loaded = resolve(parse_config({
            "version": 1, "models": [{"name": MODEL, "classes": list(class_names(c))}],
            "baseline": {"mode": "file", "path": str(data / f"baseline-{n}-{c}.json")},
            "drift": {"features": ["predicted_class", "confidence"]}}))
        stats = build_statistics(loaded)
        return _events, stats.engine.apply_predictions, lambda: _state_bytes(stats.drift)
    if path == "numpy":
        from monitor.baseline import load

        edges = load(data / f"baseline-{n}-{c}.json").features["confidence"].edges
        counts = {"class": np.zeros(c), "conf": np.zeros(edges.size + 1)}

        def count(item: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
            _, pred, conf = item
            counts["class"] += np.bincount(pred, minlength=c)
            counts["conf"] += np.bincount(np.searchsorted(edges, conf), minlength=edges.size + 1)

        return _columns, count, lambda: sum(v.nbytes for v in counts.values())
    raise ValueError(f"unknown update path {path!r}")


def measure_update(kind: str, data: Path, n: int, c: int) -> dict[str, Any]:
    path, batch_s = kind.split("-")
    batch = int(batch_s)
    # warm-up on a throwaway instance: first-call costs stay off the clock, as in a daemon
    prep, update, _ = _update_path(path, data, n, c)
    ts, pred, conf, _ = next(batches(batch, c, 0, batch))
    update(prep(ts, pred, conf, 0))
    prep, update, state_bytes = _update_path(path, data, n, c)
    from visionmon.gc_tuning import tune_collector

    tune_collector()  # the collector settings of `visionmon run`
    rss_setup = _status_mb("VmRSS")
    spent = _timed_stream(n, c, batch, prep, update)
    return {"batch": batch, "seconds": spent, "events_per_s": n / spent,
            "rss_setup_mb": rss_setup, "state_bytes": state_bytes()}


def measure_eval(data: Path, n: int, c: int) -> dict[str, Any]:
    from monitor.drift import drift_figures
    from monitor.stats import calibration_bin_index, ece_from_bins, mce_from_bins
    from monitor.windows import WindowedCounts

    drift = _drift_monitor(data, n, c, ("1h",))
    cal = WindowedCounts(drift.windows, 3 * 15)
    for ts, pred, conf, correct in batches(n, c, 1, 5 * CHUNK):
        drift.add_values(MODEL, VERSION, "predicted_class", ts, pred.astype(np.float64))
        drift.add_values(MODEL, VERSION, "confidence", ts, conf)
        b = calibration_bin_index(conf)
        cal.add(np.concatenate([ts, ts, ts]), np.concatenate([b, 15 + b, 30 + b]),
                np.concatenate([np.ones_like(conf), conf, correct]))
    rss_setup = _status_mb("VmRSS")
    state = drift.by_version[(MODEL, VERSION)]
    baseline = drift.baselines[MODEL]
    now = drift.watermark[MODEL]

    def evaluate() -> dict[str, float]:
        out: dict[str, float] = {}
        for name in ("predicted_class", "confidence"):
            counts = state.windows[name].totals(now)["1h"]
            f = drift_figures(counts, baseline.features[name].counts, drift.alpha,
                              drift.min_effect)
            out[f"psi_{name}"], out[f"kl_{name}"], out[f"threshold_{name}"] = (
                f.psi, f.kl, f.threshold)
        bins = cal.totals(now)["1h"]
        out["ece"] = ece_from_bins(bins[:15], bins[15:30], bins[30:])
        out["mce"] = mce_from_bins(bins[:15], bins[15:30], bins[30:])
        return out

    times = []
    for _ in range(EVAL_REPEATS):
        start = time.perf_counter()
        values = evaluate()
        times.append(time.perf_counter() - start)
    return {"eval_ms": statistics.median(times) * 1e3, "values": values,
            "rss_setup_mb": rss_setup, "window_events": int(state.windows["confidence"]
                                                            .totals(now)["1h"].sum())}


def _numpy_psi_kl(cur: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    c = (cur + 0.5) / (cur.sum() + 0.5 * cur.size)
    b = (ref + 0.5) / (ref.sum() + 0.5 * ref.size)
    return float(np.sum((c - b) * np.log(c / b))), float(np.sum(c * np.log(c / b)))


def measure_numpy_batch(data: Path, n: int, c: int) -> dict[str, Any]:
    w = load_window(data, n, c)
    rss_setup = _status_mb("VmRSS")
    start = time.perf_counter()
    edges = np.unique(np.quantile(w["ref_conf"], np.arange(1, QUANTILE_BINS) / QUANTILE_BINS))
    k = edges.size + 1
    conf_ref = np.bincount(np.searchsorted(edges, w["ref_conf"]), minlength=k)
    conf_cur = np.bincount(np.searchsorted(edges, w["cur_conf"]), minlength=k)
    cls_ref = np.bincount(w["ref_pred"], minlength=c)
    cls_cur = np.bincount(w["cur_pred"], minlength=c)
    psi_class, kl_class = _numpy_psi_kl(cls_cur, cls_ref)
    psi_conf, kl_conf = _numpy_psi_kl(conf_cur, conf_ref)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_setup_mb": rss_setup,
            "values": {"psi_predicted_class": psi_class, "psi_confidence": psi_conf,
                       "kl_predicted_class": kl_class, "kl_confidence": kl_conf}}


def _frames(w: dict[str, np.ndarray]) -> tuple[Any, Any]:
    import pandas as pd

    ref = pd.DataFrame({"predicted_class": w["ref_pred"], "confidence": w["ref_conf"]})
    cur = pd.DataFrame({"predicted_class": w["cur_pred"], "confidence": w["cur_conf"]})
    return ref, cur


def measure_evidently_report(data: Path, n: int, c: int) -> dict[str, Any]:
    """DataDriftPreset with method psi, then kl_div, on the same frames (one child: its peak
    RSS is the larger of the two)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=["confidence"],
                                categorical_columns=["predicted_class"])

    def run(method: str, ref: Any, cur: Any) -> Any:
        report = Report([DataDriftPreset(method=method)])
        return report.run(Dataset.from_pandas(cur, data_definition=definition),
                          Dataset.from_pandas(ref, data_definition=definition))

    small = _frames(load_window(data, 10_000, c))
    for method in ("psi", "kl_div"):  # warm-up: first-use costs off the clock
        run(method, *(f.iloc[:1_000] for f in small))
    del small
    ref, cur = _frames(load_window(data, n, c))
    out: dict[str, Any] = {"rss_setup_mb": _status_mb("VmRSS"), "values": {}}
    for method in ("psi", "kl_div"):
        start = time.perf_counter()
        snapshot = run(method, ref, cur)
        out[f"{method}_seconds"] = time.perf_counter() - start
        for metric in snapshot.dict()["metrics"]:
            name = str(metric.get("metric_name", ""))
            for column in ("predicted_class", "confidence"):
                if name.startswith("ValueDrift") and f"column={column}," in name:
                    out["values"][f"{method}_{column}"] = float(metric["value"])
    return out


def measure_evidently_stattest(data: Path, n: int, c: int) -> dict[str, Any]:
    from evidently.legacy.calculations.stattests import kl_div_stat_test, psi_stat_test
    from evidently.legacy.core import ColumnType

    ref, cur = _frames(load_window(data, n, c))
    kinds = {"predicted_class": ColumnType.Categorical, "confidence": ColumnType.Numerical}
    for test in (psi_stat_test, kl_div_stat_test):  # warm-up
        test(ref["confidence"].iloc[:1000], cur["confidence"].iloc[:1000],
             ColumnType.Numerical, None)
    rss_setup = _status_mb("VmRSS")
    out: dict[str, Any] = {"rss_setup_mb": rss_setup, "values": {}}
    for label, test in (("psi", psi_stat_test), ("kl_div", kl_div_stat_test)):
        start = time.perf_counter()
        results = {col: test(ref[col], cur[col], kind, None) for col, kind in kinds.items()}
        out[f"{label}_seconds"] = time.perf_counter() - start
        for col, r in results.items():
            out["values"][f"{label}_{col}"] = float(r.drift_score)
    return out


def child(kind: str, data: Path, n: int, c: int) -> dict[str, Any]:
    rss_import = _status_mb("VmRSS")
    if kind.split("-")[0] in ("columnar", "events", "engine", "numpy") and kind != "numpy-batch":
        out = measure_update(kind, data, n, c)
    elif kind == "eval":
        out = measure_eval(data, n, c)
    elif kind == "numpy-batch":
        out = measure_numpy_batch(data, n, c)
    elif kind == "evidently-report":
        out = measure_evidently_report(data, n, c)
    elif kind == "evidently-stattest":
        out = measure_evidently_stattest(data, n, c)
    else:
        raise ValueError(f"unknown measurement {kind!r}")
    out.update(kind=kind, n=n, c=c, rss_start_mb=rss_import, rss_peak_mb=_status_mb("VmHWM"))
    return out


# --- parent: orchestration and tables -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    kind: str
    n: int
    c: int
    python: str


def run_child(job: Job, data: Path) -> dict[str, Any]:
    cmd = [job.python, str(Path(__file__).resolve()), "--child", job.kind, "--data", str(data),
           "--n", str(job.n), "--c", str(job.c)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{job.kind} N={job.n} C={job.c} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else math.nan


def _fmt_rate(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x / 1e6:.2f}M"


def _fmt_ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def _fmt_ratio(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.0f}×" if x >= 10 else f"{x:.1f}×"


def tables(results: dict[tuple[str, int, int], list[dict[str, Any]]],
           sizes: list[int], classes: list[int]) -> str:
    def med(kind: str, n: int, c: int, key: str) -> float:
        return median_of(results.get((kind, n, c), []), key)

    lines = ["### Streaming update (events/s, median of 3; goal ≥ 5M/s)", "",
             "| N | C | columnar B=1000 | columnar B=5000 | events B=1000 | events B=5000 "
             "| full engine B=5000 | plain numpy B=1000 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in classes:
        for n in sizes:
            cells = [_fmt_rate(med(k, n, c, "events_per_s"))
                     for k in ("columnar-1000", "columnar-5000", "events-1000", "events-5000",
                               "engine-5000", "numpy-1000")]
            lines.append(f"| {n:,} | {c:,} | " + " | ".join(cells) + " |")
    lines += ["", "### Evaluation vs batch computation (ms, median of 3)", "",
              "| N | C | project eval (1 window) | numpy batch | Evidently psi_stat_test "
              "| kl_div_stat_test | Evidently report psi | report kl_div "
              "| report psi ÷ project eval | numpy ÷ project eval |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in classes:
        for n in sizes:
            ev = med("eval", n, c, "eval_ms") / 1e3
            nb = med("numpy-batch", n, c, "seconds")
            sp = med("evidently-stattest", n, c, "psi_seconds")
            sk = med("evidently-stattest", n, c, "kl_div_seconds")
            rp = med("evidently-report", n, c, "psi_seconds")
            rk = med("evidently-report", n, c, "kl_div_seconds")
            lines.append(f"| {n:,} | {c:,} | {_fmt_ms(ev)} | {_fmt_ms(nb)} | {_fmt_ms(sp)} "
                         f"| {_fmt_ms(sk)} | {_fmt_ms(rp)} | {_fmt_ms(rk)} "
                         f"| {_fmt_ratio(rp / ev)} | {_fmt_ratio(nb / ev)} |")
    kinds = ("columnar-5000", "events-5000", "engine-5000", "eval", "numpy-batch",
             "evidently-stattest", "evidently-report")
    lines += ["", "### Peak RSS of each measurement (MB, VmHWM of its subprocess; "
              "in brackets: growth during the measured part, over the RSS once imports, "
              "instances and input data were in place)", "",
              "| N | C | " + " | ".join(kinds) + " | window state (KB) |",
              "|---:|---:|" + "---:|" * (len(kinds) + 1)]
    for c in classes:
        for n in sizes:
            cells = []
            for k in kinds:
                peak = med(k, n, c, "rss_peak_mb")
                grow = peak - med(k, n, c, "rss_setup_mb")
                cells.append("n/a" if math.isnan(peak) else f"{peak:.0f} (+{max(grow, 0.0):.0f})")
            state = med("columnar-5000", n, c, "state_bytes") / 1024
            lines.append(f"| {n:,} | {c:,} | " + " | ".join(cells) + f" | {state:,.0f} |")
    lines += ["", "### Values on the same windows (first run; PSI and KL in nats)", "",
              "| N | C | feature | project PSI (1h) | threshold | numpy PSI | Evidently PSI "
              "| project KL(cur‖base) | numpy KL | Evidently KL(ref‖cur) |",
              "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in classes:
        for n in sizes:
            def first(kind: str, n: int = n, c: int = c) -> dict[str, float]:
                runs = results.get((kind, n, c), [])
                return runs[0].get("values", {}) if runs else {}

            pv, nv = first("eval"), first("numpy-batch")
            evp = evk = first("evidently-report")
            for feat in ("predicted_class", "confidence"):
                lines.append(
                    f"| {n:,} | {c:,} | {feat} | {pv.get(f'psi_{feat}', math.nan):.5f} "
                    f"| {pv.get(f'threshold_{feat}', math.nan):.5f} "
                    f"| {nv.get(f'psi_{feat}', math.nan):.5f} "
                    f"| {evp.get(f'psi_{feat}', math.nan):.5f} "
                    f"| {pv.get(f'kl_{feat}', math.nan):.5f} "
                    f"| {nv.get(f'kl_{feat}', math.nan):.5f} "
                    f"| {evk.get(f'kl_div_{feat}', math.nan):.5f} |")
    return "\n".join(lines)


def verdicts(results: dict[tuple[str, int, int], list[dict[str, Any]]],
             sizes: list[int], classes: list[int]) -> str:
    def med(kind: str, n: int, c: int, key: str) -> float:
        return median_of(results.get((kind, n, c), []), key)

    out = []
    for path in ("columnar-1000", "columnar-5000", "events-1000", "events-5000", "engine-5000"):
        for c in classes:
            rates = [med(path, n, c, "events_per_s") for n in sizes]
            verdict = ("meets" if min(rates) >= UPDATE_GOAL
                       else "misses" if max(rates) < UPDATE_GOAL else "partly meets")
            out.append(f"- update {path}, C={c:,}: {min(rates) / 1e6:.2f}M to "
                       f"{max(rates) / 1e6:.2f}M events/s over N -> {verdict} the 5M/s goal")
    worst = max(med("eval", n, c, "eval_ms") for c in classes for n in sizes)
    out.append(f"- evaluation: slowest {worst:.3f} ms per window -> "
               f"{'meets' if worst < EVAL_GOAL_MS else 'misses'} the < 1 ms goal")
    big = max(sizes)
    for c in classes:
        ratio = (med("evidently-report", big, c, "psi_seconds")
                 / (med("eval", big, c, "eval_ms") / 1e3))
        if not math.isnan(ratio):
            out.append(f"- Evidently psi report ÷ project eval at N={big:,}, C={c:,}: "
                       f"{ratio:,.0f}× -> {'meets' if ratio >= REPORT_RATIO_GOAL else 'misses'} "
                       "the ≥ 1000× goal")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--classes", type=int, nargs="+", default=[10, 1_000])
    ap.add_argument("--peers-python", default=str(ROOT / ".bench-venv" / "bin" / "python"))
    ap.add_argument("--json", type=Path, help="also write the raw per-run results here")
    ap.add_argument("--from-json", type=Path,
                    help="print the tables of results saved by --json, measuring nothing")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--c", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.data, args.n, args.c)))
        return 0
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        results = {(k, int(n), int(c)): v for key, v in saved.items()
                   for k, n, c in [key.split("|")]}
        print(tables(results, args.sizes, args.classes))
        print()
        print(verdicts(results, args.sizes, args.classes))
        return 0
    if any(n % 5_000 for n in args.sizes):
        ap.error("sizes must be multiples of 5,000 (whole batches)")
    peers = Path(args.peers_python)
    kinds: list[tuple[str, str]] = [(k, sys.executable) for k in PROJECT_KINDS]
    if peers.exists():
        kinds += [(k, str(peers)) for k in PEER_KINDS]
    else:
        print(f"note: {peers} not found, Evidently skipped; run benchmarks/peers_env.sh",
              file=sys.stderr)
    started = time.perf_counter()
    results: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="visionmon-bench-") as tmp:
        data = Path(tmp)
        for c in args.classes:
            for n in sorted({*args.sizes, 10_000}):
                prepare(data, n, c)
        for run in range(args.runs):
            for c in args.classes:
                for n in args.sizes:
                    for kind, python in kinds:
                        r = run_child(Job(kind, n, c, python), data)
                        results.setdefault((kind, n, c), []).append(r)
            print(f"run {run + 1}/{args.runs} done at {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
    print(tables(results, args.sizes, args.classes))
    print()
    print(verdicts(results, args.sizes, args.classes))
    if args.json:
        args.json.write_text(json.dumps({f"{k}|{n}|{c}": v for (k, n, c), v in results.items()},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
