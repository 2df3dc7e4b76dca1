"""visionmon's signals on the benchmark streams, in process (.venv).

Each stream's records are decoded by the project's decoders (`monitor.events`) and applied
to the engine that `visionmon.app.build_statistics` wires from a config, which is what the
daemon runs: `engine.apply_predictions`, `shadow.apply_scored` for the sampled images (the
reference model's output for those bytes, computed once per distinct image by
`score_images` in workload.py), `labels.apply_feedback` for the labels. At every checkpoint
the engine's snapshot is read, as the Prometheus exporter would.

Signals read from a snapshot, per window (windows of 100, 1,000 and 10,000 requests are
configured as 10s, 100s and 1000s at 10 requests per second):
  pred      PSI of predicted class, confidence, margin, entropy above its threshold
  input     PSI of the input features (brightness, contrast, saturation, channel means, bytes)
  embed     PSI of the 8 embedding principal components
  drift     any of the above (what `DriftMonitor.drifting` and the drift alert see)
  mmd       embedding MMD statistic above its critical value (ShadowMonitor, alpha 0.005)
  agree     shadow agreement ratio below quality.min_shadow_agreement (0.9 on the digits),
            with at least quality.min_shadow_images (100) joined images in the window
  agree_p   the shadow agreement test's p-value (per production class and overall against
            the baseline's agreement), below slos.thresholds.shadow_agreement_drop.alpha
  accuracy  realized accuracy from labels below quality.min_accuracy (0.9 on the digits),
            >= 20 labels
  estimate  the label-free accuracy estimate (not an alarm: its error is measured)
PSI signals are kept as p-values, p = chi2.sf(PSI / (1/n + 1/m), k' - 1) with the merged
bin count k' of `drift_threshold`: PSI > threshold(alpha) exactly when p < alpha, so one run
gives the verdict of every `drift.alpha` (the run checks the equivalence at the level the
daemon tests each feature at: drift.alpha / 21 with the default Bonferroni correction, over
the baseline's 21 features, width and height included).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import chi2

from alerts.simulate import Traffic, run_slo
from alerts.spec import build_spec
from benchmarks.detection.scenarios import (
    CLEAN,
    NO_DRIFT,
    REQUEST_RATE,
    T0,
    Chunk,
    Plan,
    Pool,
    Serialiser,
    make_plan,
)
from monitor import baseline as baseline_mod
from monitor.catalog import LATENCY_BUCKETS
from monitor.config import LoadedConfig, parse_config, resolve
from monitor.drift import drift_figures
from monitor.events import (
    DecodeLimits,
    FeedbackDecoder,
    ImageDecoder,
    ModelClassIndex,
    PredictionDecoder,
)
from monitor.reference_config import ReferenceConfig
from monitor.scored import INPUT_FEATURES, ScoredImage
from monitor.snapshot import HistogramValue, SnapshotBuilder
from monitor.stats import (
    drift_threshold,
    mean_kernel_to_reference,
    mmd2_to_reference,
    mmd_null_test,
)
from tests.oracles.accuracy_estimate import estimated_accuracy
from visionmon.app import Statistics, build_statistics

#: window name in the config -> requests it holds
WINDOWS: dict[str, int] = {"10s": 100, "100s": 1_000, "1000s": 10_000}
DELAY_WINDOW = "100s"
SLICES = 20
ALPHA = 0.01
MIN_JOINS = 20
MIN_AGREEMENT = 0.9
MIN_ACCURACY = 0.9
LATENCY_TARGET = 0.99
LATENCY_THRESHOLD_S = 0.1
LATENCY_STEP_S = 60
BASELINE_SEED = 1_000
#: clean requests the baseline is built from: 5x the largest window (10,000 requests), so the
#: baseline's own sampling noise weighs less against a window's (a production baseline is a
#: day or a week of traffic)
BASELINE_REQUESTS = 50_000
BASELINE_LABEL_FRACTION = 0.5
GROUPS: dict[str, tuple[str, ...]] = {
    "pred": ("predicted_class", "confidence", "margin", "entropy"),
    "input": tuple(f for f in INPUT_FEATURES if f not in ("width", "height")),
    "embed": tuple(f"embedding_pc{j}" for j in range(1, 9)),
}
LIMITS = DecodeLimits(max_future_skew_seconds=1e12)


def bench_config(baseline_path: Path, reference: ReferenceConfig, classes: Sequence[str],
                 alpha: float = ALPHA, min_accuracy: float = MIN_ACCURACY,
                 min_shadow_agreement: float = MIN_AGREEMENT) -> LoadedConfig:
    """The daemon config of the benchmark (see module docstring for the windows): one model,
    named as the reference model's card says."""
    window = {"window": DELAY_WINDOW}
    model = reference.model
    return resolve(parse_config({
        "version": 1,
        "models": [{"name": model, "classes": list(classes)}],
        "windows": {"sizes": list(WINDOWS), "slices": SLICES},
        "baseline": {"mode": "file", "path": str(baseline_path)},
        "drift": {"alpha": alpha},
        "labels": {"max_entries": 200_000, "ttl": "1h"},
        "quality": {"eval_slice": "100s", "min_labels": MIN_JOINS,
                    "min_accuracy": min_accuracy, "min_shadow_agreement": min_shadow_agreement},
        # drift.correction and drift.mmd and quality.min_shadow_images keep their defaults
        "reference": reference.model_dump(mode="json"),
        "slos": {
            "objectives": [{"name": "latency", "model": model, "kind": "latency",
                            "target": LATENCY_TARGET,
                            "latency_threshold_seconds": LATENCY_THRESHOLD_S}],
            "thresholds": {"drift": window, "ece": window, "shadow_agreement": window,
                           "shadow_agreement_drop": window, "label_coverage": window},
        },
    }, "<benchmark>"), "<benchmark>")


