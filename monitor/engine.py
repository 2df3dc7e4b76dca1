"""The engine: applies batches of decoded events to bounded state and produces snapshots.

No I/O: the daemon feeds it batches and reads snapshots. Updates are vectorised per
(model, version) group, so the per-event Python work is only the grouping. A snapshot is
`capture()` (cheap copies, under the caller's lock) then `render()` (the statistics,
outside it): see monitor/snapshot.py.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import itemgetter
from typing import Any, ClassVar

import numpy as np

from monitor.catalog import CONFIDENCE_BUCKETS, LATENCY_BUCKETS, OTHER
from monitor.events import PredictionEvent, Rejection
from monitor.snapshot import Captured, NoSeries, Series, SnapshotBuilder, histogram_value

_LAT_EDGES = np.asarray(LATENCY_BUCKETS)
_CONF_EDGES = np.asarray(CONFIDENCE_BUCKETS)


def bucket_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Prometheus `le` bucket of each value: first edge >= value; len(edges) is +Inf."""
    return np.searchsorted(edges, values, side="left")


HistogramHook = Callable[[str, tuple[str, ...], np.ndarray], None]


def late_count(ts: np.ndarray, watermark: float, horizon_s: float) -> int:
    """How many event times `ts` (s) are at least `horizon_s` older than `watermark` (the
    newest event time seen): with the longest window as the horizon, events outside every
    window, whose right edge is the watermark (monitor/windows.py)."""
    return int(np.count_nonzero(ts <= watermark - horizon_s))


_COLUMN_DTYPES = {"ts": np.float64, "ok": np.bool_, "pred": np.int64, "confidence": np.float64,
                  "margin": np.float64, "entropy": np.float64, "latency_s": np.float64}


_FIELD_INDEX = {name: i for i, name in enumerate(PredictionEvent._fields)}


class EventGroup(list[PredictionEvent]):
    """The events of one (model, version) in a batch, with their fields as numpy columns,
    each built once on first use and shared by every statistics block."""

    def __init__(self, events: Iterable[PredictionEvent] = ()) -> None:
        super().__init__(events)
        self._columns: dict[str, np.ndarray] = {}
        #: what a statistics block derived from these events for others to reuse in the same
        #: batch, under a key that names its inputs (e.g. the drift bins of one baseline)
        self.derived: dict[tuple[str, ...], Any] = {}

    def column(self, name: str) -> np.ndarray:
        col = self._columns.get(name)
        if col is None:  # map(itemgetter) runs in C: ~28 ns per event and column
            col = self._columns[name] = np.fromiter(
                map(itemgetter(_FIELD_INDEX[name]), self), dtype=_COLUMN_DTYPES[name],
                count=len(self))
        return col

    def predicted(self) -> list[PredictionEvent]:
        """The events of successful requests that carry a predicted class."""
        mask = self.column("ok") & (self.column("pred") >= 0)
        return list(compress(self, mask.tolist()))


@dataclass(frozen=True, slots=True)
class VersionCounts:
    """A copy of one (model, version)'s request counters (`VersionState`), for rendering."""

    pred_counts: np.ndarray
    requests_ok: int
    requests_error: int
    lat_counts: np.ndarray
    lat_sum: float
    conf_counts: np.ndarray
    conf_sum: float
    last_ts: float


