"""Soak: millions of prediction events, with labels and a trickle of images, through the
daemon; RSS, open file descriptors and threads sampled every few seconds.

The daemon runs in this process exactly as `visionmon run` wires it (decoders, engine,
drift, label joins, quality, checkpoints every 10 s, the HTTP exporter scraped on every
sample), fed by a synthetic consumer instead of a broker so that nothing but the daemon
holds memory and the run is not limited by a broker. Per 1,000 predictions: 500 labels
arrive 2,000 predictions later (the rest stay unlabeled and wait in the join store until
it evicts them) and one 4 kB image. Event time advances 10 ms per prediction.

The script prints the curve and a summary, and fails unless
  * peak RSS (the kernel's high-water mark, VmHWM, so that the short-lived copy of the
    state a checkpoint makes is never missed between samples) grows by less than 5 % from
    the end of warm-up to the end of the run. Warm-up (default 40 % of the events) covers
    filling the join stores and the allocator settling around repeated checkpoints;
  * peak RSS stays below the bound computed from the config (`memory_bound`, documented in
    docs/reliability.md); and the fd and thread counts stay flat.
The curve also shows the RSS at each sample, and the summary its medians over the first
and last thirds after warm-up.

    .venv/bin/python benchmarks/soak.py [--events 5000000] [--max-entries 200000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from collectors.kafka.client import AssignCallback, Record, TopicPartition
from monitor.catalog import CALIBRATION_BINS
from monitor.config import LoadedConfig, parse_config, resolve

CLASSES = [f"class-{i}" for i in range(10)]
TOPICS = ("soak-predictions", "soak-images", "soak-feedback")
PARTITIONS = 3
LABEL_DELAY = 2000        # predictions between a prediction and its label
IMAGE_BYTES = 4096
MARKER = b"\x89PNG\r\n\x1a\n"


# --- the synthetic stream -------------------------------------------------------------
def prediction(i: int, ts: float) -> bytes:
    return orjson.dumps({"request_id": f"req-{i:010d}", "ts": ts, "model": "soak",
                         "version": f"v{1 + i // 1_000_000}", "pred": i % 10,
                         "confidence": 0.5 + (i * 7919 % 500) / 1000, "latency_ms": 12.5,
                         "deployment": "soak-1"})


def label(i: int, ts: float) -> bytes:
    return orjson.dumps({"request_id": f"req-{i:010d}", "label": i % 10 if i % 5 else 0,
                         "ts": ts, "source": "soak"})


class SyntheticConsumer:
    """Implements the daemon's Consumer interface over a generated stream."""

    def __init__(self, events: int, t0: float, label_every: int = 2,
                 image_every: int = 1000) -> None:
        self.events = events
        self.t0 = t0
        self.label_every = label_every
        self.image_every = image_every
        self.produced = 0                      # predictions handed out
        self.labels = 0
        self.images = 0
        self.commits = 0
        self._offsets: dict[TopicPartition, int] = {}
        self._assigned: list[TopicPartition] = []
        self._image = MARKER + bytes(IMAGE_BYTES - len(MARKER))

    def subscribe(self, topics: Sequence[str], on_assign: AssignCallback,
                  on_revoke: AssignCallback) -> None:
        self._assigned = [(t, p) for t in topics for p in range(PARTITIONS)]
        on_assign(list(self._assigned))

    def _record(self, topic: str, part: int, value: bytes,
                headers: tuple[tuple[str, bytes | None], ...] = ()) -> Record:
        tp = (topic, part)
        off = self._offsets.get(tp, 0)
        self._offsets[tp] = off + 1
        return Record(topic, part, off, value, headers, 0)

    def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        out: list[Record] = []
        p_topic, i_topic, f_topic = TOPICS
        while len(out) < max_records and self.produced < self.events:
            i = self.produced
            ts = self.t0 + i * 0.01
            out.append(self._record(p_topic, i % PARTITIONS, prediction(i, ts)))
            j = i - LABEL_DELAY
            if j >= 0 and j % self.label_every == 0:
                out.append(self._record(f_topic, j % PARTITIONS, label(j, ts)))
                self.labels += 1
            if i % self.image_every == 0:
                out.append(self._record(i_topic, i % PARTITIONS, self._image, (
                    ("request_id", f"req-{i:010d}".encode()), ("model", b"soak"),
                    ("version", b"v1"), ("content-type", b"image/png"))))
                self.images += 1
            self.produced += 1
        if not out:
            time.sleep(min(timeout_s, 0.05))
        return out

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.commits += 1

    def committed(self, tp: TopicPartition) -> int | None:
        return None

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._offsets.get(tp, 0) for tp in tps}

    def assignment(self) -> list[TopicPartition]:
        return list(self._assigned)

    def connected(self) -> bool:
        return True

    def close(self) -> None:
        pass


