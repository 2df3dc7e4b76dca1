"""Scrapes against ingestion: does reading `/metrics` every second slow the consumer loop?

A 1,000-class model served by 8 versions; predictions (100-event NDJSON messages), labels
for 30 % of them (one per message) and images for 5 % flow through the daemon's own loop
(`Daemon.run`: poll -> decode -> apply under the lock), fed in-process by a consumer that
hands out records built before the clock starts (no broker, so the broker's speed does not
blur the ratio).
Images are scored synthetically, no torch: each image record becomes a `ScoredImage`
(reference class = the production class 90 % of the time, a 32-dimensional Gaussian
embedding, fixed input features) applied to the `ShadowMonitor` under the daemon's lock
on the consumer thread, as the inference thread would. The baseline (built once, saved to
a file, loaded by `baseline.mode: file`) has calibration, agreement pairs, image features
and an MMD null, so every statistic is computed.

Each run is a fresh subprocess, in one of these modes, rotated round by round:
  quiet        no scrapes
  worker:N     a scraper process GETs /metrics every second from the daemon's own HTTP
               server, wired as `visionmon run` wires it (`SnapshotCache` with
               `http.snapshot_interval_seconds` = N, the snapshot metrics app), with a
               Prometheus server's headers (OpenMetrics, gzip); the statistics, text and gzip
               rendered by the render worker process (`http.render_worker: true`, the default)
  thread:N     the same, rendered in the daemon's process (`http.render_worker: false`)
  worker:N/S   (or thread:N/S) scraped every S seconds instead of every second (Prometheus's
               usual 15 to 60 s, against snapshots of N s)
  burn:F       no scrapes, but a process beside the daemon busy F of the time (gzip and
               scans, as a render worker's work): what any work on the other CPU costs the
               consumer loop on this machine; burn:0 is a second run without scrapes, so
               its ratio to `quiet` is the noise of the ratios
With --pin the daemon's process runs on CPU 0 and the processes beside it on the others.
and reports events/s (all prediction events, from the first poll to the last batch
applied), the daemon process's CPU seconds (and the render worker's), scrape latency (each
GET, the body read included, timed by the scraper), the CPU each scrape took in the daemon's
HTTP thread, the age of the snapshot each scrape got (scrape time minus
`visionmon_snapshot_timestamp_seconds`), snapshots rendered and their render time, scrape
size (gzip and plain) and series. The scraper is a separate process, as Prometheus is: its
reading and parsing do not take the daemon's GIL. The scraped runs then time on the final
state, without ingestion running: `Engine.capture()` (what the lock is held for, median of
15), rendering a capture into series (the statistics, outside the lock, median of 5), the
text of the snapshot (OpenMetrics, median of 5) and its gzip.

    .venv/bin/python benchmarks/scrape.py [--events 200000] [--rounds 3]
                                          [--modes worker:1,thread:1,burn:0] [--pin]
                                          [--baseline FILE]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = tuple(f"c{i:04d}" for i in range(1000))
VERSIONS = tuple(f"v{i}" for i in range(1, 9))
MODEL = "bench"
EVENT_RATE = 2_000.0      # prediction events per second of event time
PER_MESSAGE = 100         # prediction events per NDJSON message
LABELED = 0.3             # share of predictions that get a label
IMAGED = 0.05             # share of predictions that get an image
LABEL_LAG = 2_000         # a prediction's label arrives this many predictions later
EMBED_DIM = 32
MAX_POLL = 500            # records per poll
SCRAPE_EVERY_S = 1.0
#: what a Prometheus server asks for (Prometheus 2.x)
SCRAPE_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
              "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip"}
TOPICS = {"predictions": "p", "images": "i", "feedback": "f"}


# --- the stream ---------------------------------------------------------------------------
def _class_prior(rng: np.random.Generator) -> np.ndarray:
    w = 1.0 / np.arange(1, len(CLASSES) + 1) ** 1.1
    return np.asarray(rng.permutation(w / w.sum()))


def _predictions(n: int, seed: int, t0: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    pred = rng.choice(len(CLASSES), size=n, p=_class_prior(np.random.default_rng(0)))
    conf = rng.beta(6, 2, n).round(4)
    lat = rng.lognormal(3.5, 0.5, n).round(2)
    return [{"request_id": f"q{seed}-{i:08d}", "ts": t0 + i / EVENT_RATE, "model": MODEL,
             "version": VERSIONS[i % len(VERSIONS)], "pred": int(pred[i]),
             "confidence": float(conf[i]), "latency_ms": float(lat[i])} for i in range(n)]


def _records(n: int, seed: int, t0: float) -> list[Any]:
    """Kafka records of n predictions from event time t0, their labels (LABEL_LAG later) and
    their images."""
    import orjson

    from collectors.kafka.client import Record

    rng = np.random.default_rng(seed + 1)
    preds = _predictions(n, seed, t0)
    labeled = rng.random(n) < LABELED
    label = np.where(rng.random(n) < 0.85, [p["pred"] for p in preds],
                     rng.integers(0, len(CLASSES), n))
    imaged = rng.random(n) < IMAGED
    ref = np.where(rng.random(n) < 0.9, [p["pred"] for p in preds],
                   rng.integers(0, len(CLASSES), n))
    out: list[Record] = []
    offsets = dict.fromkeys(TOPICS.values(), 0)

    def add(topic: str, value: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        out.append(Record(topic, 0, offsets[topic], value, tuple(headers), 0))
        offsets[topic] += 1

    for start in range(0, n, PER_MESSAGE):
        chunk = preds[start:start + PER_MESSAGE]
        add("p", b"\n".join(orjson.dumps(p) for p in chunk))
        for i in range(start, start + len(chunk)):
            if imaged[i]:
                p = preds[i]
                add("i", b"ref=%d;" % ref[i] + bytes(200), [
                    ("request_id", p["request_id"].encode()), ("model", MODEL.encode()),
                    ("version", p["version"].encode()), ("ts", str(p["ts"]).encode()),
                    ("content-type", b"image/png")])
        for i in range(max(0, start - LABEL_LAG), max(0, start + len(chunk) - LABEL_LAG)):
            if labeled[i]:  # feedback is one label per message
                add("f", orjson.dumps({"request_id": preds[i]["request_id"],
                                       "label": int(label[i]),
                                       "ts": preds[i]["ts"] + LABEL_LAG / EVENT_RATE}))
    return out


def _scored_images(n: int, seed: int, t0: float) -> list[Any]:
    from monitor.scored import INPUT_FEATURES, ScoredImage

    rng = np.random.default_rng(seed)
    feats = rng.uniform(0.2, 0.8, size=(n, len(INPUT_FEATURES)))
    emb = rng.normal(size=(n, EMBED_DIM)).astype(np.float32)
    return [ScoredImage(f"b{seed}-{i}", MODEL, "v0", t0 + i, 0, 0.9, emb[i],
                        tuple(feats[i].tolist())) for i in range(n)]


def build_baseline_file(path: Path) -> None:
    """A baseline with every part: class and confidence bins, calibration, agreement pairs,
    image features and an embedding with its MMD null."""
    from monitor.baseline import build_baseline, save
    from monitor.events import PredictionEvent

    n = 60_000
    rng = np.random.default_rng(7)
    events = [PredictionEvent(p["request_id"], p["ts"], MODEL, "v0", True, p["pred"],
                              p["confidence"], math.nan, math.nan, p["latency_ms"] / 1e3)
              for p in _predictions(n, 99, 0.0)]
    labels = {e.request_id: e.pred if rng.random() < 0.85 else int(rng.integers(len(CLASSES)))
              for e in events[:20_000]}
    images = _scored_images(1_200, 98, 0.0)
    # the images join the first 1,200 predictions: agreement of 90 %
    images = [type(im)(events[i].request_id, im.model, im.version, im.ts,
                       events[i].pred if rng.random() < 0.9 else int(rng.integers(len(CLASSES))),
                       im.ref_confidence, im.embedding, im.features)
              for i, im in enumerate(images)]
    save(build_baseline(MODEL, CLASSES, events, labels=labels, images=images), path)


# --- one run --------------------------------------------------------------------------------
class ListConsumer:
    """Hands out prepared records, MAX_POLL at a time; notes when the first poll came and
    when the poll after the last batch came (everything applied by then)."""

    def __init__(self, records: list[Any]) -> None:
        self._records = records
        self._next = 0
        self.first_poll: float | None = None
        self.done_at: float | None = None
        self.done = threading.Event()

    def subscribe(self, topics: Sequence[str], on_assign: Any, on_revoke: Any) -> None:
        on_assign([(t, 0) for t in topics])

    def poll(self, timeout_s: float, max_records: int) -> list[Any]:
        now = time.perf_counter()
        if self.first_poll is None:
            self.first_poll = now
        if self._next >= len(self._records):
            if self.done_at is None:
                self.done_at = now
                self.done.set()
            time.sleep(min(timeout_s, 0.05))
            return []
        batch = self._records[self._next:self._next + min(max_records, MAX_POLL)]
        self._next += len(batch)
        return batch

    def commit(self, offsets: Any) -> None: ...

    def committed(self, tp: Any) -> int | None:
        return None

    def end_offsets(self, tps: Any) -> dict[Any, int]:
        return dict.fromkeys(tps, 0)

    def assignment(self) -> list[Any]:
        return [(t, 0) for t in TOPICS.values()]

    def connected(self) -> bool:
        return True

    def close(self) -> None: ...


class SyntheticScorer:
    """Stands in for the shadow scorer: image records become ScoredImages (reference class
    read from the bytes, a seeded Gaussian embedding) applied under the daemon's lock."""

    def __init__(self, shadow: Any, lock: threading.Lock) -> None:
        from monitor.scored import INPUT_FEATURES

        self._shadow = shadow
        self._lock = lock
        self._rng = np.random.default_rng(5)
        self._features = tuple(0.5 for _ in INPUT_FEATURES)

    def submit(self, events: Sequence[Any]) -> None:
        from monitor.scored import ScoredImage

        emb = self._rng.normal(size=(len(events), EMBED_DIM)).astype(np.float32)
        items = [ScoredImage(e.request_id, e.model, e.version, e.ts,
                             int(e.data[4:e.data.index(b";")]), 0.9, emb[k], self._features)
                 for k, e in enumerate(events)]
        with self._lock:
            self._shadow.apply_scored(items)


