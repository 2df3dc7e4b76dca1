"""Late events: an event at least the longest window older than its model's newest event
time is counted in `visionmon_late_events_total{topic}` and still in every cumulative
counter, as the statistics wired by `visionmon.app.build_statistics` do it."""

from __future__ import annotations

import numpy as np
import pytest

from collectors.checkpoint import decode, encode
from monitor.config import LoadedConfig, parse_config, resolve
from monitor.events import FeedbackEvent, PredictionEvent
from monitor.scored import INPUT_FEATURES, ScoredImage
from visionmon.app import Statistics, build_statistics

CLASSES = ["cat", "dog", "bird", "fish"]
NOW = 1_800_000_000.0
LONGEST = 3600.0    # the longest of the windows below
TOPICS = {"predictions": "preds", "feedback": "labels", "images": "pixels"}


def _loaded() -> LoadedConfig:
    return resolve(parse_config({
        "version": 1, "models": [{"name": "m", "classes": CLASSES}],
        "kafka": {"topics": TOPICS},
        "windows": {"sizes": ["5m", "1h"], "slices": 6},
        "reference": {"model": "m", "path": "r.pt", "sha256": "0" * 64}}))


def _prediction(rid: str, ts: float, pred: int = 0) -> PredictionEvent:
    return PredictionEvent(rid, ts, "m", "v1", True, pred, 0.9, 0.5, 0.1, 0.01)


def _image(rid: str, ts: float) -> ScoredImage:
    return ScoredImage(rid, "m", "v1", ts, 0, 0.9, np.zeros(8, np.float32),
                       tuple(0.5 for _ in INPUT_FEATURES))


def _late(stats: Statistics) -> dict[str, int]:
    return {topic: n for topic, n in stats.engine.late.items() if n}


#: (title, seconds the second prediction is behind the first, late counts expected)
PREDICTIONS = [
    ("a prediction within the longest window of the newest one is not late",
     LONGEST - 1, {}),
    ("a prediction exactly the longest window behind the newest one is late",
     LONGEST, {TOPICS["predictions"]: 1}),
    ("a prediction a day behind the newest one is late", 86400.0, {TOPICS["predictions"]: 1}),
    ("a prediction newer than the newest one is not late", -60.0, {}),
]


@pytest.mark.parametrize(("title", "behind", "expected"), PREDICTIONS,
                         ids=[c[0] for c in PREDICTIONS])
def test_predictions_are_late_by_the_model_watermark(title: str, behind: float,
                                                     expected: dict[str, int]) -> None:
    stats = build_statistics(_loaded())
    stats.engine.apply_predictions([_prediction("a", NOW)], TOPICS["predictions"])
    stats.engine.apply_predictions([_prediction("b", NOW - behind)], TOPICS["predictions"])
    assert _late(stats) == expected


def test_a_late_prediction_is_still_counted_in_the_cumulative_counters() -> None:
    stats = build_statistics(_loaded())
    stats.engine.apply_predictions([_prediction("a", NOW), _prediction("b", NOW - 2 * LONGEST)],
                                   TOPICS["predictions"])
    snap = stats.engine.snapshot()
    assert _late(stats) == {TOPICS["predictions"]: 1}
    assert snap["visionmon_requests_total"][("m", "v1", "ok")] == 2
    assert snap["visionmon_late_events_total"] == {(TOPICS["predictions"],): 1.0}


def test_the_watermark_survives_a_checkpoint() -> None:
    first = build_statistics(_loaded())
    first.engine.apply_predictions([_prediction("a", NOW)], TOPICS["predictions"])
    restored = build_statistics(_loaded())
    restored.engine.restore(decode(encode({"e": first.engine.state()}))["e"])
    restored.engine.apply_predictions([_prediction("b", NOW - LONGEST)], TOPICS["predictions"])
    assert _late(restored) == {TOPICS["predictions"]: 1}


#: (title, label time behind the newest prediction, late counts expected)
LABELS = [
    ("a label joined within the longest window is not late", 10.0, {}),
    ("a label whose join is the longest window behind is late under the feedback topic",
     LONGEST + 10, {TOPICS["feedback"]: 1}),
]


@pytest.mark.parametrize(("title", "behind", "expected"), LABELS, ids=[c[0] for c in LABELS])
def test_labels_are_late_by_their_join_time(title: str, behind: float,
                                            expected: dict[str, int]) -> None:
    stats = build_statistics(_loaded())
    old = NOW - behind - 5   # on time when it arrives: it is the newest prediction then
    stats.engine.apply_predictions([_prediction("old", old)], TOPICS["predictions"])
    stats.engine.apply_predictions([_prediction("new", NOW)], TOPICS["predictions"])
    stats.labels.apply_feedback([FeedbackEvent("old", 0, old + 5)])   # joined at old + 5
    assert _late(stats) == expected
    assert stats.engine.snapshot()["visionmon_labels_total"]  # joined and counted either way


#: (title, image time behind the newest prediction, late counts expected)
IMAGES = [
    ("an image scored within the longest window is not late", 10.0, {}),
    ("an image scored the longest window behind is late under the images topic",
     LONGEST, {TOPICS["images"]: 1}),
]


@pytest.mark.parametrize(("title", "behind", "expected"), IMAGES, ids=[c[0] for c in IMAGES])
def test_images_are_late_when_scored(title: str, behind: float,
                                     expected: dict[str, int]) -> None:
    stats = build_statistics(_loaded())
    assert stats.shadow is not None
    stats.engine.apply_predictions([_prediction("new", NOW)], TOPICS["predictions"])
    stats.shadow.apply_scored([_image("img", NOW - behind)])
    assert _late(stats) == expected
