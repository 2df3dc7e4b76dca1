"""`visionmon report`: a self-contained HTML postmortem report of a time range.

Pipeline: metrics (a `visionmon replay` OpenMetrics file, or one scrape of a running
daemon) -> `MetricData` (points per series, restricted to the families the report uses)
-> one pure function per section computing its numbers -> figures (report_figures) ->
`report.html` (inline CSS, figures embedded as PNG data and also written beside it in
`figures/`). Every section has an id; a section without data says so instead of drawing
an empty figure.

Counters are read as increases over the range: the value at `until` minus the value at
`since` (a replay starts its counters at zero, so a replay's whole range is its totals;
a live daemon's counters run since the daemon started).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import logging
import math
import os
import re
import socket
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monitor.catalog import CALIBRATION_BINS, LABEL_DELAY_BUCKETS
from monitor.config import ConfigError, LoadedConfig, load_config
from monitor.durations import parse_duration
from visionmon.replay import (
    KafkaRangeReader,
    ReplayError,
    TimeRange,
    iso,
    parse_time,
)

log = logging.getLogger(__name__)

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
    "visionmon_config_info",
})
#: Most disagreement thumbnails by default; images considered while looking for them.
DEFAULT_THUMBNAILS = 12
MAX_IMAGE_CANDIDATES = 5000
THUMBNAIL_PX = 112
#: Looked back before the first snapshot for images when --since is not given.
IMAGES_MARGIN_S = 300.0
#: Rows of the per-class table (worst first).
MAX_CLASS_ROWS = 40
#: Pairs drawn in the confusion figure.
MAX_CONFUSED_PAIRS = 12

SECTIONS = (
    ("summary", "Summary"),
    ("versions", "Models, baselines and versions"),
    ("drift", "Drift timeline"),
    ("reliability", "Reliability diagram"),
    ("confusion", "Most confused classes"),
    ("per-class", "Per-class recall and precision"),
    ("shadow", "Shadow agreement by class"),
    ("label-delay", "Label delay"),
    ("thumbnails", "Disagreements: sample images"),
)


class ReportError(Exception):
    """The report cannot be built; the message says what to change."""


# --------------------------------------------------------------------------- inputs


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


# --------------------------------------------------------------------------- sections


def _get(labels: LabelSet, key: str) -> str:
    for k, v in labels:
        if k == key:
            return v
    return ""


@dataclass(frozen=True, slots=True)
class Section:
    id: str
    title: str
    body: str
    figures: tuple[tuple[str, bytes], ...] = ()


def _no_data(text: str) -> str:
    return f'<p class="no-data">No data: {html.escape(text)}</p>'


def _table(header: Iterable[str], rows: Iterable[Iterable[object]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.1f} %"


def summary_section(data: MetricData, window: TimeRange) -> Section:
    req = data.increase("visionmon_requests_total", window)
    ok = sum(v for k, v in req.items() if _get(k, "status") == "ok")
    err = sum(v for k, v in req.items() if _get(k, "status") == "error")
    labels = data.increase("visionmon_labels_total", window)
    correct = sum(v for k, v in labels.items() if _get(k, "outcome") == "correct")
    n_labels = sum(labels.values())
    rejected = data.increase("visionmon_records_rejected_total", window)
    shadow = data.increase("visionmon_shadow_scored_total", window)
    agree = sum(v for k, v in shadow.items() if _get(k, "outcome") == "agree")
    rows = [
        ("requests", f"{ok + err:,.0f} ({err:,.0f} errors, "
                     f"{_pct(err / (ok + err) if ok + err else math.nan)})"),
        ("labels joined", f"{n_labels:,.0f}"),
        ("realized accuracy", _pct(correct / n_labels if n_labels else math.nan)),
        ("shadow agreement", _pct(agree / sum(shadow.values()) if shadow else math.nan)),
        ("records rejected", f"{sum(rejected.values()):,.0f}"),
    ]
    by_reason = sorted(((f"{_get(k, 'topic')}: {_get(k, 'reason')}", v)
                        for k, v in rejected.items() if v), key=lambda r: -r[1])
    body = _table(("", "over the range"), rows, "kv")
    if by_reason:
        body += "<h3>Rejections by topic and reason</h3>" + _table(
            ("topic: reason", "records"), ((r, f"{v:,.0f}") for r, v in by_reason))
    if not req and not labels:
        body = _no_data("no requests or labels in the range") + body
    return Section("summary", "Summary", body)


def versions_section(data: MetricData, window: TimeRange) -> Section:
    parts = []
    req = data.increase("visionmon_requests_total", window)
    per_version: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for k, v in req.items():
        per_version[(_get(k, "model"), _get(k, "version"))][_get(k, "status") == "error"] += v
    if per_version:
        parts.append("<h3>Model versions serving in the range</h3>" + _table(
            ("model", "version", "requests", "errors"),
            ((m, ver, f"{ok + e:,.0f}", f"{e:,.0f}")
             for (m, ver), (ok, e) in sorted(per_version.items()))))
    infos = (("visionmon_baseline_info", "Baselines",
              ("model", "version", "source", "state", "sha256")),
             ("visionmon_reference_model_info", "Reference models",
              ("model", "sha256", "device", "batch_size")),
             ("visionmon_build_info", "visionmon", ("version",)),
             ("visionmon_config_info", "Configuration", ("config_sha256", "config_version")))
    for name, title, keys in infos:
        found = data.last(name, window)
        if found:
            parts.append(f"<h3>{html.escape(title)}</h3>" + _table(
                keys, ([_get(labels, k) for k in keys] for labels in sorted(found))))
        elif name != "visionmon_build_info":
            parts.append(f"<h3>{html.escape(title)}</h3>" + _no_data(f"no {name} in the range"))
    if not per_version:
        parts.insert(0, _no_data("no requests in the range"))
    return Section("versions", "Models, baselines and versions", "".join(parts))


def drift_section(data: MetricData, window: TimeRange, drift_window: str,
                  draw: Callable[..., bytes]) -> Section:
    psi = data.series("visionmon_drift_psi", window)
    thr = data.series("visionmon_drift_threshold", window)
    features: dict[str, dict[str, tuple[Points, Points]]] = defaultdict(dict)
    exceeded: list[tuple[str, str, float, float]] = []
    for labels, pts in psi.items():
        if _get(labels, "window") != drift_window:
            continue
        feature = _get(labels, "feature")
        series = f"{_get(labels, 'model')}/{_get(labels, 'version')}"
        t_pts = thr.get(labels, [])
        features[feature][series] = (pts, t_pts)
        limit = dict(t_pts)
        over = [t for t, v in pts if t in limit and v > limit[t]]
        if over:
            exceeded.append((feature, series, over[0], max(v for _, v in pts)))
    if not features:
        return Section("drift", "Drift timeline", _no_data(
            f"no drift figures for window {drift_window} (no baseline, or no predictions)"))
    body = (f"<p>PSI of each feature against the baseline over the {html.escape(drift_window)} "
            "window; dashed: the sample-size-aware threshold (drift when PSI is above it).</p>")
    if exceeded:
        body += "<h3>Thresholds crossed</h3>" + _table(
            ("feature", "model/version", "first above threshold", "highest PSI"),
            ((f, s, iso(t), f"{peak:.3f}") for f, s, t, peak in sorted(exceeded,
                                                                      key=lambda r: r[2])))
    png = draw(features, drift_window)
    return Section("drift", "Drift timeline", body, (("drift.png", png),))


def reliability_section(data: MetricData, window: TimeRange,
                        draw: Callable[..., bytes]) -> Section:
    names = ("visionmon_calibration_bin_events_total",
             "visionmon_calibration_bin_confidence_sum_total",
             "visionmon_calibration_bin_correct_total")
    sums: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        for labels, v in data.increase(name, window).items():
            key = f"{_get(labels, 'model')}/{_get(labels, 'version')}"
            edge = float(_get(labels, "bin"))
            k = min(round(edge * CALIBRATION_BINS) - 1, CALIBRATION_BINS - 1)
            arr = sums.setdefault(key, np.zeros((3, CALIBRATION_BINS)))
            arr[i, max(k, 0)] += v
    curves = {}
    rows = []
    for key, arr in sorted(sums.items()):
        events, conf_sum, correct = arr
        if events.sum() <= 0:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            conf = np.where(events > 0, conf_sum / events, np.nan)
            acc = np.where(events > 0, correct / events, np.nan)
        ece = float(np.nansum(events / events.sum() * np.abs(acc - conf)))
        curves[key] = (events, conf, acc)
        rows.append((key, f"{events.sum():,.0f}", f"{ece:.4f}",
                     _pct(correct.sum() / events.sum()), _pct(conf_sum.sum() / events.sum())))
    if not curves:
        return Section("reliability", "Reliability diagram",
                       _no_data("no labeled predictions in the range"))
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    body = _table(("model/version", "labeled", "ECE", "accuracy", "mean confidence"), rows)
    return Section("reliability", "Reliability diagram", body,
                   (("reliability.png", draw(curves, edges)),))


def confusion_section(data: MetricData, window: TimeRange, draw: Callable[..., bytes],
                      class_order: Mapping[str, Sequence[str]]) -> Section:
    pairs: dict[str, dict[tuple[str, str], float]] = defaultdict(lambda: defaultdict(float))
    for labels, v in data.increase("visionmon_confusion_pair_total", window).items():
        if v > 0:
            pairs[_get(labels, "model")][(_get(labels, "true_class"),
                                          _get(labels, "pred_class"))] += v
    if not pairs:
        return Section("confusion", "Most confused classes",
                       _no_data("no confused pairs among labeled predictions in the range"))
    body = []
    figures = []
    for model, counts in sorted(pairs.items()):
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:MAX_CONFUSED_PAIRS]
        order = {c: i for i, c in enumerate(class_order.get(model, ()))}
        true_cls = sorted({t for (t, _), _ in top}, key=lambda c: (order.get(c, 1 << 30), c))
        pred_cls = sorted({p for (_, p), _ in top}, key=lambda c: (order.get(c, 1 << 30), c))
        matrix = np.zeros((len(true_cls), len(pred_cls)))
        for (t, p), v in top:
            matrix[true_cls.index(t), pred_cls.index(p)] = v
        body.append(f"<h3>{html.escape(model)}</h3>" + _table(
            ("true class", "predicted as", "labeled predictions"),
            ((t, p, f"{v:,.0f}") for (t, p), v in top)))
        figures.append((f"confusion-{_slug(model)}.png",
                        draw(true_cls, pred_cls, matrix, f"{model}: most confused pairs")))
    return Section("confusion", "Most confused classes", "".join(body), tuple(figures))


def per_class_section(data: MetricData, window: TimeRange) -> Section:
    stats: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for name, offset in (("visionmon_labels_total", 0), ("visionmon_labeled_predictions_total", 2)):
        for labels, v in data.increase(name, window).items():
            key = (_get(labels, "model"), _get(labels, "version"), _get(labels, "class"))
            stats[key][offset + (_get(labels, "outcome") == "correct")] += v
    rows = []
    for (model, version, cls), (t_wrong, t_right, p_wrong, p_right) in stats.items():
        n_true, n_pred = t_wrong + t_right, p_wrong + p_right
        recall = t_right / n_true if n_true else math.nan
        precision = p_right / n_pred if n_pred else math.nan
        worst = min((x for x in (recall, precision) if math.isfinite(x)), default=math.inf)
        rows.append((worst, model, version, cls, n_true, recall, precision))
    if not rows:
        return Section("per-class", "Per-class recall and precision",
                       _no_data("no labels joined in the range"))
    rows.sort(key=lambda r: (r[0], r[1], r[2], r[3]))
    shown = rows[:MAX_CLASS_ROWS]
    body = ("<p>Sorted by the worse of recall and precision; recall is over the true class, "
            "precision over the predicted class.</p>" + _table(
                ("model", "version", "class", "labels", "recall", "precision"),
                ((m, v, c, f"{n:,.0f}", _pct(r), _pct(p)) for _, m, v, c, n, r, p in shown),
                "classes"))
    if len(rows) > len(shown):
        body += f"<p>{len(rows) - len(shown)} more rows not shown.</p>"
    return Section("per-class", "Per-class recall and precision", body)


def shadow_section(data: MetricData, window: TimeRange,
                   draw: Callable[..., bytes]) -> Section:
    per: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(
        lambda: defaultdict(lambda: [0.0, 0.0]))
    for labels, v in data.increase("visionmon_shadow_class_total", window).items():
        key = (_get(labels, "model"), _get(labels, "version"))
        per[key][_get(labels, "class")][_get(labels, "outcome") == "agree"] += v
    figures = []
    tables = []
    for (model, version), classes in sorted(per.items()):
        rows = [(c, agree / (agree + dis), int(agree + dis))
                for c, (dis, agree) in classes.items() if agree + dis > 0]
        if not rows:
            continue
        rows.sort(key=lambda r: r[1])
        figures.append((f"shadow-{_slug(model)}-{_slug(version)}.png",
                        draw(rows, f"{model}/{version}: agreement by predicted class")))
        tables.append(f"<h3>{html.escape(model)}/{html.escape(version)}</h3>" + _table(
            ("predicted class", "agreement", "images scored"),
            ((c, _pct(a), f"{n:,}") for c, a, n in rows)))
    if not figures:
        return Section("shadow", "Shadow agreement by class", _no_data(
            "no images scored by a reference model in the range (is `reference:` "
            "configured and the images topic fed?)"))
    return Section("shadow", "Shadow agreement by class", "".join(tables), tuple(figures))


def _duration_label(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"≤{int(seconds // size)}{unit}"
    return f"≤{seconds:g}s"


def label_delay_section(data: MetricData, window: TimeRange,
                        draw: Callable[..., bytes]) -> Section:
    bounds = (*LABEL_DELAY_BUCKETS, math.inf)
    hists: dict[str, np.ndarray] = {}
    for labels, v in data.increase("visionmon_label_delay_seconds_bucket", window).items():
        le = _get(labels, "le")
        edge = math.inf if le == "+Inf" else float(le)
        if edge not in bounds:
            continue
        cum = hists.setdefault(_get(labels, "model"), np.zeros(len(bounds)))
        cum[bounds.index(edge)] = v
    counts = {m: np.diff(np.concatenate([[0.0], np.maximum.accumulate(c)]))
              for m, c in hists.items() if c[-1] > 0}
    if not counts:
        return Section("label-delay", "Label delay", _no_data("no labels joined in the range"))
    sums = data.increase("visionmon_label_delay_seconds_sum", window)
    rows = []
    for model, c in sorted(counts.items()):
        cum = np.cumsum(c)
        total = cum[-1]

        def quantile(q: float, cum: np.ndarray = cum, total: float = total) -> str:
            i = int(np.searchsorted(cum, q * total))
            return "> 7d" if bounds[i] == math.inf else _duration_label(bounds[i])

        mean = sum(v for k, v in sums.items() if _get(k, "model") == model) / total
        rows.append((model, f"{total:,.0f}", f"{mean:,.1f} s", quantile(0.5), quantile(0.9)))
    labels_txt = [_duration_label(b) if b != math.inf else "+Inf" for b in bounds]
    body = _table(("model", "labels", "mean delay", "median (bucket)", "p90 (bucket)"), rows)
    return Section("label-delay", "Label delay", body,
                   (("label-delay.png", draw(counts, labels_txt)),))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60] or "_"


# --------------------------------------------------------------------------- thumbnails


@dataclass(frozen=True, slots=True)
class Thumbnail:
    request_id: str
    model: str
    version: str
    predicted: str
    label: str
    png: bytes


def _reachable(servers: Iterable[str], timeout_s: float = 1.5) -> bool:
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout_s).close()
            return True
        except (OSError, ValueError):
            continue
    return False


def disagreement_thumbnails(loaded: LoadedConfig, window: TimeRange, limit: int
                            ) -> list[Thumbnail]:
    """Images of the range whose prediction disagrees with its ground-truth label, read
    back from the images topic (three bounded passes: image ids, their predictions and
    labels, then the chosen images' bytes). Nothing is written anywhere but the report.

    The range is in event time, as the report's figures are: an image counts by its `ts`
    header (its record time when it has none). Labels arrive late by design, so they are
    looked for up to `labels.ttl` after the range."""
    from collectors.records import RecordDecoders, TopicNames, decode_records

    topics = TopicNames.of(loaded)
    decoders = RecordDecoders.of(loaded)
    candidates: dict[str, tuple[str, str]] = {}
    for r in KafkaRangeReader(loaded, window, only=(topics.images,)):
        for ev in decode_records((r,), topics, decoders).images:
            at = ev.ts if ev.ts is not None else r.timestamp_ms / 1000.0
            if window.contains(at) and len(candidates) < MAX_IMAGE_CANDIDATES:
                candidates.setdefault(ev.request_id, (ev.model, ev.version))
    if not candidates:
        return []
    preds: dict[str, int] = {}
    labels: dict[str, int | str] = {}
    for r in KafkaRangeReader(loaded, window, only=(topics.predictions,)):
        for e in decode_records((r,), topics, decoders).predictions:
            if e.request_id in candidates and e.ok:
                preds[e.request_id] = e.pred
    late = TimeRange(window.since, window.until + parse_duration(loaded.config.labels.ttl))
    for r in KafkaRangeReader(loaded, late, only=(topics.feedback,)):
        for f in decode_records((r,), topics, decoders).feedback:
            if f.request_id in candidates:
                labels[f.request_id] = f.label
    chosen: dict[str, tuple[str, str]] = {}
    for rid, (model, _version) in candidates.items():
        if rid not in preds or rid not in labels or model not in loaded.models:
            continue
        classes = loaded.models[model].classes
        label = labels[rid]
        idx = label if isinstance(label, int) else classes.index(label) \
            if label in classes else None
        if idx is not None and idx != preds[rid]:
            chosen[rid] = (classes[preds[rid]], classes[idx] if idx < len(classes) else "?")
        if len(chosen) >= limit:
            break
    out: list[Thumbnail] = []
    for r in KafkaRangeReader(loaded, window, only=(topics.images,)):
        if not chosen:
            break
        for ev in decode_records((r,), topics, decoders).images:
            names = chosen.pop(ev.request_id, None)
            if names is None:
                continue
            png = _thumbnail(ev.data)
            if png is not None:
                out.append(Thumbnail(ev.request_id, ev.model, ev.version, *names, png))
    return out


def _thumbnail(data: bytes) -> bytes | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))
            small = im.convert("RGB")
            small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buf = io.BytesIO()
            small.save(buf, format="PNG")
            return buf.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _images_range(window: TimeRange, span: tuple[float, float] | None) -> TimeRange:
    """The range images are looked for in: the report's, with open ends closed on the data
    (a replay's first snapshot comes up to one step after its first event, hence the
    margin) so the read never starts at the beginning of the topic."""
    if math.isfinite(window.since) and math.isfinite(window.until):
        return window
    first, last = span if span is not None else (time.time(), time.time())
    return TimeRange(window.since if math.isfinite(window.since) else first - IMAGES_MARGIN_S,
                     window.until if math.isfinite(window.until) else last)


def thumbnails_section(loaded: LoadedConfig, window: TimeRange, limit: int) -> Section:
    title = "Disagreements: sample images"
    servers = loaded.config.kafka.bootstrap_servers
    if limit <= 0:
        return Section("thumbnails", title, _no_data("thumbnails not requested (--thumbnails 0)"))
    if not _reachable(servers):
        return Section("thumbnails", title, _no_data(
            f"Kafka ({', '.join(servers)}) is not reachable, so no images could be read back; "
            "images are never stored anywhere but the images topic"))
    try:
        thumbs = disagreement_thumbnails(loaded, window, limit)
    except ReplayError as err:
        return Section("thumbnails", title, _no_data(f"images could not be read: {err}"))
    if not thumbs:
        return Section("thumbnails", title, _no_data(
            "no sampled image in the images topic belongs to a labeled prediction that "
            "disagrees with its label in the range"))
    cells = "".join(
        f'<figure class="thumb"><img alt="{html.escape(t.request_id)}" '
        f'src="data:image/png;base64,{base64.b64encode(t.png).decode()}">'
        f"<figcaption>{html.escape(t.request_id)}<br>{html.escape(t.model)}/"
        f"{html.escape(t.version)}<br>predicted <b>{html.escape(t.predicted)}</b>, "
        f"label <b>{html.escape(t.label)}</b></figcaption></figure>" for t in thumbs)
    note = ("<p>Sampled images read back from the images topic for this report only; "
            "they are not stored anywhere else.</p>")
    return Section("thumbnails", title, note + f'<div class="thumbs">{cells}</div>')


# --------------------------------------------------------------------------- HTML


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;margin:0;
background:#f6f7f9}
header{background:#1d2b3a;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px}header p{margin:2px 0;color:#c9d4df}
nav{padding:8px 28px;background:#e8ecf1;font-size:13px}nav a{margin-right:14px;color:#1d4f91}
main{padding:8px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:6px 18px 14px;
margin:16px 0}
h2{font-size:18px;border-bottom:1px solid #eef0f3;padding-bottom:6px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #dde2e8;padding:3px 9px;
text-align:left;font-variant-numeric:tabular-nums}th{background:#f0f3f6}
td{font-family:ui-monospace,Menlo,monospace;font-size:12.5px}
.no-data{color:#8a5a00;background:#fff7e0;border-left:4px solid #e0a800;padding:6px 10px}
figure.plot img{max-width:100%;border:1px solid #eef0f3}figure.plot figcaption{font-size:12px}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}figure.thumb{margin:0;width:150px;font-size:11px}
figure.thumb img{width:112px;height:112px;object-fit:contain;background:#000;
image-rendering:pixelated}
footer{color:#777;font-size:12px;padding:0 28px 20px}
"""


def render_html(sections: Iterable[Section], title: str, subtitle: Iterable[str]) -> str:
    secs = list(sections)
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in secs)
    blocks = []
    for s in secs:
        figs = "".join(
            f'<figure class="plot"><img alt="{html.escape(name)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            f'<figcaption><a href="figures/{html.escape(name)}">figures/{html.escape(name)}'
            f"</a></figcaption></figure>" for name, png in s.figures)
        blocks.append(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{s.body}{figs}'
                      "</section>")
    sub = "".join(f"<p>{html.escape(line)}</p>" for line in subtitle)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{html.escape(title)}</h1>{sub}</header><nav>{nav}</nav>"
            f"<main>{''.join(blocks)}</main><footer>Generated by visionmon report. "
            "Generated file: edit the inputs, not this file.</footer></body></html>\n")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class ReportResult:
    html: Path
    figures: tuple[Path, ...]
    sections: tuple[str, ...]
    empty: tuple[str, ...]


