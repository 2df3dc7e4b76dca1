"""A baseline's lifecycle on /metrics (source, collecting or sealed, what it rests on, INFO
log lines at each step) and the honest label-free estimate: a baseline collected from first
events calibrates on the labels that arrive after it, and says until then that the estimate
is the mean confidence."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pytest

from monitor.baseline import build_baseline, from_dict, profiled_images, to_dict
from monitor.config import parse_config, resolve
from monitor.events import FeedbackEvent, PredictionEvent
from monitor.scored import INPUT_FEATURES, ScoredImage
from monitor.snapshot import Series
from visionmon.app import Statistics, build_statistics

CLASSES = ("a", "b", "c", "d")
MIN_LABELS = 200
FIRST = 300


def statistics(baseline: dict[str, Any], reference: bool = False) -> Statistics:
    cfg: dict[str, Any] = {"version": 1, "models": [{"name": "m", "classes": list(CLASSES)}],
                           "windows": {"sizes": ["5m", "1h"], "slices": 30},
                           "baseline": baseline}
    if reference:
        cfg["reference"] = {"model": "m", "path": "ref.pt2", "sha256": "0" * 64}
    return build_statistics(resolve(parse_config(cfg, "<test>")))


def first_events(images: int = 0) -> Statistics:
    return statistics({"mode": "first_events", "events": FIRST, "images": images,
                       "min_labels": MIN_LABELS}, reference=images > 0)


class Traffic:
    """An over-confident model: confidence c, right with probability c**3 (mean confidence
    about 0.92 while accuracy is about 0.79), so the raw mean confidence is far off."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.n = 0

    def predictions(self, n: int, t0: float) -> tuple[list[PredictionEvent], list[FeedbackEvent]]:
        conf = np.clip(self.rng.beta(12, 1, n), 0.3, 1.0)
        right = self.rng.random(n) < conf ** 3
        pred = self.rng.integers(0, len(CLASSES), n)
        truth = np.where(right, pred, (pred + 1) % len(CLASSES))
        evs, labels = [], []
        for i in range(n):
            rid = f"r{self.n + i}"
            ts = t0 + i * 0.05
            evs.append(PredictionEvent(rid, ts, "m", "v1", True, int(pred[i]), float(conf[i]),
                                       math.nan, math.nan, 0.01))
            labels.append(FeedbackEvent(rid, int(truth[i]), ts + 1.0))
        self.n += n
        return evs, labels


def snap(stats: Statistics) -> dict[str, Series]:
    return stats.engine.snapshot()


def info(s: dict[str, Series]) -> list[tuple[str, ...]]:
    return list(s.get("visionmon_baseline_info", {}))


def events_of(s: dict[str, Series], kind: str) -> float | None:
    return s.get("visionmon_baseline_events", {}).get(("m", kind))  # type: ignore[return-value]


def estimate(s: dict[str, Series], window: str = "5m") -> dict[str, float]:
    """{method: value} of the model's estimate over `window`."""
    return {k[3]: float(v) for k, v in s.get("visionmon_estimated_accuracy_ratio", {}).items()  # type: ignore[arg-type]
            if k[:3] == ("m", "v1", window)}


# --- lifecycle -------------------------------------------------------------------------


def test_a_first_events_baseline_shows_collecting_then_sealed_with_its_counts(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="monitor")
    stats = first_events()
    traffic = Traffic(1)
    assert info(snap(stats)) == [("m", "", "first_events", "collecting", "")]
    assert events_of(snap(stats), "predictions") == 0
    evs, _ = traffic.predictions(120, 1000.0)
    stats.engine.apply_predictions(evs)
    s = snap(stats)
    assert info(s) == [("m", "", "first_events", "collecting", "")]
    assert events_of(s, "predictions") == 120
    assert "collecting its first 300 predictions" in caplog.text
    evs, _ = traffic.predictions(400, 1010.0)
    stats.engine.apply_predictions(evs)
    s = snap(stats)
    sha = stats.drift.baselines["m"].sha256
    assert info(s) == [("m", "1", "first_events", "sealed", sha[:16])]
    assert events_of(s, "predictions") == FIRST
    assert events_of(s, "labelled") == 0
    assert events_of(s, "images") is None  # no reference model: no image profile to await
    assert f"sealed from its first 300 predictions (sha256 {sha[:16]})" in caplog.text


