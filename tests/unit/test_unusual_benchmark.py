"""The unusual-input benchmark's measures (benchmarks/unusual_inputs.py) on synthetic scores:
a clean set fires at about its level, a far set always, and AUROC agrees with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmarks.unusual_inputs import _fit_mahalanobis, auroc, measure


def test_auroc_is_scikit_learns_with_ties() -> None:
    rng = np.random.default_rng(1)
    neg, pos = rng.integers(0, 5, 300).astype(float), rng.integers(1, 6, 200).astype(float)
    want = roc_auc_score(np.r_[np.zeros(300), np.ones(200)], np.r_[neg, pos])
    assert auroc(neg, pos) == pytest.approx(want, abs=1e-12)


def test_a_clean_set_is_flagged_at_about_one_percent_and_its_windows_rarely_fire() -> None:
    rng = np.random.default_rng(2)
    own, clean = rng.normal(size=1000), rng.normal(size=20_000)
    row = measure(own, clean, clean, 4000, rng)
    assert 0.003 < row.tpr < 0.03
    assert row.auroc == 0.5
    assert row.fire_300 < 0.02 and row.fire_100 < 0.02 and row.fire_30 < 0.02


def test_a_far_set_is_flagged_whole_and_every_window_fires() -> None:
    rng = np.random.default_rng(3)
    own, clean, far = rng.normal(size=1000), rng.normal(size=2000), rng.normal(6, 1, 500)
    row = measure(own, far, clean, 500, rng)
    assert row.tpr > 0.99 and row.auroc > 0.99
    assert row.fire_300 == row.fire_100 == row.fire_30 == 1.0


def test_class_conditional_mahalanobis_is_least_at_a_class_mean_and_grows_away() -> None:
    rng = np.random.default_rng(4)
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    top1 = np.repeat([0, 1], 200)
    x = centres[top1] + rng.normal(size=(400, 3))
    score = _fit_mahalanobis(x, top1)
    means = np.stack([x[top1 == c].mean(0) for c in (0, 1)])
    assert np.allclose(score(means), 0.0, atol=1e-12)
    far = score(np.array([[5.0, 0.0, 0.0], [0.0, 8.0, 0.0]]))
    assert (far > score(centres)).all()
