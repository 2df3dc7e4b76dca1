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

Each run is a fresh subprocess, in two modes, alternated round by round (AB, BA, AB...):
  quiet    no scrapes
  scraped  a client loop GETs /metrics every second from the daemon's own HTTP server
           (`build_registry` over `Daemon.snapshot`, as `visionmon run` wires it)
and reports events/s (all prediction events, from the first poll to the last batch
applied), scrape latency (each GET, the body read included), scrape size and series.
The scraped run then times on the final state, without ingestion running: `Engine.capture()`
(what the lock is held for, median of 15), rendering a capture into series (the
statistics, outside the lock, median of 5), and a whole `/metrics` body from the registry
(capture, render and prometheus_client's text exposition, median of 5).

    .venv/bin/python benchmarks/scrape.py [--events 200000] [--rounds 3] [--baseline FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
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


class Scraper(threading.Thread):
    """GETs /metrics every SCRAPE_EVERY_S (on a fixed schedule) until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(name="scraper", daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.size = 0
        self.series = 0

    def run(self) -> None:
        due = time.perf_counter()
        while not self.stop.is_set():
            t = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=30) as r:
                body = r.read()
            self.latencies.append(time.perf_counter() - t)
            self.size = len(body)
            self.series = sum(1 for ln in body.split(b"\n") if ln and not ln.startswith(b"#"))
            due += SCRAPE_EVERY_S
            self.stop.wait(max(0.0, due - time.perf_counter()))


def _median_ms(f: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def child(mode: str, baseline: Path, events: int) -> dict[str, Any]:
    from collectors.daemon import Daemon
    from collectors.exporter import build_registry
    from collectors.http_server import HttpEndpoints, HttpServer
    from visionmon.gc_tuning import tune_collector

    stand_in = socket.create_server(("127.0.0.1", 0))  # the daemon's probe finds a "broker"
    stats, loaded = _world(baseline, f"127.0.0.1:{stand_in.getsockname()[1]}")
    # event times end a minute ago: none is refused as from the future
    records = _records(events, 1, time.time() - 60.0 - events / EVENT_RATE)
    consumer = ListConsumer(records)
    daemon = Daemon(loaded, stats.engine, consumer_factory=lambda: consumer,
                    feedback_sink=stats.labels)
    daemon._image_sink = SyntheticScorer(stats.shadow, daemon.lock)
    registry = build_registry(daemon.snapshot)
    http = HttpServer(HttpEndpoints(registry, daemon.healthy, daemon.ready), "127.0.0.1", 0)
    http.start()
    tune_collector()
    scraper = Scraper(f"http://127.0.0.1:{http.port}/metrics")
    loop = threading.Thread(target=daemon.run, name="loop", daemon=True)
    loop.start()
    while consumer.first_poll is None:
        time.sleep(0.01)
    if mode == "scraped":
        scraper.start()
    consumer.done.wait()
    scraper.stop.set()
    if mode == "scraped":
        scraper.join()
    daemon.stop()
    loop.join(30)
    assert consumer.done_at is not None and consumer.first_poll is not None
    seconds = consumer.done_at - consumer.first_poll
    out: dict[str, Any] = {"mode": mode, "events_per_s": events / seconds, "seconds": seconds,
                           "scrapes": scraper.latencies, "size": scraper.size,
                           "series": scraper.series}
    if mode == "scraped":  # what the lock is held for, against the rest of a scrape
        from prometheus_client import generate_latest

        engine = stats.engine
        out["capture_ms"] = _median_ms(engine.capture, 15)
        captured = engine.capture()
        out["render_ms"] = _median_ms(captured.render, 5)
        out["exposition_ms"] = _median_ms(lambda: generate_latest(registry), 5)
    http.stop()
    stand_in.close()
    return out


# --- the table ------------------------------------------------------------------------------
def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", choices=("quiet", "scraped"))
    ap.add_argument("--baseline", type=Path,
                    help="a baseline file from an earlier run (else one is built, ~2 min)")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.baseline, args.events)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        baseline = args.baseline or Path(tmp) / "baseline.json"
        if args.baseline is None:
            t0 = time.perf_counter()
            build_baseline_file(baseline)
            print(f"baseline built in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        results: list[dict[str, Any]] = []
        for r in range(args.rounds):
            order = ("quiet", "scraped") if r % 2 == 0 else ("scraped", "quiet")
            for mode in order:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", mode, "--baseline", str(baseline),
                     "--events", str(args.events)],
                    check=True, capture_output=True, text=True)
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append(res)
                lat = res["scrapes"]
                print(f"  round {r + 1} {mode:8s} {res['events_per_s']:10,.0f} ev/s"
                      f"  {res['seconds']:5.1f}s  scrapes {len(lat)}"
                      f"  p99 {_p(lat, 99) * 1e3:6.0f} ms", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results))
    report(results, args.events)


def report(results: list[dict[str, Any]], events: int) -> None:
    quiet = [r["events_per_s"] for r in results if r["mode"] == "quiet"]
    scraped = [r for r in results if r["mode"] == "scraped"]
    loud = [r["events_per_s"] for r in scraped]
    ratios = [s / q for q, s in zip(quiet, loud, strict=False)]
    lat = [x for r in scraped for x in r["scrapes"]]
    last = scraped[-1]
    print(f"\n{len(CLASSES):,} classes, {len(VERSIONS)} versions, {events:,} predictions "
          f"({LABELED:.0%} labelled, {IMAGED:.0%} with an image), {len(quiet)} rounds "
          "alternated, medians\n")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| ingestion without scrapes (events/s) | {statistics.median(quiet):,.0f} |")
    print(f"| ingestion with a scrape every {SCRAPE_EVERY_S:g} s (events/s) | "
          f"{statistics.median(loud):,.0f} |")
    print(f"| ratio, scraped / quiet, per round (median) | {statistics.median(ratios):.1%} "
          f"({', '.join(f'{x:.1%}' for x in ratios)}) |")
    print(f"| scrapes timed | {len(lat)} |")
    print(f"| scrape latency p50 / p99 / max (ms) | {_p(lat, 50) * 1e3:.0f} / "
          f"{_p(lat, 99) * 1e3:.0f} / {max(lat, default=math.nan) * 1e3:.0f} |")
    print(f"| scrape size (bytes, last scrape) | {last['size']:,} |")
    print(f"| series (last scrape) | {last['series']:,} |")
    for key, what in (("capture_ms", "`Engine.capture()`: the copy, under the lock"),
                      ("render_ms", "rendering the copy: the statistics, outside the lock"),
                      ("exposition_ms", "a whole /metrics body: capture, render, text")):
        print(f"| {what} (ms, final state) | "
              f"{statistics.median(r[key] for r in scraped):,.1f} |")


if __name__ == "__main__":
    main()
