"""The offset tracker: commit the highest contiguous processed offset + 1."""

import pytest

from collectors.offsets import OffsetTracker

TP = ("t", 0)

CASES = [
    ("in-order offsets commit past the last", [0, 1, 2], 3),
    ("a gap holds the commit point back", [0, 1, 3, 4], 2),
    ("filling the gap releases the later offsets", [0, 1, 3, 4, 2], 5),
    ("a redelivered offset changes nothing", [0, 1, 1, 0, 2], 3),
    ("tracking may start mid-partition", [100, 101], 102),
]


@pytest.mark.parametrize(("title", "offsets", "expected"), CASES, ids=[c[0] for c in CASES])
def test_commit_point(title, offsets, expected):
    t = OffsetTracker()
    t.assign(TP)
    for o in offsets:
        t.processed(TP, o)
    assert t.commit_points() == {TP: expected}


def test_nothing_to_commit_twice():
    t = OffsetTracker()
    t.assign(TP, 5)
    assert t.commit_points() == {}
    t.processed(TP, 5)
    points = t.commit_points()
    t.mark_committed(points)
    assert t.commit_points() == {}


def test_revoked_partition_is_forgotten():
    t = OffsetTracker()
    t.assign(TP)
    t.processed(TP, 0)
    t.revoke(TP)
    assert t.commit_points() == {}


THROUGH = [
    ("a whole batch commits past its last offset", [(0, 9)], 10),
    ("offsets never delivered (markers, compaction) hold nothing back", [(0, 4), (7, 9)], 10),
    ("a redelivered batch changes nothing", [(0, 9), (0, 4)], 10),
    ("tracking may start mid-partition", [(100, 104)], 105),
]


@pytest.mark.parametrize(("title", "batches", "expected"), THROUGH, ids=[c[0] for c in THROUGH])
def test_processed_through(title, batches, expected):
    t = OffsetTracker()
    t.assign(TP)
    for _first, last in batches:
        t.processed_through(TP, last)
    assert t.commit_points() == {TP: expected}


def test_processed_through_keeps_later_single_offsets():
    t = OffsetTracker()
    t.assign(TP)
    t.processed(TP, 12)
    t.processed_through(TP, 10)
    t.processed(TP, 11)
    assert t.commit_points() == {TP: 13}


def test_polled_records_are_applied_in_chunks_of_bounded_bytes():
    from hypothesis import given
    from hypothesis import strategies as st

    from collectors.daemon import apply_chunks
    from collectors.kafka.client import Record

    @given(st.lists(st.integers(0, 100)), st.integers(1, 150))
    def check(sizes, limit):
        records = [Record("t", 0, i, b"x" * n if n else None, (), 0)
                   for i, n in enumerate(sizes)]
        chunks = apply_chunks(records, limit)
        assert [r for c in chunks for r in c] == records  # all, once, in order
        for c in chunks:
            assert c
            total = sum(len(r.value or b"") for r in c)
            assert total <= limit or len(c) == 1  # only a lone large record goes over

    check()
