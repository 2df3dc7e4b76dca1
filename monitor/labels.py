"""Late labels: join feedback to predictions, then per-class SLIs, calibration, accuracy
(realized and estimated) and label coverage over event-time windows.

Both arrival orders join: a prediction waits in a bounded store for its label, and a
label that arrives first waits in another. Window statistics are keyed on the join's
event time (the later of prediction and label), so "accuracy over the last hour" means
labels that arrived in the last hour.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any, Literal

import numpy as np

from monitor.catalog import CALIBRATION_BINS, LABEL_DELAY_BUCKETS
from monitor.engine import EngineExtension, EventGroup, HistogramHook, bucket_index
from monitor.events import FeedbackEvent, PredictionEvent
from monitor.joins import JoinStore
from monitor.snapshot import SnapshotBuilder, histogram_value
from monitor.stats import (
    IsotonicMap,
    calibration_bin_index,
    ece_from_bins,
    estimated_accuracy_from_bins,
    mce_from_bins,
    top_confused_pairs,
)
from monitor.windows import WindowedCounts, WindowSpec

MAX_PROBS_KEPT = 32          # probs are kept for Brier only for models with <= 32 classes
MAX_DENSE_CONFUSION = 200    # classes up to which a full confusion matrix is kept
TOP_CONFUSED = 20
_DELAY_EDGES = np.asarray(LABEL_DELAY_BUCKETS, dtype=np.float64)
B = CALIBRATION_BINS
# prediction-window layout: count, B calibration-bin events, B confidence sums, then the
# sum of g(confidence) under the baseline's calibration map and how many events it covers
_EST_SUM = 1 + 2 * B
_EST_N = 2 + 2 * B
_PRED_BINS = 3 + 2 * B
_PRED_BINS_V1 = 1 + 2 * B   # checkpoints written before the exact estimate
EstimateMethod = Literal["calibrated", "mean_confidence"]


class _Layout:
    """Bin layout of the labeled-window count vector for a model with C classes."""

    def __init__(self, c: int) -> None:
        self.c = c
        self.n = 0
        self.correct = 1
        self.true_total = 2
        self.true_correct = 2 + c
        self.pred_total = 2 + 2 * c
        self.pred_correct = 2 + 3 * c
        self.cal_events = 2 + 4 * c
        self.cal_conf = self.cal_events + B
        self.cal_correct = self.cal_conf + B
        self.brier_sum = self.cal_correct + B
        self.brier_n = self.brier_sum + 1
        self.size = self.brier_n + 1


class _VersionLabels:
    """Cumulative counters and windows of one (model, version)."""

    def __init__(self, c: int, windows: tuple[WindowSpec, ...]) -> None:
        self.layout = _Layout(c)
        self.labels = np.zeros((c, 2))             # [true class, correct?]
        self.labeled_preds = np.zeros((c, 2))      # [predicted class, correct?]
        self.top5_correct = 0.0
        self.cal = np.zeros((3, B))                # events, confidence sum, correct
        self.confusion = np.zeros((c, c)) if c <= MAX_DENSE_CONFUSION else None
        self.labeled_windows = WindowedCounts(windows, self.layout.size)
        # all predictions: count, per-calibration-bin events and confidence sums, and the
        # calibrated-confidence sum of the label-free estimate (layout above)
        self.pred_windows = WindowedCounts(windows, _PRED_BINS)


class LabelMonitor(EngineExtension):
    """Joins labels to predictions and keeps the label-based SLIs."""

    def __init__(self, models: Mapping[str, Sequence[str]], windows: tuple[WindowSpec, ...],
                 max_entries: int, ttl_seconds: float, hash_request_ids: bool = False,
                 calibration_for: Callable[[str], IsotonicMap | None] | None = None,
                 reject: Callable[[str, int], None] | None = None) -> None:
        self.models = {m: tuple(c) for m, c in models.items()}
        self.index = {m: {name: i for i, name in enumerate(c)} for m, c in self.models.items()}
        self.windows = windows
        self.predictions: JoinStore[PredictionEvent] = JoinStore(
            "labels_predictions", max_entries, ttl_seconds, hash_request_ids)
        self.early: JoinStore[tuple[Any, float, str | None]] = JoinStore(
            "labels_early", max_entries, ttl_seconds, hash_request_ids)
        self.by_version: dict[tuple[str, str], _VersionLabels] = {}
        self.delay = {m: np.zeros(len(LABEL_DELAY_BUCKETS) + 1) for m in self.models}
        self.delay_sum = dict.fromkeys(self.models, 0.0)
        self.watermark: dict[str, float] = {}
        self.calibration_for = calibration_for or (lambda _m: None)
        self.reject = reject or (lambda _reason, _n: None)
        self.histogram_hook: HistogramHook | None = None
        self.duplicates = 0
        self.joined_listeners: list[Callable[[str, str, PredictionEvent, int, float], None]] = []

    def _state_for(self, model: str, version: str) -> _VersionLabels:
        s = self.by_version.get((model, version))
        if s is None:
            s = self.by_version[(model, version)] = _VersionLabels(len(self.models[model]),
                                                                   self.windows)
        return s

    # --- feeding ------------------------------------------------------------------
    def on_predictions(self, groups: Mapping[tuple[str, str], EventGroup]) -> None:
        newest = -math.inf
        for (model, version), evs in groups.items():
            c = len(self.models[model])
            state = self._state_for(model, version)
            n = len(evs)
            ts = evs.column("ts")
            conf = evs.column("confidence")
            newest = max(newest, float(ts.max()))
            self.watermark[model] = max(self.watermark.get(model, -math.inf), float(ts.max()))
            # window: one count per prediction, and calibration bins of confident ones
            fin = np.isfinite(conf)
            cb = calibration_bin_index(conf[fin]) if fin.any() else np.empty(0, np.int64)
            ts_parts = [ts, ts[fin], ts[fin]]
            bin_parts = [np.zeros(n, np.int64), 1 + cb, 1 + B + cb]
            weight_parts = [np.ones(n), np.ones(cb.size), conf[fin]]
            cal_map = self.calibration_for(model)
            if cal_map is not None and cb.size:  # the exact label-free estimate: sum of g
                ts_parts += [ts[fin], ts[fin]]
                bin_parts += [np.full(cb.size, _EST_SUM), np.full(cb.size, _EST_N)]
                weight_parts += [cal_map.apply(conf[fin]), np.ones(cb.size)]
            state.pred_windows.add(np.concatenate(ts_parts), np.concatenate(bin_parts),
                                   np.concatenate(weight_parts))
            if not len(self.early) and not self.predictions.hash_keys and c <= MAX_PROBS_KEPT:
                # no label is waiting and nothing to strip: store the batch whole
                keep = evs.predicted()
                self.predictions.put_many(list(map(attrgetter("request_id"), keep)),
                                          list(map(attrgetter("ts"), keep)), keep)
                continue
            joins: list[tuple[PredictionEvent, int, float]] = []
            for e in evs:
                if not e.ok or e.pred < 0:
                    continue
                early = self.early.pop(e.request_id) if len(self.early) else None
                if early is not None:
                    label, label_ts, _ = early
                    idx = self._resolve(model, label)
                    if idx is None:
                        self.reject("unknown_class", 1)
                    else:
                        joins.append((e, idx, label_ts))
                    continue
                if e.probs is not None and c > MAX_PROBS_KEPT:
                    e = e._replace(probs=None)
                rid = e.request_id
                if self.predictions.hash_keys:  # the raw id is not kept, not even in the value
                    e = e._replace(request_id="")
                self.predictions.put(rid, e.ts, e)
            if joins:
                self._join(model, version, joins)
        if newest > -math.inf:
            self.predictions.expire(newest)
            self.early.expire(newest)

    def apply_feedback(self, events: Sequence[FeedbackEvent]) -> None:
        pending: dict[tuple[str, str], list[tuple[PredictionEvent, int, float]]] = {}
        for f in events:
            pred = self.predictions.pop(f.request_id)
            if pred is None:
                if f.request_id in self.early:
                    self.duplicates += 1
                self.early.put(f.request_id, f.ts, (f.label, f.ts, f.source))
                continue
            idx = self._resolve(pred.model, f.label)
            if idx is None:
                self.reject("unknown_class", 1)
                continue
            key = (pred.model, self._version_key(pred))
            pending.setdefault(key, []).append((pred, idx, f.ts))
        for (model, version), joins in pending.items():
            self._join(model, version, joins)

    def _version_key(self, pred: PredictionEvent) -> str:
        """The cardinality-limited version the prediction was counted under."""
        if (pred.model, pred.version) in self.by_version:
            return pred.version
        return "_other"

    def _resolve(self, model: str, label: Any) -> int | None:
        if type(label) is int:
            return label if 0 <= label < len(self.models[model]) else None
        return self.index[model].get(label)

    def _join(self, model: str, version: str, joins: list[tuple[PredictionEvent, int, float]]
              ) -> None:
        s = self._state_for(model, version)
        lay = s.layout
        n = len(joins)
        pred = np.fromiter((p.pred for p, _, _ in joins), dtype=np.int64, count=n)
        true = np.fromiter((y for _, y, _ in joins), dtype=np.int64, count=n)
        conf = np.fromiter((p.confidence for p, _, _ in joins), dtype=np.float64, count=n)
        pts = np.fromiter((p.ts for p, _, _ in joins), dtype=np.float64, count=n)
        lts = np.fromiter((t for _, _, t in joins), dtype=np.float64, count=n)
        at = np.maximum(pts, lts)
        correct = (pred == true).astype(np.int64)
        np.add.at(s.labels, (true, correct), 1.0)
        np.add.at(s.labeled_preds, (pred, correct), 1.0)
        if s.confusion is not None:
            np.add.at(s.confusion, (true, pred), 1.0)
        s.top5_correct += sum(1 for (p, y, _) in joins if y in p.top5)
        fin = np.isfinite(conf)
        cb = calibration_bin_index(conf[fin]) if fin.any() else np.empty(0, np.int64)
        np.add.at(s.cal[0], cb, 1.0)
        np.add.at(s.cal[1], cb, conf[fin])
        np.add.at(s.cal[2], cb, correct[fin].astype(np.float64))
        brier = np.array([_brier(p.probs, y) for p, y, _ in joins])
        has_brier = np.isfinite(brier)
        # windowed: (time, bin, weight) triples, added in one call
        parts_t = [at, at[correct == 1], at, at[correct == 1], at, at[correct == 1],
                   at[fin], at[fin], at[fin][correct[fin] == 1], at[has_brier], at[has_brier]]
        parts_b = [np.full(n, lay.n), np.full(int(correct.sum()), lay.correct),
                   lay.true_total + true, lay.true_correct + true[correct == 1],
                   lay.pred_total + pred, lay.pred_correct + pred[correct == 1],
                   lay.cal_events + cb, lay.cal_conf + cb,
                   lay.cal_correct + cb[correct[fin] == 1],
                   np.full(int(has_brier.sum()), lay.brier_sum),
                   np.full(int(has_brier.sum()), lay.brier_n)]
        parts_w = [np.ones(n), np.ones(int(correct.sum())), np.ones(n),
                   np.ones(int(correct.sum())), np.ones(n), np.ones(int(correct.sum())),
                   np.ones(cb.size), conf[fin], np.ones(int((correct[fin] == 1).sum())),
                   brier[has_brier], np.ones(int(has_brier.sum()))]
        s.labeled_windows.add(np.concatenate(parts_t), np.concatenate(parts_b).astype(np.int64),
                              np.concatenate(parts_w))
        delay = np.clip(lts - pts, 0.0, None)
        self.delay[model] += np.bincount(bucket_index(delay, _DELAY_EDGES),
                                         minlength=self.delay[model].size)
        self.delay_sum[model] += float(delay.sum())
        if self.histogram_hook is not None:
            self.histogram_hook("visionmon_label_delay_seconds", (model,), delay)
        self.watermark[model] = max(self.watermark.get(model, -math.inf), float(at.max()))
        for listener in self.joined_listeners:
            for p, y, t in joins:
                listener(model, version, p, y, t)

    # --- reading --------------------------------------------------------------------
    def window_figures(self, model: str, version: str) -> dict[str, dict[str, float]]:
        """{window: {accuracy, ece, mce, brier, coverage, estimated, labeled, predictions}}."""
        s = self.by_version.get((model, version))
        if s is None:
            return {}
        lay = s.layout
        now = self.watermark.get(model, 0.0)
        labeled = s.labeled_windows.totals(now)
        preds = s.pred_windows.totals(now)
        cal_map = self.calibration_for(model)
        out: dict[str, dict[str, float]] = {}
        for window, v in labeled.items():
            p = preds[window]
            n_lab, n_pred = float(v[lay.n]), float(p[0])
            ev = v[lay.cal_events:lay.cal_events + B]
            cs = v[lay.cal_conf:lay.cal_conf + B]
            cc = v[lay.cal_correct:lay.cal_correct + B]
            pe, pc = p[1:1 + B], p[1 + B:1 + 2 * B]
            f: dict[str, float] = {"labeled": n_lab, "predictions": n_pred}
            f["accuracy"] = v[lay.correct] / n_lab if n_lab else math.nan
            f["ece"] = ece_from_bins(ev, cs, cc) if ev.sum() else math.nan
            f["mce"] = mce_from_bins(ev, cs, cc) if ev.sum() else math.nan
            f["brier"] = v[lay.brier_sum] / v[lay.brier_n] if v[lay.brier_n] else math.nan
            f["coverage"] = min(n_lab / n_pred, 1.0) if n_pred else math.nan
            f["estimated"] = _estimate(cal_map, pe, pc, float(p[_EST_SUM]), float(p[_EST_N]))
            out[window] = f
        return out

    def class_window_figures(self, model: str, version: str
                             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{window: (recall per true class, precision per predicted class)}; NaN = no data."""
        s = self.by_version.get((model, version))
        if s is None:
            return {}
        lay, c = s.layout, s.layout.c
        out = {}
        for window, v in s.labeled_windows.totals(self.watermark.get(model, 0.0)).items():
            tt, tc = v[lay.true_total:lay.true_total + c], v[lay.true_correct:lay.true_correct + c]
            pt, pc = v[lay.pred_total:lay.pred_total + c], v[lay.pred_correct:lay.pred_correct + c]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[window] = (np.where(tt > 0, tc / tt, np.nan), np.where(pt > 0, pc / pt, np.nan))
        return out

    def snapshot(self, b: SnapshotBuilder) -> None:
        b.set("visionmon_pending_joins", ("labels_predictions",), float(len(self.predictions)))
        b.set("visionmon_pending_joins", ("labels_early",), float(len(self.early)))
        for store in (self.predictions, self.early):
            for reason, n in store.evicted.items():
                b.set("visionmon_join_evicted_total", (store.name, reason), float(n))
        for model, counts in self.delay.items():
            if counts.sum():
                b.set("visionmon_label_delay_seconds", (model,),
                      histogram_value(counts, self.delay_sum[model]))
        for (model, version), s in self.by_version.items():
            classes = self.models[model]
            mv = (model, version)
            if s.labels.sum():
                for i, name in enumerate(classes):
                    for j, outcome in ((1, "correct"), (0, "incorrect")):
                        # both outcomes of every class seen, so ratios never miss a side
                        if s.labels[i].any():
                            b.set("visionmon_labels_total", (*mv, name, outcome), s.labels[i, j])
                        if s.labeled_preds[i].any():
                            b.set("visionmon_labeled_predictions_total", (*mv, name, outcome),
                                  s.labeled_preds[i, j])
                b.set("visionmon_top5_correct_total", mv, s.top5_correct)
                for k in range(B):
                    bl = (*mv, f"{(k + 1) / B:.3f}")
                    b.set("visionmon_calibration_bin_events_total", bl, s.cal[0, k])
                    b.set("visionmon_calibration_bin_confidence_sum_total", bl, s.cal[1, k])
                    b.set("visionmon_calibration_bin_correct_total", bl, s.cal[2, k])
                if s.confusion is not None:
                    for t, p, n in top_confused_pairs(s.confusion, TOP_CONFUSED):
                        b.set("visionmon_confusion_pair_total", (*mv, classes[t], classes[p]),
                              float(n))
            method = estimate_method(self.calibration_for(model))
            for window, f in self.window_figures(model, version).items():
                key = (*mv, window)
                for name, metric in (("accuracy", "visionmon_accuracy_ratio"),
                                     ("mce", "visionmon_calibration_mce"),
                                     ("brier", "visionmon_brier_score"),
                                     ("coverage", "visionmon_label_coverage_ratio")):
                    if not math.isnan(f[name]):
                        b.set(metric, key, f[name])
                if not math.isnan(f["estimated"]):
                    b.set("visionmon_estimated_accuracy_ratio", (*key, method), f["estimated"])
                if not math.isnan(f["ece"]):
                    b.set("visionmon_calibration_ece", (*key, "labels"), f["ece"])
            for window, (recall, precision) in self.class_window_figures(model, version).items():
                for i, name in enumerate(classes):
                    if not math.isnan(recall[i]):
                        b.set("visionmon_class_recall_ratio", (*mv, name, window), recall[i])
                    if not math.isnan(precision[i]):
                        b.set("visionmon_class_precision_ratio", (*mv, name, window),
                              precision[i])

    # --- checkpoint ---------------------------------------------------------------------
    def state(self) -> Any:
        return {
            "predictions": self.predictions.state(_encode_pred),
            "early": self.early.state(list),
            "delay": {m: d.tolist() for m, d in self.delay.items()},
            "delay_sum": self.delay_sum,
            "watermark": self.watermark,
            "versions": [[m, v, {"labels": s.labels, "labeled_preds": s.labeled_preds,
                                 "top5": s.top5_correct, "cal": s.cal,
                                 "confusion": s.confusion,
                                 "labeled_windows": s.labeled_windows.state(),
                                 "pred_windows": s.pred_windows.state()}]
                         for (m, v), s in self.by_version.items()],
        }

    def restore(self, state: Any) -> None:
        self.predictions.restore(state["predictions"], _decode_pred)
        self.early.restore(state["early"], tuple)
        for m, d in state["delay"].items():
            if m in self.delay:
                self.delay[m][...] = d
                self.delay_sum[m] = float(state["delay_sum"][m])
        self.watermark.update(state["watermark"])
        for m, v, d in state["versions"]:
            if m not in self.models:
                continue
            s = self._state_for(m, v)
            s.labels[...] = d["labels"]
            s.labeled_preds[...] = d["labeled_preds"]
            s.top5_correct = float(d["top5"])
            s.cal[...] = d["cal"]
            if s.confusion is not None and d["confusion"] is not None:
                s.confusion[...] = d["confusion"]
            s.labeled_windows.restore(_arrays(d["labeled_windows"]))
            s.pred_windows.restore(_pred_rings(d["pred_windows"]))