# --- feeding ------------------------------------------------------------------------------


def class_index(loaded: LoadedConfig) -> dict[str, ModelClassIndex]:
    """The decoders' class index of the benchmark config's model."""
    return {m.name: ModelClassIndex.of(m.classes or ()) for m in loaded.config.models}


class Feeder:
    """Decodes a stream's records and applies them to one `Statistics`."""

    def __init__(self, stats: Statistics, pools: dict[str, Pool],
                 index: dict[str, ModelClassIndex]) -> None:
        self.stats = stats
        self.pdec = PredictionDecoder(index, LIMITS)
        self.fdec = FeedbackDecoder(index, LIMITS)
        self.idec = ImageDecoder(index, 5_000_000, LIMITS)
        self.scored_by_bytes: dict[bytes, tuple[Pool, int]] = {}
        for pool in pools.values():
            for j, data in enumerate(pool.images):
                self.scored_by_bytes.setdefault(data, (pool, j))
        self.seconds: dict[str, float] = {"predictions": 0.0, "images": 0.0, "feedback": 0.0}
        self.rejected = 0

    def feed(self, c: Chunk) -> None:
        now = T0 + c.stop / REQUEST_RATE + 60.0
        t = time.perf_counter()
        out = self.pdec.decode(b"\n".join(c.predictions), now)
        self.rejected += len(out.rejections)
        self.stats.engine.apply_predictions(out.events)
        t1 = time.perf_counter()
        scored = []
        for headers, data in c.images:
            dec = self.idec.decode(data, headers, now)
            if not dec.events:
                self.rejected += 1
                continue
            ev = dec.events[0]
            pool, j = self.scored_by_bytes[ev.data]
            scored.append(ScoredImage(ev.request_id, ev.model, ev.version, float(ev.ts),
                                      int(pool.ref_pred[j]), float(pool.ref_conf[j]),
                                      pool.embeddings[j], tuple(pool.features[j].tolist())))
        if scored and self.stats.shadow is not None:
            self.stats.shadow.apply_scored(scored)
        t2 = time.perf_counter()
        if c.feedback:
            fb = []
            for m in c.feedback:
                d = self.fdec.decode(m, now)
                self.rejected += len(d.rejections)
                fb.extend(d.events)
            self.stats.labels.apply_feedback(fb)
        t3 = time.perf_counter()
        self.seconds["predictions"] += t1 - t
        self.seconds["images"] += t2 - t1
        self.seconds["feedback"] += t3 - t2


# --- reading -----------------------------------------------------------------------------


@dataclass(slots=True)
class Reading:
    """Signals of one window at one checkpoint (NaN: no value)."""

    p: dict[str, float] = field(default_factory=dict)      # group -> min p-value
    mmd: float = math.nan                                   # statistic / threshold
    mmd_stat: float = math.nan                              # the exported statistic
    agree: float = math.nan
    agree_n: float = 0.0
    agree_p: float = math.nan                               # smallest over versions
    accuracy: float = math.nan
    labelled: float = 0.0
    estimate: float = math.nan
    mismatches: int = 0     # PSI > threshold disagreeing with p < feature alpha (must be 0)


