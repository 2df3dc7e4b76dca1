"""Snapshots rendered in a worker process, so that their statistics, text and gzip never take
the consumer loop's interpreter (its GIL).

A 1,000-class model's snapshot costs about 0.9 s of CPU (statistics, OpenMetrics text,
gzip); rendered in the daemon's process, every second of it is taken from the consumer loop.
Here the daemon only copies the counts (`capture`, under its lock, ~10 ms) and pickles the
copy (~10 ms); a long-lived worker process, started once with `python -m
collectors.render_worker`, renders it on another core and sends back the bodies /metrics
serves (~0.6 MB gzipped). The series themselves come back only when a reader asks for them
(the OpenTelemetry bridge, a `name[]` filter).

What a copy shares with the next one is sent once: immutable parts (the baseline and its
profiles, reservoir entries) are kept by the worker while each copy uses them, and the
memos of the renders (`AgreementMemo`, `MmdResults`) live in the worker. The series cap
(`limits.max_series_per_metric`) is applied there too.

The worker is an optimisation, never a dependency: while it starts (it imports for a second
or more; a daemon's first scrape does not wait for it), after it died (restarted
with a back-off, counted in `visionmon_render_worker_restarts_total{reason}`), or when it did
not answer within `timeout_s` (then killed), the snapshot is rendered in the daemon's process
as before, so a scrape is served and never waits longer than the timeout. The worker runs in
its own session (signals to the daemon's process group do not reach it) and exits when the
daemon closes the channel or dies.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from collectors.bodies import BodyFormat, gzipped, write_plain
from collectors.exposition import ExpositionWriter
from collectors.snapshot_cache import LocalOrigin, RenderedSnapshot, stamped, write_body
from monitor.baseline import AgreementProfile, Baseline, EmbeddingProfile, FeatureProfile
from monitor.series_cap import SeriesCap
from monitor.shadow import MmdResults, ReservoirEntry
from monitor.snapshot import Series, Snapshot
from monitor.stats.accuracy_estimate import IsotonicMap
from monitor.stats.agreement import AgreementMemo
from monitor.stats.mmd_null import MmdNull, MmdReference

log = logging.getLogger(__name__)

#: parts of a copy that never change once made: sent once, kept while copies use them
IMMUTABLE = (Baseline, FeatureProfile, EmbeddingProfile, AgreementProfile, IsotonicMap,
             MmdReference, MmdNull, ReservoirEntry)
#: what renders remember across copies: the worker keeps its own (they pickle as empty ones)
MEMOS = (AgreementMemo, MmdResults)
_SENT_ONCE: dict[type, str] = {**dict.fromkeys(IMMUTABLE, "immutable"),
                               **dict.fromkeys(MEMOS, "memo")}
#: seconds the worker may take to answer before it is killed (a render of a 1,000-class
#: model takes about 1 s of CPU)
TIMEOUT_S = 30.0
#: seconds between two starts of the worker (a worker that cannot start is not respawned
#: in a loop; renders are local meanwhile)
RESTART_BACKOFF_S = 10.0
#: snapshots whose series the worker keeps for later requests (a body in a format asked for
#: the first time, the series for the OpenTelemetry bridge)
KEPT_SNAPSHOTS = 2


class Renderable(Protocol):
    """A copy of the counts that renders into series anywhere (shares nothing that ingestion
    changes), each metric within `cap`'s label sets."""

    def render(self, cap: SeriesCap) -> Mapping[str, Series]: ...


class WorkerUnavailable(Exception):
    """The worker is starting, died, or did not answer in time."""


class RenderFailed(Exception):
    """The worker's render raised (the traceback, from the worker, is the message)."""


