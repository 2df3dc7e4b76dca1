"""The production model's lifecycle and metadata, from the `lifecycle` topic: which artifact
each replica serves, how long loads take, failed loads and rollouts.

Each replica (model, version, host) is remembered by its latest load only (its artifact's
SHA-256 and the load's event time), at most `max_replicas` of them (the oldest load is
forgotten first, counted as an eviction). One (model, version) whose replicas hold more
than one SHA-256 is what the `VisionmonArtifactMismatch` alert looks for in
`visionmon_model_info`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.catalog import MODEL_LOAD_SECONDS_BUCKETS
from monitor.engine import EngineExtension, bucket_index
from monitor.lifecycle_events import LOAD_FAILED, LOADED, LifecycleEvent
from monitor.snapshot import Captured, SnapshotBuilder, histogram_value

#: the `store` label of this block's evictions in visionmon_join_evicted_total
REPLICA_STORE = "model_replicas"
_EDGES = np.asarray(MODEL_LOAD_SECONDS_BUCKETS)

Replica = tuple[str, str, str]   # (model, version, host)
Artifact = tuple[str, str, str]  # (model, version, sha256)
VersionKey = Callable[[str, str], str]


@dataclass(frozen=True, slots=True)
class ArtifactSeen:
    """One artifact some replica holds: how many replicas, and its first and latest load
    (event time, s)."""

    replicas: int
    first_load: float
    last_load: float


def artifacts(replicas: Mapping[Replica, tuple[str, float]],
              first_load: Mapping[Artifact, float]) -> dict[Artifact, ArtifactSeen]:
    """The artifacts the replicas' latest loads hold, with their replica counts and load
    times; `first_load` gives each artifact's first load (default: its earliest holder's)."""
    counts: Counter[Artifact] = Counter()
    last: dict[Artifact, float] = {}
    earliest: dict[Artifact, float] = {}
    for (model, version, _), (sha, ts) in replicas.items():
        key = (model, version, sha)
        counts[key] += 1
        last[key] = max(ts, last.get(key, ts))
        earliest[key] = min(ts, earliest.get(key, ts))
    return {k: ArtifactSeen(n, min(first_load.get(k, earliest[k]), earliest[k]), last[k])
            for k, n in counts.items()}


@dataclass(frozen=True, slots=True)
class LifecycleCapture:
    """This block's counts, copied under the ingestion lock."""

    artifacts: Mapping[Artifact, ArtifactSeen]
    load_counts: Mapping[tuple[str, str], np.ndarray]
    load_sums: Mapping[tuple[str, str], float]
    failures: Mapping[tuple[str, str, str], int]
    rollouts: Mapping[tuple[str, str, str], int]
    evicted: int

    def render(self, b: SnapshotBuilder) -> None:
        for key, seen in self.artifacts.items():
            b.set("visionmon_model_info", key, 1.0)
            b.set("visionmon_model_replicas", key, float(seen.replicas))
            b.set("visionmon_model_first_load_timestamp_seconds", key, seen.first_load)
            b.set("visionmon_model_last_load_timestamp_seconds", key, seen.last_load)
        for mv, counts in self.load_counts.items():
            b.set("visionmon_model_load_seconds", mv,
                  histogram_value(counts, self.load_sums[mv]))
        for key, n in self.failures.items():
            b.set("visionmon_model_load_failures_total", key, float(n))
        for key, n in self.rollouts.items():
            b.set("visionmon_model_rollouts_total", key, float(n))
        if self.evicted:
            b.set("visionmon_join_evicted_total", (REPLICA_STORE, "capacity"),
                  float(self.evicted))