class _Listener:
    """A local port that accepts and closes connections: the daemon's broker probe
    sees a reachable 'broker', so commits and lag updates run as in production."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="soak-listener").start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                conn.close()
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


# --- the memory bound -----------------------------------------------------------------
def measure_entry_bytes(n: int = 20_000) -> tuple[float, float]:
    """Bytes per join-store entry (a waiting prediction; a waiting label), measured with
    tracemalloc on events of the soak's shape."""
    from monitor.events import DecodeLimits, FeedbackDecoder, ModelClassIndex, PredictionDecoder
    from monitor.joins import JoinStore

    index = {"soak": ModelClassIndex.of(CLASSES)}
    preds = [prediction(10**9 + i, 1e9 + i) for i in range(n)]
    labels = [label(10**9 + i, 1e9 + i) for i in range(n)]
    pdec, fdec = PredictionDecoder(index, DecodeLimits()), FeedbackDecoder(index, DecodeLimits())
    out = []
    for raws, decode, value in (
            (preds, lambda r: pdec.decode(r, 2e9).events[0], lambda e: e),
            (labels, lambda r: fdec.decode(r, 2e9).events[0],
             lambda f: (f.label, f.ts, f.source))):
        store: JoinStore[Any] = JoinStore("m", n, 1e12)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for raw in raws:
            e = decode(raw)
            store.put(e.request_id, e.ts, value(e))
        out.append((tracemalloc.get_traced_memory()[0] - before) / n)
        tracemalloc.stop()
        del store
    return out[0], out[1]


