"""The named bin layouts of the label and shadow windows: every part has its own bins, and
the shadow monitor's join entries survive a checkpoint as the named entries they were."""

from __future__ import annotations

import numpy as np
import pytest

from collectors.checkpoint import decode, encode
from monitor import labels, shadow
from monitor.baseline import build_baseline
from monitor.catalog import CALIBRATION_BINS as B
from monitor.drift import DriftMonitor
from monitor.engine import EventGroup
from monitor.events import PredictionEvent
from monitor.scored import INPUT_FEATURES, ScoredImage
from monitor.snapshot import SnapshotBuilder
from monitor.windows import WindowSpec

CLASSES = ("a", "b", "c")


def _spans(parts: list[tuple[int, int]]) -> list[int]:
    """Bin indices covered by (start, width) parts, in order of their starts."""
    return [i for start, width in sorted(parts) for i in range(start, start + width)]


@pytest.mark.parametrize("c", [1, 3, 1000])
def test_the_shadow_layout_gives_every_part_its_own_bins(c: int) -> None:
    lay = shadow._Layout(c)
    parts = [(lay.n, 1), (lay.agree, 1), (lay.class_n, c), (lay.class_agree, c),
             (lay.class_usual, c), (lay.cal_events, B), (lay.cal_conf, B), (lay.cal_correct, B)]
    assert _spans(parts) == list(range(lay.size))
    v = np.arange(lay.size)
    assert lay.classes(v, lay.class_usual).tolist() == list(range(2 + 2 * c, 2 + 3 * c))
    assert lay.calibration(v, lay.cal_correct).tolist() == list(range(lay.size - B, lay.size))


@pytest.mark.parametrize("c", [1, 3, 1000])
def test_the_label_layout_gives_every_part_its_own_bins(c: int) -> None:
    lay = labels._Layout(c)
    parts = [(lay.n, 1), (lay.correct, 1), (lay.true_total, c), (lay.true_correct, c),
             (lay.pred_total, c), (lay.pred_correct, c), (lay.cal_events, B), (lay.cal_conf, B),
             (lay.cal_correct, B), (lay.brier_sum, 1), (lay.brier_n, 1)]
    assert _spans(parts) == list(range(lay.size))


def test_the_prediction_window_layout_keeps_the_estimate_then_atc_last() -> None:
    """Older checkpoints lack the estimate's two bins and ATC's two (or only ATC's), so they
    must come last, in the order they were added."""
    p = labels._PRED
    parts = [(p.n, 1), (p.cal_events, B), (p.cal_conf, B), (p.est_sum, 1), (p.est_n, 1),
             (p.atc_hits, 1), (p.atc_n, 1)]
    assert _spans(parts) == list(range(p.size))
    assert p.size_without_estimate == p.size - 4 == p.est_sum
    assert p.size_without_atc == p.size - 2 == p.atc_hits


def test_an_old_shadow_ring_gets_usual_bins_equal_to_its_joined_bins() -> None:
    lay = shadow._Layout(3)
    old = np.arange(2 * lay.size_without_usual, dtype=np.float64).reshape(2, -1)
    new = shadow._with_usual({"counts": old, "ids": np.zeros(2)}, lay)["counts"]
    assert new.shape == (2, lay.size)
    assert new[:, lay.class_usual:lay.class_usual + 3].tolist() == \
        old[:, lay.class_n:lay.class_n + 3].tolist()
    assert np.delete(new, np.s_[lay.class_usual:lay.class_usual + 3], axis=1).tolist() == \
        old.tolist()


def _traffic(n: int, t0: float) -> tuple[list[PredictionEvent], list[ScoredImage]]:
    rng = np.random.default_rng(int(t0))
    pred = rng.integers(0, 3, n)
    ref = np.where(rng.random(n) < 0.8, pred, (pred + 1) % 3)
    feats = tuple(0.5 for _ in INPUT_FEATURES)
    events = [PredictionEvent(f"r{t0}-{i}", t0 + i, "m", "v1", True, int(pred[i]), 0.8, 0.5,
                              0.5, 0.01) for i in range(n)]
    images = [ScoredImage(f"r{t0}-{i}", "m", "v1", t0 + i, int(ref[i]), 0.9,
                          rng.normal(size=4).astype(np.float32), feats) for i in range(n)]
    return events, images


def _snapshot(mon: shadow.ShadowMonitor) -> dict[str, object]:
    b = SnapshotBuilder()
    mon.snapshot(b)
    return dict(b.build())


def test_pending_joins_in_both_orders_survive_a_checkpoint() -> None:
    """Predictions waiting for their image and images waiting for their prediction are
    checkpointed as plain lists and restored as the named entries the joins read."""
    events, images = _traffic(300, 1000.0)
    base = build_baseline("m", CLASSES, events, images=images)
    spec = (WindowSpec("1h", 3600, 6),)
    later_events, later_images = _traffic(40, 2000.0)

    def fresh() -> shadow.ShadowMonitor:
        drift = DriftMonitor({"m": CLASSES}, spec, baselines={"m": base})
        return shadow.ShadowMonitor({"m": CLASSES}, spec, drift)

    first = fresh()
    first.on_predictions({("m", "v1"): EventGroup(later_events[:20])})   # wait for images
    first.apply_scored(later_images[20:])                               # wait for predictions
    restored = fresh()
    restored.restore(decode(encode(first.state())))
    assert len(restored.predictions) == 20 and len(restored.early) == 20
    for mon in (first, restored):
        mon.apply_scored(later_images[:20])
        mon.on_predictions({("m", "v1"): EventGroup(later_events[20:])})
    assert len(restored.predictions) == len(restored.early) == 0
    a, b = _snapshot(first), _snapshot(restored)
    assert a == b
    assert a["visionmon_shadow_scored_total"][("m", "v1", "agree")] + \
        a["visionmon_shadow_scored_total"][("m", "v1", "disagree")] == 40  # type: ignore[index]
