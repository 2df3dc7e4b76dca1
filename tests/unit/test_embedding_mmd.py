"""The embedding MMD test end to end inside the statistics: the baseline carries a reference
sample and a simulated null; ShadowMonitor tests windows against them; older baseline files
get a null on load; the drift features give up the MMD test's share of `drift.alpha`."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.baseline import build_baseline, from_dict, load, save, to_dict
from monitor.drift import DriftMonitor
from monitor.events import PredictionEvent
from monitor.scored import INPUT_FEATURES, ScoredImage
from monitor.shadow import ShadowMonitor
from monitor.snapshot import SnapshotBuilder
from monitor.windows import WindowSpec

CLASSES = ("a", "b", "c")
DIM = 6


def _events(n: int) -> list[PredictionEvent]:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.4, 1.0, n)
    return [PredictionEvent(f"r{i}", 1.0, "m", "v1", True, int(rng.integers(0, 3)),
                            float(conf[i]), float(conf[i] / 2), 0.5, 0.01) for i in range(n)]


def _images(n: int, seed: int, shift: float = 0.0, t0: float = 0.0) -> list[ScoredImage]:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, DIM)).astype(np.float32)
    emb[:, 0] += shift
    feats = rng.uniform(0, 1, size=(n, len(INPUT_FEATURES)))
    return [ScoredImage(f"i{seed}-{k}", "m", "v1", t0 + k * 0.1, 0, 0.9, emb[k],
                        tuple(feats[k].tolist())) for k in range(n)]


@pytest.fixture(scope="module")
def baseline():  # type: ignore[no-untyped-def]
    return build_baseline("m", CLASSES, _events(600), images=_images(600, 1))


def test_the_baseline_keeps_half_its_images_as_reference_and_simulates_the_rest(baseline) -> None:  # type: ignore[no-untyped-def]
    emb = baseline.embedding
    assert emb is not None and emb.null is not None
    assert emb.sample.shape == (300, DIM)
    # windows of at most a quarter of the 300 held-out rows
    assert emb.null.sizes.tolist() == [20, 32, 48, 64] and emb.null.draws == 4000
    again = from_dict(to_dict(baseline))
    assert again.embedding is not None and again.embedding.null is not None
    assert np.array_equal(again.embedding.null.aggregate, emb.null.aggregate)
    assert again.embedding.scales == emb.scales


def test_a_baseline_file_without_a_null_gets_one_from_its_sample(baseline, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = to_dict(baseline)
    old = {k: v for k, v in d["embedding"].items() if k not in ("null", "scales")}
    loaded = from_dict({**d, "embedding": old, "sha256": "f" * 64})
    assert loaded.embedding is not None and loaded.embedding.null is not None
    assert loaded.embedding.sample.shape == (150, DIM)  # a random half stays the reference
    assert loaded.embedding.null.sizes.tolist() == [20, 32]  # windows of <= 150 / 4
    # its content changed, so its hash did: saved and loaded again, it checks out
    assert loaded.sha256 != "f" * 64
    path = tmp_path / "b.json"
    save(loaded, path)
    again = load(path)
    assert again.sha256 == loaded.sha256 and again.embedding.sample.shape == (150, DIM)  # type: ignore[union-attr]


def _shadow(baseline, alpha: float = 0.01):  # type: ignore[no-untyped-def]
    drift = DriftMonitor({"m": CLASSES}, (WindowSpec("1h", 3600, 6),),
                         baselines={"m": baseline}, correction="bonferroni",
                         embedding_alpha=alpha / 2)
    return drift, ShadowMonitor({"m": CLASSES}, drift.windows, drift, mmd_alpha=alpha / 2)


def _mmd(shadow: ShadowMonitor) -> tuple[float, float]:
    b = SnapshotBuilder()
    shadow.snapshot(b)
    snap = b.build()
    key = ("m", "v1", "1h")
    return (snap["visionmon_embedding_mmd"][key],  # type: ignore[index]
            snap["visionmon_embedding_mmd_threshold"][key])  # type: ignore[index]


def test_a_shifted_window_crosses_the_critical_value_and_a_clean_one_does_not(baseline) -> None:  # type: ignore[no-untyped-def]
    _, clean = _shadow(baseline)
    clean.apply_scored(_images(200, 2, t0=100.0))
    stat, critical = _mmd(clean)
    assert np.isfinite(critical) and stat < critical
    _, shifted = _shadow(baseline)
    shifted.apply_scored(_images(200, 3, shift=1.0, t0=100.0))
    stat, critical = _mmd(shifted)
    assert stat > critical


def test_a_restored_reservoir_gives_the_same_statistic(baseline) -> None:  # type: ignore[no-untyped-def]
    _, first = _shadow(baseline)
    first.apply_scored(_images(120, 4, shift=0.3, t0=100.0))
    _, restored = _shadow(baseline)
    restored.restore(first.state())  # cross terms are recomputed, not checkpointed
    assert _mmd(restored) == pytest.approx(_mmd(first), rel=1e-9)


def test_the_features_give_up_the_mmd_share_only_where_the_baseline_has_the_test(baseline) -> None:  # type: ignore[no-untyped-def]
    drift, _ = _shadow(baseline, alpha=0.01)
    k = len(baseline.features)
    assert drift.family_alpha("m") == pytest.approx(0.005)
    assert drift.feature_alpha("m") == pytest.approx(0.005 / k)
    plain = build_baseline("m", CLASSES, _events(600))
    drift.set_baseline(plain)
    assert drift.family_alpha("m") == pytest.approx(0.01)
    assert drift.feature_alpha("m") == pytest.approx(0.01 / len(plain.features))
