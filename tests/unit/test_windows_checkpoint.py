"""Event-time windows (rings of slices) and checkpoint files."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.checkpoint import CheckpointCorrupt, CheckpointStore, decode, encode
from monitor.windows import SliceRing, WindowedCounts, WindowSpec


def brute_force(events, now, seconds, slice_s):
    """Events whose slice lies within the last `seconds` ending at now's slice."""
    newest = int(np.floor(now / slice_s))
    n_slices = round(seconds / slice_s)
    out = np.zeros(4)
    for ts, b in events:
        sid = int(np.floor(ts / slice_s))
        if newest - n_slices < sid <= newest:
            out[b] += 1
    return out


def test_ring_matches_brute_force_on_random_streams():
    rng = np.random.default_rng(0)
    spec = WindowSpec("5m", 300, 60)
    ring = SliceRing(spec, 4)
    events = []
    t = 1_000_000.0
    for _ in range(50):
        ts = t + rng.uniform(-20, 30, size=40)  # slightly out of order
        bins = rng.integers(0, 4, size=40)
        ring.add(ts, bins)
        events += list(zip(ts.tolist(), bins.tolist(), strict=True))
        t += 17
        now = max(e[0] for e in events)
        # events dropped at insertion were already outside the window ending at `now`
        assert ring.total(now).tolist() == brute_force(events, now, 300, 5).tolist()


def test_in_order_stream_is_exact():
    spec = WindowSpec("1m", 60, 6)
    ring = SliceRing(spec, 2)
    ts = np.arange(0, 600, 1.0)
    for chunk in np.array_split(ts, 30):
        ring.add(chunk, (chunk % 2).astype(np.int64))
    assert ring.total(599.0).tolist() == [30.0, 30.0]


def test_old_events_are_ignored_and_memory_is_fixed():
    spec = WindowSpec("1m", 60, 6)
    ring = SliceRing(spec, 3)
    ring.add(np.array([1000.0]), np.array([0]))
    ring.add(np.array([10.0]), np.array([1]))  # far too old
    assert ring.total(1000.0).tolist() == [1.0, 0.0, 0.0]
    assert ring.state()["counts"].shape == (6, 3)


def test_weights_and_several_windows():
    w = WindowedCounts((WindowSpec("10s", 10, 10), WindowSpec("100s", 100, 10)), 2)
    w.add(np.array([1.0, 50.0, 95.0]), np.array([0, 1, 1]), np.array([2.0, 3.0, 4.0]))
    totals = w.totals(95.0)
    assert totals["10s"].tolist() == [0.0, 4.0]
    assert totals["100s"].tolist() == [2.0, 7.0]


def test_checkpoint_roundtrip_and_corruption(tmp_path):
    store = CheckpointStore(tmp_path / "ck")
    assert (tmp_path / "ck").stat().st_mode & 0o777 == 0o700
    store.save({"a": [1, 2], "b": np.arange(3)})
    assert store.load() == {"a": [1, 2], "b": [0, 1, 2]}
    data = store.path.read_bytes()
    store.path.write_bytes(data[:-3])  # truncated
    with pytest.raises(CheckpointCorrupt, match="SHA-256"):
        store.load()
    assert store.load() is None  # moved aside: next start is clean
    assert list(tmp_path.glob("ck/state.ckpt.corrupt-*"))


def test_checkpoint_header_is_checked():
    with pytest.raises(CheckpointCorrupt):
        decode(b"garbage")
    assert decode(encode({"x": 1})) == {"x": 1}


batches = st.lists(st.tuples(
    st.floats(0, 400),                                   # batch start (s)
    st.sampled_from([0.0, 0.5, 3.0, 40.0]),              # batch spread (s)
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 3)), min_size=1, max_size=20),
    st.booleans()),                                      # weighted
    min_size=1, max_size=12)


@pytest.mark.slow  # a simulation or exhaustive comparison
@settings(max_examples=300, deadline=None)
@given(batches)
def test_one_slice_batches_count_exactly_as_the_per_event_ring_update(stream):
    """`WindowedCounts.add` takes a batch within one slice as one count vector; rings fed
    the same batches through `SliceRing.add` (per-event slot logic) must end identical."""
    specs = (WindowSpec("10s", 10, 5), WindowSpec("60s", 60, 6), WindowSpec("300s", 300, 60))
    fast = WindowedCounts(specs, 4)
    slow = WindowedCounts(specs, 4)
    rng = np.random.default_rng(0)
    for start, spread, items, weighted in stream:
        ts = np.array([start + spread * f for f, _ in items])
        bins = np.array([b for _, b in items])
        weights = rng.uniform(0, 2, ts.size) if weighted else None
        fast.add(ts, bins, weights)
        for ring in slow.rings:
            ring.add(ts, bins, weights)
    for a, b in zip(fast.rings, slow.rings, strict=True):
        np.testing.assert_array_equal(a.state()["ids"], b.state()["ids"])
        np.testing.assert_allclose(a.state()["counts"], b.state()["counts"], rtol=1e-12)


@pytest.mark.parametrize("now", [1_000_000.0, 1_000_150.0, 1_000_299.0, 1_000_310.0,
                                 1_000_599.0, 1_001_000.0, 999_990.0])
def test_a_total_at_any_time_is_the_brute_force_sum_of_its_live_slices(now: float) -> None:
    """Full ring, part of it, none of it (the future and the past): the same as summing
    the events whose slice is in (now - W, now]."""
    rng = np.random.default_rng(1)
    spec = WindowSpec("5m", 300, 60)
    ring = SliceRing(spec, 4)
    ts = 1_000_000.0 + np.sort(rng.uniform(0, 300, 500))
    bins = rng.integers(0, 4, 500)
    ring.add(ts, bins)
    events = list(zip(ts.tolist(), bins.tolist(), strict=True))
    assert ring.total(now).tolist() == brute_force(events, now, 300, 5).tolist()
