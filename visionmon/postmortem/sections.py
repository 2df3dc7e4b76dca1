"""The report's sections: metrics of the range in, one HTML fragment (and the PNG figures
it shows) out. Each section computes its numbers from `MetricData` and hands them to a
drawing function; a section without data says so instead of drawing an empty figure.
"""

from __future__ import annotations

import html
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from monitor.catalog import CALIBRATION_BINS, LABEL_DELAY_BUCKETS
from visionmon.postmortem.metrics import LabelSet, MetricData, Points
from visionmon.postmortem.timerange import TimeRange, iso

#: Rows of the per-class table (worst first).
MAX_CLASS_ROWS = 40
#: Pairs drawn in the confusion figure.
MAX_CONFUSED_PAIRS = 12

#: The report's sections in page order: (id, title); each id is an HTML anchor.
SECTIONS = (
    ("summary", "Summary"),
    ("versions", "Models, baselines and versions"),
    ("drift", "Drift timeline"),
    ("reliability", "Reliability diagram"),
    ("confusion", "Most confused classes"),
    ("per-class", "Per-class recall and precision"),
    ("shadow", "Shadow agreement by class"),
    ("label-delay", "Label delay"),
    ("segments", "Segments that explain the incident"),
    ("thumbnails", "Disagreements: sample images"),
)


def _get(labels: LabelSet, key: str) -> str:
    for k, v in labels:
        if k == key:
            return v
    return ""


@dataclass(frozen=True, slots=True)
class Section:
    """One section of the page: its HTML body and its figures as (file name, PNG bytes)."""

    id: str
    title: str
    body: str
    figures: tuple[tuple[str, bytes], ...] = ()


def no_data(text: str) -> str:
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
        body = no_data("no requests or labels in the range") + body
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
              ("model", "sha256", "device", "batch_size", "precision")),
             ("visionmon_build_info", "visionmon", ("version",)),
             ("visionmon_config_info", "Configuration", ("config_sha256", "config_version")))
    for name, title, keys in infos:
        found = data.last(name, window)
        if found:
            parts.append(f"<h3>{html.escape(title)}</h3>" + _table(
                keys, ([_get(labels, k) for k in keys] for labels in sorted(found))))
        elif name != "visionmon_build_info":
            parts.append(f"<h3>{html.escape(title)}</h3>" + no_data(f"no {name} in the range"))
    if not per_version:
        parts.insert(0, no_data("no requests in the range"))
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
        return Section("drift", "Drift timeline", no_data(
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
                       no_data("no labeled predictions in the range"))
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
                       no_data("no confused pairs among labeled predictions in the range"))
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
                       no_data("no labels joined in the range"))
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
        return Section("shadow", "Shadow agreement by class", no_data(
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
        return Section("label-delay", "Label delay", no_data("no labels joined in the range"))
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



#: Values listed per key in the segments section (largest share first).
MAX_SEGMENT_ROWS = 10


def segments_section(data: MetricData, window: TimeRange, segment_window: str) -> Section:
    """Per segment key, the values ranked by their share of the accuracy drop and of the
    excess drift (`segment_shares`), over the `segment_window` window."""
    from visionmon.postmortem.segment_shares import KeyIncident, accuracy_drop, drift_excess

    drops = accuracy_drop(data.series("visionmon_segment_accuracy_ratio", window),
                          data.series("visionmon_segment_labelled_events", window),
                          segment_window)
    drifts = drift_excess(data.series("visionmon_segment_drift_psi", window),
                          data.series("visionmon_segment_drift_threshold", window),
                          data.series("visionmon_segment_drift_window_events", window),
                          segment_window)

    def table(k: KeyIncident, figure: str) -> str:
        return _table(("value", "share", "events", figure),
                      ((s.value, _pct(s.share), f"{s.events:,.0f}",
                        _pct(s.figure) if figure == "accuracy" else f"{s.figure:.2f}")
                       for s in k.shares[:MAX_SEGMENT_ROWS]))

    parts = []
    for k in drops:
        parts.append(f"<h3>Accuracy drop by {html.escape(k.key)}</h3><p>Accuracy fell by "
                     f"{_pct(k.total)} from {iso(k.t_ref)} to {iso(k.t)}; each value's share "
                     "is its part of that drop (its labelled predictions' weight times its "
                     "accuracy's distance from the reference).</p>" + table(k, "accuracy"))
    for k in drifts:
        parts.append(f"<h3>Drift by {html.escape(k.key)}</h3><p>At {iso(k.t)}, each "
                     "value's share of the key's excess drift (events times PSI above the "
                     "critical value, over features).</p>" + table(k, "PSI / critical"))
    if not parts:
        return Section("segments", "Segments that explain the incident", no_data(
            f"no segment's accuracy fell or drift crossed its threshold in the "
            f"{segment_window} window (or no models[].segments)"))
    return Section("segments", "Segments that explain the incident", "".join(parts))
