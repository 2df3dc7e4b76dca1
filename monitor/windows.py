"""Bounded sliding windows in event time: rings of per-slice count vectors.

A window of W seconds is a ring of S slices of W/S seconds each; each slice holds a
count vector of B bins. Memory is S x B floats per window, whatever the traffic. The
window's right edge is the newest event time seen (the watermark), so replaying a
stream gives the same values as watching it live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A window `seconds` long, kept as `slices` slices (granularity seconds/slices)."""

    name: str
    seconds: int
    slices: int

    @property
    def slice_seconds(self) -> float:
        return self.seconds / self.slices


class SliceRing:
    """Per-slice count vectors for one window. Slices are numbered floor(ts / slice_seconds);
    slot = number mod S. A slot is cleared when a newer slice number claims it."""

    __slots__ = ("_counts", "_ids", "bins", "spec")

    def __init__(self, spec: WindowSpec, bins: int) -> None:
        self.spec = spec
        self.bins = bins
        self._counts = np.zeros((spec.slices, bins), dtype=np.float64)
        self._ids = np.full(spec.slices, -1, dtype=np.int64)

    def add(self, ts: np.ndarray, bins: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add events at event times `ts` (s) into bin indices `bins` (vectorised).
        Events older than the ring's span relative to its newest slice are ignored."""
        if ts.size == 0:
            return
        ids = np.floor(ts / self.spec.slice_seconds).astype(np.int64)
        newest = max(int(ids.max()), int(self._ids.max()))
        keep = ids > newest - self.spec.slices
        if not keep.all():
            ids, bins = ids[keep], bins[keep]
            weights = None if weights is None else weights[keep]
            if ids.size == 0:
                return
        slots = ids % self.spec.slices
        # claim slots for newer slice ids (clear stale content first)
        slot_max = np.full(self.spec.slices, -1, dtype=np.int64)
        np.maximum.at(slot_max, slots, ids)
        newer = slot_max > self._ids
        if newer.any():
            self._counts[newer] = 0.0
            self._ids[newer] = slot_max[newer]
        # events whose slot now belongs to a newer slice id are too old for it
        valid = self._ids[slots] == ids
        if not valid.all():
            slots, bins = slots[valid], bins[valid]
            weights = None if weights is None else weights[valid]
        touched = np.unique(slots)
        if touched.size == 1:  # the usual case: a batch within one slice
            self._counts[touched[0]] += np.bincount(bins, weights=weights, minlength=self.bins)
        else:
            for slot in touched.tolist():
                m = slots == slot
                self._counts[slot] += np.bincount(
                    bins[m], weights=None if weights is None else weights[m],
                    minlength=self.bins)

    def add_to_slice(self, slice_id: int, counts: np.ndarray) -> None:
        """Add a count vector of B bins to slice number `slice_id`: a batch whose events
        all fall in one slice (the usual case) in O(B), with `add`'s rules for old events."""
        row = self._slice_row(slice_id)
        if row is not None:
            row += counts

    def add_events_to_slice(self, slice_id: int, bins: np.ndarray,
                            weights: np.ndarray | None = None) -> None:
        """`add_to_slice` for a batch of far fewer events than bins: each event's bin (and
        weight) added in O(events) rather than a count vector of B bins."""
        row = self._slice_row(slice_id)
        if row is not None:
            np.add.at(row, bins, 1.0 if weights is None else weights)

    def _slice_row(self, slice_id: int) -> np.ndarray | None:
        """The counts of slice `slice_id`, its slot claimed (stale content cleared); None
        when the slice is older than the ring's span."""
        slices = self.spec.slices
        if slice_id <= int(self._ids.max()) - slices:
            return None  # older than the ring's span
        slot = slice_id % slices
        # a slot never holds a newer slice than this one here: that slice would be at
        # least `slices` newer, and this one would have been refused above
        if slice_id > int(self._ids[slot]):  # claim the slot: clear the stale slice
            self._counts[slot] = 0.0
            self._ids[slot] = slice_id
        return self._counts[slot]

    def total(self, now_ts: float) -> np.ndarray:
        """Sum over the slices inside (now - W, now]: a count vector of length B. Called
        for every window of every block under the ingestion lock at each snapshot: when every
        slice is live (a full window) it sums the ring in place, without a copy."""
        newest = math.floor(now_ts / self.spec.slice_seconds)
        live = (self._ids > newest - self.spec.slices) & (self._ids <= newest)
        n = int(np.count_nonzero(live))
        if n == live.size:
            return self._counts.sum(axis=0)
        if n == 0:
            return np.zeros(self.bins)
        return self._counts[live].sum(axis=0)

    def copy_bins(self, src: int, dst: int, width: int) -> None:
        """Overwrite bins dst..dst+width-1 of every slice with bins src..src+width-1."""
        self._counts[:, dst:dst + width] = self._counts[:, src:src + width]

    def state(self) -> dict[str, np.ndarray]:
        return {"counts": self._counts.copy(), "ids": self._ids.copy()}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        counts, ids = state["counts"], state["ids"]
        if counts.shape != self._counts.shape or ids.shape != self._ids.shape:
            raise ValueError("checkpointed window has a different shape; windows changed?")
        self._counts[...] = counts
        self._ids[...] = ids


#: a batch of fewer events than bins / this is added event by event, not as a count vector
#: (a segment's rows x 1,000 classes take a few hundred events per batch)
_SPARSE_RATIO = 16


class WindowedCounts:
    """The same count vector kept over several windows (e.g. 5m, 1h, 1d)."""

    __slots__ = ("rings",)

    def __init__(self, specs: tuple[WindowSpec, ...], bins: int) -> None:
        self.rings = tuple(SliceRing(spec, bins) for spec in specs)

    def add(self, ts: np.ndarray, bins: np.ndarray, weights: np.ndarray | None = None,
            counts: np.ndarray | None = None) -> None:
        """Add events at times `ts` into `bins` (weighted by `weights`) to every window. A
        window whose slice the whole batch falls in takes the batch's count vector instead
        of per-event work: `counts`, the (weighted) bincount of `bins` when the caller has
        it already, else computed here once for all windows."""
        if ts.size == 0:
            return
        first, last = float(ts.min()), float(ts.max())
        if not (math.isfinite(first) and math.isfinite(last)):
            for ring in self.rings:
                ring.add(ts, bins, weights)
            return
        # unweighted only: counts are whole numbers, so both ways add up to the same floats
        sparse = (counts is None and weights is None
                  and bins.size * _SPARSE_RATIO < (self.rings[0].bins if self.rings else 0))
        for ring in self.rings:
            width = ring.spec.slice_seconds
            slice_id = math.floor(first / width)
            if slice_id != math.floor(last / width):
                ring.add(ts, bins, weights)
            elif sparse:
                ring.add_events_to_slice(slice_id, bins, weights)
            else:
                if counts is None:
                    counts = np.bincount(bins, weights=weights, minlength=ring.bins)
                ring.add_to_slice(slice_id, counts)

    def totals(self, now_ts: float) -> dict[str, np.ndarray]:
        return {ring.spec.name: ring.total(now_ts) for ring in self.rings}

    def copy_bins(self, src: int, dst: int, width: int) -> None:
        """Overwrite bins dst.. with bins src.. (`width` of them) in every window."""
        for ring in self.rings:
            ring.copy_bins(src, dst, width)

    def state(self) -> list[dict[str, np.ndarray]]:
        return [ring.state() for ring in self.rings]

    def restore(self, state: list[dict[str, np.ndarray]]) -> None:
        for ring, s in zip(self.rings, state, strict=True):
            ring.restore(s)