def _world(baseline: Path, bootstrap: str) -> tuple[Any, Any]:
    """(statistics, loaded config) wired as `visionmon.app.build_statistics` wires them for a
    config with a reference model."""
    from monitor.config import MMD_SHARE, parse_config, resolve
    from monitor.shadow import ShadowMonitor
    from visionmon.app import build_statistics

    loaded = resolve(parse_config({
        "version": 1, "models": [{"name": MODEL, "classes": list(CLASSES)}],
        "kafka": {"bootstrap_servers": [bootstrap], "topics": TOPICS,
                  "max_poll_records": MAX_POLL},
        "baseline": {"mode": "file", "path": str(baseline)},
        "limits": {"max_versions_per_model": 10},
        "labels": {"max_entries": 200_000}}))
    stats = build_statistics(loaded)
    cfg = loaded.config
    stats.shadow = ShadowMonitor(
        {MODEL: CLASSES}, stats.drift.windows, stats.drift, stats.quality,
        baseline_images=cfg.baseline.images, version_key=stats.engine.versions.key,
        mmd=cfg.drift.mmd, mmd_alpha=cfg.drift.alpha * MMD_SHARE,
        min_agreement_images=cfg.quality.min_shadow_images)
    stats.engine.extensions.append(stats.shadow)
    return stats, loaded


