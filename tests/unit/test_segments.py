"""Per segment value statistics (monitor/segments.py) against independent paths: each
value's counts by brute force, its drift equal to a DriftMonitor fed only that value's
events, its accuracy and recall to a LabelMonitor fed only its labels; folding, the
memory bound and the checkpoint round trip."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from collectors.checkpoint import decode, encode
from monitor.baseline import build_baseline
from monitor.drift import DriftMonitor
from monitor.engine import Engine, EventGroup
from monitor.events import FeedbackEvent, PredictionEvent
from monitor.labels import LabelMonitor
from monitor.segment_config import SegmentConfig
from monitor.segment_values import ValueFolder
from monitor.segments import SegmentMonitor, key_state_floats
from monitor.windows import WindowSpec

CLASSES = ("ok", "scratch", "dent")
WINDOWS = (WindowSpec("5m", 300, 6), WindowSpec("1h", 3600, 6))
CAMERA = SegmentConfig(key="camera", max_values=3)
ALL_CAMERAS = SegmentConfig(key="camera", max_values=5)
SITE = SegmentConfig(key="site", values=["a", "b"])


def _events(n: int, seed: int, t0: float = 10_000.0, shift_camera: str | None = None
            ) -> list[PredictionEvent]:
    """`n` predictions from cameras c0..c4 and sites a, b, z (z not in the site list), some
    without segments; the shifted camera predicts `dent` with low confidence."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cam = f"c{rng.integers(0, 5)}"
        site = ["a", "b", "z"][rng.integers(0, 3)]
        segs = None if i % 17 == 0 else {"camera": cam, "site": site}
        shifted = shift_camera is not None and segs is not None and cam == shift_camera
        pred = 2 if shifted else int(rng.choice(3, p=[0.7, 0.2, 0.1]))
        conf = float(rng.uniform(0.3, 0.6) if shifted else rng.uniform(0.6, 1.0))
        ok = i % 23 != 0
        out.append(PredictionEvent(f"r{seed}-{i}", t0 + i * 0.05, "m", "v1", ok, pred,
                                   conf if ok else math.nan, math.nan, math.nan, 0.01,
                                   segments=segs))
    return out


def _baseline():
    return build_baseline("m", CLASSES, _events(3000, seed=1, t0=1000.0), k=5)


def _stats(segments=(CAMERA, SITE)):
    engine = Engine({"m": CLASSES}, max_versions_per_model=4)
    drift = DriftMonitor({"m": CLASSES}, WINDOWS, alpha=0.01,
                         features=("predicted_class", "confidence"),
                         baselines={"m": _baseline()})
    labels = LabelMonitor({"m": CLASSES}, WINDOWS, 10_000, 86_400.0)
    seg = SegmentMonitor({"m": CLASSES}, {"m": segments}, WINDOWS, drift)
    labels.batch_listeners.append(seg.on_joined)
    engine.extensions.extend([drift, labels, seg])
    return engine, drift, labels, seg


def _value(e: PredictionEvent, key: str, folder_values: list[str]) -> str:
    v = None if e.segments is None else e.segments.get(key)
    if v is None:
        return "_none"
    return v if v in folder_values else "_other"


def test_values_beyond_max_values_fold_into_other_and_are_counted():
    f = ValueFolder(CAMERA)
    rows = f.rows(["c1", "c2", None, "c1", "c3", "c4", "c5", "c4"])
    assert f.names == ["_other", "_none", "c1", "c2", "c3"]
    assert rows.tolist() == [2, 3, 1, 2, 4, 0, 0, 0]
    assert f.folded == 3


def test_a_fixed_list_folds_every_other_value():
    f = ValueFolder(SITE)
    assert f.rows(["b", "z", "a", None, "y"]).tolist() == [3, 0, 2, 1, 0]
    assert f.folded == 2 and f.names == ["_other", "_none", "a", "b"]


def test_memory_stays_bounded_whatever_the_number_of_values():
    engine, _, _, seg = _stats()
    for i in range(20):
        evs = [e._replace(segments={"camera": f"cam{i}-{j}", "site": "a"})
               for j, e in enumerate(_events(50, seed=100 + i, t0=10_000.0 + i))]
        engine.apply_predictions(evs)
    state = seg.by_key[("m", "v1", "camera")]
    assert state.requests.shape == (CAMERA.capacity, 2)
    assert all(r.rows == CAMERA.capacity for r in state.drift.values())
    assert seg.folders[("m", "camera")].folded == 20 * 50 - 3
    snap = engine.snapshot()
    assert snap["visionmon_segment_values_folded_total"][("m", "camera")] == 997


