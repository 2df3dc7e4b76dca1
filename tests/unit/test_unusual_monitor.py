"""The unusual-input windows: the ratio of images above the baseline's 99th percentile and
its critical value (against a brute-force binomial tail), the baseline-rank histogram, the
gallery seam, older baselines exporting nothing, and the state through a checkpoint."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from collectors.checkpoint import decode, encode
from monitor.baseline import Baseline, build_baseline
from monitor.events import PredictionEvent
from monitor.gallery import FailureGallery
from monitor.reference_config import GalleryConfig
from monitor.scored import INPUT_FEATURES, ScoredImage
from monitor.snapshot import HistogramValue, SnapshotBuilder
from monitor.stats.unusual import exceedance_critical
from monitor.unusual_monitor import UnusualMonitor, baseline_rank, critical_ratio
from monitor.windows import WindowSpec
from reference_model.intake import thumbnail_jpeg

CLASSES = ("a", "b", "c")
DIM = 6
N = 700
SHIFT = np.r_[3.0, np.zeros(DIM - 1)]
WINDOWS = (WindowSpec("1h", 3600.0, 60), WindowSpec("1d", 86400.0, 24))


def _images(n: int, seed: int, odd: bool = False, t0: float = 0.0) -> list[ScoredImage]:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, DIM)) + (-SHIFT if odd else SHIFT)
    energy = rng.normal(-8, 1, n) + (6 if odd else 0)
    feats = rng.uniform(0, 1, size=(n, len(INPUT_FEATURES)))
    return [ScoredImage(f"i{seed}-{k}", "m", "v1", t0 + k, 0, 0.9, emb[k].astype(np.float32),
                        tuple(feats[k].tolist()), energy=float(energy[k])) for k in range(n)]


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    evs = [PredictionEvent(f"i1-{i}", 1.0, "m", "v1", True, i % 3, 0.9, 0.5, 0.5, 0.01)
           for i in range(N)]
    return build_baseline("m", CLASSES, evs, images=_images(N, 1))


def _monitor(baseline: Baseline | None, watermark: float = 1000.0) -> UnusualMonitor:
    return UnusualMonitor(WINDOWS, lambda m: baseline if m == "m" else None,
                          lambda _m: watermark, alpha=0.005, min_images=20)


def _series(mon: UnusualMonitor) -> dict[str, dict[tuple[str, ...], object]]:
    b = SnapshotBuilder()
    mon.capture().render(b)
    return b.build()


def test_the_critical_ratio_is_the_critical_count_of_the_profiles_test(baseline) -> None:  # type: ignore[no-untyped-def]
    prof = baseline.unusual["energy"]
    assert prof.images == N and prof.above == np.sum(
        prof.counts[np.searchsorted(prof.edges, prof.p99) + 1:])
    for n in (20, 100, 1000):
        want = exceedance_critical(n, 0.005, prof.above, prof.images) / n
        assert critical_ratio(n, 0.005, prof) == want


def test_clean_images_stay_under_the_threshold_and_unusual_ones_cross_it(baseline) -> None:  # type: ignore[no-untyped-def]
    for odd, crosses in ((False, False), (True, True)):
        mon = _monitor(baseline)
        mon.apply_scored(_images(500, 2, odd=odd, t0=500.0))
        got = _series(mon)
        for score in ("knn", "energy"):
            key = ("m", "v1", "1h", score)
            ratio = got["visionmon_unusual_input_ratio"][key]
            threshold = got["visionmon_unusual_input_ratio_threshold"][key]
            assert bool(ratio > threshold) is crosses, (score, odd, ratio, threshold)


def test_the_ratio_counts_exactly_the_images_above_the_99th_percentile(baseline) -> None:  # type: ignore[no-untyped-def]
    images = _images(300, 3, t0=600.0)
    mon = _monitor(baseline)
    mon.apply_scored(images)
    energy = np.array([im.energy for im in images])
    want = float(np.mean(energy > baseline.unusual["energy"].p99))
    assert _series(mon)["visionmon_unusual_input_ratio"][("m", "v1", "1d", "energy")] == want


def test_the_rank_histogram_puts_images_above_the_percentile_in_the_top_bucket(baseline) -> None:  # type: ignore[no-untyped-def]
    mon = _monitor(baseline)
    images = _images(200, 4, odd=True, t0=700.0)
    mon.apply_scored(images)
    hist = _series(mon)["visionmon_unusual_input_rank"][("m", "v1", "energy")]
    assert isinstance(hist, HistogramValue)
    energy = np.array([im.energy for im in images])
    assert hist.counts[-2] == np.sum(energy > baseline.unusual["energy"].p99)  # le=1.0
    assert sum(hist.counts) == 200 and hist.counts[-1] == 0                    # +Inf empty


def test_the_rank_of_each_baseline_edge_is_its_share_of_baseline_images(baseline) -> None:  # type: ignore[no-untyped-def]
    prof = baseline.unusual["knn"]
    ranks = baseline_rank(prof.edges, prof)
    cum = np.cumsum(prof.counts)[:-1] / prof.counts.sum()
    np.testing.assert_allclose(ranks, cum)
    assert baseline_rank(np.array([prof.p99 + 1e-9]), prof)[0] == 1.0


def test_a_baseline_without_profiles_exports_nothing() -> None:
    mon = _monitor(None)
    mon.apply_scored(_images(100, 5))
    assert _series(mon) == {}


def test_a_window_with_too_few_images_has_no_ratio(baseline) -> None:  # type: ignore[no-untyped-def]
    mon = _monitor(baseline)
    mon.apply_scored(_images(19, 6, odd=True, t0=900.0))
    assert "visionmon_unusual_input_ratio" not in _series(mon)


def test_images_above_a_percentile_enter_the_gallery_with_their_excess(baseline) -> None:  # type: ignore[no-untyped-def]
    gallery = FailureGallery({"m": CLASSES}, GalleryConfig(enabled=True, size=200,
                                                           waiting=200), False)
    mon = _monitor(baseline)
    mon.gallery = gallery
    thumb = thumbnail_jpeg(Image.new("RGB", (32, 32), (10, 200, 30)), 96)
    images = [replace(im, thumbnail=thumb) for im in
              _images(50, 7, odd=True, t0=900.0) + _images(50, 8, t0=950.0)]
    gallery.on_scored(images)
    mon.apply_scored(images)
    shown = gallery.entries()    # the odd images have ts 900-949, the clean ones 950-999
    assert sum(e.ts < 950 for e in shown) == 50 and sum(e.ts >= 950 for e in shown) < 10
    assert all(e.reasons == ("unusual",) and e.score is not None and e.score > 0
               for e in shown)


def test_the_windows_and_histograms_round_trip_through_a_checkpoint(baseline) -> None:  # type: ignore[no-untyped-def]
    mon = _monitor(baseline)
    mon.apply_scored(_images(300, 9, odd=True, t0=100.0) + _images(300, 10, t0=400.0))
    again = _monitor(baseline)
    again.restore(decode(encode(mon.state())))
    assert repr(sorted(_series(again).items())) == repr(sorted(_series(mon).items()))
