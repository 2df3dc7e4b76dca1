"""The agreement test's fast convolutions against the way it was computed before (scipy's
`convolve` on every pair, each class spread to multiples of its weight before any sum), on
random windows of every size the exact laws cover; and the memo of unchanged windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import convolve

from monitor.stats import AgreementMemo, agreement_drop_test, split_usual
from monitor.stats import agreement as fast
from monitor.stats.agreement import (
    _check_counts,
    _class_laws,
    _pooled_pvalue,
    _tested,
    _window_weights,
    disagreement_weights,
    stratified_drop_pvalue,
    weighted_drop_pvalue,
)


def _old_sum_law(laws: list[np.ndarray]) -> np.ndarray:
    """The sum law as it was: scipy chooses direct or FFT for every pair."""
    while len(laws) > 1:
        paired = [np.clip(convolve(laws[i], laws[i + 1], method="auto"), 0.0, None)
                  for i in range(0, len(laws) - 1, 2)]
        laws = paired + laws[len(paired) * 2:]
    return laws[0]


def _old_stratified(n: np.ndarray, agree: np.ndarray, base_n: np.ndarray,
                    base_agree: np.ndarray) -> float:
    n, agree, x, y = _tested(n, agree, base_n, base_agree)
    if int(n.sum()) == 0:
        return math.nan
    observed = int(np.floor(agree.sum() + 1e-9))
    if int(n.sum()) > fast.EXACT_IMAGES:
        return _pooled_pvalue(n, observed, x, y)
    return float(min(1.0, _old_sum_law(_class_laws(n, x, y))[: observed + 1].sum()))


def _old_weighted(n: np.ndarray, agree: np.ndarray, base_n: np.ndarray,
                  base_agree: np.ndarray) -> float:
    _check_counts(n, agree, base_n, base_agree)
    w_all = disagreement_weights(base_n, base_agree)
    keep = np.rint(np.asarray(n, dtype=np.float64)) > 0
    n, agree, x, y = _tested(n, agree, base_n, base_agree)
    if int(n.sum()) == 0:
        return math.nan
    if int(n.sum()) > fast.EXACT_IMAGES:
        return _pooled_pvalue(n, int(np.floor(agree.sum() + 1e-9)), x, y)
    w = _window_weights(n, w_all[keep])
    disagree = np.rint(n - np.floor(agree + 1e-9)).astype(np.int64)
    laws = []
    for law, wc in zip(_class_laws(n, y, x), w, strict=True):
        spread = np.zeros((law.size - 1) * int(wc) + 1)
        spread[:: int(wc)] = law
        laws.append(spread)
    return float(min(1.0, _old_sum_law(laws)[int(np.dot(w, disagree)):].sum()))


def _window(seed: int, classes: int, images: int, drop: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A Zipf class mix; baseline rates between 0.6 and 1; the window agreeing `drop` less."""
    rng = np.random.default_rng(seed)
    mix = 1.0 / np.arange(1, classes + 1) ** 1.1
    mix /= mix.sum()
    base_n = rng.multinomial(max(images, 200), mix).astype(np.float64)
    rate = rng.uniform(0.6, 1.0, classes)
    base_agree = np.floor(base_n * rate)
    n = rng.multinomial(images, mix).astype(np.float64)
    agree = rng.binomial(n.astype(np.int64), np.clip(rate - drop, 0.0, 1.0)).astype(np.float64)
    return n, agree, base_n, base_agree


CASES = [  # (seed, classes, window images, agreement drop)
    (0, 3, 12, 0.0), (1, 10, 60, 0.2), (2, 50, 300, 0.0), (3, 200, 1_000, 0.05),
    (4, 1_000, 1_250, 0.1), (5, 1_000, 5_000, 0.0), (6, 400, 12_000, 0.02),
    (7, 1_000, 19_000, 0.01), (8, 30, 25_000, 0.0)]


@pytest.mark.parametrize(("seed", "classes", "images", "drop"), CASES)
def test_the_fast_overall_tests_equal_the_old_convolutions(seed: int, classes: int,
                                                           images: int, drop: float) -> None:
    """Same p-values to 1e-9 (relative, or 1e-12 absolute where FFT rounding dominates)."""
    n, agree, base_n, base_agree = _window(seed, classes, images, drop)
    seen = base_n > 0
    args = (n[seen], agree[seen], base_n[seen], base_agree[seen])
    assert weighted_drop_pvalue(*args) == pytest.approx(_old_weighted(*args), rel=1e-9,
                                                        abs=1e-12)
    assert stratified_drop_pvalue(n, agree, base_n, base_agree) == pytest.approx(
        _old_stratified(n, agree, base_n, base_agree), rel=1e-9, abs=1e-12)


def test_small_p_values_of_a_real_drop_stay_equal_too() -> None:
    """A clear drop (p far below 1e-3) on 1,000 classes: equal to 1e-9 relative."""
    n, agree, base_n, base_agree = _window(11, 1_000, 2_000, 0.15)
    seen = base_n > 0
    args = (n[seen], agree[seen], base_n[seen], base_agree[seen])
    old = _old_weighted(*args)
    assert 1e-300 < old < 1e-3
    assert weighted_drop_pvalue(*args) == pytest.approx(old, rel=1e-9)


def test_a_memo_gives_the_same_result_and_tests_only_changed_windows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    n, agree, base_n, base_agree = _window(4, 1_000, 1_250, 0.1)
    rng = np.random.default_rng(9)
    pred = rng.integers(0, 1_000, 600)
    ref = np.where(rng.random(600) < 0.9, pred, rng.integers(0, 1_000, 600))
    split = split_usual(pred, ref, 1_000)
    usual = np.floor(n * 0.95)
    plain = agreement_drop_test(n, agree, base_n, base_agree, usual, split)
    computed = []
    real = fast._drop_test
    monkeypatch.setattr(fast, "_drop_test", lambda *a: computed.append(1) or real(*a))
    memo = AgreementMemo(entries=2)
    assert agreement_drop_test(n, agree, base_n, base_agree, usual, split, memo) == plain
    assert agreement_drop_test(n, agree, base_n, base_agree, usual, split, memo) == plain
    assert len(computed) == 1  # the unchanged window was remembered
    changed = agree.copy()
    changed[np.argmax(n)] -= 1
    agreement_drop_test(n, changed, base_n, base_agree, usual, split, memo)
    agreement_drop_test(n, changed, base_n, base_agree, None, None, memo)
    assert len(computed) == 3  # other counts, or no unusual count: tested again
    agreement_drop_test(n, agree, base_n, base_agree, usual, split, memo)
    assert len(computed) == 4  # two entries kept: the first one was dropped
