"""Multiple testing: with `drift.correction: bonferroni` (the default) each feature is
tested at alpha / k, so "any feature drifted" keeps the false-alarm rate alpha."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.baseline import build_baseline
from monitor.config import ConfigError, parse_config
from monitor.drift import DriftMonitor
from monitor.engine import EventGroup
from monitor.events import PredictionEvent
from monitor.quality import QualityBounds, _Slice, judge
from monitor.stats import drift_threshold
from monitor.windows import WindowSpec

CLASSES = ("a", "b", "c")


def _events(n: int, seed: int, ts: float) -> list[PredictionEvent]:
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.4, 1.0, n)
    return [PredictionEvent(f"r{i}", ts, "m", "v1", True, int(rng.integers(0, 3)),
                            float(conf[i]), float(conf[i] / 2), 0.5, 0.01) for i in range(n)]


@pytest.mark.parametrize("correction", ["bonferroni", "none"])
def test_exported_thresholds_use_the_corrected_level(correction: str) -> None:
    baseline = build_baseline("m", CLASSES, _events(2000, 0, 1.0))
    k = len(baseline.features)
    assert k >= 3
    mon = DriftMonitor({"m": CLASSES}, (WindowSpec("1h", 3600, 6),), alpha=0.01,
                       baselines={"m": baseline}, correction=correction)  # type: ignore[arg-type]
    mon.on_predictions({("m", "v1"): EventGroup(_events(500, 1, 100.0))})
    level = 0.01 / k if correction == "bonferroni" else 0.01
    assert mon.feature_alpha("m") == pytest.approx(level)
    figs = mon.figures("m", "v1")
    finite = 0
    for (name, _window), f in figs.items():
        want = drift_threshold(baseline.features[name].counts, f.n, level, 0.0).threshold
        assert f.threshold == pytest.approx(want, nan_ok=True)
        finite += bool(np.isfinite(f.threshold))
    assert finite >= 2  # class and confidence have a threshold


def test_bonferroni_is_the_config_default_and_other_values_are_refused() -> None:
    base = {"version": 1, "models": [{"name": "m", "classes": list(CLASSES)}]}
    cfg = parse_config(base)
    assert cfg.drift.correction == "bonferroni"
    assert cfg.drift.mmd.every_images == 5
    assert cfg.quality.min_shadow_images == 100
    with pytest.raises(ConfigError, match=r"drift\.correction"):
        parse_config({**base, "drift": {"correction": "holm"}}, "f.yaml")
    assert cfg.drift.mmd.alpha is None  # half of drift.alpha, taken from the features
    with pytest.raises(ConfigError, match=r"drift\.mmd\.alpha"):
        parse_config({**base, "drift": {"mmd": {"alpha": 0.0001}}}, "f.yaml")
    # the permutation test's old key still loads (ignored, with a warning at start)
    assert parse_config({**base, "drift": {"mmd": {"permutations": 100}}}).drift.mmd \
        .permutations == 100
    # with a reference model, half of a tiny drift.alpha is too small for the simulated null
    ref = {"model": "m", "path": "r.pt", "sha256": "0" * 64}
    with pytest.raises(ConfigError, match=r"drift\.alpha 0\.001 leaves the embedding MMD"):
        parse_config({**base, "reference": ref, "drift": {"alpha": 0.001}}, "f.yaml")
    assert parse_config({**base, "reference": ref,
                         "drift": {"alpha": 0.001, "mmd": {"alpha": 0.001}}}).drift.alpha \
        == 0.001


def test_shadow_agreement_is_judged_only_with_enough_images() -> None:
    bounds = QualityBounds(300, 20, 0.9, 0.1, 0.9, min_shadow_images=100)
    few = _Slice(0, scored=99, agree=50)
    enough = _Slice(0, scored=100, agree=50)
    assert "shadow_agreement" not in judge(few, bounds, None)
    assert judge(enough, bounds, None)["shadow_agreement"] is False
