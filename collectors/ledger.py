"""Where each partition stands between its log and the state: restarts, rebalances, rewinds
and duplicate skips, as one pure ledger.

The consumer loop reports what happened (a checkpoint restored, partitions assigned or
revoked, the broker unreachable, a batch polled, the group's committed offset answered, a
batch applied, a commit stored) and acts on what the ledger decides: ask the broker for a
committed offset, count these records and skip those, commit these offsets, checkpoint
these positions. No Kafka client, no clock, no threads, no logging: every rule is a table
test in `tests/unit/test_ledger.py`.

Two kinds of remembered position let records already in the state be skipped when they are
delivered again (at-least-once delivery, exactly-once counting):
- *restored*: per partition, the offset below which a checkpoint's state holds every record;
- *revoked*: the position a partition had when it was revoked, in case it comes back and its
  commit was lost with the revocation.
A remembered position only means something for the log it was taken from; the group's
committed offset tells whether that log is still there (see `answered`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import compress
from operator import itemgetter

from collectors.kafka.client import Record
from collectors.offsets import OffsetTracker, TopicPartition


@dataclass(frozen=True, slots=True)
class Rewind:
    """A partition whose offsets went back within one assignment (a memory-only broker
    restarted, or the topic was deleted and created again): it is tracked afresh."""

    tp: TopicPartition
    was: int     # the next offset the ledger expected
    now: int     # the first offset of the batch


@dataclass(frozen=True, slots=True)
class AskCommitted:
    """Decision: ask the broker for the group's committed offset of each partition, report
    each answer (`answered` or `unanswered`), then hand the same batch to `polled` again."""

    partitions: tuple[TopicPartition, ...]
    rewound: tuple[Rewind, ...] = ()


@dataclass(frozen=True, slots=True)
class CountBatch:
    """Decision: decode and apply `records` (in order); `skipped` records of the batch are
    already in the state. Report it back with `applied` once it is in the state."""

    records: Sequence[Record]
    skipped: int
    #: last offset of each partition in the polled batch, skipped records included
    through: Mapping[TopicPartition, int]
    rewound: tuple[Rewind, ...] = ()


class Remembered(Enum):
    """What the group's committed offset said about a partition's remembered position."""

    #: the group has a committed offset: the log is the one the position was taken from
    KEPT = "kept"
    #: no committed offset, and none was ever seen: stopped before its first commit
    KEPT_NEVER_COMMITTED = "kept, never committed"
    #: the broker did not answer: keep it (this is asked once per assignment)
    KEPT_UNANSWERED = "kept, unanswered"
    #: no committed offset although one was seen: the log is gone, its records are new
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class PositionCheck:
    """The outcome of checking one remembered position against the group's offset."""

    tp: TopicPartition
    position: int
    outcome: Remembered