def test_per_value_request_counts_equal_brute_force():
    engine, _, _, seg = _stats()
    evs = _events(2000, seed=2)
    engine.apply_predictions(evs[:700])
    engine.apply_predictions(evs[700:])
    got = engine.snapshot()["visionmon_segment_requests_total"]
    for key in ("camera", "site"):
        kept = seg.folders[("m", key)].names
        want: dict[tuple[str, ...], float] = {}
        for e in evs:
            k = ("m", "v1", key, _value(e, key, kept[2:]), "ok" if e.ok else "error")
            want[k] = want.get(k, 0.0) + 1
        assert {k: v for k, v in got.items() if k[2] == key and v} == want


def test_a_values_drift_equals_a_drift_monitor_fed_only_its_events():
    engine, _, _, _ = _stats((ALL_CAMERAS, SITE))
    evs = _events(3000, seed=3, shift_camera="c1")
    engine.apply_predictions(evs)
    snap = engine.snapshot()
    for cam in ("c0", "c1"):
        alone = DriftMonitor({"m": CLASSES}, WINDOWS, alpha=0.01,
                             features=("predicted_class", "confidence"),
                             baselines={"m": _baseline()})
        own = [e for e in evs if e.segments and e.segments["camera"] == cam]
        alone.on_predictions({("m", "v1"): EventGroup(own)})
        alone.watermark["m"] = evs[-1].ts  # the same right edge as the whole stream
        _assert_same_figures(snap, cam, alone.figures("m", "v1"))
    psi = snap["visionmon_segment_drift_psi"]
    th = snap["visionmon_segment_drift_threshold"]
    k1 = ("m", "v1", "camera", "c1", "predicted_class", "5m")
    k0 = ("m", "v1", "camera", "c0", "predicted_class", "5m")
    assert psi[k1] > th[k1] and psi[k0] < th[k0]


def _assert_same_figures(snap: dict, camera: str, figures: dict) -> None:
    """The camera's segment drift series equal `figures` ({(feature, window): figures}) of
    a DriftMonitor fed only that camera's events."""
    for (feature, window), f in figures.items():
        key = ("m", "v1", "camera", camera, feature, window)
        assert snap["visionmon_segment_drift_window_events"][key] == f.n
        assert snap["visionmon_segment_drift_psi"][key] == pytest.approx(f.psi)
        assert snap["visionmon_segment_drift_threshold"][key] == pytest.approx(f.threshold)


def test_a_values_accuracy_and_recall_equal_brute_force_over_its_labels():
    engine, _, labels, _ = _stats((ALL_CAMERAS, SITE))
    evs = _events(1500, seed=4)
    engine.apply_predictions(evs)
    rng = np.random.default_rng(5)
    truth = {e.request_id: (e.pred if rng.random() < 0.8 else int(rng.integers(0, 3)))
             for e in evs if e.ok}
    labels.apply_feedback([FeedbackEvent(r, y, evs[-1].ts) for r, y in truth.items()])
    snap = engine.snapshot()
    for cam in ("c0", "c2"):
        mine = [e for e in evs if e.ok and e.segments and e.segments["camera"] == cam]
        correct = sum(truth[e.request_id] == e.pred for e in mine)
        key = ("m", "v1", "camera", cam, "1h")
        assert snap["visionmon_segment_labelled_events"][key] == len(mine)
        assert snap["visionmon_segment_accuracy_ratio"][key] == \
            pytest.approx(correct / len(mine))
        for c, name in enumerate(CLASSES):
            of_c = [e for e in mine if truth[e.request_id] == c]
            recall = sum(e.pred == c for e in of_c) / len(of_c)
            got = snap["visionmon_segment_class_recall_ratio"][
                ("m", "v1", "camera", cam, name, "1h")]
            assert got == pytest.approx(recall)
        ece = snap["visionmon_segment_calibration_ece"][key]
        assert 0.0 <= ece <= 1.0


def test_the_checkpoint_round_trip_renders_the_same_series():
    engine, _, labels, _ = _stats()
    evs = _events(1200, seed=6, shift_camera="c2")
    engine.apply_predictions(evs)
    labels.apply_feedback([FeedbackEvent(e.request_id, e.pred, evs[-1].ts) for e in evs[:400]
                           if e.ok])
    _assert_restores_the_same_series(engine, _stats()[0])


def _assert_restores_the_same_series(engine: Engine, again: Engine) -> dict:
    """`again` restored from `engine`'s checkpoint renders the same segment series;
    returns `engine`'s snapshot."""
    before = engine.snapshot()
    again.restore(decode(encode(engine.state())))
    after = again.snapshot()
    for name in [n for n in before if n.startswith("visionmon_segment_")]:
        assert after[name] == pytest.approx(before[name]), name
    return before