_TAKEN = b"\nvisionmon_snapshot_timestamp_seconds "


def _snapshot_time(raw: bytes, zipped: bool) -> float:
    """`visionmon_snapshot_timestamp_seconds` of a body, decompressing only up to it (it
    comes early in the catalog's order): the scraper stays light on the shared CPUs."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if zipped else None
    text, at = b"", 0
    while True:
        if inflate is None:
            text = raw
        else:
            text += inflate.decompress(raw[at:at + 65_536])
            at += 65_536
        i = text.find(_TAKEN)
        end = text.find(b"\n", i + 1) if i >= 0 else -1
        if end >= 0:
            return float(text[i + len(_TAKEN):end])
        if inflate is None or at >= len(raw):
            raise ValueError("no visionmon_snapshot_timestamp_seconds in the body")


def scrape_loop(url: str, every_s: float = SCRAPE_EVERY_S) -> None:
    """The scraper process: GET `url` every `every_s` (on a fixed schedule) until a
    line arrives on stdin, then print what it saw as JSON: per scrape its latency (s) and
    the age of the snapshot it got (s), and the last body's sizes and series."""
    import select

    out: dict[str, Any] = {"latencies": [], "ages": []}
    request = urllib.request.Request(url, headers=SCRAPE_HEADERS)
    raw, zipped = b"", False
    due = time.perf_counter()
    while not select.select([sys.stdin], [], [], max(0.0, due - time.perf_counter()))[0]:
        t = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as r:
            raw = r.read()
            zipped = r.headers.get("Content-Encoding") == "gzip"
        out["latencies"].append(time.perf_counter() - t)
        out["ages"].append(time.time() - _snapshot_time(raw, zipped))
        due += every_s
    body = gzip.decompress(raw) if zipped else raw
    out["size"], out["gzip_size"] = len(body), len(raw) if zipped else 0
    out["series"] = sum(1 for ln in body.split(b"\n") if ln and not ln.startswith(b"#"))
    print(json.dumps(out))


