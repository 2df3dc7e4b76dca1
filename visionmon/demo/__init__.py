"""`visionmon demo`: the incident demo on embedded defaults.

Starts the embedded Kafka-protocol broker, trains a production and a reference model on
real digit images (or, with `--workload real`, takes MobileNetV2 and EfficientNet-Lite0 with
their ImageNet weights and 1,000 classes on real photos: setups.py), runs a simulated
serving stack and the daemon, injects four incidents one after another, and prints a live
status line and, at the end, a timeline of what caught each incident, after how many
seconds and events.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from monitor.config import load_config
from visionmon.app import App, wait_ready
from visionmon.broker import EmbeddedBroker, create_topics
from visionmon.demo.incidents import INCIDENTS, Detection, IncidentRecord, active
from visionmon.demo.setups import SETUPS, DemoSetup

log = logging.getLogger(__name__)

WINDOWS = ["1m", "10m", "1h"]
SIGNAL_WINDOW = "1m"
TICK_S = 0.1
WARMUP_FRACTION = 0.18


#: burn-rate tiers in wall-clock seconds for --prometheus (Prometheus sees real time, so
#: the SRE-workbook windows of 1h/5m … 3d/6h are scaled down for a 3-minute demo)
DEMO_TIERS = [
    {"severity": "page", "long": "60s", "short": "5s", "factor": 14.4},
    {"severity": "page", "long": "120s", "short": "10s", "factor": 6},
    {"severity": "ticket", "long": "300s", "short": "25s", "factor": 3},
]


def demo_config(bootstrap: str, out: Path, setup: DemoSetup, port: int,
                compressed_slo_windows: bool = False) -> dict[str, Any]:
    """The built-in config: the demo's model, its reference model, short windows."""
    model = setup.model
    cfg: dict[str, Any] = {
        "version": 1,
        "kafka": {"bootstrap_servers": [bootstrap], "group_id": "visionmon-demo",
                  "dead_letter_topic": "visionmon-dead-letter", "poll_timeout_ms": 200,
                  "commit_interval_seconds": 1.0, "lag_interval_seconds": 2.0},
        "models": [{"name": model, "classes": list(setup.classes),
                    "high_risk_classes": list(setup.high_risk)}],
        # a 10-class model renders in milliseconds: the timeline reads counts a second old
        "http": {"bind": "127.0.0.1", "port": port, "snapshot_interval_seconds": 1},
        "windows": {"sizes": WINDOWS, "slices": 30},
        "baseline": {"mode": "file", "path": str(setup.baseline)},
        "quality": {"eval_slice": "1m", "min_labels": 10, "min_shadow_images": 30},
        "state": {"checkpoint_dir": str(out / "state"), "checkpoint_interval_seconds": 5},
        "reference": setup.reference,
        "slos": {"version": 1, "objectives": [
            {"name": "availability", "model": model, "kind": "availability",
             "target": 0.999},
            {"name": "latency", "model": model, "kind": "latency", "target": 0.99,
             "latency_threshold_seconds": 0.25},
            {"name": "accuracy", "model": model, "kind": "accuracy",
             "target": setup.accuracy_target}]},
    }
    if compressed_slo_windows:
        cfg["slos"]["period"] = "1h"
        cfg["slos"]["windows"] = DEMO_TIERS
    return cfg


def _total(snap: dict[str, Any], name: str, **want: str) -> float:
    from monitor.catalog import CATALOG

    labels = CATALOG[name].labels
    return float(sum(v for k, v in snap.get(name, {}).items()
                     if all(dict(zip(labels, k, strict=True)).get(a) == b
                            for a, b in want.items())))


