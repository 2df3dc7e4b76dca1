"""Sparse per-class windows in event time: rings of slices that hold a row of counts only
for the classes that occurred in the slice.

A dense window of C classes x W counts costs C x W per slice whatever the traffic; here a
slice costs W counts per class seen in it (plus a class -> row index of C int32), so a
1,000-class model whose labels fall on 30 classes in a slice pays for 30 rows. Slices are
numbered and claimed as in `monitor.windows.SliceRing`; a claimed slice starts empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.windows import WindowSpec

_FIRST_ROWS = 16


class _Slice:
    """One slice: `rows` rows of `width` counts, row r for class `classes[r]`."""

    __slots__ = ("classes", "counts", "events", "id", "row_of", "rows")

    def __init__(self, n_classes: int, width: int) -> None:
        self.id = -1
        self.events = 0
        self.rows = 0
        self.row_of = np.full(n_classes, -1, dtype=np.int32)
        self.classes = np.empty(0, dtype=np.int64)
        self.counts = np.empty((0, width), dtype=np.int64)

    def claim(self, slice_id: int) -> None:
        """Start this slot afresh as slice `slice_id` (its rows are freed)."""
        self.id = slice_id
        self.events = 0
        self.rows = 0
        self.row_of.fill(-1)
        self.classes = np.empty(0, dtype=np.int64)
        self.counts = np.empty((0, self.counts.shape[1]), dtype=np.int64)

    def add(self, events: int, cls: np.ndarray, col: np.ndarray) -> None:
        """`events` more events; one count at (class, column) for each pair given."""
        self.events += events
        if not cls.size:
            return
        rows = self.row_of[cls]
        new = np.unique(cls[rows < 0])
        if new.size:
            self._grow(self.rows + new.size)
            self.row_of[new] = np.arange(self.rows, self.rows + new.size, dtype=np.int32)
            self.classes[self.rows:self.rows + new.size] = new
            self.rows += new.size
            rows = self.row_of[cls]
        np.add.at(self.counts, (rows, col), 1)

    def load(self, slice_id: int, events: int, classes: np.ndarray, counts: np.ndarray
             ) -> None:
        """Become slice `slice_id` holding these rows (a checkpoint's)."""
        self.claim(slice_id)
        self.events = events
        self._grow(classes.size)
        self.rows = classes.size
        self.classes[:self.rows] = classes
        self.counts[:self.rows] = counts
        self.row_of[classes] = np.arange(self.rows, dtype=np.int32)

    def _grow(self, need: int) -> None:
        have = self.counts.shape[0]
        if need <= have:
            return
        size = min(max(need, 2 * have, _FIRST_ROWS), self.row_of.size)
        counts = np.zeros((size, self.counts.shape[1]), dtype=np.int64)
        counts[:self.rows] = self.counts[:self.rows]
        classes = np.zeros(size, dtype=np.int64)
        classes[:self.rows] = self.classes[:self.rows]
        self.counts, self.classes = counts, classes

    @property
    def nbytes(self) -> int:
        return self.row_of.nbytes + self.classes.nbytes + self.counts.nbytes


@dataclass(frozen=True, slots=True)
class ClassTotals:
    """A window's counts: events, and one row of counts per class that occurred."""

    events: int
    classes: np.ndarray
    counts: np.ndarray


class SparseClassRing:
    """One window of per-class count rows (`width` counts per class)."""

    __slots__ = ("_slices", "spec", "width")

    def __init__(self, spec: WindowSpec, n_classes: int, width: int) -> None:
        self.spec = spec
        self.width = width
        self._slices = [_Slice(n_classes, width) for _ in range(spec.slices)]

    def add(self, slice_id: int, events: int, cls: np.ndarray, col: np.ndarray) -> None:
        """Add a batch whose events all fall in slice `slice_id`; a slice older than the
        ring's span, or than the slice its slot now holds, is dropped."""
        newest = max(s.id for s in self._slices)
        if slice_id <= newest - self.spec.slices:
            return
        slot = self._slices[slice_id % self.spec.slices]
        if slice_id < slot.id:
            return
        if slice_id > slot.id:
            slot.claim(slice_id)
        slot.add(events, cls, col)

    def total(self, now_ts: float) -> ClassTotals:
        """The counts of the slices inside (now - W, now], summed per class."""
        newest = math.floor(now_ts / self.spec.slice_seconds)
        live = [s for s in self._slices
                if newest - self.spec.slices < s.id <= newest and s.id >= 0]
        events = sum(s.events for s in live)
        if not live:
            return ClassTotals(0, np.empty(0, np.int64), np.empty((0, self.width), np.int64))
        if len(live) == 1:  # a copy of the one slice's rows
            s = live[0]
            return ClassTotals(events, s.classes[:s.rows].copy(), s.counts[:s.rows].copy())
        classes = np.unique(np.concatenate([s.classes[:s.rows] for s in live]))
        counts = np.zeros((classes.size, self.width), dtype=np.int64)
        for s in live:  # a class has one row per slice: a plain indexed add
            counts[np.searchsorted(classes, s.classes[:s.rows])] += s.counts[:s.rows]
        return ClassTotals(events, classes, counts)

    @property
    def nbytes(self) -> int:
        """Memory of the counts held, in bytes."""
        return sum(s.nbytes for s in self._slices)

    def usage(self) -> list[tuple[int, int]]:
        """(classes with a row, bytes) of each slice in use (benchmarks)."""
        return [(s.rows, s.nbytes) for s in self._slices if s.id >= 0]

    def state(self) -> list[list[Any]]:
        return [[s.id, s.events, s.classes[:s.rows].tolist(), s.counts[:s.rows].tolist()]
                for s in self._slices]

    def restore(self, state: list[list[Any]]) -> None:
        if len(state) != len(self._slices):
            raise ValueError("checkpointed AUC window has a different number of slices; "
                             "auc.slices changed?")
        for s, (slice_id, events, classes, counts) in zip(self._slices, state, strict=True):
            rows = np.asarray(counts, dtype=np.int64).reshape(len(classes), -1) if classes \
                else np.empty((0, self.width), np.int64)
            if rows.shape[1] != self.width:
                raise ValueError("checkpointed AUC window has a different number of score "
                                 "bins; auc.score_bins changed?")
            s.load(int(slice_id), int(events), np.asarray(classes, dtype=np.int64), rows)
