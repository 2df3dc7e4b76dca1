"""Label-free accuracy estimates that need more than a calibration map: ATC and the
shadow-stratified estimate.

ATC (average thresholded confidence; Garg et al., "Leveraging unlabeled data to predict
out-of-distribution performance", ICLR 2022): on the baseline's labelled predictions pick the
threshold t so that the share of scores below t equals the baseline's error rate; a window's
estimated accuracy is the share of its predictions whose score is at least t. The score here is
the top-1 confidence (the paper's "MC" score). The share needs only a count per window.

Shadow-stratified: P(production correct | the reference model agrees or not × confidence bin),
fitted on the baseline's labelled, shadow-scored predictions; a window's estimate weighs those
accuracies by the window's own mix of strata (importance weighting over slices, as in
Mandoline, Chen et al. ICML 2021, with agreement as the slice that carries the shift).

Definitions, ranges and when each fails: docs/statistics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitor.stats.calibration import DEFAULT_N_BINS, calibration_bin_index

__all__ = [
    "ShadowStrata",
    "atc_estimate",
    "atc_threshold",
    "fit_shadow_strata",
    "shadow_stratified_estimate",
    "stratum_counts",
]


def atc_threshold(scores: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """The ATC threshold t on labelled baseline scores (unit: the score's, e.g. confidence).

    With k the number of wrong predictions among n, t is the candidate c that makes
    #{score < c} closest to k, the smaller c on a tie. Candidates are the distinct scores and
    the next float above the largest (so that all n can lie below t when every prediction is
    wrong). Without ties t is the (k+1)-th smallest score and exactly k scores lie below it.
    Raises ``ValueError`` on empty input or non-finite scores.
    """
    s = np.asarray(scores, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if s.ndim != 1 or s.shape != ok.shape:
        raise ValueError("scores and correct must be 1-D of equal length")
    if s.size == 0:
        raise ValueError("cannot fit an ATC threshold without labelled predictions")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    errors = int(s.size - np.count_nonzero(ok))
    candidates = np.append(np.unique(s), np.nextafter(s.max(), math.inf))
    below = np.searchsorted(np.sort(s), candidates, side="left")
    return float(candidates[int(np.argmin(np.abs(below - errors)))])


def atc_estimate(at_or_above: float, total: float) -> float:
    """ATC's estimated accuracy of a window: the share of its predictions with score >= t.

    In [0, 1]; NaN when the window is empty."""
    if total < 0 or at_or_above < 0 or at_or_above > total:
        raise ValueError("need 0 <= at_or_above <= total")
    return math.nan if total == 0 else at_or_above / total


@dataclass(frozen=True, slots=True, eq=False)
class ShadowStrata:
    """P(production correct | stratum) fitted on the baseline.

    Strata are (agrees with the reference: 0 = no, 1 = yes) × confidence bin, flattened as
    ``agrees * bins + bin``; the bins are the equal-width calibration bins
    (``calibration_bin_index``), the ones the shadow windows already count, split by
    agreement. ``accuracy``: one value in [0, 1] per stratum; a stratum without baseline
    events holds its agreement row's pooled accuracy (the overall one when the whole row is
    empty). ``counts``: baseline events per stratum.
    """

    accuracy: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        acc = np.asarray(self.accuracy, dtype=np.float64)
        counts = np.asarray(self.counts, dtype=np.int64)
        if acc.ndim != 1 or acc.size < 2 or acc.size % 2 or counts.shape != acc.shape:
            raise ValueError("need 2 x bins accuracies and counts")
        if not ((acc >= 0) & (acc <= 1)).all() or (counts < 0).any():
            raise ValueError("accuracies must lie in [0, 1] and counts be non-negative")
        for name, value in (("accuracy", acc), ("counts", counts)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def bins(self) -> int:
        """Confidence bins per agreement row."""
        return int(self.accuracy.size // 2)


def stratum_counts(
    confidence: npt.ArrayLike, agrees: npt.ArrayLike, bins: int = DEFAULT_N_BINS
) -> npt.NDArray[np.int64]:
    """Events per stratum (``agrees * bins + bin``), length 2 × ``bins``."""
    a = np.asarray(agrees, dtype=bool)
    idx = calibration_bin_index(confidence, bins)
    if idx.shape != a.shape:
        raise ValueError("confidence and agrees must be 1-D of equal length")
    return np.bincount(a.astype(np.int64) * bins + idx, minlength=2 * bins).astype(np.int64)


def fit_shadow_strata(
    confidence: npt.ArrayLike, agrees: npt.ArrayLike, correct: npt.ArrayLike,
    bins: int = DEFAULT_N_BINS,
) -> ShadowStrata:
    """Fit P(correct | agrees × confidence bin) on labelled, shadow-scored baseline events.

    Raises ``ValueError`` on empty or mismatched input, or confidences outside [0, 1]."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    a = np.asarray(agrees, dtype=bool)
    if conf.ndim != 1 or conf.shape != ok.shape or conf.shape != a.shape:
        raise ValueError("confidence, agrees and correct must be 1-D of equal length")
    if conf.size == 0:
        raise ValueError("cannot fit shadow strata without labelled, shadow-scored events")
    counts = stratum_counts(conf, a, bins)
    idx = a.astype(np.int64) * bins + calibration_bin_index(conf, bins)
    hits = np.bincount(idx, weights=ok, minlength=2 * bins)
    overall = float(ok.mean())
    acc = np.empty(2 * bins, dtype=np.float64)
    for row in range(2):
        part = slice(row * bins, (row + 1) * bins)
        n_row = counts[part].sum()
        fallback = hits[part].sum() / n_row if n_row else overall
        acc[part] = np.where(counts[part] > 0, hits[part] / np.maximum(counts[part], 1),
                             fallback)
    return ShadowStrata(acc, counts)


def shadow_stratified_estimate(
    strata: ShadowStrata, agree_counts: npt.ArrayLike, disagree_counts: npt.ArrayLike
) -> float:
    """Σ_s (n_s / N) · P(correct | s) over a window's joined images, given per confidence
    bin how many agreed and how many did not; in [0, 1], NaN when N = 0."""
    n = np.concatenate([np.asarray(disagree_counts, dtype=np.float64),
                        np.asarray(agree_counts, dtype=np.float64)])
    if n.shape != strata.accuracy.shape or (n < 0).any():
        raise ValueError("need non-negative agree and disagree counts, one per bin")
    total = n.sum()
    return math.nan if total == 0 else float(np.dot(n, strata.accuracy) / total)
