"""The report's thumbnails: sampled images of labeled predictions that disagree with their
label, read back from the images topic (images are never stored anywhere but there)."""

from __future__ import annotations

import base64
import html
import io
import math
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

from monitor.config import LoadedConfig
from monitor.durations import parse_duration
from visionmon.postmortem.read import KafkaRangeReader, ReplayError
from visionmon.postmortem.sections import Section, no_data
from visionmon.postmortem.timerange import TimeRange

#: Most disagreement thumbnails by default; images considered while looking for them.
DEFAULT_THUMBNAILS = 12
MAX_IMAGE_CANDIDATES = 5000
THUMBNAIL_PX = 112
#: Looked back before the first snapshot for images when --since is not given.
IMAGES_MARGIN_S = 300.0


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """A disagreeing image, downscaled to PNG, with what was predicted and labeled."""

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


def images_range(window: TimeRange, span: tuple[float, float] | None) -> TimeRange:
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
        return Section("thumbnails", title, no_data("thumbnails not requested (--thumbnails 0)"))
    if not _reachable(servers):
        return Section("thumbnails", title, no_data(
            f"Kafka ({', '.join(servers)}) is not reachable, so no images could be read back; "
            "images are never stored anywhere but the images topic"))
    try:
        thumbs = disagreement_thumbnails(loaded, window, limit)
    except ReplayError as err:
        return Section("thumbnails", title, no_data(f"images could not be read: {err}"))
    if not thumbs:
        return Section("thumbnails", title, no_data(
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