def test_a_changed_values_list_restores_that_key_empty():
    engine, _, _, _ = _stats()
    engine.apply_predictions(_events(300, seed=7))
    state = decode(encode(engine.state()))
    again, _, _, seg = _stats((CAMERA, SegmentConfig(key="site", values=["b", "a"])))
    again.restore(state)
    assert ("m", "v1", "site") not in seg.by_key
    assert seg.by_key[("m", "v1", "camera")].requests.sum() == 300


def test_the_state_size_per_key_is_what_it_allocates():
    engine, _, labels, seg = _stats()
    evs = _events(200, seed=8)
    engine.apply_predictions(evs)
    labels.apply_feedback([FeedbackEvent(e.request_id, 0, evs[-1].ts) for e in evs if e.ok])
    seg.on_shadow("m", "v1", [(e.segments, e.ts, True) for e in evs])
    s = seg.by_key[("m", "v1", "camera")]
    bins = [r.bins for r in s.drift.values()]
    floats = sum(ring._counts.size for r in [*s.drift.values(), s.labels, s.shadow]
                 for ring in r.windows.rings) + s.requests.size
    assert key_state_floats(CAMERA.capacity, 3, bins, len(WINDOWS), 6) == floats


@pytest.mark.parametrize("spread_s", [0.0, 5.0, 900.0], ids=["one slice", "one slice of each",
                                                             "across slices"])
def test_a_few_events_into_many_bins_count_as_a_count_vector_would(spread_s):
    """The windows add a batch far smaller than their bins event by event (a segment's
    rows x classes); the totals equal those of adding its count vector."""
    from monitor.windows import WindowedCounts

    rng = np.random.default_rng(9)
    bins = 52 * 1001
    few, dense = WindowedCounts(WINDOWS, bins), WindowedCounts(WINDOWS, bins)
    for b in range(4):
        ts = 10_000.0 + b * 7.0 + rng.uniform(0, spread_s, 200)
        idx = rng.integers(0, bins, 200)
        few.add(ts, idx)
        dense.add(ts, idx, counts=np.bincount(idx, minlength=bins).astype(float))
    now = 10_000.0 + 21.0 + spread_s
    for window, total in few.totals(now).items():
        assert np.array_equal(total, dense.totals(now)[window])
        assert total.sum() > 0


def test_a_values_shadow_agreement_counts_its_joined_images():
    engine, _, _, seg = _stats((ALL_CAMERAS, SITE))
    seg.min_shadow_images = 10
    evs = _events(600, seed=10)
    engine.apply_predictions(evs)
    rng = np.random.default_rng(11)
    joins = [(e.segments, e.ts, bool(rng.random() < 0.7)) for e in evs if e.ok]
    seg.on_shadow("m", "v1", joins)
    snap = engine.snapshot()
    for cam in ("c0", "c4"):
        mine = [ok for segs, _, ok in joins if segs and segs["camera"] == cam]
        key = ("m", "v1", "camera", cam, "1h")
        assert snap["visionmon_segment_shadow_images"][key] == len(mine)
        assert snap["visionmon_segment_shadow_agreement_ratio"][key] == \
            pytest.approx(sum(mine) / len(mine))
    assert seg.folders[("m", "camera")].folded == 0  # counted when the predictions came
    again, _, _, _ = _stats((ALL_CAMERAS, SITE))
    again.restore(decode(encode(engine.state())))
    after = again.snapshot()
    assert after["visionmon_segment_shadow_images"] == snap["visionmon_segment_shadow_images"]


def test_predictions_waiting_for_their_image_restore_from_a_checkpoint_without_segments():
    """A checkpoint written before segments holds a waiting prediction as three values;
    one written now keeps its segments, which its image takes when the two join."""
    from monitor.shadow import ShadowMonitor

    _, drift, _, seg = _stats((ALL_CAMERAS,))
    shadow = ShadowMonitor({"m": CLASSES}, WINDOWS, drift)
    shadow.batch_listeners.append(seg.on_shadow)
    old = {"predictions": {"entries": [["r-old", 10_000.0, ["v1", 2, 0.9]]], "evicted": {}},
           "early": {"entries": [], "evicted": {}}, "versions": []}
    shadow.restore(old)
    assert shadow.predictions.pop("r-old").segments is None
    new = {**old, "predictions": {"entries": [["r-new", 10_000.0,
                                               ["v1", 2, 0.9, {"camera": "c7"}]]],
                                  "evicted": {}}}
    shadow.restore(decode(encode(new)))
    assert shadow.predictions.pop("r-new").segments == {"camera": "c7"}


