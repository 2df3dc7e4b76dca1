"""Scrapes served from one rendered snapshot at a time: the statistics are computed at most
once per `http.snapshot_interval_seconds`, however many scrapers ask.

Rendering a snapshot of a 1,000-class model takes the better part of a second of CPU, and
Python's GIL takes it from the consumer loop. Every scrape that comes within the interval of
the last render gets that render's snapshot, and its exposition bytes are written once per
format. When the snapshot a scrape would get is older than the interval, the scrape waits for
a new one. When scrapes come more often than the interval, the next snapshot is rendered in
the background shortly before the current one expires, so that they do not wait; should that
render ahead take longer than foreseen (the machine is busy), scrapes get the current one
meanwhile, up to twice the interval old. So a scrape never gets counts copied more than the
interval before it arrived, or twice that while the next snapshot is on its way.

The snapshot carries `visionmon_snapshot_timestamp_seconds` (when its counts were copied;
`time() - ` it is the age of what a scrape sees) and `visionmon_snapshot_render_seconds`
(how long its statistics took), so that a number is never older than it says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from monitor.snapshot import Series, Snapshot

log = logging.getLogger(__name__)

SnapshotSource = Callable[[], Snapshot]
#: writes one exposition body (a format, compressed or not) of a rendered snapshot
BodyWriter = Callable[["RenderedSnapshot"], bytes]

TIMESTAMP = "visionmon_snapshot_timestamp_seconds"
RENDER_SECONDS = "visionmon_snapshot_render_seconds"


class RenderedSnapshot:
    """One snapshot, when its counts were copied, how long its render took, and its
    exposition bodies, each written once (on first request or ahead of it)."""

    __slots__ = ("_bodies", "_lock", "render_seconds", "snapshot", "taken_at", "wall_time")

    def __init__(self, snapshot: Snapshot, taken_at: float, wall_time: float,
                 render_seconds: float) -> None:
        self.snapshot = snapshot
        #: monotonic seconds when the render started (the counts are copied first)
        self.taken_at = taken_at
        #: wall-clock seconds of the same instant
        self.wall_time = wall_time
        self.render_seconds = render_seconds
        self._bodies: dict[str, tuple[BodyWriter, bytes]] = {}
        self._lock = threading.RLock()  # a gzip body is written from the plain one

    def body(self, key: str, write: BodyWriter) -> bytes:
        """The body named `key`, written by `write` the first time it is asked for."""
        with self._lock:
            got = self._bodies.get(key)
            if got is None:
                got = self._bodies[key] = (write, write(self))
            return got[1]

    def writers(self) -> dict[str, BodyWriter]:
        """The bodies written so far, by key: the next snapshot writes them ahead."""
        with self._lock:
            return {key: w for key, (w, _) in self._bodies.items()}


def _in_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="visionmon-snapshot", daemon=True).start()


class SnapshotCache:
    """Renders snapshots from `source` at most once per `interval_s` for every reader (the
    /metrics endpoint, the OpenTelemetry bridge). `interval_s` = 0: every read renders."""

    def __init__(self, source: SnapshotSource, interval_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 background: Callable[[Callable[[], None]], None] = _in_thread) -> None:
        self._source = source
        self.interval_s = interval_s
        self._clock = clock
        self._wall = wall_clock
        self._background = background
        self._cond = threading.Condition()
        self._current: RenderedSnapshot | None = None
        self._rendering = False
        #: the render under way was started ahead (not by a read that found none fresh)
        self._ahead = False
        self._last_read: float | None = None
        #: seconds the last render ahead took, its bodies included
        self._ahead_seconds = 0.0

    def latest(self) -> RenderedSnapshot:
        """A snapshot whose counts were copied at most `interval_s` before this call (the
        current one, one under way, or a new one rendered now), or at most twice that while
        the next one is rendered ahead."""
        arrival = self._clock()
        ahead = False
        with self._cond:
            gap = None if self._last_read is None else arrival - self._last_read
            self._last_read = arrival
            while True:
                current = self._current
                if current is not None and current.taken_at >= arrival - self.interval_s:
                    ahead = self._refresh_ahead(current, arrival, gap)
                    self._rendering = self._rendering or ahead
                    self._ahead = self._ahead or ahead
                    break
                if (current is not None and self._ahead
                        and current.taken_at >= arrival - 2 * self.interval_s):
                    break  # the next one is on its way
                if not self._rendering:
                    self._rendering = True
                    current = None
                    break
                self._cond.wait()
        if current is None:
            return self._render(ahead=False)
        if ahead:
            self._background(self._render_ahead)
        return current

    def snapshot(self) -> Snapshot:
        """The latest snapshot's series (a `SnapshotSource`)."""
        return self.latest().snapshot

    def _refresh_ahead(self, current: RenderedSnapshot, now: float, gap: float | None) -> bool:
        """Start the next render now? When reads come more often than the interval (`gap`,
        the time since the previous read, is the guess of the time to the next) and the
        current snapshot would have expired by the next read once a render ahead's time
        (its bodies included) is counted: then that read finds a fresh one instead of
        waiting for it."""
        if self._rendering or gap is None or gap >= self.interval_s:
            return False
        age = now - current.taken_at
        cost = max(current.render_seconds, self._ahead_seconds)
        return age + gap + cost >= self.interval_s

    def _render_ahead(self) -> None:
        start = self._clock()
        try:
            self._render(ahead=True)
        except Exception:  # the next read renders again and gets the error itself
            log.warning("rendering the next snapshot failed", exc_info=True)
        self._ahead_seconds = self._clock() - start

    def _render(self, ahead: bool) -> RenderedSnapshot:
        """Render a snapshot and make it current; one rendered ahead writes the bodies its
        predecessor was asked for before readers see it."""
        try:
            taken, wall = self._clock(), self._wall()
            series: dict[str, Series] = dict(self._source())
            seconds = self._clock() - taken
            series[TIMESTAMP] = {(): wall}
            series[RENDER_SECONDS] = {(): seconds}
            rendered = RenderedSnapshot(series, taken, wall, seconds)
            previous = self._current
            if ahead and previous is not None:
                for key, write in previous.writers().items():
                    rendered.body(key, write)
        except BaseException:
            with self._cond:
                self._rendering = self._ahead = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._current = rendered
            self._rendering = self._ahead = False
            self._cond.notify_all()
        return rendered
