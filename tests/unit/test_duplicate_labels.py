"""A second label for one request: counted in visionmon_labels_duplicate_total and handled
by `labels.duplicates` (first | last), never parked until the TTL; the memory it takes is
bounded by `labels.max_entries` and `labels.ttl`, and it survives a checkpoint."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest

from collectors.checkpoint import decode, encode
from monitor.engine import EventGroup
from monitor.events import FeedbackEvent, PredictionEvent
from monitor.labels import DuplicatePolicy, LabelMonitor
from monitor.snapshot import SnapshotBuilder
from monitor.windows import WindowSpec

CLASSES = ("ok", "scratch", "dent")
WINDOWS = (WindowSpec("1h", 3600, 6),)
T0 = 1_000_000.0

#: one step: ("pred", request id) predicts `ok`; ("labels", [(request id, label), ...]) is
#: one feedback batch
Step = tuple[str, Any]


def _prediction(rid: str, t: float) -> PredictionEvent:
    return PredictionEvent(rid, t, "m", "v1", True, 0, 0.9, math.nan, math.nan, 0.01)


def _run(policy: DuplicatePolicy, steps: Sequence[Step], max_entries: int = 100,
         ttl_s: float = 3600.0) -> tuple[LabelMonitor, list[str]]:
    refused: list[str] = []
    lm = LabelMonitor({"m": CLASSES}, WINDOWS, max_entries, ttl_s, duplicates=policy,
                      reject=lambda reason, n: refused.extend([reason] * n))
    _feed(lm, steps)
    return lm, refused


def _feed(lm: LabelMonitor, steps: Sequence[Step]) -> None:
    for i, (kind, what) in enumerate(steps):
        t = T0 + i
        if kind == "pred":
            lm.on_predictions({("m", "v1"): EventGroup([_prediction(what, t)])})
        else:
            lm.apply_feedback([FeedbackEvent(rid, label, t) for rid, label in what])


def _series(lm: LabelMonitor) -> dict[str, dict[tuple[str, ...], float]]:
    b = SnapshotBuilder()
    lm.capture().render(b)
    return dict(b.build())


def _joined(lm: LabelMonitor) -> dict[tuple[str, str], float]:
    """{(true class, outcome): labels} with a non-zero count."""
    return {(c, o): n for (_, _, c, o), n in _series(lm)["visionmon_labels_total"].items()
            if n}


@pytest.mark.parametrize(("steps", "first", "last", "duplicates"), [
    pytest.param([("pred", "r"), ("labels", [("r", "dent")]), ("labels", [("r", "ok")])],
                 {("dent", "incorrect"): 1}, {("dent", "incorrect"): 1}, 1,
                 id="a second label after the join is counted and dropped under either policy"),
    pytest.param([("labels", [("r", "dent")]), ("labels", [("r", "ok")]), ("pred", "r")],
                 {("dent", "incorrect"): 1}, {("ok", "correct"): 1}, 1,
                 id="of two labels waiting for the prediction, first keeps one, last the other"),
    pytest.param([("pred", "r"), ("labels", [("r", "dent"), ("r", "ok"), ("r", "scratch")])],
                 {("dent", "incorrect"): 1}, {("dent", "incorrect"): 1}, 2,
                 id="three labels in one batch: the first joins, two are duplicates"),
    pytest.param([("labels", [("r", "dent"), ("r", "scratch"), ("r", "ok")]), ("pred", "r")],
                 {("dent", "incorrect"): 1}, {("ok", "correct"): 1}, 2,
                 id="three labels in one batch before the prediction"),
    pytest.param([("pred", "a"), ("pred", "b"), ("labels", [("a", "dent"), ("b", "ok")])],
                 {("dent", "incorrect"): 1, ("ok", "correct"): 1},
                 {("dent", "incorrect"): 1, ("ok", "correct"): 1}, 0,
                 id="labels of different requests are not duplicates"),
    pytest.param([("pred", "r"), ("labels", [("r", "rust")]), ("labels", [("r", "dent")])],
                 {("dent", "incorrect"): 1}, {("dent", "incorrect"): 1}, 0,
                 id="a refused label (unknown class) does not stand: the next one joins"),
    pytest.param([("labels", [("r", "rust")]), ("pred", "r"), ("labels", [("r", "dent")])],
                 {("dent", "incorrect"): 1}, {("dent", "incorrect"): 1}, 0,
                 id="nor does one that waited for its prediction"),
])
@pytest.mark.parametrize("policy", ["first", "last"])
def test_a_request_counts_one_label(policy: DuplicatePolicy, steps: list[Step],
                                    first: dict, last: dict, duplicates: int) -> None:
    lm, _ = _run(policy, steps)
    assert _joined(lm) == (first if policy == "first" else last)
    assert _series(lm)["visionmon_labels_duplicate_total"] == {("m", policy): duplicates}
    assert len(lm.early) == 0, "nothing is parked until the TTL"
    assert len(lm.predictions) == 0


@pytest.mark.parametrize("policy", ["first", "last"])
def test_the_windows_agree_with_the_counters(policy: DuplicatePolicy) -> None:
    lm, _ = _run(policy, [("labels", [("r", "dent")]), ("labels", [("r", "ok")]), ("pred", "r"),
                          ("labels", [("r", "scratch")])])
    figures = lm.window_figures("m", "v1")["1h"]
    assert figures["labeled"] == 1
    assert figures["accuracy"] == (0.0 if policy == "first" else 1.0)


def test_duplicates_of_a_waiting_label_are_counted_when_it_joins_under_its_model() -> None:
    lm, _ = _run("first", [("labels", [("r", "dent")]), ("labels", [("r", "dent")])])
    assert _series(lm)["visionmon_labels_duplicate_total"] == {("m", "first"): 0}
    assert len(lm.early) == 1
    _feed(lm, [("pred", "r")])
    assert _series(lm)["visionmon_labels_duplicate_total"] == {("m", "first"): 1}


def test_an_unknown_label_is_refused_and_its_prediction_waits_on() -> None:
    lm, refused = _run("first", [("pred", "r"), ("labels", [("r", "rust")])])
    assert refused == ["unknown_class"]
    assert len(lm.predictions) == 1 and len(lm.joined) == 0


def test_joined_requests_are_remembered_within_max_entries_only() -> None:
    """Memory stays bounded: beyond `labels.max_entries` joined requests the oldest is
    forgotten, and a label for it then waits like a first label (counted as evicted from
    labels_early when its time is up), as before duplicates were counted."""
    steps: list[Step] = []
    for rid in ("r1", "r2", "r3"):
        steps += [("pred", rid), ("labels", [(rid, "dent")])]
    lm, _ = _run("first", [*steps, ("labels", [("r1", "ok"), ("r3", "ok")])], max_entries=2)
    assert len(lm.joined) == 2
    assert _series(lm)["visionmon_labels_duplicate_total"] == {("m", "first"): 1}  # r3
    assert "r1" in lm.early and "r3" not in lm.early


def test_joined_requests_are_forgotten_after_the_ttl() -> None:
    lm, _ = _run("first", [("pred", "r1"), ("labels", [("r1", "dent")])], ttl_s=10.0)
    lm.on_predictions({("m", "v1"): EventGroup([_prediction("r2", T0 + 60)])})
    assert len(lm.joined) == 0


@pytest.mark.parametrize("hashed", [False, True])
def test_duplicate_state_survives_a_checkpoint(hashed: bool) -> None:
    def fresh() -> LabelMonitor:
        return LabelMonitor({"m": CLASSES}, WINDOWS, 100, 3600.0, hashed, duplicates="last")

    steps: list[Step] = [("pred", "a"), ("labels", [("a", "dent"), ("a", "ok")]),
                         ("labels", [("b", "dent")]), ("labels", [("b", "ok")])]
    lm = fresh()
    _feed(lm, steps)
    restored = fresh()
    restored.restore(decode(encode(lm.state())))
    later: list[Step] = [("labels", [("a", "scratch")]), ("pred", "b")]
    for m in (lm, restored):
        _feed(m, later)
    assert _series(restored) == _series(lm)
    assert _series(lm)["visionmon_labels_duplicate_total"] == {("m", "last"): 3}
    assert _joined(lm) == {("dent", "incorrect"): 1, ("ok", "correct"): 1}


def test_a_checkpoint_from_before_duplicates_were_counted_restores() -> None:
    lm, _ = _run("first", [("labels", [("r", "dent")])])
    state = lm.state()
    del state["joined"], state["duplicates"]
    state["early"]["entries"] = [[k, ts, v[:3]] for k, ts, v in state["early"]["entries"]]
    restored = LabelMonitor({"m": CLASSES}, WINDOWS, 100, 3600.0)
    restored.restore(decode(encode(state)))
    _feed(restored, [("pred", "r"), ("labels", [("r", "ok")])])
    assert _joined(restored) == {("dent", "incorrect"): 1}
    assert _series(restored)["visionmon_labels_duplicate_total"] == {("m", "first"): 1}
