"""ATC and the shadow-stratified estimate against brute force on small arrays."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from monitor.stats.label_free import (
    ShadowStrata,
    atc_estimate,
    atc_threshold,
    fit_shadow_strata,
    shadow_stratified_estimate,
    stratum_counts,
)


def brute_atc_threshold(scores: list[float], correct: list[bool]) -> float:
    """Try every candidate; keep the one whose count below is nearest the errors (smaller wins)."""
    errors = sum(not c for c in correct)
    candidates = [*sorted(set(scores)), math.nextafter(max(scores), math.inf)]
    best = min(candidates, key=lambda c: (abs(sum(s < c for s in scores) - errors), c))
    return best


def test_without_ties_exactly_the_error_count_lies_below_the_threshold() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        s = rng.random(n)
        ok = rng.random(n) < 0.7
        t = atc_threshold(s, ok)
        assert int((s < t).sum()) == int((~ok).sum())
        assert t == brute_atc_threshold(s.tolist(), ok.tolist())


def test_with_ties_the_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(1, 10))
        s = rng.integers(0, 4, n) / 4.0
        ok = rng.random(n) < 0.5
        assert atc_threshold(s, ok) == brute_atc_threshold(s.tolist(), ok.tolist())


@pytest.mark.parametrize(("correct", "expected_share"), [
    ([True, True, True], 1.0),     # no errors: t is the smallest score, every score counts
    ([False, False, False], 0.0),  # all wrong: t lies above the largest score
])
def test_extreme_error_rates(correct: list[bool], expected_share: float) -> None:
    s = np.array([0.2, 0.5, 0.9])
    t = atc_threshold(s, correct)
    assert atc_estimate(float((s >= t).sum()), s.size) == expected_share


def test_on_the_baseline_itself_atc_returns_its_accuracy() -> None:
    rng = np.random.default_rng(2)
    s = rng.random(1000)
    ok = rng.random(1000) < s
    t = atc_threshold(s, ok)
    assert atc_estimate(float((s >= t).sum()), 1000) == pytest.approx(ok.mean())


def test_an_empty_window_has_no_estimate_and_bad_counts_are_refused() -> None:
    assert math.isnan(atc_estimate(0, 0))
    with pytest.raises(ValueError):
        atc_estimate(3, 2)
    with pytest.raises(ValueError):
        atc_threshold([], [])
    with pytest.raises(ValueError):
        atc_threshold([math.nan], [True])


def bin_of(c: float, bins: int) -> int:
    """Equal-width bin of c on [0, 1], the last closed, by walking the edges."""
    edges = [i / bins for i in range(bins + 1)]
    return next(i for i in range(bins) if c < edges[i + 1] or i == bins - 1)


def brute_strata(conf: np.ndarray, agrees: np.ndarray, correct: np.ndarray,
                 bins: int) -> dict[tuple[int, int], list[float]]:
    """Group correctness by (agrees, bin) with an explicit loop over events."""
    groups: dict[tuple[int, int], list[float]] = {}
    for c, a, ok in zip(conf.tolist(), agrees.tolist(), correct.tolist(), strict=True):
        groups.setdefault((int(a), bin_of(c, bins)), []).append(float(ok))
    return groups


def test_strata_accuracies_and_counts_match_a_loop() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(5, 40))
        conf = rng.random(n)
        agrees = rng.random(n) < 0.7
        correct = rng.random(n) < np.where(agrees, 0.9, 0.3)
        strata = fit_shadow_strata(conf, agrees, correct, bins=4)
        groups = brute_strata(conf, agrees, correct, 4)
        for a, b in itertools.product(range(2), range(4)):
            got = strata.accuracy[a * 4 + b]
            if (a, b) in groups:
                assert strata.counts[a * 4 + b] == len(groups[(a, b)])
                assert got == pytest.approx(np.mean(groups[(a, b)]))
            else:
                row = [x for (ra, _), xs in groups.items() if ra == a for x in xs]
                assert strata.counts[a * 4 + b] == 0
                assert got == pytest.approx(np.mean(row) if row else correct.mean())


def test_the_window_estimate_is_the_mean_of_each_events_stratum_accuracy() -> None:
    rng = np.random.default_rng(4)
    conf, agrees = rng.random(200), rng.random(200) < 0.8
    strata = fit_shadow_strata(conf, agrees, rng.random(200) < conf)
    w_conf, w_agrees = rng.random(30) ** 0.5, rng.random(30) < 0.4
    counts = stratum_counts(w_conf, w_agrees)
    k = strata.bins
    per_event = [strata.accuracy[int(a) * k + bin_of(c, k)]
                 for c, a in zip(w_conf, w_agrees, strict=True)]
    got = shadow_stratified_estimate(strata, counts[k:], counts[:k])
    assert got == pytest.approx(np.mean(per_event))
    assert counts.sum() == 30


def test_on_the_baseline_itself_the_stratified_estimate_returns_its_accuracy() -> None:
    rng = np.random.default_rng(5)
    conf, agrees = rng.random(500), rng.random(500) < 0.8
    correct = rng.random(500) < conf
    strata = fit_shadow_strata(conf, agrees, correct)
    counts = stratum_counts(conf, agrees)
    k = strata.bins
    assert shadow_stratified_estimate(strata, counts[k:], counts[:k]) == pytest.approx(
        correct.mean())


def test_strata_refuse_inconsistent_shapes_and_empty_windows_give_nan() -> None:
    strata = fit_shadow_strata([0.1, 0.9], [True, False], [True, False], bins=2)
    assert math.isnan(shadow_stratified_estimate(strata, np.zeros(2), np.zeros(2)))
    with pytest.raises(ValueError):
        shadow_stratified_estimate(strata, np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError):
        ShadowStrata(np.array([0.5, 0.5, 0.5]), np.array([1, 1, 1]))
    with pytest.raises(ValueError):
        fit_shadow_strata([], [], [])
