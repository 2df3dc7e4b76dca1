"""Scrapes served from one rendered snapshot at a time: the statistics are computed at most
once per `http.snapshot_interval_seconds`, however many scrapers ask.

Rendering a snapshot of a 1,000-class model takes the better part of a second of CPU, and
Python's GIL takes it from the consumer loop. Every scrape that comes within the interval of
the last render gets that render's snapshot, and its exposition bytes are written once per
format. When the snapshot a scrape would get is older than the interval, the scrape waits for
a new one. When scrapes come more often than the interval, the next snapshot is rendered in
the background shortly before the current one expires, so that they do not wait; should that
render ahead take longer than foreseen (the machine is busy), scrapes get the current one
meanwhile, up to twice the interval old. The first snapshot is rendered when the daemon
starts (`warm`), so the first scrape does not wait for a cold render either. When scrapes
come less often than the interval (Prometheus every 15 s, snapshots every 5 s), the next
snapshot is rendered on a timer, a
little more than twice the slowest recent render before the next scrape is due (the gap
between the reader's last two; each reader, a scraper by its address and agent or the
OpenTelemetry bridge, has its own cadence, and one render serves every read it is fresh
for), so that it does not wait either; a scrape that comes before that renders as before,
and the timer's render is dropped. So a scrape never gets counts copied
more than the interval before it arrived, or twice that while the next snapshot is on its
way.

Who renders is the renderer's choice: `source` in the thread that asks (a scrape, or the
render ahead), or the render worker process (collectors/render_worker.py, the default of
`visionmon run`), which computes the statistics, text and gzip off the daemon's interpreter
and sends back the bodies.

The snapshot carries `visionmon_snapshot_timestamp_seconds` (when its counts were copied;
`time() - ` it is the age of what a scrape sees) and `visionmon_snapshot_render_seconds`
(how long its statistics took), so that a number is never older than it says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from collectors.bodies import BodyFormat, gzipped, write_plain
from collectors.exposition import ExpositionWriter
from monitor.snapshot import Series, Snapshot

log = logging.getLogger(__name__)

SnapshotSource = Callable[[], Snapshot]
#: writes the uncompressed body of a format for a snapshot's series
BodyWriter = Callable[[Snapshot, BodyFormat], bytes]

#: renders whose time is remembered to foresee the next one's
RENDERS_REMEMBERED = 3
#: a render for a foreseen scrape starts this many times the slowest recent render (s)
#: before the scrape is due, plus `FORESEEN_SLACK_S`, and never earlier than the interval
FORESEEN_LEAD = 2.0
FORESEEN_SLACK_S = 0.25
#: scrapes further apart than this (s) are not foreseen: their renders would more likely
#: be wasted than read
MAX_FORESEEN_GAP_S = 300.0
#: readers whose cadence is followed (the oldest is forgotten beyond it)
MAX_READERS = 16

TIMESTAMP = "visionmon_snapshot_timestamp_seconds"
RENDER_SECONDS = "visionmon_snapshot_render_seconds"


def stamped(series: Mapping[str, Series], wall_time: float, seconds: float
            ) -> dict[str, Series]:
    """The series with when their counts were copied (wall-clock s) and how long their
    statistics took (s)."""
    out = dict(series)
    out[TIMESTAMP] = {(): wall_time}
    out[RENDER_SECONDS] = {(): seconds}
    return out


class SnapshotOrigin(Protocol):
    """Where a rendered snapshot's series and bodies come from: this process, or the
    render worker process that rendered it."""

    def series(self) -> Snapshot:
        """The snapshot's series."""
        ...

    def body(self, fmt: BodyFormat, rendered: RenderedSnapshot) -> bytes:
        """The body of `fmt` (a gzip body may be written from `rendered`'s plain one)."""
        ...


class LocalOrigin:
    """Series rendered in this process; bodies written here by `write`."""

    def __init__(self, series: Snapshot, write: BodyWriter) -> None:
        self._series = series
        self._write = write

    def series(self) -> Snapshot:
        return self._series

    def body(self, fmt: BodyFormat, rendered: RenderedSnapshot) -> bytes:
        if fmt.gzipped:
            return gzipped(rendered.body(fmt.plain()))
        return self._write(self._series, fmt)


