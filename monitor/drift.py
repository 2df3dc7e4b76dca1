"""Drift of prediction features against the baseline, over event-time windows.

For every (model, version) and feature, bins fixed by the baseline are counted into
windowed rings and into cumulative counters (so Prometheus can recompute PSI over any
range and across replicas). At snapshot time PSI, KL(current || baseline) and the
sample-size-aware threshold are computed per window from the ring totals, outside the
ingestion lock: `capture()` copies the totals, `DriftCapture.render` computes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from monitor.baseline import (
    PREDICTION_FEATURES,
    Baseline,
    FeatureProfile,
    build_baseline,
    profiled_images,
    with_calibration,
)
from monitor.config import BaselineConfig, DriftConfig
from monitor.engine import EngineExtension, EventGroup, nan_if_null
from monitor.events import PredictionEvent
from monitor.snapshot import Series, SnapshotBuilder
from monitor.stats import apply_bin_map, drift_threshold, kl_divergence, psi, smoothed_proportions
from monitor.windows import WindowedCounts, WindowSpec

BaselineListener = Callable[[str, Baseline], None]
#: how the daemon got a model's baseline: loaded from `baseline.path`, or collected from the
#: model's first events (`baseline.mode: first_events`)
BaselineSource = Literal["file", "first_events"]
FIRST_EVENTS_SOURCE = "first {n} events"   # the `source` a collected baseline records

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DriftFigures:
    """Drift of one feature over one window: PSI and KL in nats, threshold, events n."""

    psi: float
    kl: float
    threshold: float
    n: int


@dataclass(frozen=True, slots=True)
class VersionDriftCounts:
    """One (model, version)'s counts copied for a snapshot: cumulative bin counts and
    window totals per feature, with the baseline they are compared with and the level each
    feature is tested at."""

    model: str
    version: str
    classes: tuple[str, ...]
    baseline: Baseline
    alpha: float
    cumulative: Mapping[str, np.ndarray]
    #: feature -> window -> bin counts
    totals: Mapping[str, Mapping[str, np.ndarray]]


@dataclass(frozen=True, slots=True)
class DriftCapture:
    """What the drift series need, copied under the ingestion lock."""

    #: (model, its baseline)
    baselines: tuple[tuple[str, Baseline], ...]
    versions: tuple[VersionDriftCounts, ...]
    min_effect: float
    #: the baselines' lifecycle series (`DriftMonitor.lifecycle`), cheap, so built under the lock
    lifecycle: Mapping[str, Series]

    def render(self, b: SnapshotBuilder) -> None:
        b.merge(self.lifecycle)
        for v in self.versions:
            _render_version(b, v, self.min_effect)


def _render_version(b: SnapshotBuilder, v: VersionDriftCounts, min_effect: float) -> None:
    """The bin counters and the per-window PSI, KL and thresholds of one (model, version)."""
    for name, prof in v.baseline.features.items():
        if name not in v.cumulative:
            continue
        labels = prof.bin_labels(v.classes)
        ratios = smoothed_proportions(prof.counts)
        for label, count, ratio in zip(labels, v.cumulative[name].tolist(), ratios.tolist(),
                                       strict=True):
            b.set("visionmon_feature_bin_total", (v.model, v.version, name, label), count)
            b.set("visionmon_baseline_bin_ratio", (v.model, v.version, name, label), ratio)
    for (name, window), f in version_figures(v, min_effect).items():
        key = (v.model, v.version, name, window)
        b.set("visionmon_drift_window_events", key, float(f.n))
        if not math.isnan(f.psi):
            b.set("visionmon_drift_psi", key, f.psi)
            b.set("visionmon_drift_kl", key, f.kl)
            b.set("visionmon_drift_threshold", key, f.threshold)


def version_figures(v: VersionDriftCounts, min_effect: float
                    ) -> dict[tuple[str, str], DriftFigures]:
    """{(feature, window): figures} of one (model, version)'s copied counts."""
    out: dict[tuple[str, str], DriftFigures] = {}
    for name, windows in v.totals.items():
        base = v.baseline.features[name].counts
        for window, counts in windows.items():
            out[(name, window)] = drift_figures(counts, base, v.alpha, min_effect)
    return out


