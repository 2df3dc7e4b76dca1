"""Every metric the catalog declares is produced: one daemon, the real broker, predictions
with probabilities, labels, images scored by the digits reference model, a checkpoint
folder, a dead-letter topic and a few events that meet the catalog's conditions (a refused
record, a refused image, a version over the limit, a late prediction, more label sets than
the series cap). Every catalog metric must then be on /metrics, except those whose
condition this run does not meet: those conditions are named below, so an unconditional
metric that goes missing fails."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
import orjson
import pytest

pytestmark = pytest.mark.slow  # left out of `make test-fast`

torch = pytest.importorskip("torch")

from kafka import KafkaProducer  # noqa: E402

from monitor.catalog import CATALOG, REFERENCE_GPU  # noqa: E402
from reference_model.digits import (  # noqa: E402
    DIGIT_CLASSES,
    build_digits_reference,
    model_inputs,
    render_digit,
)
from tests.conftest import base_config, metric_sum, parse_metrics, scrape, wait_for  # noqa: E402
from visionmon.broker import create_topics  # noqa: E402

#: catalog conditions this run does not meet, and why; every other metric must be exported
NOT_MET = {
    "with a reference model (reference:), once a batch fails": "the model never fails",
    "with a reference model (reference:), once an image is dropped":
        "the queue never overflows at this rate",
    REFERENCE_GPU: "the model runs on the CPU (tests/reference/test_reference_gpu.py reads a "
                   "fake NVML and checks these are absent, not zero, without a GPU)",
}
#: predictions that make the first-events baseline, then images that extend it (the MMD
#: test needs 160), then the traffic whose windows are compared with it
BASELINE_EVENTS, BASELINE_IMAGES, LATER = 200, 160, 100
LONGEST_WINDOW_S = 3600


def _send(producer: KafkaProducer, names: dict[str, str], probs: np.ndarray,
          labels: np.ndarray, images: np.ndarray | None, t0: float, first: int,
          version: str = "v1") -> None:
    """Predictions `first`.. at one per second from t0 (with their images when given), and
    labels for half of them (every fifth of those wrong)."""
    for i in range(first, first + len(probs)):
        p = probs[i - first]
        rid, ts = f"{version}-{i}", t0 + i
        producer.send(names["predictions"], orjson.dumps(
            {"request_id": rid, "ts": ts, "model": "digits", "version": version,
             "pred": int(np.argmax(p)), "confidence": float(p.max()),
             "probs": [round(float(x), 6) for x in p], "latency_ms": 3.0,
             "segments": {"camera": f"cam-{i % 3}"}}))
        if images is not None:  # every other image names its camera, the rest inherit it
            own = [("segment.camera", f"cam-{i % 3}".encode())] if i % 2 else []
            producer.send(names["images"], render_digit(images[i - first]), headers=[
                ("request_id", rid.encode()), ("model", b"digits"),
                ("version", version.encode()), ("content-type", b"image/png"),
                ("ts", str(ts).encode()), *own])
        if i % 2 == 0:
            label = int(labels[i - first]) + (1 if i % 10 == 0 else 0)
            producer.send(names["feedback"], orjson.dumps(
                {"request_id": rid, "label": label % 10, "ts": ts + 5}))
    producer.flush()


def test_every_catalog_metric_is_exported_unless_its_condition_is_unmet(
        broker, topics, start_daemon, tmp_path):
    torch.set_num_threads(1)
    assert set(NOT_MET) <= {s.condition for s in CATALOG}, "NOT_MET names a stale condition"
    art = build_digits_reference(tmp_path, epochs=6)
    n = BASELINE_EVENTS + BASELINE_IMAGES + LATER
    images, labels = art.data.images[:n], art.data.labels[:n]
    with torch.inference_mode():
        logits, _ = torch.jit.load(str(art.path))(model_inputs(images))
    probs = torch.softmax(logits, dim=1).numpy()
    names = topics(partitions=1)
    names["lifecycle"] = f"lc-{names['predictions']}"
    create_topics(broker.bootstrap, [names["lifecycle"]], 1)
    cfg = base_config(
        broker.bootstrap, names, models=[{"name": "digits", "classes": list(DIGIT_CLASSES),
                                          "accept": {"threshold": 0.8},
                                          # cam-0 kept, cam-1 and cam-2 fold into _other
                                          "segments": [{"key": "camera", "max_values": 1}]}],
        reference=art.config.model_dump(mode="json"),
        baseline={"mode": "first_events", "events": BASELINE_EVENTS,
                  "images": BASELINE_IMAGES},
        windows={"sizes": ["5m", "1h"], "slices": 6},
        state={"checkpoint_dir": str(tmp_path / "state"), "checkpoint_interval_seconds": 0.5},
        limits={"max_versions_per_model": 1, "max_series_per_metric": 100},
        labels={"ttl": "1m"},
        quality={"eval_slice": "1m", "min_labels": 5, "min_shadow_images": 10})
    daemon = start_daemon(cfg)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    t0 = time.time() - 1800

    def exported() -> dict[Any, float]:
        return parse_metrics(scrape(daemon.url))

    def baseline() -> str | None:
        """The hash of the baseline in use (a new one starts the windows afresh)."""
        return next((dict(ls)["sha256"] for name, ls in exported()
                     if name == "visionmon_baseline_info"), None)

    a, b = BASELINE_EVENTS, BASELINE_EVENTS + BASELINE_IMAGES
    _send(producer, names, probs[:a], labels[:a], None, t0, 0)
    wait_for(lambda: baseline() is not None, 30, what="the first-events baseline")
    first = baseline()
    _send(producer, names, probs[a:b], labels[a:b], images[a:b], t0, a)
    wait_for(lambda: baseline() != first, 60, what="the baseline extended with images")
    _send(producer, names, probs[b:], labels[b:], images[b:], t0, b)
    # a version over limits.max_versions_per_model, a late prediction, a refused record and
    # a refused image
    _send(producer, names, probs[:3], labels[:3], None, t0 + n, 0, version="v2")
    _send(producer, names, probs[:1], labels[:1], None, t0 - 2 * LONGEST_WINDOW_S, 0, "old")
    # the lifecycle topic: a load of v1, a failed load, a rollout
    for record in ({"kind": "loaded", "sha256": "a" * 64, "load_seconds": 2.5, "host": "h1"},
                   {"kind": "load_failed", "reason": "out_of_memory", "host": "h2"},
                   {"kind": "rolled_out"}):
        producer.send(names["lifecycle"], orjson.dumps(
            {**record, "ts": t0 + n, "model": "digits", "version": "v1"}))
    producer.send(names["predictions"], b"{not json")
    producer.send(names["images"], b"not an image", headers=[
        ("request_id", b"v1-0"), ("model", b"digits"), ("version", b"v1")])
    producer.flush()
    wait_for(lambda: metric_sum(exported(), "visionmon_reference_images_scored_total")
             >= LATER + BASELINE_IMAGES, 60, what="every image scored")
    expected = {spec.name for spec in CATALOG if spec.condition not in NOT_MET}

    def missing() -> list[str]:
        """Expected metrics not on /metrics now (some come with a timer: lag, checkpoints)."""
        present = {CATALOG.family_of(name) for name, _ in exported()}
        return sorted(expected - {spec.name for spec in present if spec is not None})

    with contextlib.suppress(AssertionError):
        wait_for(lambda: not missing(), 30, what="every expected metric")
    assert not missing(), f"declared, not exported: {missing()}"
    m = exported()
    assert metric_sum(m, "visionmon_late_events_total", topic=names["predictions"]) == 1
    assert metric_sum(m, "visionmon_poll_batch_seconds_count") >= 1
    assert metric_sum(m, "visionmon_duplicates_skipped_total") == 0