def run_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    out = Path(args.out or tempfile.mkdtemp(prefix="visionmon-demo-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "state", ignore_errors=True)  # a fresh broker: no state to resume
    console.print(f"[bold]visionmon demo[/] — output in {out}")
    workload = getattr(args, "workload", "digits")
    status = ("training the production and reference models on real digits…"
              if workload == "digits" else
              "loading ImageNet networks and scoring the photo pool (cached after the first "
              "run)…")
    with console.status(status):
        setup = SETUPS[workload](out, args.seed)
    console.print(setup.summary)
    if getattr(args, "speed", None) is None:
        args.speed = setup.speed
    if getattr(args, "image_fraction", None) is None:
        args.image_fraction = setup.image_fraction
    with EmbeddedBroker(log_path=str(out / "broker.log")) as broker:
        create_topics(broker.bootstrap, ["predictions", "images", "feedback",
                                         "visionmon-dead-letter"])
        cfg = demo_config(broker.bootstrap, out, setup, args.port,
                          compressed_slo_windows=args.prometheus)
        cfg_path = out / "visionmon.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        loaded = load_config(cfg_path)
        app = App(loaded)
        running = app.start_background()
        console.print(f"broker {broker.bootstrap}; metrics at [bold]{running.url}/metrics[/]")
        prom = None
        try:
            wait_ready(app.daemon, 60)
            if args.prometheus:
                prom = _start_prometheus(loaded, out, running.url, console)
            records, false_alarms = _run(app, loaded, setup, args, console, Live, prom)
            summary = _timeline(records, false_alarms, console, alerts_watched=prom is not None)
            (out / "timeline.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
            console.print(f"timeline written to {out / 'timeline.json'}")
            if args.keep_running:
                console.print("--keep-running: the daemon keeps serving; Ctrl-C or SIGTERM "
                              "to stop")
                wait_for_stop_signal()
        except KeyboardInterrupt:
            pass
        finally:
            running.stop()
            if prom is not None:
                prom.stop()
    return 0


def wait_for_stop_signal(poll_seconds: float = 1.0) -> None:
    """Block until SIGTERM (a container's stop) or Ctrl-C, so either shuts the demo down cleanly."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(poll_seconds):
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(app: App, loaded: Any, setup: DemoSetup, args: argparse.Namespace,
         console: Any, live_cls: Any, prom: Any = None
         ) -> tuple[list[IncidentRecord], dict[str, float]]:
    from collectors.kafka.client import open_producer
    from visionmon.demo.signals import Floors, evaluate

    producer = open_producer(loaded.config.kafka, "visionmon-demo-serving")
    serving = setup.serving(producer, args.seed, args.image_fraction)
    floors = Floors(setup.model, setup.accuracy_floor, setup.agreement_floor)
    # an ended incident stays in the 1-minute windows for 60 / speed wall seconds: at the
    # default speed that is within the 0.06 of the run allowed before
    grace = max(0.06, 60.0 / args.speed / args.duration)
    records = [IncidentRecord(i) for i in INCIDENTS]
    history: list[tuple[float, dict[str, Any]]] = []
    false_alarms: dict[str, float] = {}
    start = time.monotonic()
    # compressed event time runs from the past so that it never passes the real clock
    event_t0 = time.time() - args.duration * args.speed - 60.0
    sent_ticks = 0
    next_eval = start
    line = ""
    with live_cls(console=console, refresh_per_second=4, transient=True) as live:
        while (elapsed := time.monotonic() - start) < args.duration:
            progress = elapsed / args.duration
            incidents = active(INCIDENTS, progress)
            due = int(elapsed * args.rate) - sent_ticks
            event_ts = event_t0 + elapsed * args.speed
            serving.tick(max(due, 0), elapsed, event_ts, incidents)
            sent_ticks += max(due, 0)
            for r in records:
                if r.started_at is None and r.incident.key in incidents:
                    r.started_at = elapsed
                    r.events_at_start = serving.sent["predictions"]
            if time.monotonic() >= next_eval:
                next_eval += 0.5
                snap = app.snapshot()
                history.append((elapsed, snap))
                short = _ago(history, elapsed, 3.0)
                long = _ago(history, elapsed, 12.0)
                signals = evaluate(snap, short, long, SIGNAL_WINDOW, floors)
                if prom is not None:
                    signals.update({f"alert:{name}": True for name in prom.firing()})
                _record(records, signals, elapsed, serving.sent["predictions"], incidents,
                        progress, false_alarms, grace)
                line = _status(elapsed, args.duration, serving.sent, snap, incidents, signals)
                live.update(line)
                history = [h for h in history if h[0] > elapsed - 15.0]
            time.sleep(TICK_S)
    serving.flush()
    producer.close()
    console.print(line)
    if false_alarms:
        console.print("[yellow]signals that fired with no incident active:[/] " + ", ".join(
            f"{s} at {t:.0f}s" for s, t in sorted(false_alarms.items(), key=lambda x: x[1])))
    return records, false_alarms


def _ago(history: list[tuple[float, dict[str, Any]]], now: float, seconds: float
         ) -> dict[str, Any]:
    for t, snap in history:
        if t >= now - seconds:
            return snap
    return history[0][1]


def _record(records: list[IncidentRecord], signals: dict[str, bool], elapsed: float,
            events: int, incidents: set[str], progress: float,
            false_alarms: dict[str, float], grace: float = 0.06) -> None:
    """Note each incident's first detections, and signals that fire with no incident
    active and none ended within `grace` (a share of the run: the windows still hold it)."""
    for r in records:
        if r.started_at is None:
            continue
        inc = r.incident
        # a signal counts for an incident until the next one starts (the windows lag)
        later = [i.start for i in INCIDENTS if i.start > inc.start]
        if progress >= (min(later) if later else 1.0):
            continue
        for s in inc.signals:
            if signals.get(s) and s not in r.detections:
                r.detections[s] = Detection(s, elapsed - r.started_at, events - r.events_at_start)
        if inc.key in incidents:
            for s in inc.quiet:
                if signals.get(s) and s not in r.quiet_violations:
                    r.quiet_violations[s] = Detection(s, elapsed - r.started_at,
                                                      events - r.events_at_start)
    if progress > WARMUP_FRACTION and not incidents:
        recent = any(r.started_at is not None and progress < r.incident.end + grace
                     for r in records)
        if not recent:
            for s, on in signals.items():
                if on and s not in false_alarms:
                    false_alarms[s] = elapsed


def _status(elapsed: float, duration: float, sent: dict[str, int], snap: dict[str, Any],
            incidents: set[str], signals: dict[str, bool]) -> str:
    counted = _total(snap, "visionmon_requests_total")
    scored = _total(snap, "visionmon_reference_images_scored_total")
    labels = _total(snap, "visionmon_labels_total")
    firing = [s for s, on in signals.items() if on]
    return (f"[{elapsed:5.1f}/{duration:.0f}s] sent {sent['predictions']} counted "
            f"{counted:.0f} | images {scored:.0f} | labels {labels:.0f} | incident: "
            f"{', '.join(sorted(incidents)) or '-'} | firing: {', '.join(firing) or '-'}")


def _timeline(records: list[IncidentRecord], false_alarms: dict[str, float], console: Any,
              alerts_watched: bool = True) -> dict[str, Any]:
    """The incident table. Signals named `alert:...` come from Prometheus: without
    `--prometheus` nobody evaluates them, so they are listed as not watched, not missed."""
    from rich.table import Table

    table = Table(title="incident timeline")
    for col in ("incident", "started", "caught by (after s / events)", "missed",
                "must stay quiet"):
        table.add_column(col)
    out: list[dict[str, Any]] = []
    for r in records:
        inc = r.incident
        caught = ", ".join(f"{d.signal} ({d.after_seconds:.1f}s / {d.after_events})"
                           for d in r.detections.values()) or "-"
        missed = [s for s in inc.signals if s not in r.detections
                  and (alerts_watched or not s.startswith("alert:"))]
        quiet = ", ".join(f"[red]{s} fired[/]" for s in r.quiet_violations) or (
            ", ".join(f"{s} ok" for s in inc.quiet) or "-")
        started = "-" if r.started_at is None else f"{r.started_at:.1f}s"
        table.add_row(inc.title, started, caught, ", ".join(missed) or "-", quiet)
        out.append({"incident": inc.key, "title": inc.title, "started_s": r.started_at,
                    "caught": {d.signal: {"after_s": round(d.after_seconds, 2),
                                          "after_events": d.after_events}
                               for d in r.detections.values()},
                    "missed": missed, "quiet_violations": sorted(r.quiet_violations)})
    console.print(table)
    if not alerts_watched:
        console.print("signals named alert:... are Prometheus alerts: run with --prometheus "
                      "to watch them")
    return {"incidents": out, "false_alarms": false_alarms}


def _start_prometheus(loaded: Any, out: Path, target: str, console: Any) -> Any:
    """A real Prometheus with the generated rules, if the binary is installed."""
    if shutil.which("prometheus") is None:
        console.print("[yellow]--prometheus: no `prometheus` binary on PATH; skipped[/]")
        return None
    from visionmon.prometheus import start_with_generated_rules

    prom = start_with_generated_rules(loaded, out / "prometheus", target)
    console.print(f"prometheus at {prom.url} with rules from {out / 'prometheus' / 'rules'}")
    return prom
