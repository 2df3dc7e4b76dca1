"""Image quality features (sharpness, JPEG quality, duplicates) against independent oracles:
scipy's Laplacian, the quality Pillow's libjpeg was told, per-bit brute force; and how the
baseline bins them (absence of a JPEG quality has a bin of its own; older baselines without
these features still load and are fed only what they profiled)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter
from scipy import ndimage

from monitor.baseline import build_baseline, from_dict, to_dict
from monitor.events import PredictionEvent
from monitor.reference_config import DuplicatesConfig, ImagesConfig
from monitor.scored import INPUT_FEATURES, JPEG_QUALITY_ABSENT, MEASURED_FEATURES, ScoredImage
from reference_model.duplicates import DuplicateWindow
from reference_model.image_quality import (
    difference_hash,
    jpeg_quality_estimate,
    laplacian_variance,
    min_hamming,
)
from reference_model.intake import DecodedImage, ImageIntake

FEATURE = {name: i for i, name in enumerate(MEASURED_FEATURES)}


def photo(seed: int = 0, side: int = 96) -> np.ndarray:
    """A smooth random picture with some edges (a blurred noise field plus a square)."""
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random((side, side, 3)) * 255, sigma=(4, 4, 0))
    base[side // 4: side // 2, side // 4: side // 2] = (230, 40, 40)
    return np.clip(base, 0, 255).astype(np.uint8)


def encode(arr: np.ndarray, fmt: str, **kw: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, fmt, **kw)
    return out.getvalue()


def decode(data: bytes) -> DecodedImage:
    got = ImageIntake(ImagesConfig(), 32).decode(data)
    assert isinstance(got, DecodedImage), got
    return got


def popcount(x: int) -> int:
    return bin(x).count("1")


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (128, 128), (40, 9)])
def test_laplacian_variance_is_the_variance_of_scipys_laplacian_with_nearest_borders(
        shape: tuple[int, int]) -> None:
    grey = np.random.default_rng(sum(shape)).random(shape) * 255
    want = float(np.var(ndimage.laplace(grey, mode="nearest")))
    assert laplacian_variance(grey) == pytest.approx(want, rel=1e-12, abs=1e-9)
    grey8 = grey.astype(np.uint8)  # what the intake hands it: worked in integers
    want8 = float(np.var(ndimage.laplace(grey8.astype(np.float64), mode="nearest")))
    assert laplacian_variance(grey8) == pytest.approx(want8, rel=1e-12, abs=1e-9)


def test_a_flat_image_has_zero_sharpness_and_blur_lowers_it() -> None:
    assert laplacian_variance(np.full((16, 16), 77.0)) == 0.0
    sharp = Image.fromarray(photo())
    blurred = sharp.filter(ImageFilter.GaussianBlur(2))
    s = decode(encode(np.asarray(sharp), "PNG")).features[FEATURE["sharpness"]]
    b = decode(encode(np.asarray(blurred), "PNG")).features[FEATURE["sharpness"]]
    assert 0 < b < s / 2


def test_the_jpeg_quality_pillow_was_given_is_recovered_for_every_setting() -> None:
    arr = photo(1)
    for q in range(1, 101):
        data = encode(arr, "JPEG", quality=q)
        assert jpeg_quality_estimate(Image.open(io.BytesIO(data)).quantization) == q
        if q in (10, 75, 95):
            assert decode(data).features[FEATURE["jpeg_quality"]] == q


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_a_file_that_states_no_jpeg_quality_gets_the_absent_value(fmt: str) -> None:
    assert decode(encode(photo(), fmt)).features[FEATURE["jpeg_quality"]] == JPEG_QUALITY_ABSENT
    assert jpeg_quality_estimate(None) == JPEG_QUALITY_ABSENT


def test_the_difference_hash_sets_each_bit_as_a_per_pixel_loop_does() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        grey = rng.integers(0, 4, size=(8, 9)).astype(np.float64)  # many ties
        want = 0
        for r in range(8):
            for c in range(8):
                want = (want << 1) | int(grey[r, c + 1] > grey[r, c])
        assert difference_hash(grey) == want


def test_min_hamming_is_the_brute_force_minimum_of_bit_differences() -> None:
    rng = np.random.default_rng(4)
    hashes = rng.integers(0, 2**63, size=200, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    for h in (int(x) for x in rng.integers(0, 2**63, size=20, dtype=np.uint64)):
        want = min(popcount(h ^ int(o)) for o in hashes)
        assert min_hamming(h, hashes) == want
    assert min_hamming(5, np.zeros(0, dtype=np.uint64)) == 64


def test_the_duplicate_flag_looks_back_exactly_window_images_within_max_distance() -> None:
    rng = np.random.default_rng(5)
    pool = [int(x) for x in rng.integers(0, 2**63, size=30, dtype=np.uint64)]
    # repeats of a small pool, some with a flipped bit or three
    seq = [pool[i] ^ (int(rng.integers(0, 2**63)) & flip)
           for i, flip in zip(rng.integers(0, 30, size=400), rng.choice([0, 1, 7], size=400),
                              strict=True)]
    window, d = 25, 2
    dups = DuplicateWindow(DuplicatesConfig(window=window, max_distance=d))
    got = [dups.flag("m", h) for h in seq]
    want = [float(any(popcount(seq[i] ^ seq[j]) <= d for j in range(max(0, i - window), i)))
            for i in range(len(seq))]
    assert got == want and 0 < sum(got) < len(got)
    assert dups.flag("other", seq[-1]) == 0.0  # each model has its own window


def test_the_same_picture_at_another_jpeg_quality_is_a_duplicate_and_another_is_not() -> None:
    dups = DuplicateWindow(ImagesConfig().duplicates)
    first = decode(encode(photo(6), "JPEG", quality=95))
    again = decode(encode(photo(6), "JPEG", quality=60))
    other = decode(encode(photo(7), "JPEG", quality=95))
    assert dups.features("m", first.features, first.dhash)[-1] == 0.0
    assert dups.features("m", again.features, again.dhash)[-1] == 1.0
    assert dups.features("m", other.features, other.dhash)[-1] == 0.0
    assert len(dups.features("m", other.features, other.dhash)) == len(INPUT_FEATURES)


def _baseline_from(qualities: list[float]):  # type: ignore[no-untyped-def]
    evs = [PredictionEvent(f"r{i}", float(i), "m", "v1", True, 0, 0.9, 0.5, 0.3, 0.01)
           for i in range(len(qualities))]
    rng = np.random.default_rng(8)
    images = []
    for e, q in zip(evs, qualities, strict=True):
        feats = [float(x) for x in rng.random(len(INPUT_FEATURES))]
        feats[INPUT_FEATURES.index("jpeg_quality")] = q
        feats[INPUT_FEATURES.index("duplicate")] = 0.0
        images.append(ScoredImage(e.request_id, "m", "v1", e.ts, 0, 0.9,
                                  rng.normal(size=8).astype(np.float32), tuple(feats)))
    return build_baseline("m", ["a", "b"], evs, images=images)


def test_absence_of_a_jpeg_quality_has_a_bin_of_its_own_whatever_the_quantiles() -> None:
    rng = np.random.default_rng(9)
    qualities = [float(q) for q in rng.integers(70, 96, size=400)]
    qualities[:8] = [JPEG_QUALITY_ABSENT] * 8  # 2 % PNG: below any quantile edge
    prof = _baseline_from(qualities).features["jpeg_quality"]
    assert prof.edges[0] == JPEG_QUALITY_ABSENT and prof.counts[0] == 8
    assert prof.bin_of(np.array([JPEG_QUALITY_ABSENT, 1.0, 70.0]))[0] == 0
    assert (prof.bin_of(np.array([1.0, 70.0])) > 0).all()
    # a baseline without a single PNG still keeps the bin, empty: PNGs appearing is drift
    none = _baseline_from([float(q) for q in rng.integers(70, 96, size=400)])
    assert none.features["jpeg_quality"].counts[0] == 0
    # no duplicate at all: the duplicate bin is there, empty
    dup = none.features["duplicate"]
    assert dup.edges.tolist() == [0.0] and dup.counts.tolist() == [400.0, 0.0]


def test_a_baseline_written_before_these_features_loads_and_is_fed_only_its_own() -> None:
    from monitor.drift import DriftMonitor
    from monitor.windows import WindowSpec

    new = _baseline_from([80.0] * 200)
    old = to_dict(new)
    for name in ("sharpness", "jpeg_quality", "duplicate"):
        del old["features"][name]
    loaded = from_dict(old)
    assert "sharpness" not in loaded.features and "brightness" in loaded.features
    drift = DriftMonitor({"m": ("a", "b")}, (WindowSpec("5m", 300, 30),),
                         baselines={"m": loaded})
    ts = np.arange(10.0)
    drift.add_values("m", "v1", "sharpness", ts, np.full(10, 50.0))  # skipped, no error
    drift.add_values("m", "v1", "brightness", ts, np.full(10, 0.5))
    cumulative = drift.by_version[("m", "v1")].cumulative
    assert set(cumulative) == set(loaded.features) and cumulative["brightness"].sum() == 10


def test_images_collected_before_these_features_profile_only_the_ones_they_have() -> None:
    """A checkpoint's images collected towards a first-events image profile carry the nine
    older features: the profile bins those and leaves the later ones out."""
    from monitor.baseline import with_images

    evs = [PredictionEvent(f"r{i}", float(i), "m", "v1", True, 0, 0.9, 0.5, 0.3, 0.01)
           for i in range(200)]
    base = build_baseline("m", ["a", "b"], evs)
    rng = np.random.default_rng(10)
    old = [ScoredImage(f"o{i}", "m", "v1", float(i), 0, 0.9,
                       rng.normal(size=8).astype(np.float32),
                       tuple(float(x) for x in rng.random(9))) for i in range(200)]
    profiled = with_images(base, old)
    assert "brightness" in profiled.features and "bytes" in profiled.features
    assert not {"sharpness", "jpeg_quality", "duplicate"} & set(profiled.features)
