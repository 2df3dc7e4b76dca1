"""Decode + update from memory with segments: the 1,000-class model of benchmarks/scrape.py,
2 segment keys of 50 values each (camera, site), against the same stream without segments.

Each run is a fresh subprocess (peak RSS is its own) that decodes NDJSON messages of 100
predictions (and, separately, single-event messages) with the daemon's decoders and applies
them to the statistics wired as `visionmon.app.build_statistics` wires them:
  engine  the engine's counters alone (benchmarks/ingest.py's memory path)
  core    the engine and prediction drift (the baseline of benchmarks/scrape.py)
  full    every prediction-side block: drift, labels (join store, windows), quality
each without and with `segments` (then also the segment block: per-value counts and drift,
binned by the baseline). Printed: events/s (median of --runs rounds, each round running
every case once so that the machine's load drifts evenly over them), the ratio
with/without, µs per event, peak RSS, the segment state allocated, the series a snapshot
exports and its first render's time (cold threshold memo), and the segment state the
config allows (`visionmon check-config`'s figure).

    .venv/bin/python benchmarks/segments.py [--events 200000] [--runs 3]
        [--only engine,core,full] [--framings batched,single]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ingest import _peak_rss_mb
from benchmarks.scrape import CLASSES, MODEL, VERSIONS, _predictions, build_baseline_file
from visionmon.gc_tuning import tune_collector

VALUES = 50
BLOCKS = {"engine": "engine (+ segments)", "core": "engine, drift (+ segments)",
          "full": "engine, drift, labels, quality (+ segments)"}
SEGMENTS = [{"key": "camera", "max_values": VALUES}, {"key": "site", "max_values": VALUES}]


def _config(baseline: Path, segmented: bool) -> Any:
    from monitor.config import parse_config, resolve

    model: dict[str, Any] = {"name": MODEL, "classes": list(CLASSES)}
    if segmented:
        model["segments"] = SEGMENTS
    return resolve(parse_config({
        "version": 1, "models": [model],
        "baseline": {"mode": "file", "path": str(baseline)},
        "limits": {"max_versions_per_model": len(VERSIONS), "max_batch_events": 1000},
        "labels": {"max_entries": 200_000}}))


def _messages(n: int, framing: str) -> list[bytes]:
    import numpy as np
    import orjson

    rng = np.random.default_rng(3)
    cam = rng.integers(0, VALUES, n)
    site = rng.integers(0, VALUES, n)
    lines = []
    for i, p in enumerate(_predictions(n, 11, time.time() - n / 2000.0)):
        p["segments"] = {"camera": f"cam{cam[i]:02d}", "site": f"site{site[i]:02d}"}
        lines.append(bytes(memoryview(orjson.dumps(p))))
    if framing == "single":
        return lines
    return [b"\n".join(lines[j:j + 100]) for j in range(0, n, 100)]


def _one(args: argparse.Namespace) -> dict[str, Any]:
    from collectors.kafka.client import Record
    from collectors.records import RecordDecoders, TopicNames, apply_decoded, decode_records
    from monitor.engine import Engine
    from visionmon.app import build_statistics

    loaded = _config(args.baseline, args.segmented)
    stats = build_statistics(loaded)
    engine = stats.engine
    kept = {"engine": ("segments",), "core": ("drift", "segments")}.get(args.blocks)
    if kept is not None:  # the segment block still bins by the drift baseline
        engine.extensions = [x for x in engine.extensions if x.name in kept]
    records = [Record("predictions", 0, i, m, (), 0)
               for i, m in enumerate(_messages(args.events, args.framing))]
    decoders, topics = RecordDecoders.of(loaded), TopicNames.of(loaded)
    tune_collector()
    step = 10_000 if args.framing == "single" else 100  # as max_poll_records
    now = time.time()
    t0 = time.perf_counter()
    for j in range(0, len(records), step):
        apply_decoded(engine, decode_records(records[j:j + step], topics, decoders, now),
                      topics, None)
    dt = time.perf_counter() - t0
    assert isinstance(engine, Engine) and engine.accepted["predictions"] == args.events
    state_mib = sum(_state_bytes(x) for x in engine.extensions if x.name == "segments") / 2**20
    t0 = time.perf_counter()
    snap = engine.snapshot()
    render_s = time.perf_counter() - t0
    segment_series = sum(len(s) for name, s in snap.items() if "_segment_" in name)
    return {"eps": args.events / dt, "series": sum(len(s) for s in snap.values()),
            "segment_series": segment_series, "render_ms": render_s * 1000,
            "state_mib": state_mib}


def _state_bytes(segments: Any) -> int:
    """Bytes of the segment block's arrays after the run (windows and request counts)."""
    total = 0
    for s in segments.by_key.values():
        total += s.requests.nbytes
        for rows in [*s.drift.values(), s.labels, s.shadow]:
            if rows is not None:
                total += sum(ring._counts.nbytes for ring in rows.windows.rings)
    return total


