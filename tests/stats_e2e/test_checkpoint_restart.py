"""A daemon restarted from its checkpoint exports what an uninterrupted one does."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer

from tests.conftest import CLASSES, base_config, metric_sum, parse_metrics, scrape, wait_for

pytestmark = pytest.mark.slow  # left out of `make test-fast`

# runtime figures differ between processes by nature; closed evaluation slices depend on
# the order partitions are read in (tested exactly, in process, in tests/unit)
RUNTIME = ("visionmon_eval_windows", "visionmon_commits", "visionmon_checkpoint",
           "visionmon_last_checkpoint",
           "visionmon_consumer_lag", "visionmon_up", "visionmon_kafka_connected",
           "visionmon_assigned", "visionmon_build", "visionmon_config", "visionmon_dead_letter",
           "visionmon_poll_batch", "visionmon_duplicates_skipped", "visionmon_snapshot")


def _events(rng: np.random.Generator, n: int, start: int, t0: float) -> tuple[list, list]:
    preds, labels = [], []
    for i in range(start, start + n):
        k = int(rng.integers(10))
        conf = float(np.round(rng.uniform(0.2, 1.0), 4))
        preds.append({"request_id": f"r{i}", "ts": t0 + i * 0.05, "model": "digits",
                      "version": "v1", "pred": k, "confidence": conf, "latency_ms": 5.0})
        if i % 3 == 0:
            labels.append({"request_id": f"r{i}", "label": int(rng.integers(10)) if i % 4 else k,
                           "ts": t0 + i * 0.05 + 30})
    return preds, labels


def _send(bootstrap: str, topic_p: str, topic_f: str, preds: list, labels: list) -> None:
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for j in range(0, len(preds), 20):
        p.send(topic_p, b"\n".join(orjson.dumps(e) for e in preds[j:j + 20]))
    for f in labels:
        p.send(topic_f, orjson.dumps(f))
    p.flush()
    p.close()


def _stats(url: str) -> dict:
    m = parse_metrics(scrape(url))
    return {k: v for k, v in m.items() if not k[0].startswith(RUNTIME)}


def test_restart_from_checkpoint_exports_the_same_values(broker, topics, start_daemon, tmp_path):
    rng = np.random.default_rng(5)
    t0 = time.time() - 1200
    first_p, first_l = _events(rng, 3000, 0, t0)
    second_p, second_l = _events(rng, 3000, 3000, t0)
    names = topics(partitions=3)
    # a baseline file (first_events would depend on the order partitions are read in)
    from monitor import baseline as baseline_mod
    from monitor.events import DecodeLimits, ModelClassIndex, PredictionDecoder

    dec = PredictionDecoder({"digits": ModelClassIndex.of(CLASSES)}, DecodeLimits())
    base_events = [dec.decode(orjson.dumps(e), time.time()).events[0] for e in first_p[:1000]]
    base_path = tmp_path / "digits.json"
    baseline_mod.save(baseline_mod.build_baseline("digits", CLASSES, base_events), base_path)
    common = {"baseline": {"mode": "file", "path": str(base_path)},
              "windows": {"sizes": ["5m", "1h"], "slices": 30},
              "quality": {"eval_slice": "1m", "min_labels": 5},
              "models": [{"name": "digits", "classes": CLASSES}]}
    cfg = base_config(broker.bootstrap, names,
                      state={"checkpoint_dir": str(tmp_path / "ck"),
                             "checkpoint_interval_seconds": 0.5}, **common)
    _send(broker.bootstrap, names["predictions"], names["feedback"], first_p, first_l)
    a = start_daemon(cfg)
    wait_for(lambda: metric_sum(parse_metrics(scrape(a.url)), "visionmon_requests_total") >= 3000
             and metric_sum(parse_metrics(scrape(a.url)), "visionmon_labels_total") >= 1000, 60)
    a.stop()
    _send(broker.bootstrap, names["predictions"], names["feedback"], second_p, second_l)
    b = start_daemon(cfg)
    ref_cfg = base_config(broker.bootstrap, names, **common)
    ref_cfg["kafka"]["group_id"] = "reference-" + names["predictions"]
    ref = start_daemon(ref_cfg)
    for d in (b, ref):
        wait_for(lambda d=d: metric_sum(parse_metrics(scrape(d.url)),
                                        "visionmon_requests_total") >= 6000
                 and metric_sum(parse_metrics(scrape(d.url)), "visionmon_labels_total") >= 2000,
                 60)
    time.sleep(1.0)
    restarted, uninterrupted = _stats(b.url), _stats(ref.url)
    assert set(restarted) == set(uninterrupted)
    assert any(k[0] == "visionmon_drift_psi" for k in restarted)
    assert any(k[0] == "visionmon_calibration_ece" for k in restarted)
    for key, value in uninterrupted.items():
        assert restarted[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
