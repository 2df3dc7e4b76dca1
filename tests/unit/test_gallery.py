"""The failure gallery: which images enter it, with what answers, and how it stays bounded;
the /gallery route (404 when off, escaped text, no-store headers) and the config's checks."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from collectors.gallery_page import page_order, render_gallery
from collectors.http_server import HttpEndpoints
from monitor.config import ConfigError, parse_config
from monitor.events import PredictionEvent
from monitor.gallery import FailureGallery
from monitor.reference_config import GalleryConfig
from monitor.scored import INPUT_FEATURES, ScoredImage
from reference_model.intake import thumbnail_jpeg

CLASSES = ("cat", "dog", "<b>fox</b>")
THUMB = thumbnail_jpeg(Image.new("RGB", (300, 200), (10, 200, 30)), 96)


def scored(rid: str, ref: int, thumb: bytes | None = THUMB, ts: float = 100.0) -> ScoredImage:
    return ScoredImage(rid, "m", "v1", ts, ref, 0.8, np.zeros(4, np.float32),
                       tuple(0.0 for _ in INPUT_FEATURES), thumb)


def prediction(rid: str, pred: int, version: str = "v1") -> PredictionEvent:
    return PredictionEvent(rid, 100.0, "m", version, True, pred, 0.9, 0.5, 0.2, 0.01)


def gallery(size: int = 3, waiting: int = 10, hashed: bool = False) -> FailureGallery:
    return FailureGallery({"m": CLASSES}, GalleryConfig(enabled=True, size=size,
                                                        waiting=waiting), hashed)


def test_a_thumbnail_fits_its_side_and_keeps_the_aspect_ratio() -> None:
    assert Image.open(io.BytesIO(THUMB)).size == (96, 64)


def test_a_disagreement_enters_with_both_answers_and_an_agreement_does_not() -> None:
    g = gallery()
    g.on_scored([scored("a", ref=1), scored("b", ref=0)])
    g.on_shadow_join("a", "v1", 0, 0.9, 1)
    g.on_shadow_join("b", "v1", 0, 0.9, 0)
    (e,) = g.entries()
    assert (e.reasons, e.prediction, e.confidence, e.reference, e.reference_confidence,
            e.label) == (("disagree",), "cat", 0.9, "dog", 0.8, None)
    assert e.thumbnail == THUMB and e.ts == 100.0


def test_a_wrong_label_enters_once_with_every_reason_and_a_right_one_does_not() -> None:
    g = gallery()
    g.on_scored([scored("a", ref=1), scored("b", ref=0), scored("c", ref=2)])
    g.on_shadow_join("a", "v1", 0, 0.9, 1)                  # disagrees, later wrong
    g.on_label("m", "v1", prediction("a", 0), 2, 150.0)
    g.on_label("m", "v1", prediction("b", 0), 1, 150.0)     # wrong, agreed with reference
    g.on_label("m", "v1", prediction("c", 2), 2, 150.0)     # right
    entries = g.entries()
    assert [(e.reasons, e.label) for e in entries] == [
        (("wrong",), "dog"), (("wrong", "disagree"), "<b>fox</b>")]
    assert len(g.waiting) == 1  # "c" waits on (its label was right): dropped when old


def test_the_gallery_keeps_the_newest_size_entries_and_waiting_is_bounded() -> None:
    g = gallery(size=3, waiting=4)
    g.on_scored([scored(f"r{i}", ref=1) for i in range(10)])
    assert len(g.waiting) == 4
    for i in range(10):
        g.on_shadow_join(f"r{i}", "v1", 0, 0.9, 1)
    assert [e.reference for e in g.entries()] == ["dog"] * 3
    assert len(g.entries()) == 3


def test_images_without_thumbnails_or_of_unknown_models_are_ignored() -> None:
    g = gallery()
    g.on_scored([scored("a", ref=1, thumb=None),
                 ScoredImage("b", "other", "v1", 1.0, 0, 0.5, np.zeros(2, np.float32), ())])
    assert len(g.waiting) == 0
    g.on_shadow_join("a", "v1", 0, 0.9, 1)
    assert g.entries() == ()


def test_hashed_request_ids_still_show_disagreements() -> None:
    g = gallery(hashed=True)
    g.on_scored([scored("a", ref=1)])
    g.on_shadow_join("a", "v1", 0, 0.9, 1)
    assert len(g.entries()) == 1


def test_an_unusual_image_is_offered_with_its_score() -> None:
    g = gallery()
    g.on_scored([scored("a", ref=1)])
    g.on_unusual("a", 7.5)
    g.on_unusual("missing", 9.0)
    (e,) = g.entries()
    assert e.reasons == ("unusual",) and e.score == 7.5 and math.isnan(e.confidence)


def _call(app: HttpEndpoints, path: str) -> tuple[str, dict[str, str], bytes]:
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = status, dict(headers)

    body: Iterable[bytes] = app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response)
    return got["status"], got["headers"], b"".join(body)


def test_the_route_is_404_when_off_and_an_escaped_no_store_page_when_on() -> None:
    from prometheus_client import CollectorRegistry

    off = HttpEndpoints(CollectorRegistry(), lambda: True, lambda: (True, ""))
    assert _call(off, "/gallery")[0].startswith("404")
    g = gallery()
    g.on_scored([scored("a", ref=2)])
    g.on_shadow_join("a", "v1", 0, 0.9, 2)
    on = HttpEndpoints(CollectorRegistry(), lambda: True, lambda: (True, ""),
                       gallery=lambda: render_gallery(g.entries(), g.size))
    status, headers, body = _call(on, "/gallery")
    assert status.startswith("200") and headers["Cache-Control"] == "no-store"
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none'
    text = body.decode()
    assert "&lt;b&gt;fox&lt;/b&gt; (0.80)" in text and "<b>fox" not in text
    assert text.count("data:image/jpeg;base64,") == 1 and "cat (0.90)" in text


def test_the_gallery_needs_a_reference_model() -> None:
    with pytest.raises(ConfigError, match=r"images\.gallery\.enabled needs a `reference:`"):
        parse_config({"version": 1, "models": [{"name": "m", "classes": ["a", "b"]}],
                      "images": {"gallery": {"enabled": True}}}, "<test>")


def test_pages_of_changing_length_are_served_whole_over_http() -> None:
    """wsgiref adds Content-Length to the header list it is handed: a shared list would
    cut every later, longer page to the first one's length."""
    import urllib.request

    from prometheus_client import CollectorRegistry

    from collectors.http_server import HttpServer

    g = gallery(size=10, waiting=20)
    app = HttpEndpoints(CollectorRegistry(), lambda: True, lambda: (True, ""),
                        gallery=lambda: render_gallery(g.entries(), g.size))
    server = HttpServer(app, "127.0.0.1", 0)
    server.start()
    try:
        for n in range(1, 4):
            g.on_scored([scored(f"r{n}", ref=1)])
            g.on_shadow_join(f"r{n}", "v1", 0, 0.9, 1)
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/gallery") as resp:
                body = resp.read()
            assert body == render_gallery(g.entries(), g.size) and body.count(b"<img") == n
    finally:
        server.stop()