def test_a_file_baseline_is_sealed_from_the_start_with_source_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from monitor.baseline import save

    evs, labels = Traffic(2).predictions(500, 1000.0)
    b = build_baseline("m", CLASSES, evs, {f.request_id: int(f.label) for f in labels})
    save(b, tmp_path / "b.json")
    cfg = {"version": 1, "models": [{"name": "m", "classes": list(CLASSES)}],
           "baseline": {"mode": "file", "path": str(tmp_path / "b.json")}}
    stats = build_statistics(resolve(parse_config(cfg, str(tmp_path / "cfg.yaml"))))
    s = snap(stats)
    assert info(s) == [("m", "1", "file", "sealed", b.sha256[:16])]
    assert events_of(s, "predictions") == 500
    assert events_of(s, "labelled") == 500
    # a file baseline with its calibration: the estimate says so
    stats.engine.apply_predictions(Traffic(3).predictions(100, 2000.0)[0])
    assert set(estimate(snap(stats))) == {"calibrated", "atc"}  # ATC beside it


def _scored(evs: list[PredictionEvent], seed: int) -> list[ScoredImage]:
    rng = np.random.default_rng(seed)
    return [ScoredImage(e.request_id, "m", "v1", e.ts, e.pred, 0.9,
                        rng.normal(size=8).astype(np.float32),
                        tuple(float(x) for x in rng.random(len(INPUT_FEATURES))))
            for e in evs]


def test_the_image_profile_is_counted_while_collected_and_logged_when_gained(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="monitor")
    stats = first_events(images=100)
    assert stats.shadow is not None
    traffic = Traffic(4)
    evs, _ = traffic.predictions(FIRST, 1000.0)
    stats.engine.apply_predictions(evs)
    assert events_of(snap(stats), "images") == 0
    later, _ = traffic.predictions(200, 1100.0)
    stats.engine.apply_predictions(later)
    stats.shadow.apply_scored(_scored(later[:60], 5))
    assert events_of(snap(stats), "images") == 60
    assert "collecting its first 100 scored images" in caplog.text
    stats.shadow.apply_scored(_scored(later[60:], 6))
    s = snap(stats)
    sha = stats.drift.baselines["m"].sha256
    assert events_of(s, "images") == 100
    assert info(s) == [("m", "1", "first_events", "sealed", sha[:16])]
    assert f"image profile from 100 scored images (sha256 {sha[:16]})" in caplog.text


def test_images_scored_before_the_predictions_seal_fill_the_profile_at_sealing() -> None:
    """Images often arrive before their predictions (another topic, another poll): the
    first ones scored still go towards the image profile, which the prediction batch that
    seals the baseline completes; images after it are then measured against it."""
    stats = first_events(images=100)
    assert stats.shadow is not None
    traffic = Traffic(5)
    evs, _ = traffic.predictions(FIRST, 1000.0)
    stats.shadow.apply_scored(_scored(evs[:150], 8))   # before any prediction
    s = snap(stats)
    assert events_of(s, "images") == 100
    assert info(s) == [("m", "", "first_events", "collecting", "")]
    # a restart meanwhile keeps them
    stats, before = first_events(images=100), stats
    stats.engine.restore(before.engine.state())
    assert stats.shadow is not None and events_of(snap(stats), "images") == 100
    stats.engine.apply_predictions(evs[:FIRST - 1])
    assert "m" not in stats.drift.baselines
    stats.engine.apply_predictions(evs[FIRST - 1:])    # seals: the profile comes with it
    sealed = stats.drift.baselines["m"]
    assert sealed.embedding is not None and profiled_images(sealed) == 100
    assert events_of(snap(stats), "images") == 100


def test_the_source_and_the_labels_towards_calibration_survive_a_checkpoint() -> None:
    stats = first_events()
    traffic = Traffic(7)
    evs, labels = traffic.predictions(FIRST + 100, 1000.0)
    stats.engine.apply_predictions(evs)
    stats.labels.apply_feedback(labels[:150])
    before = snap(stats)
    assert events_of(before, "labelled") == 150
    state = stats.drift.state()
    again = first_events()
    again.drift.restore(state)
    after = snap(again)
    assert info(after) == info(before)
    assert events_of(after, "labelled") == 150
    # a checkpoint written before sources were kept: told by the baseline's own source
    old = {k: v for k, v in state.items() if k not in ("sources", "calibration_labels")}
    older = first_events()
    older.drift.restore(old)
    assert info(snap(older)) == info(before)


# --- the honest estimate ---------------------------------------------------------------