class RenderedSnapshot:
    """One snapshot, when its counts were copied, how long its render took, and its
    exposition bodies, each written once (ahead of the first request, or on it)."""

    __slots__ = ("_bodies", "_lock", "_origin", "_series", "render_seconds", "taken_at",
                 "wall_time")

    def __init__(self, origin: SnapshotOrigin, taken_at: float, wall_time: float,
                 render_seconds: float, bodies: Mapping[BodyFormat, bytes] | None = None
                 ) -> None:
        self._origin = origin
        #: monotonic seconds when the render started (the counts are copied first)
        self.taken_at = taken_at
        #: wall-clock seconds of the same instant
        self.wall_time = wall_time
        self.render_seconds = render_seconds
        self._series: Snapshot | None = None
        self._bodies: dict[BodyFormat, bytes] = dict(bodies or {})
        self._lock = threading.RLock()  # a gzip body is written from the plain one

    @property
    def snapshot(self) -> Snapshot:
        """The series (fetched once from where they were rendered)."""
        with self._lock:
            if self._series is None:
                self._series = self._origin.series()
            return self._series

    def body(self, fmt: BodyFormat) -> bytes:
        """The body of `fmt`, written the first time it is asked for."""
        with self._lock:
            got = self._bodies.get(fmt)
            if got is None:
                got = self._bodies[fmt] = self._origin.body(fmt, self)
            return got

    def formats(self) -> tuple[BodyFormat, ...]:
        """The bodies written so far: the next snapshot writes them ahead."""
        with self._lock:
            return tuple(self._bodies)


class SnapshotRenderer(Protocol):
    """Renders a new snapshot whose counts are copied now (`taken_at` monotonic s,
    `wall_time` wall-clock s), with the bodies of `formats` written ahead."""

    def __call__(self, taken_at: float, wall_time: float,
                 formats: Iterable[BodyFormat]) -> RenderedSnapshot: ...


def write_body(writer: ExpositionWriter) -> BodyWriter:
    """Bodies by `writer` (or prometheus_client's encoder for the formats it leaves)."""
    return lambda snapshot, fmt: write_plain(snapshot, fmt, writer)


def _in_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="visionmon-snapshot", daemon=True).start()


def _after(delay_s: float, work: Callable[[], None]) -> None:
    timer = threading.Timer(delay_s, work)
    timer.name, timer.daemon = "visionmon-snapshot-timer", True
    timer.start()


@dataclass(slots=True)
class _Reader:
    """One reader of the cache: when it last read (monotonic s) and its latest plan."""

    last: float
    plan: int


