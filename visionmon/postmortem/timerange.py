"""The time range a postmortem covers, and how it is written on the command line."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[since, until] in epoch seconds, both ends included; infinite ends are open."""

    since: float = -math.inf
    until: float = math.inf

    def __post_init__(self) -> None:
        if self.since > self.until:
            raise ValueError(f"--since ({self.since}) is after --until ({self.until})")

    def contains(self, ts: float) -> bool:
        return self.since <= ts <= self.until

    def contains_ms(self, ts_ms: int) -> bool:
        return self.since * 1000.0 <= ts_ms <= self.until * 1000.0


def parse_time(text: str) -> float:
    """Epoch seconds, `now`, or RFC 3339 with a UTC offset -> epoch seconds."""
    if text == "now":
        return time.time()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither epoch seconds nor RFC 3339") from None
    if dt.tzinfo is None:
        raise ValueError(f"{text!r}: give a UTC offset (e.g. 2026-11-28T00:00:00Z)")
    return dt.timestamp()


def iso(ts: float) -> str:
    """Epoch seconds -> RFC 3339 in UTC, to the second (`2026-11-28T03:12:00Z`)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
