"""Has agreement with the reference model dropped below the baseline's? A one-sided test on
counts, per production class and over all classes.

A fixed bound on the agreement ratio (`quality.min_shadow_agreement`) has to sit far under
the clean level so that binomial noise does not cross it, and it ignores which classes
disagree. This test compares a window with the baseline instead. The baseline counted, per
class the production model predicted, m joined images of which b agreed; with a Jeffreys
prior the class's agreement rate is Beta(b + 1/2, m - b + 1/2) after that, and when nothing
changed the agreeing images among a window's n of that class follow the beta-binomial with
those parameters (which carries the baseline's own sampling uncertainty). A window with a
agreeing images has the one-sided p-value P(A <= a).

Three kinds of test, for three shapes of regression:
- one per class the window and the baseline both have: one class broken;
- the weighted count over all classes (disagreements weighted by the inverse of their class's
  baseline disagreement rate; stratified: the law of the weighted sum of the classes'
  independent beta-binomials is their convolution): a share of predictions turned to noise,
  which adds about as many disagreements to a class that rarely disagrees as to one that often
  does, and so stands out most where disagreement is rare. It is the score test against that
  alternative; where the window's classes get equal weights it is the plain count;
- the unusual count: images whose (production class, reference class) pair the baseline
  (almost) never showed (`usual_pairs`). Production and reference disagree mostly on a few
  look-alike pairs (shirt and T-shirt); a share of predictions turned to noise lands on the
  other pairs, whose baseline rate is a fraction of the disagreement rate, so it stands out
  there several times more strongly than in the count. The pairs are chosen on a seeded random
  half of the baseline's joined images and their rate is counted on the other (`split_usual`),
  so the choice does not bias the rate the test compares with.
Weighted Bonferroni: each overall test made gets an equal share of the level and the k class
tests share one more, so the window's p-value is min(1, 3 p_weighted, 3 p_unusual,
3 k min_c p_c); at level alpha the family is wrong in at most alpha of clean windows. The
unusual count is made when the baseline's profile has pairs (halves without it).

A plain count of disagreements over all classes (every class disagreeing proportionally more)
was a fourth part until the detection benchmark showed it never changed a delay or a
single-window power: on its scenarios the weighted and the unusual counts always found what it
found (docs/statistics.md).

Pooling the classes into one beta-binomial at the mix's rate gives the count's mean with a
larger variance whenever the classes agree at different rates, and so a weaker test; both
overall tests use it only for windows of more than EXACT_IMAGES images, where the convolution
would cost too much and power is plentiful (a normal law of the same moments would be cheap
but too light in the lower tail: it under-states small p-values).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import fft
from scipy.stats import betabinom

#: Jeffreys prior Beta(1/2, 1/2) on a baseline agreement rate
PRIOR = 0.5
#: window images up to which the overall tests' laws are exact convolutions (beyond, the
#: pooled beta-binomial)
EXACT_IMAGES = 20_000
#: weight of a disagreement in the class that disagrees most; the others' are rounded to
#: integers on this scale (the test is exact for the rounded weights)
WEIGHT_STEP = 4
#: largest weight, in multiples of WEIGHT_STEP: a class that (almost) never disagreed in the
#: baseline counts at most this many times a class that disagrees most
WEIGHT_RATIO_CAP = 8
#: largest support of the weighted count's law; beyond it the weights are scaled down
#: (coarser, still exact for the weights used), which bounds the convolutions' cost
WEIGHTED_SUPPORT = 100_000
#: baseline images a class needs to set the weights' scale: a class seen a handful of times
#: has a disagreement rate near 1/2 by the prior alone, which would cap every other weight
WEIGHT_SCALE_IMAGES = 30
#: a disagreement pair (production class c, reference class r) is usual when the baseline's
#: choosing half shows it in at least this share of the images production called c ...
USUAL_SHARE = 0.005
#: ... and at least this many times (a pair seen once is as likely noise as a habit)
USUAL_MIN_IMAGES = 2
#: two pmfs are convolved directly (`np.convolve`) when the shorter has at most this many
#: points or their product is at most DIRECT_MAX_PRODUCT; else by a real FFT (cheaper there)
DIRECT_MAX_POINTS = 16
DIRECT_MAX_PRODUCT = 200_000
#: window tests an `AgreementMemo` remembers by their counts: a window (or a whole version)
#: whose counts did not change since the last snapshot is not tested again
MEMO_ENTRIES = 512


@dataclass(frozen=True, slots=True)
class AgreementDrop:
    """The window's test: `p_value` in [0, 1] (the smallest weighted-Bonferroni-adjusted
    one-sided p-value), `tests` made (classes tested, plus the overall ones), `worst` the class
    index that gave it (-1: the weighted count, -2: the unusual count)."""

    p_value: float
    tests: int
    worst: int


def _check_counts(n: np.ndarray, agree: np.ndarray, base_n: np.ndarray,
                  base_agree: np.ndarray) -> None:
    """Refuse counts that are negative or agree more often than they were seen."""
    n, agree = np.asarray(n, dtype=np.float64), np.asarray(agree, dtype=np.float64)
    base_n = np.asarray(base_n, dtype=np.float64)
    base_agree = np.asarray(base_agree, dtype=np.float64)
    if (np.any(n < 0) or np.any(agree < 0) or np.any(agree > n) or np.any(base_agree < 0)
            or np.any(base_agree > base_n)):
        raise ValueError("agreement counts must satisfy 0 <= agree <= n")


def agreement_drop_pvalues(n: ArrayLike, agree: ArrayLike, base_n: ArrayLike,
                           base_agree: ArrayLike) -> np.ndarray:
    """One-sided p-values P(A <= agree), A ~ BetaBinomial(n, base_agree + 1/2,
    base_n - base_agree + 1/2), element-wise; NaN where n == 0. Counts are non-negative,
    agree <= n and base_agree <= base_n."""
    n = np.asarray(n, dtype=np.float64)
    agree = np.asarray(agree, dtype=np.float64)
    base_n = np.asarray(base_n, dtype=np.float64)
    base_agree = np.asarray(base_agree, dtype=np.float64)
    _check_counts(n, agree, base_n, base_agree)
    ok = n > 0
    nn, aa = np.rint(n).astype(np.int64), np.floor(agree + 1e-9).astype(np.int64)
    p = betabinom.cdf(aa, np.where(ok, nn, 1), base_agree + PRIOR, base_n - base_agree + PRIOR)
    return np.where(ok, np.minimum(p, 1.0), np.nan)


def _convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The pmf of the sum of two independent integer variables: directly when short, else by
    a real FFT (which can dip a hair below 0: clipped)."""
    if min(a.size, b.size) <= DIRECT_MAX_POINTS or a.size * b.size <= DIRECT_MAX_PRODUCT:
        return np.convolve(a, b)
    size = a.size + b.size - 1
    padded = fft.next_fast_len(size, real=True)
    out = fft.irfft(fft.rfft(a, padded) * fft.rfft(b, padded), padded)[:size]
    return np.clip(out, 0.0, None)


