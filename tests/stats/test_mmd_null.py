"""MMD² against a fixed reference with a simulated null: against brute force and mmd2_rbf,
the prefix trick against scoring each prefix alone, and the test's level and power."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.stats import (
    calibrate_mmd_null,
    mean_kernel_to_reference,
    mmd2_to_reference,
    mmd_null_test,
    mmd_reference,
)
from tests.oracles.mmd import mmd2_rbf
from tests.stats.test_mmd import brute_force_mmd2


def _brute_cross(x: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    return np.array([np.mean([math.exp(-float(np.sum((a - b) ** 2)) / (2 * sigma**2))
                              for b in y]) for a in x])


def test_reference_mmd2_equals_the_pooled_estimate_at_every_bandwidth() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 3)), rng.normal(0.4, 1.0, size=(14, 3))
    ref = mmd_reference(y, 1.5, scales=(0.5, 1.0, 2.0))
    assert ref.bandwidths.tolist() == [0.75, 1.5, 3.0]
    got = mmd2_to_reference(ref, x)
    for b, sigma in enumerate(ref.bandwidths):
        assert got[b] == pytest.approx(brute_force_mmd2(x, y, sigma), abs=1e-12)
        assert got[b] == pytest.approx(mmd2_rbf(x, y, sigma), abs=1e-12)
        assert mean_kernel_to_reference(ref, x)[:, b] == pytest.approx(
            _brute_cross(x, y, sigma), abs=1e-12)
    # a cached cross term gives the same value, and a wrong-shaped one is refused
    assert mmd2_to_reference(ref, x, mean_kernel_to_reference(ref, x)) == pytest.approx(got)
    with pytest.raises(ValueError, match="cross must have shape"):
        mmd2_to_reference(ref, x, np.zeros((9, 2)))


def _distinct_pair_mmd2(ref, rows: np.ndarray, idx: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Brute force of one simulated window: pairs that drew the same held-out row are left
    out of the within-window mean; every drawn row counts in the cross term."""
    x = rows[idx]
    out = []
    for sigma, within in zip(ref.bandwidths, ref.within, strict=True):
        pairs = [math.exp(-float(np.sum((x[i] - x[j]) ** 2)) / (2 * sigma**2))
                 for i in range(len(idx)) for j in range(len(idx))
                 if i != j and idx[i] != idx[j]]
        cross = _brute_cross(x, ref.sample, sigma).mean()
        out.append(np.mean(pairs) + within - 2 * cross)
    return np.array(out)


@pytest.mark.slow  # a simulation or exhaustive comparison
def test_the_null_scores_every_prefix_of_a_draw_like_a_window_of_that_size() -> None:
    rng = np.random.default_rng(1)
    ref = mmd_reference(rng.normal(size=(60, 4)), 2.0)
    held = rng.normal(size=(30, 4))   # few rows: draws of 12 repeat some of them
    null = calibrate_mmd_null(ref, held, np.random.default_rng(7), sizes=(5, 9, 12), draws=25)
    # replay the draws the implementation documents: sizes[-1] rows with replacement
    replay = np.random.default_rng(7)
    per_size: dict[int, list[np.ndarray]] = {n: [] for n in range(5, 13)}
    repeats = 0
    for _ in range(25):
        idx = replay.integers(0, 30, size=12)
        repeats += len(idx) - len(set(idx.tolist()))
        for n in per_size:
            per_size[n].append(_distinct_pair_mmd2(ref, held, idx[:n]))
    assert repeats > 0   # the case the brute force has to handle
    for n, values in per_size.items():
        arr = np.array(values)
        assert null.mean[n - 5] == pytest.approx(arr.mean(axis=0), abs=1e-12)
        assert null.sd[n - 5] == pytest.approx(arr.std(axis=0, ddof=1), abs=1e-12)
    assert null.sizes.tolist() == [5, 9, 12] and null.aggregate.shape == (3, 25)
    assert (np.diff(null.aggregate, axis=1) >= 0).all()
    nine = ((np.array(per_size[9]) - null.mean[4]) / null.sd[4]).max(axis=1)
    assert null.aggregate[1] == pytest.approx(np.sort(nine), abs=1e-9)


def test_a_null_from_few_held_out_rows_still_holds_its_level() -> None:
    """150 held-out rows, windows up to a quarter of them (what `null_sizes` allows)."""
    rng = np.random.default_rng(8)
    ref = mmd_reference(rng.normal(size=(150, 8)), 4.0)
    null = calibrate_mmd_null(ref, rng.normal(size=(150, 8)), np.random.default_rng(9),
                              sizes=(20, 32), draws=400)
    rejected = sum(mmd_null_test(null, mmd2_to_reference(ref, rng.normal(size=(n, 8))), n,
                                 0.05).p_value <= 0.05
                   for n in (20, 32) * 300)
    assert 0.01 <= rejected / 600 <= 0.1


@pytest.fixture(scope="module")
def gaussian_null():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    ref = mmd_reference(rng.normal(size=(400, 5)), math.sqrt(2 * 5))
    null = calibrate_mmd_null(ref, rng.normal(size=(1500, 5)), np.random.default_rng(3),
                              sizes=(20, 40, 80), draws=400)
    return ref, null


def test_on_clean_windows_the_test_rejects_at_about_its_level(gaussian_null) -> None:  # type: ignore[no-untyped-def]
    ref, null = gaussian_null
    rng = np.random.default_rng(4)
    alpha, trials, rejected = 0.05, 600, 0
    for _ in range(trials):
        n = int(rng.integers(20, 81))
        result = mmd_null_test(null, mmd2_to_reference(ref, rng.normal(size=(n, 5))), n, alpha)
        assert (result.statistic > result.threshold) == (result.p_value <= alpha)
        rejected += result.p_value <= alpha
    # binomial(600, 0.05): sd 0.0089; allow the simulated null's own noise too
    assert 0.015 <= rejected / trials <= 0.09


def test_a_mean_shift_is_rejected_and_p_values_fall_with_it(gaussian_null) -> None:  # type: ignore[no-untyped-def]
    ref, null = gaussian_null
    rng = np.random.default_rng(5)
    shifted = rng.normal(size=(80, 5)) + np.array([0.8, 0, 0, 0, 0])
    result = mmd_null_test(null, mmd2_to_reference(ref, shifted), 80, 0.01)
    assert result.statistic > result.threshold and result.p_value == pytest.approx(1 / 401)
    small = mmd_null_test(null, mmd2_to_reference(ref, shifted[:20]), 20, 0.01)
    assert small.p_value >= result.p_value


def test_a_level_the_draws_cannot_resolve_never_rejects(gaussian_null) -> None:  # type: ignore[no-untyped-def]
    ref, null = gaussian_null
    far = np.full((40, 5), 9.0)
    result = mmd_null_test(null, mmd2_to_reference(ref, far), 40, 0.001)  # 0.001 * 401 < 1
    assert result.threshold == math.inf and result.p_value == pytest.approx(1 / 401)
    with pytest.raises(ValueError, match=r"n must lie in \[20, 80\]"):
        mmd_null_test(null, np.zeros(3), 81, 0.01)
    with pytest.raises(ValueError, match="mmd2 must have shape"):
        mmd_null_test(null, np.zeros(2), 40, 0.01)