class Reader:
    """Turns engine snapshots into `Reading`s; times the snapshot by extension."""

    def __init__(self, stats: Statistics, model: str) -> None:
        self.stats = stats
        self.model = model
        self.seconds: dict[str, float] = {}
        self.snapshots = 0

    def snapshot(self) -> dict[str, Any]:
        """The extensions' part of `Engine.snapshot` (every statistic read here), each
        extension timed; the engine's own request counters are left out."""
        b = SnapshotBuilder()
        for ext in self.stats.engine.extensions:
            t = time.perf_counter()
            ext.snapshot(b)
            name = type(ext).__name__
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t
        self.snapshots += 1
        return b.build()

    def read(self, snap: dict[str, Any], windows: tuple[str, ...]) -> dict[str, Reading]:
        stats = self.stats
        baseline = stats.drift.baselines[self.model]
        out = {w: Reading() for w in windows}
        psi = snap.get("visionmon_drift_psi", {})
        thr = snap.get("visionmon_drift_threshold", {})
        nev = snap.get("visionmon_drift_window_events", {})
        group_of = {f: g for g, fs in GROUPS.items() for f in fs}
        feature_alpha = stats.drift.feature_alpha(self.model)  # alpha / 21 (bonferroni)
        for key, value in psi.items():
            _, _, feature, window = key
            if window not in out or feature not in group_of:
                continue
            n = round(nev[key])
            base = baseline.features[feature].counts
            th = drift_threshold(base, n, feature_alpha, stats.drift.min_effect)
            if th.method == "no_value":
                continue
            m = float(base.sum())
            p = float(chi2.sf(value / (1.0 / n + 1.0 / m), th.n_bins - 1))
            r = out[window]
            g = group_of[feature]
            r.p[g] = min(r.p.get(g, 1.0), p)
            if (value > thr[key]) != (p < feature_alpha):
                r.mismatches += 1
        mmd = snap.get("visionmon_embedding_mmd", {})
        mmd_thr = snap.get("visionmon_embedding_mmd_threshold", {})
        for key, value in mmd.items():
            if key[2] in out:
                # > 1 exactly when the statistic exceeds its critical value (both can be
                # negative or the critical value +Inf)
                thr = mmd_thr[key]
                ratio = value / thr if thr > 0 and math.isfinite(thr) else (
                    2.0 if value > thr else 0.0)
                r = out[key[2]]
                r.mmd = ratio if math.isnan(r.mmd) else max(r.mmd, ratio)
                r.mmd_stat = value if math.isnan(r.mmd_stat) else max(r.mmd_stat, value)
        for key, value in snap.get("visionmon_shadow_agreement_pvalue", {}).items():
            if key[2] in out:
                r = out[key[2]]
                r.agree_p = value if math.isnan(r.agree_p) else min(r.agree_p, value)
        shadow = stats.shadow
        if shadow is not None:
            now = stats.drift.watermark.get(self.model, 0.0)
            for s in shadow.by_version.values():
                totals = s.windows.totals(now)
                for w, r in out.items():
                    n, agree = float(totals[w][0]), float(totals[w][1])
                    if n >= shadow.min_agreement_images and (math.isnan(r.agree)
                                                             or agree / n < r.agree):
                        r.agree, r.agree_n = agree / n, n
        est_sum = dict.fromkeys(out, 0.0)
        est_n = dict.fromkeys(out, 0.0)
        for (model, version) in list(stats.labels.by_version):
            figs = stats.labels.window_figures(model, version)
            for w, r in out.items():
                f = figs.get(w)
                if f is None or not f["predictions"]:
                    continue
                if f["labeled"] >= MIN_JOINS and (math.isnan(r.accuracy)
                                                  or f["accuracy"] < r.accuracy):
                    r.accuracy, r.labelled = f["accuracy"], f["labeled"]
                if not math.isnan(f["estimated"]):
                    # versions share the window: weight their estimates by predictions
                    est_sum[w] += f["estimated"] * f["predictions"]
                    est_n[w] += f["predictions"]
        for w, r in out.items():
            if est_n[w]:
                r.estimate = est_sum[w] / est_n[w]
        return out


