"""The shadow agreement test inside the statistics: the baseline counts, per production
class, how often the reference model agreed; ShadowMonitor exports the window's p-value
against that profile; older baseline files load without one (and keep their hash)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import orjson
import pytest

from monitor.baseline import _hash, build_baseline, from_dict, load, save, to_dict
from monitor.drift import DriftMonitor
from monitor.engine import EventGroup
from monitor.events import PredictionEvent
from monitor.scored import INPUT_FEATURES, ScoredImage
from monitor.shadow import ShadowMonitor
from monitor.snapshot import SnapshotBuilder
from monitor.stats import split_usual
from monitor.windows import WindowSpec

CLASSES = ("a", "b", "c", "d")
AGREEMENT = 0.95


def _traffic(n: int, seed: int, t0: float, version: str = "v1", broken: tuple[int, int] | None
             = None, noise: float = 0.0) -> tuple[list[PredictionEvent], list[ScoredImage]]:
    """n requests, each with its image scored: the reference agrees with production with
    probability AGREEMENT, and otherwise names the next class; `broken` = (c, d): production
    serves class c as class d; `noise`: that share of predictions moved to another class at
    random."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(CLASSES), n)
    ref = np.where(rng.random(n) < AGREEMENT, truth, (truth + 1) % len(CLASSES))
    pred = truth.copy()
    if broken is not None:
        pred[truth == broken[0]] = broken[1]
    moved = rng.random(n) < noise
    pred[moved] = (pred[moved] + rng.integers(1, len(CLASSES), int(moved.sum()))) % len(CLASSES)
    feats = tuple(0.5 for _ in INPUT_FEATURES)
    events = [PredictionEvent(f"r{seed}-{i}", t0 + i, "m", version, True, int(pred[i]), 0.9,
                              0.5, 0.5, 0.01) for i in range(n)]
    images = [ScoredImage(f"r{seed}-{i}", "m", version, t0 + i, int(ref[i]), 0.9,
                          rng.normal(size=4).astype(np.float32), feats) for i in range(n)]
    return events, images


@pytest.fixture(scope="module")
def baseline():  # type: ignore[no-untyped-def]
    events, images = _traffic(2000, 1, 0.0)
    return build_baseline("m", CLASSES, events, images=images)


def test_the_baseline_counts_agreement_per_production_class(baseline) -> None:  # type: ignore[no-untyped-def]
    events, images = _traffic(2000, 1, 0.0)
    ref = {im.request_id: im.ref_pred for im in images}
    n, agree = np.zeros(4), np.zeros(4)
    for e in events:
        n[e.pred] += 1
        agree[e.pred] += ref[e.request_id] == e.pred
    assert baseline.agreement is not None
    assert baseline.agreement.n.tolist() == n.tolist()
    assert baseline.agreement.agree.tolist() == agree.tolist()
    again = from_dict(to_dict(baseline))
    assert again.agreement is not None and again.agreement.agree.tolist() == agree.tolist()
    # the usual pairs, chosen on a seeded random half of the images, counted on the other
    pred = np.array([e.pred for e in events])
    want = split_usual(pred, np.array([ref[e.request_id] for e in events]), len(CLASSES))
    for profile in (baseline.agreement, again.agreement):
        assert profile.usual is not None
        assert profile.usual.pairs.tolist() == want.pairs.tolist()
        assert profile.usual.n.tolist() == want.n.tolist()
        assert profile.usual.usual.tolist() == want.usual.tolist()
    # the reference names the next class when it disagrees: those are the usual pairs
    assert sorted(map(tuple, want.pairs.tolist())) == [(c, (c + 1) % 4) for c in range(4)]


