"""The report's input: metrics from a `visionmon replay` OpenMetrics file, or one scrape of
a running daemon, as points per series (only the families the report uses are kept).

Counters are read as increases over the range: the value at `until` minus the value at
`since` (a replay starts its counters at zero, so a replay's whole range is its totals;
a live daemon's counters run since the daemon started).
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from visionmon.postmortem.timerange import TimeRange

LabelSet = tuple[tuple[str, str], ...]
Points = list[tuple[float, float]]

#: Sample names the report reads (everything else in the input is skipped unparsed).
USED = frozenset({
    "visionmon_requests_total", "visionmon_records_rejected_total",
    "visionmon_events_accepted_total", "visionmon_labels_total",
    "visionmon_labeled_predictions_total", "visionmon_confusion_pair_total",
    "visionmon_calibration_bin_events_total", "visionmon_calibration_bin_confidence_sum_total",
    "visionmon_calibration_bin_correct_total", "visionmon_drift_psi",
    "visionmon_drift_threshold", "visionmon_shadow_class_total",
    "visionmon_shadow_scored_total", "visionmon_label_delay_seconds_bucket",
    "visionmon_label_delay_seconds_count", "visionmon_label_delay_seconds_sum",
    "visionmon_baseline_info", "visionmon_reference_model_info", "visionmon_build_info",
    "visionmon_config_info", "visionmon_segment_accuracy_ratio",
    "visionmon_segment_labelled_events", "visionmon_segment_drift_psi",
    "visionmon_segment_drift_threshold", "visionmon_segment_drift_window_events",
})


class ReportError(Exception):
    """The report cannot be built; the message says what to change."""



@dataclass(slots=True)
class MetricData:
    """Points per sample name and label set, sorted by time."""

    points: dict[str, dict[LabelSet, Points]] = field(default_factory=dict)
    source: str = ""
    live: bool = False

    def add(self, name: str, labels: LabelSet, t: float, v: float) -> None:
        self.points.setdefault(name, {}).setdefault(labels, []).append((t, v))

    def span(self) -> tuple[float, float] | None:
        ts = [p[0] for series in self.points.values() for pts in series.values()
              for p in (pts[0], pts[-1])]
        return (min(ts), max(ts)) if ts else None

    def series(self, name: str, window: TimeRange) -> dict[LabelSet, Points]:
        """Points inside the range (a live scrape's single point is always inside)."""
        out = {}
        for labels, pts in self.points.get(name, {}).items():
            inside = pts if self.live else [p for p in pts if window.contains(p[0])]
            if inside:
                out[labels] = inside
        return out

    def last(self, name: str, window: TimeRange) -> dict[LabelSet, float]:
        """The latest value at or before `until` of every series seen in the range."""
        return {labels: pts[-1][1] for labels, pts in self.series(name, window).items()}

    def increase(self, name: str, window: TimeRange) -> dict[LabelSet, float]:
        """Counter increase over the range: value at `until` minus value at `since`."""
        out = {}
        for labels, pts in self.points.get(name, {}).items():
            end = _value_at(pts, window.until)
            if end is None:
                continue
            start = 0.0 if self.live else (_value_at(pts, window.since) or 0.0)
            out[labels] = end - start if end >= start else end  # a reset: count from zero
        return out


def _value_at(pts: Points, t: float) -> float | None:
    found = None
    for ts, v in pts:
        if ts > t:
            break
        found = v
    return found


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(\S+))?\s*$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = re.compile(r"\\(.)")


def _labels(text: str | None) -> LabelSet:
    if not text:
        return ()
    return tuple((k, _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), v))
                 for k, v in _LABEL.findall(text))


def parse_exposition(lines: Iterable[str], data: MetricData, default_t: float,
                     wanted: frozenset[str] = USED) -> None:
    """Prometheus text or OpenMetrics lines -> data (samples named in `wanted` only)."""
    for line in lines:
        if not line or line[0] == "#":
            continue
        cut = line.find("{")
        name = line[:cut] if cut > 0 else line.split(" ", 1)[0]
        if name not in wanted:
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        value = float(m.group(3).replace("Inf", "inf"))
        t = float(m.group(4)) if m.group(4) else default_t
        if t > 1e11:  # the Prometheus text format's timestamps are milliseconds
            t /= 1000.0
        data.add(name, _labels(m.group(2)), t, value)


def read_openmetrics(path: str | Path) -> MetricData:
    data = MetricData(source=f"replay output {Path(path).name}")
    with open(path, encoding="utf-8") as fh:
        parse_exposition((ln.rstrip("\n") for ln in fh), data, default_t=time.time())
    for series in data.points.values():
        for pts in series.values():
            pts.sort()
    return data


def scrape(url: str, timeout_s: float = 10.0) -> MetricData:
    target = url.rstrip("/")
    if not target.endswith("/metrics"):
        target += "/metrics"
    try:
        with urllib.request.urlopen(target, timeout=timeout_s) as resp:
            text = resp.read().decode("utf-8")
    except OSError as err:
        raise ReportError(f"cannot scrape {target}: {err}") from None
    data = MetricData(source=f"live daemon {url}", live=True)
    parse_exposition(text.splitlines(), data, default_t=time.time())
    return data
