"""Scrapes share one rendered snapshot per `http.snapshot_interval_seconds`: never an older
one, rendered ahead when scrapes come often, its age and cost on /metrics; and /metrics keeps
prometheus_client's content negotiation."""

from __future__ import annotations

import gzip
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collectors.bodies import BodyFormat
from collectors.exporter import build_registry
from collectors.http_server import HttpEndpoints, HttpServer
from collectors.snapshot_cache import RENDER_SECONDS, TIMESTAMP, BodyWriter, SnapshotCache
from monitor.config import HttpConfig, parse_config, resolve
from monitor.snapshot import Snapshot

WALL = 1_800_000_000.0


class Clock:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Source:
    """A snapshot source that counts its renders and takes `cost` seconds of the clock."""

    def __init__(self, clock: Clock, cost: float = 0.0) -> None:
        self.clock = clock
        self.cost = cost
        self.renders = 0
        self.fail = False

    def __call__(self) -> Snapshot:
        if self.fail:
            raise RuntimeError("statistics broke")
        self.renders += 1
        self.clock.now += self.cost
        return {"visionmon_up": {(): float(self.renders)}}


class Later:
    """Background work held until `run()` (a render ahead, run when the test says)."""

    def __init__(self) -> None:
        self.work: list[Callable[[], None]] = []

    def __call__(self, work: Callable[[], None]) -> None:
        self.work.append(work)

    def run(self) -> None:
        work, self.work = self.work, []
        for w in work:
            w()