class SnapshotCache:
    """Renders snapshots from `source` at most once per `interval_s` for every reader (the
    /metrics endpoint, the OpenTelemetry bridge). `interval_s` = 0: every read renders."""

    def __init__(self, source: SnapshotSource, interval_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 background: Callable[[Callable[[], None]], None] = _in_thread,
                 renderer: SnapshotRenderer | None = None,
                 writer: BodyWriter | None = None,
                 schedule: Callable[[float, Callable[[], None]], None] = _after) -> None:
        """`source` is rendered in this process unless a `renderer` (the render worker)
        renders; `writer` writes the bodies of what is rendered here; `schedule(delay_s,
        work)` runs a render for a foreseen scrape later (a timer thread)."""
        self._source = source
        self._renderer = renderer or self._render_here
        self._write = writer or write_body(ExpositionWriter())
        self.interval_s = interval_s
        self._clock = clock
        self._wall = wall_clock
        self._background = background
        self._schedule = schedule
        #: per reader (a scraper, the OpenTelemetry bridge): when it last read, and the
        #: render planned for its next read (a later read of the same reader drops it)
        self._readers: OrderedDict[str, _Reader] = OrderedDict()
        self._plans = 0
        self._closed = False
        self._cond = threading.Condition()
        self._current: RenderedSnapshot | None = None
        self._rendering = False
        #: the render under way was started ahead (not by a read that found none fresh)
        self._ahead = False
        #: seconds the last renders took (wall, their bodies included): the slowest of
        #: them is the guess of the next one's (a busy machine stretches some)
        self._walls: deque[float] = deque(maxlen=RENDERS_REMEMBERED)

    def latest(self, reader: str = "") -> RenderedSnapshot:
        """A snapshot whose counts were copied at most `interval_s` before this call (the
        current one, one under way, or a new one rendered now), or at most twice that while
        the next one is rendered ahead. `reader` names who reads (a scraper's address and
        agent): each reader's cadence foresees its own next read."""
        arrival = self._clock()
        ahead = False
        with self._cond:
            gap = self._arrived(reader, arrival)
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
            plan = None if current is None else self._foresee(reader, arrival, gap)
        if current is None:
            current = self._render(ahead=False)
            with self._cond:  # foreseen with this render's time among the recent ones
                plan = self._foresee(reader, arrival, gap)
        if plan is not None:
            try:
                self._schedule(*plan)
            except Exception:  # no thread to be had: this read is served all the same
                log.warning("could not plan the next snapshot's render", exc_info=True)
        if ahead:
            self._background(self._render_ahead)
        return current

    def warm(self) -> None:
        """Render the first snapshot in the background now (the daemon starts), so that the
        first scrape finds one instead of paying for a cold render; a scrape that comes while
        it is under way waits for it, as for any render. Nothing when one exists or is under
        way, or when every read renders anyway (interval 0)."""
        with self._cond:
            if (self._closed or self._current is not None or self._rendering
                    or self.interval_s <= 0):
                return
            self._rendering = self._ahead = True
        try:
            self._background(self._render_ahead)
        except Exception:  # no thread to be had: the first scrape renders
            with self._cond:
                self._rendering = self._ahead = False
                self._cond.notify_all()
            log.warning("could not render the first snapshot ahead", exc_info=True)

    def snapshot(self, reader: str = "") -> Snapshot:
        """The latest snapshot's series (a `SnapshotSource`)."""
        return self.latest(reader).snapshot

    def close(self) -> None:
        """Render nothing more for foreseen reads (the daemon stops)."""
        with self._cond:
            self._closed = True

    def _arrived(self, reader: str, arrival: float) -> float | None:
        """Note a read of `reader`; the time since its previous read (s), if any (under
        the lock)."""
        known = self._readers.pop(reader, None)
        self._readers[reader] = _Reader(arrival, known.plan if known else 0)
        while len(self._readers) > MAX_READERS:
            self._readers.popitem(last=False)
        return None if known is None else arrival - known.last

    def _refresh_ahead(self, current: RenderedSnapshot, now: float, gap: float | None) -> bool:
        """Start the next render now? When reads come more often than the interval (`gap`,
        the time since the previous read, is the guess of the time to the next) and the
        current snapshot would have expired by the next read once a render's time (the
        slowest of the last few, bodies included) is counted: then that read finds a fresh
        one instead of waiting for it."""
        if self._rendering or gap is None or gap >= self.interval_s:
            return False
        age = now - current.taken_at
        cost = max(current.render_seconds, *self._walls)
        return age + gap + cost >= self.interval_s

    def _foresee(self, reader: str, arrival: float, gap: float | None
                 ) -> tuple[float, Callable[[], None]] | None:
        """When `reader` reads less often than the interval, the delay from now (s) and the
        work of a render that its next read, due `gap` after this one's `arrival`, finds
        fresh; this read drops the reader's earlier plan (under the lock)."""
        known = self._readers.get(reader)
        if known is None:  # forgotten meanwhile among too many readers
            return None
        self._plans += 1
        plan = known.plan = self._plans
        if (self.interval_s <= 0 or gap is None or gap < self.interval_s
                or gap > MAX_FORESEEN_GAP_S):
            return None
        cost = max(self._walls, default=0.0)
        # never earlier than the interval before the read, less a margin for a late read
        lead = min(max(0.0, self.interval_s - FORESEEN_SLACK_S),
                   FORESEEN_LEAD * cost + FORESEEN_SLACK_S)
        due = arrival + gap
        return (max(0.0, due - lead - self._clock()),
                lambda: self._render_foreseen(reader, plan, due))

    def _render_foreseen(self, reader: str, plan: int, due: float) -> None:
        """The timer of `reader`'s `plan` is due: render, unless the reader read again since,
        a render is under way, the current snapshot is still fresh for the read due at
        `due` (another reader's render came first), or the cache is closed."""
        with self._cond:
            known = self._readers.get(reader)
            current = self._current
            if (self._closed or known is None or known.plan != plan or self._rendering
                    or (current is not None and current.taken_at
                        >= due - self.interval_s + FORESEEN_SLACK_S)):
                return
            self._rendering = self._ahead = True
        self._render_ahead()

    def _render_ahead(self) -> None:
        try:
            self._render(ahead=True)
        except Exception:  # the next read renders again and gets the error itself
            log.warning("rendering the next snapshot failed", exc_info=True)

    def _render_here(self, taken_at: float, wall_time: float,
                     formats: Iterable[BodyFormat]) -> RenderedSnapshot:
        """Render `source` in this thread, then write the bodies of `formats`."""
        series = dict(self._source())
        seconds = self._clock() - taken_at
        rendered = RenderedSnapshot(LocalOrigin(stamped(series, wall_time, seconds),
                                                self._write), taken_at, wall_time, seconds)
        for fmt in formats:
            rendered.body(fmt)
        return rendered

    def _render(self, ahead: bool) -> RenderedSnapshot:
        """Render a snapshot and make it current, with the bodies its predecessor was asked
        for (one rendered ahead writes them before readers see it)."""
        try:
            previous = self._current
            formats = previous.formats() if previous is not None else ()
            start = self._clock()
            rendered = self._renderer(start, self._wall(), formats)
            self._walls.append(self._clock() - start)
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
