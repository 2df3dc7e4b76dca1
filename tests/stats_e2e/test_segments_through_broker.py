"""Per-segment statistics through the real broker and a real Prometheus: a stream whose
predicted-class shift is confined to one camera. Each camera's request counts, drift and
accuracy, read from Prometheus, equal brute-force oracles on that camera's events; the
shifted camera's drift crosses its critical value and the others' do not. Labels carry no
segments: they inherit their prediction's through the join. Then real digits scored by
the reference model, one camera's images colour-shifted: that camera's input-feature drift
alone crosses its critical value."""

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


#: colour gains of the shifted camera's images (red up, green and blue down)
GAINS = (1.5, 0.75, 0.7)


def test_an_image_shift_on_one_camera_is_that_cameras_input_drift_only(broker, topics,
                                                                       start_daemon,
                                                                       tmp_path):
    """Real digits scored by the real reference model: one camera's images colour-shifted.
    Each camera's input-feature windows count exactly its images (half of them carry a
    `segment.camera` header, half take their prediction's camera through the join); the
    shifted camera's colour drift crosses its critical value, the others' do not."""
    torch = pytest.importorskip("torch")
    from reference_model.digits import (
        DIGIT_CLASSES,
        build_digits_reference,
        model_inputs,
        render_digit,
    )

    torch.set_num_threads(1)
    art = build_digits_reference(tmp_path, epochs=8)
    net = torch.jit.load(str(art.path))
    with torch.inference_mode():
        logits, _ = net(model_inputs(art.data.images))
    probs = torch.softmax(logits, dim=1).numpy()
    names = topics(partitions=1)
    cfg = base_config(
        broker.bootstrap, names, reference=art.config.model_dump(mode="json"),
        baseline={"mode": "first_events", "events": 300, "images": 300},
        windows={"sizes": ["1h"], "slices": 60, "segment_slices": 6},
        models=[{"name": "digits", "classes": list(DIGIT_CLASSES),
                 "segments": [{"key": "camera", "max_values": 8}]}])
    daemon = start_daemon(cfg)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    order = np.random.default_rng(5).permutation(len(art.data.images))
    t0 = time.time() - 1800

    def send(idx: np.ndarray, version: str, prefix: str, t: float) -> dict[str, str]:
        """Predictions first (all of them, so that every image finds its camera), then
        the images; returns each request's camera."""
        cameras = {}
        for i, k in enumerate(idx.tolist()):
            rid, camera = f"{prefix}{i}", CAMERAS[i % len(CAMERAS)]
            cameras[rid] = camera
            producer.send(names["predictions"], orjson.dumps(
                {"request_id": rid, "ts": t + i * 0.2, "model": "digits", "version": version,
                 "pred": int(np.argmax(probs[k])), "confidence": float(probs[k].max()),
                 "latency_ms": 3.0, "segments": {"camera": camera}}))
        producer.flush()
        wait_for(lambda: metric_sum(parse_metrics(scrape(daemon.url)),
                                    "visionmon_segment_requests_total", version=version)
                 >= len(idx), 60, what=f"{len(idx)} {version} predictions counted")
        for i, k in enumerate(idx.tolist()):
            rid = f"{prefix}{i}"
            camera = cameras[rid]
            headers = [("request_id", rid.encode()), ("model", b"digits"),
                       ("version", version.encode()), ("content-type", b"image/png"),
                       ("ts", str(t + i * 0.2).encode())]
            if i % 2:
                headers.append(("segment.camera", camera.encode()))
            gains = GAINS if version == "v2" and camera == SHIFTED else (1.0, 1.0, 1.0)
            producer.send(names["images"], render_digit(art.data.images[k], gains=gains),
                          headers=headers)
        producer.flush()
        return cameras

    def scored() -> float:
        return metric_sum(parse_metrics(scrape(daemon.url)),
                          "visionmon_reference_images_scored_total")

    send(order[:400], "v1", "b", t0)
    wait_for(lambda: scored() >= 400, 180, what="baseline images scored")
    cameras = send(order[400:1200], "v2", "c", t0 + 100)
    wait_for(lambda: scored() >= 1200, 300, what="all images scored")
    host = daemon.url.removeprefix("http://")
    with PrometheusServer(tmp_path / "prometheus", [host]) as prom:
        wait_for(prom.targets_up, 60, what="the daemon scraped")

        def value(name: str, camera: str, feature: str) -> float:
            (row,) = prom.query(f'{name}{{version="v2",segment_key="camera",'
                                f'segment="{camera}",feature="{feature}",window="1h"}}')
            return float(row["value"][1])

        wait_for(lambda: prom.query('visionmon_segment_drift_psi{feature="red_mean"}') != [],
                 60, what="input-feature segment series in Prometheus")
        assert prom.query('visionmon_segment_drift_window_events{version="v2",'
                          'segment="_none",feature="red_mean"}') == []
        for camera in CAMERAS:
            mine = sum(c == camera for c in cameras.values())
            for feature in ("red_mean", "blue_mean", "saturation"):
                assert value("visionmon_segment_drift_window_events", camera, feature) == mine
                over = value("visionmon_segment_drift_psi", camera, feature) > \
                    value("visionmon_segment_drift_threshold", camera, feature)
                if feature != "saturation":
                    assert over is (camera == SHIFTED), (camera, feature)
                elif camera != SHIFTED:
                    assert not over, (camera, feature)