def test_labels_after_sealing_calibrate_a_first_events_baseline(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="monitor")
    stats = first_events()
    traffic = Traffic(11)
    evs, _ = traffic.predictions(FIRST, 1000.0)   # the baseline: no label arrives for them
    stats.engine.apply_predictions(evs)
    sealed = stats.drift.baselines["m"]
    assert sealed.calibration is None
    evs, labels = traffic.predictions(MIN_LABELS - 1, 1100.0)
    stats.engine.apply_predictions(evs)
    stats.labels.apply_feedback(labels)
    s = snap(stats)
    assert set(estimate(s)) == {"mean_confidence"}
    assert events_of(s, "labelled") == MIN_LABELS - 1
    evs, labels = traffic.predictions(1, 1200.0)
    stats.engine.apply_predictions(evs)
    stats.labels.apply_feedback(labels)
    calibrated = stats.drift.baselines["m"]
    assert calibrated.calibration is not None and calibrated.labeled_events == MIN_LABELS
    # its content, so its hash, changed; its bins did not, so drift kept its windows
    assert calibrated.sha256 != sealed.sha256
    assert from_dict({**to_dict(calibrated), "sha256": calibrated.sha256}).sha256 == \
        calibrated.sha256
    assert ("m", "v1") in stats.drift.by_version
    s = snap(stats)
    assert info(s) == [("m", "1", "first_events", "sealed", calibrated.sha256[:16])]
    assert events_of(s, "labelled") == MIN_LABELS
    assert "calibrated on 200 labeled predictions" in caplog.text
    # clean traffic after: the calibrated estimate is close to the realized accuracy, the
    # mean confidence is not
    evs, labels = traffic.predictions(4000, 2000.0)
    stats.engine.apply_predictions(evs)
    stats.labels.apply_feedback(labels)
    s = snap(stats)
    realized = float(s["visionmon_accuracy_ratio"][("m", "v1", "5m")])  # type: ignore[arg-type]
    mean_conf = float(np.mean([e.confidence for e in evs]))
    got = estimate(s)
    assert set(got) == {"calibrated", "atc"}  # ATC fitted with the map
    assert abs(got["calibrated"] - realized) < 0.03
    assert abs(mean_conf - realized) > 0.08


def test_a_file_baseline_without_labels_never_calibrates_on_live_labels(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from monitor.baseline import save

    evs, _ = Traffic(12).predictions(500, 1000.0)
    save(build_baseline("m", CLASSES, evs), tmp_path / "b.json")
    cfg = {"version": 1, "models": [{"name": "m", "classes": list(CLASSES)}],
           "baseline": {"mode": "file", "path": str(tmp_path / "b.json"), "min_labels": 20}}
    stats = build_statistics(resolve(parse_config(cfg, str(tmp_path / "cfg.yaml"))))
    evs, labels = Traffic(13).predictions(300, 2000.0)
    stats.engine.apply_predictions(evs)
    stats.labels.apply_feedback(labels)
    assert stats.drift.baselines["m"].calibration is None
    assert set(estimate(snap(stats))) == {"mean_confidence"}


@pytest.mark.parametrize("value", [0, 19])
def test_min_labels_below_twenty_is_refused(value: int) -> None:
    from monitor.config import ConfigError

    cfg = {"version": 1, "models": [{"name": "m", "classes": list(CLASSES)}],
           "baseline": {"mode": "first_events", "min_labels": value}}
    with pytest.raises(ConfigError, match="min_labels"):
        parse_config(cfg, "<test>")


@pytest.mark.parametrize("batch", [FIRST + 200, FIRST // 2 + 200])
def test_the_events_after_those_a_batch_seals_the_baseline_with_are_measured(batch: int):
    """A batch that fills a first-events baseline: the baseline takes what it still needs,
    the rest of the batch reaches the drift windows (it was dropped, so a backlog read in
    large polls lost its first minutes of drift)."""
    stats = first_events()
    evs, _ = Traffic(3).predictions(FIRST + 200, 1_000.0)
    taken = 0
    for start in range(0, len(evs), batch):
        stats.engine.apply_predictions(evs[start:start + batch])
        taken += len(evs[start:start + batch])
    assert taken == FIRST + 200 and stats.drift.baselines["m"].events == FIRST
    n = stats.drift.figures("m", "v1")[("confidence", "1h")].n
    assert n == 200


def test_gaining_an_image_profile_keeps_the_prediction_drift_windows() -> None:
    """The image profile adds features and leaves the prediction features' bins as they
    were: the windows counted since sealing stay (they were emptied, so drift went blind
    until new predictions came, and a scrape in between had no PSI)."""
    stats = first_events(images=100)
    assert stats.shadow is not None
    traffic = Traffic(4)
    evs, _ = traffic.predictions(FIRST, 1000.0)
    stats.engine.apply_predictions(evs)
    later, _ = traffic.predictions(200, 1100.0)
    stats.engine.apply_predictions(later)
    before = stats.drift.figures("m", "v1")[("confidence", "1h")].n
    stats.shadow.apply_scored(_scored(later[:100], 5))   # the image profile is sealed
    assert stats.drift.baselines["m"].embedding is not None
    figures = stats.drift.figures("m", "v1")
    assert before == 200 and figures[("confidence", "1h")].n == 200
    assert figures[("embedding_pc1", "1h")].n == 100   # image features count from here on
