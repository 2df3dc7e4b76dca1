"""Per-image unusualness scores and the window test on how many images exceed the baseline.

Two scores, both larger = more unusual, from what the reference model already computes:

- `knn_distance`: the Euclidean distance from an image's embedding, scaled to unit length,
  to its k-th nearest neighbour in the baseline's embedding sample (Sun et al., "Out-of-
  distribution detection with deep nearest neighbors", ICML 2022). Unitless, in [0, 2].
  Chosen over class-conditional Mahalanobis because it needs no per-class covariance
  (a D x D matrix per class, ill-conditioned with the few hundred baseline rows a class
  has) and reuses the sample the MMD test keeps; memory is bounded by that sample.
- the energy, -T * logsumexp(logits / T) of the reference model's logits (Liu et al.,
  "Energy-based out-of-distribution detection", NeurIPS 2020), computed by the scorer in
  torch. Unit: the logits'.

`exceedance_critical` is the critical count of the one-sided test of a window's images
above the baseline's 99th percentile against the about 1 % a clean window shows: binomial
for a large baseline, beta-binomial to allow for the percentile's own sampling error (its
p-value, the oracle, is in tests/oracles/unusual.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.stats import betabinom

#: neighbours behind the kNN distance (Sun et al. use k = 1 to 50; 5 is stable at a
#: sample of 2000 rows and still local)
DEFAULT_KNN_K = 5
#: rows of the query compared with the sample at once (bounds the distance block's memory)
_CHUNK = 256


def unit_rows(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Rows scaled to unit Euclidean length (an all-zero row stays zero)."""
    a = np.atleast_2d(np.asarray(x, dtype=np.float64))
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, norm, out=np.zeros_like(a), where=norm > 0)


def knn_distance(x: npt.ArrayLike, sample: npt.ArrayLike, k: int = DEFAULT_KNN_K,
                 skip_self: npt.ArrayLike | None = None) -> npt.NDArray[np.float64]:
    """The distance from each row of `x` (N x D) to its k-th nearest row of `sample`
    (M x D), both scaled to unit length first: N values in [0, 2].

    `skip_self` (N booleans) marks rows that are themselves in `sample`: for those the
    nearest row (itself, at distance 0) is passed over, so a baseline can score its own
    sample leave-one-out. Raises ValueError when the sample has fewer than k (+1) rows
    or the dimensions differ."""
    q, ref = unit_rows(x), unit_rows(sample)
    if q.shape[1] != ref.shape[1]:
        raise ValueError(f"embeddings have {q.shape[1]} dimensions, the sample {ref.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    skip = np.zeros(q.shape[0], bool) if skip_self is None else np.asarray(skip_self, bool)
    if ref.shape[0] < k + int(skip.any()):
        raise ValueError(f"the sample has {ref.shape[0]} rows, fewer than k = {k} neighbours")
    out = np.empty(q.shape[0])
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    for lo in range(0, q.shape[0], _CHUNK):
        block = q[lo:lo + _CHUNK]
        sq = np.einsum("ij,ij->i", block, block)[:, None] + ref_sq[None, :] - 2 * block @ ref.T
        d = np.sqrt(np.maximum(sq, 0.0))
        rank = k - 1 + skip[lo:lo + _CHUNK].astype(np.int64)
        part = np.partition(d, np.unique(rank), axis=1) if d.shape[1] > 1 else d
        out[lo:lo + block.shape[0]] = part[np.arange(block.shape[0]), rank]
    return out


def exceedance_critical(n: int, alpha: float, base_above: float, base_n: float) -> int:
    """The largest count of `n` clean images above the baseline's quantile that is
    reached with probability more than `alpha` (`exceedance_pvalue`'s null): a window
    with more has p <= alpha."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    a, b = _beta(base_above, base_n)
    return int(betabinom.isf(alpha, n, a, b))


def _beta(base_above: float, base_n: float) -> tuple[float, float]:
    if not 0 <= base_above < base_n:
        raise ValueError(f"the baseline needs 0 <= images above ({base_above}) < images "
                         f"({base_n})")
    return base_above + 1.0, base_n - base_above
