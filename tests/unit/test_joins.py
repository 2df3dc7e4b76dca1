"""The bounded join store: a batch put is the same as one put per entry."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.joins import JoinStore

batches = st.lists(st.lists(st.tuples(st.sampled_from([f"r{i}" for i in range(12)]),
                                      st.floats(0, 100)), max_size=8), max_size=6)


@settings(max_examples=300, deadline=None)
@given(batches, st.integers(1, 10), st.booleans())
def test_put_many_equals_put_one_by_one(batch_list, max_entries, hashed):
    one = JoinStore[int]("a", max_entries, 1e9, hashed)
    many = JoinStore[int]("b", max_entries, 1e9, hashed)
    serial = 0
    for batch in batch_list:
        values = list(range(serial, serial + len(batch)))
        serial += len(batch)
        for (rid, ts), v in zip(batch, values, strict=True):
            one.put(rid, ts, v)
        many.put_many([r for r, _ in batch], [t for _, t in batch], values)
        assert list(many.items()) == list(one.items())
        assert many.evicted == one.evicted
