"""Packing prediction events into Kafka messages: newline-delimited JSON (NDJSON).

Pure and single-threaded (the sender thread owns one): lines go in, finished messages come
out when a count or size limit is reached; the caller flushes on a timer (linger).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Batch:
    """One Kafka message: `events` NDJSON lines joined by newlines, `value` bytes long."""

    value: bytes
    events: int


class NdjsonBatcher:
    """Collects serialized events until `max_events` events or `max_bytes` bytes.

    A message never exceeds `max_bytes` (lines longer than that must be refused before
    they get here) nor `max_events` events; `opened_at` is the time (seconds, caller's
    clock) the oldest pending line was added, so the caller can flush after a linger.
    """

    def __init__(self, max_events: int, max_bytes: int) -> None:
        if max_events < 1 or max_bytes < 2:
            raise ValueError("max_events must be >= 1 and max_bytes >= 2")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._lines: list[bytes] = []
        self._size = 0
        self.opened_at: float | None = None

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, line: bytes, now: float) -> list[Batch]:
        """Add one line; returns the messages completed by it (zero, one or two)."""
        if len(line) > self.max_bytes:
            raise ValueError(f"a {len(line)}-byte event exceeds the {self.max_bytes}-byte "
                             "message limit")
        done: list[Batch] = []
        if self._lines and self._size + 1 + len(line) > self.max_bytes:
            done.append(self._take())
        if not self._lines:
            self.opened_at = now
            self._size = len(line)
        else:
            self._size += 1 + len(line)
        self._lines.append(line)
        if len(self._lines) >= self.max_events:
            done.append(self._take())
        return done

    def flush(self) -> Batch | None:
        """The pending lines as one message, or None when there are none."""
        return self._take() if self._lines else None

    def _take(self) -> Batch:
        batch = Batch(b"\n".join(self._lines), len(self._lines))
        self._lines = []
        self._size = 0
        self.opened_at = None
        return batch
