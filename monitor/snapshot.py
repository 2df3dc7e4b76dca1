"""Immutable metric snapshots: what the exporters read on every scrape.

A snapshot maps a catalog metric name to its series: label values (in the catalog's
label order) -> a float, or a `HistogramValue` for histograms. Info metrics hold 1.0.

A snapshot is made in two steps so that a scrape never stalls ingestion: under the
ingestion lock each statistics block copies what its series need (`Captured`: counts and
window totals, cheap), and outside it the copy is rendered into series (the statistics).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

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


class Captured(Protocol):
    """What a statistics block copied under the ingestion lock. It shares nothing that
    ingestion changes, so `render` (where the statistics are computed) needs no lock."""

    def render(self, b: SnapshotBuilder) -> None: ...


@dataclass(frozen=True, slots=True)
class NoSeries:
    """The capture of a block without series."""

    def render(self, b: SnapshotBuilder) -> None:
        """Adds nothing."""


class _JoinStore(Protocol):
    name: str
    evicted: dict[str, int]

    def __len__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class JoinStoreCounts:
    """A join store's waiting entries and evictions by reason, copied under the lock."""

    name: str
    pending: int
    evicted: tuple[tuple[str, int], ...]

    def render(self, b: SnapshotBuilder) -> None:
        b.set("visionmon_pending_joins", (self.name,), float(self.pending))
        for reason, n in self.evicted:
            b.set("visionmon_join_evicted_total", (self.name, reason), float(n))


def join_store_counts(store: _JoinStore) -> JoinStoreCounts:
    """Copy a join store's counts (under the lock)."""
    return JoinStoreCounts(store.name, len(store), tuple(store.evicted.items()))
