"""The shadow-stratified accuracy estimate: fitted by the baseline on its labelled,
shadow-scored events, saved with it (older files load without it), and exported by
ShadowMonitor as `visionmon_estimated_accuracy_ratio{method="shadow_stratified"}`."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from monitor.baseline import _hash, build_baseline, load, save, to_dict
from monitor.drift import DriftMonitor
from monitor.engine import EventGroup
from monitor.events import PredictionEvent
from monitor.scored import INPUT_FEATURES, ScoredImage
from monitor.shadow import ShadowMonitor
from monitor.snapshot import SnapshotBuilder
from monitor.stats import fit_shadow_strata, shadow_stratified_estimate, stratum_counts
from monitor.windows import WindowSpec

CLASSES = ("a", "b", "c")


def traffic(n: int, seed: int, t0: float, agreement: float
            ) -> tuple[list[PredictionEvent], list[ScoredImage], dict[str, int], np.ndarray]:
    """n labelled requests with scored images; production is right when the reference agrees
    (90 %) and less often when not; returns also the confidences."""
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, 3, n)
    agrees = rng.random(n) < agreement
    ref = np.where(agrees, pred, (pred + 1) % 3)
    conf = rng.uniform(0.4, 1.0, n)
    correct = rng.random(n) < np.where(agrees, 0.9 * conf + 0.1, 0.3 * conf)
    labels = {f"r{seed}-{i}": int(p if ok else (p + 2) % 3)
              for i, (p, ok) in enumerate(zip(pred, correct, strict=True))}
    feats = tuple(0.5 for _ in INPUT_FEATURES)
    events = [PredictionEvent(f"r{seed}-{i}", t0 + i * 0.1, "m", "v1", True, int(pred[i]),
                              float(conf[i]), 0.5, 0.5, 0.01) for i in range(n)]
    images = [ScoredImage(f"r{seed}-{i}", "m", "v1", t0 + i * 0.1, int(ref[i]), 0.9,
                          rng.normal(size=4).astype(np.float32), feats) for i in range(n)]
    return events, images, labels, conf


@pytest.fixture(scope="module")
def baseline():  # type: ignore[no-untyped-def]
    events, images, labels, _ = traffic(1500, 1, 0.0, 0.9)
    return build_baseline("m", CLASSES, events, labels, images=images)


def test_the_baseline_fits_the_strata_on_its_labelled_scored_events(baseline) -> None:  # type: ignore[no-untyped-def]
    events, images, labels, conf = traffic(1500, 1, 0.0, 0.9)
    agrees = np.array([im.ref_pred == e.pred for e, im in zip(events, images, strict=True)])
    correct = np.array([labels[e.request_id] == e.pred for e in events])
    want = fit_shadow_strata(conf, agrees, correct)
    assert baseline.shadow_strata is not None
    assert baseline.shadow_strata.accuracy.tolist() == want.accuracy.tolist()
    assert baseline.shadow_strata.counts.tolist() == want.counts.tolist()


def test_the_strata_survive_a_save_and_older_files_load_without_them(baseline, tmp_path) -> None:  # type: ignore[no-untyped-def]
    again = load(save(baseline, tmp_path / "b.json"))
    assert again.shadow_strata is not None
    assert again.shadow_strata.accuracy.tolist() == baseline.shadow_strata.accuracy.tolist()
    d = {k: v for k, v in to_dict(baseline).items() if k != "shadow_strata"}
    d["sha256"] = _hash(d)
    (tmp_path / "old.json").write_bytes(orjson.dumps(d))
    old = load(tmp_path / "old.json")
    assert old.shadow_strata is None and old.sha256 == d["sha256"]


def test_without_labels_there_are_no_strata() -> None:
    events, images, _, _ = traffic(300, 2, 0.0, 0.9)
    assert build_baseline("m", CLASSES, events, images=images).shadow_strata is None


def exported(baseline, events, images) -> float | None:  # type: ignore[no-untyped-def]
    drift = DriftMonitor({"m": CLASSES}, (WindowSpec("1h", 3600, 6),),
                         baselines={"m": baseline})
    shadow = ShadowMonitor({"m": CLASSES}, drift.windows, drift, min_agreement_images=100)
    shadow.on_predictions({("m", "v1"): EventGroup(events)})
    shadow.apply_scored(images)
    b = SnapshotBuilder()
    shadow.snapshot(b)
    return b.build().get("visionmon_estimated_accuracy_ratio", {}).get(  # type: ignore[no-any-return]
        ("m", "v1", "1h", "shadow_stratified"))


def test_the_window_estimate_weighs_the_strata_by_the_windows_joined_images(baseline) -> None:  # type: ignore[no-untyped-def]
    events, images, _, conf = traffic(400, 3, 5000.0, 0.6)  # the reference agrees less
    agrees = np.array([im.ref_pred == e.pred for e, im in zip(events, images, strict=True)])
    counts = stratum_counts(conf, agrees)
    k = baseline.shadow_strata.bins
    want = shadow_stratified_estimate(baseline.shadow_strata, counts[k:], counts[:k])
    assert exported(baseline, events, images) == pytest.approx(want, rel=1e-12)


def test_fewer_joined_images_than_the_agreement_minimum_export_nothing(baseline) -> None:  # type: ignore[no-untyped-def]
    events, images, _, _ = traffic(50, 4, 5000.0, 0.9)
    assert exported(baseline, events, images) is None
