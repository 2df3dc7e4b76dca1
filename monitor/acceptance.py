"""False accepts (the guide's M15): labelled predictions by acceptance decision and outcome.

A model's acceptance rule (`models[].accept`) says a prediction is *accepted* when its
confidence is at least the threshold, else *routed* to human review. A *false accept* is
an accepted prediction of a negative class whose label is another class (a defect let
through as `ok`); without negative classes, any accepted prediction whose label differs.
Other errors are `incorrect`. Counters are kept per (decision, outcome, predicted class,
true class) that occurred, so a 1,000-class model pays for the pairs it shows, up to
`max_pairs` per version: beyond it a new pair's true class is counted as `_other`. The
window figure is `visionmon_false_accept_ratio` = false accepts / labelled predictions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.engine import OTHER, EngineExtension
from monitor.labels import JoinedBatch
from monitor.snapshot import SnapshotBuilder
from monitor.windows import WindowedCounts, WindowSpec

DECISIONS = ("accepted", "routed")
OUTCOMES = ("correct", "false_accept", "incorrect")
_ACCEPTED, _ROUTED = 0, 1
_CORRECT, _FALSE_ACCEPT, _INCORRECT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class AcceptanceRule:
    """A model's threshold (in (0, 1]) and negative classes as indices (empty: any class)."""

    threshold: float
    negative_classes: tuple[int, ...] = ()


class _Layout:
    """Bins of the window count vector: labelled predictions, accepted, false accepts."""

    labeled = 0
    accepted = 1
    false_accept = 2
    size = 3


def outcomes(rule: AcceptanceRule, n_classes: int, pred: np.ndarray, true: np.ndarray,
             confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(decision, outcome) codes of labelled predictions under `rule`: accepted (0) when the
    confidence is at least the threshold (a NaN confidence is routed, 1); correct (0), false
    accept (1, accepted, wrong, predicted a negative class) or incorrect (2)."""
    accepted = confidence >= rule.threshold
    wrong = pred != true
    if rule.negative_classes:
        negative = np.zeros(n_classes, dtype=bool)
        negative[list(rule.negative_classes)] = True
        lets_through = negative[pred]
    else:
        lets_through = np.ones(pred.size, dtype=bool)
    outcome = np.where(wrong, _INCORRECT, _CORRECT)
    outcome[accepted & wrong & lets_through] = _FALSE_ACCEPT
    return np.where(accepted, _ACCEPTED, _ROUTED), outcome


class _VersionAcceptance:
    """Cumulative pair counters and the windows of one (model, version)."""

    def __init__(self, windows: tuple[WindowSpec, ...]) -> None:
        #: (decision, outcome, predicted, true) -> labelled predictions; true -1 is `_other`
        self.pairs: dict[tuple[int, int, int, int], int] = {}
        self.windows = WindowedCounts(windows, _Layout.size)


class AcceptanceMonitor(EngineExtension):
    """Counts labelled predictions by acceptance decision and outcome (module docstring)."""

    name = "acceptance"

    def __init__(self, models: Mapping[str, Sequence[str]],
                 rules: Mapping[str, AcceptanceRule], windows: tuple[WindowSpec, ...],
                 max_pairs: int) -> None:
        self.models = {m: tuple(c) for m, c in models.items() if m in rules}
        self.rules = dict(rules)
        self.windows = windows
        self.max_pairs = max_pairs
        self.by_version: dict[tuple[str, str], _VersionAcceptance] = {}
        self.watermark: dict[str, float] = {}

    def _state_for(self, model: str, version: str) -> _VersionAcceptance:
        s = self.by_version.get((model, version))
        if s is None:
            s = self.by_version[(model, version)] = _VersionAcceptance(self.windows)
        return s

    def on_joined(self, batch: JoinedBatch) -> None:
        """Labels joined to their predictions (`LabelMonitor.batch_listeners`)."""
        rule = self.rules.get(batch.model)
        if rule is None:
            return
        s = self._state_for(batch.model, batch.version)
        decision, outcome = outcomes(rule, len(self.models[batch.model]), batch.pred,
                                     batch.true, batch.confidence)
        pairs = s.pairs
        keys = zip(decision.tolist(), outcome.tolist(), batch.pred.tolist(),
                   batch.true.tolist(), strict=True)
        for (d, o, p, t), n in Counter(keys).items():
            if (d, o, p, t) not in pairs and len(pairs) >= self.max_pairs and p != t:
                t = -1
            pairs[(d, o, p, t)] = pairs.get((d, o, p, t), 0) + n
        at = batch.at
        accepted, fa = decision == _ACCEPTED, outcome == _FALSE_ACCEPT
        n_acc, n_fa = int(accepted.sum()), int(fa.sum())
        s.windows.add(np.concatenate([at, at[accepted], at[fa]]),
                      np.repeat([_Layout.labeled, _Layout.accepted, _Layout.false_accept],
                                [at.size, n_acc, n_fa]),
                      counts=np.array([at.size, n_acc, n_fa], dtype=np.float64))
        self.watermark[batch.model] = max(self.watermark.get(batch.model, -math.inf),
                                          float(at.max()))

    def capture(self) -> AcceptanceCapture:
        return AcceptanceCapture(tuple(
            VersionAcceptanceCounts(m, v, self.models[m], dict(s.pairs),
                                    s.windows.totals(self.watermark.get(m, 0.0)))
            for (m, v), s in self.by_version.items()))

    def state(self) -> Any:
        return {"watermark": self.watermark,
                "versions": [[m, v, [[*k, n] for k, n in s.pairs.items()], s.windows.state()]
                             for (m, v), s in self.by_version.items()]}

    def restore(self, state: Any) -> None:
        self.watermark.update({m: float(t) for m, t in state["watermark"].items()
                               if m in self.models})
        for m, v, pairs, rings in state["versions"]:
            if m not in self.models:
                continue
            s = self._state_for(m, v)
            s.pairs = {(int(d), int(o), int(p), int(t)): int(n) for d, o, p, t, n in pairs}
            s.windows.restore([{k: np.asarray(x) for k, x in r.items()} for r in rings])


@dataclass(frozen=True, slots=True)
class VersionAcceptanceCounts:
    """One (model, version)'s pair counters and window totals, copied for a snapshot."""

    model: str
    version: str
    classes: tuple[str, ...]
    pairs: Mapping[tuple[int, int, int, int], int]
    windows: Mapping[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class AcceptanceCapture:
    """What the acceptance series need, copied under the ingestion lock."""

    versions: tuple[VersionAcceptanceCounts, ...]

    def render(self, b: SnapshotBuilder) -> None:
        for s in self.versions:
            mv = (s.model, s.version)
            for (d, o, p, t), n in s.pairs.items():
                b.set("visionmon_acceptance_decisions_total",
                      (*mv, DECISIONS[d], OUTCOMES[o], s.classes[p],
                       OTHER if t < 0 else s.classes[t]), float(n))
            for window, v in s.windows.items():
                if v[_Layout.labeled]:
                    b.set("visionmon_false_accept_ratio", (*mv, window),
                          float(v[_Layout.false_accept] / v[_Layout.labeled]))