def drift_figures(current: np.ndarray, baseline: np.ndarray, alpha: float,
                  min_effect: float) -> DriftFigures:
    """PSI/KL of a window against the baseline, on the bins the threshold is defined for
    (sparse bins merged, see monitor.stats.thresholds). Empty window: NaN, never 0."""
    n = round(float(current.sum()))
    if n == 0:
        return DriftFigures(math.nan, math.nan, math.nan, 0)
    th = drift_threshold(baseline, n, alpha, min_effect)
    if th.method == "no_value":
        return DriftFigures(math.nan, math.nan, math.nan, n)
    cur = apply_bin_map(current, th.bin_map)
    base = apply_bin_map(baseline, th.bin_map)
    return DriftFigures(psi(cur, base), kl_divergence(cur, base), th.threshold, n)


class _VersionDrift:
    """Windowed and cumulative bin counts of every feature of one (model, version)."""

    def __init__(self, baseline: Baseline, windows: tuple[WindowSpec, ...]) -> None:
        self.windows = {n: WindowedCounts(windows, f.counts.size)
                        for n, f in baseline.features.items()}
        self.cumulative = {n: np.zeros(f.counts.size) for n, f in baseline.features.items()}

    def add(self, name: str, ts: np.ndarray, bins: np.ndarray) -> None:
        if name not in self.windows or ts.size == 0:
            return
        counts = np.bincount(bins, minlength=self.cumulative[name].size)
        self.windows[name].add(ts, bins, counts=counts)
        self.cumulative[name] += counts


def _same_bins(a: FeatureProfile, b: FeatureProfile) -> bool:
    """Whether events binned by `a` are binned the same by `b`."""
    return a.counts.size == b.counts.size and np.array_equal(a.edges, b.edges)


#: The config's defaults, the only place defaults live (`drift:` and `baseline:` sections).
_DRIFT = DriftConfig()
_BASELINE = BaselineConfig()


