"""The failure gallery in a real browser: real digits through the real broker, a daemon with
basic auth, and Debian's headless Chromium loading /gallery.

Half the predictions are made wrong on purpose (and labeled); the page must show their
thumbnails with production's and the reference model's answers and the label, and refuse
a browser without credentials. The screenshot is kept as docs/gallery.png when
VISIONMON_GALLERY_SCREENSHOT names a path.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from kafka import KafkaProducer  # noqa: E402

from reference_model.digits import (  # noqa: E402
    DIGIT_CLASSES,
    build_digits_reference,
    render_digit,
)
from tests.conftest import base_config, wait_for  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
USER, PASSWORD = "viewer", "gallery-pa55"
#: the digits palette's background (`reference_model.digits`): only thumbnails have it
NAVY = np.array([24, 32, 72])

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")]


def _get(url: str, auth: bool) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _chromium(url: str, out: Path, *args: str) -> str:
    """Run headless Chromium on `url`; returns stdout (the DOM with --dump-dom)."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={out.parent / 'chromium-profile'}",
         "--window-size=1280,1500", "--virtual-time-budget=3000", *args, url],
        capture_output=True, text=True, timeout=120, check=False)
    return done.stdout


def test_the_gallery_page_shows_failures_in_a_browser_and_refuses_without_credentials(
        broker, topics, start_daemon, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    monkeypatch.setenv("VM_GALLERY_USER", USER)
    monkeypatch.setenv("VM_GALLERY_PASS", PASSWORD)
    art = build_digits_reference(tmp_path, epochs=6)
    names = topics(partitions=1)
    cfg = base_config(broker.bootstrap, names,
                      models=[{"name": "digits", "classes": list(DIGIT_CLASSES)}],
                      reference=art.config.model_dump(mode="json"),
                      images={"gallery": {"enabled": True, "size": 30}},
                      http={"basic_auth_user_env": "VM_GALLERY_USER",
                            "basic_auth_password_env": "VM_GALLERY_PASS"})
    daemon = start_daemon(cfg)
    url = f"http://127.0.0.1:{daemon.app.http.port}"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    data = art.data
    t0 = time.time() - 60
    for i, j in enumerate(data.test[:40]):
        true = int(data.labels[j])
        pred = (true + 1) % 10 if i % 2 else true   # every other prediction is wrong
        rid, ts = f"g{i}", t0 + i * 0.5
        producer.send(names["predictions"], orjson.dumps(
            {"request_id": rid, "ts": ts, "model": "digits", "version": "v1", "pred": pred,
             "confidence": 0.9, "latency_ms": 3.0}))
        producer.send(names["images"], render_digit(data.images[j]),
                      headers=[("request_id", rid.encode()), ("model", b"digits"),
                               ("version", b"v1"), ("content-type", b"image/png"),
                               ("ts", str(ts).encode())])
    producer.flush()

    def scored_all() -> bool:
        return daemon.app.stats.shadow.scored >= 40

    wait_for(scored_all, 90)
    for i, j in enumerate(data.test[:40]):  # labels after the images were scored
        producer.send(names["feedback"], orjson.dumps(
            {"request_id": f"g{i}", "label": int(data.labels[j]), "ts": t0 + 30 + i}))
    producer.flush()

    def page() -> str:
        status, body = _get(f"{url}/gallery", auth=True)
        assert status == 200
        return body

    wait_for(lambda: page().count("wrong") >= 10, 60)
    assert _get(f"{url}/gallery", auth=False)[0] == 401

    # the browser, with credentials: thumbnails and their answers
    shot = tmp_path / "gallery.png"
    with_auth = f"http://{USER}:{PASSWORD}@127.0.0.1:{daemon.app.http.port}/gallery"
    dom = _chromium(with_auth, shot, "--dump-dom")
    entries = daemon.app.stats.shadow.gallery.entries()
    assert 10 <= len(entries) <= 30
    assert dom.count("<img") == len(entries) and dom.count("production: ") == len(entries)
    for e in entries:  # every entry's answers, in the page's order
        assert f"reference: {e.reference} ({e.reference_confidence:.2f})" in dom
    assert dom.count("wrong, disagree") == sum(e.reasons == ("wrong", "disagree")
                                               for e in entries) > 0
    _chromium(with_auth, shot, f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int64)
    navy = (np.abs(pixels - NAVY).max(axis=2) <= 16).sum()
    # the digits' background fills the thumbnails
    assert navy > len(entries) * 0.3 * 96 * 96, navy
    keep = os.environ.get("VISIONMON_GALLERY_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)

    # the browser, without credentials or with wrong ones: refused, nothing of the page
    for refused in (f"{url}/gallery",
                    f"http://{USER}:wrong@127.0.0.1:{daemon.app.http.port}/gallery"):
        dom = _chromium(refused, tmp_path / "refused.png", "--dump-dom")
        assert "<img" not in dom and "production: " not in dom and "Failure gallery" not in dom