def burn_loop(share: float) -> None:
    """The burner process of `burn:F`: no scrapes, but F of a core's time spent as a render
    worker spends it, gzipping and scanning 12 MB of exposition-like text, in 50 ms bursts,
    until a line arrives on stdin; then print the CPU seconds it used as JSON."""
    text = b"".join(b'visionmon_class_recall_ratio{model="m",version="v%d",class="c%d",'
                    b'window="5m"} 0.%06d\n' % (i % 8, i % 1000, i) for i in range(120_000))
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    while not stop.is_set():
        t = time.perf_counter()
        while time.perf_counter() - t < 0.05:
            zlib.compress(text[:1_000_000], 6)
            text.count(b"\n")
        time.sleep(0.05 * (1.0 - share) / share)
    print(json.dumps({"burn_cpu_s": time.process_time()}))


#: with --pin: the CPUs the benchmark may use, comma-separated; the daemon's process runs
#: on the lowest, the processes beside it on the others
PIN_ENV = "VISIONMON_BENCH_PIN"


def _pinned() -> list[int]:
    return [int(c) for c in os.environ.get(PIN_ENV, "").split(",") if c]


def _beside(pid: int) -> None:
    """With --pin, move a process beside the daemon (scraper, burner, render worker) off the
    daemon's CPU (a render worker restarted later stays on the daemon's)."""
    cpus = _pinned()
    if cpus:
        os.sched_setaffinity(pid, set(cpus[1:]) or set(cpus))