# --- pickling across the channel ----------------------------------------------------------
class _CopyPickler(pickle.Pickler):
    """Pickles messages for the worker: immutable parts it already holds by reference,
    memos as a reference to the worker's own."""

    def __init__(self, file: io.BytesIO, sent: dict[int, object], used: set[int]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._sent = sent
        self._used = used
        self._inline: int | None = None

    def persistent_id(self, obj: Any) -> Any:
        kind = _SENT_ONCE.get(type(obj))  # called for every object: one lookup for most
        if kind is None:
            return None
        key = id(obj)
        if key == self._inline:  # the object of a ("new", ...) reference: by value
            self._inline = None
            return None
        if kind == "memo":
            factory, args = obj.__reduce__()[:2]
            return ("memo", key, factory, args)
        self._used.add(key)
        if key in self._sent:
            return ("ref", key)
        self._sent[key] = obj  # held, so that its id is not reused while the worker has it
        self._inline = key
        return ("new", key, obj)


class _CopyUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, kept: dict[int, object], memos: dict[int, object]) -> None:
        super().__init__(io.BytesIO(data))
        self._kept = kept
        self._memos = memos

    def persistent_load(self, pid: Any) -> Any:
        if pid[0] == "memo":
            _, key, factory, args = pid
            memo = self._memos.get(key)
            if memo is None:
                memo = self._memos[key] = factory(*args)
            return memo
        if pid[0] == "new":
            self._kept[pid[1]] = pid[2]
            return pid[2]
        return self._kept[pid[1]]


# --- the worker process ---------------------------------------------------------------------
class _Worker:
    """The worker's state: the immutable parts and memos it was sent, the series cap, and
    the series of the last snapshots."""

    def __init__(self, cap: SeriesCap) -> None:
        self._cap = cap
        self._writer = ExpositionWriter()
        self._kept: dict[int, object] = {}
        self._memos: dict[int, object] = {}
        self._series: dict[int, Snapshot] = {}

    def handle(self, data: bytes) -> tuple[Any, ...] | None:
        """The reply to one message; None for `stop`."""
        unpickler = _CopyUnpickler(data, self._kept, self._memos)
        msg = unpickler.load()
        kind = msg[0]
        if kind == "stop":
            return None
        for key in unpickler.load():  # parts the copies no longer use
            self._kept.pop(key, None)
        try:
            if kind == "render":
                return self._render(*msg[1:])
            series = self._series.get(msg[1])
            if series is None:
                return ("gone",)
            if kind == "series":
                return ("series", series)
            return ("body", self._body(series, msg[2]))
        except Exception:
            return ("error", traceback.format_exc())

    def _render(self, seq: int, wall_time: float, copy: Renderable,
                formats: tuple[BodyFormat, ...]) -> tuple[Any, ...]:
        start = time.perf_counter()
        series = copy.render(self._cap)
        seconds = time.perf_counter() - start
        done = stamped(series, wall_time, seconds)
        self._series[seq] = done
        for old in sorted(self._series)[:-KEPT_SNAPSHOTS]:
            del self._series[old]
        return ("rendered", seconds, {fmt: self._body(done, fmt) for fmt in formats})

    def _body(self, series: Snapshot, fmt: BodyFormat) -> bytes:
        plain = write_plain(series, fmt.plain(), self._writer)
        return gzipped(plain) if fmt.gzipped else plain


