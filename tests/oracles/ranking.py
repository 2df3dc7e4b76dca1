"""The binning error of ROC-AUC and PR-AUC computed from score bins
(`monitor.stats.ranking`), against the same figures on the raw scores: the bounds that
docs/statistics.md states, computed from the bins alone."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def roc_auc_binning_bound(pos: npt.ArrayLike, neg: npt.ArrayLike) -> float:
    """Largest |binned ROC-AUC - raw ROC-AUC|: a positive and a negative in one bin count
    1/2 in the binned figure and 0 or 1 on the raw scores, so the error is at most half the
    fraction of (positive, negative) pairs that share a bin."""
    p, n = np.asarray(pos, float), np.asarray(neg, float)
    return float(0.5 * (p * n).sum() / (p.sum() * n.sum()))


def average_precision_binning_bound(pos: npt.ArrayLike, neg: npt.ArrayLike) -> float:
    """Largest |binned AP - raw AP|: the j-th positive of bin b (raw order) has precision
    (T + j) / (T + j + F + f) with T, F the positives and negatives of higher bins and
    0 <= f <= the bin's negatives, so each lies between (T + 1) / (T + 1 + F + neg_b) and
    (T + pos_b) / (T + pos_b + F), as does the binned precision; the error is at most the
    sum over bins of pos_b / P times that spread."""
    p, n = np.asarray(pos, float), np.asarray(neg, float)
    t_above = np.cumsum(p[::-1])[::-1] - p
    f_above = np.cumsum(n[::-1])[::-1] - n
    has = p > 0
    p, n, t_above, f_above = p[has], n[has], t_above[has], f_above[has]
    hi = (t_above + p) / (t_above + p + f_above)
    lo = (t_above + 1) / (t_above + 1 + f_above + n)
    return float((p / p.sum() * (hi - lo)).sum())
