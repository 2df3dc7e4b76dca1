"""Unusual inputs end to end: real digits and non-digit images through the real broker,
scored by the digits reference model, counted against the first-events baseline's 99th
percentiles and read from /metrics.

Clean digits stay under the critical value of both scores; random noise and flat-colour
shapes (categories the model never saw) cross it, so VisionmonUnusualInputs would fire.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
import pytest

torch = pytest.importorskip("torch")

from kafka import KafkaProducer  # noqa: E402

from reference_model.digits import build_digits_reference, render_digit  # noqa: E402
from tests.conftest import judge_scrapes, metric_sum, wait_for  # noqa: E402
from tests.reference_e2e.digits_traffic import (  # noqa: E402
    digits_first_events_config,
    images_scored,
    wait_for_image_profile,
)


def _noise(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _shapes(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Clip-art-like images: a flat background and two flat-colour rectangles."""
    h, w = shape[0], shape[1]
    out = np.empty((n, *shape), dtype=np.uint8)
    for i in range(n):
        out[i] = rng.integers(0, 256, 3)
        for _ in range(2):
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            y1, x1 = rng.integers(y0 + h // 4, h + 1), rng.integers(x0 + w // 4, w + 1)
            out[i, y0:y1, x0:x1] = rng.integers(0, 256, 3)
    return out


def _send(producer: KafkaProducer, names: dict[str, str], version: str, imgs: np.ndarray,
          t0: float, prefix: str) -> None:
    for i in range(len(imgs)):
        rid, ts = f"{prefix}{i}", t0 + i * 0.2
        producer.send(names["predictions"], orjson.dumps(
            {"request_id": rid, "ts": ts, "model": "digits", "version": version,
             "pred": i % 10, "confidence": 0.9, "latency_ms": 3.0}))
        producer.send(names["images"], render_digit(imgs[i]),
                      headers=[("request_id", rid.encode()), ("model", b"digits"),
                               ("version", version.encode()), ("content-type", b"image/png"),
                               ("ts", str(ts).encode())])
    producer.flush()


def test_out_of_category_images_cross_the_unusual_input_threshold_and_clean_ones_do_not(
        broker, topics, start_daemon, tmp_path):
    torch.set_num_threads(1)
    art = build_digits_reference(tmp_path, epochs=8)
    images = art.data.images
    rng = np.random.default_rng(0)
    names = topics(partitions=1)
    daemon = start_daemon(digits_first_events_config(broker.bootstrap, names, art))
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    t0 = time.time() - 1800
    order = rng.permutation(len(images))
    base, clean = order[:400], order[400:700]
    _send(producer, names, "v1", images[base], t0, "b")

    def scored() -> float:
        return images_scored(daemon.url)

    wait_for(lambda: scored() >= 400, 120, what="baseline images scored")
    wait_for_image_profile(daemon.url)
    shape = images.shape[1:]
    _send(producer, names, "clean", images[clean], t0 + 100, "c")
    _send(producer, names, "noise", _noise(200, shape, rng), t0 + 100, "n")
    _send(producer, names, "shapes", _shapes(200, shape, rng), t0 + 100, "s")
    wait_for(lambda: scored() >= 1100, 180, what="all images scored")
    # the last images' statistics may reach /metrics a snapshot or two after the scored
    # count does: judge a fresh scrape until they hold, for up to 30 s
    def judge(m: dict[Any, float]) -> None:

        def g(name: str, **labels: str) -> float:
            vals = [v for (n, ls), v in m.items() if n == name and set(labels.items()) <= set(ls)]
            assert len(vals) == 1, (name, labels, vals)
            return vals[0]

        crossed = {}
        for version in ("clean", "noise", "shapes"):
            for score in ("knn", "energy"):
                key = {"version": version, "window": "1h", "score": score}
                ratio = g("visionmon_unusual_input_ratio", **key)
                critical = g("visionmon_unusual_input_ratio_threshold", **key)
                crossed[(version, score)] = ratio > critical
                print(f"{version:7s} {score:7s} ratio {ratio:.3f} "
                      f"critical {g('visionmon_unusual_input_ratio_threshold', **key):.3f}")
        assert not crossed[("clean", "knn")] and not crossed[("clean", "energy")]
        for version in ("noise", "shapes"):
            assert crossed[(version, "knn")] or crossed[(version, "energy")], version
        assert crossed[("noise", "knn")]
        # the histogram: every scored image of every version has a rank
        ranked = metric_sum(m, "visionmon_unusual_input_rank_count", score="knn")
        assert ranked >= 700

    judge_scrapes(daemon.url, judge)