def main(argv: list[str]) -> int:
    """The worker: `python -m collectors.render_worker FD SERIES_LIMIT`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon says when to stop
    logging.basicConfig(level=logging.WARNING, format="render worker: %(message)s")
    conn = Connection(int(argv[1]))
    worker = _Worker(SeriesCap(int(argv[2])))
    conn.send_bytes(pickle.dumps(("ready",)))
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return 0  # the daemon closed the channel or died
        reply = worker.handle(data)
        if reply is None:
            return 0
        try:
            conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            return 0  # the daemon went away while this render ran


# --- the daemon's side ------------------------------------------------------------------------
class _Channel:
    """One worker process and the socket to it."""

    def __init__(self, series_limit: int) -> None:
        mine, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[1])  # the code this daemon runs
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root if not path else root + os.pathsep + path}
        with theirs:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "collectors.render_worker", str(theirs.fileno()),
                 str(series_limit)],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)
        self.conn = Connection(mine.detach())
        self.ready = False
        #: immutable parts the worker holds, by id
        self.sent: dict[int, object] = {}

    def close(self, wait_s: float) -> None:
        with contextlib.suppress(OSError):
            self.conn.send_bytes(pickle.dumps(("stop",)))
        self.conn.close()
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class WorkerOrigin:
    """A snapshot rendered by the worker: its series and other bodies are asked of the
    worker, or rendered here from the same copy when the worker cannot answer."""

    def __init__(self, worker: RenderWorker, seq: int, copy: Renderable, wall_time: float
                 ) -> None:
        self._worker = worker
        self._seq = seq
        self._copy = copy
        self._wall = wall_time
        self._local: LocalOrigin | None = None

    def series(self) -> Snapshot:
        try:
            return self._worker.ask(("series", self._seq))  # type: ignore[no-any-return]
        except WorkerUnavailable:
            return self._here().series()

    def body(self, fmt: BodyFormat, rendered: RenderedSnapshot) -> bytes:
        try:
            return self._worker.ask(("body", self._seq, fmt))  # type: ignore[no-any-return]
        except WorkerUnavailable:
            return self._here().body(fmt, rendered)

    def _here(self) -> LocalOrigin:
        if self._local is None:
            self._local = self._worker.render_here(self._copy, self._wall)
        return self._local


class RenderWorker:
    """The daemon's side of the worker (a `SnapshotRenderer` for `SnapshotCache`): copies
    the counts with `capture`, has the worker render them, and falls back to rendering here
    (with `cap`) when the worker is unavailable."""

    def __init__(self, capture: Callable[[], Renderable], cap: SeriesCap,
                 clock: Callable[[], float] = time.monotonic, timeout_s: float = TIMEOUT_S,
                 restart_backoff_s: float = RESTART_BACKOFF_S) -> None:
        self._capture = capture
        self._cap = cap
        self._clock = clock
        self._timeout = timeout_s
        self._backoff = restart_backoff_s
        self._write = write_body(ExpositionWriter())
        self._lock = threading.Lock()  # one request on the channel at a time
        self._channel: _Channel | None = None
        self._started = self._closed = False
        self._seq = 0
        #: worker restarts by reason: `exited` (it died), `timeout` (killed: no answer)
        self.restarts: dict[str, int] = {"exited": 0, "timeout": 0}

    def start(self) -> None:
        """Start the worker process (it imports for about a second; renders asked for
        before it is ready are done here)."""
        with self._lock:
            if self._channel is None and not self._closed:
                self._channel = _Channel(self._cap.limit)
                self._started = True

    def close(self, wait_s: float = 5.0) -> None:
        """Stop the worker: it exits when told, or is killed after `wait_s`."""
        with self._lock:
            self._closed = True
            if self._channel is not None:
                self._channel.close(wait_s)
                self._channel = None

    @property
    def pid(self) -> int | None:
        """The worker's process id (None while none runs)."""
        return None if self._channel is None else self._channel.proc.pid

    def __call__(self, taken_at: float, wall_time: float, formats: Iterable[BodyFormat]
                 ) -> RenderedSnapshot:
        copy = self._capture()
        fmts = tuple(formats)
        with self._lock:
            self._seq += 1
            seq = self._seq
        try:
            seconds, bodies = self.ask(("render", seq, wall_time, copy, fmts))
        except WorkerUnavailable:
            local, seconds = self._render_here(copy, wall_time)
            rendered = RenderedSnapshot(local, taken_at, wall_time, seconds)
            for fmt in fmts:
                rendered.body(fmt)
            return rendered
        return RenderedSnapshot(WorkerOrigin(self, seq, copy, wall_time), taken_at, wall_time,
                                seconds, bodies)

    def render_here(self, copy: Renderable, wall_time: float) -> LocalOrigin:
        """Render a copy in this process (the worker is unavailable)."""
        return self._render_here(copy, wall_time)[0]

    def _render_here(self, copy: Renderable, wall_time: float) -> tuple[LocalOrigin, float]:
        start = time.perf_counter()
        series = copy.render(self._cap)
        seconds = time.perf_counter() - start
        return LocalOrigin(stamped(series, wall_time, seconds), self._write), seconds

    def ask(self, msg: tuple[Any, ...]) -> Any:
        """Send `msg` to the worker and return its answer. Raises WorkerUnavailable (the
        worker is starting, or died or timed out: then it is restarted later), RenderFailed."""
        with self._lock:
            channel = self._ready_channel()
            try:
                channel.conn.send_bytes(self._pickled(channel, msg).getbuffer())
                if not channel.conn.poll(self._timeout):
                    self._lost(channel, "timeout")
                    raise WorkerUnavailable(f"no answer in {self._timeout:g}s")
                reply = pickle.loads(channel.conn.recv_bytes())
            except (EOFError, OSError) as err:
                self._lost(channel, "exited")
                raise WorkerUnavailable(str(err)) from None
        if reply[0] == "error":
            raise RenderFailed(reply[1])
        if reply[0] == "gone":
            raise WorkerUnavailable("the worker no longer has that snapshot")
        return reply[1:] if reply[0] == "rendered" else reply[1]

    @staticmethod
    def _pickled(channel: _Channel, msg: tuple[Any, ...]) -> io.BytesIO:
        """`msg`, then the immutable parts the worker may drop: those a render's copy no
        longer uses."""
        buf, used, before = io.BytesIO(), set[int](), set(channel.sent)
        try:
            _CopyPickler(buf, channel.sent, used).dump(msg)
        except Exception as err:  # a copy that does not pickle (a bug): render it here
            for key in set(channel.sent) - before:  # never sent
                del channel.sent[key]
            log.error("a snapshot copy could not be sent to the render worker: %s", err)
            raise WorkerUnavailable(str(err)) from err
        forget = tuple(k for k in channel.sent if k not in used) if msg[0] == "render" else ()
        for key in forget:
            del channel.sent[key]
        pickle.dump(forget, buf, protocol=pickle.HIGHEST_PROTOCOL)
        return buf

    def _ready_channel(self) -> _Channel:
        """The worker's channel once it said it is ready; a worker that died is restarted
        here (at most once per back-off)."""
        channel = self._channel
        if self._closed or not self._started:
            raise WorkerUnavailable("not running (closed, or not started)")
        if channel is None:
            if self._clock() - self._last_start < self._backoff:
                raise WorkerUnavailable("restarting")
            channel = self._channel = _Channel(self._cap.limit)
            self._last_start = self._clock()
        if not channel.ready:
            # a worker that just started imports for a second or more: a render asked for
            # meanwhile (a daemon's first scrape) is done here rather than wait for it
            try:
                if not channel.conn.poll(0.0):
                    raise WorkerUnavailable("starting")
                channel.conn.recv_bytes()
            except (EOFError, OSError):
                self._lost(channel, "exited")
                raise WorkerUnavailable("the worker exited while starting") from None
            channel.ready = True
        return channel

    _last_start = -float("inf")

    def _lost(self, channel: _Channel, reason: str) -> None:
        """The worker died or hung: kill it, count it; the next request starts another."""
        self.restarts[reason] += 1
        code = channel.proc.poll()
        log.warning("render worker %s (%s); snapshots are rendered in the daemon until it "
                    "is restarted", "exited" if code is not None else "did not answer",
                    f"exit code {code}" if code is not None else f"{self._timeout:g}s")
        channel.close(0.0)
        self._channel = None
        self._last_start = self._clock()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