class Beside:
    """A process of this script beside the daemon's (the scraper, a burner), started with
    `args` and stopped with a line on its stdin; `stop` returns the JSON it printed."""

    def __init__(self, *args: str) -> None:
        self._proc = subprocess.Popen([sys.executable, __file__, *args],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        _beside(self._proc.pid)

    def stop(self) -> dict[str, Any]:
        out, _ = self._proc.communicate("stop\n", timeout=120)
        return dict(json.loads(out.strip().splitlines()[-1]))


def _median_ms(f: Any, repeats: int) -> float:
    """Median CPU time of `f` (ms): the machine's load does not stretch it."""
    times = []
    for _ in range(repeats):
        t = time.process_time()
        f()
        times.append(time.process_time() - t)
    return statistics.median(times) * 1e3


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _thread_cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(mode: str, baseline: Path, events: int) -> dict[str, Any]:
    """One run: `quiet`, or scraped every second with snapshots rendered at most every N
    seconds by the render worker (`worker:N`) or in the daemon's process (`thread:N`)."""
    from collectors.bodies import GZIP_LEVEL
    from collectors.daemon import Daemon
    from collectors.exporter import build_registry
    from collectors.exposition import ExpositionWriter
    from collectors.http_server import HttpEndpoints, HttpServer
    from collectors.render_worker import RenderWorker
    from collectors.snapshot_cache import SnapshotCache
    from monitor.stats import AgreementMemo
    from visionmon.gc_tuning import tune_collector

    design, _, every = mode.partition(":")
    every, _, scrape_every = every.partition("/")
    burn = float(every) if design == "burn" else None
    cpus = _pinned()
    if cpus:  # every thread of the daemon on one CPU, as on a machine with one to spare
        os.sched_setaffinity(0, {cpus[0]})
    interval = None if mode == "quiet" or burn is not None else float(every)

    stand_in = socket.create_server(("127.0.0.1", 0))  # the daemon's probe finds a "broker"
    stats, loaded = _world(baseline, f"127.0.0.1:{stand_in.getsockname()[1]}")
    # event times end a minute ago: none is refused as from the future
    records = _records(events, 1, time.time() - 60.0 - events / EVENT_RATE)
    consumer = ListConsumer(records)
    daemon = Daemon(loaded, stats.engine, consumer_factory=lambda: consumer,
                    feedback_sink=stats.labels)
    daemon._image_sink = SyntheticScorer(stats.shadow, daemon.lock)
    renders: list[float] = []
    render_cpu: list[float] = []

    def source() -> Any:  # Daemon.snapshot, with each render's wall and CPU time noted
        t, cpu = time.perf_counter(), time.thread_time()
        snap = daemon.snapshot()
        renders.append(time.perf_counter() - t)
        render_cpu.append(time.thread_time() - cpu)
        return snap

    worker = None
    if design == "worker":
        worker = RenderWorker(daemon.capture, daemon.series_cap)

        def rendered_by_worker(taken: float, wall: float, formats: Any) -> Any:
            t, cpu = time.perf_counter(), time.thread_time()
            got = worker(taken, wall, formats)
            renders.append(time.perf_counter() - t)
            render_cpu.append(time.thread_time() - cpu)
            worker_seconds.append(got.render_seconds)
            return got

    worker_seconds: list[float] = []
    snapshots = SnapshotCache(source, interval or 0.0,
                              renderer=rendered_by_worker if worker is not None else None)
    registry = build_registry(snapshots.snapshot)
    endpoints = HttpEndpoints(registry, daemon.healthy, daemon.ready, snapshots=snapshots)
    scrape_cpu: list[float] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        cpu = time.thread_time()  # the CPU of this scrape in the daemon (its HTTP thread)
        try:
            return endpoints(environ, start_response)
        finally:
            scrape_cpu.append(time.thread_time() - cpu)

    http = HttpServer(app, "127.0.0.1", 0)
    if worker is not None:
        worker.start()
        if worker.pid:
            _beside(worker.pid)
    if interval is not None:
        snapshots.warm()  # as `visionmon run` starts
    http.start()
    tune_collector()
    loop = threading.Thread(target=daemon.run, name="loop", daemon=True)
    loop.start()
    while consumer.first_poll is None:
        time.sleep(0.01)
    cpu0 = _cpu_s()
    scraper = (Beside("--scrape", f"http://127.0.0.1:{http.port}/metrics",
                      "--scrape-every", str(float(scrape_every or SCRAPE_EVERY_S)))
               if interval is not None else None)
    burner = Beside("--burn", str(burn)) if burn else None  # burn:0: a second quiet run
    worker_cpu0 = _thread_cpu_of(worker.pid) if worker is not None and worker.pid else 0.0
    consumer.done.wait()
    cpu = _cpu_s() - cpu0
    worker_cpu = (_thread_cpu_of(worker.pid) - worker_cpu0
                  if worker is not None and worker.pid else 0.0)
    scraped = scraper.stop() if scraper is not None else {}
    if burn is not None:
        scraped = {**(burner.stop() if burner is not None else {"burn_cpu_s": 0.0}),
                   "burn": burn}
    daemon.stop()
    loop.join(30)
    assert consumer.done_at is not None and consumer.first_poll is not None
    seconds = consumer.done_at - consumer.first_poll
    out: dict[str, Any] = {"mode": mode, "interval": interval, "events_per_s": events / seconds,
                           "seconds": seconds, "cpu_s": cpu, "worker_cpu_s": worker_cpu,
                           "renders": renders, "render_cpu": render_cpu,
                           "worker_render_s": worker_seconds,
                           "restarts": dict(worker.restarts) if worker is not None else {},
                           "scrape_cpu": scrape_cpu,
                           "load": os.getloadavg()[0], **scraped}
    if interval is not None:  # what the lock is held for, against the rest of a snapshot
        engine = stats.engine
        out["capture_ms"] = _median_ms(engine.capture, 15)
        # each render with a fresh memo: every agreement test computed, as after a change
        captures = []
        for _ in range(5):
            stats.shadow._agreement_memo = AgreementMemo()
            captures.append(engine.capture())
        out["render_ms"] = _median_ms(lambda: captures.pop().render(), 5)
        snap = snapshots.snapshot()
        writer = ExpositionWriter()
        out["text_ms"] = _median_ms(lambda: writer.write(snap, openmetrics=True), 5)
        body = writer.write(snap, openmetrics=True)
        out["gzip_ms"] = _median_ms(lambda: gzip.compress(body, compresslevel=GZIP_LEVEL), 5)
    http.stop()
    if worker is not None:
        worker.close()
    stand_in.close()
    return out


# --- the table ------------------------------------------------------------------------------
def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="worker:1,thread:1",
                    help="runs besides `quiet`, comma-separated: worker:N (render worker) or "
                         "thread:N (rendered in the daemon), N = "
                         "http.snapshot_interval_seconds; worker:N/S: scraped every S s "
                         "instead of every second; burn:F: no scrapes, a process busy F "
                         "(0 to 1) of the time beside the daemon (burn:0: a second quiet run)")
    ap.add_argument("--child", help="run one mode: quiet, worker:N or thread:N (internal)")
    ap.add_argument("--scrape", help="be the scraper process of this URL (internal)")
    ap.add_argument("--burn", type=float, help="be the burner process of burn:F (internal)")
    ap.add_argument("--pin", action="store_true",
                    help="run the daemon's process on CPU 0 and the scraper, render worker and "
                         "burner on the others (Linux): the kernel then does not move the "
                         "consumer loop between CPUs")
    ap.add_argument("--scrape-every", type=float, default=SCRAPE_EVERY_S,
                    help=argparse.SUPPRESS)
    ap.add_argument("--baseline", type=Path,
                    help="a baseline file from an earlier run (else one is built, ~1 min)")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args()
    if args.scrape:
        scrape_loop(args.scrape, args.scrape_every)
        return
    if args.burn:
        burn_loop(args.burn)
        return
    if args.child:
        print(json.dumps(child(args.child, args.baseline, args.events)))
        return
    modes = ["quiet", *args.modes.split(",")]
    if args.pin:  # read by the runs and the processes beside
        os.environ[PIN_ENV] = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    for mode in modes:
        design, _, share = mode.partition(":")
        if design == "burn" and not 0.0 <= float(share) <= 1.0:
            ap.error(f"burn:F needs 0 <= F <= 1, got {mode}")
    with tempfile.TemporaryDirectory() as tmp:
        baseline = args.baseline or Path(tmp) / "baseline.json"
        if args.baseline is None:
            t0 = time.perf_counter()
            build_baseline_file(baseline)
            print(f"baseline built in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        results: list[dict[str, Any]] = []
        for r in range(args.rounds):
            shift = r % len(modes)  # each mode takes each place in turn
            for mode in modes[shift:] + modes[:shift]:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", mode, "--baseline", str(baseline),
                     "--events", str(args.events)],
                    check=True, capture_output=True, text=True)
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                res["round"] = r
                results.append(res)
                lat = res.get("latencies", [])
                print(f"  round {r + 1} {res['mode']:10s} {res['events_per_s']:10,.0f} ev/s"
                      f"  {res['seconds']:5.1f}s  cpu {res['cpu_s']:5.1f}s"
                      f"  renders {len(res['renders']):3d}  scrapes {len(lat):3d}"
                      f"  p99 {_p(lat, 99) * 1e3:6.0f} ms  load {res['load']:.1f}",
                      file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results))
    report(results, args.events)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _mode_name(mode: str) -> str:
    design, _, every = mode.partition(":")
    every, _, scrape_every = every.partition("/")
    where = "render worker" if design == "worker" else "in the daemon"
    scraped = f", scraped every {scrape_every} s" if scrape_every else ""
    return f"{where}, snapshot interval {every} s{scraped}"


