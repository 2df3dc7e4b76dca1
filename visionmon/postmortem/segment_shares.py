"""Which segment values explain an incident: pure functions over the report's points of
the `visionmon_segment_*` gauges of one window.

Accuracy: per segment key, the values partition the labelled predictions, so the drop of
the key's accuracy from the first moment with labels (reference accuracy `a_ref`) to its
worst moment splits exactly into one term per value, `n_v / N * (a_ref - a_v)`: a value's
share is its term over the drop (shares sum to 1; a value better than the reference has
a negative share). Drift: at the moment the key's excess drift peaks, a value's excess is
its events times its PSI above the critical value, summed over features; its share is its
excess over the key's.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

LabelSet = tuple[tuple[str, str], ...]
Points = list[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class SegmentShare:
    """One value's part of an incident on one key: its share (of the drop, or of the
    excess drift), its events at that moment and a figure that shows why."""

    key: str
    value: str
    share: float
    events: float
    figure: float


@dataclass(frozen=True, slots=True)
class KeyIncident:
    """One key's ranking: from `t_ref` (accuracy only) to the worst moment `t`, the
    key's whole drop or excess (`total`), and its values, largest share first."""

    key: str
    t_ref: float
    t: float
    total: float
    shares: tuple[SegmentShare, ...]


def _get(labels: LabelSet, name: str) -> str:
    return next((v for k, v in labels if k == name), "")


def _by_value_and_time(points: Mapping[LabelSet, Points], window: str,
                       ) -> dict[str, dict[str, dict[float, list[tuple[LabelSet, float]]]]]:
    """key -> value -> time -> [(labels, sample)] of the series of `window`."""
    out: dict[str, dict[str, dict[float, list[tuple[LabelSet, float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for labels, pts in points.items():
        if _get(labels, "window") != window:
            continue
        key, value = _get(labels, "segment_key"), _get(labels, "segment")
        for t, v in pts:
            out[key][value][t].append((labels, v))
    return out


def accuracy_drop(accuracy: Mapping[LabelSet, Points], labelled: Mapping[LabelSet, Points],
                  window: str) -> list[KeyIncident]:
    """Per key, the values ranked by their share of the accuracy drop (module docstring);
    a key whose accuracy never fell below its reference is left out."""
    n_of = {(labels, t): v for labels, pts in labelled.items() for t, v in pts}
    out = []
    for key, values in _by_value_and_time(accuracy, window).items():
        # time -> value -> (labelled, correct), versions summed
        counts: dict[float, dict[str, list[float]]] = defaultdict(
            lambda: defaultdict(lambda: [0.0, 0.0]))
        for value, times in values.items():
            for t, samples in times.items():
                for labels, acc in samples:
                    n = n_of.get((labels, t), 0.0)
                    if n > 0 and math.isfinite(acc):
                        counts[t][value][0] += n
                        counts[t][value][1] += n * acc
        acc_at = {t: sum(c[1] for c in cells.values()) / n for t, cells in counts.items()
                  if (n := sum(c[0] for c in cells.values())) > 0}
        if not acc_at:
            continue
        t_ref = min(acc_at)
        a_ref = acc_at[t_ref]
        t_worst = min(acc_at, key=lambda t: (acc_at[t], t))
        drop = a_ref - acc_at[t_worst]
        if drop <= 0:
            continue
        total_n = sum(c[0] for c in counts[t_worst].values())
        shares = [SegmentShare(key, value, (n / total_n) * (a_ref - c / n) / drop, n, c / n)
                  for value, (n, c) in counts[t_worst].items()]
        out.append(KeyIncident(key, t_ref, t_worst, drop,
                               tuple(sorted(shares, key=lambda s: -s.share))))
    return out


def drift_excess(psi: Mapping[LabelSet, Points], threshold: Mapping[LabelSet, Points],
                 events: Mapping[LabelSet, Points], window: str) -> list[KeyIncident]:
    """Per key, the values ranked by their share of the excess drift at its peak (module
    docstring); a key none of whose values crossed its critical value is left out."""
    th_of = {(labels, t): v for labels, pts in threshold.items() for t, v in pts}
    n_of = {(labels, t): v for labels, pts in events.items() for t, v in pts}
    out = []
    for key, values in _by_value_and_time(psi, window).items():
        # time -> value -> [excess, events, worst PSI / critical]
        excess: dict[float, dict[str, list[float]]] = defaultdict(
            lambda: defaultdict(lambda: [0.0, 0.0, 0.0]))
        for value, times in values.items():
            for t, samples in times.items():
                for labels, p in samples:
                    th = th_of.get((labels, t), math.nan)
                    n = n_of.get((labels, t), 0.0)
                    if not (math.isfinite(p) and math.isfinite(th) and th > 0):
                        continue
                    cell = excess[t][value]
                    cell[0] += n * max(p - th, 0.0)
                    cell[1] = max(cell[1], n)
                    cell[2] = max(cell[2], p / th)
        totals = {t: sum(c[0] for c in cells.values()) for t, cells in excess.items()}
        if not totals or max(totals.values()) <= 0:
            continue
        t_peak = max(totals, key=lambda t: (totals[t], -t))
        shares = [SegmentShare(key, value, e / totals[t_peak], n, ratio)
                  for value, (e, n, ratio) in excess[t_peak].items()]
        out.append(KeyIncident(key, t_peak, t_peak, totals[t_peak],
                               tuple(sorted(shares, key=lambda s: -s.share))))
    return out