def _latency_good_total(snap: dict[str, Any], served: str) -> tuple[float, float]:
    """Requests at or under the latency threshold, and all requests (every version)."""
    k = LATENCY_BUCKETS.index(LATENCY_THRESHOLD_S)
    good = total = 0.0
    for (model, _), h in snap.get("visionmon_request_latency_seconds", {}).items():
        if model == served and isinstance(h, HistogramValue):
            good += sum(h.counts[:k + 1])
            total += h.count
    return good, total


# --- runs ------------------------------------------------------------------------------------


def build_bench_baseline(pools: dict[str, Pool], folder: Path, model: str,
                         classes: Sequence[str], plan: Plan | None = None,
                         source: str = "clean digits pool") -> tuple[Path, Plan]:
    """The baseline file of `model`: BASELINE_REQUESTS clean requests (or `plan`'s), labels
    for half of them, and the reference model's profile of their sampled images (~10,000 of
    50,000); saved with `monitor.baseline.save`."""
    if plan is None:
        plan = make_plan(pools, NO_DRIFT, BASELINE_SEED, BASELINE_REQUESTS, BASELINE_REQUESTS,
                         label_fraction=BASELINE_LABEL_FRACTION, model=model)
    ser = Serialiser(plan, pools)
    c = ser.chunk(0, plan.n)
    pdec = PredictionDecoder({model: ModelClassIndex.of(classes)}, LIMITS)
    events = []
    for a in range(0, len(c.predictions), 1_000):  # messages stay under max_message_bytes
        events += pdec.decode(b"\n".join(c.predictions[a:a + 1_000]), T0 + 1e9).events
    if len(events) != plan.n:
        raise RuntimeError(f"baseline: {plan.n - len(events)} prediction records refused")
    labels = {f"r{i:08d}": int(plan.label[i]) for i in np.flatnonzero(plan.labelled)}
    clean = pools[CLEAN]
    images = [ScoredImage(f"r{i:08d}", model, "v1", float(plan.ts(i)),
                          int(clean.ref_pred[j]), float(clean.ref_conf[j]), clean.embeddings[j],
                          tuple(clean.features[j].tolist()))
              for i, j in zip(c.image_index.tolist(),
                              plan.pool_index[c.image_index].tolist(), strict=True)]
    base = baseline_mod.build_baseline(model, tuple(classes), events, labels, k=10,
                                       images=images, created_at=T0,
                                       source=f"detection benchmark, {source}")
    path = baseline_mod.save(base, folder / "baseline.json")
    return path, plan


class ExactEstimate:
    """Diagnostic, not a daemon output: the per-event form `estimated_accuracy(map, conf)`
    over a window's served confidences, with the baseline's own calibration map. The daemon
    sums the same g(conf) per event as it streams; the two must agree (a check on it)."""

    def __init__(self, stats: Statistics, pools: dict[str, Pool], plan: Plan) -> None:
        self.map = stats.drift.baselines[plan.model].calibration
        pre = np.round(pools[CLEAN].probs.max(axis=1), 6)
        post = np.round(pools[plan.scenario.variant].probs.max(axis=1), 6)
        self.conf = np.where(plan.post, post[plan.pool_index], pre[plan.pool_index])

    def __call__(self, lo: int, hi: int) -> float:
        if self.map is None or hi <= lo:
            return math.nan
        return estimated_accuracy(self.map, self.conf[lo:hi])


@dataclass(slots=True)
class DelayRun:
    """Checkpoint series of one stream after its onset (window DELAY_WINDOW)."""

    scenario: str
    seed: int
    events_after: list[int] = field(default_factory=list)
    images_after: list[int] = field(default_factory=list)
    p: dict[str, list[float]] = field(default_factory=dict)
    mmd: list[float] = field(default_factory=list)
    mmd_stat: list[float] = field(default_factory=list)
    agree: list[float] = field(default_factory=list)
    agree_p: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    estimate: list[float] = field(default_factory=list)
    estimate_exact: list[float] = field(default_factory=list)
    realized: list[float] = field(default_factory=list)
    latency_page_after: int | None = None     # requests after onset, None: not fired
    latency_ticket_after: int | None = None
    mismatches: int = 0
    seconds: float = 0.0


