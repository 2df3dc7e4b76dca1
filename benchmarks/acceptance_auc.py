"""What false accepts and per-class AUC cost at 1,000 classes: decode + update time and
state size, from memory (no broker).

The stream is benchmarks/scrape.py's 1,000-class model (8 versions, a Zipf-like class prior,
2,000 predictions per second of event time, 100-event NDJSON messages, labels for 30 % of the
predictions one per message 2,000 predictions later), with each prediction carrying its top
5 (`topk`) so that the AUC has scores. Three configurations are timed, rotated round by round
in this process (median of the rounds):

  base        no acceptance rule, auc.enabled false
  accept      models[].accept (threshold 0.8, one negative class)
  accept+auc  the same and the AUC (auc.score_bins 50, auc.slices 6, the defaults)

and it prints events/s, the extra microseconds per label over `base`, the AUC state per
window and version (bytes held by the sparse score bins) against the dense worst case, the
acceptance pairs kept, and the time to capture and render the AUC series.

    .venv/bin/python benchmarks/acceptance_auc.py [--events 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scrape import (  # noqa: E402
    CLASSES,
    EVENT_RATE,
    LABEL_LAG,
    LABELED,
    MODEL,
    PER_MESSAGE,
    VERSIONS,
    _class_prior,
)

CONFIGS = ("base", "accept", "accept+auc")
WINDOWS = ("5m", "1h", "1d")


def _messages(n: int, seed: int, t0: float) -> tuple[list[bytes], list[list[bytes]]]:
    """Prediction messages and, per prediction message, the label messages that follow it."""
    import orjson

    rng = np.random.default_rng(seed)
    prior = _class_prior(np.random.default_rng(0))
    pred = rng.choice(len(CLASSES), size=n, p=prior)
    label = np.where(rng.random(n) < 0.85, pred, rng.choice(len(CLASSES), size=n, p=prior))
    labeled = rng.random(n) < LABELED
    top = rng.dirichlet(np.ones(5) * 0.5, n)
    top = np.sort(top, axis=1)[:, ::-1] * rng.uniform(0.5, 1.0, (n, 1))
    others = rng.choice(len(CLASSES), size=(n, 4))
    preds, labels = [], []
    for start in range(0, n, PER_MESSAGE):
        chunk = []
        for i in range(start, min(n, start + PER_MESSAGE)):
            classes = [int(pred[i])] + [int(c) for c in others[i] if c != pred[i]]
            chunk.append(orjson.dumps({
                "request_id": f"q{i:08d}", "ts": t0 + i / EVENT_RATE, "model": MODEL,
                "version": VERSIONS[i % len(VERSIONS)], "latency_ms": 30.0,
                "topk": [[c, round(float(p), 4)] for c, p in zip(classes, top[i], strict=False)]}))
        preds.append(b"\n".join(chunk))
        labels.append([orjson.dumps({"request_id": f"q{i:08d}", "label": int(label[i]),
                                     "ts": t0 + (i + LABEL_LAG) / EVENT_RATE})
                       for i in range(max(0, start - LABEL_LAG),
                                      max(0, start + PER_MESSAGE - LABEL_LAG)) if labeled[i]])
    return preds, labels


def _loaded(config: str) -> Any:
    from monitor.config import parse_config, resolve

    model: dict[str, Any] = {"name": MODEL, "classes": list(CLASSES)}
    if config != "base":
        model["accept"] = {"threshold": 0.8, "negative_classes": [CLASSES[0]]}
    return resolve(parse_config({
        "version": 1, "models": [model], "limits": {"max_versions_per_model": 10},
        "labels": {"max_entries": 200_000}, "auc": {"enabled": config == "accept+auc"}}))


def _run(config: str, preds: list[bytes], labels: list[list[bytes]]) -> dict[str, float]:
    from monitor.class_auc import ClassAucMonitor
    from monitor.events import DecodeLimits, FeedbackDecoder, ModelClassIndex, PredictionDecoder
    from visionmon.app import build_statistics

    stats = build_statistics(_loaded(config))
    index = {MODEL: ModelClassIndex.of(CLASSES)}
    limits = DecodeLimits(max_batch_events=1000, max_future_skew_seconds=1e12)
    pdec, fdec = PredictionDecoder(index, limits), FeedbackDecoder(index, limits)
    now = time.time() + 1e9
    n_labels = 0
    start = time.process_time()
    for p, ls in zip(preds, labels, strict=True):
        stats.engine.apply_predictions(pdec.decode(p, now).events)
        if ls:
            events = [e for raw in ls for e in fdec.decode(raw, now).events]
            n_labels += len(events)
            stats.labels.apply_feedback(events)
    elapsed = time.process_time() - start
    out = {"seconds": elapsed, "labels": float(n_labels)}
    auc = next((x for x in stats.engine.extensions if isinstance(x, ClassAucMonitor)), None)
    if auc is not None:
        out["auc_bytes"] = float(auc.state_bytes())
        t = time.perf_counter()
        captured = auc.capture()
        out["capture_ms"] = (time.perf_counter() - t) * 1000
        from monitor.snapshot import SnapshotBuilder
        t = time.perf_counter()
        captured.render(SnapshotBuilder())
        out["render_ms"] = (time.perf_counter() - t) * 1000
        used = [u for v in auc.by_version.values() for r in v.rings for u in r.usage()]
        out["classes_per_slice"] = float(np.mean([rows for rows, _ in used]))
        out["bytes_per_slice"] = float(np.mean([nbytes for _, nbytes in used]))
    accept = next((x for x in stats.engine.extensions if x.name == "acceptance"), None)
    if accept is not None:
        out["pairs"] = float(sum(len(v.pairs) for v in accept.by_version.values()))  # type: ignore[attr-defined]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    preds, labels = _messages(args.events, 1, 1_800_000_000.0)
    results: dict[str, list[dict[str, float]]] = {c: [] for c in CONFIGS}
    for config in CONFIGS:  # imports and first calls outside the timed runs
        _run(config, preds[:50], labels[:50])
    for r in range(args.rounds):
        for config in CONFIGS[r % len(CONFIGS):] + CONFIGS[:r % len(CONFIGS)]:
            results[config].append(_run(config, preds, labels))

    def med(config: str, key: str) -> float:
        return statistics.median(x[key] for x in results[config])

    n_labels = med("base", "labels")
    print(f"{args.events:,} predictions (top 5 each) of a {len(CLASSES):,}-class model, "
          f"{len(VERSIONS)} versions, {n_labels:,.0f} labels; median of {args.rounds} rounds\n")
    print("| configuration | events per CPU second | ratio to base | extra CPU µs per label |")
    print("|---|---|---|---|")
    base = med("base", "seconds")
    for config in CONFIGS:
        s = med(config, "seconds")
        extra = (s - base) / n_labels * 1e6
        print(f"| {config} | {args.events / s:,.0f} | {base / s:.2f} | "
              f"{'' if config == 'base' else f'{extra:.1f}'} |")
    auc_bytes = med("accept+auc", "auc_bytes")
    slice_bytes = med("accept+auc", "bytes_per_slice")
    dense = len(CLASSES) * 2 * 50 * 8
    print(f"\nAUC state: {auc_bytes / 1e6:.2f} MB in all ({len(VERSIONS)} versions x "
          f"{len(WINDOWS)} windows, the slices this stream's event time reached); per slice in "
          f"use {slice_bytes / 1e6:.3f} MB for {med('accept+auc', 'classes_per_slice'):.0f} "
          f"classes (all {len(CLASSES):,} classes: {dense / 1e6:.2f} MB of counts; a window "
          f"holds 6 slices)")
    print(f"acceptance pairs kept: {med('accept', 'pairs'):,.0f} over {len(VERSIONS)} versions")
    print(f"AUC capture (under the lock): {med('accept+auc', 'capture_ms'):.1f} ms; render: "
          f"{med('accept+auc', 'render_ms'):.1f} ms")


if __name__ == "__main__":
    main()