class ModelLifecycle(EngineExtension):
    """Lifecycle state of the production models; fed by `apply_lifecycle`. `version_key`
    folds versions beyond `limits.max_versions_per_model` into `_other`, as the engine
    does for predictions."""

    name = "lifecycle"

    def __init__(self, version_key: VersionKey, max_replicas: int) -> None:
        self._version_key = version_key
        self.max_replicas = max_replicas
        #: each replica's latest load: (sha256, event time)
        self.replicas: dict[Replica, tuple[str, float]] = {}
        #: first load of each artifact still held by some replica
        self.first_load: dict[Artifact, float] = {}
        self.load_counts: dict[tuple[str, str], np.ndarray] = {}
        self.load_sums: dict[tuple[str, str], float] = {}
        self.failures: Counter[tuple[str, str, str]] = Counter()
        self.rollouts: Counter[tuple[str, str, str]] = Counter()
        self.evicted = 0

    def apply_lifecycle(self, events: Sequence[LifecycleEvent]) -> None:
        for e in events:
            version = self._version_key(e.model, e.version)
            if e.kind == LOADED:
                assert e.host is not None and e.sha256 is not None and e.load_seconds is not None
                self._loaded(e.model, version, e.host, e.sha256, e.ts, e.load_seconds)
            elif e.kind == LOAD_FAILED:
                self.failures[(e.model, version, e.reason or "other")] += 1
            else:
                self.rollouts[(e.model, version, e.kind)] += 1

    def _loaded(self, model: str, version: str, host: str, sha: str, ts: float,
                seconds: float) -> None:
        mv = (model, version)
        counts = self.load_counts.get(mv)
        if counts is None:
            counts = self.load_counts[mv] = np.zeros(len(_EDGES) + 1, dtype=np.int64)
        counts[int(bucket_index(np.asarray([seconds]), _EDGES)[0])] += 1
        self.load_sums[mv] = self.load_sums.get(mv, 0.0) + seconds
        replica = (model, version, host)
        held = self.replicas.get(replica)
        if held is not None and held[1] > ts:
            return  # an older load delivered late: the replica's latest stands
        self.replicas[replica] = (sha, ts)
        artifact = (model, version, sha)
        self.first_load[artifact] = min(ts, self.first_load.get(artifact, ts))
        while len(self.replicas) > self.max_replicas:
            oldest = min(self.replicas, key=lambda r: self.replicas[r][1])
            del self.replicas[oldest]
            self.evicted += 1
        self._forget_unheld()

    def _forget_unheld(self) -> None:
        """Drop the first-load time of artifacts no replica holds any more."""
        held = {(m, v, sha) for (m, v, _), (sha, _) in self.replicas.items()}
        for artifact in [a for a in self.first_load if a not in held]:
            del self.first_load[artifact]

    def capture(self) -> Captured:
        return LifecycleCapture(
            artifacts(self.replicas, self.first_load),
            {mv: c.copy() for mv, c in self.load_counts.items()}, dict(self.load_sums),
            dict(self.failures), dict(self.rollouts), self.evicted)

    def state(self) -> dict[str, Any]:
        return {
            "replicas": [[*r, sha, ts] for r, (sha, ts) in self.replicas.items()],
            "first_load": [[*a, ts] for a, ts in self.first_load.items()],
            "loads": [[m, v, c.tolist(), self.load_sums[(m, v)]]
                      for (m, v), c in self.load_counts.items()],
            "failures": [[*k, n] for k, n in self.failures.items()],
            "rollouts": [[*k, n] for k, n in self.rollouts.items()],
            "evicted": self.evicted,
        }

    def restore(self, state: Any) -> None:
        self.replicas = {(m, v, h): (sha, float(ts)) for m, v, h, sha, ts in state["replicas"]}
        self.first_load = {(m, v, sha): float(ts) for m, v, sha, ts in state["first_load"]}
        self.load_counts = {(m, v): np.asarray(c, dtype=np.int64)
                            for m, v, c, _ in state["loads"]}
        self.load_sums = {(m, v): float(s) for m, v, _, s in state["loads"]}
        self.failures = Counter({(m, v, r): int(n) for m, v, r, n in state["failures"]})
        self.rollouts = Counter({(m, v, k): int(n) for m, v, k, n in state["rollouts"]})
        self.evicted = int(state["evicted"])
