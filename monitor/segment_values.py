"""Bounded label values of one segment key: each value an event carries becomes a small
index (its row in the key's count vectors), and values beyond the key's bound fold into
`_other` and are counted.

Row 0 is `_other`, row 1 `_none` (the event does not carry the key); a key with a fixed
`values` list has those rows from the start, a key with `max_values` takes values first
come, first kept. The rows never move, so a checkpoint restores them in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np

from monitor.segment_config import SEGMENT_NONE, SEGMENT_OTHER, SegmentConfig

OTHER_ROW = 0
NONE_ROW = 1


class ValueFolder:
    """The rows of one (model, segment key); `folded` counts events folded into `_other`."""

    __slots__ = ("_rows", "capacity", "fixed", "folded", "key", "names")

    def __init__(self, rule: SegmentConfig) -> None:
        self.key = rule.key
        self.capacity = rule.capacity
        self.fixed = rule.values is not None
        self.names: list[str] = [SEGMENT_OTHER, SEGMENT_NONE, *(rule.values or ())]
        #: value -> row; None (the key absent) is `_none`
        self._rows: dict[str | None, int] = {n: i for i, n in enumerate(self.names)}
        self._rows[None] = NONE_ROW
        self.folded = 0

    def rows(self, values: Sequence[str | None]) -> np.ndarray:
        """The row of each value (None: the event lacks the key), as int64; a new value
        takes a free row while there is one, else folds into `_other` (counted)."""
        got = np.fromiter(map(self._rows.get, values, repeat(-1)), dtype=np.int64,
                          count=len(values))
        if got.min(initial=0) < 0:
            for i in np.flatnonzero(got < 0).tolist():
                got[i] = self._admit(values[i])
        return got

    def _admit(self, value: str | None) -> int:
        row = self._rows.get(value)
        if row is not None:  # admitted earlier in the same batch
            return row
        if not self.fixed and len(self.names) < self.capacity:
            assert value is not None  # None always has its row
            self._rows[value] = row = len(self.names)
            self.names.append(value)
            return row
        self.folded += 1
        return OTHER_ROW

    def state(self) -> dict[str, object]:
        return {"names": list(self.names), "folded": self.folded}

    def restore(self, state: dict[str, object]) -> None:
        """Rows as checkpointed: kept values in order (a fixed list keeps its own order;
        values it no longer lists are dropped, as their rows would be)."""
        self.folded = int(state.get("folded", 0))  # type: ignore[call-overload]
        names = state.get("names", [])
        assert isinstance(names, list)
        if self.fixed:
            return
        for name in names[2:self.capacity]:
            if name not in self._rows:
                self._rows[name] = len(self.names)
                self.names.append(name)