class Timers:
    """Timed work held until the test moves the clock to when it is due (`run_due`)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.due: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay_s: float, work: Callable[[], None]) -> None:
        self.due.append((self.clock.now + delay_s, work))

    def run_due(self, until: float) -> None:
        """Run the work due by `until`, each at its time, then leave the clock at `until`."""
        while ready := sorted((t, i) for i, (t, _) in enumerate(self.due) if t <= until):
            t, i = ready[0]
            work = self.due.pop(i)[1]
            self.clock.now = t
            work()
        self.clock.now = max(self.clock.now, until)


def _cache(interval: float, cost: float = 0.0, writer: BodyWriter | None = None
           ) -> tuple[SnapshotCache, Source, Clock, Later]:
    """A cache whose renders for foreseen scrapes never run (see `_timed_cache`)."""
    clock, later = Clock(), Later()
    source = Source(clock, cost)
    return (SnapshotCache(source, interval, clock, lambda: WALL + clock.now, later,
                          writer=writer, schedule=lambda delay, work: None),
            source, clock, later)


def _timed_cache(interval: float, cost: float = 0.0
                 ) -> tuple[SnapshotCache, Source, Clock, Timers]:
    clock = Clock()
    source, timers = Source(clock, cost), Timers(clock)
    return (SnapshotCache(source, interval, clock, lambda: WALL + clock.now, Later(),
                          schedule=timers), source, clock, timers)


#: a body format (prometheus_client's text format, not gzipped)
TEXT = BodyFormat(CONTENT_TYPE_PLAIN_0_0_4, generate_latest)


def _up(cache: SnapshotCache) -> float:
    value = cache.latest().snapshot["visionmon_up"][()]
    assert isinstance(value, float)
    return value


# (what, interval, scrape times after the first render) -> which render each scrape sees;
# a render ahead runs right after the scrape that started it
SCHEDULES = [
    ("a scrape within the interval gets the last render", 10.0, [4.0], [1]),
    ("a scrape after the interval gets a new render", 10.0, [10.5, 25.0], [2, 3]),
    ("interval 0 renders for every scrape", 0.0, [0.1, 0.2, 0.2], [2, 3, 3]),
    ("scrapes more often than the interval get renders ahead", 2.0,
     [0.5, 1.0, 1.5, 2.0, 2.5], [1, 1, 1, 2, 2]),
]


@pytest.mark.parametrize(("what", "interval", "times", "seen"), SCHEDULES,
                         ids=[s[0] for s in SCHEDULES])
def test_a_scrape_never_sees_counts_older_than_the_interval(
        what: str, interval: float, times: list[float], seen: list[int]) -> None:
    cache, _, clock, later = _cache(interval)
    start = clock.now
    assert _up(cache) == 1
    got = []
    for t in times:
        clock.now = start + t
        rendered = cache.latest()
        got.append(rendered.snapshot["visionmon_up"][()])
        assert clock.now - rendered.taken_at <= interval
        later.run()
    assert got == seen


def test_the_snapshot_says_when_its_counts_were_copied_and_what_it_cost() -> None:
    cache, _, clock, _ = _cache(5.0, cost=0.25)
    start = clock.now
    snap = cache.latest().snapshot
    assert snap[TIMESTAMP][()] == WALL + start
    assert snap[RENDER_SECONDS][()] == pytest.approx(0.25)
    clock.now += 4.0
    assert cache.latest().snapshot[TIMESTAMP][()] == WALL + start  # the same, 4 s later


def test_frequent_scrapes_get_the_next_snapshot_rendered_ahead_without_waiting() -> None:
    """Interval 10 s, a scrape a second, a render of 0.5 s: once age + 1 s + 0.5 s reaches
    10 s the next render starts in the background; scrapes meanwhile get the current one."""
    cache, source, clock, later = _cache(10.0, cost=0.5)
    start = clock.now
    assert _up(cache) == 1
    for t in range(1, 9):
        clock.now = start + t
        assert _up(cache) == 1
    assert not later.work
    clock.now = start + 9  # age 9 + 1 + 0.5 >= 10
    assert _up(cache) == 1 and len(later.work) == 1 and source.renders == 1
    clock.now = start + 9.5
    assert _up(cache) == 1 and len(later.work) == 1  # one render ahead at a time
    later.run()
    assert _up(cache) == 2 and source.renders == 2


def test_a_render_ahead_writes_the_bodies_the_last_snapshot_was_asked_for() -> None:
    written: list[float] = []

    def write(snapshot: Snapshot, fmt: BodyFormat) -> bytes:
        written.append(snapshot["visionmon_up"][()])  # type: ignore[arg-type]
        return b"body"

    cache, _, clock, later = _cache(2.0, writer=write)
    cache.latest().body(TEXT)
    clock.now += 0.5
    cache.latest()
    clock.now += 1.0
    cache.latest()  # age 1.5 + gap 1.0 >= 2: render ahead
    later.run()
    assert written == [1.0, 2.0]  # the second body was written before any scrape asked


def test_a_render_ahead_starts_earlier_by_the_time_its_bodies_took() -> None:
    """Interval 10 s, a scrape a second: the first render ahead starts at an age of 9 s; it
    writes a body for 2 s, so the next starts at an age of 7 s and is ready in time."""
    def slow(snapshot: Snapshot, fmt: BodyFormat) -> bytes:
        clock.now += 2.0
        return b"body"

    cache, _, clock, later = _cache(10.0, writer=slow)
    start = clock.now
    cache.latest().body(TEXT)
    for t in range(3, 10):
        clock.now = start + t
        cache.latest()
    assert len(later.work) == 1  # at t = 9: age 9 + gap 1 >= 10
    later.run()                  # the render taken at t = 9, its body written by t = 11
    for t in range(12, 16):
        clock.now = start + t
        assert _up(cache) == 2
    assert not later.work        # at t = 15: age 6 + gap 1 + 2 s < 10
    clock.now = start + 16
    cache.latest()
    assert len(later.work) == 1  # age 7 + gap 1 + 2 s >= 10


class Blocking:
    """A source whose second render blocks until released."""

    def __init__(self) -> None:
        self.release, self.started = threading.Event(), threading.Event()
        self.renders = 0

    def __call__(self) -> Snapshot:
        self.renders += 1
        if self.renders == 2:
            self.started.set()
            assert self.release.wait(10)
        return {"visionmon_up": {(): float(self.renders)}}


def _in_thread(f: Callable[[], Any], into: list[Any]) -> threading.Thread:
    t = threading.Thread(target=lambda: into.append(f()))
    t.start()
    return t


def test_while_a_render_ahead_is_late_scrapes_get_the_current_one_up_to_twice_the_interval(
) -> None:
    clock, source = Clock(), Blocking()
    threads: list[threading.Thread] = []
    cache = SnapshotCache(source, 1.0, clock, lambda: WALL,
                          lambda work: threads.append(_in_thread(work, [])),
                          schedule=lambda delay, work: None)
    assert _up(cache) == 1
    clock.now += 0.6
    assert _up(cache) == 1  # age 0.6 + gap 0.6 >= 1: the render ahead starts (and hangs)
    assert source.started.wait(10)
    clock.now += 0.6
    assert _up(cache) == 1  # 1.2 s old, the next on its way: no wait
    clock.now += 1.0
    got: list[Any] = []
    scrape = _in_thread(lambda: _up(cache), got)
    scrape.join(0.2)
    assert scrape.is_alive() and not got  # 2.2 s old: past twice the interval, it waits
    source.release.set()
    scrape.join(10)
    for t in threads:
        t.join(10)
    # the late render's counts (copied at 0.6 s) are too old for a scrape at 2.2 s: it got
    # one of its own
    assert got == [3.0] and source.renders == 3


def test_scrapes_that_find_no_fresh_snapshot_wait_for_the_same_render() -> None:
    clock, source = Clock(), Blocking()
    cache = SnapshotCache(source, 1.0, clock, lambda: WALL, lambda work: None,
                          schedule=lambda delay, work: None)
    assert _up(cache) == 1
    clock.now += 5.0
    first: list[Any] = []
    a = _in_thread(lambda: _up(cache), first)
    assert source.started.wait(10)  # the first scrape renders, and hangs
    second: list[Any] = []
    b = _in_thread(lambda: _up(cache), second)
    b.join(0.2)
    assert b.is_alive() and not second  # not served the expired one, not a second render
    source.release.set()
    a.join(10)
    b.join(10)
    assert first == second == [2.0] and source.renders == 2


def test_a_warmed_cache_serves_its_first_scrape_the_render_made_at_start() -> None:
    """`warm` (the daemon starts) renders in the background; the first scrape gets that
    render, and warming again, or a cache that has a snapshot, renders nothing more."""
    cache, source, clock, later = _cache(5.0, cost=0.4)
    cache.warm()
    cache.warm()
    assert len(later.work) == 1 and source.renders == 0
    later.run()
    clock.now += 1.0
    assert _up(cache) == 1 and source.renders == 1  # served, not rendered again
    cache.warm()
    assert not later.work


def test_a_scrape_during_the_warm_render_waits_for_it_and_renders_nothing_itself() -> None:
    clock, source = Clock(), Blocking()
    threads: list[threading.Thread] = []
    cache = SnapshotCache(source, 1.0, clock, lambda: WALL,
                          lambda work: threads.append(_in_thread(work, [])),
                          schedule=lambda delay, work: None)
    source.renders = 1  # the warm render is the one that blocks
    cache.warm()
    assert source.started.wait(10)
    got: list[Any] = []
    scrape = _in_thread(lambda: _up(cache), got)
    scrape.join(0.2)
    assert scrape.is_alive() and not got
    source.release.set()
    scrape.join(10)
    assert got == [2.0] and source.renders == 2


def test_warming_does_nothing_where_every_read_renders_or_no_thread_starts() -> None:
    cache, source, _, later = _cache(0.0)
    cache.warm()
    assert not later.work and _up(cache) == 1

    def no_thread(work: Callable[[], None]) -> None:
        raise RuntimeError("can't start new thread")

    clock = Clock()
    source = Source(clock)
    cache = SnapshotCache(source, 5.0, clock, lambda: WALL, no_thread,
                          schedule=lambda delay, work: None)
    cache.warm()
    assert _up(cache) == 1  # the first scrape renders, it does not wait forever


def test_a_failed_warm_render_leaves_the_first_scrape_to_render(
        caplog: pytest.LogCaptureFixture) -> None:
    cache, source, _, later = _cache(5.0)
    source.fail = True
    cache.warm()
    later.run()
    assert "rendering the next snapshot failed" in caplog.text
    source.fail = False
    assert _up(cache) == 1


def test_a_failed_render_fails_the_scrape_and_the_next_scrape_renders_again() -> None:
    cache, source, _, _ = _cache(1.0)
    source.fail = True
    with pytest.raises(RuntimeError, match="statistics broke"):
        cache.latest()
    source.fail = False
    assert _up(cache) == 1


def test_a_failed_render_ahead_is_logged_and_the_expired_snapshot_is_never_served(
        caplog: pytest.LogCaptureFixture) -> None:
    cache, source, clock, later = _cache(2.0)
    assert _up(cache) == 1
    clock.now += 1.5
    cache.latest()
    source.fail = True
    later.run()
    assert "rendering the next snapshot failed" in caplog.text
    source.fail = False
    clock.now += 1.0
    assert _up(cache) == 2


# --- over HTTP ------------------------------------------------------------------------------
@pytest.fixture
def served() -> Iterator[tuple[str, Source, Clock]]:
    clock = Clock()
    source = Source(clock)
    cache = SnapshotCache(source, 30.0, clock, lambda: WALL + clock.now)
    registry = build_registry(cache.snapshot)
    server = HttpServer(HttpEndpoints(registry, lambda: True, lambda: (True, "ready"),
                                      snapshots=cache), "127.0.0.1", 0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}/metrics", source, clock
    finally:
        server.stop()


def _get(url: str, **headers: str) -> tuple[dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(resp.headers), resp.read()


def _samples(text: str) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_scrapes_within_the_interval_get_the_same_bytes(
        served: tuple[str, Source, Clock]) -> None:
    url, source, clock = served
    _, first = _get(url)
    clock.now += 10.0
    _, again = _get(url)
    assert first == again and source.renders == 1
    samples = _samples(first.decode())
    assert samples["visionmon_up"] == 1.0
    assert samples["visionmon_snapshot_timestamp_seconds"] == WALL + 100.0
    assert "visionmon_snapshot_render_seconds" in samples


NEGOTIATION = [  # (who, Accept, Accept-Encoding, content type starts with)
    ("urllib", None, None, "text/plain; version=0.0.4"),
    ("Prometheus", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
     "gzip", "application/openmetrics-text; version=1.0.0"),
    ("curl --compressed", "*/*", "gzip, deflate", "text/plain; version=0.0.4"),
]


@pytest.mark.parametrize(("who", "accept", "encoding", "content_type"), NEGOTIATION,
                         ids=[n[0] for n in NEGOTIATION])
def test_each_scraper_gets_its_format_and_compression(
        served: tuple[str, Source, Clock], who: str, accept: str | None,
        encoding: str | None, content_type: str) -> None:
    url, _, _ = served
    headers = {k: v for k, v in (("Accept", accept), ("Accept-Encoding", encoding)) if v}
    got, body = _get(url, **headers)
    assert got["Content-Type"].startswith(content_type)
    if encoding and "gzip" in encoding:
        assert got["Content-Encoding"] == "gzip"
        body = gzip.decompress(body)
    text = body.decode()
    assert text.endswith("# EOF\n") == content_type.startswith("application/openmetrics")
    assert _samples(text)["visionmon_up"] == 1.0


def test_a_name_filter_and_other_methods_behave_as_prometheus_client(
        served: tuple[str, Source, Clock]) -> None:
    url, source, _ = served
    _, body = _get(url + "?name[]=visionmon_snapshot_render_seconds")
    assert set(_samples(body.decode())) == {"visionmon_snapshot_render_seconds"}
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=10)
    assert err.value.code == 405
    assert source.renders == 1


def test_the_daemon_serves_metrics_from_its_snapshot_cache(tmp_path: Path) -> None:
    from visionmon.app import App

    assert HttpConfig().snapshot_interval_seconds == 5.0
    assert HttpConfig().render_worker
    loaded = resolve(parse_config({
        "version": 1, "kafka": {"bootstrap_servers": ["127.0.0.1:9"]},
        "models": [{"name": "digits", "classes": [str(i) for i in range(10)]}],
        "http": {"port": 0, "snapshot_interval_seconds": 600}}))
    app = App(loaded)
    app.http.start()
    try:
        url = f"http://127.0.0.1:{app.http.port}/metrics"
        _, first = _get(url)
        _, again = _get(url)
        assert first == again  # one snapshot for ten minutes
        assert {"visionmon_snapshot_timestamp_seconds", "visionmon_snapshot_render_seconds",
                "visionmon_build_info"} <= set(_samples(first.decode()))
    finally:
        app.http.stop()


def test_scrapes_rarer_than_the_interval_find_a_snapshot_rendered_on_a_timer() -> None:
    """Interval 5 s, a scrape every 15 s (Prometheus), a render of 1 s: from the third
    scrape on, the render for the next one starts 2 x 1 s + 0.25 s before it is due, so the
    scrape finds it fresh and renders nothing itself."""
    cache, source, clock, timers = _timed_cache(5.0, cost=1.0)
    start = clock.now
    for k in range(1, 6):
        scrape_at = start + 15.0 * k
        timers.run_due(scrape_at)
        renders = source.renders
        rendered = cache.latest()
        assert clock.now - rendered.taken_at <= 5.0
        if k >= 3:  # the first scrape has no gap to foresee by; the second plans the third
            assert source.renders == renders, f"scrape {k} rendered"
            assert clock.now - rendered.taken_at == pytest.approx(2.25)
    assert source.renders == 5  # the first two scrapes' and one per foreseen scrape


def test_a_scrape_earlier_than_foreseen_renders_and_the_timer_does_nothing() -> None:
    cache, source, clock, timers = _timed_cache(5.0, cost=1.0)
    start = clock.now
    cache.latest()
    clock.now = start + 15.0
    cache.latest()                          # gap 15 s: a render planned at about 28 s
    assert source.renders == 2 and len(timers.due) == 1
    clock.now = start + 21.0
    cache.latest()                          # came early: renders itself, plans at 24.75 s
    assert source.renders == 3
    timers.run_due(start + 24.0)
    assert source.renders == 3
    timers.run_due(start + 28.0)         # the second plan renders, the first is dropped
    assert source.renders == 4 and timers.due == []


@pytest.mark.parametrize(("interval", "gap"), [(0.0, 15.0), (5.0, 301.0), (5.0, 2.0)],
                         ids=["interval 0", "scrapes too far apart", "scrapes more often"])
def test_no_render_is_planned_when_no_scrape_is_foreseen(interval: float, gap: float) -> None:
    cache, _, clock, timers = _timed_cache(interval)
    cache.latest()
    clock.now += gap
    cache.latest()
    assert timers.due == []


def test_a_scrape_that_renders_foresees_the_next_by_that_render() -> None:
    """The first render is cheap (0.1 s), the second scrape's own render slow (1 s): the
    render for the third scrape starts 2 x 1 s + 0.25 s before it is due, counted from the
    second scrape's arrival, not from the end of its render."""
    cache, source, clock, timers = _timed_cache(5.0, cost=0.1)
    start = clock.now
    cache.latest()
    source.cost = 1.0
    clock.now = start + 15.0
    cache.latest()
    ((due, _),) = timers.due
    assert due == pytest.approx(start + 30.0 - 2.25)