def _state_mib(baseline: Path) -> float:
    """The segment state the config allows at most (all versions), as check-config says."""
    from monitor.segment_budget import segment_state_bytes

    loaded = _config(baseline, True)
    return sum(b for _, _, b in segment_state_bytes(loaded)) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--blocks", default="core")
    ap.add_argument("--framing", default="batched")
    ap.add_argument("--segmented", action="store_true")
    ap.add_argument("--baseline", type=Path)
    ap.add_argument("--only", default="engine,core,full",
                    help="the blocks to measure, comma-separated (engine, core, full)")
    ap.add_argument("--framings", default="batched,single",
                    help="the message framings, comma-separated (batched, single)")
    args = ap.parse_args()
    if args.one:
        out = _one(args)
        out["rss_mb"] = _peak_rss_mb()
        print(json.dumps(out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline.json"
        build_baseline_file(baseline)
        plan = [(blocks, framing, segmented) for blocks in args.only.split(",")
                for framing in args.framings.split(",") for segmented in (False, True)]
        results: dict[tuple[str, str, bool], list[dict[str, Any]]] = {p: [] for p in plan}
        for _ in range(args.runs):  # rounds of every case, so that load drifts evenly
            for blocks, framing, segmented in plan:
                cmd = [sys.executable, __file__, "--one", "--blocks", blocks,
                       "--framing", framing, "--baseline", str(baseline),
                       "--events", str(args.events)]
                proc = subprocess.run(cmd + (["--segmented"] if segmented else []),
                                      capture_output=True, text=True, timeout=900)
                if proc.returncode != 0:
                    raise SystemExit(proc.stderr[-3000:])
                results[(blocks, framing, segmented)].append(
                    json.loads(proc.stdout.strip().splitlines()[-1]))
        rows = []
        for (blocks, framing, segmented), rs in results.items():
            eps = statistics.median(r["eps"] for r in rs)
            rows.append((blocks, framing, segmented, eps, max(r["rss_mb"] for r in rs),
                         rs[0]["series"], rs[0]["segment_series"],
                         statistics.median(r["render_ms"] for r in rs), rs[0]["state_mib"]))
            print(f"  {blocks} {framing} segments={segmented} {eps:12,.0f} ev/s",
                  file=sys.stderr)
        state = _state_mib(baseline)
    print(f"\n{args.events:,} events of {len(CLASSES):,} classes and {len(VERSIONS)} versions, "
          f"median of {args.runs} runs; segments: 2 keys x {VALUES} values, segment state "
          f"allowed by the config: {state:,.0f} MiB\n")
    print("| blocks | messages | segments | events/s | with / without | µs per event | "
          "peak RSS (MB) | segment state (MiB) | series (segment series) | first render (ms) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    without = {(b, f): e for b, f, s, e, *_ in rows if not s}
    for blocks, framing, segmented, eps, rss, series, seg_series, render, state in rows:
        ratio = f"{eps / without[(blocks, framing)]:.0%}" if segmented else "-"
        print(f"| {BLOCKS[blocks]} | {framing} | {'2 x 50' if segmented else 'none'} | "
              f"{eps:,.0f} | {ratio} | {1e6 / eps:.2f} | {rss:.0f} | {state:,.1f} | "
              f"{series:,} ({seg_series:,}) | {render:,.0f} |")


if __name__ == "__main__":
    main()