def estimate_method(cal_map: IsotonicMap | None) -> EstimateMethod:
    """What the label-free estimate is (`visionmon_estimated_accuracy_ratio{method}`):
    calibrated through the baseline's map, or the raw mean confidence without one."""
    return "mean_confidence" if cal_map is None else "calibrated"


def _estimate(cal_map: IsotonicMap | None, bin_events: np.ndarray, bin_conf: np.ndarray,
              g_sum: float, g_n: float) -> float:
    """Label-free accuracy of a window: the mean of g(confidence) over its events when the
    calibration map scored every one of them as it arrived (exact); from the calibration
    bins when only some were (a baseline set mid-window); the mean confidence without a
    map; NaN for a window without confidences."""
    n = float(bin_events.sum())
    if not n:
        return math.nan
    if cal_map is None:
        return float(bin_conf.sum()) / n  # uncalibrated: the mean confidence
    if g_n == n:
        return g_sum / g_n
    return float(estimated_accuracy_from_bins(cal_map, bin_events, bin_conf))


def _arrays(rings: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
    return [{k: np.asarray(v) for k, v in r.items()} for r in rings]


def _pred_rings(rings: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
    """Prediction windows from a checkpoint; those written before the exact estimate lack
    its two bins and get them empty (the estimate then comes from the bins until the old
    slices leave the window)."""
    out = _arrays(rings)
    for r in out:
        if r["counts"].ndim == 2 and r["counts"].shape[1] == _PRED_BINS_V1:
            r["counts"] = np.pad(r["counts"], ((0, 0), (0, _PRED_BINS - _PRED_BINS_V1)))
    return out


def _brier(probs: tuple[float, ...] | None, label: int) -> float:
    """Multiclass Brier of one prediction: sum_j (p_j - y_j)^2; NaN without probs."""
    if probs is None:
        return math.nan
    total = sum(p * p for p in probs)
    return total - 2.0 * probs[label] + 1.0


def _encode_pred(e: PredictionEvent) -> list[Any]:
    return list(e)


def _decode_pred(v: list[Any]) -> PredictionEvent:
    fields = list(v)
    fields[10] = tuple(fields[10])
    if fields[11] is not None:
        fields[11] = tuple(fields[11])
    return PredictionEvent(*fields)