def test_a_render_that_cannot_finish_in_time_still_leaves_a_late_scrape_its_margin() -> None:
    """Interval 5 s, renders of 2.5 s: the render for the next scrape starts 4.75 s before it
    is due (not 5 s, nor 2 x 2.5 + 0.25), so a scrape 0.2 s late still finds it fresh."""
    cache, source, clock, timers = _timed_cache(5.0, cost=2.5)
    start = clock.now
    cache.latest()
    clock.now = start + 15.0
    cache.latest()
    ((due, _),) = timers.due
    assert due == pytest.approx(start + 30.0 - 4.75)
    timers.run_due(start + 30.2)
    renders = source.renders
    assert clock.now - cache.latest().taken_at <= 5.0 and source.renders == renders


def test_two_scrapers_a_second_apart_each_find_their_snapshot_ready() -> None:
    """Two Prometheus servers (an HA pair) scrape every 15 s, one second apart: each one's
    cadence is its own, one render serves both, and neither waits."""
    cache, source, clock, timers = _timed_cache(5.0, cost=1.0)
    start = clock.now
    waited = []
    for k in range(6):
        for offset, reader in ((0.0, "prometheus-a"), (1.0, "prometheus-b")):
            timers.run_due(start + 15.0 * k + offset)
            renders = source.renders
            rendered = cache.latest(reader)
            assert clock.now - rendered.taken_at <= 5.0
            waited.append(source.renders > renders)
    # the first round renders (no cadence known yet), as does a's second read (b's first
    # read came between); then no scrape renders
    assert waited[:2] == [True, False] and not any(waited[4:])
    assert source.renders == 2 + 4  # one per round from the third on


def test_a_closed_cache_renders_nothing_for_a_foreseen_read() -> None:
    cache, source, clock, timers = _timed_cache(5.0, cost=1.0)
    start = clock.now
    cache.latest()
    clock.now = start + 15.0
    cache.latest()
    cache.close()
    timers.run_due(start + 60.0)
    assert source.renders == 2


def test_more_readers_than_followed_forget_the_oldest_and_are_all_served() -> None:
    from collectors.snapshot_cache import MAX_READERS

    cache, _, clock, _timers = _timed_cache(5.0, cost=0.1)
    for _round in range(3):
        for r in range(MAX_READERS + 4):
            clock.now += 1.0
            assert cache.latest(f"scraper-{r}").taken_at >= clock.now - 5.0
    assert len(cache._readers) == MAX_READERS
    # a reader forgotten while its own read rendered plans nothing (and does not fail)
    with cache._cond:
        assert cache._foresee("scraper-0", clock.now, 15.0) is None
