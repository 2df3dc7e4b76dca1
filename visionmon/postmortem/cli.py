"""The `visionmon replay` and `visionmon report` commands: options, wiring of the
postmortem modules (read -> replay -> OpenMetrics; metrics -> sections -> page), the
progress bar and the printed summaries. No computing happens here."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping
from typing import IO, Any

from collectors.kafka.client import Record
from collectors.records import TopicNames
from monitor.config import ConfigError, load_config
from visionmon.postmortem.baselines import BaselineChoice, replay_baselines
from visionmon.postmortem.metrics import ReportError, read_openmetrics, scrape
from visionmon.postmortem.read import KafkaRangeReader, ReplayError, count_lines, jsonl_records
from visionmon.postmortem.replay import DEFAULT_STEP_S, ReplaySummary, run_replay
from visionmon.postmortem.report import build_report
from visionmon.postmortem.thumbnails import DEFAULT_THUMBNAILS
from visionmon.postmortem.timerange import TimeRange, iso, parse_time

# --------------------------------------------------------------------------- replay


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class EventsPerSecond(ProgressColumn):
        def render(self, task: Task) -> Text:
            elapsed = task.elapsed or 0.0
            rate = task.fields.get("events", 0) / elapsed if elapsed > 0 else 0.0
            return Text(f"{rate:,.0f} events/s")

    console = Console(stderr=True)
    return Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("records"), EventsPerSecond(), TimeRemainingColumn(),
                    console=console, disable=not (enabled and console.is_terminal),
                    transient=False)


def print_summary(s: ReplaySummary, window: TimeRange, file: IO[str] | None = None,
                  baselines: Mapping[str, str] | None = None) -> None:
    """What the replay read, applied and wrote; `baselines`: model -> where its baseline
    came from."""
    span = "no events" if s.first_ts is None or s.last_ts is None else \
        f"{iso(s.first_ts)} .. {iso(s.last_ts)}"
    rng = "everything" if window == TimeRange() else \
        f"{iso(window.since) if math.isfinite(window.since) else 'the start'} .. " \
        f"{iso(window.until) if math.isfinite(window.until) else 'the end'}"
    rate = s.events / s.seconds if s.seconds > 0 else 0.0
    lines = [
        f"replayed {rng}",
        f"  records   {s.records:,} read, {s.records_outside:,} outside the range",
        f"  events    {s.events:,} ({s.predictions:,} predictions, {s.feedback:,} labels, "
        f"{s.images:,} images); {s.events_outside:,} outside the range by event time",
        f"  rejected  {s.rejections:,}",
        *(f"  baseline  {m}: {where}" for m, where in (baselines or {}).items()),
        f"  events at {span}",
        f"  output    {s.out}: {s.steps:,} snapshots, {s.series:,} series, {s.samples:,} samples",
        f"  took      {s.seconds:.1f}s ({rate:,.0f} events/s)",
        f"  next      promtool tsdb create-blocks-from openmetrics {s.out} <prometheus data dir>",
    ]
    print("\n".join(lines), file=file or sys.stdout)


def replay_command(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.config)
        since = parse_time(args.since) if args.since else -math.inf
        until = parse_time(args.until) if args.until else math.inf
        window = TimeRange(since, until)
        topics = TopicNames.of(loaded)
        baselines = replay_baselines(loaded, BaselineChoice(
            tuple(args.baseline or ()), args.baseline_from_checkpoint, args.fit_baseline))
        if args.from_jsonl:
            paths = [args.from_jsonl, *([args.labels_jsonl] if args.labels_jsonl else [])]
            total: int | None = count_lines(paths)
            records: Iterable[Record] = jsonl_records(topics, args.from_jsonl, args.labels_jsonl)
        else:
            if args.labels_jsonl:
                raise ConfigError("--labels-jsonl goes with --from-jsonl")
            if not (args.since and args.until):
                raise ConfigError("reading Kafka needs --since and --until "
                                  "(epoch seconds or RFC 3339 with offset)")
            reader = KafkaRangeReader(loaded, window)
            total, records = reader.total, reader
        with _progress(not args.no_progress) as bar:
            task = bar.add_task("replay", total=total, events=0)
            events = seen = 0

            def tick(n: int) -> None:
                nonlocal events, seen
                events += n
                seen += 1
                if seen % 1000 == 0 and isinstance(records, KafkaRangeReader):
                    bar.update(task, total=records.total)  # the end moves as it is found
                bar.update(task, advance=1, events=events)

            summary = run_replay(loaded, records, window, args.out, args.step, tick,
                                 shadow=not args.no_shadow, baselines=baselines.install)
            bar.update(task, total=seen, completed=seen)
    except (ConfigError, ReplayError, ValueError, OSError) as err:
        print(f"replay failed: {err}", file=sys.stderr)
        return 2
    print_summary(summary, window, baselines=baselines.sources)
    return 0


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `visionmon replay` (the CLI adds the logging ones)."""
    p.add_argument("--config", required=True, help="the daemon's YAML config")
    p.add_argument("--since", default=None, help="start: epoch seconds or RFC 3339")
    p.add_argument("--until", default=None, help="end: epoch seconds, RFC 3339 or 'now'")
    p.add_argument("--out", required=True, help="OpenMetrics file to write (e.g. incident.om)")
    p.add_argument("--step", type=float, default=DEFAULT_STEP_S,
                   help="seconds of event time between snapshots (default 15)")
    p.add_argument("--from-jsonl", default=None,
                   help="read predictions from a JSON-lines file instead of Kafka")
    p.add_argument("--labels-jsonl", default=None, help="feedback labels as JSON lines")
    p.add_argument("--baseline", action="append", default=None, metavar="FILE",
                   help="measure drift against this baseline file (its model's; repeat for "
                        "several models), e.g. one written by `visionmon baseline export`")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--baseline-from-checkpoint", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="use the baseline the live daemon uses, read from its checkpoint "
                             "(default: when the config has state.checkpoint_dir)")
    source.add_argument("--fit-baseline", action="store_true",
                        help="with baseline.mode first_events, fit a new baseline from the "
                             "range's first events instead of refusing (what-if replays)")
    p.add_argument("--no-shadow", action="store_true",
                   help="count sampled images without scoring them with the reference model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# --------------------------------------------------------------------------- report


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `visionmon report` (the CLI adds the logging ones)."""
    p.add_argument("--config", required=True, help="the daemon's YAML config")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-openmetrics", default=None, help="a `visionmon replay` output file")
    src.add_argument("--url", default=None, help="a running daemon, e.g. http://visionmon:9464")
    p.add_argument("--since", default=None, help="start: epoch seconds or RFC 3339 "
                                                 "(default: the start of the data)")
    p.add_argument("--until", default=None, help="end: epoch seconds, RFC 3339 or 'now'")
    p.add_argument("--out", required=True, help="folder for report.html and figures/")
    p.add_argument("--thumbnails", type=int, default=DEFAULT_THUMBNAILS,
                   help="most disagreement images read back from the images topic (0: none)")


def report_command(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.config)
        window = TimeRange(parse_time(args.since) if args.since else -math.inf,
                           parse_time(args.until) if args.until else math.inf)
        data = read_openmetrics(args.from_openmetrics) if args.from_openmetrics \
            else scrape(args.url)
        if not data.points:
            raise ReportError(f"{data.source} holds none of the metrics the report uses")
        result = build_report(loaded, data, window, args.out, args.thumbnails)
    except ImportError as err:
        print(f"report failed: {err}", file=sys.stderr)
        return 2
    except (ConfigError, ReportError, ValueError, OSError) as err:
        print(f"report failed: {err}", file=sys.stderr)
        return 2
    print(f"{result.html}: {len(result.sections)} sections, {len(result.figures)} figures"
          + (f"; no data in {', '.join(result.empty)}" if result.empty else ""))
    return 0
