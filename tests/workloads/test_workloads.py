"""The real-image workloads build offline from packages, cache what they compute, and apply
every shift as specified."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.workloads import clipart
from benchmarks.workloads.shifts import (
    CLEAN,
    CORRUPTIONS,
    IMAGE_SHIFTS,
    SKEWS,
    apply_shift,
    rgb_to_hsv,
)
from benchmarks.workloads.workload import Workload, load_workload, workload_folder
from monitor.scored import INPUT_FEATURES

pytestmark = pytest.mark.slow  # left out of `make test-fast`

FEATURE = {name: i for i, name in enumerate(INPUT_FEATURES)}


# --- the data ------------------------------------------------------------------------------


def test_debian_clip_art_gives_5000_distinct_images_in_at_least_10_classes_of_100() -> None:
    items = clipart.catalogue(clipart.clipart_root())
    classes = clipart.classes_of(items)
    chosen = clipart.select(items, classes, per_class=1000, seed=0)
    assert len(classes) >= 10
    assert len(chosen) >= 5000 and len({it.path for it in chosen}) == len(chosen)
    per_class = {c: sum(it.category == c for it in chosen) for c in classes}
    assert min(per_class.values()) >= 100


# --- building and the cache ----------------------------------------------------------------


@pytest.mark.parametrize(("fixture", "min_classes", "chance"), [
    ("clipart_small", 10, 0.1), ("imagenet_small", 1000, 0.001)])
def test_a_small_workload_builds_and_both_models_beat_chance(
        fixture: str, min_classes: int, chance: float, request: pytest.FixtureRequest) -> None:
    wl: Workload = request.getfixturevalue(fixture)
    clean = wl.outputs()
    n = len(wl.sources)
    assert wl.manifest["complete"] and len(wl.classes) >= min_classes
    assert clean.production_probs.shape == clean.reference_probs.shape == (n, len(wl.classes))
    assert clean.production_embedding.shape == clean.reference_embedding.shape == (n, 1280)
    assert clean.features.shape == (n, len(INPUT_FEATURES))
    production, reference = clean.accuracy()
    assert production > 2 * chance and reference > 2 * chance
    assert (wl.folder / "reference.pt2").exists()


def test_a_built_workload_is_read_from_its_cache_not_built_again(
        clipart_small: Workload, workload_cache: Path) -> None:
    said: list[str] = []
    again = load_workload("clipart", "small", workload_cache, said.append)
    assert said == []
    assert again.folder == clipart_small.folder == workload_folder("clipart", "small",
                                                                   workload_cache)
    assert again.manifest["build_seconds"] == clipart_small.manifest["build_seconds"]


def test_an_image_shift_is_rendered_once_then_read_back(clipart_small: Workload) -> None:
    first = clipart_small.images("gaussian_blur", 5)
    assert (clipart_small.folder / "variants" / "gaussian_blur-s5.npz").exists()
    assert Workload(clipart_small.folder).images("gaussian_blur", 5) == first
    blurred = clipart_small.outputs("gaussian_blur", 5).features[:, FEATURE["contrast"]]
    clean = clipart_small.outputs().features[:, FEATURE["contrast"]]
    assert blurred.mean() < clean.mean()


def test_a_limited_pool_is_a_prefix_of_the_full_one(imagenet_small: Workload) -> None:
    limited = Workload(imagenet_small.folder, pool_limit=10)
    full = imagenet_small.outputs()
    part = limited.outputs()
    assert len(limited.images(CLEAN)) == 10 == len(part.labels)
    np.testing.assert_array_equal(part.reference_probs, full.reference_probs[:10])


# --- streams ---------------------------------------------------------------------------------


def test_a_clean_stream_serves_pool_images_with_their_labels(imagenet_small: Workload) -> None:
    clean = imagenet_small.outputs()
    pool = imagenet_small.images(CLEAN)
    items = list(imagenet_small.stream(CLEAN, 0, 200, seed=1))
    assert len(items) == 200
    for it in items:
        assert it.image == pool[it.index]
        assert it.label == clean.labels[it.index]
        np.testing.assert_array_equal(it.probs, clean.production_probs[it.index])


def test_label_noise_replaces_the_stated_share_of_labels(clipart_small: Workload) -> None:
    labels = clipart_small.outputs().labels
    items = list(clipart_small.stream("label_noise", 5, 2000, seed=2))
    wrong = np.mean([it.label != labels[it.index] for it in items])
    assert 0.45 < wrong < 0.55  # level 0.5; binomial sd 0.011


def test_a_subpopulation_shift_concentrates_draws_on_a_few_groups(
        clipart_small: Workload) -> None:
    groups = clipart_small.groups
    def top3_share(shift: str, severity: int) -> float:
        drawn = [groups[it.index] for it in clipart_small.stream(shift, severity, 2000, 3)]
        counts = sorted((drawn.count(g) for g in set(drawn)), reverse=True)
        return sum(counts[:3]) / len(drawn)
    assert top3_share("subpopulation", 5) > 0.65 > top3_share(CLEAN, 0) + 0.2  # level 0.7


def test_a_bad_model_version_disagrees_more_with_the_reference(imagenet_small: Workload) -> None:
    def agreement(shift: str, severity: int) -> float:
        o = imagenet_small.outputs(shift, severity)
        return float((o.production_probs.argmax(1) == o.reference_probs.argmax(1)).mean())
    assert agreement("bad_version", 5) < agreement(CLEAN, 0) - 0.2
    assert agreement("bad_version", 1) >= agreement("bad_version", 5)


# --- the shifts themselves ---------------------------------------------------------------------


def source_rgba() -> Image.Image:
    """A red disc with soft texture on a transparent background (like the clip art)."""
    yy, xx = np.mgrid[0:96, 0:96]
    inside = (yy - 48) ** 2 + (xx - 48) ** 2 < 30 ** 2
    rgba = np.zeros((96, 96, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 1] = 40 + (xx % 16) * 4
    rgba[..., 2] = 60
    rgba[..., 3] = np.where(inside, 255, 0)
    return Image.fromarray(rgba, "RGBA")


def render(shift: str, severity: int) -> np.ndarray:
    out = apply_shift(source_rgba(), shift, severity, np.random.default_rng(0))
    return np.asarray(out, dtype=np.float64)


@pytest.mark.parametrize("shift", sorted(CORRUPTIONS))
def test_each_corruption_moves_the_image_further_at_severity_5_than_at_1(shift: str) -> None:
    clean = render(CLEAN, 0)
    mild, severe = (np.abs(render(shift, s) - clean).mean() for s in (1, 5))
    assert 0 < mild < severe


CHECKS = [
    ("brightness brightens", "brightness", lambda c, s: s.mean() > c.mean() + 5),
    ("contrast flattens", "contrast",
     lambda c, s: np.all(s.std(axis=(0, 1)) < 0.2 * c.std(axis=(0, 1)) + 1)),
    ("saturation 5 saturates", "saturation",
     lambda c, s: rgb_to_hsv(s / 255)[..., 1].mean() > rgb_to_hsv(c / 255)[..., 1].mean()),
    ("alpha over black darkens the background", "alpha_black",
     lambda c, s: c[0, 0].tolist() == [255] * 3 and s[0, 0].tolist() == [0] * 3),
    ("channel swap writes BGR", "channel_swap",
     lambda c, s: np.array_equal(s, c[..., ::-1])),
    ("a wrong resize makes 2x2 blocks", "wrong_resize",
     lambda c, s: np.array_equal(s[0::2, 0::2], s[1::2, 1::2]) and not np.array_equal(s, c)),
]


@pytest.mark.parametrize(("case", "shift", "check"), CHECKS, ids=[c[0] for c in CHECKS])
def test_each_shift_does_what_it_says_at_severity_5(case: str, shift: str, check: object) -> None:
    assert check(render(CLEAN, 0), render(shift, 5))  # type: ignore[operator]


def test_skews_hit_the_stated_share_of_images() -> None:
    rng = np.random.default_rng(4)
    src = source_rgba()
    hits = [np.asarray(apply_shift(src, "alpha_black", 2, rng))[0, 0, 0] == 0
            for _ in range(400)]
    assert 0.18 < np.mean(hits) < 0.32  # level 0.25; binomial sd 0.022


def test_every_image_shift_has_five_severities_and_encodes() -> None:
    assert set(SKEWS) <= set(IMAGE_SHIFTS) and len(IMAGE_SHIFTS) == 11
    for name, shift in IMAGE_SHIFTS.items():
        assert len(shift.levels) == 5, name
        buf = io.BytesIO()
        apply_shift(source_rgba(), name, 3, np.random.default_rng(0)).save(buf, "PNG")
        assert buf.tell() > 0
