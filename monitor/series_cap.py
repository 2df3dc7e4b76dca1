"""The cap on label sets per metric (`limits.max_series_per_metric`), applied to snapshots.

Over the cap, one label of the metric (the one with the most distinct values when the cap
was first reached) keeps the values admitted first (in the order a snapshot lists them) and
folds the others into `_other`: summed for counters and histograms, so totals stay right,
and left out for gauges, whose ratios and p-values mean nothing summed. An admitted value
stays admitted, so a series never moves into `_other` once it has been exported (counters
never go back). How many label sets were folded or left out is exported per metric in
`visionmon_series_capped`. A metric whose other labels alone make more label sets than
the cap stays over it (one `_other` per combination of them).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from monitor.catalog import CATALOG, Catalog, MetricSpec
from monitor.engine import OTHER  # excess values fold into the version limiter's value
from monitor.snapshot import HistogramValue, Series

CAPPED = "visionmon_series_capped"


@dataclass(slots=True)
class _Fold:
    """The label a capped metric folds, and its values admitted so far (in order)."""

    label: int
    admitted: dict[str, None] = field(default_factory=dict)


def _add(a: float | HistogramValue, b: float | HistogramValue) -> float | HistogramValue:
    if isinstance(a, HistogramValue) and isinstance(b, HistogramValue):
        return HistogramValue(tuple(x + y for x, y in zip(a.counts, b.counts, strict=True)),
                              a.sum + b.sum)
    assert not isinstance(a, HistogramValue) and not isinstance(b, HistogramValue)
    return a + b


def _most_values(series: Series, n_labels: int) -> int:
    """Index of the label with the most distinct values (the last one on a tie)."""
    distinct = [len({key[i] for key in series}) for i in range(n_labels)]
    return max(range(n_labels), key=lambda i: (distinct[i], i))


class SeriesCap:
    """Keeps each metric of a snapshot within `limit` label sets (see the module's doc).
    Thread-safe: concurrent scrapes share the admitted values."""

    def __init__(self, limit: int, catalog: Catalog = CATALOG) -> None:
        self.limit = limit
        self._catalog = catalog
        self._folds: dict[str, _Fold] = {}
        self._lock = threading.Lock()

    def apply(self, snapshot: Mapping[str, Series]) -> dict[str, Series]:
        """The snapshot with every metric over the cap folded, plus `visionmon_series_capped`
        for each metric that was."""
        out: dict[str, Series] = {}
        capped: Series = {}
        with self._lock:
            for name, series in snapshot.items():
                spec = self._catalog[name]
                if spec.kind == "info" or not spec.labels or (
                        len(series) <= self.limit and name not in self._folds):
                    out[name] = series
                    continue
                out[name], left_out = self._fold(spec, series)
                capped[(name,)] = float(left_out)
        if capped:
            out[CAPPED] = {**out.get(CAPPED, {}), **capped}
        return out

    def _fold(self, spec: MetricSpec, series: Series) -> tuple[Series, int]:
        """`series` within the cap, and how many label sets were folded or left out."""
        fold = self._folds.get(spec.name)
        if fold is None:
            fold = self._folds[spec.name] = _Fold(_most_values(series, len(spec.labels)))
        i = fold.label
        rest = {key[:i] + key[i + 1:] for key in series}
        room = max(0, self.limit // len(rest) - 1)  # and one `_other` per rest
        for value in dict.fromkeys(key[i] for key in series):   # in the snapshot's order
            if len(fold.admitted) >= room:
                break
            if value != OTHER:
                fold.admitted.setdefault(value, None)
        # an admitted value stays admitted (its series never moves into `_other`, which
        # would break a counter), even when more combinations of the other labels shrink
        # the room: the metric then goes over the cap until they leave
        kept = set(fold.admitted)
        out: Series = {}
        left_out = 0
        sums = spec.kind in ("counter", "histogram")
        for key, v in series.items():
            if key[i] in kept or (key[i] == OTHER and not sums):
                out[key] = v
                continue
            if key[i] != OTHER:
                left_out += 1
                if not sums:
                    continue
            other = (*key[:i], OTHER, *key[i + 1:])
            out[other] = v if other not in out else _add(out[other], v)
        return out, left_out
