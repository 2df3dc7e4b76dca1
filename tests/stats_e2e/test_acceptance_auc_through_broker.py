"""False accepts and per-class AUC through the real broker into a running daemon: a defect
detector (`ok`, `scratch`, `dent`) with `accept: {threshold: 0.8, negative_classes: [ok]}`
gets batched predictions with probabilities and their labels; the counters by decision,
outcome and class pair are exactly a brute-force count, the false-accept ratio is theirs,
and each class's ROC-AUC and PR-AUC are scikit-learn's on the binned scores and within the
stated bound of its figures on the raw scores."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer
from sklearn.metrics import average_precision_score, roc_auc_score

from monitor.stats import score_bin_index
from tests.conftest import base_config, metric_sum, parse_metrics, scrape, wait_for
from tests.oracles.ranking import average_precision_binning_bound, roc_auc_binning_bound

pytestmark = pytest.mark.slow  # left out of `make test-fast`

CLASSES = ["ok", "scratch", "dent"]
N, BINS, BATCH = 400, 20, 50


def _stream(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (rounded as sent) and labels: a detector that often calls defects `ok`."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, N, p=[0.6, 0.25, 0.15])
    logits = rng.normal(0, 1, (N, 3))
    logits[np.arange(N), y] += rng.uniform(0, 3.5, N)
    logits[:, 0] += 1.6  # leaning towards `ok`: defects let through
    probs = np.round(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), 6)
    probs[:, 0] = np.round(1 - probs[:, 1] - probs[:, 2], 6)
    return probs, y


def test_false_accepts_and_class_auc_are_exact_through_the_broker(broker, topics, start_daemon):
    names = topics(partitions=1)
    cfg = base_config(
        broker.bootstrap, names,
        models=[{"name": "defects", "classes": CLASSES,
                 "accept": {"threshold": 0.8, "negative_classes": ["ok"]}}],
        windows={"sizes": ["1h"], "slices": 6}, auc={"score_bins": BINS})
    daemon = start_daemon(cfg)
    probs, y = _stream(seed=7)
    now = time.time() - 600
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    for lo in range(0, N, BATCH):  # JSON arrays of predictions, then of their labels
        producer.send(names["predictions"], orjson.dumps([
            {"request_id": f"r{i}", "ts": now + i, "model": "defects", "version": "v1",
             "probs": probs[i].tolist(), "latency_ms": 4.0} for i in range(lo, lo + BATCH)]))
    producer.flush()
    for lo in range(0, N, BATCH):
        producer.send(names["feedback"], orjson.dumps([
            {"request_id": f"r{i}", "label": CLASSES[y[i]], "ts": now + i + 30}
            for i in range(lo, lo + BATCH)]))
    producer.flush()
    wait_for(lambda: metric_sum(parse_metrics(scrape(daemon.url)), "visionmon_labels_total")
             >= N, 60, what="every label joined")
    m = parse_metrics(scrape(daemon.url))

    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    expected: Counter[tuple[str, str, str, str]] = Counter()
    for c, p, t in zip(conf, pred, y, strict=True):
        decision = "accepted" if c >= 0.8 else "routed"
        outcome = "correct" if p == t else (
            "false_accept" if decision == "accepted" and p == 0 else "incorrect")
        expected[(decision, outcome, CLASSES[p], CLASSES[t])] += 1
    got = {(ls["decision"], ls["outcome"], ls["class"], ls["true_class"]): v
           for (name, labels), v in m.items() if name == "visionmon_acceptance_decisions_total"
           for ls in [dict(labels)]}
    assert got == {k: float(n) for k, n in expected.items()}
    false_accepts = sum(n for k, n in expected.items() if k[1] == "false_accept")
    assert false_accepts >= 10, "the stream lets defects through as ok"
    assert metric_sum(m, "visionmon_false_accept_ratio", window="1h") == false_accepts / N

    for c, name in enumerate(CLASSES):
        yc = (y == c).astype(int)
        binned = score_bin_index(probs[:, c], BINS)
        roc = metric_sum(m, "visionmon_class_roc_auc", **{"class": name, "window": "1h"})
        ap = metric_sum(m, "visionmon_class_pr_auc", **{"class": name, "window": "1h"})
        assert roc == pytest.approx(roc_auc_score(yc, binned), abs=1e-12)
        assert ap == pytest.approx(average_precision_score(yc, binned), abs=1e-12)
        pos = np.bincount(binned[yc == 1], minlength=BINS)
        neg = np.bincount(binned[yc == 0], minlength=BINS)
        assert abs(roc - roc_auc_score(yc, probs[:, c])) <= roc_auc_binning_bound(pos, neg)
        assert abs(ap - average_precision_score(yc, probs[:, c])) \
            <= average_precision_binning_bound(pos, neg)
    assert 0.5 < metric_sum(m, "visionmon_roc_auc_macro", window="1h") <= 1.0
