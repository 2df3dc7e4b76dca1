"""False accepts and per-class AUC through the engine: exact counts by decision, outcome and
class pair against a brute-force count, ROC-AUC and PR-AUC against scikit-learn (exactly on
the binned scores, within the stated bound on the raw ones, with top-k scores for a
1,000-class model), bounded memory, and config errors that name the key."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from collectors.checkpoint import decode, encode
from monitor.acceptance import AcceptanceMonitor, AcceptanceRule
from monitor.class_auc import ClassAucMonitor
from monitor.config import ConfigError, parse_config, resolve
from monitor.events import (
    DecodeLimits,
    FeedbackDecoder,
    ModelClassIndex,
    PredictionDecoder,
    PredictionEvent,
)
from monitor.labels import JoinedBatch
from monitor.snapshot import SnapshotBuilder
from monitor.stats import score_bin_index
from monitor.windows import WindowSpec
from tests.oracles.ranking import average_precision_binning_bound, roc_auc_binning_bound
from visionmon.app import build_statistics

NOW = 1_800_000_000.0
DEFECTS = ["ok", "scratch", "dent"]
BINS = 50


def _loaded(classes: list[str], accept: dict[str, Any] | None, **extra: Any):
    model: dict[str, Any] = {"name": "m", "classes": classes}
    if accept is not None:
        model["accept"] = accept
    return resolve(parse_config({"version": 1, "models": [model],
                                 "windows": {"sizes": ["5m", "1h"], "slices": 30},
                                 "auc": {"score_bins": BINS}, **extra}))


def _stream(classes: list[str], n: int, seed: int, topk: int | None = None
            ) -> tuple[list[bytes], list[bytes], np.ndarray, np.ndarray]:
    """n predictions with probabilities (or their top k) and a label for each; returns the
    messages, the probabilities and the labels."""
    rng = np.random.default_rng(seed)
    c = len(classes)
    y = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), y] += rng.uniform(0, 4, n)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs = np.round(probs, 6)
    probs[:, 0] += 1 - probs.sum(axis=1)
    probs = np.clip(probs, 0, 1)
    preds, labels = [], []
    for i in range(n):
        ev: dict[str, Any] = {"request_id": f"r{i}", "ts": NOW + i, "model": "m", "version": "v1"}
        if topk is None:
            ev["probs"] = probs[i].tolist()
        else:
            order = np.argsort(-probs[i], kind="stable")[:topk]
            ev["topk"] = [[int(k), float(probs[i, k])] for k in order]
        preds.append(orjson.dumps(ev))
        labels.append(orjson.dumps({"request_id": f"r{i}", "label": int(y[i]), "ts": NOW + i}))
    return preds, labels, probs, y


def _feed(stats: Any, classes: list[str], preds: list[bytes], labels: list[bytes]) -> None:
    index = {"m": ModelClassIndex.of(tuple(classes))}
    limits = DecodeLimits(max_future_skew_seconds=1e12)
    pdec, fdec = PredictionDecoder(index, limits), FeedbackDecoder(index, limits)
    for lo in range(0, len(preds), 97):
        stats.engine.apply_predictions(
            [e for m in preds[lo:lo + 97] for e in pdec.decode(m, NOW).events])
        stats.labels.apply_feedback(
            [e for m in labels[lo:lo + 97] for e in fdec.decode(m, NOW).events])


def test_false_accepts_are_counted_exactly_by_decision_outcome_and_class_pair():
    loaded = _loaded(DEFECTS, {"threshold": 0.8, "negative_classes": ["ok"]})
    preds, labels, probs, y = _stream(DEFECTS, 600, seed=1)
    stats = build_statistics(loaded)
    _feed(stats, DEFECTS, preds, labels)
    snap = stats.engine.snapshot()

    expected: Counter[tuple[str, ...]] = Counter()
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    for c, p, t in zip(conf, pred, y, strict=True):
        decision = "accepted" if c >= 0.8 else "routed"
        outcome = "correct" if p == t else (
            "false_accept" if decision == "accepted" and p == 0 else "incorrect")
        expected[("m", "v1", decision, outcome, DEFECTS[p], DEFECTS[t])] += 1
    got = snap["visionmon_acceptance_decisions_total"]
    assert got == {k: float(n) for k, n in expected.items()}
    false_accepts = sum(n for k, n in expected.items() if k[3] == "false_accept")
    assert false_accepts >= 5
    assert snap["visionmon_false_accept_ratio"][("m", "v1", "1h")] == false_accepts / 600


def test_without_negative_classes_any_accepted_error_is_a_false_accept():
    rule = AcceptanceRule(0.5)
    mon = AcceptanceMonitor({"m": DEFECTS}, {"m": rule}, (WindowSpec("1h", 3600, 6),), 100)
    pred, true = np.array([0, 1, 2, 2]), np.array([1, 1, 0, 0])
    mon.on_joined(JoinedBatch("m", "v1", (), pred, true, np.array([0.9, 0.9, 0.6, 0.4]),
                              np.full(4, NOW)))
    b = SnapshotBuilder()
    mon.capture().render(b)
    snap = b.build()
    assert snap["visionmon_acceptance_decisions_total"] == {
        ("m", "v1", "accepted", "false_accept", "ok", "scratch"): 1.0,
        ("m", "v1", "accepted", "correct", "scratch", "scratch"): 1.0,
        ("m", "v1", "accepted", "false_accept", "dent", "ok"): 1.0,
        ("m", "v1", "routed", "incorrect", "dent", "ok"): 1.0}
    assert snap["visionmon_false_accept_ratio"][("m", "v1", "1h")] == 0.5


def test_class_pairs_beyond_the_cap_count_under_other_true_class():
    classes = [f"c{i}" for i in range(40)]
    mon = AcceptanceMonitor({"m": classes}, {"m": AcceptanceRule(0.5)},
                            (WindowSpec("1h", 3600, 6),), max_pairs=5)
    pred = np.arange(20) % 40
    true = (np.arange(20) + 1) % 40
    mon.on_joined(JoinedBatch("m", "v1", (), pred, true, np.full(20, 0.9), np.full(20, NOW)))
    pairs = mon.by_version[("m", "v1")].pairs
    assert sum(pairs.values()) == 20
    assert len([k for k in pairs if k[3] >= 0]) == 5
    assert all(k[3] == -1 for k in list(pairs)[5:])


def _auc_oracle(scores: np.ndarray, y: np.ndarray, c: int) -> tuple[float, float, float, float]:
    """scikit-learn's ROC-AUC and AP for class c on raw and on binned scores."""
    yc = (y == c).astype(int)
    binned = score_bin_index(scores, BINS)
    return (roc_auc_score(yc, scores), average_precision_score(yc, scores),
            roc_auc_score(yc, binned), average_precision_score(yc, binned))