def report(results: list[dict[str, Any]], events: int) -> None:
    rounds = sorted({r["round"] for r in results})
    quiet = {r["round"]: r for r in results if r["mode"] == "quiet"}
    burns = [r for r in results if r["mode"].startswith("burn")]
    results = [r for r in results if not r["mode"].startswith("burn")]
    modes = list(dict.fromkeys(r["mode"] for r in results if r["mode"] != "quiet"))
    loads = [r["load"] for r in results]
    print(f"\n{len(CLASSES):,} classes, {len(VERSIONS)} versions, {events:,} predictions "
          f"({LABELED:.0%} labelled, {IMAGED:.0%} with an image), {len(rounds)} rounds, "
          f"modes rotated, medians; a scrape every {SCRAPE_EVERY_S:g} s (unless the mode "
          f"says) with Prometheus's "
          f"headers; load average {min(loads):.1f} to {max(loads):.1f}\n")
    head = ["without scrapes", *(_mode_name(m) for m in modes)]
    print("| measure | " + " | ".join(head) + " |")
    print("|---|" + "---:|" * len(head))
    runs = [[r for r in results if r["mode"] == "quiet"],
            *([r for r in results if r["mode"] == m] for m in modes)]

    def row(what: str, cell: Any) -> None:
        print(f"| {what} | " + " | ".join(cell(rs) for rs in runs) + " |")

    def per_round(rs: list[dict[str, Any]], key: str) -> list[float]:
        return [r[key] / quiet[r["round"]][key] for r in rs if r["round"] in quiet]

    row("ingestion (events/s)", lambda rs: f"{_median([r['events_per_s'] for r in rs]):,.0f}")
    row("ratio to the run without scrapes, per round (median)", lambda rs: (
        "–" if rs and rs[0]["interval"] is None else
        f"{_median(per_round(rs, 'events_per_s')):.1%} "
        f"({', '.join(f'{x:.1%}' for x in per_round(rs, 'events_per_s'))})"))
    row("daemon process CPU seconds per 100,000 events",
        lambda rs: f"{_median([r['cpu_s'] / events * 1e5 for r in rs]):.2f}")
    row("render worker CPU seconds per 100,000 events", lambda rs: (
        "–" if not rs or not rs[0].get("worker_cpu_s") else
        f"{_median([r['worker_cpu_s'] / events * 1e5 for r in rs]):.2f}"))
    scraped = runs[1:]
    lat = [[x for r in rs for x in r.get("latencies", [])] for rs in scraped]
    ages = [[x for r in rs for x in r.get("ages", [])] for rs in scraped]
    ren = [[x for r in rs for x in r["renders"]] for rs in scraped]

    def scraped_row(what: str, values: list[Any]) -> None:
        print(f"| {what} | – | " + " | ".join(values) + " |")

    def ms3(x: list[float]) -> str:
        return (f"{_p(x, 50) * 1e3:.0f} / {_p(x, 99) * 1e3:.0f} / "
                f"{max(x, default=math.nan) * 1e3:.0f}")

    scraped_row("scrapes timed", [str(len(x)) for x in lat])
    scraped_row("scrape latency p50 / p99 / max (ms)", [ms3(x) for x in lat])
    later = [[x for r in rs for x in r.get("latencies", [])[1:]] for rs in scraped]
    scraped_row("the same, each run's first scrape left out (it renders: nothing was before)",
                [ms3(x) for x in later])
    cpu = [[x for r in rs for x in r.get("scrape_cpu", [])] for rs in scraped]
    scraped_row("CPU of a scrape in the daemon's HTTP thread p50 / p99 / max (ms; those that "
                "render include the render)", [ms3(x) for x in cpu])
    scraped_row("age of the snapshot a scrape got p50 / max (s)", [
        f"{_p(x, 50):.1f} / {max(x, default=math.nan):.1f}" for x in ages])
    scraped_row("snapshots rendered per run (median)", [
        f"{_median([len(r['renders']) for r in rs]):.0f}" for rs in scraped])
    scraped_row("render time p50 / max (ms, wall, under ingestion)", [
        f"{_p(x, 50) * 1e3:.0f} / {max(x, default=math.nan) * 1e3:.0f}" for x in ren])
    ren_cpu = [[x for r in rs for x in r["render_cpu"]] for rs in scraped]
    scraped_row("render CPU in the daemon p50 / max (ms, its thread: the copy, and the "
                "statistics unless the worker renders)", [
                    f"{_p(x, 50) * 1e3:.0f} / {max(x, default=math.nan) * 1e3:.0f}"
                    for x in ren_cpu])
    restarts = [sum(sum(r.get("restarts", {}).values()) for r in rs) for rs in scraped]
    scraped_row("render worker restarts (all runs)", [
        str(n) if rs and rs[0]["mode"].startswith("worker") else "–"
        for n, rs in zip(restarts, scraped, strict=True)])
    last = [rs[-1] for rs in scraped]
    scraped_row("scrape size, plain / gzip (bytes, last scrape)", [
        f"{r['size']:,} / {r['gzip_size']:,}" for r in last])
    scraped_row("series (last scrape)", [f"{r['series']:,}" for r in last])
    for key, what in (("capture_ms", "`Engine.capture()`: the copy, under the lock"),
                      ("render_ms", "rendering the copy: the statistics, outside the lock"),
                      ("text_ms", "the OpenMetrics text of the snapshot"),
                      ("gzip_ms", "its gzip")):
        scraped_row(f"{what} (CPU ms, final state)", [
            f"{_median([r[key] for r in rs]):,.1f}" for rs in scraped])
    if burns:
        burn_report(burns, quiet, events)


