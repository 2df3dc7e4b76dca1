"""`visionmon baseline build`: profile a model's traffic from JSON lines or a Kafka time
range into a baseline file (written atomically, content hash inside)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from monitor import baseline as baseline_mod
from monitor.baseline import BaselineError
from monitor.config import ConfigError, LoadedConfig, load_config
from monitor.events import (
    DecodeLimits,
    FeedbackDecoder,
    ModelClassIndex,
    PredictionDecoder,
    PredictionEvent,
)


def parse_time(text: str) -> float:
    """Epoch seconds or RFC 3339 -> epoch seconds."""
    try:
        return float(text)
    except ValueError:
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:
            raise ValueError(f"{text!r}: give a UTC offset (e.g. 2026-11-28T00:00:00Z)") from None
        return dt.timestamp()


def _decoders(loaded: LoadedConfig) -> tuple[PredictionDecoder, FeedbackDecoder]:
    index = {n: ModelClassIndex.of(m.classes) for n, m in loaded.models.items()}
    limits = DecodeLimits(max_message_bytes=loaded.config.limits.max_message_bytes,
                          max_batch_events=loaded.config.limits.max_batch_events,
                          max_future_skew_seconds=float("inf"))
    return PredictionDecoder(index, limits), FeedbackDecoder(index, limits)


def _jsonl(path: str) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield line


def read_events(loaded: LoadedConfig, lines: Iterator[bytes]) -> tuple[list[PredictionEvent], int]:
    """Decode prediction lines; returns the events and the number of refused lines."""
    dec, _ = _decoders(loaded)
    events: list[PredictionEvent] = []
    refused = 0
    now = time.time()
    for raw in lines:
        d = dec.decode(raw, now)
        events.extend(d.events)
        refused += len(d.rejections)
    return events, refused


def read_labels(loaded: LoadedConfig, model: str, path: str) -> dict[str, int]:
    _, fb = _decoders(loaded)
    index = loaded.models[model].index()
    out: dict[str, int] = {}
    for raw in _jsonl(path):
        for f in fb.decode(raw, time.time()).events:
            label = f.label if isinstance(f.label, int) else index.get(f.label)
            if label is not None and 0 <= label < len(index):
                out[f.request_id] = label
    return out


def kafka_lines(loaded: LoadedConfig, since: float, until: float) -> Iterator[bytes]:
    """Prediction records of the time range, read by manual assignment (no group): seek
    with offsets-for-times (a lower bound on some brokers), then filter by record time."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    cfg = loaded.config.kafka
    from collectors.kafka.kafka_python_backend import _common

    consumer = KafkaConsumer(enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=3000, **_common(cfg))
    topic = cfg.topics.predictions
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(parts)
    starts = consumer.offsets_for_times({tp: int(since * 1000) for tp in parts})
    ends = consumer.end_offsets(parts)
    for tp in parts:
        found = starts.get(tp)
        if found is None:
            consumer.seek(tp, ends[tp])
        else:
            consumer.seek(tp, found.offset)
    remaining = {tp for tp in parts if consumer.position(tp) < ends[tp]}
    while remaining:
        batch = consumer.poll(timeout_ms=1000, max_records=5000)
        if not batch:
            break
        for tp, msgs in batch.items():
            for m in msgs:
                if since * 1000 <= m.timestamp <= until * 1000 and m.value:
                    yield m.value
            if consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    consumer.close()


def build_baseline_command(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.config)
        if args.model not in loaded.models:
            raise ConfigError(f"{args.config}: --model {args.model!r} is not configured; "
                              f"models are {sorted(loaded.models)}")
        if bool(args.from_jsonl) == bool(args.from_kafka):
            raise ConfigError("give exactly one of --from-jsonl FILE or --from-kafka "
                              "(with --since and --until)")
        if args.from_jsonl:
            events, refused = read_events(loaded, _jsonl(args.from_jsonl))
            source = f"jsonl:{Path(args.from_jsonl).name}"
        else:
            if not (args.since and args.until):
                raise ConfigError("--from-kafka needs --since and --until "
                                  "(epoch seconds or RFC 3339)")
            since, until = parse_time(args.since), parse_time(args.until)
            events, refused = read_events(loaded, kafka_lines(loaded, since, until))
            events = [e for e in events if since <= e.ts <= until]
            source = f"kafka:{args.since}..{args.until}"
        labels = read_labels(loaded, args.model, args.labels_jsonl) if args.labels_jsonl else None
        images = []
        if args.images:
            from reference_model.profile import score_images_for_baseline

            images = score_images_for_baseline(loaded, args.model, args.images)
        b = baseline_mod.build_baseline(
            args.model, loaded.models[args.model].classes, events, labels,
            k=loaded.config.baseline.quantile_bins, images=images, created_at=time.time(),
            source=source)
        path = baseline_mod.save(b, args.out)
    except (ConfigError, BaselineError, ValueError, OSError) as err:
        print(f"baseline build failed: {err}", file=sys.stderr)
        return 2
    shadow = ""
    if b.agreement is not None:
        shadow = f"; shadow agreement profile from {int(b.agreement.n.sum())} joined images"
    elif images:
        shadow = ("; no shadow agreement profile: no image's request_id matched a prediction "
                  "(the agreement test stays off)")
    print(f"{path}: {b.events} events ({refused} refused lines), {b.labeled_events} labeled, "
          f"features {', '.join(b.features)}{shadow}; sha256 {b.sha256}")
    return 0


def _export_model(loaded: LoadedConfig, model: str | None) -> str:
    """The model to export: `--model`, or the config's only model."""
    if model is None:
        if len(loaded.models) != 1:
            raise ConfigError(f"{loaded.path}: give --model, one of {sorted(loaded.models)}")
        return next(iter(loaded.models))
    if model not in loaded.models:
        raise ConfigError(f"{loaded.path}: --model {model!r} is not configured; "
                          f"models are {sorted(loaded.models)}")
    return model


def export_baseline_command(args: argparse.Namespace) -> int:
    """`visionmon baseline export`: the baseline the daemon uses, from its checkpoint, to a
    file that `baseline.mode: file` loads (exporting that file again gives the same bytes)."""
    from visionmon.checkpoint_baseline import CheckpointBaselineError, read_checkpoint_baselines

    try:
        loaded = load_config(args.config)
        model = _export_model(loaded, args.model)
        found = read_checkpoint_baselines(loaded)
        b = found.baselines.get(model)
        if b is None:
            raise CheckpointBaselineError(f"no baseline to export: {found.missing(loaded, model)}")
        b = baseline_mod.seal(b)
        path = baseline_mod.save(b, args.out)
    except (ConfigError, CheckpointBaselineError, BaselineError, OSError) as err:
        print(f"baseline export failed: {err}", file=sys.stderr)
        return 2
    print(f"{path}: baseline of {model} from {found.path} ({b.events} events, "
          f"{b.labeled_events} labeled, source {b.source!r}, features "
          f"{', '.join(b.features)}); sha256 {b.sha256}\n"
          f"load it with baseline.mode: file and baseline.path: {path}")
    return 0
