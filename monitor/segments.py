"""Statistics per segment value (camera c12, site a) beside the overall ones: request
counts, drift of the prediction features and of the scored images' input features, label
quality (accuracy, per-class recall, calibration) and agreement with the reference model,
each kept per (model, version, segment key) for every value of that key, one key at a time
(never their cross product). Labels and scored images take their prediction's segments
through the joins (an image's own `segment.<key>` headers come first). Embedding drift is
not kept per value: its MMD test needs a reservoir of embeddings per value (at the default
256 embeddings of 512 float64 values, 50 values cost 52 MB a key and version), far beyond
the few kilobytes of a value's binned rows.

Each statistic of a key is one count vector per value, kept as one flat vector of
rows x bins (`_Rows`) so that a batch costs one bincount per statistic whatever the
number of values; the rows are the key's bounded values (`monitor.segment_values`), so
memory is capacity x bins x windows x `windows.segment_slices` floats per statistic
(`key_state_floats`). Series go to their own `visionmon_segment_*` families, labelled
`segment_key` and `segment`, so that sums over the overall families never count an
event twice.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter, methodcaller
from typing import Any

import numpy as np

from monitor.baseline import Baseline
from monitor.catalog import CALIBRATION_BINS
from monitor.drift import DriftMonitor
from monitor.engine import EngineExtension, EventGroup
from monitor.events import PredictionEvent
from monitor.labels import JoinedBatch
from monitor.segment_config import SegmentConfig
from monitor.segment_values import ValueFolder
from monitor.shadow import ShadowJoin
from monitor.snapshot import SnapshotBuilder
from monitor.stats import (
    DriftThreshold,
    apply_bin_map,
    calibration_bin_index,
    drift_threshold,
    ece_from_bins,
    psi,
)
from monitor.windows import WindowedCounts, WindowSpec

_SEGMENTS = PredictionEvent._fields.index("segments")
B = CALIBRATION_BINS
#: bins of one value's shadow row: joined images, agreeing ones
_SHADOW_N, _SHADOW_AGREE, _SHADOW_BINS = 0, 1, 2


class _LabelLayout:
    """Bins of one value's label row for a model with C classes: labelled, correct, then
    per true class labelled and correct (recall), then the calibration bins' events,
    confidence sums and correct ones."""

    def __init__(self, c: int) -> None:
        self.c = c
        self.n = 0
        self.correct = 1
        self.true_total = 2
        self.true_correct = 2 + c
        self.cal_events = 2 + 2 * c
        self.cal_conf = self.cal_events + B
        self.cal_correct = self.cal_conf + B
        self.size = self.cal_correct + B


def key_state_floats(capacity: int, n_classes: int, feature_bins: Sequence[int],
                     windows: int, slices: int) -> int:
    """Floats one (model, version, segment key) keeps at most: per window and slice, a
    row of every drift feature's bins, of the label layout and of the shadow bins for each
    of `capacity` values (requests are 2 integers a value). For `visionmon check-config`."""
    per_value = sum(feature_bins) + _LabelLayout(n_classes).size + _SHADOW_BINS
    return capacity * (per_value * windows * slices + 2)


class _Rows:
    """One statistic of one (model, version, key): `rows` count vectors of `bins` bins,
    kept flat (row r, bin i at r * bins + i) over the segment windows."""

    __slots__ = ("bins", "rows", "windows")

    def __init__(self, specs: tuple[WindowSpec, ...], rows: int, bins: int) -> None:
        self.rows = rows
        self.bins = bins
        self.windows = WindowedCounts(specs, rows * bins)

    def add(self, ts: np.ndarray, rows: np.ndarray, bins: np.ndarray,
            weights: np.ndarray | None = None) -> None:
        self.windows.add(ts, rows * self.bins + bins, weights)

    def totals(self, now: float) -> dict[str, np.ndarray]:
        """{window: rows x bins matrix}."""
        return {w: t.reshape(self.rows, self.bins) for w, t in self.windows.totals(now).items()}


class _KeyState:
    """Everything kept for one (model, version, segment key)."""

    __slots__ = ("drift", "labels", "requests", "shadow")

    def __init__(self, capacity: int) -> None:
        #: per row: successful and failed requests (cumulative)
        self.requests = np.zeros((capacity, 2), dtype=np.int64)
        #: feature -> its rows, once the model has a baseline
        self.drift: dict[str, _Rows] = {}
        #: created at the first joined label
        self.labels: _Rows | None = None
        #: created at the first image joined to its prediction
        self.shadow: _Rows | None = None


@dataclass(frozen=True, slots=True)
class KeyCounts:
    """One (model, version, key)'s counts copied for a snapshot."""

    model: str
    version: str
    key: str
    values: tuple[str, ...]
    requests: np.ndarray
    #: feature -> window -> rows x bins
    drift: Mapping[str, Mapping[str, np.ndarray]]
    labels: Mapping[str, np.ndarray] | None
    shadow: Mapping[str, np.ndarray] | None


