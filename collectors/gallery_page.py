"""The `/gallery` page: one self-contained HTML page of the failure gallery's thumbnails.

Thumbnails are inlined as `data:` URIs, so the page makes no further request; every text
from the events (model, version, class names, segment) is HTML-escaped. The response
headers forbid caching, sniffing and any script (`GALLERY_HEADERS`).
"""

from __future__ import annotations

import base64
import html
import math
import time
from collections.abc import Sequence

from monitor.gallery import GalleryEntry

#: Response headers of the page (copy before handing them to a server that adds its own).
GALLERY_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy",
     "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'none'"),
)

_STYLE = """
body{font-family:sans-serif;margin:1em;background:#fafafa;color:#222}
.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;padding:8px;background:#fff;border:1px solid #ddd;border-radius:4px;
width:200px}
img{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;display:block;
background:#eee}
figcaption{font-size:12px;line-height:1.4;margin-top:6px}
.reason{font-weight:bold;color:#b00}
"""


def _answer(name: str | None, confidence: float) -> str:
    if name is None:
        return "?"
    text = html.escape(name)
    return text if math.isnan(confidence) else f"{text} ({confidence:.2f})"


def _card(e: GalleryEntry) -> str:
    src = "data:image/jpeg;base64," + base64.b64encode(e.thumbnail).decode()
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(e.ts))
    rows = [f'<span class="reason">{html.escape(", ".join(e.reasons))}</span>',
            f"{html.escape(e.model)} {html.escape(e.version)}",
            f"production: {_answer(e.prediction, e.confidence)}",
            f"reference: {_answer(e.reference, e.reference_confidence)}",
            f"label: {html.escape(e.label) if e.label is not None else '-'}"]
    if e.segment is not None:
        rows.append(f"segment: {html.escape(e.segment)}")
    if e.score is not None:
        rows.append(f"unusualness: {e.score:.3g}")
    rows.append(f"<time>{when}</time>")
    alt = html.escape(f"{e.model} image, production {e.prediction}", quote=True)
    return (f'<figure><img src="{src}" alt="{alt}">'
            f'<figcaption>{"<br>".join(rows)}</figcaption></figure>')


def page_order(entries: Sequence[GalleryEntry]) -> list[GalleryEntry]:
    """The images offered as unusual, highest score first, then the others as given
    (newest first)."""
    unusual = [e for e in entries if e.score is not None]
    unusual.sort(key=lambda e: -(e.score or 0.0))  # stable: ties stay newest first
    return unusual + [e for e in entries if e.score is None]


def render_gallery(entries: Sequence[GalleryEntry], size: int) -> bytes:
    """The page for `entries` (newest first), of at most `size` kept: the most unusual
    images first, then the others, newest first."""
    ordered = page_order(entries)
    unusual = sum(e.score is not None for e in ordered)
    cards = "\n".join(_card(e) for e in ordered)
    empty = "" if entries else "<p>No failure images yet.</p>"
    return (f"<!doctype html><html><head><meta charset=\"utf-8\">"
            f"<title>visionmon failure gallery</title><style>{_STYLE}</style></head><body>"
            f"<h1>Failure gallery</h1><p>The {len(entries)} most recent images that were wrong "
            f"by their label, disagreed with the reference model or scored above the "
            f"baseline's 99th percentile of an unusualness score (up to {size} kept in "
            f"memory): the {unusual} unusual ones first, highest score first, then the others, "
            f"newest first.</p>{empty}<div class=\"grid\">\n{cards}\n</div>"
            f"</body></html>").encode()