def _sum_law(laws: list[np.ndarray]) -> np.ndarray:
    """The pmf of a sum of independent integer variables from their pmfs: convolved pairwise,
    in a balanced tree so that the FFT sizes stay even when there are many classes."""
    while len(laws) > 1:
        paired = [_convolve(laws[i], laws[i + 1]) for i in range(0, len(laws) - 1, 2)]
        laws = paired + laws[len(paired) * 2:]
    return laws[0]


def _weighted_sum_law(laws: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The pmf of sum_c w_c X_c from the pmfs of the X_c and integer weights w_c >= 1: the
    classes of one weight are summed first (short pmfs), then each sum is spread to multiples
    of its weight and those are summed: the same law with far shorter convolutions than
    spreading every class first."""
    groups: dict[int, list[np.ndarray]] = {}
    for law, w in zip(laws, weights.tolist(), strict=True):
        groups.setdefault(int(w), []).append(law)
    spread = []
    for w, group in groups.items():
        law = _sum_law(group)
        out = np.zeros((law.size - 1) * w + 1)
        out[::w] = law
        spread.append(out)
    return _sum_law(spread)


def _class_laws(n: np.ndarray, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Each class's BetaBinomial(n_c, x_c, y_c) pmf on 0..n_c, in one vectorised call."""
    ends = np.cumsum(n + 1)
    k = np.arange(int(ends[-1])) - np.repeat(ends - (n + 1), n + 1)
    return np.split(betabinom.pmf(k, np.repeat(n, n + 1), np.repeat(x, n + 1),
                                  np.repeat(y, n + 1)), ends[:-1])


def _tested(n: np.ndarray, agree: np.ndarray, base_n: np.ndarray, base_agree: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The classes with window images: their counts n, agreeing images, and the Beta
    parameters x (agree) and y (disagree) of their baseline rates."""
    n = np.rint(np.asarray(n, dtype=np.float64)).astype(np.int64)
    agree = np.asarray(agree, dtype=np.float64)
    x = np.asarray(base_agree, dtype=np.float64) + PRIOR
    y = np.asarray(base_n, dtype=np.float64) - np.asarray(base_agree, dtype=np.float64) + PRIOR
    keep = n > 0
    return n[keep], agree[keep], x[keep], y[keep]


def _pooled_pvalue(n: np.ndarray, observed: int, x: np.ndarray, y: np.ndarray) -> float:
    """One beta-binomial at the rate the window's mix expects, with all the classes' baseline
    images as evidence: the fallback of both overall tests beyond EXACT_IMAGES."""
    total = int(n.sum())
    m = x + y - 2 * PRIOR
    expected = float(np.dot(n, x / (x + y)) / total)
    return float(agreement_drop_pvalues(total, observed, m.sum(), expected * m.sum()))


def stratified_drop_pvalue(n: np.ndarray, agree: np.ndarray, base_n: np.ndarray,
                           base_agree: np.ndarray, exact_images: int = EXACT_IMAGES) -> float:
    """One-sided p-value P(sum_c A_c <= sum_c agree_c) with independent
    A_c ~ BetaBinomial(n_c, base_agree_c + 1/2, base_n_c - base_agree_c + 1/2): all classes
    together, with the window's own class mix. Exact (the convolution of the classes' laws)
    up to `exact_images` window images; beyond, one beta-binomial at the rate the mix
    expects with all the classes' baseline images as evidence. NaN without window images."""
    n, agree, x, y = _tested(n, agree, base_n, base_agree)
    if int(n.sum()) == 0:
        return math.nan
    observed = int(np.floor(agree.sum() + 1e-9))
    if int(n.sum()) > exact_images:
        return _pooled_pvalue(n, observed, x, y)
    return float(min(1.0, _sum_law(_class_laws(n, x, y))[: observed + 1].sum()))


def disagreement_weights(base_n: np.ndarray, base_agree: np.ndarray) -> np.ndarray:
    """Integer weight of one disagreement per class: the inverse of the class's baseline
    disagreement rate (posterior mean), WEIGHT_STEP for the class that disagrees most among
    those with at least WEIGHT_SCALE_IMAGES baseline images (among all when none has), at
    least WEIGHT_STEP and at most WEIGHT_STEP * WEIGHT_RATIO_CAP."""
    base_n = np.asarray(base_n, dtype=np.float64)
    base_agree = np.asarray(base_agree, dtype=np.float64)
    disagree = (base_n - base_agree + PRIOR) / (base_n + 2 * PRIOR)
    if not disagree.size:
        return np.zeros(0, dtype=np.int64)
    scale = base_n >= WEIGHT_SCALE_IMAGES
    top = float(disagree[scale].max() if scale.any() else disagree.max())
    w = np.rint(WEIGHT_STEP * top / disagree)
    return np.clip(w, WEIGHT_STEP, WEIGHT_STEP * WEIGHT_RATIO_CAP).astype(np.int64)


def _window_weights(n: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The weights a window of per-class counts n is tested with: w, scaled down (at least
    1 each) where the weighted support sum_c n_c w_c would pass WEIGHTED_SUPPORT."""
    support = int(np.dot(n, w))
    if support <= WEIGHTED_SUPPORT:
        return w
    return np.maximum(1, np.rint(w * WEIGHTED_SUPPORT / support)).astype(np.int64)


def weighted_drop_pvalue(n: np.ndarray, agree: np.ndarray, base_n: np.ndarray,
                         base_agree: np.ndarray, exact_images: int = EXACT_IMAGES) -> float:
    """One-sided p-value P(sum_c w_c D_c >= sum_c w_c (n_c - agree_c)), D_c the disagreeing
    images of class c ~ BetaBinomial(n_c, base_n_c - base_agree_c + 1/2, base_agree_c + 1/2)
    independently, w_c = `disagreement_weights` of the baseline: a disagreement counts more in
    a class that rarely disagrees. Exact (the convolution of the weighted laws) up to
    `exact_images` window images; beyond, the pooled law of the count. Where the weighted
    support would pass WEIGHTED_SUPPORT the weights are scaled down to fit. NaN without
    window images."""
    _check_counts(n, agree, base_n, base_agree)
    w_all = disagreement_weights(base_n, base_agree)
    keep = np.rint(np.asarray(n, dtype=np.float64)) > 0
    n, agree, x, y = _tested(n, agree, base_n, base_agree)
    if int(n.sum()) == 0:
        return math.nan
    if int(n.sum()) > exact_images:
        return _pooled_pvalue(n, int(np.floor(agree.sum() + 1e-9)), x, y)
    w = _window_weights(n, w_all[keep])
    disagree = np.rint(n - np.floor(agree + 1e-9)).astype(np.int64)
    observed = int(np.dot(w, disagree))
    return float(min(1.0, _weighted_sum_law(_class_laws(n, y, x), w)[observed:].sum()))


def usual_pairs(pred: np.ndarray, ref: np.ndarray, k: int) -> np.ndarray:
    """The (production class, reference class) pairs that are usual in images whose classes
    are `pred` and `ref` (in 0..k-1): a k x k boolean matrix, True on the diagonal (agreement)
    and where a disagreement pair holds at least USUAL_SHARE of the images production called
    that class and at least USUAL_MIN_IMAGES of them."""
    pred = np.asarray(pred, dtype=np.int64)
    ref = np.asarray(ref, dtype=np.int64)
    counts = np.zeros((k, k))
    np.add.at(counts, (pred, ref), 1.0)
    floor = np.maximum(USUAL_MIN_IMAGES, USUAL_SHARE * counts.sum(axis=1))
    usual = counts >= floor[:, None]
    usual[np.arange(k), np.arange(k)] = True
    return usual


@dataclass(frozen=True, slots=True)
class UsualSplit:
    """The unusual count's reference: `pairs` (P x 2, production class then reference class)
    the usual disagreement pairs chosen on one half of the images, and on the other half the
    images per production class (`n`) and those whose pair is usual, agreement included
    (`usual`)."""

    pairs: np.ndarray
    n: np.ndarray
    usual: np.ndarray


def choosing_half(size: int) -> np.ndarray:
    """Which of `size` images choose the usual pairs (True) and which count their rate: a
    seeded random half (the first (size + 1) // 2 of a permutation), so that neither an
    ordering of the images nor a period in it (pairs of near-copies) puts look-alikes on both
    sides."""
    mask = np.zeros(size, dtype=bool)
    mask[np.random.default_rng(0).permutation(size)[: (size + 1) // 2]] = True
    return mask


def split_usual(pred: np.ndarray, ref: np.ndarray, k: int) -> UsualSplit:
    """Choose the usual pairs on one half of the images (`choosing_half`) and count their
    rate on the other: choosing and counting on the same images would under-state the rate
    of the pairs left out (a pair is left out partly because it happened to be rare there)."""
    pred = np.asarray(pred, dtype=np.int64)
    ref = np.asarray(ref, dtype=np.int64)
    choose = choosing_half(pred.size)
    usual = usual_pairs(pred[choose], ref[choose], k)
    np.fill_diagonal(usual, False)
    pairs = np.argwhere(usual).astype(np.int64)
    p, r = pred[~choose], ref[~choose]
    hit = is_usual(p, r, pairs, k)
    return UsualSplit(pairs, np.bincount(p, minlength=k).astype(np.float64),
                      np.bincount(p, weights=hit.astype(np.float64), minlength=k))


def is_usual(pred: np.ndarray, ref: np.ndarray, pairs: np.ndarray, k: int) -> np.ndarray:
    """Per image, whether its (production, reference) pair is agreement or one of `pairs`
    (classes outside 0..k-1 are neither)."""
    pred = np.asarray(pred, dtype=np.int64)
    ref = np.asarray(ref, dtype=np.int64)
    codes = np.asarray(pairs, dtype=np.int64).reshape(-1, 2) @ np.array([k, 1])
    valid = (pred >= 0) & (pred < k) & (ref >= 0) & (ref < k)
    return valid & ((pred == ref) | np.isin(pred * k + ref, codes))


class AgreementMemo:
    """The last `entries` window tests by a digest of their inputs (least recently used out
    first). Snapshots are rendered outside the ingestion lock, two may render at once: it has
    a lock of its own. Pickled, it is an empty one: a render process keeps its own."""

    def __init__(self, entries: int = MEMO_ENTRIES) -> None:
        self._entries = entries
        self._results: OrderedDict[bytes, AgreementDrop | None] = OrderedDict()
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[type[AgreementMemo], tuple[int]]:
        return AgreementMemo, (self._entries,)

    def get(self, key: bytes) -> tuple[bool, AgreementDrop | None]:
        with self._lock:
            if key not in self._results:
                return False, None
            self._results.move_to_end(key)
            return True, self._results[key]

    def put(self, key: bytes, result: AgreementDrop | None) -> None:
        with self._lock:
            self._results[key] = result
            self._results.move_to_end(key)
            while len(self._results) > self._entries:
                self._results.popitem(last=False)


def _digest(*arrays: np.ndarray | None) -> bytes:
    """A digest of arrays' shapes and float64 values (None included as such)."""
    h = hashlib.blake2b(digest_size=20)
    for a in arrays:
        if a is None:
            h.update(b"none;")
            continue
        values = np.ascontiguousarray(a, dtype=np.float64)
        h.update(repr(values.shape).encode())
        h.update(values.tobytes())
    return h.digest()


def agreement_drop_test(n: np.ndarray, agree: np.ndarray, base_n: np.ndarray,
                        base_agree: np.ndarray, usual: np.ndarray | None = None,
                        base_usual: UsualSplit | None = None,
                        memo: AgreementMemo | None = None) -> AgreementDrop | None:
    """Per-class counts of a window (`n`, `agree`, indexed by production class) against the
    baseline's (`base_n`, `base_agree`). Classes the baseline never saw predicted, or the
    window has no image of, are not tested; None when nothing can be tested. With the
    window's images per class whose pair is usual (`usual`) and the baseline's split
    (`base_usual`), the unusual count is tested too. With a `memo`, inputs tested lately
    (a window whose counts did not change) get the remembered result for the cost of a
    digest."""
    if memo is None:
        return _drop_test(n, agree, base_n, base_agree, usual, base_usual)
    split = (None, None, None) if base_usual is None else (
        base_usual.pairs, base_usual.n, base_usual.usual)
    key = _digest(n, agree, base_n, base_agree, usual, *split)
    known, result = memo.get(key)
    if not known:
        result = _drop_test(n, agree, base_n, base_agree, usual, base_usual)
        memo.put(key, result)
    return result


def _drop_test(n: np.ndarray, agree: np.ndarray, base_n: np.ndarray, base_agree: np.ndarray,
               usual: np.ndarray | None, base_usual: UsualSplit | None
               ) -> AgreementDrop | None:
    """`agreement_drop_test` computed."""
    n = np.asarray(n, dtype=np.float64)
    agree = np.asarray(agree, dtype=np.float64)
    base_n = np.asarray(base_n, dtype=np.float64)
    base_agree = np.asarray(base_agree, dtype=np.float64)
    if not (n.shape == agree.shape == base_n.shape == base_agree.shape) or n.ndim != 1:
        raise ValueError("per-class counts must be four vectors of the same length")
    tested = (np.rint(n) > 0) & (base_n > 0)
    if not tested.any():
        return None
    idx = np.flatnonzero(tested)
    per_class = agreement_drop_pvalues(n[idx], agree[idx], base_n[idx], base_agree[idx])
    # overall, stratified by class: the window's own class mix (so a shift of the class mix
    # alone is no drop), each class's baseline images as the evidence for its rate; the
    # weights are the baseline's (every class it saw)
    seen = base_n > 0
    overall = [weighted_drop_pvalue(n[seen], agree[seen], base_n[seen], base_agree[seen])]
    kinds = [-1]
    if usual is not None and base_usual is not None:
        held = tested & (base_usual.n > 0)
        if held.any():
            pairs_p = stratified_drop_pvalue(n[held], np.asarray(usual, dtype=np.float64)[held],
                                             base_usual.n[held], base_usual.usual[held])
            overall.append(pairs_p)
            kinds.append(-2)
    # weighted Bonferroni: an equal share of the level to each overall test and to the
    # classes together
    parts = len(overall) + 1
    adjusted = np.concatenate([parts * np.array(overall), parts * idx.size * per_class])
    k = int(np.argmin(adjusted))
    worst = kinds[k] if k < len(overall) else int(idx[k - len(overall)])
    return AgreementDrop(min(1.0, float(adjusted[k])), idx.size + len(overall), worst)