def burn_report(burns: list[dict[str, Any]], quiet: dict[int, dict[str, Any]],
                events: int) -> None:
    """What another process working on the other core alone does to ingestion: no scrape,
    no render, only a burner busy F of the time (`burn:F`)."""
    print("\nWithout scrapes, another process busy F of the time on the other core "
          "(gzip and scans of exposition-like text, 50 ms bursts); F = 0 is a second run "
          "without scrapes, the noise of the ratio:\n")
    print("| F | ingestion (events/s) | ratio to the run without it, per round (median) | "
          "daemon CPU s per 100,000 events | burner CPU s per run |")
    print("|---:|---:|---|---:|---:|")
    for mode in dict.fromkeys(r["mode"] for r in burns):
        rs = [r for r in burns if r["mode"] == mode]
        ratios = [r["events_per_s"] / quiet[r["round"]]["events_per_s"] for r in rs
                  if r["round"] in quiet]
        print(f"| {rs[0]['burn']:g} | {_median([r['events_per_s'] for r in rs]):,.0f} | "
              f"{_median(ratios):.1%} ({', '.join(f'{x:.1%}' for x in ratios)}) | "
              f"{_median([r['cpu_s'] / events * 1e5 for r in rs]):.2f} | "
              f"{_median([r['burn_cpu_s'] for r in rs]):.1f} |")


if __name__ == "__main__":
    main()
