"""Pairing a request event with its response event by key, in either arrival order.

Pure: the caller passes the time (seconds on a monotonic clock). A half waits at most
`ttl_s` seconds for its other half; the store holds at most `max_entries` halves and
`max_bytes` bytes (as the caller sizes them), evicting the oldest beyond either. What
leaves without a partner is returned as `Unpaired`, with the reason, for the caller to
count (and, for responses, possibly still use).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Half = Literal["request", "response"]
Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Unpaired(Generic[Req, Resp]):
    """A half that left the store alone: `reason` is `ttl` or `capacity`."""

    key: Key
    half: Half
    request: Req | None
    response: Resp | None
    reason: Literal["ttl", "capacity"]


@dataclass(slots=True)
class _Waiting(Generic[Req, Resp]):
    request: Req | None
    response: Resp | None
    arrived: float
    size: int


class DuplicateHalf(Exception):
    """The same half of the same key arrived twice while the first still waits."""


class PairingStore(Generic[Req, Resp]):
    """Halves waiting for their partner, oldest first."""

    def __init__(self, ttl_s: float, max_entries: int, max_bytes: int) -> None:
        if ttl_s <= 0 or max_entries < 1 or max_bytes < 1:
            raise ValueError("ttl_s, max_entries and max_bytes must be positive")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._waiting: OrderedDict[Key, _Waiting[Req, Resp]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def add_request(self, key: Key, request: Req, size: int, now: float
                    ) -> tuple[tuple[Req, Resp] | None, list[Unpaired[Req, Resp]]]:
        """-> (the completed pair or None, halves evicted to make room)."""
        return self._add(key, "request", request, None, size, now)

    def add_response(self, key: Key, response: Resp, size: int, now: float
                     ) -> tuple[tuple[Req, Resp] | None, list[Unpaired[Req, Resp]]]:
        """-> (the completed pair or None, halves evicted to make room)."""
        return self._add(key, "response", None, response, size, now)

    def _add(self, key: Key, half: Half, request: Req | None, response: Resp | None,
             size: int, now: float) -> tuple[tuple[Req, Resp] | None, list[Unpaired[Req, Resp]]]:
        waiting = self._waiting.get(key)
        if waiting is not None:
            have = "request" if waiting.request is not None else "response"
            if have == half:
                raise DuplicateHalf(f"second {half} for id {key[0][:64]!r}")
            del self._waiting[key]
            self.bytes -= waiting.size
            if half == "request":
                assert request is not None and waiting.response is not None
                return (request, waiting.response), []
            assert response is not None and waiting.request is not None
            return (waiting.request, response), []
        evicted: list[Unpaired[Req, Resp]] = []
        while self._waiting and (len(self._waiting) >= self.max_entries
                                 or self.bytes + size > self.max_bytes):
            evicted.append(self._pop_oldest("capacity"))
        self._waiting[key] = _Waiting(request, response, now, size)
        self.bytes += size
        return None, evicted

    def expire(self, now: float) -> list[Unpaired[Req, Resp]]:
        """Remove and return the halves that waited `ttl_s` seconds or more."""
        out: list[Unpaired[Req, Resp]] = []
        while self._waiting:
            oldest = next(iter(self._waiting.values()))
            if now - oldest.arrived < self.ttl_s:
                break
            out.append(self._pop_oldest("ttl"))
        return out

    def drain(self) -> list[Unpaired[Req, Resp]]:
        """Remove every waiting half (at shutdown), reported as expired by `ttl`."""
        return [self._pop_oldest("ttl") for _ in range(len(self._waiting))]

    def _pop_oldest(self, reason: Literal["ttl", "capacity"]) -> Unpaired[Req, Resp]:
        key, w = self._waiting.popitem(last=False)
        self.bytes -= w.size
        half: Half = "request" if w.request is not None else "response"
        return Unpaired(key, half, w.request, w.response, reason)
