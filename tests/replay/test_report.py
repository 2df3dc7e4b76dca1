"""`visionmon report` renders every section from replay output or a live daemon, with
non-empty PNG figures, and says "no data" instead of drawing empty figures."""

from __future__ import annotations

import base64
import io
import time
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CLASSES
from tests.replay.conftest import Recorded
from visionmon import cli
from visionmon.postmortem.sections import SECTIONS

pytestmark = pytest.mark.slow  # left out of `make test-fast`

PNG = b"\x89PNG\r\n\x1a\n"
SECTION_IDS = [sid for sid, _ in SECTIONS]


@dataclass
class SectionSeen:
    no_data: bool = False
    figures: list[str] = field(default_factory=list)  # img src of drawn figures
    thumbnails: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    cells: list[list[str]] = field(default_factory=list)


class ReportParser(HTMLParser):
    """Sections by id, with their figures, thumbnails, links, "no data" notes and table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, SectionSeen] = {}
        self.order: list[str] = []
        self._current: str | None = None
        self._figure: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self._current = a.get("id") or ""
            self.order.append(self._current)
            self.sections[self._current] = SectionSeen()
            return
        if self._current is None:
            return
        s = self.sections[self._current]
        if tag == "figure":
            self._figure = a.get("class")
        elif tag == "img":
            (s.thumbnails if self._figure == "thumb" else s.figures).append(a.get("src") or "")
        elif tag == "a" and a.get("href"):
            s.links.append(a["href"] or "")
        elif tag == "p" and a.get("class") == "no-data":
            s.no_data = True
        elif tag == "tr":
            s.cells.append([])
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._current = None
        elif tag == "figure":
            self._figure = None
        elif tag == "td" and self._cell is not None and self._current is not None:
            self.sections[self._current].cells[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def render(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        rc = cli.main(["report", *args])
    return rc, out.getvalue()


def parse(out_dir: Path) -> ReportParser:
    p = ReportParser()
    p.feed((out_dir / "report.html").read_text(encoding="utf-8"))
    return p


def png_of(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    return base64.b64decode(src[len(prefix):])


def test_report_from_replay_output_has_every_section(recorded: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "report"
    rc, printed = render(["--config", str(recorded.config), "--from-openmetrics",
                          str(recorded.replay_out), "--out", str(out)])
    assert rc == 0, printed
    page = parse(out)
    assert page.order == SECTION_IDS
    with_data = {"summary", "drift", "reliability", "confusion", "per-class", "label-delay",
                 "thumbnails"}  # `versions` notes the missing reference model, see below
    for sid in with_data:
        assert not page.sections[sid].no_data, sid
    # no reference model in this config: a note, not an empty figure
    assert page.sections["shadow"].no_data and not page.sections["shadow"].figures
    for sid in ("drift", "reliability", "confusion", "label-delay"):
        assert page.sections[sid].figures, sid
    files = sorted((out / "figures").glob("*.png"))
    linked = sorted(link for s in page.sections.values() for link in s.links
                    if link.startswith("figures/"))
    assert [f"figures/{f.name}" for f in files] == linked
    for f in files:
        data = f.read_bytes()
        assert data.startswith(PNG) and len(data) > 1024, f
    for s in page.sections.values():
        for src in s.figures:
            data = png_of(src)
            assert data.startswith(PNG) and len(data) > 1024
    # thumbnails: only images read back from the images topic, of labeled disagreements
    thumbs = page.sections["thumbnails"].thumbnails
    assert 0 < len(thumbs) <= 12
    assert all(png_of(src).startswith(PNG) for src in thumbs)
    # per-class table: worst first
    rows = [r for r in page.sections["per-class"].cells if len(r) == 6]
    worst = [min(float(c.rstrip(" %")) for c in r[4:] if c != "–") for r in rows]
    assert worst == sorted(worst) and len(rows) >= 10
    summary = {r[0]: r[1] for r in page.sections["summary"].cells if len(r) == 2}
    assert summary["requests"].startswith(f"{len(recorded.predictions):,} ")
    assert summary["labels joined"] == f"{len(recorded.feedback):,}"
    # versions and the baseline hash, from the info metrics
    versions = page.sections["versions"].cells
    assert any(r[:2] == ["digits", "v1"] for r in versions)
    assert any(r[:2] == ["digits", "v2"] for r in versions)
    baseline_hash = next(dict(k)["sha256"] for (n, k) in recorded.live
                         if n == "visionmon_baseline_info")
    assert any(baseline_hash in r for r in versions)


def test_report_from_a_live_daemon(recorded: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "live"
    rc, printed = render(["--config", str(recorded.config), "--url", recorded.daemon_url,
                          "--thumbnails", "0", "--out", str(out)])
    assert rc == 0, printed
    page = parse(out)
    assert page.order == SECTION_IDS
    assert page.sections["thumbnails"].no_data
    for sid in ("summary", "drift", "reliability", "per-class", "label-delay"):
        assert not page.sections[sid].no_data, sid
    summary = {r[0]: r[1] for r in page.sections["summary"].cells if len(r) == 2}
    assert summary["requests"].startswith(f"{len(recorded.predictions):,} ")


def test_no_data_gives_notes_not_empty_figures(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(
        {"version": 1, "models": [{"name": "digits", "classes": CLASSES}]}))
    (tmp_path / "empty.om").write_text(
        "# TYPE visionmon_build info\n# HELP visionmon_build visionmon build.\n"
        'visionmon_build_info{version="0.1.0"} 1 1700000000.000\n# EOF\n')
    rc, printed = render(["--config", str(tmp_path / "c.yaml"), "--from-openmetrics",
                          str(tmp_path / "empty.om"), "--thumbnails", "0",
                          "--out", str(tmp_path / "r")])
    assert rc == 0, printed
    page = parse(tmp_path / "r")
    assert page.order == SECTION_IDS
    for sid in SECTION_IDS:
        if sid != "versions":
            assert page.sections[sid].no_data, sid
        assert not page.sections[sid].figures, sid
    assert not list((tmp_path / "r" / "figures").glob("*.png"))


def test_disagreement_images_are_found_by_event_time_with_labels_that_came_late(
        broker: Any, tmp_path: Path) -> None:
    """The report's range is in event time. An image whose record was written well after
    its event (time-compressed traffic, a lagging producer) still belongs to the range,
    and a label written two hours later (inside `labels.ttl`) still joins it."""
    import numpy as np
    import orjson
    from kafka import KafkaProducer

    from monitor.config import load_config
    from tests.conftest import base_config, write_config
    from tests.replay.conftest import _png
    from visionmon.broker import create_topics
    from visionmon.postmortem.thumbnails import disagreement_thumbnails
    from visionmon.postmortem.timerange import TimeRange

    names = {"predictions": "late-pred", "images": "late-img", "feedback": "late-fb"}
    create_topics(broker.bootstrap, list(names.values()), 1)
    cfg = base_config(broker.bootstrap, names, models=[{"name": "digits", "classes": CLASSES}])
    cfg["labels"] = {"ttl": "1d"}
    loaded = load_config(write_config(tmp_path, cfg))
    t = time.time() - 6 * 3600  # event time of the request
    written = t + 120            # its prediction and image reach Kafka 2 min later
    p = KafkaProducer(bootstrap_servers=broker.bootstrap)
    p.send(names["predictions"], orjson.dumps({
        "request_id": "r1", "ts": t, "model": "digits", "version": "v1", "pred": 3,
        "confidence": 0.9}), timestamp_ms=int(written * 1000))
    p.send(names["images"], _png(np.random.default_rng(0)), timestamp_ms=int(written * 1000),
           headers=[("request_id", b"r1"), ("model", b"digits"), ("version", b"v1"),
                    ("content-type", b"image/png"), ("ts", str(t).encode())])
    p.send(names["feedback"], orjson.dumps({"request_id": "r1", "label": 5, "ts": t + 7200}),
           timestamp_ms=int((t + 7200) * 1000))
    p.flush()
    p.close()
    thumbs = disagreement_thumbnails(loaded, TimeRange(t - 60, t + 60), 12)
    assert [(th.request_id, th.predicted, th.label) for th in thumbs] == \
        [("r1", CLASSES[3], CLASSES[5])]