@dataclass(frozen=True, slots=True)
class SegmentCapture:
    """What the segment series need, copied under the ingestion lock."""

    classes: Mapping[str, tuple[str, ...]]
    folded: Mapping[tuple[str, str], int]
    keys: tuple[KeyCounts, ...]
    baselines: Mapping[str, Baseline]
    alpha: Mapping[str, float]
    min_effect: float
    memo: ThresholdMemo
    #: joined images a value's window needs before its agreement is exported
    min_shadow_images: int

    def render(self, b: SnapshotBuilder) -> None:
        for (model, key), n in self.folded.items():
            b.set("visionmon_segment_values_folded_total", (model, key), float(n))
        for k in self.keys:
            self._render_key(b, k)

    def _render_key(self, b: SnapshotBuilder, k: KeyCounts) -> None:
        seen = np.flatnonzero(k.requests.sum(axis=1) > 0).tolist()
        for row in seen:
            labels = (k.model, k.version, k.key, k.values[row])
            b.set("visionmon_segment_requests_total", (*labels, "ok"), float(k.requests[row, 0]))
            b.set("visionmon_segment_requests_total", (*labels, "error"),
                  float(k.requests[row, 1]))
        baseline = self.baselines.get(k.model)
        if baseline is not None:
            figures = segment_drift(k, baseline, self.alpha[k.model], self.min_effect,
                                    self.memo)
            for (feature, window, row), (value, threshold, n) in figures.items():
                key = (k.model, k.version, k.key, k.values[row], feature, window)
                b.set("visionmon_segment_drift_window_events", key, float(n))
                if not math.isnan(value):
                    b.set("visionmon_segment_drift_psi", key, value)
                    b.set("visionmon_segment_drift_threshold", key, threshold)
        if k.labels is not None:
            _render_labels(b, k, self.classes[k.model])
        if k.shadow is not None:
            _render_shadow(b, k, self.min_shadow_images)


def _render_shadow(b: SnapshotBuilder, k: KeyCounts, min_images: int) -> None:
    assert k.shadow is not None
    for window, m in k.shadow.items():
        for row in np.flatnonzero(m[:, _SHADOW_N] > 0).tolist():
            key = (k.model, k.version, k.key, k.values[row], window)
            images = float(m[row, _SHADOW_N])
            b.set("visionmon_segment_shadow_images", key, images)
            if images >= min_images:
                b.set("visionmon_segment_shadow_agreement_ratio", key,
                      float(m[row, _SHADOW_AGREE]) / images)


class ThresholdMemo:
    """The drift thresholds of recent window sizes, by (baseline, feature, n, level), with
    the baseline's counts merged the threshold's way: a segment value's window needs one,
    and values (and renders) with the same number of events share it. Least recently used
    out first; renders run outside the ingestion lock, two at once, so it has a lock."""

    def __init__(self, entries: int = 8192) -> None:
        self._entries = entries
        self._memo: OrderedDict[tuple[Any, ...], tuple[DriftThreshold, np.ndarray]] = \
            OrderedDict()
        self._lock = threading.Lock()

    def get(self, baseline: Baseline, feature: str, n: int, alpha: float, min_effect: float
            ) -> tuple[DriftThreshold, np.ndarray]:
        key = (baseline.sha256, id(baseline), feature, n, alpha, min_effect)
        with self._lock:
            hit = self._memo.get(key)
            if hit is not None:
                self._memo.move_to_end(key)
                return hit
        base = baseline.features[feature].counts
        th = drift_threshold(base, n, alpha, min_effect)
        made = (th, apply_bin_map(base, th.bin_map))
        with self._lock:
            self._memo[key] = made
            while len(self._memo) > self._entries:
                self._memo.popitem(last=False)
        return made


