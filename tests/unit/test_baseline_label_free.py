"""ATC's threshold in the baseline: fitted with the calibration map, saved, and absent from
(but not breaking) files written before it."""

from __future__ import annotations

import math

import numpy as np
import orjson

from monitor import baseline as baseline_mod
from monitor.events import PredictionEvent
from monitor.stats import atc_threshold

CLASSES = ("a", "b", "c")
RNG = np.random.default_rng(11)


def labelled(n: int = 400) -> tuple[list[PredictionEvent], dict[str, int], np.ndarray,
                                    np.ndarray]:
    conf = RNG.uniform(0.34, 1.0, n)
    correct = RNG.random(n) < conf
    evs = [PredictionEvent(f"r{i}", float(i), "m", "v1", True, 0, float(c), math.nan,
                           math.nan, 0.01) for i, c in enumerate(conf)]
    labels = {f"r{i}": 0 if ok else 1 for i, ok in enumerate(correct)}
    return evs, labels, conf, correct


def test_a_baseline_built_with_labels_holds_the_atc_threshold_of_its_labelled_events() -> None:
    evs, labels, conf, correct = labelled()
    b = baseline_mod.build_baseline("m", CLASSES, evs, labels)
    assert b.atc_threshold == atc_threshold(conf, correct)
    assert float(np.mean(conf >= b.atc_threshold)) == float(np.mean(correct))


def test_the_threshold_survives_a_save_and_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    evs, labels, _, _ = labelled()
    b = baseline_mod.build_baseline("m", CLASSES, evs, labels)
    path = baseline_mod.save(b, tmp_path / "b.json")
    assert baseline_mod.load(path).atc_threshold == b.atc_threshold


def test_a_file_written_before_atc_loads_without_it_and_keeps_its_hash(tmp_path) -> None:  # type: ignore[no-untyped-def]
    evs, labels, _, _ = labelled()
    d = baseline_mod.to_dict(baseline_mod.build_baseline("m", CLASSES, evs, labels))
    del d["atc_threshold"]
    d["sha256"] = baseline_mod._hash(d)
    path = tmp_path / "old.json"
    path.write_bytes(orjson.dumps(d))
    old = baseline_mod.load(path)
    assert old.atc_threshold is None and old.calibration is not None
    assert old.sha256 == d["sha256"]


def test_without_labels_there_is_no_threshold_and_calibrating_later_fits_one() -> None:
    evs, _, conf, correct = labelled()
    b = baseline_mod.build_baseline("m", CLASSES, evs)
    assert b.atc_threshold is None
    later = baseline_mod.with_calibration(b, conf, correct.astype(np.float64))
    assert later.atc_threshold == atc_threshold(conf, correct)
    assert later.sha256 != b.sha256