def run_delay(loaded: LoadedConfig, pools: dict[str, Pool], plan: Plan, chunk: int,
              latency: bool = False) -> DelayRun:
    """Feed one stream; read the DELAY_WINDOW signals after every chunk from the onset on."""
    t0 = time.perf_counter()
    stats = build_statistics(loaded)
    feeder = Feeder(stats, pools, class_index(loaded))
    reader = Reader(stats, plan.model)
    ser = Serialiser(plan, pools)
    run = DelayRun(plan.scenario.name, plan.seed)
    window = WINDOWS[DELAY_WINDOW]
    cum_sampled = np.cumsum(plan.sampled)
    exact = ExactEstimate(stats, pools, plan)
    step_requests = round(LATENCY_STEP_S * REQUEST_RATE)
    good: list[int] = [0]
    bad: list[int] = [0]
    for c in ser.chunks(chunk):
        feeder.feed(c)
        if latency and c.stop % step_requests == 0:
            g, tot = _latency_good_total(stats.engine.snapshot(), plan.model)
            good.append(round(g))
            bad.append(round(tot - g))
        if c.stop <= plan.onset or latency:
            continue
        r = reader.read(reader.snapshot(), (DELAY_WINDOW,))[DELAY_WINDOW]
        run.events_after.append(c.stop - plan.onset)
        run.images_after.append(int(cum_sampled[c.stop - 1] - cum_sampled[plan.onset - 1]))
        for g in GROUPS:
            run.p.setdefault(g, []).append(r.p.get(g, math.nan))
        run.mmd.append(r.mmd)
        run.mmd_stat.append(r.mmd_stat)
        run.agree.append(r.agree)
        run.agree_p.append(r.agree_p)
        run.accuracy.append(r.accuracy)
        run.estimate.append(r.estimate)
        lo = max(0, c.stop - window)
        run.estimate_exact.append(exact(lo, c.stop))
        run.realized.append(float(plan.correct[lo:c.stop].mean()))
        run.mismatches += r.mismatches
    if latency:
        spec = build_spec(loaded)
        slo = spec.slos[0]
        res = run_slo(slo, Traffic(tuple(good), tuple(bad)), LATENCY_STEP_S)
        onset_step = math.ceil(plan.onset / step_requests)
        for tier_kind, attr in (("page", "latency_page_after"), ("ticket", "latency_ticket_after")):
            steps = [res.first_firing(i, onset_step) for i, t in enumerate(slo.tiers)
                     if t.severity == tier_kind]
            fired = [s for s in steps if s is not None]
            if fired:
                setattr(run, attr, min(fired) * step_requests - plan.onset)
    run.seconds = time.perf_counter() - t0
    return run


@dataclass(slots=True)
class FalseAlarmRun:
    """No-drift stream: per window size, one Reading per non-overlapping window."""

    requests: int
    windows: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    feed_seconds: dict[str, float] = field(default_factory=dict)
    snapshot_seconds: dict[str, float] = field(default_factory=dict)
    snapshots: int = 0
    mismatches: int = 0
    rejected: int = 0
    seconds: float = 0.0


def run_false_alarms(loaded: LoadedConfig, pools: dict[str, Pool], plan: Plan,
                     max_windows: dict[str, int]) -> FalseAlarmRun:
    """Feed a no-drift stream in chunks of 100 requests; at each window's boundary, read
    that window (each window size sees non-overlapping windows)."""
    t0 = time.perf_counter()
    stats = build_statistics(loaded)
    feeder = Feeder(stats, pools, class_index(loaded))
    reader = Reader(stats, plan.model)
    ser = Serialiser(plan, pools)
    out = FalseAlarmRun(plan.n, {w: [] for w in WINDOWS})
    exact = ExactEstimate(stats, pools, plan)
    step = min(WINDOWS.values())
    for c in ser.chunks(step):
        feeder.feed(c)
        due = tuple(w for w, size in WINDOWS.items()
                    if c.stop % size == 0 and len(out.windows[w]) < max_windows.get(w, 0))
        if not due:
            continue
        for w, r in reader.read(reader.snapshot(), due).items():
            out.windows[w].append({**{f"p_{g}": v for g, v in r.p.items()}, "mmd": r.mmd,
                                   "mmd_stat": r.mmd_stat,
                                   "agree": r.agree, "agree_p": r.agree_p,
                                   "accuracy": r.accuracy,
                                   "estimate": r.estimate,
                                   "estimate_exact": exact(c.stop - WINDOWS[w], c.stop),
                                   "realized": float(plan.correct[c.stop - WINDOWS[w]:c.stop]
                                                     .mean())})
            out.mismatches += r.mismatches
    out.feed_seconds = dict(feeder.seconds)
    out.snapshot_seconds = dict(reader.seconds)
    out.snapshots = reader.snapshots
    out.rejected = feeder.rejected
    out.seconds = time.perf_counter() - t0
    return out