def measure_base_mb(events: int = 50_000) -> float:
    """B0: peak RSS of a fresh process running the daemon over `events` predictions with
    join stores of one entry and no checkpoints: interpreter, libraries, windows,
    baseline, one batch in flight, the exporter. Everything else in the bound scales with
    the config on top of it."""
    proc = subprocess.run([sys.executable, __file__, "--measure-base", str(events)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"measuring B0 failed:\n{proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def memory_bound(loaded: LoadedConfig, base_bytes: float, entry_bytes: tuple[float, float],
                 message_bytes: float, versions_seen: int | None = None) -> dict[str, float]:
    """Upper bound of the daemon's RSS, by component (bytes). See docs/reliability.md."""
    cfg = loaded.config
    n_windows, slices = len(cfg.windows.sizes), cfg.windows.slices
    per_version = 0
    for m in loaded.models.values():
        c = len(m.classes)
        drift = c + 3 * (cfg.baseline.quantile_bins + 2)
        label_layout = 2 + 4 * c + 3 * CALIBRATION_BINS + 2
        pred_windows = 1 + 2 * CALIBRATION_BINS
        confusion = c * c * 8 if c <= 200 else 0  # dense only up to 200 classes
        per_version = max(per_version, (drift + label_layout + pred_windows) * 8
                          * n_windows * slices + confusion)
    versions = versions_seen or (cfg.limits.max_versions_per_model + 1) * len(loaded.models)
    joins = cfg.labels.max_entries * (entry_bytes[0] + entry_bytes[1])
    parts = {
        "B0: the daemon running with empty join stores (measured)": base_bytes,
        "join stores (max_entries x (prediction + label entry))": joins,
        "windows (versions x windows x slices x bins x 8 B)": versions * per_version,
        "queue (max_poll_records x message bytes)": cfg.kafka.max_poll_records * message_bytes,
        # a checkpoint holds the state twice for a moment (as lists, then as JSON bytes)
        "checkpoint transient (2 x join stores)": 2 * joins if cfg.state.checkpoint_dir else 0,
    }
    parts["allocator slack (10 %)"] = 0.1 * sum(parts.values())
    return parts


# --- sampling -------------------------------------------------------------------------
@dataclass
class Sample:
    t: float
    events: int
    rss_mb: float
    hwm_mb: float
    fds: int
    threads: int
    waiting: int


@dataclass
class SoakResult:
    samples: list[Sample] = field(default_factory=list)
    warmup_events: int = 0
    bound: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    events: int = 0
    counted: float = 0.0
    labels_produced: int = 0
    labels_joined: float = 0.0
    checkpoints: float = 0.0

    def _after(self) -> list[Sample]:
        return [s for s in self.samples if s.events > self.warmup_events]

    def _thirds(self) -> tuple[float, float]:
        after = [s.rss_mb for s in self._after()]
        k = max(1, len(after) // 3)
        return statistics.median(after[:k]), statistics.median(after[-k:])

    @property
    def start_mb(self) -> float:
        """Median RSS of the first third of the samples after warm-up."""
        return self._thirds()[0] if self._after() else math.nan

    @property
    def end_mb(self) -> float:
        """Median RSS of the last third of the samples after warm-up."""
        return self._thirds()[1] if self._after() else math.nan

    @property
    def peak_mb(self) -> float:
        return max(s.hwm_mb for s in self.samples)

    @property
    def warm_peak_mb(self) -> float:
        """Peak RSS at the end of warm-up."""
        warm = [s.hwm_mb for s in self.samples if s.events <= self.warmup_events]
        return warm[-1] if warm else math.nan

    @property
    def growth(self) -> float:
        """Growth of peak RSS from the end of warm-up to the end of the run."""
        return self.peak_mb / self.warm_peak_mb - 1.0

    @property
    def bound_mb(self) -> float:
        return sum(self.bound.values()) / 2**20

    def spread(self, attr: str) -> int:
        values = [getattr(s, attr) for s in self._after()]
        return max(values) - min(values) if values else 0

    def ok(self) -> bool:
        return (self.growth < 0.05 and self.peak_mb < self.bound_mb
                and self.spread("fds") <= 4 and self.spread("threads") <= 2
                and self.counted == self.events
                and self.labels_joined == self.labels_produced)


def _proc_status() -> tuple[float, float, int]:
    """(RSS MB, peak RSS MB, threads) of this process."""
    rss_kb = hwm_kb = threads = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm_kb = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss_kb / 1024, hwm_kb / 1024, threads


def _reset_peak_rss() -> None:
    """Start VmHWM afresh (Linux: writing 5 to clear_refs), so that the peak is this run's."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def run_soak(events: int, max_entries: int = 200_000, every_s: float = 3.0,
             warmup: float = 0.4, checkpoint_interval_s: float | None = 10.0,
             progress: Callable[[Sample], None] | None = None,
             base_mb: float | None = None) -> SoakResult:
    """Runs the soak in this process; returns the samples and the verdict's figures.
    `base_mb` is B0 of the bound; by default it is measured (`measure_base_mb`)."""
    from collectors.daemon import Daemon
    from collectors.exporter import build_registry
    from collectors.http_server import HttpEndpoints, HttpServer
    from visionmon.app import build_statistics

    listener = _Listener()
    tmp = tempfile.TemporaryDirectory(prefix="visionmon-soak-")
    span = events * 0.01
    t0 = time.time() - span - 60
    cfg: dict[str, Any] = {
        "version": 1,
        "kafka": {"bootstrap_servers": [f"127.0.0.1:{listener.port}"],
                  "topics": dict(zip(("predictions", "images", "feedback"), TOPICS,
                                     strict=True)),
                  "poll_timeout_ms": 100, "max_poll_records": 5000},
        "models": [{"name": "soak", "classes": CLASSES}],
        "http": {"port": 0},
        "labels": {"max_entries": max_entries, "ttl": "1d"},
        "baseline": {"mode": "first_events", "events": 10_000},
    }
    if checkpoint_interval_s is not None:
        cfg["state"] = {"checkpoint_dir": f"{tmp.name}/state",
                        "checkpoint_interval_seconds": checkpoint_interval_s}
    loaded = resolve(parse_config(cfg))
    consumer = SyntheticConsumer(events, t0)
    stats = build_statistics(loaded)
    daemon = Daemon(loaded, stats.engine, consumer_factory=lambda: consumer,
                    feedback_sink=stats.labels)
    registry = build_registry(daemon.snapshot)
    http = HttpServer(HttpEndpoints(registry, daemon.healthy, daemon.ready), "127.0.0.1", 0)
    http.start()
    url = f"http://127.0.0.1:{http.port}/metrics"
    result = SoakResult(warmup_events=int(events * warmup), events=events)

    def sample(t_start: float) -> Sample:
        with urllib.request.urlopen(url, timeout=30) as resp:  # the exporter path, too
            resp.read()
        rss, hwm, threads = _proc_status()
        with daemon.lock:
            n = stats.engine.accepted.get(TOPICS[0], 0)
            waiting = len(stats.labels.predictions) + len(stats.labels.early)
        return Sample(time.monotonic() - t_start, n, rss, hwm,
                      len(os.listdir("/proc/self/fd")), threads, waiting)

    loop = threading.Thread(target=daemon.run, name="visionmon-loop", daemon=True)
    start = time.monotonic()
    _reset_peak_rss()
    loop.start()
    try:
        while True:
            s = sample(start)
            result.samples.append(s)
            if progress is not None:
                progress(s)
            if s.events >= events:
                break
            time.sleep(every_s)
        result.seconds = time.monotonic() - start
    finally:
        daemon.stop()
        loop.join(60)
        http.stop()
        listener.close()
        tmp.cleanup()
    snap = stats.engine.snapshot()
    result.counted = sum(snap["visionmon_requests_total"].values())  # type: ignore[arg-type]
    result.labels_joined = sum(snap.get("visionmon_labels_total", {}).values())  # type: ignore[arg-type]
    result.checkpoints = float(daemon.status.checkpoints.get("ok", 0))
    result.labels_produced = consumer.labels
    mean_message = len(prediction(10**9, 1.75e9))
    base = base_mb if base_mb is not None else measure_base_mb(max(1, events // 10))
    result.bound = memory_bound(loaded, base * 2**20, measure_entry_bytes(), mean_message,
                                versions_seen=len(stats.engine.by_version))
    return result


def report(r: SoakResult, out: Any = None) -> None:
    out = out or sys.stdout
    print("\n| t (s) | events | RSS (MB) | peak RSS (MB) | fds | threads | waiting joins |",
          file=out)
    print("|---:|---:|---:|---:|---:|---:|---:|", file=out)
    step = max(1, len(r.samples) // 40)
    shown = r.samples[::step] + ([r.samples[-1]] if (len(r.samples) - 1) % step else [])
    for s in shown:
        print(f"| {s.t:.0f} | {s.events:,} | {s.rss_mb:.1f} | {s.hwm_mb:.1f} | {s.fds} "
              f"| {s.threads} | {s.waiting:,} |", file=out)
    print(f"\nbound from the config ({r.bound_mb:.0f} MB):", file=out)
    for k, v in r.bound.items():
        print(f"  {v / 2**20:8.1f} MB  {k}", file=out)
    rate = r.events / r.seconds if r.seconds else math.nan
    print(f"\n{r.events:,} predictions in {r.seconds:.0f}s ({rate:,.0f}/s); counted "
          f"{r.counted:,.0f}; labels produced {r.labels_produced:,}, joined "
          f"{r.labels_joined:,.0f}; checkpoints "
          f"{r.checkpoints:.0f}\npeak RSS {r.warm_peak_mb:.1f} MB at the end of warm-up "
          f"(first {r.warmup_events:,} events), {r.peak_mb:.1f} MB at the end: growth "
          f"{r.growth:+.2%} (limit +5 %); bound {r.bound_mb:.0f} MB; RSS medians after "
          f"warm-up {r.start_mb:.1f} MB (first third) and {r.end_mb:.1f} MB (last third); "
          f"fd spread "
          f"{r.spread('fds')}, thread spread {r.spread('threads')} after warm-up\n"
          f"verdict: {'PASS' if r.ok() else 'FAIL'}", file=out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--max-entries", type=int, default=200_000)
    ap.add_argument("--every", type=float, default=3.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=0.4, help="fraction of the events")
    ap.add_argument("--checkpoint-interval", type=float, default=10.0,
                    help="seconds; 0 turns checkpoints off")
    ap.add_argument("--json", help="also write the verdict's figures to this file")
    ap.add_argument("--measure-base", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_base:
        r = run_soak(args.measure_base, max_entries=1, every_s=0.5,
                     checkpoint_interval_s=None, base_mb=0.0)
        print(f"{r.peak_mb:.1f}")
        return 0

    def progress(s: Sample) -> None:
        print(f"  t={s.t:6.0f}s events={s.events:>10,} rss={s.rss_mb:7.1f} MB "
              f"peak={s.hwm_mb:7.1f} MB fds={s.fds} "
              f"threads={s.threads} waiting={s.waiting:,}", file=sys.stderr, flush=True)

    r = run_soak(args.events, args.max_entries, args.every, args.warmup,
                 args.checkpoint_interval or None, progress)
    report(r)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "ok": bool(r.ok()), "events": r.events, "counted": float(r.counted),
            "labels_produced": r.labels_produced, "labels_joined": float(r.labels_joined),
            "checkpoints": float(r.checkpoints), "growth": float(r.growth),
            "peak_mb": r.peak_mb, "warm_peak_mb": r.warm_peak_mb, "bound_mb": r.bound_mb,
            "fd_spread": r.spread("fds"), "thread_spread": r.spread("threads"),
            "samples_after_warmup": len([x for x in r.samples if x.events > r.warmup_events]),
        }))
    return 0 if r.ok() else 1


if __name__ == "__main__":
    raise SystemExit(main())