def test_an_older_file_without_the_profile_loads_and_keeps_its_hash(baseline, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = {k: v for k, v in to_dict(baseline).items() if k != "agreement"}
    d["sha256"] = _hash(d)
    path = tmp_path / "old.json"
    path.write_bytes(orjson.dumps(d))
    old = load(path)
    assert old.agreement is None and old.sha256 == d["sha256"]
    save(baseline, tmp_path / "new.json")
    assert load(tmp_path / "new.json").agreement is not None
    broken = {**to_dict(baseline), "agreement": {"n": [1, 2], "agree": [1, 2]}}
    with pytest.raises(Exception, match="agreement counts"):
        from_dict(broken)
    # a profile written before the usual pairs: loads without them, its hash its own
    d = to_dict(baseline)
    d["agreement"] = {"n": d["agreement"]["n"], "agree": d["agreement"]["agree"]}
    d["sha256"] = _hash(d)
    path.write_bytes(orjson.dumps(d))
    older = load(path)
    assert older.agreement is not None and older.agreement.usual is None
    assert older.sha256 == d["sha256"]
    for bad in ({"pairs": [[0, 9]]}, {"pairs_usual": [1e6, 0, 0, 0]}, {"pairs": [[0, 1, 2, 3]]},
                {"pairs": [[0.5, 1]]}, {"pairs_n": [1e6, 0, 0, 0]}):
        d = to_dict(baseline)
        d["agreement"].update(bad)
        with pytest.raises(Exception, match="agreement pairs"):
            from_dict(d)


def _p_value(baseline, events, images) -> float | None:  # type: ignore[no-untyped-def]
    drift = DriftMonitor({"m": CLASSES}, (WindowSpec("1h", 3600, 6),),
                         baselines={"m": baseline})
    shadow = ShadowMonitor({"m": CLASSES}, drift.windows, drift, min_agreement_images=100)
    shadow.on_predictions({("m", events[0].version): EventGroup(events)})
    shadow.apply_scored(images)
    b = SnapshotBuilder()
    shadow.snapshot(b)
    snap = b.build()
    ratio = snap.get("visionmon_shadow_agreement_ratio", {})
    assert ("m", events[0].version, "1h") not in ratio  # fewer than 100 joined images
    return snap.get("visionmon_shadow_agreement_pvalue", {}).get(  # type: ignore[no-any-return]
        ("m", events[0].version, "1h"))


def test_a_version_that_breaks_one_class_is_seen_from_its_first_images(baseline) -> None:  # type: ignore[no-untyped-def]
    events, images = _traffic(60, 2, 5000.0, version="v2", broken=(2, 3))
    p = _p_value(baseline, events, images)
    assert p is not None and p < 1e-3
    events, images = _traffic(60, 3, 5000.0, version="v2")
    p = _p_value(baseline, events, images)
    assert p is not None and p > 0.01


def test_noise_on_pairs_the_baseline_never_showed_is_seen_sooner(baseline) -> None:  # type: ignore[no-untyped-def]
    """A version with 10 % of its predictions turned to noise: 60 images of it are caught
    with the baseline's usual pairs, and not without them (the counts alone move too
    little)."""
    events, images = _traffic(60, 11, 5000.0, version="v2", noise=0.1)
    p = _p_value(baseline, events, images)
    assert p is not None and p < 1e-3
    assert baseline.agreement is not None
    bare = replace(baseline, agreement=replace(baseline.agreement, usual=None))
    q = _p_value(bare, events, images)
    assert q is not None and q > 1e-3


def test_a_window_checkpointed_before_the_usual_pairs_restores(baseline) -> None:  # type: ignore[no-untyped-def]
    """An older checkpoint's windows lack the per-class usual-pair bins: they restore with
    every image counted as usual, and the other figures unchanged."""
    drift = DriftMonitor({"m": CLASSES}, (WindowSpec("1h", 3600, 6),),
                         baselines={"m": baseline})
    shadow = ShadowMonitor({"m": CLASSES}, drift.windows, drift)
    events, images = _traffic(80, 12, 5000.0)
    shadow.on_predictions({("m", "v1"): EventGroup(events)})
    shadow.apply_scored(images)
    state = shadow.state()
    c = len(CLASSES)
    state["versions"][0] = state["versions"][0][:5]  # the older layout: no tag, no usual bins
    for ring in state["versions"][0][4]:
        ring["counts"] = np.delete(ring["counts"], np.s_[2 + 2 * c:2 + 3 * c], axis=1)
    again = ShadowMonitor({"m": CLASSES}, drift.windows, drift)
    again.restore(state)
    before = shadow.by_version[("m", "v1")].windows.totals(5100.0)["1h"]
    after = again.by_version[("m", "v1")].windows.totals(5100.0)["1h"]
    assert after[2 + 2 * c:2 + 3 * c].tolist() == after[2:2 + c].tolist()
    assert np.delete(after, np.s_[2 + 2 * c:2 + 3 * c]).tolist() == \
        np.delete(before, np.s_[2 + 2 * c:2 + 3 * c]).tolist()


def test_windows_counted_with_other_pairs_count_every_image_as_usual(baseline) -> None:  # type: ignore[no-untyped-def]
    """The usual bins hold to the pairs they were counted with: restored under a baseline
    with other pairs, or after the baseline changed, every image they hold counts as usual
    (never unusual), so the switch cannot raise a false alarm; new images count by the new
    pairs."""
    assert baseline.agreement is not None and baseline.agreement.usual is not None
    usual = baseline.agreement.usual
    other = replace(baseline, sha256="other", agreement=replace(baseline.agreement, usual=replace(
        usual, pairs=np.zeros((0, 2), np.int64))))
    c = len(CLASSES)
    events, images = _traffic(200, 14, 5000.0)

    def usual_bins(shadow: ShadowMonitor) -> tuple[list[float], list[float]]:
        v = shadow.by_version[("m", "v1")].windows.totals(5300.0)["1h"]
        return v[2 + 2 * c:2 + 3 * c].tolist(), v[2:2 + c].tolist()

    drift = DriftMonitor({"m": CLASSES}, (WindowSpec("1h", 3600, 6),),
                         baselines={"m": other})      # no usual disagreement pairs
    shadow = ShadowMonitor({"m": CLASSES}, drift.windows, drift)
    shadow.on_predictions({("m", "v1"): EventGroup(events[:100])})
    shadow.apply_scored(images[:100])
    counted, n = usual_bins(shadow)
    assert counted != n                      # every disagreement unusual under `other`
    state = shadow.state()
    for changed in ("restore", "baseline"):
        later = DriftMonitor({"m": CLASSES}, (WindowSpec("1h", 3600, 6),),
                             baselines={"m": baseline if changed == "restore" else other})
        again = ShadowMonitor({"m": CLASSES}, later.windows, later)
        again.restore(state)
        if changed == "baseline":
            assert usual_bins(again)[0] == counted   # same pairs: restored as they were
            later.baselines["m"] = baseline
            b = SnapshotBuilder()
            again.snapshot(b)
        assert usual_bins(again)[0] == usual_bins(again)[1]
        again.on_predictions({("m", "v1"): EventGroup(events[100:])})
        again.apply_scored(images[100:])
        fresh, n = usual_bins(again)
        want = sum(float(e.pred == im.ref_pred or (e.pred, im.ref_pred) in
                         set(map(tuple, usual.pairs.tolist())))
                   for e, im in zip(events[100:], images[100:], strict=True))
        assert sum(fresh) == pytest.approx(100 + want)


def test_no_profile_no_p_value() -> None:
    events, _ = _traffic(500, 4, 0.0)
    bare = build_baseline("m", CLASSES, events)  # no images: no agreement profile
    assert bare.agreement is None
    assert _p_value(bare, *_traffic(60, 5, 5000.0)) is None


def test_a_baseline_profiled_from_the_first_images_counts_their_agreement() -> None:
    """Without an image profile, the daemon extends the baseline with its first scored
    images; the images joined meanwhile give the agreement profile, so the test runs."""
    events, _ = _traffic(500, 6, 0.0)
    bare = build_baseline("m", CLASSES, events)
    drift = DriftMonitor({"m": CLASSES}, (WindowSpec("1h", 3600, 6),), baselines={"m": bare})
    shadow = ShadowMonitor({"m": CLASSES}, drift.windows, drift, baseline_images=300)
    first_events, first_images = _traffic(400, 7, 1000.0)
    shadow.on_predictions({("m", "v1"): EventGroup(first_events)})
    # two batches: 200 images join while collecting, the batch that completes the 300 is
    # the profile's images but joins after the profile is sealed
    shadow.apply_scored(first_images[:200])
    assert drift.baselines["m"].embedding is None
    shadow.apply_scored(first_images[200:])
    profiled = drift.baselines["m"]
    assert profiled.embedding is not None and profiled.agreement is not None
    ref = {im.request_id: im.ref_pred for im in first_images[:200]}
    n, agree = np.zeros(4), np.zeros(4)
    for e in first_events[:200]:
        n[e.pred] += 1
        agree[e.pred] += ref[e.request_id] == e.pred
    assert profiled.agreement.n.tolist() == n.tolist()
    assert profiled.agreement.agree.tolist() == agree.tolist()
    want = split_usual(np.array([e.pred for e in first_events[:200]]),
                       np.array([ref[e.request_id] for e in first_events[:200]]), 4)
    assert profiled.agreement.usual is not None
    assert profiled.agreement.usual.pairs.tolist() == want.pairs.tolist()
    assert profiled.agreement.usual.usual.tolist() == want.usual.tolist()
    # a broken version against that profile
    bad_events, bad_images = _traffic(60, 8, 5000.0, version="v2", broken=(2, 3))
    assert (p := _p_value(profiled, bad_events, bad_images)) is not None and p < 1e-3


def test_a_profiled_baseline_without_joins_has_no_agreement_profile() -> None:
    events, _ = _traffic(500, 9, 0.0)
    drift = DriftMonitor({"m": CLASSES}, (WindowSpec("1h", 3600, 6),),
                         baselines={"m": build_baseline("m", CLASSES, events)})
    shadow = ShadowMonitor({"m": CLASSES}, drift.windows, drift, baseline_images=300)
    _, images = _traffic(300, 10, 1000.0)  # their predictions never arrive
    shadow.apply_scored(images)
    assert drift.baselines["m"].embedding is not None
    assert drift.baselines["m"].agreement is None