def segment_drift(k: KeyCounts, baseline: Baseline, alpha: float, min_effect: float,
                  memo: ThresholdMemo) -> dict[tuple[str, str, int], tuple[float, float, int]]:
    """{(feature, window, row): (PSI, threshold, n)} of every value with events in the
    window, each value tested on its own at the model's per-feature level (the figures of
    `monitor.drift.drift_figures`, KL aside; NaN where the window is too small to test)."""
    out = {}
    for feature, windows in k.drift.items():
        for window, m in windows.items():
            sizes = m.sum(axis=1)
            for row in np.flatnonzero(sizes > 0).tolist():
                n = round(float(sizes[row]))
                th, base = memo.get(baseline, feature, n, alpha, min_effect)
                if th.method == "no_value":
                    out[(feature, window, row)] = (math.nan, math.nan, n)
                else:
                    out[(feature, window, row)] = (psi(apply_bin_map(m[row], th.bin_map), base),
                                                   th.threshold, n)
    return out


def _render_labels(b: SnapshotBuilder, k: KeyCounts, classes: tuple[str, ...]) -> None:
    lay = _LabelLayout(len(classes))
    assert k.labels is not None
    for window, m in k.labels.items():
        for row in np.flatnonzero(m[:, lay.n] > 0).tolist():
            v = m[row]
            key = (k.model, k.version, k.key, k.values[row])
            n = float(v[lay.n])
            b.set("visionmon_segment_labelled_events", (*key, window), n)
            b.set("visionmon_segment_accuracy_ratio", (*key, window), float(v[lay.correct]) / n)
            ev = v[lay.cal_events:lay.cal_events + B]
            if ev.sum():
                b.set("visionmon_segment_calibration_ece", (*key, window),
                      ece_from_bins(ev, v[lay.cal_conf:lay.cal_conf + B],
                                    v[lay.cal_correct:lay.cal_correct + B]))
            tt = v[lay.true_total:lay.true_total + lay.c]
            tc = v[lay.true_correct:lay.true_correct + lay.c]
            for c in np.flatnonzero(tt > 0).tolist():
                b.set("visionmon_segment_class_recall_ratio", (*key, classes[c], window),
                      float(tc[c] / tt[c]))