class DriftMonitor(EngineExtension):
    """Drift of predicted class, confidence, margin and entropy (and, fed by the
    reference model, input and embedding features) per (model, version)."""
    name = "drift"

    def __init__(self, models: Mapping[str, Sequence[str]], windows: tuple[WindowSpec, ...],
                 alpha: float = _DRIFT.alpha, min_effect: float = _DRIFT.min_effect,
                 features: Sequence[str] = ("predicted_class", *PREDICTION_FEATURES),
                 baselines: Mapping[str, Baseline] | None = None,
                 first_events: int | None = None,
                 quantile_bins: int = _BASELINE.quantile_bins,
                 clock: Callable[[], float] | None = None,
                 correction: Literal["bonferroni", "none"] = _DRIFT.correction,
                 embedding_alpha: float = 0.0,
                 min_labels: int = _BASELINE.min_labels) -> None:
        self.models = {m: tuple(c) for m, c in models.items()}
        self.windows = windows
        self.alpha = alpha
        self.correction = correction
        #: part of `alpha` the embedding MMD test spends for models whose baseline has one
        self.embedding_alpha = embedding_alpha
        self.min_effect = min_effect
        self.features = tuple(features)
        self.baselines: dict[str, Baseline] = dict(baselines or {})
        self.first_events = first_events
        self.quantile_bins = quantile_bins
        self.clock = clock
        self._collect: dict[str, list[PredictionEvent]] = {}
        self.by_version: dict[tuple[str, str], _VersionDrift] = {}
        self.watermark: dict[str, float] = {}
        self.listeners: list[BaselineListener] = []
        #: model -> how its baseline was obtained (`baseline_info{source}`)
        self.sources: dict[str, BaselineSource] = dict.fromkeys(self.baselines, "file")
        #: labeled predictions a first-events baseline calibrates on, once it has this many
        self.min_labels = min_labels
        #: model -> (top-1 confidence, correct) of the labels joined while its first-events
        #: baseline has no calibration (at most `min_labels`)
        self._labeled: dict[str, list[tuple[float, bool]]] = {}

    # --- feeding ----------------------------------------------------------------
    def on_predictions(self, groups: Mapping[tuple[str, str], EventGroup]) -> None:
        for (model, version), evs in groups.items():
            ok = evs.column("ok") & (evs.column("pred") >= 0)
            if ok.any():
                self._apply(model, version, evs, ok)

    def _apply(self, model: str, version: str, evs: EventGroup, ok: np.ndarray) -> None:
        ts = evs.column("ts")[ok]
        wm = self.watermark.get(model, -math.inf)
        self.watermark[model] = max(wm, float(ts.max()))
        baseline = self.baselines.get(model)
        if baseline is None:
            self._maybe_freeze(model, [e for e, k in zip(evs, ok.tolist(), strict=True) if k])
            baseline = self.baselines.get(model)
            if baseline is None:
                return
        binned = self.binned(model, evs)
        if not binned:
            return
        state = self.by_version.get((model, version))
        if state is None:
            state = self.by_version[(model, version)] = _VersionDrift(baseline, self.windows)
        all_ts = evs.column("ts")
        for name, (idx, bins) in binned.items():
            state.add(name, all_ts[idx], bins)

    def binned(self, model: str, evs: EventGroup) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{feature: (indices of the events it counts, their bins)} by the model's baseline:
        the successful predictions with a finite value (after a first-events baseline's
        own events); empty without a baseline. The segment statistics count the same."""
        baseline = self.baselines.get(model)
        if baseline is None:
            return {}
        memo = ("drift_bins", str(id(baseline)), ",".join(self.features))  # alive all batch
        done: dict[str, tuple[np.ndarray, np.ndarray]] | None = evs.derived.get(memo)
        if done is None:
            done = evs.derived[memo] = self._binned(baseline, evs)
        return done

    def _binned(self, baseline: Baseline, evs: EventGroup
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        ok = evs.column("ok") & (evs.column("pred") >= 0)
        if self.sources.get(baseline.model) == "first_events":
            # a baseline collected from the stream is measured against what came after it:
            # its own events (and any older one) stay out of the windows, live and in a
            # replay alike, whichever batch sealed it
            ok = ok & (evs.column("ts") > baseline.created_at)
        if not ok.any():
            return {}
        out = {}
        for name in self.features:
            prof = baseline.features.get(name)
            if prof is None:
                continue
            column = "pred" if name == "predicted_class" else name
            values = evs.column(column).astype(np.float64, copy=False)
            idx = np.flatnonzero(ok & np.isfinite(values))
            out[name] = (idx, prof.bin_of(values[idx]))
        return out

    def add_values(self, model: str, version: str, name: str, ts: np.ndarray,
                   values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Feed a continuous feature measured elsewhere (input and embedding features);
        returns (indices of the finite values counted, their baseline bins), None when the
        baseline lacks the feature."""
        baseline = self.baselines.get(model)
        if baseline is None or name not in baseline.features:
            return None
        state = self.by_version.get((model, version))
        if state is None:
            state = self.by_version[(model, version)] = _VersionDrift(baseline, self.windows)
        idx = np.flatnonzero(np.isfinite(values))
        if ts.size:
            self.watermark[model] = max(self.watermark.get(model, -math.inf), float(ts.max()))
        bins = baseline.features[name].bin_of(values[idx])
        state.add(name, ts[idx], bins)
        return idx, bins

    def _maybe_freeze(self, model: str, evs: list[PredictionEvent]) -> None:
        """Collect `evs` into the model's first-events baseline and seal it once full."""
        if self.first_events is None:
            return
        buf = self._collect.get(model)
        if buf is None:
            buf = self._collect[model] = []
            log.info("baseline of model %s: collecting its first %d predictions", model,
                     self.first_events)
        room = self.first_events - len(buf)
        buf.extend(evs[:room])
        if len(buf) >= self.first_events:
            created = self.clock() if self.clock else max(e.ts for e in buf)
            baseline = build_baseline(model, self.models[model], buf, k=self.quantile_bins,
                                      created_at=created,
                                      source=FIRST_EVENTS_SOURCE.format(n=self.first_events))
            self.sources[model] = "first_events"
            self.set_baseline(baseline)
            del self._collect[model]
            log.info("baseline of model %s: sealed from its first %d predictions "
                     "(sha256 %s); drift is measured from now on", model, baseline.events,
                     baseline.sha256[:16])
            self._maybe_calibrate(model)

    def on_label(self, model: str, _version: str, pred: PredictionEvent, label: int,
                 _ts: float) -> None:
        """A label joined to its prediction (`LabelMonitor.joined_listeners`): kept for the
        calibration of a first-events baseline until it has `min_labels` of them."""
        if not self._wants_labels(model) or not math.isfinite(pred.confidence):
            return
        pairs = self._labeled.setdefault(model, [])
        if len(pairs) < self.min_labels:
            pairs.append((pred.confidence, pred.pred == label))
        self._maybe_calibrate(model)

    def collects_first_events(self, model: str) -> bool:
        """`model` has no baseline yet and collects one from its first events."""
        return model not in self.baselines and self.first_events is not None \
            and model in self.models \
            and self.sources.get(model, "first_events") == "first_events"

    def _wants_labels(self, model: str) -> bool:
        """A first-events baseline (sealed or still collecting) without calibration."""
        baseline = self.baselines.get(model)
        if baseline is None:
            return self.collects_first_events(model)
        return baseline.calibration is None and self.sources.get(model) == "first_events"

    def _maybe_calibrate(self, model: str) -> None:
        """Fit the calibration of a sealed first-events baseline once `min_labels` labels
        joined. Its hash changes; its bins, and so the drift windows, stay."""
        baseline = self.baselines.get(model)
        pairs = self._labeled.get(model, [])
        if baseline is None or len(pairs) < self.min_labels or not self._wants_labels(model):
            return
        calibrated = with_calibration(baseline, np.array([c for c, _ in pairs]),
                                      np.array([ok for _, ok in pairs], dtype=np.float64))
        self.baselines[model] = calibrated
        del self._labeled[model]
        for listener in self.listeners:
            listener(model, calibrated)
        log.info("baseline of model %s: calibrated on %d labeled predictions (sha256 %s); "
                 "the label-free accuracy estimate is calibrated from now on", model,
                 calibrated.labeled_events, calibrated.sha256[:16])

    def set_baseline(self, baseline: Baseline, source: BaselineSource | None = None) -> None:
        """Use `baseline` for its model from now on (`source`: how it was obtained; unset,
        what the model had, else `file`). Each version's counts of a feature whose bins did
        not change (the prediction features when an image profile or a calibration is
        added) are kept; the others start empty."""
        old = self.baselines.get(baseline.model)
        self.baselines[baseline.model] = baseline
        if source is not None:
            self.sources[baseline.model] = source
        self.sources.setdefault(baseline.model, "file")
        for key in [k for k in self.by_version if k[0] == baseline.model]:
            before = self.by_version[key]
            after = self.by_version[key] = _VersionDrift(baseline, self.windows)
            if old is None:
                continue
            for name, prof in baseline.features.items():
                was = old.features.get(name)
                if name in before.windows and was is not None and _same_bins(was, prof):
                    after.windows[name] = before.windows[name]
                    after.cumulative[name] = before.cumulative[name]
        for listener in self.listeners:
            listener(baseline.model, baseline)

    # --- reading ------------------------------------------------------------------
    def family_alpha(self, model: str) -> float:
        """The false-alarm rate "any feature drifted" is held to: `alpha`, less what the
        embedding MMD test spends when the model's baseline has one (weighted Bonferroni)."""
        baseline = self.baselines.get(model)
        emb = None if baseline is None else baseline.embedding
        if emb is not None and emb.null is not None:
            return self.alpha - self.embedding_alpha
        return self.alpha

    def feature_alpha(self, model: str) -> float:
        """The level each feature of `model` is tested at: `alpha`, or `family_alpha` / k
        over the k features of its baseline (Bonferroni)."""
        baseline = self.baselines.get(model)
        if self.correction == "none" or baseline is None or not baseline.features:
            return self.alpha
        return self.family_alpha(model) / len(baseline.features)

    def _counts(self, model: str, version: str, state: _VersionDrift) -> VersionDriftCounts:
        """Copy one (model, version)'s counts (under the lock; `totals` sums fresh arrays)."""
        now = self.watermark.get(model, 0.0)
        return VersionDriftCounts(
            model, version, self.models[model], self.baselines[model],
            self.feature_alpha(model),
            {name: c.copy() for name, c in state.cumulative.items()},
            {name: w.totals(now) for name, w in state.windows.items()})

    def figures(self, model: str, version: str) -> dict[tuple[str, str], DriftFigures]:
        """{(feature, window): figures} for one (model, version)."""
        state = self.by_version.get((model, version))
        if state is None or model not in self.baselines:
            return {}
        return version_figures(self._counts(model, version, state), self.min_effect)

    def capture(self) -> DriftCapture:
        lifecycle = SnapshotBuilder()
        self.lifecycle(lifecycle)
        return DriftCapture(tuple(self.baselines.items()),
                            tuple(self._counts(m, v, s) for (m, v), s in self.by_version.items()),
                            self.min_effect, lifecycle.build())

    def lifecycle(self, b: SnapshotBuilder) -> None:
        """Each model's baseline: where it came from, collecting or sealed, its hash, and
        the predictions and labels behind it (images: its image profile, once it has one;
        `ShadowMonitor` counts them while it collects)."""
        for model in self.models:
            baseline = self.baselines.get(model)
            if baseline is None:
                if self.first_events is None:
                    continue
                collected = len(self._collect.get(model, ()))
                b.set("visionmon_baseline_info", (model, "", "first_events", "collecting", ""),
                      1.0)
                b.set("visionmon_baseline_events", (model, "predictions"), float(collected))
                b.set("visionmon_baseline_events", (model, "labelled"),
                      float(len(self._labeled.get(model, ()))))
                continue
            source = self.sources.get(model, "file")
            b.set("visionmon_baseline_info", (model, baseline.baseline_version, source,
                                              "sealed", baseline.sha256[:16]), 1.0)
            b.set("visionmon_baseline_events", (model, "predictions"), float(baseline.events))
            labelled = baseline.labeled_events if baseline.calibration is not None \
                else len(self._labeled.get(model, ()))
            b.set("visionmon_baseline_events", (model, "labelled"), float(labelled))
            if baseline.embedding is not None:
                b.set("visionmon_baseline_events", (model, "images"),
                      float(profiled_images(baseline)))

    def drifting(self, model: str, version: str, window: str) -> bool | None:
        """True when any feature drifted in that window at a family-wise false-alarm rate
        of `family_alpha` (Bonferroni: each of the k features with data tested at
        family_alpha / k, whatever `correction` says); None: no data. This is the `drift`
        quality objective."""
        state = self.by_version.get((model, version))
        baseline = self.baselines.get(model)
        if state is None or baseline is None:
            return None
        now = self.watermark.get(model, 0.0)
        totals = {name: w.totals(now)[window] for name, w in state.windows.items()}
        live = {n: c for n, c in totals.items() if c.sum() > 0}
        if not live:
            return None
        alpha = self.family_alpha(model) / len(live)
        verdicts = [drift_figures(c, baseline.features[n].counts, alpha, self.min_effect)
                    for n, c in live.items()]
        valid = [f for f in verdicts if not math.isnan(f.psi)]
        if not valid:
            return None
        return any(f.psi > f.threshold for f in valid)

    # --- checkpoint -----------------------------------------------------------------
    def state(self) -> Any:
        from monitor.baseline import to_dict

        return {
            "baselines": {m: {**to_dict(b), "sha256": b.sha256}
                          for m, b in self.baselines.items()},
            "watermark": self.watermark,
            "versions": [[m, v, {n: w.state() for n, w in s.windows.items()},
                          {n: c.tolist() for n, c in s.cumulative.items()}]
                         for (m, v), s in self.by_version.items()],
            "collect_count": {m: len(b) for m, b in self._collect.items()},
            "collecting": {m: _collected_columns(b) for m, b in self._collect.items()},
            "sources": self.sources,
            "calibration_labels": {m: [[c, ok] for c, ok in p] for m, p in self._labeled.items()},
        }

    def restore(self, state: Any) -> None:
        from monitor.baseline import from_dict

        for m, d in state.get("baselines", {}).items():
            if m in self.models and m not in self.baselines:
                self.baselines[m] = from_dict(d)
                self.sources[m] = _restored_source(state, m, self.baselines[m])
        for m, pairs in state.get("calibration_labels", {}).items():
            if m in self.models and self._wants_labels(m):
                self._labeled[m] = [(float(c), bool(ok)) for c, ok in pairs][:self.min_labels]
        for m, columns in state.get("collecting", {}).items():
            if m in self.models and m not in self.baselines and self.first_events is not None:
                self._collect[m] = _collected_events(m, columns)[:self.first_events]
        self.watermark.update(state.get("watermark", {}))
        for m, v, windows, cumulative in state.get("versions", []):
            if m not in self.baselines:
                continue
            s = self.by_version[(m, v)] = _VersionDrift(self.baselines[m], self.windows)
            for n, w in windows.items():
                if n in s.windows:
                    s.windows[n].restore([{k: np.asarray(x) for k, x in r.items()} for r in w])
                    s.cumulative[n][...] = cumulative[n]


