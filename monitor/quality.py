"""Time-slice quality SLIs: at the close of every evaluation slice (event time), each
quality objective is judged good or bad, feeding `visionmon_eval_windows_total` and
`visionmon_eval_windows_good_total` (see docs/alerts.md for the SLO built on them).

Objectives: `accuracy` (realized accuracy >= bound), `ece` (calibration error <= bound),
`shadow_agreement` (agreement with the reference model >= bound), each needing a minimum
number of events in the slice to count at all, and `drift` (no feature's PSI above its
threshold in the smallest window at the slice's close).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.catalog import CALIBRATION_BINS
from monitor.engine import EngineExtension, EventGroup
from monitor.events import PredictionEvent
from monitor.snapshot import SnapshotBuilder
from monitor.stats import calibration_bin_index, ece_from_bins

OBJECTIVES = ("accuracy", "ece", "shadow_agreement", "drift")


@dataclass(frozen=True, slots=True)
class QualityBounds:
    slice_seconds: int
    min_events: int
    min_accuracy: float
    max_ece: float
    min_shadow_agreement: float
    #: joined images a slice needs before its shadow agreement is judged
    min_shadow_images: int = 100


@dataclass(slots=True)
class _Slice:
    """Accumulators of the open slice of one (model, version)."""

    sid: int
    labeled: int = 0
    correct: int = 0
    cal: np.ndarray = field(default_factory=lambda: np.zeros((3, CALIBRATION_BINS)))
    scored: int = 0
    agree: int = 0


@dataclass(frozen=True, slots=True)
class QualityCounts:
    """Judged slices per (model, version, objective) and the good ones, copied for a
    snapshot."""

    total: Mapping[tuple[str, str, str], int]
    good: Mapping[tuple[str, str, str], int]

    def render(self, b: SnapshotBuilder) -> None:
        for key, n in self.total.items():
            b.set("visionmon_eval_windows_total", key, float(n))
            b.set("visionmon_eval_windows_good_total", key, float(self.good.get(key, 0)))


def judge(s: _Slice, bounds: QualityBounds, drifting: bool | None) -> dict[str, bool]:
    """Verdicts of one closed slice; an objective without enough data is not judged."""
    out: dict[str, bool] = {}
    if s.labeled >= bounds.min_events:
        out["accuracy"] = s.correct / s.labeled >= bounds.min_accuracy
        ece = ece_from_bins(s.cal[0], s.cal[1], s.cal[2])
        out["ece"] = bool(ece <= bounds.max_ece)
    if s.scored >= bounds.min_shadow_images:
        out["shadow_agreement"] = s.agree / s.scored >= bounds.min_shadow_agreement
    if drifting is not None:
        out["drift"] = not drifting
    return out


class QualityEvaluator(EngineExtension):
    """Closes evaluation slices as event time advances and counts good/total per objective.

    A slice closes once the newest event time seen passes its end by one more slice (the
    allowed lateness), so events a little out of order still land in their own slice;
    events for a slice already closed are counted in `late` and not judged."""
    name = "quality"

    def __init__(self, bounds: QualityBounds,
                 drifting: Callable[[str, str], bool | None] | None = None) -> None:
        self.bounds = bounds
        self.drifting = drifting or (lambda _m, _v: None)
        self.open: dict[tuple[str, str, int], _Slice] = {}
        self.closed_upto: dict[tuple[str, str], int] = {}
        self.total: dict[tuple[str, str, str], int] = {}
        self.good: dict[tuple[str, str, str], int] = {}
        self.late = 0

    def _slice(self, model: str, version: str, ts: float) -> _Slice | None:
        sid = math.floor(ts / self.bounds.slice_seconds)
        if sid < self.closed_upto.get((model, version), -1):
            self.late += 1
            return None
        s = self.open.get((model, version, sid))
        if s is None:
            s = self.open[(model, version, sid)] = _Slice(sid)
        return s

    def advance(self, model: str, version: str, watermark: float) -> None:
        """Close every open slice of (model, version) that ended over a slice ago."""
        upto = math.floor(watermark / self.bounds.slice_seconds) - 1
        if upto <= self.closed_upto.get((model, version), -1):
            return
        self.closed_upto[(model, version)] = upto
        for key in sorted(k for k in self.open if k[:2] == (model, version) and k[2] < upto):
            self._close(model, version, self.open.pop(key))

    def _close(self, model: str, version: str, s: _Slice) -> None:
        for objective, ok in judge(s, self.bounds, self.drifting(model, version)).items():
            key = (model, version, objective)
            self.total[key] = self.total.get(key, 0) + 1
            self.good[key] = self.good.get(key, 0) + int(ok)

    def on_predictions(self, groups: Mapping[tuple[str, str], EventGroup]) -> None:
        for (model, version), evs in groups.items():
            self.advance(model, version, float(evs.column("ts").max()))

    def on_label(self, model: str, version: str, pred: PredictionEvent, label: int,
                 ts: float) -> None:
        s = self._slice(model, version, max(ts, pred.ts))
        if s is None:
            return
        s.labeled += 1
        correct = pred.pred == label
        s.correct += int(correct)
        if math.isfinite(pred.confidence):
            k = int(calibration_bin_index(np.array([pred.confidence]))[0])
            s.cal[0, k] += 1
            s.cal[1, k] += pred.confidence
            s.cal[2, k] += float(correct)

    def on_shadow(self, model: str, version: str, ts: float, agree: bool) -> None:
        s = self._slice(model, version, ts)
        if s is None:
            return
        s.scored += 1
        s.agree += int(agree)

    def capture(self) -> QualityCounts:
        return QualityCounts(dict(self.total), dict(self.good))

    def state(self) -> Any:
        return {"open": [[m, v, s.sid, s.labeled, s.correct, s.cal.tolist(), s.scored, s.agree]
                         for (m, v, _), s in self.open.items()],
                "closed_upto": [[m, v, n] for (m, v), n in self.closed_upto.items()],
                "late": self.late,
                "total": [[*k, n] for k, n in self.total.items()],
                "good": [[*k, n] for k, n in self.good.items()]}

    def restore(self, state: Any) -> None:
        for m, v, sid, labeled, correct, cal, scored, agree in state["open"]:
            self.open[(m, v, int(sid))] = _Slice(int(sid), int(labeled), int(correct),
                                                 np.asarray(cal), int(scored), int(agree))
        for m, v, n in state.get("closed_upto", []):
            self.closed_upto[(m, v)] = int(n)
        self.late = int(state.get("late", 0))
        for m, v, o, n in state["total"]:
            self.total[(m, v, o)] = int(n)
        for m, v, o, n in state["good"]:
            self.good[(m, v, o)] = int(n)
