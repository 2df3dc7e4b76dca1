"""Statistics through the real broker equal independent oracles on the same events."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer
from scipy.stats import entropy
from sklearn.metrics import recall_score

from tests.conftest import (
    CLASSES,
    base_config,
    metric_sum,
    parse_metrics,
    scrape,
    wait_for,
    write_config,
)
from tests.stats_e2e.oracle import build_baseline, psi_loop, smooth


def _stream(rng: np.random.Generator, n: int, prior: np.ndarray, t0: float, spread: float,
            prefix: str) -> list[dict]:
    cls = rng.choice(10, size=n, p=prior)
    out = []
    for i in range(n):
        p = rng.dirichlet(np.ones(10)) * 0.6
        p[cls[i]] += 0.4 + rng.uniform(0, 0.5)
        p = np.round(p / p.sum(), 6)
        p[int(np.argmax(p))] += 1.0 - p.sum()
        out.append({"request_id": f"{prefix}{i}", "ts": t0 + rng.uniform(0, spread),
                    "model": "digits", "version": "v1", "probs": [float(x) for x in p],
                    "latency_ms": 10.0})
    return out


def _ece_loop(conf: list[float], correct: list[bool]) -> float:
    total = 0.0
    n = len(conf)
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        idx = [i for i, c in enumerate(conf) if (lo <= c < hi) or (b == 14 and c == 1.0)]
        if idx:
            acc = sum(correct[i] for i in idx) / len(idx)
            avg = sum(conf[i] for i in idx) / len(idx)
            total += len(idx) / n * abs(acc - avg)
    return total


def test_prior_shift_and_labels_match_the_oracles(broker, topics, start_daemon, tmp_path):
    rng = np.random.default_rng(11)
    now = time.time()
    uniform = np.full(10, 0.1)
    base_events = _stream(rng, 5000, uniform, now - 7200, 600, "b")
    base_file = tmp_path / "base.jsonl"
    base_file.write_bytes(b"\n".join(orjson.dumps(e) for e in base_events))
    names = topics(partitions=3)
    cfg = base_config(broker.bootstrap, names, windows={"sizes": ["1h"], "slices": 60},
                      baseline={"mode": "file", "path": str(tmp_path / "digits.baseline.json")},
                      models=[{"name": "digits", "classes": CLASSES}])
    baseline = build_baseline(write_config(tmp_path, cfg), base_file,
                              tmp_path / "digits.baseline.json")

    shifted = np.array([0.3] + [0.7 / 9] * 9)
    current = _stream(rng, 3000, shifted, now - 900, 600, "c")
    truth = {}
    feedback = []
    for e in current[:1500]:
        pred = int(np.argmax(e["probs"]))
        label = pred if rng.random() < 0.8 else int(rng.integers(10))
        truth[e["request_id"]] = label
        feedback.append({"request_id": e["request_id"], "label": CLASSES[label], "ts": now})
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    # half of the labels arrive before their prediction
    for f in feedback[:750]:
        producer.send(names["feedback"], orjson.dumps(f))
    producer.flush()
    for j in range(0, 3000, 50):
        producer.send(names["predictions"], b"\n".join(orjson.dumps(e) for e in current[j:j + 50]))
    producer.flush()
    for f in feedback[750:]:
        producer.send(names["feedback"], orjson.dumps(f))
    producer.flush()
    daemon = start_daemon(cfg)

    def labels_joined() -> float:
        return metric_sum(parse_metrics(scrape(daemon.url)), "visionmon_labels_total")

    wait_for(lambda: labels_joined() >= 1500, 90, what="1,500 labels joined")
    m = parse_metrics(scrape(daemon.url))

    def gauge(name: str, **labels: str) -> float:
        vals = [v for (n, ls), v in m.items() if n == name and set(labels.items()) <= set(ls)]
        assert len(vals) == 1, (name, labels, vals)
        return vals[0]

    preds = np.array([int(np.argmax(e["probs"])) for e in current])
    conf = np.array([max(e["probs"]) for e in current])
    # predicted-class drift
    cur_counts = np.bincount(preds, minlength=10).astype(float)
    base_counts = baseline.features["predicted_class"].counts
    key = {"model": "digits", "version": "v1", "window": "1h"}
    assert gauge("visionmon_drift_psi", feature="predicted_class", **key) == pytest.approx(
        psi_loop(cur_counts, base_counts), rel=1e-6)
    assert gauge("visionmon_drift_kl", feature="predicted_class", **key) == pytest.approx(
        entropy(smooth(cur_counts), smooth(base_counts)), rel=1e-6)
    # confidence drift on the baseline's quantile bins
    edges = baseline.features["confidence"].edges
    conf_counts = np.array([sum(1 for c in conf if (i == 0 or c > edges[i - 1]) and
                                (i == len(edges) or c <= edges[i])) for i in range(len(edges) + 1)],
                           dtype=float)
    assert gauge("visionmon_drift_psi", feature="confidence", **key) == pytest.approx(
        psi_loop(conf_counts, baseline.features["confidence"].counts), rel=1e-6)
    assert gauge("visionmon_drift_psi", feature="predicted_class", **key) > gauge(
        "visionmon_drift_threshold", feature="predicted_class", **key)
    # label-based figures
    labeled = [e for e in current if e["request_id"] in truth]
    y_true = [truth[e["request_id"]] for e in labeled]
    y_pred = [int(np.argmax(e["probs"])) for e in labeled]
    lconf = [max(e["probs"]) for e in labeled]
    correct = [a == b for a, b in zip(y_true, y_pred, strict=True)]
    assert gauge("visionmon_accuracy_ratio", **key) == pytest.approx(np.mean(correct), rel=1e-6)
    assert gauge("visionmon_calibration_ece", source="labels", **key) == pytest.approx(
        _ece_loop(lconf, correct), rel=1e-6)
    recall = recall_score(y_true, y_pred, labels=list(range(10)), average=None, zero_division=0)
    for i, name in enumerate(CLASSES):
        if i in y_true:
            assert gauge("visionmon_class_recall_ratio", **{"class": name}, **key) == \
                pytest.approx(recall[i], rel=1e-6)
    assert gauge("visionmon_label_coverage_ratio", **key) == pytest.approx(0.5, rel=1e-6)
    assert metric_sum(m, "visionmon_labeled_predictions_total", outcome="correct") == sum(correct)
    assert 0.0 <= gauge("visionmon_estimated_accuracy_ratio", **key) <= 1.0
