"""`visionmon demo`: embedded broker, simulated serving traffic and the daemon, on
built-in defaults. Prints the /metrics URL and a live one-line summary."""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from collectors.kafka.client import open_producer
from monitor.config import load_config
from visionmon.app import App, wait_ready
from visionmon.broker import EmbeddedBroker, create_topics
from visionmon.traffic import SyntheticTraffic, chunks, ndjson

log = logging.getLogger(__name__)

DEMO_CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def demo_config(bootstrap: str, state_dir: str) -> dict[str, Any]:
    """The built-in example config, pointed at the embedded broker."""
    return {
        "version": 1,
        "kafka": {"bootstrap_servers": [bootstrap], "group_id": "visionmon-demo",
                  "dead_letter_topic": "visionmon-dead-letter"},
        "models": [{"name": "digits", "classes": DEMO_CLASSES,
                    "high_risk_classes": ["seven"]}],
        "http": {"bind": "127.0.0.1", "port": 0},
        "state": {"checkpoint_dir": state_dir},
    }


def _total(snapshot: dict[str, Any], name: str) -> float:
    return float(sum(v for v in snapshot.get(name, {}).values()))


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out or tempfile.mkdtemp(prefix="visionmon-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_path=str(out / "broker.log")) as broker:
        cfg = demo_config(broker.bootstrap, str(out / "state"))
        topics = [*cfg["kafka"].get("topics", {}).values()] or [
            "predictions", "images", "feedback"]
        create_topics(broker.bootstrap, [*topics, cfg["kafka"]["dead_letter_topic"]])
        cfg_path = out / "visionmon.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        loaded = load_config(cfg_path)
        app = App(loaded, port=args.port)
        running = app.start_background()
        print(f"visionmon demo: broker {broker.bootstrap}, config {cfg_path}")
        print(f"metrics: {running.url}/metrics   health: {running.url}/healthz")
        try:
            wait_ready(app.daemon, 60)
            _traffic(app, loaded.config.kafka, args)
            time.sleep(2.0)
            snap = app.snapshot()
            print()
            print(f"done: {_total(snap, 'visionmon_requests_total'):.0f} requests counted, "
                  f"{_total(snap, 'visionmon_records_rejected_total'):.0f} rejected")
            if args.keep_running:
                print("--keep-running: Ctrl-C to stop")
                while True:
                    time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            running.stop()
    return 0


def _traffic(app: App, kafka_cfg: Any, args: argparse.Namespace) -> None:
    producer = open_producer(kafka_cfg, "visionmon-demo-traffic")
    traffic = SyntheticTraffic("digits", "v1", DEMO_CLASSES, seed=args.seed)
    start = time.monotonic()
    sent = 0
    next_line = start
    try:
        while (elapsed := time.monotonic() - start) < args.duration:
            due = int(elapsed * args.rate) - sent
            if due > 0:
                events = traffic.events(due, time.time())
                for chunk in chunks(events, 100):
                    producer.send("predictions", ndjson(chunk))
                sent += due
            if time.monotonic() >= next_line:
                snap = app.snapshot()
                print(f"\r[{elapsed:5.1f}s] sent {sent:7d}  counted "
                      f"{_total(snap, 'visionmon_requests_total'):7.0f}  rejected "
                      f"{_total(snap, 'visionmon_records_rejected_total'):4.0f}  kafka "
                      f"{'up' if app.daemon.status.connected else 'DOWN'}", end="", flush=True)
                next_line += 1.0
            time.sleep(0.05)
    finally:
        producer.flush()
        producer.close()