def build_report(loaded: LoadedConfig, data: MetricData, window: TimeRange, out_dir: str | Path,
                 thumbnails: int = DEFAULT_THUMBNAILS) -> ReportResult:
    """Compute every section, draw its figures and write report.html + figures/*.png."""
    from visionmon import report_figures as figs

    # an open end means "all the data": counters then count from zero (a replay's start)
    span = data.span()
    shown = window
    if span is not None and not (math.isfinite(window.since) and math.isfinite(window.until)):
        shown = TimeRange(window.since if math.isfinite(window.since) else span[0],
                          window.until if math.isfinite(window.until) else span[1])
    sizes = loaded.config.windows.sizes
    drift_window = min(sizes, key=parse_duration)
    sections = [
        summary_section(data, window),
        versions_section(data, window),
        drift_section(data, window, drift_window, figs.drift_timeline),
        reliability_section(data, window, figs.reliability_diagram),
        confusion_section(data, window, figs.confusion_matrix,
                          {name: m.classes for name, m in loaded.models.items()}),
        per_class_section(data, window),
        shadow_section(data, window, figs.agreement_by_class),
        label_delay_section(data, window, figs.label_delay),
        thumbnails_section(loaded, _images_range(window, span), thumbnails),
    ]
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    written = []
    for s in sections:
        for name, png in s.figures:
            path = out / "figures" / name
            _write_atomic(path, png)
            written.append(path)
    span_txt = (f"{iso(shown.since)} .. {iso(shown.until)}"
                if math.isfinite(shown.since) and math.isfinite(shown.until) else "all data")
    subtitle = [f"Range {span_txt} (UTC)", f"Source: {data.source}",
                f"Config: {loaded.path} (sha256 {loaded.sha256[:16]})",
                f"Generated {iso(time.time())}"]
    if data.live:
        subtitle.append("Counters of a live daemon run since it started; timelines hold the "
                        "one scrape. Replay the range for history.")
    page = render_html(sections, "visionmon postmortem report", subtitle)
    html_path = out / "report.html"
    _write_atomic(html_path, page.encode("utf-8"))
    empty = tuple(s.id for s in sections if s.body.startswith('<p class="no-data">'))
    return ReportResult(html_path, tuple(written), tuple(s.id for s in sections), empty)


# --------------------------------------------------------------------------- CLI


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `visionmon report` (the CLI adds the logging ones)."""
    p.add_argument("--config", required=True, help="the daemon's YAML config")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-openmetrics", default=None, help="a `visionmon replay` output file")
    src.add_argument("--url", default=None, help="a running daemon, e.g. http://daemon:9108")
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
