"""Immutable metric snapshots: what the exporters read on every scrape.

A snapshot maps a catalog metric name to its series: label values (in the catalog's
label order) -> a float, or a `HistogramValue` for histograms. Info metrics hold 1.0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from monitor.catalog import CATALOG


@dataclass(frozen=True, slots=True)
class HistogramValue:
    """Per-bucket counts (non-cumulative; the last entry is the +Inf bucket) and the sum."""

    counts: tuple[float, ...]
    sum: float

    @property
    def count(self) -> float:
        return float(sum(self.counts))


Series = dict[tuple[str, ...], float | HistogramValue]
Snapshot = Mapping[str, Series]


class SnapshotBuilder:
    """Collects series for a snapshot, checking names and label arity against the catalog."""

    def __init__(self) -> None:
        self._data: dict[str, Series] = {}

    def set(self, name: str, labels: tuple[str, ...], value: float | HistogramValue) -> None:
        spec = CATALOG[name]
        if len(labels) != len(spec.labels):
            raise ValueError(f"{name} takes labels {spec.labels}, got {labels}")
        self._data.setdefault(name, {})[labels] = value

    def counts(self, name: str, prefix: tuple[str, ...], names: Iterable[str],
               values: np.ndarray, skip_zero: bool = False) -> None:
        """One series per entry of a count vector, the last label taken from `names`."""
        for label, v in zip(names, values.tolist(), strict=True):
            if skip_zero and v == 0:
                continue
            self.set(name, (*prefix, label), float(v))

    def merge(self, other: Snapshot) -> None:
        for name, series in other.items():
            self._data.setdefault(name, {}).update(series)

    def build(self) -> dict[str, Series]:
        return self._data


def histogram_value(counts: np.ndarray, total: float) -> HistogramValue:
    return HistogramValue(tuple(float(c) for c in counts.tolist()), float(total))
