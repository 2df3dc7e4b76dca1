"""The baseline's unusualness profiles: built from its own scored images (kNN distances
leave-one-out for sample rows, the scorer's energies), saved and loaded with the file's
hash, absent from older files, refused when malformed; and a window's images scored
against them."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.baseline import BaselineError, build_baseline, from_dict, load, save, to_dict
from monitor.events import PredictionEvent
from monitor.scored import INPUT_FEATURES, ScoredImage
from monitor.stats.unusual import DEFAULT_KNN_K
from monitor.unusual import MIN_PROFILE_VALUES, image_scores

CLASSES = ("a", "b", "c")
DIM = 6
N = 700
SHIFT = np.r_[3.0, np.zeros(DIM - 1)]   # the baseline's embeddings point one way


def _events(n: int) -> list[PredictionEvent]:
    return [PredictionEvent(f"i1-{i}", 1.0, "m", "v1", True, i % 3, 0.9, 0.5, 0.5, 0.01)
            for i in range(n)]


def _images(n: int, seed: int, energy: bool = True) -> list[ScoredImage]:
    rng = np.random.default_rng(seed)
    emb = (rng.normal(size=(n, DIM)) + SHIFT).astype(np.float32)
    en = rng.normal(-8, 1, n) if energy else np.full(n, np.nan)
    feats = rng.uniform(0, 1, size=(n, len(INPUT_FEATURES)))
    return [ScoredImage(f"i{seed}-{k}", "m", "v1", k * 0.1, 0, 0.9, emb[k],
                        tuple(feats[k].tolist()), energy=float(en[k])) for k in range(n)]


@pytest.fixture(scope="module")
def images() -> list[ScoredImage]:
    return _images(N, 1)


@pytest.fixture(scope="module")
def baseline(images):  # type: ignore[no-untyped-def]
    return build_baseline("m", CLASSES, _events(N), images=images)


def _brute_knn(images: list[ScoredImage], sample: np.ndarray) -> np.ndarray:
    emb = np.stack([np.asarray(im.embedding, np.float64) for im in images])
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    s = sample / np.linalg.norm(sample, axis=1, keepdims=True)
    d = np.sqrt(((e[:, None, :] - s[None, :, :]) ** 2).sum(axis=2))
    own = [any(np.array_equal(row, r) for r in sample) for row in emb]
    return np.array([np.sort(row)[DEFAULT_KNN_K - 1 + int(o)] for row, o in zip(d, own,
                                                                                strict=True)])


def test_each_score_keeps_the_99th_percentile_of_the_baseline_images(baseline, images) -> None:  # type: ignore[no-untyped-def]
    assert set(baseline.unusual) == {"knn", "energy"}
    knn = _brute_knn(images, baseline.embedding.sample)
    energy = np.array([im.energy for im in images])
    for name, values in (("knn", knn), ("energy", energy)):
        prof = baseline.unusual[name]
        assert prof.p99 == pytest.approx(np.quantile(values, 0.99), rel=1e-9)
        assert prof.p99 in prof.edges and prof.counts.sum() == N
        assert prof.counts[np.searchsorted(prof.edges, prof.p99) + 1:].sum() == \
            np.sum(values > prof.p99)


def test_the_profiles_round_trip_through_the_file_with_its_hash(baseline, tmp_path) -> None:  # type: ignore[no-untyped-def]
    again = load(save(baseline, tmp_path / "b.json"))
    assert again.sha256 == baseline.sha256
    for name, prof in baseline.unusual.items():
        got = again.unusual[name]
        assert got.p99 == prof.p99 and np.array_equal(got.edges, prof.edges)
        assert np.array_equal(got.counts, prof.counts)


def test_an_older_file_without_profiles_still_loads_and_keeps_its_hash(baseline, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = {k: v for k, v in to_dict(baseline).items() if k != "unusual"}
    old = from_dict({**d, "sha256": ""})
    assert old.unusual == {} and "unusual" not in to_dict(old)
    path = save(old, tmp_path / "old.json")
    assert load(path).unusual == {}


def test_images_without_energy_profile_only_the_distance() -> None:
    b = build_baseline("m", CLASSES, _events(N), images=_images(N, 1, energy=False))
    assert set(b.unusual) == {"knn"}


def test_too_few_images_profile_nothing() -> None:
    n = MIN_PROFILE_VALUES - 1
    b = build_baseline("m", CLASSES, _events(n), images=_images(n, 1))
    assert b.unusual == {}


@pytest.mark.parametrize("bad", [
    {"p99": 1.0, "edges": [0.5, 2.0], "counts": [1, 1, 1]},          # p99 not an edge
    {"p99": 1.0, "edges": [1.0, 0.5], "counts": [1, 1, 1]},          # not increasing
    {"p99": 1.0, "edges": [0.5, 1.0], "counts": [1, 1]},             # a count short
])
def test_a_malformed_profile_is_refused_naming_the_score(baseline, bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BaselineError, match=r"unusual\.energy"):
        from_dict({**to_dict(baseline), "unusual": {"energy": bad}})


def test_images_far_from_the_sample_exceed_its_99th_percentile(baseline) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(9)
    clean = rng.normal(size=(400, DIM)) + SHIFT
    odd = rng.normal(size=(400, DIM)) - SHIFT
    sample = baseline.embedding.sample
    share = {name: float(np.mean(image_scores(e, np.full(400, -8.0), baseline.unusual,
                                              sample)["knn"] > baseline.unusual["knn"].p99))
             for name, e in (("clean", clean), ("odd", odd))}
    assert share["clean"] < 0.04 and share["odd"] > 0.5
