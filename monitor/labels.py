"""Late labels: join feedback to predictions, then per-class SLIs, calibration, accuracy
(realized and estimated) and label coverage over event-time windows.

Both arrival orders join: a prediction waits in a bounded store for its label, and a
label that arrives first waits in another. A request counts one label: a joined request is
remembered (a third bounded store) so that a second label for it is counted as a
duplicate and dropped at once, and a second label for a request whose label still waits
replaces it or not by the policy `labels.duplicates` (`first` | `last`). Window
statistics are keyed on the join's event time (the later of prediction and label), so
"accuracy over the last hour" means labels that arrived in the last hour. Snapshots copy
the counters and window totals under the ingestion lock (`capture`) and compute the
figures outside it (`LabelCapture`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Literal

import numpy as np

from monitor.catalog import CALIBRATION_BINS, LABEL_DELAY_BUCKETS
from monitor.engine import (
    OTHER,
    EngineExtension,
    EventGroup,
    HistogramHook,
    bucket_index,
    late_count,
)
from monitor.events import FeedbackEvent, PredictionEvent
from monitor.joins import JoinStore
from monitor.snapshot import (
    JoinStoreCounts,
    SnapshotBuilder,
    histogram_value,
    join_store_counts,
)
from monitor.stats import (
    IsotonicMap,
    atc_estimate,
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


class _PredictionLayout:
    """Bin layout of the all-predictions window count vector: the count, the calibration
    bins' events and confidence sums (B bins each), then the sum of g(confidence) under the
    baseline's calibration map and how many events it covers (the exact label-free
    estimate), then how many confidences were at or above the baseline's ATC threshold and
    how many were compared with it (ATC's estimate)."""

    def __init__(self) -> None:
        self.n = 0
        self.cal_events = 1
        self.cal_conf = self.cal_events + B
        self.est_sum = self.cal_conf + B
        self.est_n = self.est_sum + 1
        self.atc_hits = self.est_n + 1
        self.atc_n = self.atc_hits + 1
        self.size = self.atc_n + 1
        #: checkpoints written before the exact estimate lack its two bins and ATC's two,
        #: those written before ATC only ATC's (`_pred_rings`)
        self.size_without_estimate = self.est_sum
        self.size_without_atc = self.atc_hits

    def calibration(self, v: np.ndarray, start: int) -> np.ndarray:
        """The B calibration bins starting at `start`."""
        return v[start:start + B]


_PRED = _PredictionLayout()

EstimateMethod = Literal["calibrated", "mean_confidence", "atc", "shadow_stratified"]
#: which of two labels for one request stands (`labels.duplicates`): `last` replaces a
#: label only while it waits for its prediction, since a joined label is already in
#: counters that must never decrease
DuplicatePolicy = Literal["first", "last"]


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

    def classes(self, v: np.ndarray, start: int) -> np.ndarray:
        """The C per-class bins starting at `start`."""
        return v[start:start + self.c]

    def calibration(self, v: np.ndarray, start: int) -> np.ndarray:
        """The B calibration bins starting at `start`."""
        return v[start:start + B]


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
        self.pred_windows = WindowedCounts(windows, _PRED.size)


class LabelMonitor(EngineExtension):
    """Joins labels to predictions and keeps the label-based SLIs."""
    name = "labels"

    def __init__(self, models: Mapping[str, Sequence[str]], windows: tuple[WindowSpec, ...],
                 max_entries: int, ttl_seconds: float, hash_request_ids: bool = False,
                 calibration_for: Callable[[str], IsotonicMap | None] | None = None,
                 atc_threshold_for: Callable[[str], float | None] | None = None,
                 reject: Callable[[str, int], None] | None = None,
                 late: Callable[[int], None] | None = None,
                 duplicates: DuplicatePolicy = "first") -> None:
        """`late` is told how many labels joined too late for any window (their join time
        at least the longest window behind the model's watermark). `duplicates` is the
        policy for a second label of one request (module docstring). `calibration_for`
        and `atc_threshold_for` give a model's baseline calibration map and ATC threshold
        (None without)."""
        self.models = {m: tuple(c) for m, c in models.items()}
        self.index = {m: {name: i for i, name in enumerate(c)} for m, c in self.models.items()}
        self.windows = windows
        self.late = late or (lambda _n: None)
        self._horizon_s = max((w.seconds for w in windows), default=math.inf)
        self.predictions: JoinStore[PredictionEvent] = JoinStore(
            "labels_predictions", max_entries, ttl_seconds, hash_request_ids)
        #: a label waiting for its prediction: [label, ts, source, duplicates seen], the
        #: duplicates counted under the prediction's model once the two join
        self.early: JoinStore[list[Any]] = JoinStore(
            "labels_early", max_entries, ttl_seconds, hash_request_ids)
        #: request id -> model of a request whose label joined, in join time: a later label
        #: for it is a duplicate (bounded like the other stores)
        self.joined: JoinStore[str] = JoinStore(
            "labels_joined", max_entries, ttl_seconds, hash_request_ids)
        self.duplicate_policy: DuplicatePolicy = duplicates
        self.by_version: dict[tuple[str, str], _VersionLabels] = {}
        self.delay = {m: np.zeros(len(LABEL_DELAY_BUCKETS) + 1) for m in self.models}
        self.delay_sum = dict.fromkeys(self.models, 0.0)
        self.watermark: dict[str, float] = {}
        self.calibration_for = calibration_for or (lambda _m: None)
        self.atc_threshold_for = atc_threshold_for or (lambda _m: None)
        self.reject = reject or (lambda _reason, _n: None)
        self.histogram_hook: HistogramHook | None = None
        #: model -> second (third, ...) labels of one request, counted and dropped
        self.duplicates: dict[str, int] = dict.fromkeys(self.models, 0)
        self.joined_listeners: list[Callable[[str, str, PredictionEvent, int, float], None]] = []
        #: told of each batch of joins of one (model, version) at once (vectorised blocks)
        self.batch_listeners: list[Callable[[JoinedBatch], None]] = []

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
            bin_parts = [np.full(n, _PRED.n), _PRED.cal_events + cb, _PRED.cal_conf + cb]
            weight_parts = [np.ones(n), np.ones(cb.size), conf[fin]]
            cal_map = self.calibration_for(model)
            if cal_map is not None and cb.size:  # the exact label-free estimate: sum of g
                ts_parts += [ts[fin], ts[fin]]
                bin_parts += [np.full(cb.size, _PRED.est_sum), np.full(cb.size, _PRED.est_n)]
                weight_parts += [cal_map.apply(conf[fin]), np.ones(cb.size)]
            atc = self.atc_threshold_for(model)
            if atc is not None and cb.size:  # ATC: confidences at or above its threshold
                ts_parts += [ts[fin], ts[fin]]
                bin_parts += [np.full(cb.size, _PRED.atc_hits), np.full(cb.size, _PRED.atc_n)]
                weight_parts += [(conf[fin] >= atc).astype(np.float64), np.ones(cb.size)]
            state.pred_windows.add(np.concatenate(ts_parts),
                                   np.concatenate(bin_parts).astype(np.int64, copy=False),
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
                    label, label_ts, _, repeated = early
                    self._count_duplicates(model, repeated)
                    idx = self._resolve(model, label)
                    if idx is not None:
                        self.joined.put(e.request_id, max(e.ts, label_ts), model)
                        joins.append((e, idx, label_ts))
                        continue
                    self.reject("unknown_class", 1)  # the prediction waits for another
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
            self.joined.expire(newest)

    def apply_feedback(self, events: Sequence[FeedbackEvent]) -> None:
        pending: dict[tuple[str, str], list[tuple[PredictionEvent, int, float]]] = {}
        # requests joined by this batch, remembered in `joined` in one call at the end
        now_joined: dict[str, tuple[float, str]] = {}
        remembered = self.joined.get
        for f in events:
            rid = f.request_id
            hit = now_joined.get(rid)
            joined_model = remembered(rid) if hit is None else hit[1]
            if joined_model is not None:  # its label is counted: this one is not
                self._count_duplicates(joined_model, 1)
                continue
            pred = self.predictions.pop(rid)
            if pred is None:
                self._wait(f)
                continue
            idx = self._resolve(pred.model, f.label)
            if idx is None:
                self.reject("unknown_class", 1)
                self.predictions.put(rid, pred.ts, pred)  # it waits for a valid label
                continue
            now_joined[rid] = (pred.ts if pred.ts > f.ts else f.ts, pred.model)
            key = (pred.model, self._version_key(pred))
            pending.setdefault(key, []).append((pred, idx, f.ts))
        if now_joined:
            at, models = zip(*now_joined.values(), strict=True)
            self.joined.put_many(list(now_joined), list(at), list(models))
        for (model, version), joins in pending.items():
            self._join(model, version, joins)

    def _wait(self, f: FeedbackEvent) -> None:
        """Keep a label whose prediction has not arrived; a second one for the same request
        is counted (when the two join, under the prediction's model) and, by the policy,
        replaces the waiting label (`last`, waiting anew from its own time) or not."""
        waiting = self.early.get(f.request_id)
        if waiting is None:
            self.early.put(f.request_id, f.ts, [f.label, f.ts, f.source, 0])
        elif self.duplicate_policy == "last":
            self.early.put(f.request_id, f.ts, [f.label, f.ts, f.source, waiting[3] + 1])
        else:
            waiting[3] += 1

    def _count_duplicates(self, model: str, n: int) -> None:
        """Count `n` dropped labels of one request (a model no longer configured: none)."""
        if model in self.duplicates:
            self.duplicates[model] += n

    def _version_key(self, pred: PredictionEvent) -> str:
        """The cardinality-limited version the prediction was counted under."""
        if (pred.model, pred.version) in self.by_version:
            return pred.version
        return OTHER

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
        self.late(late_count(at, self.watermark[model], self._horizon_s))
        for listener in self.joined_listeners:
            for p, y, t in joins:
                listener(model, version, p, y, t)
        if self.batch_listeners:
            batch = JoinedBatch(model, version, tuple(p for p, _, _ in joins), pred, true, conf,
                                at)
            for batch_listener in self.batch_listeners:
                batch_listener(batch)

    # --- reading --------------------------------------------------------------------
    def _counts(self, model: str, version: str, s: _VersionLabels) -> VersionLabelCounts:
        """Copy one (model, version)'s counters and window totals (under the lock)."""
        now = self.watermark.get(model, 0.0)
        return VersionLabelCounts(
            model, version, self.models[model], s.layout, s.labels.copy(),
            s.labeled_preds.copy(), s.top5_correct, s.cal.copy(),
            None if s.confusion is None else s.confusion.copy(),
            s.labeled_windows.totals(now), s.pred_windows.totals(now),
            self.calibration_for(model))

    def window_figures(self, model: str, version: str) -> dict[str, dict[str, float]]:
        """{window: {accuracy, ece, mce, brier, coverage, estimated, labeled, predictions}}."""
        s = self.by_version.get((model, version))
        return {} if s is None else window_figures(self._counts(model, version, s))

    def class_window_figures(self, model: str, version: str
                             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{window: (recall per true class, precision per predicted class)}; NaN = no data."""
        s = self.by_version.get((model, version))
        return {} if s is None else class_window_figures(self._counts(model, version, s))

    def capture(self) -> LabelCapture:
        return LabelCapture(
            (join_store_counts(self.predictions), join_store_counts(self.early)),
            tuple((m, d.copy(), self.delay_sum[m]) for m, d in self.delay.items()),
            tuple(self._counts(m, v, s) for (m, v), s in self.by_version.items()),
            self.duplicate_policy, tuple(self.duplicates.items()))

    # --- checkpoint ---------------------------------------------------------------------
    def state(self) -> Any:
        return {
            "predictions": self.predictions.state(_encode_pred),
            "early": self.early.state(list),
            "joined": self.joined.state(str),
            "duplicates": self.duplicates,
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
        self.early.restore(state["early"], _decode_early)
        # checkpoints written before duplicates were counted lack both
        self.joined.restore(state.get("joined", {"entries": []}), str)
        for m, n in state.get("duplicates", {}).items():
            if m in self.duplicates:
                self.duplicates[m] = int(n)
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


@dataclass(frozen=True, slots=True, eq=False)
class JoinedBatch:
    """Labels joined to their predictions in one step, for one (model, version): per join,
    the prediction, its predicted and true class indices, its confidence and the join's
    event time (the later of prediction and label, s)."""

    model: str
    version: str
    events: tuple[PredictionEvent, ...]
    pred: np.ndarray
    true: np.ndarray
    confidence: np.ndarray
    at: np.ndarray


@dataclass(frozen=True, slots=True)
class VersionLabelCounts:
    """One (model, version)'s label counters and window totals, copied for a snapshot, with
    the calibration map of its baseline (None without one)."""

    model: str
    version: str
    classes: tuple[str, ...]
    layout: _Layout
    labels: np.ndarray             # [true class, correct?]
    labeled_preds: np.ndarray      # [predicted class, correct?]
    top5_correct: float
    cal: np.ndarray                # events, confidence sum, correct per calibration bin
    confusion: np.ndarray | None
    #: window -> totals of the labeled windows (`layout`) and of the prediction windows
    labeled: Mapping[str, np.ndarray]
    predictions: Mapping[str, np.ndarray]
    cal_map: IsotonicMap | None


@dataclass(frozen=True, slots=True)
class LabelCapture:
    """What the label series need, copied under the ingestion lock."""

    stores: tuple[JoinStoreCounts, ...]
    #: (model, label delay bucket counts, their sum in seconds)
    delays: tuple[tuple[str, np.ndarray, float], ...]
    versions: tuple[VersionLabelCounts, ...]
    policy: DuplicatePolicy
    #: (model, duplicate labels counted and dropped)
    duplicates: tuple[tuple[str, int], ...]

    def render(self, b: SnapshotBuilder) -> None:
        for store in self.stores:
            store.render(b)
        for model, n in self.duplicates:
            b.set("visionmon_labels_duplicate_total", (model, self.policy), float(n))
        for model, counts, total in self.delays:
            if counts.sum():
                b.set("visionmon_label_delay_seconds", (model,), histogram_value(counts, total))
        for v in self.versions:
            _render_version(b, v)


def _render_version(b: SnapshotBuilder, s: VersionLabelCounts) -> None:
    """The label counters and window figures of one (model, version)."""
    classes = s.classes
    mv = (s.model, s.version)
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
                b.set("visionmon_confusion_pair_total", (*mv, classes[t], classes[p]), float(n))
    for window, f in window_figures(s).items():
        key = (*mv, window)
        for name, metric in (("accuracy", "visionmon_accuracy_ratio"),
                             ("mce", "visionmon_calibration_mce"),
                             ("brier", "visionmon_brier_score"),
                             ("coverage", "visionmon_label_coverage_ratio")):
            if not math.isnan(f[name]):
                b.set(metric, key, f[name])
        if not math.isnan(f["estimated"]):
            b.set("visionmon_estimated_accuracy_ratio", (*key, estimate_method(s.cal_map)),
                  f["estimated"])
        if not math.isnan(f["atc"]):
            b.set("visionmon_estimated_accuracy_ratio", (*key, "atc"), f["atc"])
        if not math.isnan(f["ece"]):
            b.set("visionmon_calibration_ece", (*key, "labels"), f["ece"])
    for window, (recall, precision) in class_window_figures(s).items():
        for i, name in enumerate(classes):
            if not math.isnan(recall[i]):
                b.set("visionmon_class_recall_ratio", (*mv, name, window), recall[i])
            if not math.isnan(precision[i]):
                b.set("visionmon_class_precision_ratio", (*mv, name, window), precision[i])


def window_figures(s: VersionLabelCounts) -> dict[str, dict[str, float]]:
    """{window: {accuracy, ece, mce, brier, coverage, estimated, labeled, predictions}}."""
    lay = s.layout
    out: dict[str, dict[str, float]] = {}
    for window, v in s.labeled.items():
        p = s.predictions[window]
        n_lab, n_pred = float(v[lay.n]), float(p[_PRED.n])
        ev = lay.calibration(v, lay.cal_events)
        cs = lay.calibration(v, lay.cal_conf)
        cc = lay.calibration(v, lay.cal_correct)
        pe = _PRED.calibration(p, _PRED.cal_events)
        pc = _PRED.calibration(p, _PRED.cal_conf)
        f: dict[str, float] = {"labeled": n_lab, "predictions": n_pred}
        f["accuracy"] = v[lay.correct] / n_lab if n_lab else math.nan
        f["ece"] = ece_from_bins(ev, cs, cc) if ev.sum() else math.nan
        f["mce"] = mce_from_bins(ev, cs, cc) if ev.sum() else math.nan
        f["brier"] = v[lay.brier_sum] / v[lay.brier_n] if v[lay.brier_n] else math.nan
        f["coverage"] = min(n_lab / n_pred, 1.0) if n_pred else math.nan
        f["estimated"] = _estimate(s.cal_map, pe, pc, float(p[_PRED.est_sum]),
                                   float(p[_PRED.est_n]))
        # ATC over the predictions compared with the threshold (all of the window's once
        # the threshold is older than the window)
        f["atc"] = atc_estimate(float(p[_PRED.atc_hits]), float(p[_PRED.atc_n])) \
            if p[_PRED.atc_n] > 0 else math.nan
        out[window] = f
    return out


def class_window_figures(s: VersionLabelCounts) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{window: (recall per true class, precision per predicted class)}; NaN = no data."""
    lay = s.layout
    out = {}
    for window, v in s.labeled.items():
        tt, tc = lay.classes(v, lay.true_total), lay.classes(v, lay.true_correct)
        pt, pc = lay.classes(v, lay.pred_total), lay.classes(v, lay.pred_correct)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[window] = (np.where(tt > 0, tc / tt, np.nan), np.where(pt > 0, pc / pt, np.nan))
    return out


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
    its two bins and ATC's two, those written before ATC only ATC's, and get them empty (the
    estimate then comes from the bins, and ATC from the slices after the restart, until the
    old slices leave the window)."""
    out = _arrays(rings)
    for r in out:
        width = r["counts"].shape[1] if r["counts"].ndim == 2 else _PRED.size
        if width in (_PRED.size_without_estimate, _PRED.size_without_atc):
            r["counts"] = np.pad(r["counts"], ((0, 0), (0, _PRED.size - width)))
    return out


def _brier(probs: tuple[float, ...] | None, label: int) -> float:
    """Multiclass Brier of one prediction: sum_j (p_j - y_j)^2; NaN without probs."""
    if probs is None:
        return math.nan
    total = sum(p * p for p in probs)
    return total - 2.0 * probs[label] + 1.0


def _decode_early(v: list[Any]) -> list[Any]:
    """A waiting label from a checkpoint; those written before duplicates were counted
    hold three values (no count)."""
    return [*v, 0] if len(v) == 3 else list(v)


def _encode_pred(e: PredictionEvent) -> list[Any]:
    return list(e)


def _decode_pred(v: list[Any]) -> PredictionEvent:
    e = PredictionEvent(*v)
    return e._replace(top5=tuple(e.top5), probs=None if e.probs is None else tuple(e.probs),
                      top5_probs=tuple(e.top5_probs))