def test_an_image_shown_twice_keeps_both_reasons_and_its_score() -> None:
    g = gallery()
    g.on_scored([scored("a", ref=1), scored("b", ref=2)])
    g.on_unusual("a", 3.0)
    g.on_shadow_join("a", "v1", 0, 0.9, 1)
    g.on_shadow_join("b", "v1", 0, 0.9, 2)
    g.on_unusual("b", 1.0)
    a, b = sorted(g.entries(), key=lambda e: e.score or 0.0, reverse=True)
    assert a.reasons == ("disagree", "unusual") and a.score == 3.0
    assert b.reasons == ("unusual", "disagree") and b.score == 1.0


def test_the_page_shows_the_most_unusual_images_first_then_the_newest() -> None:
    g = gallery(size=10)
    g.on_scored([scored(r, ref=1) for r in "abcd"])
    g.on_unusual("a", 0.5)
    g.on_shadow_join("b", "v1", 0, 0.9, 1)
    g.on_unusual("c", 2.0)
    g.on_shadow_join("d", "v1", 0, 0.9, 1)
    order = [e.score for e in page_order(g.entries())]
    assert order == [2.0, 0.5, None, None]
    newest_first = [e for e in page_order(g.entries()) if e.score is None]
    assert newest_first == [e for e in g.entries() if e.score is None]
    body = render_gallery(g.entries(), g.size).decode()
    assert body.index("unusualness: 2") < body.index("unusualness: 0.5")