@pytest.mark.parametrize("topk", [None, 5])
def test_class_auc_is_scikit_learns_on_the_binned_scores_and_within_the_bound_of_the_raw(topk):
    classes = [*DEFECTS, "chip", "crack"]
    loaded = _loaded(classes, None)
    preds, labels, probs, y = _stream(classes, 800, seed=2, topk=topk)
    stats = build_statistics(loaded)
    _feed(stats, classes, preds, labels)
    snap = stats.engine.snapshot()
    roc, pr = snap["visionmon_class_roc_auc"], snap["visionmon_class_pr_auc"]
    window = ("5m", 300)
    recent = slice(800 - window[1], 800)  # one event per second: the 5m window's events
    aucs = []
    for c, name in enumerate(classes):
        raw_roc, raw_ap, bin_roc, bin_ap = _auc_oracle(probs[recent, c], y[recent], c)
        got_roc = roc[("m", "v1", name, window[0])]
        got_ap = pr[("m", "v1", name, window[0])]
        assert got_roc == pytest.approx(bin_roc, abs=1e-12)
        assert got_ap == pytest.approx(bin_ap, abs=1e-12)
        b = score_bin_index(probs[recent, c], BINS)
        yc = y[recent] == c
        pos = np.bincount(b[yc], minlength=BINS)
        neg = np.bincount(b[~yc], minlength=BINS)
        assert abs(got_roc - raw_roc) <= roc_auc_binning_bound(pos, neg) + 1e-12
        assert abs(got_ap - raw_ap) <= average_precision_binning_bound(pos, neg) + 1e-12
        aucs.append(got_roc)
    assert snap["visionmon_roc_auc_macro"][("m", "v1", "5m")] == pytest.approx(np.mean(aucs))


def test_a_thousand_class_model_with_top5_scores_outside_classes_at_zero():
    classes = [f"k{i}" for i in range(1000)]
    preds, labels, probs, y = _stream(classes[:1000], 400, seed=3, topk=5)
    stats = build_statistics(_loaded(classes, None))
    _feed(stats, classes, preds, labels)
    snap = stats.engine.snapshot()
    top5 = np.argsort(-probs, axis=1, kind="stable")[:, :5]
    scores = np.zeros_like(probs)
    rows = np.arange(probs.shape[0])[:, None]
    scores[rows, top5] = probs[rows, top5]  # outside its top 5, a class scores 0
    recent = slice(100, 400)
    checked = 0
    for c in np.unique(y[recent])[:40]:
        _, _, bin_roc, bin_ap = _auc_oracle(scores[recent, c], y[recent], int(c))
        key = ("m", "v1", classes[c], "5m")
        assert snap["visionmon_class_roc_auc"][key] == pytest.approx(bin_roc, abs=1e-12)
        assert snap["visionmon_class_pr_auc"][key] == pytest.approx(bin_ap, abs=1e-12)
        checked += 1
    assert checked == 40
    auc = next(x for x in stats.engine.extensions if isinstance(x, ClassAucMonitor))
    # memory: only the classes that occurred (labels or a top-5 score >= 1/50), per slice
    seen = len(set(y.tolist()) | {int(k) for k in top5.ravel()})
    dense = 2 * 6 * 1000 * 2 * BINS * 8  # two windows of 6 slices, 1,000 classes
    assert auc.state_bytes() < dense * seen / 1000 + 2 * 6 * (1000 * 4 + 16 * 2 * BINS * 8)


