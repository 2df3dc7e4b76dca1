"""Cyclic garbage collector settings for the long-running daemon process.

Decoding allocates a few tuples per event; with CPython's default generation-0 threshold
(700 allocations) the collector then runs every few hundred events and scans the young
objects each time. The daemon keeps no reference cycles it needs freed promptly, so it
collects less often, and moves what start-up built (config, models) out of every scan.
"""

from __future__ import annotations

import gc

#: generation-0 threshold: allocations between collections (CPython's default is 700)
YOUNG_THRESHOLD = 50_000


def tune_collector() -> None:
    """Collect generation 0 every 50,000 allocations instead of 700, and freeze what exists
    now (measured: +30-40 % events/s decoding 100-event messages, benchmarks/ingest.py)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
