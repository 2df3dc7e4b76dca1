"""Ingestion throughput: bare consumer ceiling vs the daemon's path, per Kafka backend.

Produces 200,000 prediction events to an embedded broker (single-event messages and
100-event NDJSON messages), then measures, each in a fresh subprocess, median of 3:
  bare      a bare consume loop over the single-event topic (the backend's ceiling)
  daemon-1  poll -> decode -> validate -> state -> metrics, single-event messages
  daemon-100  the same with 100-event messages
  memory    decode + state update alone from in-memory messages (no Kafka)
and prints events/s and peak RSS as a table.

    .venv/bin/python benchmarks/ingest.py [--events 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visionmon.gc_tuning import tune_collector

CLASSES = [f"c{i}" for i in range(10)]
#: the daemon's kafka.max_poll_records here; MAX_POLL=100 in the environment overrides it
MAX_POLL = int(os.environ.get("MAX_POLL", "10000"))


def _peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would include the parent's peak: it survives exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _events(n: int) -> list[bytes]:
    import numpy as np
    import orjson

    rng = np.random.default_rng(0)
    preds = rng.integers(0, 10, n)
    conf = rng.uniform(0.3, 1.0, n).round(4)
    lat = rng.lognormal(3.5, 0.5, n).round(2)
    now = time.time()
    # bytes(memoryview(...)): a right-sized copy; orjson's own result keeps a buffer of
    # about 4 KB per message, which would make the peak RSS column measure this list
    return [bytes(memoryview(orjson.dumps({
        "request_id": f"req-{i:08d}", "ts": now, "model": "bench", "version": "v1",
        "pred": int(preds[i]), "confidence": float(conf[i]), "latency_ms": float(lat[i]),
        "deployment": "bench-1"}))) for i in range(n)]


def _produce(bootstrap: str, n: int) -> None:
    import confluent_kafka as ck

    from visionmon.broker import create_topics

    create_topics(bootstrap, ["single", "batched"], partitions=3)
    p = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                     "batch.num.messages": 10000, "queue.buffering.max.messages": 1_000_000})
    msgs = _events(n)
    for i, m in enumerate(msgs):
        while True:
            try:
                p.produce("single", m, partition=i % 3)
                break
            except BufferError:
                p.poll(0.05)
    for j in range(0, n, 100):
        while True:
            try:
                p.produce("batched", b"\n".join(msgs[j:j + 100]), partition=(j // 100) % 3)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)


def _config(bootstrap: str, backend: str, topic: str, group: str) -> object:
    from monitor.config import parse_config, resolve

    return resolve(parse_config({
        "version": 1,
        "kafka": {"bootstrap_servers": [bootstrap], "client": backend, "group_id": group,
                  "topics": {"predictions": topic, "images": f"{topic}-img",
                             "feedback": f"{topic}-fb"},
                  "poll_timeout_ms": 100, "max_poll_records": MAX_POLL,
                  "commit_interval_seconds": 1.0},
        "models": [{"name": "bench", "classes": CLASSES}],
        "limits": {"max_batch_events": 1000},
    }))


def _one(args: argparse.Namespace) -> dict[str, float]:
    n = args.events
    if args.mode == "memory":  # the daemon's decode and apply steps, no consumer
        from collectors.kafka.client import Record
        from collectors.records import RecordDecoders, TopicNames, apply_decoded, decode_records
        from monitor.engine import Engine

        msgs = _events(n)
        batched = [b"\n".join(msgs[j:j + 100]) for j in range(0, n, 100)]
        source = msgs if args.backend == "single" else batched
        records = [Record("p", 0, i, m, (), 0) for i, m in enumerate(source)]
        loaded = _config("127.0.0.1:9", "kafka-python", "p", "memory")
        decoders, topics = RecordDecoders.of(loaded), TopicNames.of(loaded)  # type: ignore[arg-type]
        engine = Engine({"bench": CLASSES}, 8)
        tune_collector()
        t0 = time.perf_counter()
        now = time.time()
        step = 10_000 if args.backend == "single" else 100  # as max_poll_records
        for j in range(0, len(records), step):
            apply_decoded(engine, decode_records(records[j:j + step], topics, decoders, now),
                          topics, None)
        dt = time.perf_counter() - t0
        assert engine.accepted["p"] == n
        return {"eps": n / dt}
    if args.mode == "bare":
        return {"eps": n / _bare(args.backend, args.bootstrap, n, "single")}
    if args.mode == "bare-100":  # the same events in 100-event messages
        return {"eps": n / _bare(args.backend, args.bootstrap, n // 100, "batched")}
    return {"eps": n / _daemon(args)}


def _bare(backend: str, bootstrap: str, n: int, topic: str) -> float:
    """Seconds for a bare group consumer to read n messages of `topic`, timed from the
    start of the poll that returned the first records (group join and offset lookup,
    which depend on the broker, are left out, as for the daemon)."""
    group = f"bare-{time.time_ns()}"
    got = 0
    t0: float | None = None
    if backend == "kafka-python":
        from kafka import KafkaConsumer

        c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                          auto_offset_reset="earliest", enable_auto_commit=False,
                          session_timeout_ms=6000, heartbeat_interval_ms=1000,
                          max_poll_interval_ms=6000, max_poll_records=10000)
        while got < n:
            before = time.perf_counter()
            k = sum(len(v) for v in c.poll(100).values())
            if k and t0 is None:
                t0 = before
            got += k
    else:
        import confluent_kafka as ck

        c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
        c.subscribe([topic])
        while got < n:
            before = time.perf_counter()
            k = sum(1 for m in c.consume(10000, 0.1) if m.error() is None)
            if k and t0 is None:
                t0 = before
            got += k
    dt = time.perf_counter() - (t0 if t0 is not None else time.perf_counter())
    c.close()
    return dt


class _TimedConsumer:
    """Wraps the daemon's consumer to note when the poll that returned the first records
    started: the same clock start as the bare loop."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.t0: float | None = None

    def poll(self, timeout_s: float, max_records: int) -> list:
        before = time.perf_counter()
        out = self.inner.poll(timeout_s, max_records)  # type: ignore[attr-defined]
        if out and self.t0 is None:
            self.t0 = before
        return out

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def _daemon(args: argparse.Namespace) -> float:
    import threading

    from collectors.daemon import Daemon
    from collectors.kafka.client import open_consumer
    from monitor.engine import Engine

    topic = "single" if args.mode == "daemon-1" else "batched"
    loaded = _config(args.bootstrap, args.backend, topic, f"d-{time.time_ns()}")
    engine = Engine({"bench": CLASSES}, 8)
    timed: list[_TimedConsumer] = []

    def factory() -> object:
        timed.append(_TimedConsumer(open_consumer(loaded.config.kafka, 1_048_576)))
        return timed[-1]

    d = Daemon(loaded, engine, consumer_factory=factory)  # type: ignore[arg-type]
    tune_collector()  # as `visionmon run` does
    th = threading.Thread(target=d.run, daemon=True)
    th.start()
    while engine.accepted.get(topic, 0) < args.events:  # an int read: no lock needed
        time.sleep(0.02)
    dt = time.perf_counter() - (timed[0].t0 or time.perf_counter())
    d.stop()
    th.join(20)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="")
    ap.add_argument("--backend", default="")
    ap.add_argument("--bootstrap", default="")
    args = ap.parse_args()
    if args.one:
        out = _one(args)
        out["rss_mb"] = _peak_rss_mb()
        print(json.dumps(out))
        return

    from visionmon.broker import EmbeddedBroker

    rows = []
    with EmbeddedBroker() as broker:
        t0 = time.perf_counter()
        _produce(broker.bootstrap, args.events)
        print(f"produced {args.events} events twice in {time.perf_counter() - t0:.1f}s",
              file=sys.stderr)
        plan = [(b, m) for b in ("kafka-python", "confluent-kafka")
                for m in ("bare", "daemon-1", "bare-100", "daemon-100")]
        plan += [("single", "memory"), ("batched", "memory")]
        for backend, mode in plan:
            results = []
            for _ in range(args.runs):
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", "--mode", mode, "--backend", backend,
                     "--bootstrap", broker.bootstrap, "--events", str(args.events)],
                    capture_output=True, text=True, timeout=900)
                if proc.returncode != 0:
                    raise SystemExit(proc.stderr[-3000:])
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            eps = statistics.median(r["eps"] for r in results)
            rss = max(r["rss_mb"] for r in results)
            rows.append((backend, mode, eps, rss))
            print(f"  {backend:16s} {mode:11s} {eps:12,.0f} ev/s  rss {rss:6.0f} MB",
                  file=sys.stderr)
    ceiling = {(b, m): e for b, m, e, _ in rows if m.startswith("bare")}
    print(f"\n{args.events:,} events, median of {args.runs} runs\n")
    print("| backend | path | events/s | vs bare ceiling | peak RSS (MB) |")
    print("|---|---|---:|---:|---:|")
    for backend, mode, eps, rss in rows:
        bare = {"daemon-1": "bare", "daemon-100": "bare-100"}.get(mode, mode)
        ratio = f"{eps / ceiling[(backend, bare)]:.0%}" if (backend, bare) in ceiling else "-"
        label = {"bare": "bare consume loop, 1 event/message",
                 "bare-100": "bare consume loop, 100 events/message",
                 "daemon-1": "daemon, 1 event/message",
                 "daemon-100": "daemon, 100 events/message",
                 "memory": "decode + update from memory"}[mode]
        if mode == "memory":
            label += f" ({backend} messages)"
            backend = "-"
        print(f"| {backend} | {label} | {eps:,.0f} | {ratio} | {rss:.0f} |")


if __name__ == "__main__":
    main()
