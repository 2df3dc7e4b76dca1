"""The position ledger: what to count, skip, ask and commit across restarts, rebalances and
rewinds. Each case is a script of events for one partition; the broker's answer to "what
is the group's committed offset?" is part of the case. No broker, no threads, no sleeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from collectors.kafka.client import Record
from collectors.ledger import (
    AskCommitted,
    CountBatch,
    PositionLedger,
    Remembered,
)

TP = ("t", 0)
UNANSWERED = "unanswered"


def batch(first: int, last: int) -> tuple[str, list[int]]:
    """A polled batch of offsets first..last of TP."""
    return ("batch", list(range(first, last + 1)))


def restored(position: int, committed: int | str | None = "none seen") -> tuple[str, Any]:
    """A checkpoint restored with TP at `position`; `committed`: the offset it saw the group
    commit, "none seen", or None for a checkpoint that did not record commits (old format)."""
    return ("restored", (position, committed))


ASSIGNED, REVOKED, LINK_LOST, COMMIT = ("assigned",), ("revoked",), ("link_lost",), ("commit",)


@dataclass
class Outcome:
    counted: list[int] = field(default_factory=list)
    skipped: int = 0
    questions: int = 0
    checks: list[Remembered] = field(default_factory=list)
    rewinds: list[tuple[int, int]] = field(default_factory=list)


def play(steps: list[tuple[Any, ...]], broker: int | str | None = 0
         ) -> tuple[PositionLedger, Outcome]:
    """Feed the events to a ledger, answering its questions with `broker`."""
    ledger, out = PositionLedger(), Outcome()
    for step in steps:
        kind = step[0]
        if kind == "restored":
            position, committed = step[1]
            seen = {} if committed == "none seen" else (
                None if committed is None else {TP: committed})
            ledger.restored({TP: position}, seen)
        elif kind == "assigned":
            ledger.assigned([TP])
        elif kind == "revoked":
            ledger.revoked([TP])
        elif kind == "link_lost":
            ledger.link_lost()
        elif kind == "commit":
            ledger.commit_succeeded(ledger.to_commit())
        elif kind == "batch":
            records = [Record(TP[0], TP[1], o, b"{}", (), 0) for o in step[1]]
            decision = ledger.polled(records)
            out.rewinds += [(r.was, r.now) for r in decision.rewound]
            if isinstance(decision, AskCommitted):
                out.questions += len(decision.partitions)
                for tp in decision.partitions:
                    check = (ledger.unanswered(tp) if broker == UNANSWERED
                             else ledger.answered(tp, broker))  # type: ignore[arg-type]
                    if check is not None:
                        out.checks.append(check.outcome)
                decision = ledger.polled(records)
            assert isinstance(decision, CountBatch)
            out.counted += [r.offset for r in decision.records]
            out.skipped += decision.skipped
            ledger.applied(decision)
    return ledger, out


COUNTING = [
    ("a fresh member counts every record",
     [ASSIGNED, batch(0, 4)], 0, [*range(5)]),
    ("a restored position skips what the checkpoint already counted",
     [restored(50, 40), ASSIGNED, batch(40, 59)], 40, [*range(50, 60)]),
    ("records at or past a restored position are counted",
     [restored(50, 40), ASSIGNED, batch(50, 54)], 40, [*range(50, 55)]),
    ("a restored position is dropped when the group lost the offsets it was seen to commit",
     [restored(50, 40), ASSIGNED, batch(0, 9)], None, [*range(10)]),
    ("a checkpoint written before the first commit keeps its position",
     [restored(50), ASSIGNED, batch(0, 59)], None, [*range(50, 60)]),
    ("a checkpoint that did not record commits trusts no missing offset",
     [restored(50, None), ASSIGNED, batch(0, 9)], None, [*range(10)]),
    ("an unanswered question keeps the remembered position",
     [restored(50, 40), ASSIGNED, batch(40, 59)], UNANSWERED, [*range(50, 60)]),
    ("records delivered again after a rebalance are not counted twice",
     [ASSIGNED, batch(0, 9), REVOKED, ASSIGNED, batch(0, 14)], 0, [*range(15)]),
    ("a partition revoked while the broker was unreachable remembers nothing",
     [ASSIGNED, batch(0, 9), LINK_LOST, REVOKED, ASSIGNED, batch(0, 4)], 0,
     [*range(10), *range(5)]),
    ("an outage forgets positions remembered at earlier revocations",
     [ASSIGNED, batch(0, 9), REVOKED, LINK_LOST, ASSIGNED, batch(0, 4)], 0,
     [*range(10), *range(5)]),
    ("offsets going back within an assignment are counted as a new log",
     [ASSIGNED, batch(100, 109), batch(0, 4)], 0, [*range(100, 110), *range(5)]),
    ("a rewind forgets the restored position",
     [restored(50, 40), ASSIGNED, batch(50, 59), batch(0, 4)], 40, [*range(50, 60), *range(5)]),
    ("a position passed by processing skips nothing any more",
     [restored(5, 3), ASSIGNED, batch(3, 9), REVOKED, ASSIGNED, batch(10, 12)], 3,
     [*range(5, 13)]),
]


@pytest.mark.parametrize(("title", "steps", "broker", "counted"), COUNTING,
                         ids=[c[0] for c in COUNTING])
def test_what_is_counted(title, steps, broker, counted):
    _, out = play(steps, broker)
    assert out.counted == counted


QUESTIONS = [
    ("nothing remembered: the broker is never asked",
     [ASSIGNED, batch(0, 9), batch(10, 19)], 0, []),
    ("records past the remembered position need no question",
     [restored(50, 40), ASSIGNED, batch(50, 59)], 40, []),
    ("a remembered position is checked once per assignment",
     [restored(50, 40), ASSIGNED, batch(40, 44), batch(45, 49)], 40, [Remembered.KEPT]),
    ("an unanswered question is not asked again in the assignment",
     [restored(50, 40), ASSIGNED, batch(40, 44), batch(45, 49)], UNANSWERED,
     [Remembered.KEPT_UNANSWERED]),
    ("a lost log is reported as dropped",
     [restored(50, 40), ASSIGNED, batch(0, 4)], None, [Remembered.DROPPED]),
    ("a partition never seen committed is reported as kept",
     [restored(50), ASSIGNED, batch(0, 4)], None, [Remembered.KEPT_NEVER_COMMITTED]),
    ("a partition that comes back is checked again",
     [ASSIGNED, batch(0, 9), REVOKED, ASSIGNED, batch(5, 9), REVOKED, ASSIGNED, batch(8, 9)], 0,
     [Remembered.KEPT, Remembered.KEPT]),
]


@pytest.mark.parametrize(("title", "steps", "broker", "checks"), QUESTIONS,
                         ids=[c[0] for c in QUESTIONS])
def test_what_the_broker_is_asked(title, steps, broker, checks):
    _, out = play(steps, broker)
    assert out.checks == checks
    assert out.questions == len(checks)


CHECKPOINTS = [
    ("a checkpoint holds the processed position",
     [ASSIGNED, batch(0, 9)], 0, {TP: 10}, {}),
    ("a checkpoint records the offsets the group committed",
     [ASSIGNED, batch(0, 9), COMMIT], 0, {TP: 10}, {TP: 10}),
    ("a checkpoint keeps the position of a partition revoked before it",
     [ASSIGNED, batch(0, 9), REVOKED], 0, {TP: 10}, {}),
    ("a checkpoint keeps the position of a partition revoked and assigned again, unread",
     [ASSIGNED, batch(0, 9), COMMIT, REVOKED, ASSIGNED], 0, {TP: 10}, {TP: 10}),
    ("a restored position not read from yet stays in the checkpoint",
     [restored(50, 40), ASSIGNED], 40, {TP: 50}, {TP: 40}),
    ("after a rewind the checkpoint follows the new log",
     [ASSIGNED, batch(100, 109), batch(0, 4)], 0, {TP: 5}, {}),
    ("a dropped position leaves the checkpoint with the commit it was checked by",
     [restored(50, 40), ASSIGNED, batch(0, 4)], None, {TP: 5}, {}),
]


@pytest.mark.parametrize(("title", "steps", "broker", "covered", "committed"), CHECKPOINTS,
                         ids=[c[0] for c in CHECKPOINTS])
def test_what_a_checkpoint_records(title, steps, broker, covered, committed):
    ledger, _ = play(steps, broker)
    positions = ledger.checkpoint()
    assert positions.covered == covered
    assert positions.committed == committed


COMMITS = [
    ("a processed batch commits past its last offset", [ASSIGNED, batch(0, 9)], {TP: 10}),
    ("nothing is committed twice", [ASSIGNED, batch(0, 9), COMMIT], {}),
    ("skipped records are committed too",
     [restored(50, 40), ASSIGNED, batch(40, 59)], {TP: 60}),
    ("a revoked partition has nothing to commit", [ASSIGNED, batch(0, 9), REVOKED], {}),
    ("a rewound partition commits on the new log",
     [ASSIGNED, batch(100, 109), COMMIT, batch(0, 4)], {TP: 5}),
]


@pytest.mark.parametrize(("title", "steps", "expected"), COMMITS, ids=[c[0] for c in COMMITS])
def test_what_is_committed(title, steps, expected):
    ledger, _ = play(steps, broker=40)
    assert ledger.to_commit() == expected


def test_rewinds_are_reported_with_both_offsets():
    _, out = play([ASSIGNED, batch(100, 109), batch(0, 4)])
    assert out.rewinds == [(110, 0)]


def test_skipped_records_are_counted_as_duplicates():
    _, out = play([ASSIGNED, batch(0, 9), REVOKED, ASSIGNED, batch(0, 14)])
    assert out.skipped == 10


def test_skipped_records_are_counted_per_topic_for_the_metric():
    a, b = ("preds", 0), ("labels", 0)
    ledger = PositionLedger()
    ledger.restored({a: 5, b: 2}, {a: 5, b: 2})
    ledger.assigned([a, b])
    records = [Record(t, p, o, b"", (), 0) for t, p in (a, b) for o in range(0, 4)]
    ledger.answered(a, 5)
    ledger.answered(b, 2)
    decision = ledger.polled(records)
    assert isinstance(decision, CountBatch) and decision.skipped == 6
    assert ledger.duplicates == {"preds": 4, "labels": 2}


def test_several_partitions_in_one_batch_are_decided_apart():
    a, b = ("t", 0), ("t", 1)
    ledger = PositionLedger()
    ledger.restored({a: 5, b: 2}, {a: 5})
    ledger.assigned([a, b])
    records = [Record(t, p, o, b"", (), 0) for t, p in (a, b) for o in range(4, 7)]
    first = ledger.polled(records)
    assert isinstance(first, AskCommitted) and first.partitions == (a,)  # b: 4.. >= 2
    ledger.answered(a, 5)
    decision = ledger.polled(records)
    assert isinstance(decision, CountBatch)
    assert [(r.partition, r.offset) for r in decision.records] == [
        (0, 5), (0, 6), (1, 4), (1, 5), (1, 6)]
    assert decision.through == {a: 6, b: 6}


LAG = [
    ("lag counts from the processed position", [ASSIGNED, batch(0, 9)], 0, {TP: 5}, 0),
    ("before any record, lag counts from the group's committed offset",
     [ASSIGNED], 3, {TP: 12}, 1),
    ("a partition the group never committed lags from the start", [ASSIGNED], None,
     {TP: 15}, 1),
    ("an unanswered partition is left out and asked again next time", [ASSIGNED], UNANSWERED,
     {}, 2),
]


@pytest.mark.parametrize(("title", "steps", "broker", "lag", "asked"), LAG,
                         ids=[c[0] for c in LAG])
def test_lag(title, steps, broker, lag, asked):
    ledger, _ = play(steps, broker)
    ends = {TP: 15}
    questions = 0
    for _ in range(2):  # two lag updates
        result = ledger.lag(ends)
        questions += len(result.ask)
        for tp in result.ask:
            if broker == UNANSWERED:
                ledger.unanswered(tp)
            else:
                ledger.answered(tp, broker)
        result = ledger.lag(ends)
    assert result.records == lag
    assert questions == asked


def test_an_answer_to_the_lag_question_also_checks_the_remembered_position():
    ledger = PositionLedger()
    ledger.restored({TP: 50}, {TP: 40})
    ledger.assigned([TP])
    assert ledger.lag({TP: 60}).ask == (TP,)
    check = ledger.answered(TP, None)  # the broker lost the log
    assert check is not None and check.outcome is Remembered.DROPPED
    decision = ledger.polled([Record("t", 0, 0, b"", (), 0)])
    assert isinstance(decision, CountBatch) and decision.skipped == 0  # not asked again