#: what a first-events baseline keeps of each collected prediction (`build_baseline` reads
#: the class and PREDICTION_FEATURES, no more), so that a checkpoint holds a collection in
#: progress at a bounded size
_COLLECTED = ("ts", "pred", "confidence", "margin", "entropy")


def _collected_columns(events: Sequence[PredictionEvent]) -> dict[str, list[float]]:
    """A collection in progress as columns (NaN is checkpointed as null)."""
    return {name: [getattr(e, name) for e in events] for name in _COLLECTED}


def _collected_events(model: str, columns: Mapping[str, Sequence[float | None]]
                      ) -> list[PredictionEvent]:
    """The collected predictions back from `_collected_columns`."""
    rows = zip(*(columns[name] for name in _COLLECTED), strict=True)
    return [PredictionEvent("", nan_if_null(ts), model, "", True, int(pred or 0),
                            nan_if_null(conf), nan_if_null(margin), nan_if_null(entropy),
                            math.nan)
            for ts, pred, conf, margin, entropy in rows]


def _restored_source(state: Mapping[str, Any], model: str, baseline: Baseline) -> BaselineSource:
    """How a checkpointed baseline was obtained; checkpoints written before they said so:
    from the `source` a collected baseline records."""
    source = state.get("sources", {}).get(model)
    if source in ("file", "first_events"):
        return source  # type: ignore[no-any-return]
    return source_of(baseline)


def source_of(baseline: Baseline) -> BaselineSource:
    """`first_events` for a baseline a daemon collected from its first events (its `source`
    says so, also once exported to a file), else `file`."""
    collected = baseline.source.startswith("first ") and baseline.source.endswith(" events")
    return "first_events" if collected else "file"
