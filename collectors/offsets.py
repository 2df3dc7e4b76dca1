"""Per-partition offset tracking: commit the highest *contiguous* processed offset + 1.

Pure bookkeeping, no Kafka client: the consumer loop marks offsets as polled and then
as processed; `commit_points()` says what is safe to commit (at-least-once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class _PartitionOffsets:
    next_commit: int | None = None   # first offset not yet known processed
    done: set[int] = field(default_factory=set)  # processed offsets >= next_commit
    committed: int | None = None


class OffsetTracker:
    """Tracks processed offsets per partition; gaps hold the commit point back."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _PartitionOffsets] = {}

    def assign(self, tp: TopicPartition, position: int | None = None) -> None:
        """Start tracking a partition; `position` is the first offset to be consumed."""
        self._parts[tp] = _PartitionOffsets(next_commit=position, committed=position)

    def revoke(self, tp: TopicPartition) -> None:
        self._parts.pop(tp, None)

    def partitions(self) -> list[TopicPartition]:
        return list(self._parts)

    def processed(self, tp: TopicPartition, offset: int) -> None:
        """Mark one offset processed (its events applied to state, or refused and counted)."""
        p = self._parts.get(tp)
        if p is None:
            p = self._parts[tp] = _PartitionOffsets()
        if p.next_commit is None:
            p.next_commit = offset
        if offset < p.next_commit:
            return  # already covered (redelivery)
        p.done.add(offset)
        while p.next_commit in p.done:
            p.done.discard(p.next_commit)
            p.next_commit += 1

    def processed_through(self, tp: TopicPartition, offset: int) -> None:
        """Mark every offset up to `offset` processed: what a consumer that applies each
        polled batch whole, in order, knows. Offsets never delivered (transaction markers,
        compacted records) then hold nothing back."""
        p = self._parts.get(tp)
        if p is None:
            p = self._parts[tp] = _PartitionOffsets()
        if p.next_commit is not None and offset < p.next_commit:
            return  # already covered (redelivery)
        p.next_commit = offset + 1
        if p.done:
            p.done = {o for o in p.done if o > offset}
            while p.next_commit in p.done:
                p.done.discard(p.next_commit)
                p.next_commit += 1

    def commit_points(self) -> dict[TopicPartition, int]:
        """Offsets to commit (next offset to read) for partitions that moved since the
        last `mark_committed`."""
        out: dict[TopicPartition, int] = {}
        for tp, p in self._parts.items():
            if p.next_commit is not None and p.next_commit != p.committed:
                out[tp] = p.next_commit
        return out

    def mark_committed(self, points: dict[TopicPartition, int]) -> None:
        for tp, offset in points.items():
            p = self._parts.get(tp)
            if p is not None:
                p.committed = offset

    def positions(self) -> dict[TopicPartition, int]:
        """Next offset to read per partition, as far as processing goes."""
        return {tp: p.next_commit for tp, p in self._parts.items() if p.next_commit is not None}