def embedding_signal_costs(baseline_path: Path, pool: Pool, images: int = 200,
                           repeats: int = 30, seed: int = 0) -> dict[str, float]:
    """Milliseconds to test one window of `images` embeddings against the baseline, with the
    project functions the daemon calls for its two embedding signals:
      psi  PCA projection, binning into the baseline's PC bins and `drift_figures` for each
           of the 8 components (DriftMonitor adds the bins to rings as images arrive and runs
           `drift_figures` per window at snapshot time; both are counted here)
      mmd  the cross terms of the window's embeddings (`mean_kernel_to_reference`, computed
           once per image as it arrives), `mmd2_to_reference` and `mmd_null_test` against the
           baseline's reference sample (what ShadowMonitor computes; its kernel sums over the
           reference are built once per baseline and not counted)
    The same window size as Alibi's `predict` on a 1,000-request window (~200 images)."""
    base = baseline_mod.load(baseline_path)
    emb = base.embedding
    assert emb is not None
    rng = np.random.default_rng(seed)
    x = pool.embeddings[rng.integers(0, pool.embeddings.shape[0], images)].astype(np.float64)
    profs = [base.features[f"embedding_pc{j}"] for j in range(1, 9)]
    t = time.perf_counter()
    for _ in range(repeats):
        pcs = (x - emb.mean) @ emb.components.T
        for j, prof in enumerate(profs):
            counts = np.bincount(prof.bin_of(pcs[:, j]), minlength=prof.counts.size)
            drift_figures(counts.astype(np.float64), prof.counts, ALPHA / 8, 0.0)
    psi_ms = 1e3 * (time.perf_counter() - t) / repeats
    ref = emb.mmd_reference()
    assert emb.null is not None
    t = time.perf_counter()
    for _ in range(repeats):
        cross = mean_kernel_to_reference(ref, x)
        mmd_null_test(emb.null, mmd2_to_reference(ref, x, cross), images, ALPHA / 2)
    mmd_ms = 1e3 * (time.perf_counter() - t) / repeats
    return {"psi_ms": psi_ms, "mmd_ms": mmd_ms, "images": float(images)}


def baseline_sensitivity(pools: dict[str, Pool], folder: Path, model: str,
                         classes: Sequence[str], seeds: Sequence[int], windows: int,
                         requests: int = BASELINE_REQUESTS, images: int = 2_000,
                         seed: int = 0) -> dict[str, Any]:
    """False-alarm rate of the embedding-PC signal (any of 8 PCs at alpha 0.01 / 8) on
    no-drift windows of `images` clean pool images, for baselines of `requests` clean
    requests drawn with different seeds (the seed BASELINE_SEED at BASELINE_REQUESTS is the
    benchmark's own baseline). The chi-squared threshold is calibrated on average over
    baseline samples; a deployed monitor keeps one baseline, and when its window holds about
    as many images as the baseline, its own rate depends on which sample that baseline
    happened to be. Uses the same projection, bins and thresholds as the daemon
    (`drift_figures`)."""
    rng = np.random.default_rng(seed)
    pool = pools[CLEAN]
    folder.mkdir(parents=True, exist_ok=True)
    rates: dict[str, Any] = {"requests": requests, "windows": windows, "window_images": images,
                             "seed": [], "rate": [], "baseline_images": []}
    for s in seeds:
        plan = make_plan(pools, NO_DRIFT, s, requests, requests,
                         label_fraction=BASELINE_LABEL_FRACTION, model=model)
        path, _ = build_bench_baseline(pools, folder, model, classes, plan)
        base = baseline_mod.load(path)
        emb = base.embedding
        assert emb is not None
        profs = [base.features[f"embedding_pc{j}"] for j in range(1, 9)]
        alarms = 0
        for _ in range(windows):
            x = pool.embeddings[rng.integers(0, pool.labels.size, images)].astype(np.float64)
            pcs = (x - emb.mean) @ emb.components.T
            for j, prof in enumerate(profs):
                counts = np.bincount(prof.bin_of(pcs[:, j]), minlength=prof.counts.size)
                f = drift_figures(counts.astype(np.float64), prof.counts, ALPHA / 8, 0.0)
                if f.psi > f.threshold:
                    alarms += 1
                    break
        rates["seed"].append(float(s))
        rates["rate"].append(alarms / windows)
        rates["baseline_images"].append(float(profs[0].counts.sum()))
    return rates
