"""Per-class one-vs-rest ROC-AUC and PR-AUC of labelled predictions over each window (the
guide's M6), from score bins (`monitor.stats.ranking`).

A labelled prediction scores every class: from its `probs` when the label join kept them
(models of up to 32 classes), else from its top five (`probs` or `topk`), where a class
outside the top five scores 0 (it ranks below every class shown, tied with the others left
out). Per class and slice, two rows of `bins` counts are kept: its positives (events labelled
with it) by the bin of their score for it, and all events whose score for it falls in bin 1
or above. The negatives follow: bins >= 1 are the difference, bin 0 the remaining events.
So an event costs one count for its label and one per class it scores at least 1/bins, and a
class costs memory in a slice only when it occurred there (`monitor.class_windows`).
Predictions without `probs` or `topk` are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from monitor.class_windows import ClassTotals, SparseClassRing
from monitor.engine import EngineExtension
from monitor.events import PredictionEvent
from monitor.labels import JoinedBatch
from monitor.snapshot import SnapshotBuilder
from monitor.stats import average_precision_from_bins, roc_auc_from_bins, score_bin_index
from monitor.windows import WindowSpec


class _Layout:
    """Columns of a class's row: positives by score bin, then all events by score bin (bin 0
    of the second part stays empty: those negatives are derived from the event count)."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.positives = 0
        self.scored = bins
        self.width = 2 * bins

    def split(self, t: ClassTotals) -> tuple[np.ndarray, np.ndarray]:
        """(positives, negatives) by bin, one row per class of the totals."""
        pos = t.counts[:, self.positives:self.positives + self.bins]
        neg = t.counts[:, self.scored:self.scored + self.bins] - pos
        neg[:, 0] = t.events - pos.sum(axis=1) - neg[:, 1:].sum(axis=1)
        return pos, neg


@dataclass(frozen=True, slots=True)
class _Increments:
    """The counts a batch adds: per count its event (index in the batch), class and column."""

    event: np.ndarray
    cls: np.ndarray
    col: np.ndarray


def _scored(events: Sequence[PredictionEvent]) -> list[int]:
    return [i for i, e in enumerate(events) if e.probs is not None or e.top5_probs]


def increments(lay: _Layout, events: Sequence[PredictionEvent], true: np.ndarray
               ) -> _Increments:
    """Counts of scored events (`events[i]` with `probs` or `top5_probs`, labelled
    `true[i]`): one positive per event and one per class it scores in bin 1 or above."""
    ev: list[np.ndarray] = []
    cls: list[np.ndarray] = []
    col: list[np.ndarray] = []
    dense = [i for i, e in enumerate(events) if e.probs is not None]
    if dense:
        bins = score_bin_index(np.array([events[i].probs for i in dense]), lay.bins)
        rows, classes = np.nonzero(bins >= 1)
        idx = np.asarray(dense)
        y = true[idx]
        ev += [idx[rows], idx]
        cls += [classes, y]
        col += [lay.scored + bins[rows, classes], lay.positives + bins[np.arange(idx.size), y]]
    sparse = [i for i, e in enumerate(events) if e.probs is None and e.top5_probs]
    if sparse:
        top = [events[i] for i in sparse]
        # the decoder gives `top5` and `top5_probs` one length (checkpoints before format 3
        # hold no `top5_probs`: those events are not in `sparse`)
        k = np.fromiter(map(len, (e.top5_probs for e in top)), np.int64, len(top))
        classes = np.fromiter(chain.from_iterable(e.top5 for e in top), np.int64)
        scores = np.fromiter(chain.from_iterable(e.top5_probs for e in top), np.float64)
        bins = score_bin_index(scores, lay.bins)
        at = np.repeat(np.arange(len(top)), k)  # the entry's event, among `top`
        y = true[np.asarray(sparse)]
        own = classes == y[at]  # the entry of the event's label, if in its top 5
        y_score = np.zeros(len(top))
        y_score[at[own]] = scores[own]
        hi = bins >= 1
        ev += [np.asarray(sparse)[at[hi]], np.asarray(sparse)]
        cls += [classes[hi], y]
        col += [lay.scored + bins[hi], lay.positives + score_bin_index(y_score, lay.bins)]
    if not ev:
        empty = np.empty(0, np.int64)
        return _Increments(empty, empty, empty)
    return _Increments(np.concatenate(ev), np.concatenate(cls).astype(np.int64),
                       np.concatenate(col).astype(np.int64))


