"""Per-segment statistics through the real broker and a real Prometheus: a stream whose
predicted-class shift is confined to one camera. Each camera's request counts, drift and
accuracy, read from Prometheus, equal brute-force oracles on that camera's events; the
shifted camera's drift crosses its critical value and the others' do not. Labels carry no
segments: they inherit their prediction's through the join."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer

from tests.conftest import (
    CLASSES,
    base_config,
    metric_sum,
    parse_metrics,
    scrape,
    wait_for,
    write_config,
)
from tests.prom_server import PrometheusServer, skip_without_prometheus
from tests.stats_e2e.oracle import build_baseline, psi_loop

pytestmark = [pytest.mark.slow, skip_without_prometheus]
CAMERAS = ("cam-1", "cam-2", "cam-3", "cam-4")
SHIFTED = "cam-3"


def _stream(rng: np.random.Generator, n: int, t0: float, spread: float, prefix: str,
            shifted: bool) -> list[dict]:
    """`n` predictions from the four cameras; on the shifted camera (when `shifted`) a
    third of the predictions are class 0 instead of a tenth."""
    out = []
    for i in range(n):
        camera = CAMERAS[i % len(CAMERAS)]
        prior = np.full(10, 0.1)
        if shifted and camera == SHIFTED:
            prior = np.array([0.34] + [0.66 / 9] * 9)
        pred = int(rng.choice(10, p=prior))
        out.append({"request_id": f"{prefix}{i}", "ts": t0 + rng.uniform(0, spread),
                    "model": "digits", "version": "v1", "pred": pred,
                    "confidence": float(np.round(rng.uniform(0.5, 1.0), 4)),
                    "latency_ms": 10.0,
                    "segments": {"camera": camera, "site": "plant-a" if i % 2 else "plant-z"}})
    return out


def test_a_shift_on_one_camera_is_that_cameras_drift_only(broker, topics, start_daemon,
                                                          tmp_path):
    rng = np.random.default_rng(23)
    now = time.time()
    base_file = tmp_path / "base.jsonl"
    base_file.write_bytes(b"\n".join(
        orjson.dumps(e) for e in _stream(rng, 8000, now - 7200, 600, "b", shifted=False)))
    names = topics(partitions=1)  # one partition: the first cameras seen are cam-1..3
    cfg = base_config(
        broker.bootstrap, names, windows={"sizes": ["1h"], "slices": 60, "segment_slices": 6},
        baseline={"mode": "file", "path": str(tmp_path / "digits.baseline.json")},
        drift={"features": ["predicted_class"]},
        models=[{"name": "digits", "classes": CLASSES,
                 "segments": [{"key": "camera", "max_values": 3},
                              {"key": "site", "values": ["plant-a", "plant-b"]}]}])
    baseline = build_baseline(write_config(tmp_path, cfg), base_file,
                              tmp_path / "digits.baseline.json")

    # cam-1..3 arrive first (the camera bound keeps them), cam-4 folds into _other
    current = _stream(rng, 6000, now - 900, 600, "c", shifted=True)
    current.sort(key=lambda e: CAMERAS.index(e["segments"]["camera"]) // 3)
    truth = {e["request_id"]: (e["pred"] if rng.random() < 0.8 else int(rng.integers(10)))
             for e in current[::2]}
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    for j in range(0, len(current), 100):
        producer.send(names["predictions"],
                      b"\n".join(orjson.dumps(e) for e in current[j:j + 100]))
    for rid, label in truth.items():  # labels carry no segments
        producer.send(names["feedback"], orjson.dumps(
            {"request_id": rid, "label": label, "ts": now}))
    producer.flush()
    daemon = start_daemon(cfg)
    wait_for(lambda: metric_sum(parse_metrics(scrape(daemon.url)),
                                "visionmon_labels_total") >= len(truth), 120,
             what=f"{len(truth)} labels joined")
    host = daemon.url.removeprefix("http://")
    with PrometheusServer(tmp_path / "prometheus", [host]) as prom:
        wait_for(prom.targets_up, 60, what="the daemon scraped")
        wait_for(lambda: prom.query("visionmon_segment_accuracy_ratio") != [], 60,
                 what="segment series in Prometheus")

        def value(expr: str) -> float:
            (row,) = prom.query(expr)
            return float(row["value"][1])

        def cam(name: str, camera: str, extra: str = "") -> float:
            return value(f'{name}{{segment_key="camera",segment="{camera}",window="1h"{extra}}}')

        kept = {"cam-1", "cam-2", "cam-3"}
        for camera in CAMERAS:
            label = camera if camera in kept else "_other"
            mine = [e for e in current if e["segments"]["camera"] == camera]
            assert value(f'visionmon_segment_requests_total{{segment_key="camera",'
                         f'segment="{label}",status="ok"}}') == len(mine)
        assert value('visionmon_segment_values_folded_total{segment_key="camera"}') == \
            sum(e["segments"]["camera"] == "cam-4" for e in current)
        assert value('visionmon_segment_requests_total{segment_key="site",segment="_other",'
                     'status="ok"}') == sum(e["segments"]["site"] == "plant-z" for e in current)
        base = baseline.features["predicted_class"].counts
        for camera in sorted(kept):
            mine = [e for e in current if e["segments"]["camera"] == camera]
            counts = np.bincount([e["pred"] for e in mine], minlength=10).astype(float)
            feature = ',feature="predicted_class"'
            assert cam("visionmon_segment_drift_window_events", camera, feature) == len(mine)
            psi = cam("visionmon_segment_drift_psi", camera, feature)
            assert psi == pytest.approx(psi_loop(counts, base), rel=1e-6)
            over = psi > cam("visionmon_segment_drift_threshold", camera, feature)
            assert over is (camera == SHIFTED), camera
            labelled = [e for e in mine if e["request_id"] in truth]
            correct = sum(truth[e["request_id"]] == e["pred"] for e in labelled)
            assert cam("visionmon_segment_labelled_events", camera) == len(labelled)
            assert cam("visionmon_segment_accuracy_ratio", camera) == pytest.approx(
                correct / len(labelled), rel=1e-9)
