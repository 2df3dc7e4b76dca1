"""The report's figures: plain data in, PNG bytes out (matplotlib, no pyplot state).

Every function draws one figure from already-computed numbers; none reads metrics or
decides what "no data" means (`sections.py` does, and never calls these without data).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.figure import Figure
except ImportError as err:  # pragma: no cover - depends on the installation
    raise ImportError("the report needs matplotlib: pip install 'visionmon[report]'") from err

Points = Sequence[tuple[float, float]]

_DPI = 110
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def _dates(points: Points) -> tuple[np.ndarray, list[float]]:
    """Epoch seconds -> matplotlib date numbers (UTC), and the values."""
    when = date2num([datetime.fromtimestamp(t, UTC) for t, _ in points])
    return np.asarray(when, dtype=np.float64), [v for _, v in points]


def drift_timeline(features: Mapping[str, Mapping[str, tuple[Points, Points]]],
                   window: str) -> bytes:
    """One panel per feature; per series label, PSI (solid) and its threshold (dashed)."""
    names = sorted(features)
    cols = 2 if len(names) > 1 else 1
    rows = (len(names) + cols - 1) // cols
    fig = Figure(figsize=(6.2 * cols, 3.0 * rows), layout="constrained")
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        for j, (series, (psi, threshold)) in enumerate(sorted(features[name].items())):
            color = _COLORS[j % len(_COLORS)]
            if psi:
                x, y = _dates(psi)
                ax.plot(x, y, color=color, lw=1.6, marker="." if len(psi) < 3 else None,
                        label=f"{series} PSI")
            if threshold:
                x, y = _dates(threshold)
                ax.plot(x, y, color=color, lw=1.0, ls="--", label=f"{series} threshold")
        ax.set_title(f"{name} (window {window})", fontsize=10)
        ax.set_ylabel("PSI")
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Drift against the baseline (UTC)", fontsize=11)
    return _png(fig)


def reliability_diagram(curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                        edges: np.ndarray) -> bytes:
    """curves: label -> (events, mean confidence, accuracy) per bin (NaN where empty)."""
    fig = Figure(figsize=(6.4, 6.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], color="#999999", ls="--", lw=1, label="perfectly calibrated")
    width = float(edges[1] - edges[0]) / (len(curves) + 1)
    for j, (label, (events, conf, acc)) in enumerate(sorted(curves.items())):
        color = _COLORS[j % len(_COLORS)]
        ok = events > 0
        top.plot(conf[ok], acc[ok], color=color, marker="o", lw=1.5, label=label)
        bottom.bar(edges[:-1] + (j + 0.5) * width, events, width=width, color=color,
                   align="edge")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy of labeled predictions")
    top.set_title("Reliability diagram (15 confidence bins)", fontsize=11)
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="upper left")
    bottom.set_xlabel("top-1 confidence")
    bottom.set_ylabel("labeled")
    bottom.grid(alpha=0.3)
    return _png(fig)


def confusion_matrix(classes_true: Sequence[str], classes_pred: Sequence[str],
                     counts: np.ndarray, title: str) -> bytes:
    """counts[i, j]: labeled predictions of true class i predicted as j (0 off the top)."""
    n_t, n_p = len(classes_true), len(classes_pred)
    fig = Figure(figsize=(1.6 + 0.6 * max(n_p, 3), 1.4 + 0.5 * max(n_t, 3)), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(counts, cmap="Reds", aspect="auto")
    ax.set_xticks(range(n_p), labels=list(classes_pred), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_t), labels=list(classes_true), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = float(counts.max()) if counts.size else 0.0
    for i in range(n_t):
        for j in range(n_p):
            if counts[i, j]:
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if counts[i, j] > 0.6 * peak else "black")
    fig.colorbar(im, ax=ax, fraction=0.05)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def agreement_by_class(rows: Sequence[tuple[str, float, int]], title: str) -> bytes:
    """rows: (class, agreement in [0, 1], images scored), drawn as horizontal bars."""
    fig = Figure(figsize=(6.4, 1.2 + 0.28 * len(rows)), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    names = [r[0] for r in rows]
    values = [r[1] for r in rows]
    ax.barh(range(len(rows)), values, color=["#d62728" if v < 0.8 else "#1f77b4"
                                             for v in values])
    ax.set_yticks(range(len(rows)), labels=names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("agreement with the reference model")
    for i, (_, v, n) in enumerate(rows):
        ax.text(min(v + 0.01, 0.9), i, f"{v:.0%} of {n}", va="center", fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def label_delay(histograms: Mapping[str, np.ndarray], bucket_labels: Sequence[str]) -> bytes:
    """histograms: model -> labels per delay bucket (non-cumulative; last is +Inf)."""
    fig = Figure(figsize=(7.2, 3.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(histograms), 1)
    x = np.arange(len(bucket_labels))
    for j, (model, counts) in enumerate(sorted(histograms.items())):
        ax.bar(x + j * width, counts, width=width, color=_COLORS[j % len(_COLORS)],
               label=model)
    ax.set_xticks(x + 0.4 - width / 2, labels=list(bucket_labels), rotation=45, ha="right",
                  fontsize=8)
    ax.set_xlabel("delay from prediction to label (upper bound of the bucket)")
    ax.set_ylabel("labels")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Label delay", fontsize=10)
    return _png(fig)
