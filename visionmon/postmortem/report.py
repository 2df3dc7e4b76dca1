"""`visionmon report`: a self-contained HTML postmortem report of a time range.

Pipeline: metrics (`metrics.py`: a replay's OpenMetrics file or one scrape) -> one pure
function per section computing its numbers (`sections.py`, `thumbnails.py`) -> figures
(`figures.py`) -> `report.html` (`page.py`) and the figures written beside it in
`figures/`. Every section has an id.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from monitor.atomic_write import write_bytes_atomically
from monitor.config import LoadedConfig
from monitor.durations import parse_duration
from visionmon.postmortem import sections as sec
from visionmon.postmortem.metrics import MetricData
from visionmon.postmortem.page import render_html
from visionmon.postmortem.thumbnails import DEFAULT_THUMBNAILS, images_range, thumbnails_section
from visionmon.postmortem.timerange import TimeRange, iso


@dataclass(frozen=True, slots=True)
class ReportResult:
    """What a report wrote: the page, its figures, its section ids and those without data."""

    html: Path
    figures: tuple[Path, ...]
    sections: tuple[str, ...]
    empty: tuple[str, ...]


def build_report(loaded: LoadedConfig, data: MetricData, window: TimeRange, out_dir: str | Path,
                 thumbnails: int = DEFAULT_THUMBNAILS) -> ReportResult:
    """Compute every section, draw its figures and write report.html + figures/*.png."""
    from visionmon.postmortem import figures as figs

    # an open end means "all the data": counters then count from zero (a replay's start)
    span = data.span()
    shown = window
    if span is not None and not (math.isfinite(window.since) and math.isfinite(window.until)):
        shown = TimeRange(window.since if math.isfinite(window.since) else span[0],
                          window.until if math.isfinite(window.until) else span[1])
    sizes = loaded.config.windows.sizes
    drift_window = min(sizes, key=parse_duration)
    sections = [
        sec.summary_section(data, window),
        sec.versions_section(data, window),
        sec.drift_section(data, window, drift_window, figs.drift_timeline),
        sec.reliability_section(data, window, figs.reliability_diagram),
        sec.confusion_section(data, window, figs.confusion_matrix,
                              {name: m.classes for name, m in loaded.models.items()}),
        sec.per_class_section(data, window),
        sec.shadow_section(data, window, figs.agreement_by_class),
        sec.label_delay_section(data, window, figs.label_delay),
        sec.segments_section(data, window, drift_window),
        thumbnails_section(loaded, images_range(window, span), thumbnails),
    ]
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    written = []
    for s in sections:
        for name, png in s.figures:
            path = out / "figures" / name
            write_bytes_atomically(path, png)
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
    write_bytes_atomically(html_path, page.encode("utf-8"))
    empty = tuple(s.id for s in sections if s.body.startswith('<p class="no-data">'))
    return ReportResult(html_path, tuple(written), tuple(s.id for s in sections), empty)
