"""Memory request of a visionmon container, derived from its config's bounds.

Every growing structure of the daemon is bounded by a config value, so its memory is
bounded by a sum of terms (bytes):

    base      160 MiB   interpreter, numpy/scipy, Kafka client, exporter (measured idle
                        RSS of `visionmon run`: 133 MiB with either backend; rounded up)
    fetch     128 MiB   consumer fetch buffers (kafka-python `fetch_max_bytes` 50 MiB,
                        librdkafka's queue 64 MiB) and the decoded poll they turn into
    joins     3 x labels.max_entries x 300 B      prediction store, early-label store and
                                                  joined-request store (docs/statistics.md:
                                                  ~300 B per entry)
    windows   sum over models of (limits.max_versions_per_model + 1) x 4 features x
              len(windows.sizes) x windows.slices x (max(classes, baseline.quantile_bins)
              + 2) x 8 B                          (count rings, docs/statistics.md)
    reference only with `reference:`: reference.queue_max_bytes
              + (2 x batch_size + in_flight) x input_size^2 x 3 x 4 B  (decoded
              float32 images waiting or in flight; in_flight = decode_workers, or
              8 x decode_workers with decode processes)  + 512 MiB (torch and the
              weights; raise it for models above ~100 MB)
              + with decode processes (`decode_mode: processes`, or `auto` unless
              `device: cpu`): decode_workers x (64 MiB + 8 x input_size^2 x 3 B)
              (a worker's RSS, measured at 53 MB, rounded up, and its share of the
              shared pixel slots)

    request = limit = (base + fetch + joins + windows + reference) x 1.2, rounded up to
              a multiple of 16 MiB

The limit equals the request: a daemon above its bound is a bug better seen as an
OOMKilled restart (it resumes from its checkpoint) than as a node under pressure.

    .venv/bin/python deploy/sizing.py examples/visionmon.yaml
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from monitor.config import LoadedConfig, load_config

DECODE_CHUNK = 8  # reference_model.decode_pool.DECODE_CHUNK (that module imports Pillow)

MIB = 1024 * 1024
BASE = 160 * MIB
FETCH = 128 * MIB
JOIN_ENTRY = 300
#: the label join's stores of `labels.max_entries` each: predictions, early labels, and
#: the requests already joined (to count a second label as a duplicate)
JOIN_STORES = 3
FEATURES = 4
TORCH_RUNTIME = 512 * MIB
DECODE_PROCESS = 64 * MIB
HEADROOM = 1.2
ROUND = 16 * MIB


@dataclass(frozen=True, slots=True)
class MemoryBound:
    """The terms of the bound, in bytes."""

    base: int
    fetch: int
    joins: int
    windows: int
    reference: int

    @property
    def total(self) -> int:
        return self.base + self.fetch + self.joins + self.windows + self.reference

    @property
    def request(self) -> int:
        """The container's memory request (and limit), bytes, a multiple of 16 MiB."""
        return math.ceil(self.total * HEADROOM / ROUND) * ROUND


def memory_bound(loaded: LoadedConfig) -> MemoryBound:
    """The bound for a loaded config (pure)."""
    cfg = loaded.config
    joins = JOIN_STORES * cfg.labels.max_entries * JOIN_ENTRY
    rings = len(cfg.windows.sizes) * cfg.windows.slices
    windows = sum((cfg.limits.max_versions_per_model + 1) * FEATURES * rings
                  * (max(len(m.classes), cfg.baseline.quantile_bins) + 2) * 8
                  for m in loaded.models.values())
    reference = 0
    if cfg.reference is not None:
        r = cfg.reference
        processes = r.decode_mode == "processes" or (r.decode_mode == "auto"
                                                     and r.device != "cpu")
        in_flight = r.decode_workers * (DECODE_CHUNK if processes else 1)
        # `auto` is 4 on the CPU and 64 on CUDA: the larger where the device may be CUDA
        batch = r.resolved("cpu" if r.device == "cpu" else "cuda", False).batch
        decoded = (2 * batch + in_flight) * r.input_size ** 2 * 3 * 4
        reference = r.queue_max_bytes + decoded + TORCH_RUNTIME
        if processes:
            reference += r.decode_workers * (DECODE_PROCESS + DECODE_CHUNK * r.input_size ** 2 * 3)
    return MemoryBound(BASE, FETCH, joins, windows, reference)


def quantity(n_bytes: int) -> str:
    """Kubernetes quantity in Mi (the request is a multiple of 16 MiB)."""
    return f"{n_bytes // MIB}Mi"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: sizing.py CONFIG", file=sys.stderr)
        return 2
    bound = memory_bound(load_config(argv[0]))
    for name in ("base", "fetch", "joins", "windows", "reference"):
        print(f"# {name:9s} {getattr(bound, name) / MIB:10.1f} MiB")
    print(f"resources:\n  requests: {{cpu: 250m, memory: {quantity(bound.request)}}}\n"
          f"  limits: {{memory: {quantity(bound.request)}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
