"""Bounded join store: entries keyed by request id, waiting for their other half.

Insertion-ordered with a maximum size (oldest evicted first, reason `capacity`) and a
time-to-live in event time (reason `ttl`). Memory is bounded by `max_entries`, whatever
the traffic. Keys can be hashed (BLAKE2b-128) so raw request ids are never held.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

V = TypeVar("V")


def hashed_key(request_id: str) -> str:
    """A stable 128-bit digest of a request id (hex), for `state.hash_request_ids`."""
    return hashlib.blake2b(request_id.encode(), digest_size=16).hexdigest()


class JoinStore(Generic[V]):
    """request id -> (event time, value), bounded by count and age."""

    def __init__(self, name: str, max_entries: int, ttl_seconds: float,
                 hash_keys: bool = False) -> None:
        self.name = name
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self.hash_keys = hash_keys
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self.evicted: dict[str, int] = {"capacity": 0, "ttl": 0}

    def key(self, request_id: str) -> str:
        return hashed_key(request_id) if self.hash_keys else request_id

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, request_id: str) -> bool:
        return self.key(request_id) in self._items

    def put(self, request_id: str, ts: float, value: V) -> None:
        k = self.key(request_id)
        items = self._items
        if k in items:
            items.move_to_end(k)
        items[k] = (ts, value)
        if len(items) > self.max_entries:
            items.popitem(last=False)
            self.evicted["capacity"] += 1

    def put_many(self, request_ids: Sequence[str], ts: Sequence[float], values: Sequence[V]
                 ) -> None:
        """`put` of a whole batch, with the dictionary work done in C: what the label join
        costs per prediction is then a fraction of a microsecond."""
        keys = [hashed_key(r) for r in request_ids] if self.hash_keys else request_ids
        items = self._items
        if len(set(keys)) != len(keys) or (items and not items.keys().isdisjoint(keys)):
            for k, t, v in zip(request_ids, ts, values, strict=True):  # ids put again: rare
                self.put(k, t, v)
            return
        items.update(zip(keys, zip(ts, values, strict=True), strict=True))
        over = len(items) - self.max_entries
        if over > 0:
            for _ in range(over):
                items.popitem(last=False)
            self.evicted["capacity"] += over

    def get(self, request_id: str) -> V | None:
        hit = self._items.get(self.key(request_id))
        return None if hit is None else hit[1]

    def pop(self, request_id: str) -> V | None:
        hit = self._items.pop(self.key(request_id), None)
        return None if hit is None else hit[1]

    def expire(self, now_ts: float) -> int:
        """Drop entries older than the TTL relative to `now_ts` (event time). Entries are
        roughly in time order, so scanning stops at the first young one."""
        cutoff = now_ts - self.ttl
        items = self._items
        n = 0
        while items:
            _k, (ts, _) = next(iter(items.items()))
            if ts >= cutoff:
                break
            items.popitem(last=False)
            n += 1
        self.evicted["ttl"] += n
        return n

    def items(self) -> Iterator[tuple[str, float, V]]:
        for k, (ts, v) in self._items.items():
            yield k, ts, v

    def state(self, encode: Callable[[V], Any]) -> dict[str, Any]:
        return {"entries": [[k, ts, encode(v)] for k, (ts, v) in self._items.items()],
                "evicted": self.evicted}

    def restore(self, state: dict[str, Any], decode: Callable[[Any], V]) -> None:
        self._items.clear()
        for k, ts, v in state["entries"][-self.max_entries:]:
            self._items[k] = (float(ts), decode(v))
        self.evicted.update(state.get("evicted", {}))
