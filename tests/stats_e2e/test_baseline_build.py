"""`visionmon baseline build` from JSON lines and from a Kafka time range."""

from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest
from kafka import KafkaProducer

from monitor import baseline as baseline_mod
from tests.conftest import CLASSES, base_config, write_config

pytestmark = pytest.mark.slow  # left out of `make test-fast`


def _event(i: int, ts: float) -> dict:
    return {"request_id": f"r{i}", "ts": ts, "model": "digits", "version": "v1",
            "pred": i % 10, "confidence": round(0.5 + (i % 50) / 100, 2)}


def test_baseline_from_a_kafka_time_range_takes_only_that_range(broker, topics, tmp_path):
    names = topics(partitions=2)
    cfg_path = write_config(tmp_path, base_config(
        broker.bootstrap, names, models=[{"name": "digits", "classes": CLASSES}]))
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    t0 = time.time() - 3000
    # 300 events before the range, 1,000 inside it, 200 after it (event time = record time)
    for i in range(1500):
        ts = t0 + i
        producer.send(names["predictions"], orjson.dumps(_event(i, ts)),
                      timestamp_ms=int(ts * 1000))
    producer.flush()
    out = tmp_path / "b.json"
    since, until = t0 + 299.5, t0 + 1299.5  # half a second off every event: no ties
    proc = subprocess.run(
        [sys.executable, "-m", "visionmon", "baseline", "build", "--config", str(cfg_path),
         "--model", "digits", "--from-kafka", "--since", f"{since}", "--until", f"{until}",
         "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    b = baseline_mod.load(out, "digits", CLASSES)
    assert b.events == 1000
    assert b.features["predicted_class"].counts.tolist() == [100.0] * 10
    assert b.sha256 and "confidence" in b.features


def test_baseline_from_jsonl_with_labels_fits_a_calibration_map(tmp_path):
    cfg_path = write_config(tmp_path, {"version": 1,
                                       "models": [{"name": "digits", "classes": CLASSES}]})
    now = time.time()
    preds = tmp_path / "p.jsonl"
    labels = tmp_path / "l.jsonl"
    preds.write_bytes(b"\n".join(orjson.dumps(_event(i, now - 10)) for i in range(600)))
    labels.write_bytes(b"\n".join(orjson.dumps(
        {"request_id": f"r{i}", "label": CLASSES[i % 10] if i % 4 else CLASSES[(i + 1) % 10],
         "ts": now}) for i in range(600)))
    out = tmp_path / "b.json"
    proc = subprocess.run(
        [sys.executable, "-m", "visionmon", "baseline", "build", "--config", str(cfg_path),
         "--model", "digits", "--from-jsonl", str(preds), "--labels-jsonl", str(labels),
         "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    b = baseline_mod.load(out)
    assert b.labeled_events == 600 and b.calibration is not None
    # a tampered file is refused on load
    text = out.read_text().replace('"events": 600', '"events": 601')
    out.write_text(text)
    try:
        baseline_mod.load(out)
    except baseline_mod.BaselineError as err:
        assert "hash" in str(err)
    else:
        raise AssertionError("a tampered baseline loaded")