def test_new_state_survives_a_checkpoint_round_trip():
    loaded = _loaded(DEFECTS, {"threshold": 0.8, "negative_classes": ["ok"]})
    preds, labels, _, _ = _stream(DEFECTS, 400, seed=4)
    straight = build_statistics(loaded)
    _feed(straight, DEFECTS, preds, labels)
    first = build_statistics(loaded)
    _feed(first, DEFECTS, preds[:250], labels[:250])
    restored = build_statistics(loaded)
    restored.engine.restore(decode(encode(first.engine.state())))
    _feed(restored, DEFECTS, preds[250:], labels[250:])
    a, b = straight.engine.snapshot(), restored.engine.snapshot()
    for name in ("visionmon_acceptance_decisions_total", "visionmon_false_accept_ratio",
                 "visionmon_class_roc_auc", "visionmon_pr_auc_macro"):
        assert a[name] == b[name], name


@pytest.mark.parametrize(("accept", "message"), [
    ({"threshold": 0.8, "negative_classes": ["okay"]},
     "models.0: Value error, accept.negative_classes ['okay'] are not in the class list; valid "
     "classes: ok, scratch, dent"),
    ({"threshold": 0}, "models.0.accept.threshold: Input should be greater than 0"),
    ({"threshold": 1.2}, "models.0.accept.threshold: Input should be less than or equal to 1"),
    ({"negative_classes": ["ok"]}, "models.0.accept.threshold: required key is missing"),
])
def test_a_bad_acceptance_rule_names_the_key_and_what_is_valid(accept, message):
    with pytest.raises(ConfigError) as err:
        _loaded(DEFECTS, accept)
    assert message in str(err.value)


def test_a_negative_class_missing_from_a_classes_file_names_the_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("ok\nscratch\n")
    with pytest.raises(ConfigError, match=r"models\.0\.accept\.negative_classes \['dent'\] are "
                                          r"not in .*classes\.txt; valid classes: ok, scratch"):
        resolve(parse_config({"version": 1, "models": [
            {"name": "m", "classes_file": str(path),
             "accept": {"threshold": 0.5, "negative_classes": ["dent"]}}]}))


def test_predictions_without_scores_cost_no_auc_state():
    mon = ClassAucMonitor({"m": DEFECTS}, (WindowSpec("1h", 3600, 60),), BINS, 6)
    e = PredictionEvent("r", NOW, "m", "v1", True, 1, 0.9, math.nan, math.nan, 0.01)
    mon.on_joined(JoinedBatch("m", "v1", (e,), np.array([1]), np.array([1]), np.array([0.9]),
                              np.array([NOW])))
    assert mon.state_bytes() == 0


def test_labelled_predictions_of_the_fast_decoder_count_as_accepted_or_routed_without_auc():
    """A plain event (class and confidence, no probs or topk) takes the decoder's fast path:
    it is a whole PredictionEvent, counted by the acceptance rule and left out of the AUC."""
    loaded = _loaded(DEFECTS, {"threshold": 0.8, "negative_classes": ["ok"]})
    stats = build_statistics(loaded)
    preds = [orjson.dumps({"request_id": f"r{i}", "ts": NOW + i, "model": "m", "version": "v1",
                           "pred": 0, "confidence": 0.9}) for i in range(4)]
    labels = [orjson.dumps({"request_id": f"r{i}", "label": i % 2, "ts": NOW + i})
              for i in range(4)]
    index = {"m": ModelClassIndex.of(tuple(DEFECTS))}
    event = PredictionDecoder(index, DecodeLimits(max_future_skew_seconds=1e12)).decode(
        preds[0], NOW).events[0]
    assert len(event) == len(PredictionEvent._fields) and event.top5_probs == ()
    _feed(stats, DEFECTS, preds, labels)
    snap = stats.engine.snapshot()
    assert snap["visionmon_acceptance_decisions_total"] == {
        ("m", "v1", "accepted", "correct", "ok", "ok"): 2.0,
        ("m", "v1", "accepted", "false_accept", "ok", "scratch"): 2.0}
    assert "visionmon_class_roc_auc" not in snap