class SegmentMonitor(EngineExtension):
    """Per segment value statistics of the models that declare `segments`."""
    name = "segments"

    def __init__(self, models: Mapping[str, Sequence[str]],
                 segments: Mapping[str, Sequence[SegmentConfig]],
                 windows: tuple[WindowSpec, ...], drift: DriftMonitor,
                 min_shadow_images: int = 1) -> None:
        """`windows`: the segment windows (the configured sizes at `segment_slices`);
        `drift` gives each model's baseline, its binning and the level of its tests;
        `min_shadow_images`: joined images a value's window needs before its agreement
        ratio is exported (`quality.min_shadow_images`)."""
        self.models = {m: tuple(c) for m, c in models.items()}
        self.rules = {m: tuple(r) for m, r in segments.items() if r and m in self.models}
        self.windows = windows
        self.drift = drift
        self.min_shadow_images = min_shadow_images
        self.folders = {(m, r.key): ValueFolder(r) for m, rules in self.rules.items()
                        for r in rules}
        self.by_key: dict[tuple[str, str, str], _KeyState] = {}
        self.watermark: dict[str, float] = {}
        #: the thresholds of recent renders (used outside the lock)
        self.memo = ThresholdMemo()

    def _state(self, model: str, version: str, key: str) -> _KeyState:
        s = self.by_key.get((model, version, key))
        if s is None:
            s = self.by_key[(model, version, key)] = _KeyState(
                self.folders[(model, key)].capacity)
        return s

    def _rows(self, model: str, key: str, events: Sequence[PredictionEvent],
              segs: list[Mapping[str, str] | None] | None = None) -> np.ndarray:
        """Each event's row for `key` (admitting new values, folding beyond the bound);
        `segs`: the events' segments when the caller has them already."""
        if segs is None:
            segs = list(map(itemgetter(_SEGMENTS), events))
        if None in segs:
            values = [None if s is None else s.get(key) for s in segs]
        else:  # every event carries segments: the lookups run in C
            values = list(map(methodcaller("get", key), segs))
        return self.folders[(model, key)].rows(values)

    # --- feeding ------------------------------------------------------------------------
    def on_predictions(self, groups: Mapping[tuple[str, str], EventGroup]) -> None:
        for (model, version), evs in groups.items():
            rules = self.rules.get(model)
            if not rules:
                continue
            ts = evs.column("ts")
            self.watermark[model] = max(self.watermark.get(model, -math.inf), float(ts.max()))
            failed = (~evs.column("ok")).astype(np.int64)
            binned = self.drift.binned(model, evs)
            baseline = self.drift.baselines.get(model)
            segs = list(map(itemgetter(_SEGMENTS), evs))
            for rule in rules:
                rows = self._rows(model, rule.key, evs, segs)
                s = self._state(model, version, rule.key)
                cap = s.requests.shape[0]
                s.requests += np.bincount(rows * 2 + failed, minlength=cap * 2).reshape(cap, 2)
                if binned:
                    assert baseline is not None
                    self._add_drift(s, baseline, ts, rows, binned)

    def on_joined(self, batch: JoinedBatch) -> None:
        """Labels joined to their predictions (`LabelMonitor.batch_listeners`): they count
        in the windows at the join's event time, the later of prediction and label."""
        model, version = batch.model, batch.version
        rules = self.rules.get(model)
        if not rules or not batch.events:
            return
        lay = _LabelLayout(len(self.models[model]))
        preds = list(batch.events)
        n = len(preds)
        true, pred, conf, at = batch.true, batch.pred, batch.confidence, batch.at
        self.watermark[model] = max(self.watermark.get(model, -math.inf), float(at.max()))
        ok = pred == true
        fin = np.isfinite(conf)
        cb = calibration_bin_index(conf[fin]) if fin.any() else np.empty(0, np.int64)
        # (event index, bin, weight) of every count, one part per group of bins
        idx = np.concatenate([np.arange(n), np.flatnonzero(ok), np.arange(n),
                              np.flatnonzero(ok), np.flatnonzero(fin), np.flatnonzero(fin),
                              np.flatnonzero(fin & ok)])
        bins = np.concatenate([np.full(n, lay.n), np.full(int(ok.sum()), lay.correct),
                               lay.true_total + true, lay.true_correct + true[ok],
                               lay.cal_events + cb, lay.cal_conf + cb,
                               lay.cal_correct + cb[ok[fin]]])
        weights = np.ones(idx.size)
        conf_part = slice(2 * n + 2 * int(ok.sum()) + cb.size, 2 * n + 2 * int(ok.sum())
                          + 2 * cb.size)
        weights[conf_part] = conf[fin]
        for rule in rules:
            rows = self._rows_no_admit(model, rule.key, preds)
            s = self._state(model, version, rule.key)
            if s.labels is None:
                s.labels = _Rows(self.windows, s.requests.shape[0], lay.size)
            s.labels.add(at[idx], rows[idx], bins, weights)

    def on_shadow(self, model: str, version: str, joins: Sequence[ShadowJoin]) -> None:
        """Images joined to their predictions (`ShadowMonitor.batch_listeners`): per value
        of the prediction's segments, images and agreeing ones at the join's time."""
        rules = self.rules.get(model)
        if not rules or not joins:
            return
        segs = [j[0] for j in joins]
        ts = np.fromiter((j[1] for j in joins), dtype=np.float64, count=len(joins))
        agree = np.flatnonzero(np.fromiter((j[2] for j in joins), dtype=bool, count=len(joins)))
        self.watermark[model] = max(self.watermark.get(model, -math.inf), float(ts.max()))
        idx = np.concatenate([np.arange(len(joins)), agree])
        bins = np.concatenate([np.full(len(joins), _SHADOW_N), np.full(agree.size, _SHADOW_AGREE)])
        for rule in rules:
            folder = self.folders[(model, rule.key)]
            before = folder.folded  # counted when the predictions arrived
            rows = self._rows(model, rule.key, (), segs)
            folder.folded = before
            s = self._state(model, version, rule.key)
            if s.shadow is None:
                s.shadow = _Rows(self.windows, s.requests.shape[0], _SHADOW_BINS)
            s.shadow.add(ts[idx], rows[idx], bins)

    def on_input_features(self, model: str, version: str,
                          segs: Sequence[Mapping[str, str] | None], ts: np.ndarray,
                          binned: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Scored images' input features binned by the baseline
        (`ShadowMonitor.feature_listeners`): per value of each image's segments (its own
        headers, else its prediction's), counted like the prediction features at the
        image's event time. A value first seen on an image takes a free row; a fold is not
        counted again (the folded count is of requests)."""
        rules = self.rules.get(model)
        baseline = self.drift.baselines.get(model)
        if not rules or baseline is None or not len(segs):
            return
        self.watermark[model] = max(self.watermark.get(model, -math.inf), float(ts.max()))
        for rule in rules:
            folder = self.folders[(model, rule.key)]
            before = folder.folded
            rows = self._rows(model, rule.key, (), list(segs))
            folder.folded = before
            s = self._state(model, version, rule.key)
            self._add_drift(s, baseline, ts, rows, binned)

    def _add_drift(self, s: _KeyState, baseline: Baseline, ts: np.ndarray, rows: np.ndarray,
                   binned: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Count each feature's (indices, bins) in the rows of its events."""
        cap = s.requests.shape[0]
        for name, (idx, bins) in binned.items():
            size = baseline.features[name].counts.size
            r = s.drift.get(name)
            if r is None or r.bins != size:  # new, or the baseline's bins changed
                r = s.drift[name] = _Rows(self.windows, cap, size)
            r.add(ts[idx], rows[idx], bins)

    def _rows_no_admit(self, model: str, key: str, events: Sequence[PredictionEvent]
                       ) -> np.ndarray:
        """`_rows` for events already counted: their values were admitted (or folded)
        when they arrived, so this counts no fold twice."""
        folder = self.folders[(model, key)]
        before = folder.folded
        rows = self._rows(model, key, events)
        folder.folded = before
        return rows

    # --- reading ------------------------------------------------------------------------
    def capture(self) -> SegmentCapture:
        keys = []
        for (model, version, key), s in self.by_key.items():
            now = self.watermark.get(model, 0.0)
            keys.append(KeyCounts(
                model, version, key, tuple(self.folders[(model, key)].names), s.requests.copy(),
                {name: r.totals(now) for name, r in s.drift.items()},
                None if s.labels is None else s.labels.totals(now),
                None if s.shadow is None else s.shadow.totals(now)))
        baselines = {m: self.drift.baselines[m] for m in self.rules if m in self.drift.baselines}
        return SegmentCapture(
            self.models, {k: f.folded for k, f in self.folders.items()}, tuple(keys), baselines,
            {m: self.drift.feature_alpha(m) for m in baselines}, self.drift.min_effect,
            self.memo, self.min_shadow_images)

    # --- checkpoint ---------------------------------------------------------------------
    def state(self) -> Any:
        return {
            "folders": [[m, k, f.state()] for (m, k), f in self.folders.items()],
            "watermark": dict(self.watermark),
            "keys": [[m, v, k, {"values": list(self.folders[(m, k)].names),
                                "requests": s.requests.tolist(),
                                "drift": {n: [r.bins, r.windows.state()]
                                          for n, r in s.drift.items()},
                                "labels": None if s.labels is None else s.labels.windows.state(),
                                "shadow": None if s.shadow is None else s.shadow.windows.state()}]
                     for (m, v, k), s in self.by_key.items()],
        }

    def restore(self, state: Any) -> None:
        """Load `state()`. A key whose rows changed meanwhile (its `values` list or bound
        edited) starts empty; its folded count is kept."""
        for m, k, f in state.get("folders", []):
            if (m, k) in self.folders:
                self.folders[(m, k)].restore(f)
        self.watermark.update(state.get("watermark", {}))
        for m, v, k, saved in state.get("keys", []):
            folder = self.folders.get((m, k))
            if folder is None or saved["values"] != folder.names:
                continue
            s = self._state(m, v, k)
            s.requests[...] = saved["requests"]
            for name, (bins, windows) in saved["drift"].items():
                r = s.drift[name] = _Rows(self.windows, folder.capacity, int(bins))
                r.windows.restore(_arrays(windows))
            if saved["labels"] is not None:
                s.labels = _Rows(self.windows, folder.capacity,
                                 _LabelLayout(len(self.models[m])).size)
                s.labels.windows.restore(_arrays(saved["labels"]))
            if saved.get("shadow") is not None:
                s.shadow = _Rows(self.windows, folder.capacity, _SHADOW_BINS)
                s.shadow.windows.restore(_arrays(saved["shadow"]))


def _arrays(rings: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
    return [{k: np.asarray(x) for k, x in r.items()} for r in rings]