@dataclass(frozen=True, slots=True)
class Lag:
    """Records behind the end per partition; `ask` lists partitions nothing was read from
    yet whose committed offset is needed first (then call `lag` again)."""

    records: dict[TopicPartition, int]
    ask: tuple[TopicPartition, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckpointPositions:
    """What a checkpoint records beside the state."""

    #: per partition, the offset below which every record is in the state
    covered: dict[TopicPartition, int]
    #: offsets the group was seen to commit
    committed: dict[TopicPartition, int]


def partitions_and_offsets(records: Sequence[Record]
                           ) -> tuple[list[TopicPartition], list[int]]:
    """The (topic, partition) and offset of each record, gathered in C."""
    keys = list(zip(map(itemgetter(0), records), map(itemgetter(1), records), strict=True))
    return keys, list(map(itemgetter(2), records))


class PositionLedger:
    """Offsets and remembered positions of one consumer-group member."""

    def __init__(self) -> None:
        self._tracker = OffsetTracker()
        self._restored: dict[TopicPartition, int] = {}
        self._revoked_at: dict[TopicPartition, int] = {}
        #: offsets this member (or the one whose checkpoint it restored) saw the group
        #: commit: a partition in here that the broker has no committed offset for lost its
        #: log; one not in here may simply never have been committed (killed before the
        #: first commit), and then its remembered position stands
        self._seen_committed: dict[TopicPartition, int] = {}
        #: restored from a checkpoint that did not record the offsets it saw committed
        self._history_unknown = False
        #: the broker was unreachable since the last assignment: a broker that comes back
        #: may have lost its log, so positions remembered at revocations are forgotten
        self._link_lost = False
        #: partitions whose remembered position was checked in this assignment
        self._checked: set[TopicPartition] = set()
        #: the group's committed offset of each assigned partition, answered once per
        #: assignment: it cannot change until this member commits (and kafka-python 3
        #: stalls a rebalance when asked repeatedly)
        self._committed_at_assign: dict[TopicPartition, int | None] = {}
        #: partitions named by the last `AskCommitted` of `polled`, not answered yet
        self._asked: set[TopicPartition] = set()
        #: per topic, records skipped since start because the state already held them
        #: (delivered again after a restore or a rebalance)
        self.duplicates: Counter[str] = Counter()

    # --- events ------------------------------------------------------------------
    def restored(self, positions: Mapping[TopicPartition, int],
                 committed: Mapping[TopicPartition, int] | None) -> None:
        """A checkpoint was restored: its state holds every record below `positions`;
        `committed` are the offsets it saw committed (None: not recorded, an old format)."""
        self._restored.update(positions)
        self._seen_committed.update(committed or {})
        self._history_unknown = committed is None

    def assigned(self, tps: Sequence[TopicPartition]) -> None:
        if self._link_lost:
            self._revoked_at.clear()
            self._link_lost = False
        for tp in tps:
            self._tracker.assign(tp, None)
            self._committed_at_assign.pop(tp, None)

    def revoked(self, tps: Sequence[TopicPartition]) -> None:
        """Partitions taken away (after the loop checkpointed and committed what it could)."""
        positions = self._tracker.positions()
        for tp in tps:
            if tp in positions and not self._link_lost:
                self._revoked_at[tp] = max(positions[tp], self._revoked_at.get(tp, -1))
            self._checked.discard(tp)  # checked again if it comes back
            self._tracker.revoke(tp)
            self._committed_at_assign.pop(tp, None)

    def link_lost(self) -> None:
        """The broker was seen unreachable."""
        self._link_lost = True

    def polled(self, records: Sequence[Record]) -> AskCommitted | CountBatch:
        """A batch arrived: which records to count, or first a question for the broker."""
        keys, offsets = partitions_and_offsets(records)
        # a partition's records arrive in offset order: read backwards, the first one wins
        first = dict(zip(reversed(keys), reversed(offsets), strict=True))
        rewound = self._rewinds(first)
        through = dict(zip(keys, offsets, strict=True))  # in offset order: the last one wins
        if not (self._restored or self._revoked_at):
            return CountBatch(records, 0, through, rewound)
        skips = {tp: skip for tp, offset in first.items()
                 if offset < (skip := self._skip_for(tp))}
        ask = tuple(tp for tp in skips if tp not in self._checked)
        if ask:
            self._asked = set(ask)
            return AskCommitted(ask, rewound)
        self._asked.clear()
        skips = {tp: skip for tp, skip in skips.items() if self._skip_for(tp) >= 0}
        if not skips:
            return CountBatch(records, 0, through, rewound)
        held = [offset < skips.get(tp, -1) for tp, offset in zip(keys, offsets, strict=True)]
        kept = list(compress(records, [not h for h in held]))
        self.duplicates.update(topic for topic, _ in compress(keys, held))
        return CountBatch(kept, len(records) - len(kept), through, rewound)

    def answered(self, tp: TopicPartition, committed: int | None) -> PositionCheck | None:
        """The group's committed offset of `tp` (None: the group has none). A remembered
        position is kept unless the group has no offset for a partition it was seen to
        commit: a broker that lost its log (a memory-only broker restarted) or a topic
        created again has none, so the records are new and are counted (at-least-once).
        End offsets cannot tell: some brokers report a lagging end (Tansu answers with
        the base offset of the last batch)."""
        self._committed_at_assign[tp] = committed
        self._asked.discard(tp)
        position = self._skip_for(tp)
        if tp in self._checked or position < 0:
            return None
        self._checked.add(tp)
        if committed is not None:
            return PositionCheck(tp, position, Remembered.KEPT)
        if tp in self._seen_committed or self._history_unknown:
            self._restored.pop(tp, None)
            self._revoked_at.pop(tp, None)
            self._seen_committed.pop(tp, None)
            return PositionCheck(tp, position, Remembered.DROPPED)
        return PositionCheck(tp, position, Remembered.KEPT_NEVER_COMMITTED)

    def unanswered(self, tp: TopicPartition) -> PositionCheck | None:
        """The broker did not answer. A question of `polled` is not asked again in this
        assignment (each would wait out a timeout) and the position is kept; a question
        of `lag` is asked again next time."""
        if tp not in self._asked:
            return None
        self._asked.discard(tp)
        self._checked.add(tp)
        return PositionCheck(tp, self._skip_for(tp), Remembered.KEPT_UNANSWERED)

    def applied(self, batch: CountBatch) -> None:
        """The batch's records are in the state (skipped ones were already)."""
        for tp, offset in batch.through.items():
            self._tracker.processed_through(tp, offset)
        if self._restored or self._revoked_at:  # a passed position can skip nothing any more
            positions = self._tracker.positions()
            for skips in (self._restored, self._revoked_at):
                for tp in [tp for tp, pos in skips.items() if positions.get(tp, -1) >= pos]:
                    del skips[tp]

    def commit_succeeded(self, points: Mapping[TopicPartition, int]) -> None:
        self._tracker.mark_committed(dict(points))
        self._seen_committed.update(points)

    # --- decisions ---------------------------------------------------------------
    def to_commit(self) -> dict[TopicPartition, int]:
        """Offsets to commit: the highest contiguous processed offset + 1 of each partition
        that moved since the last commit."""
        return self._tracker.commit_points()

    def checkpoint(self) -> CheckpointPositions:
        """Per partition, what was processed now or earlier (restored, or before a
        revocation), whichever is further: a partition revoked, or assigned but not read
        yet, keeps its earlier position."""
        covered = dict(self._restored)
        for source in (self._revoked_at, self._tracker.positions()):
            for tp, pos in source.items():
                covered[tp] = max(pos, covered.get(tp, pos))
        return CheckpointPositions(covered, dict(self._seen_committed))

    def lag(self, ends: Mapping[TopicPartition, int]) -> Lag:
        """Records between the processed position (or, before any, the group's committed
        offset) and each partition's end."""
        positions = self._tracker.positions()
        records: dict[TopicPartition, int] = {}
        ask: list[TopicPartition] = []
        for tp, end in ends.items():
            pos = positions.get(tp)
            if pos is None:
                if tp not in self._committed_at_assign:
                    ask.append(tp)
                    continue
                committed = self._committed_at_assign[tp]
                pos = committed if committed is not None else 0
            records[tp] = max(0, end - pos)
        return Lag(records, tuple(ask))

    # --- internals -----------------------------------------------------------------
    def _skip_for(self, tp: TopicPartition) -> int:
        """Records of `tp` below this offset are already in the state (-1: none)."""
        return max(self._restored.get(tp, -1), self._revoked_at.get(tp, -1))

    def _rewinds(self, first: Mapping[TopicPartition, int]) -> tuple[Rewind, ...]:
        positions = self._tracker.positions()
        out = []
        for tp, offset in first.items():
            pos = positions.get(tp)
            if pos is not None and offset < pos:
                out.append(Rewind(tp, pos, offset))
                self._tracker.assign(tp, None)
                self._restored.pop(tp, None)
                self._revoked_at.pop(tp, None)
        return tuple(out)
