"""The postmortem's ranking of segment values by their share of an incident
(visionmon/postmortem/segment_shares.py): worked examples by hand, the decomposition
summing to the whole drop, and the report section over snapshots of a real engine whose
accuracy fell on one camera only."""

from __future__ import annotations

import math

import pytest

from monitor.catalog import CATALOG
from monitor.events import FeedbackEvent, PredictionEvent
from monitor.segment_config import SegmentConfig
from tests.unit.test_segments import CLASSES, _stats
from visionmon.postmortem.metrics import MetricData
from visionmon.postmortem.sections import segments_section
from visionmon.postmortem.segment_shares import accuracy_drop, drift_excess
from visionmon.postmortem.timerange import TimeRange


def _labels(version: str, value: str, window: str = "5m", key: str = "camera"):
    return (("model", "m"), ("version", version), ("segment_key", key), ("segment", value),
            ("window", window))


def test_a_drop_confined_to_one_camera_is_all_its_share():
    # t=0: both cameras 90 %; t=1: c1 falls to 50 % on half the labels: the key drops 20 pts
    acc = {_labels("v1", "c1"): [(0.0, 0.9), (1.0, 0.5)],
           _labels("v1", "c2"): [(0.0, 0.9), (1.0, 0.9)]}
    n = {_labels("v1", "c1"): [(0.0, 50.0), (1.0, 50.0)],
         _labels("v1", "c2"): [(0.0, 50.0), (1.0, 50.0)]}
    (k,) = accuracy_drop(acc, n, "5m")
    assert (k.key, k.t_ref, k.t, k.total) == ("camera", 0.0, 1.0, pytest.approx(0.2))
    assert [(s.value, s.share) for s in k.shares] == [("c1", pytest.approx(1.0)),
                                                      ("c2", pytest.approx(0.0))]


def test_versions_are_summed_and_the_shares_add_up_to_the_whole_drop():
    acc = {_labels("v1", "c1"): [(0.0, 0.95), (5.0, 0.6)],
           _labels("v2", "c1"): [(0.0, 0.9), (5.0, 0.8)],
           _labels("v1", "c2"): [(0.0, 0.92), (5.0, 0.85)],
           _labels("v1", "_none"): [(5.0, 1.0)]}
    n = {_labels("v1", "c1"): [(0.0, 40.0), (5.0, 30.0)],
         _labels("v2", "c1"): [(0.0, 10.0), (5.0, 20.0)],
         _labels("v1", "c2"): [(0.0, 50.0), (5.0, 40.0)],
         _labels("v1", "_none"): [(5.0, 10.0)]}
    (k,) = accuracy_drop(acc, n, "5m")
    a_ref = (40 * 0.95 + 10 * 0.9 + 50 * 0.92) / 100
    a_now = (30 * 0.6 + 20 * 0.8 + 40 * 0.85 + 10 * 1.0) / 100
    assert k.total == pytest.approx(a_ref - a_now)
    assert sum(s.share for s in k.shares) == pytest.approx(1.0)
    c1 = next(s for s in k.shares if s.value == "c1")
    assert c1.share == pytest.approx((50 / 100) * (a_ref - (30 * 0.6 + 20 * 0.8) / 50)
                                     / (a_ref - a_now))
    assert k.shares[0].value == "c1" and k.shares[-1].value == "_none"  # better: negative


def test_no_drop_ranks_nothing():
    acc = {_labels("v1", "c1"): [(0.0, 0.8), (1.0, 0.9)]}
    n = {_labels("v1", "c1"): [(0.0, 10.0), (1.0, 10.0)]}
    assert accuracy_drop(acc, n, "5m") == []


def test_excess_drift_is_shared_by_events_times_psi_above_critical():
    feat = (("feature", "confidence"),)
    psi = {_labels("v1", "c1") + feat: [(0.0, 0.05), (1.0, 0.4)],
           _labels("v1", "c2") + feat: [(0.0, 0.05), (1.0, 0.15)],
           _labels("v1", "c3") + feat: [(1.0, 0.01)]}
    th = {k: [(t, 0.1) for t, _ in v] for k, v in psi.items()}
    n = {k: [(t, 100.0) for t, _ in v] for k, v in psi.items()}
    (k,) = drift_excess(psi, th, n, "5m")
    assert k.t == 1.0 and k.total == pytest.approx(100 * 0.3 + 100 * 0.05)
    assert [(s.value, round(s.share, 6)) for s in k.shares] == [
        ("c1", round(30 / 35, 6)), ("c2", round(5 / 35, 6)), ("c3", 0.0)]
    assert k.shares[0].figure == pytest.approx(4.0)


def _add(data: MetricData, snap: dict, t: float) -> None:
    for name, series in snap.items():
        if name.startswith("visionmon_segment_"):
            labels = CATALOG[name].labels
            for values, v in series.items():
                data.add(name, tuple(zip(labels, values, strict=True)), t, float(v))


def test_the_report_section_names_the_camera_whose_labels_went_wrong():
    engine, _, labels, _ = _stats((SegmentConfig(key="camera", max_values=5),))
    data = MetricData(source="test")
    t0 = 10_000.0
    for phase in range(2):  # labels right everywhere, then wrong on camera c3 only
        evs = [PredictionEvent(f"p{phase}-{i}", t0 + phase * 400 + i * 0.1, "m", "v1", True,
                               i % 3, 0.9, math.nan, math.nan, 0.01,
                               segments={"camera": f"c{i % 5}"}) for i in range(1000)]
        engine.apply_predictions(evs)
        labels.apply_feedback([FeedbackEvent(
            e.request_id, (e.pred + 1) % len(CLASSES) if phase and e.segments["camera"] == "c3"
            else e.pred, evs[-1].ts) for e in evs])
        _add(data, engine.snapshot(), float(phase))
    section = segments_section(data, TimeRange(-1.0, 2.0), "5m")
    assert "Accuracy drop by camera" in section.body
    first_row = section.body.split("<tbody><tr><td>")[1]
    assert first_row.startswith("c3</td><td>100.0 %")