def _images(evs: list[PredictionEvent], seed: int, shift_camera: str | None = None,
            own: bool = False):
    """A scored image per successful prediction; the shifted camera's are darker. `own`:
    each image carries its prediction's segments as its own headers (else none)."""
    from monitor.scored import INPUT_FEATURES, ScoredImage

    rng = np.random.default_rng(seed)
    out = []
    for e in evs:
        if not e.ok:
            continue
        feats = rng.uniform(0.2, 0.8, len(INPUT_FEATURES))
        if shift_camera and e.segments and e.segments["camera"] == shift_camera:
            feats[0] = rng.uniform(0.0, 0.3)  # brightness
        out.append(ScoredImage(e.request_id, e.model, e.version, e.ts + 0.01, e.pred, 0.9,
                               rng.normal(size=8).astype(np.float32), tuple(feats.tolist()),
                               segments=e.segments if own else None))
    return out


@functools.cache
def _image_baseline():
    """`_baseline` with an image profile (built once: its MMD null takes seconds)."""
    from monitor.baseline import with_images

    return with_images(_baseline(), _images(_events(1500, seed=12, t0=1000.0), seed=13), k=5)


def _image_stats(segments=(ALL_CAMERAS, SITE)):
    """`_stats` with a baseline that has an image profile and a shadow monitor feeding the
    segment statistics."""
    from monitor.shadow import ShadowMonitor

    engine, drift, _, seg = _stats(segments)
    drift.set_baseline(_image_baseline())
    shadow = ShadowMonitor({"m": CLASSES}, WINDOWS, drift)
    shadow.batch_listeners.append(seg.on_shadow)
    shadow.feature_listeners.append(seg.on_input_features)
    engine.extensions.append(shadow)
    return engine, drift, shadow, seg


@pytest.mark.parametrize("own", [False, True], ids=["inherited through the join",
                                                    "from the image's own headers"])
def test_a_values_input_feature_drift_equals_a_drift_monitor_fed_only_its_images(own):
    from monitor.scored import INPUT_FEATURES

    engine, drift, shadow, _ = _image_stats()
    evs = _events(2400, seed=14, shift_camera="c1")
    engine.apply_predictions(evs)
    images = _images(evs, seed=15, shift_camera="c1", own=own)
    shadow.apply_scored(images)
    snap = engine.snapshot()
    seg_of = {e.request_id: e.segments for e in evs}
    for cam in ("c0", "c1"):
        alone = DriftMonitor({"m": CLASSES}, WINDOWS, alpha=0.01,
                             features=("predicted_class", "confidence"),
                             baselines={"m": drift.baselines["m"]})
        mine = [i for i in images if (seg_of[i.request_id] or {}).get("camera") == cam]
        ts = np.array([i.ts for i in mine])
        for j, name in enumerate(INPUT_FEATURES):
            alone.add_values("m", "v1", name, ts, np.array([i.features[j] for i in mine]))
        alone.watermark["m"] = images[-1].ts  # the same right edge as the whole stream
        figures = {k: f for k, f in alone.figures("m", "v1").items() if k[0] in INPUT_FEATURES}
        assert len(figures) == len(INPUT_FEATURES) * len(WINDOWS)
        _assert_same_figures(snap, cam, figures)
    psi = snap["visionmon_segment_drift_psi"]
    th = snap["visionmon_segment_drift_threshold"]
    for cam in ("c0", "c2", "c3", "c4"):
        k = ("m", "v1", "camera", cam, "brightness", "1h")
        assert psi[k] < th[k], cam
    k1 = ("m", "v1", "camera", "c1", "brightness", "1h")
    assert psi[k1] > th[k1]


def test_input_feature_rows_round_trip_a_checkpoint():
    engine, _, shadow, _ = _image_stats()
    evs = _events(900, seed=16, shift_camera="c3")
    engine.apply_predictions(evs)
    shadow.apply_scored(_images(evs, seed=17, shift_camera="c3"))
    before = _assert_restores_the_same_series(engine, _image_stats()[0])
    assert any(k[4] == "brightness" for k in before["visionmon_segment_drift_psi"])


def test_the_budget_counts_the_input_features_when_a_reference_model_scores_images():
    from monitor.config import load_config
    from monitor.reference_config import ReferenceConfig
    from monitor.scored import INPUT_FEATURES
    from monitor.segment_budget import segment_state_bytes

    loaded = load_config("examples/visionmon.yaml")
    cfg = loaded.config
    ref = ReferenceConfig.model_construct(model="digits", path="r.pt", sha256="0" * 64)
    scored = loaded.model_copy(update={"config": cfg.model_copy(update={"reference": ref})})
    k = cfg.baseline.quantile_bins
    slices, versions = len(cfg.windows.sizes) * cfg.windows.segment_slices, \
        cfg.limits.max_versions_per_model
    for (model, key, without), (_, _, with_images) in zip(
            segment_state_bytes(loaded), segment_state_bytes(scored), strict=True):
        rule = next(r for r in loaded.models[model].segments if r.key == key)
        extra = rule.capacity * len(INPUT_FEATURES) * (k + 1) * slices * 8 * versions
        assert with_images - without == extra, key