class VersionState:
    """Cumulative counters of one (model, version): the issue-2 request metrics."""

    __slots__ = ("conf_counts", "conf_sum", "last_ts", "lat_counts", "lat_sum",
                 "pred_counts", "requests_error", "requests_ok")

    def __init__(self, n_classes: int) -> None:
        self.pred_counts = np.zeros(n_classes, dtype=np.int64)
        self.requests_ok = 0
        self.requests_error = 0
        self.lat_counts = np.zeros(len(LATENCY_BUCKETS) + 1, dtype=np.int64)
        self.lat_sum = 0.0
        self.conf_counts = np.zeros(len(CONFIDENCE_BUCKETS) + 1, dtype=np.int64)
        self.conf_sum = 0.0
        self.last_ts = math.nan

    def apply(self, evs: EventGroup, labels: tuple[str, str], hook: HistogramHook | None
              ) -> None:
        n = len(evs)
        ok = evs.column("ok")
        n_ok = int(ok.sum())
        self.requests_ok += n_ok
        self.requests_error += n - n_ok
        if n_ok:
            pred = evs.column("pred")[ok]
            self.pred_counts += np.bincount(pred, minlength=self.pred_counts.size)
            conf = evs.column("confidence")[ok]
            conf = conf[~np.isnan(conf)]
            if conf.size:
                self.conf_counts += np.bincount(bucket_index(conf, _CONF_EDGES),
                                                minlength=self.conf_counts.size)
                self.conf_sum += float(conf.sum())
                if hook is not None:
                    hook("visionmon_prediction_confidence", labels, conf)
        lat = evs.column("latency_s")
        lat = lat[~np.isnan(lat)]
        if lat.size:
            self.lat_counts += np.bincount(bucket_index(lat, _LAT_EDGES),
                                           minlength=self.lat_counts.size)
            self.lat_sum += float(lat.sum())
            if hook is not None:
                hook("visionmon_request_latency_seconds", labels, lat)
        newest = float(evs.column("ts").max())
        if math.isnan(self.last_ts) or newest > self.last_ts:
            self.last_ts = newest

    def counts(self) -> VersionCounts:
        """A copy of the counters (arrays copied: ingestion goes on changing these)."""
        return VersionCounts(self.pred_counts.copy(), self.requests_ok, self.requests_error,
                             self.lat_counts.copy(), self.lat_sum, self.conf_counts.copy(),
                             self.conf_sum, self.last_ts)

    def state(self) -> dict[str, Any]:
        return {"pred_counts": self.pred_counts.tolist(), "requests_ok": self.requests_ok,
                "requests_error": self.requests_error, "lat_counts": self.lat_counts.tolist(),
                "lat_sum": self.lat_sum, "conf_counts": self.conf_counts.tolist(),
                "conf_sum": self.conf_sum, "last_ts": self.last_ts}

    def restore(self, s: Mapping[str, Any]) -> None:
        self.pred_counts[...] = s["pred_counts"]
        self.requests_ok = int(s["requests_ok"])
        self.requests_error = int(s["requests_error"])
        self.lat_counts[...] = s["lat_counts"]
        self.lat_sum = float(s["lat_sum"])
        self.conf_counts[...] = s["conf_counts"]
        self.conf_sum = float(s["conf_sum"])
        self.last_ts = float(s["last_ts"])


class VersionLimiter:
    """Bounds the `version` label: the first N versions of a model keep their name,
    later ones fold into `_other` (counted, so an operator can raise the limit)."""

    def __init__(self, max_versions: int) -> None:
        self.max_versions = max_versions
        self.known: dict[str, list[str]] = defaultdict(list)
        self.limited: dict[str, int] = defaultdict(int)

    def key(self, model: str, version: str, n: int = 1) -> str:
        """The label for `n` events of (model, version)."""
        known = self.known[model]
        if version in known:
            return version
        if len(known) < self.max_versions:
            known.append(version)
            return version
        self.limited[model] += n
        return OTHER


@dataclass(frozen=True, slots=True)
class EngineCapture:
    """Everything a snapshot needs, copied from the engine and its extensions under the
    caller's lock; `render()` computes the series from it without any lock."""

    models: Mapping[str, tuple[str, ...]]
    consumed: Mapping[str, int]
    accepted: Mapping[str, int]
    rejected: Mapping[tuple[str, str], int]
    late: Mapping[str, int]
    limited: Mapping[str, int]
    by_version: Mapping[tuple[str, str], VersionCounts]
    extensions: tuple[Captured, ...]

    def render(self) -> dict[str, Series]:
        b = SnapshotBuilder()
        for topic, n in self.consumed.items():
            b.set("visionmon_records_consumed_total", (topic,), float(n))
        for topic, n in self.accepted.items():
            b.set("visionmon_events_accepted_total", (topic,), float(n))
        for (topic, reason), n in self.rejected.items():
            b.set("visionmon_records_rejected_total", (topic, reason), float(n))
        for topic, n in self.late.items():
            b.set("visionmon_late_events_total", (topic,), float(n))
        for model, n in self.limited.items():
            b.set("visionmon_series_limited_total", (model,), float(n))
        for (model, version), s in self.by_version.items():
            mv = (model, version)
            b.counts("visionmon_predictions_total", mv, self.models[model], s.pred_counts)
            b.set("visionmon_requests_total", (*mv, "ok"), float(s.requests_ok))
            b.set("visionmon_requests_total", (*mv, "error"), float(s.requests_error))
            b.set("visionmon_request_latency_seconds", mv, histogram_value(s.lat_counts, s.lat_sum))
            b.set("visionmon_prediction_confidence", mv,
                  histogram_value(s.conf_counts, s.conf_sum))
            if not math.isnan(s.last_ts):
                b.set("visionmon_last_event_timestamp_seconds", mv, s.last_ts)
        for ext in self.extensions:
            ext.render(b)
        return b.build()