class _VersionAuc:
    """The sparse AUC windows of one (model, version)."""

    def __init__(self, windows: tuple[WindowSpec, ...], n_classes: int, width: int) -> None:
        self.rings = tuple(SparseClassRing(w, n_classes, width) for w in windows)


class ClassAucMonitor(EngineExtension):
    """Keeps each window's per-class score bins and exports the AUCs (module docstring)."""

    name = "auc"

    def __init__(self, models: Mapping[str, Sequence[str]], windows: tuple[WindowSpec, ...],
                 bins: int, slices: int) -> None:
        """`windows` as configured; each gets `slices` slices here (`auc.slices`)."""
        self.models = {m: tuple(c) for m, c in models.items()}
        self.windows = tuple(WindowSpec(w.name, w.seconds, slices) for w in windows)
        self.layout = _Layout(bins)
        self.by_version: dict[tuple[str, str], _VersionAuc] = {}
        self.watermark: dict[str, float] = {}

    def _state_for(self, model: str, version: str) -> _VersionAuc:
        s = self.by_version.get((model, version))
        if s is None:
            s = self.by_version[(model, version)] = _VersionAuc(
                self.windows, len(self.models[model]), self.layout.width)
        return s

    def on_joined(self, batch: JoinedBatch) -> None:
        """Labels joined to their predictions (`LabelMonitor.batch_listeners`)."""
        scored = _scored(batch.events)
        if not scored:
            return
        s = self._state_for(batch.model, batch.version)
        inc = increments(self.layout, batch.events, batch.true)
        at = batch.at
        first, last = float(at[scored].min()), float(at[scored].max())
        for ring in s.rings:
            width = ring.spec.slice_seconds
            if math.floor(first / width) == math.floor(last / width):  # the usual case
                ring.add(math.floor(first / width), len(scored), inc.cls, inc.col)
                continue
            slice_of = np.floor(at / width).astype(np.int64)
            scored_slices = slice_of[scored]
            for slice_id in np.unique(scored_slices).tolist():
                m = slice_of[inc.event] == slice_id
                ring.add(slice_id, int((scored_slices == slice_id).sum()), inc.cls[m], inc.col[m])
        self.watermark[batch.model] = max(self.watermark.get(batch.model, -math.inf), last)

    def state_bytes(self) -> int:
        """Memory of the score bins held, in bytes (benchmarks, check-config)."""
        return sum(r.nbytes for s in self.by_version.values() for r in s.rings)

    def capture(self) -> AucCapture:
        return AucCapture(self.layout, tuple(
            (m, v, self.models[m],
             {r.spec.name: r.total(self.watermark.get(m, 0.0)) for r in s.rings})
            for (m, v), s in self.by_version.items()))

    def state(self) -> Any:
        return {"bins": self.layout.bins, "watermark": self.watermark,
                "versions": [[m, v, [r.state() for r in s.rings]]
                             for (m, v), s in self.by_version.items()]}

    def restore(self, state: Any) -> None:
        if int(state["bins"]) != self.layout.bins:
            return  # auc.score_bins changed: the old bins do not add up with the new ones
        self.watermark.update({m: float(t) for m, t in state["watermark"].items()
                               if m in self.models})
        for m, v, rings in state["versions"]:
            if m not in self.models:
                continue
            for ring, ring_state in zip(self._state_for(m, v).rings, rings, strict=True):
                ring.restore(ring_state)


@dataclass(frozen=True, slots=True)
class AucCapture:
    """Per (model, version), each window's per-class totals, copied under the lock."""

    layout: _Layout
    versions: tuple[tuple[str, str, tuple[str, ...], Mapping[str, ClassTotals]], ...]

    def render(self, b: SnapshotBuilder) -> None:
        for model, version, classes, windows in self.versions:
            for window, totals in windows.items():
                if not totals.classes.size:
                    continue
                pos, neg = self.layout.split(totals)
                for per_class, macro, values in _figures(pos, neg):
                    defined = ~np.isnan(values)
                    if not defined.any():
                        continue
                    for c, v in zip(totals.classes[defined].tolist(),
                                    values[defined].tolist(), strict=True):
                        b.set(per_class, (model, version, classes[c], window), v)
                    b.set(macro, (model, version, window), float(values[defined].mean()))


def _figures(pos: np.ndarray, neg: np.ndarray) -> tuple[tuple[str, str, np.ndarray], ...]:
    """(per-class metric, macro metric, per-class values) of both figures."""
    return (("visionmon_class_roc_auc", "visionmon_roc_auc_macro", roc_auc_from_bins(pos, neg)),
            ("visionmon_class_pr_auc", "visionmon_pr_auc_macro",
             average_precision_from_bins(pos, neg)))
