"""Has agreement with the reference model dropped below the baseline's? A one-sided test on
counts, per production class and over all classes.

A fixed bound on the agreement ratio (`quality.min_shadow_agreement`) has to sit far under
the clean level so that binomial noise does not cross it, and it ignores which classes
disagree. This test compares a window with the baseline instead. The baseline counted, per
class the production model predicted, m joined images of which b agreed; with a Jeffreys
prior the class's agreement rate is Beta(b + 1/2, m - b + 1/2) after that, and when nothing
changed the agreeing images among a window's n of that class follow the beta-binomial with
those parameters (which carries the baseline's own sampling uncertainty). A window with a
agreeing images has the one-sided p-value P(A <= a). One test per class the window and the
baseline both have, plus one over all of them, for a regression spread thin over many
classes (below). Weighted Bonferroni: the overall test gets half
the level and the k class tests share the other half, so the window's p-value is
min(1, 2 p_overall, 2 k min_c p_c); at level alpha the whole family is wrong in at most alpha
of clean windows, and the overall test keeps most of its power.

The overall test is stratified by class: the window's agreeing images are the sum of the
classes' independent beta-binomials, whose law is their convolution. Pooling the classes into
one beta-binomial at the mix's rate gives the same mean and a larger variance whenever the
classes agree at different rates, and so a weaker test; it is kept only for windows of more
than EXACT_IMAGES images, where the convolution would cost too much and power is plentiful
(a normal law of the same moments would be cheap but too light in the lower tail: it
under-states small p-values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import convolve
from scipy.stats import betabinom

#: Jeffreys prior Beta(1/2, 1/2) on a baseline agreement rate
PRIOR = 0.5
#: window images up to which the overall test's law is the exact convolution (beyond, the
#: pooled beta-binomial)
EXACT_IMAGES = 20_000


@dataclass(frozen=True, slots=True)
class AgreementDrop:
    """The window's test: `p_value` in [0, 1] (the smallest weighted-Bonferroni-adjusted
    one-sided p-value), `tests` made (classes tested, plus the overall one), `worst` the class
    index that gave it (-1: the overall test)."""

    p_value: float
    tests: int
    worst: int


def agreement_drop_pvalues(n: np.ndarray, agree: np.ndarray, base_n: np.ndarray,
                           base_agree: np.ndarray) -> np.ndarray:
    """One-sided p-values P(A <= agree), A ~ BetaBinomial(n, base_agree + 1/2,
    base_n - base_agree + 1/2), element-wise; NaN where n == 0. Counts are non-negative,
    agree <= n and base_agree <= base_n."""
    n = np.asarray(n, dtype=np.float64)
    agree = np.asarray(agree, dtype=np.float64)
    base_n = np.asarray(base_n, dtype=np.float64)
    base_agree = np.asarray(base_agree, dtype=np.float64)
    if (np.any(n < 0) or np.any(agree < 0) or np.any(agree > n) or np.any(base_agree < 0)
            or np.any(base_agree > base_n)):
        raise ValueError("agreement counts must satisfy 0 <= agree <= n")
    ok = n > 0
    nn, aa = np.rint(n).astype(np.int64), np.floor(agree + 1e-9).astype(np.int64)
    p = betabinom.cdf(aa, np.where(ok, nn, 1), base_agree + PRIOR, base_n - base_agree + PRIOR)
    return np.where(ok, np.minimum(p, 1.0), np.nan)


def stratified_drop_pvalue(n: np.ndarray, agree: np.ndarray, base_n: np.ndarray,
                           base_agree: np.ndarray, exact_images: int = EXACT_IMAGES) -> float:
    """One-sided p-value P(sum_c A_c <= sum_c agree_c) with independent
    A_c ~ BetaBinomial(n_c, base_agree_c + 1/2, base_n_c - base_agree_c + 1/2): all classes
    together, with the window's own class mix. Exact (the convolution of the classes' laws)
    up to `exact_images` window images; beyond, one beta-binomial at the rate the mix
    expects with all the classes' baseline images as evidence. NaN without window images."""
    n = np.rint(np.asarray(n, dtype=np.float64)).astype(np.int64)
    agree = np.asarray(agree, dtype=np.float64)
    x = np.asarray(base_agree, dtype=np.float64) + PRIOR
    y = np.asarray(base_n, dtype=np.float64) - np.asarray(base_agree, dtype=np.float64) + PRIOR
    keep = n > 0
    n, agree, x, y = n[keep], agree[keep], x[keep], y[keep]
    total = int(n.sum())
    if total == 0:
        return math.nan
    observed = int(np.floor(agree.sum() + 1e-9))
    if total > exact_images:
        m = x + y - 2 * PRIOR
        expected = float(np.dot(n, x / (x + y)) / total)
        pooled = agreement_drop_pvalues(total, observed, m.sum(), expected * m.sum())
        return float(pooled)
    # every class's pmf in one vectorised call, then convolved pairwise (a balanced tree
    # keeps the FFT sizes even when there are many classes)
    ends = np.cumsum(n + 1)
    k = np.arange(int(ends[-1])) - np.repeat(ends - (n + 1), n + 1)
    laws = np.split(betabinom.pmf(k, np.repeat(n, n + 1), np.repeat(x, n + 1),
                                  np.repeat(y, n + 1)), ends[:-1])
    while len(laws) > 1:
        # FFT convolution can dip a hair below 0: clip
        paired = [np.clip(convolve(laws[i], laws[i + 1], method="auto"), 0.0, None)
                  for i in range(0, len(laws) - 1, 2)]
        laws = paired + laws[len(paired) * 2:]
    return float(min(1.0, laws[0][: observed + 1].sum()))


def agreement_drop_test(n: np.ndarray, agree: np.ndarray, base_n: np.ndarray,
                        base_agree: np.ndarray) -> AgreementDrop | None:
    """Per-class counts of a window (`n`, `agree`, indexed by production class) against the
    baseline's (`base_n`, `base_agree`). Classes the baseline never saw predicted, or the
    window has no image of, are not tested; None when nothing can be tested."""
    n = np.asarray(n, dtype=np.float64)
    agree = np.asarray(agree, dtype=np.float64)
    base_n = np.asarray(base_n, dtype=np.float64)
    base_agree = np.asarray(base_agree, dtype=np.float64)
    if not (n.shape == agree.shape == base_n.shape == base_agree.shape) or n.ndim != 1:
        raise ValueError("per-class counts must be four vectors of the same length")
    tested = (n > 0) & (base_n > 0)
    if not tested.any():
        return None
    idx = np.flatnonzero(tested)
    per_class = agreement_drop_pvalues(n[idx], agree[idx], base_n[idx], base_agree[idx])
    # overall, stratified by class: the window's own class mix (so a shift of the class mix
    # alone is no drop), each class's baseline images as the evidence for its rate
    overall = stratified_drop_pvalue(n[idx], agree[idx], base_n[idx], base_agree[idx])
    # weighted Bonferroni: half the level to the overall test, half shared by the classes
    adjusted = np.concatenate([[2.0 * float(overall)], 2.0 * idx.size * per_class])
    k = int(np.argmin(adjusted))
    return AgreementDrop(min(1.0, float(adjusted[k])), idx.size + 1,
                         -1 if k == 0 else int(idx[k - 1]))