class Engine:
    """All statistics state of one daemon. Not thread-safe: the caller serialises
    `apply_*` and `capture` (the daemon holds one lock around both); rendering a capture
    needs no lock."""

    def __init__(self, models: Mapping[str, Sequence[str]], max_versions_per_model: int,
                 horizon_s: float = math.inf) -> None:
        """`horizon_s`: the longest window (s); a prediction at least this much older than
        its model's newest prediction is counted late (`late_count`)."""
        self.models = {name: tuple(classes) for name, classes in models.items()}
        self.horizon_s = horizon_s
        #: model -> its newest prediction's event time (s), the right edge of its windows
        self.watermark: dict[str, float] = {}
        self.versions = VersionLimiter(max_versions_per_model)
        self.by_version: dict[tuple[str, str], VersionState] = {}
        self.consumed: dict[str, int] = defaultdict(int)
        self.accepted: dict[str, int] = defaultdict(int)
        self.rejected: dict[tuple[str, str], int] = defaultdict(int)
        self.late: dict[str, int] = defaultdict(int)
        self.extensions: list[EngineExtension] = []
        #: called with raw observations of every histogram (the OpenTelemetry bridge)
        self.histogram_hook: HistogramHook | None = None

    # --- applying batches ---------------------------------------------------
    def record_consumed(self, topic: str, n: int = 1) -> None:
        self.consumed[topic] += n

    def record_rejections(self, topic: str, rejections: Iterable[Rejection]) -> None:
        for r in rejections:
            self.rejected[(topic, r.reason.value)] += 1

    def record_rejection(self, topic: str, reason: str, n: int = 1) -> None:
        self.rejected[(topic, reason)] += n

    def apply_predictions(self, events: Sequence[PredictionEvent], topic: str = "predictions"
                          ) -> None:
        if not events:
            return
        self.accepted[topic] += len(events)
        groups = self._group(events)
        for key, g in groups.items():
            state = self.by_version.get(key)
            if state is None:
                state = self.by_version[key] = VersionState(len(self.models[key[0]]))
            state.apply(g, key, self.histogram_hook)
        self._count_late(groups, topic)
        for ext in self.extensions:
            ext.on_predictions(groups)

    def _count_late(self, groups: Mapping[tuple[str, str], EventGroup], topic: str) -> None:
        """Move each model's watermark to its newest prediction, then count the batch's
        predictions that fell behind it by the longest window (still counted everywhere
        else, in no window)."""
        for (model, _), g in groups.items():
            newest = float(g.column("ts").max())
            if newest > self.watermark.get(model, -math.inf):
                self.watermark[model] = newest
        n = sum(late_count(g.column("ts"), self.watermark.get(model, -math.inf), self.horizon_s)
                for (model, _), g in groups.items())
        if n:
            self.late[topic] += n

    def record_late(self, topic: str, n: int) -> None:
        """`n` events of `topic` arrived too late for any window (labels, images)."""
        if n:
            self.late[topic] += n

    def _group(self, events: Sequence[PredictionEvent]) -> dict[tuple[str, str], EventGroup]:
        """Events by (model, cardinality-limited version); a batch of one (model, version),
        the usual case, is taken whole without a per-event loop."""
        n = len(events)
        models = list(map(itemgetter(_FIELD_INDEX["model"]), events))
        versions = list(map(itemgetter(_FIELD_INDEX["version"]), events))
        if models.count(models[0]) == n and versions.count(versions[0]) == n:
            key = (models[0], self.versions.key(models[0], versions[0], n))
            return {key: EventGroup(events)}
        groups: dict[tuple[str, str], EventGroup] = {}
        key_of = self.versions.key
        for e in events:
            key = (e.model, key_of(e.model, e.version))
            g = groups.get(key)
            if g is None:
                groups[key] = g = EventGroup()
            g.append(e)
        return groups

    def count_accepted(self, topic: str, n: int) -> None:
        self.accepted[topic] += n

    # --- reading ------------------------------------------------------------
    def capture(self) -> EngineCapture:
        """Copy what a snapshot needs (call under the lock that serialises `apply_*`): the
        counters and each extension's `capture()`; no statistic is computed here."""
        return EngineCapture(
            self.models, dict(self.consumed), dict(self.accepted), dict(self.rejected),
            dict(self.late), dict(self.versions.limited),
            {key: s.counts() for key, s in self.by_version.items()},
            tuple(ext.capture() for ext in self.extensions))

    def snapshot(self) -> dict[str, Series]:
        """Capture and render at once (for callers that hold no lock around apply)."""
        return self.capture().render()

    # --- checkpoint -----------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "consumed": dict(self.consumed),
            "accepted": dict(self.accepted),
            "rejected": [[t, r, n] for (t, r), n in self.rejected.items()],
            "late": dict(self.late),
            "versions": {m: list(v) for m, v in self.versions.known.items()},
            "limited": dict(self.versions.limited),
            "by_version": [[m, v, s.state()] for (m, v), s in self.by_version.items()],
            "extensions": self._extension_states(),
        }

    def _extension_states(self) -> dict[str, Any]:
        """Each extension's state under its explicit `name` (stable across class renames)."""
        out = {x.name: x.state() for x in self.extensions}
        if len(out) != len(self.extensions):
            raise ValueError(f"two engine extensions share a name: "
                             f"{[x.name for x in self.extensions]}")
        return out

    def restore(self, state: Mapping[str, Any]) -> None:
        self.consumed.update(state["consumed"])
        self.accepted.update(state["accepted"])
        for t, r, n in state["rejected"]:
            self.rejected[(t, r)] = n
        self.late.update(state["late"])
        for m, versions in state["versions"].items():
            self.versions.known[m] = list(versions)
        self.versions.limited.update(state["limited"])
        for m, v, s in state["by_version"]:
            if m not in self.models:
                continue
            vs = self.by_version[(m, v)] = VersionState(len(self.models[m]))
            vs.restore(s)
            if vs.last_ts > self.watermark.get(m, -math.inf):  # NaN (no event) compares False
                self.watermark[m] = vs.last_ts
        ext_state = state.get("extensions", {})
        for ext in self.extensions:
            if ext.name in ext_state:
                ext.restore(ext_state[ext.name])


def nan_if_null(x: float | None) -> float:
    """A float read back from a checkpoint: NaN is written as JSON null."""
    return math.nan if x is None else float(x)


class EngineExtension:
    """A block of statistics fed by the engine (drift, labels, shadow scoring)."""

    #: the key of this extension's state in a checkpoint: explicit, so that renaming the
    #: class does not orphan the state
    name: ClassVar[str]

    def on_predictions(self, groups: Mapping[tuple[str, str], EventGroup]) -> None:
        """Called after the core counters took a batch, grouped by (model, version) where
        the version is already cardinality-limited (`_other`)."""

    def capture(self) -> Captured:
        """Copy what this block's series need, under the caller's lock: counts and window
        totals, never a statistic (those are computed by the copy's `render`, outside the
        lock, where a scrape cannot stall ingestion)."""
        return NoSeries()

    def snapshot(self, b: SnapshotBuilder) -> None:
        """Add this extension's series to a snapshot now: capture, then render."""
        self.capture().render(b)

    def state(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        """Load what `state()` returned."""
