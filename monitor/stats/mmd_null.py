"""Embedding MMD² against a fixed reference sample, with a null calibrated once on held-out data.

A permutation test pools window and reference on every call: it costs O(permutations x
(n + m)²) each time, which keeps the reference sample small and the test weak. Here the
reference sample is fixed, so the distribution of the statistic for a window of n clean
embeddings can be simulated once, when the baseline is built, from baseline embeddings held
out of the reference. A test then costs an n x n kernel plus a mean of per-embedding cross
terms that are computed once per embedding, and the reference can be thousands of rows.

Several RBF bandwidths are tested at once (multiples of the baseline's median distance): the
statistic is the largest MMD² over them after standardising each by its null mean and sd at
that window size, and the null of that maximum is simulated with the same draws (an
aggregated test in the spirit of MMDAgg, Schrab et al., JMLR 2023), so no single bandwidth
has to be right for every shift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitor.stats.mmd import MmdTestResult, _check_bandwidth, _points, _squared_distances

__all__ = [
    "DEFAULT_MMD_SCALES",
    "DEFAULT_NULL_SIZES",
    "MmdNull",
    "MmdReference",
    "calibrate_mmd_null",
    "mean_kernel_to_reference",
    "mmd2_to_reference",
    "mmd_null_test",
    "mmd_reference",
]

#: Bandwidths tested, as multiples of the median pairwise distance of the reference.
DEFAULT_MMD_SCALES = (0.5, 1.0, 2.0)
#: Window sizes (embeddings) the null keeps a simulated distribution for; a window is
#: tested on at most its last `DEFAULT_NULL_SIZES[-1]` embeddings.
DEFAULT_NULL_SIZES = (20, 32, 48, 64, 96, 128, 192, 256)

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class MmdReference:
    """A fixed reference sample (m, d), its RBF bandwidths (B,) in the sample's units, and
    ``within`` (B,): the mean kernel over distinct pairs of the sample, per bandwidth."""

    sample: F64
    bandwidths: F64
    within: F64


@dataclass(frozen=True, slots=True, eq=False)
class MmdNull:
    """The simulated null of the aggregated statistic for windows of clean embeddings.

    ``mean`` and ``sd`` (N, B): MMD² per bandwidth under the null, one row per window size
    from ``sizes[0]`` to ``sizes[-1]``; ``aggregate`` (G, D): for each of the G ``sizes``,
    D simulated values of the largest standardised MMD², sorted ascending."""

    sizes: npt.NDArray[np.int64]
    mean: F64
    sd: F64
    aggregate: F64

    @property
    def draws(self) -> int:
        return int(self.aggregate.shape[1])


def _kernels(d2: F64, bandwidths: F64) -> F64:
    """exp(-d2 / (2 bw²)) for each bandwidth: shape (B, *d2.shape)."""
    gamma = 1.0 / (2.0 * bandwidths**2)
    return np.exp(-gamma.reshape((-1,) + (1,) * d2.ndim) * d2[None])


def _points_of(x: npt.ArrayLike, name: str, dims: int | None = None) -> F64:
    """`mmd._points`, and the reference's number of dimensions when given."""
    arr = _points(x, name)
    if dims is not None and arr.shape[1] != dims:
        raise ValueError(f"{name} has {arr.shape[1]} dimensions, the reference {dims}")
    return arr


def mmd_reference(sample: npt.ArrayLike, bandwidth: float,
                  scales: Sequence[float] = DEFAULT_MMD_SCALES) -> MmdReference:
    """The reference for tests against ``sample`` with bandwidths ``bandwidth x scales``.

    Costs one m x m kernel per bandwidth, in blocks of 1,024 rows (memory O(1,024 m))."""
    y = _points(sample, "sample")
    if y.shape[0] < 2:
        raise ValueError("the reference sample needs at least two points")
    _check_bandwidth(bandwidth)
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive, got {tuple(scales)}")
    bws = bandwidth * np.asarray(scales, dtype=np.float64)
    total = np.zeros(bws.size)
    for start in range(0, y.shape[0], 1024):
        block = _kernels(_squared_distances(y[start:start + 1024], y), bws)
        total += block.sum(axis=(1, 2))
    m = y.shape[0]
    return MmdReference(y, bws, (total - m) / (m * (m - 1)))


def mean_kernel_to_reference(ref: MmdReference, x: npt.ArrayLike) -> F64:
    """(n, B): for each point of x, its mean kernel to the reference sample, per bandwidth.

    The cross term of MMD²; compute it once per embedding and keep it."""
    pts = _points_of(x, "x", ref.sample.shape[1])
    out = np.empty((pts.shape[0], ref.bandwidths.size))
    for start in range(0, pts.shape[0], 256):
        block = _kernels(_squared_distances(pts[start:start + 256], ref.sample), ref.bandwidths)
        out[start:start + 256] = block.mean(axis=2).T
    return out


def mmd2_to_reference(ref: MmdReference, x: npt.ArrayLike,
                      cross: npt.ArrayLike | None = None) -> F64:
    """(B,) unbiased MMD² between x (n >= 2 points) and the reference, per bandwidth.

    ``cross``: x's rows of `mean_kernel_to_reference`, when already known. Equals
    `tests.oracles.mmd.mmd2_rbf(x, ref.sample, bw)` for each bandwidth."""
    pts = _points_of(x, "x", ref.sample.shape[1])
    n = pts.shape[0]
    if n < 2:
        raise ValueError("need at least two points in x")
    c = mean_kernel_to_reference(ref, pts) if cross is None else np.asarray(cross, np.float64)
    if c.shape != (n, ref.bandwidths.size):
        raise ValueError(f"cross must have shape {(n, ref.bandwidths.size)}, got {c.shape}")
    k = _kernels(_squared_distances(pts, pts), ref.bandwidths)
    xx = (k.sum(axis=(1, 2)) - n) / (n * (n - 1))
    return np.asarray(xx + ref.within - 2.0 * c.mean(axis=0), dtype=np.float64)


def calibrate_mmd_null(ref: MmdReference, heldout: npt.ArrayLike,
                       rng: np.random.Generator,
                       sizes: Sequence[int] = DEFAULT_NULL_SIZES,
                       draws: int = 4000) -> MmdNull:
    """Simulate the null: ``draws`` windows of held-out clean embeddings tested against ref.

    Each draw takes ``sizes[-1]`` held-out rows with replacement and scores every prefix of
    it from one kernel, so each window size from ``sizes[0]`` to ``sizes[-1]`` gets
    ``draws`` values. Pairs that drew the same held-out row are left out of the within-window
    mean: a window of distinct images has no such pairs, and with few held-out rows they
    would inflate the null (with 150 rows and windows of 256, by several null sds). The
    held-out rows must not be in the reference sample and must come from the same traffic.
    The critical value at alpha rests on about alpha x draws simulated values (20 at the
    daemon's 0.005). Cost O(draws x sizes[-1]² x B): about 1 ms per draw."""
    held = _points_of(heldout, "heldout", ref.sample.shape[1])
    grid = np.asarray(sorted(set(int(s) for s in sizes)), dtype=np.int64)
    if grid.size == 0 or grid[0] < 2:
        raise ValueError(f"sizes must be at least 2, got {tuple(sizes)}")
    if draws < 20:
        raise ValueError(f"draws must be at least 20, got {draws}")
    if held.shape[0] < 2:
        raise ValueError("need at least two held-out points")
    top, low = int(grid[-1]), int(grid[0])
    cross = mean_kernel_to_reference(ref, held)
    counts = np.arange(low, top + 1, dtype=np.float64)
    values = np.empty((draws, top - low + 1, ref.bandwidths.size))
    for d in range(draws):
        idx = rng.integers(0, held.shape[0], size=top)
        x = held[idx]
        k = _kernels(_squared_distances(x, x), ref.bandwidths)
        tied = idx[:, None] == idx[None, :]          # the diagonal, and rows drawn twice
        k[:, tied] = 0.0
        # mean over pairs of distinct rows in every prefix, from the cumulated lower rows
        lower = np.cumsum(np.tril(k, -1).sum(axis=2), axis=1)[:, low - 1:]
        pairs = np.cumsum(np.tril(~tied, -1).sum(axis=1))[low - 1:]
        xx = lower / np.maximum(pairs, 1)
        xy = (np.cumsum(cross[idx], axis=0)[low - 1:] / counts[:, None]).T
        values[d] = (xx + ref.within[:, None] - 2.0 * xy).T
    mean = values.mean(axis=0)
    sd = values.std(axis=0, ddof=1)
    if not (sd > 0).all():
        raise ValueError("the null has zero spread: are the held-out points all identical?")
    z = ((values - mean) / sd).max(axis=2)
    aggregate = np.sort(z[:, grid - low].T, axis=1)
    return MmdNull(grid, mean, sd, aggregate)


def mmd_null_test(null: MmdNull, mmd2: npt.ArrayLike, n: int, alpha: float) -> MmdTestResult:
    """Test a window of n embeddings whose per-bandwidth MMD² are ``mmd2`` (B,).

    ``statistic``: the largest standardised MMD², dimensionless; ``threshold``: the critical
    value at ``alpha`` (the statistic exceeds it exactly when ``p_value <= alpha``, +inf when
    the null's draws cannot resolve alpha); ``p_value``: ``(1 + #{null >= statistic}) /
    (1 + draws)`` from the simulated null of the grid size nearest n (log scale)."""
    low, top = int(null.sizes[0]), int(null.sizes[-1])
    if not low <= n <= top:
        raise ValueError(f"n must lie in [{low}, {top}], got {n}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    values = np.asarray(mmd2, dtype=np.float64)
    if values.shape != (null.mean.shape[1],):
        raise ValueError(f"mmd2 must have shape {(null.mean.shape[1],)}, got {values.shape}")
    stat = float(np.max((values - null.mean[n - low]) / null.sd[n - low]))
    g = int(np.argmin(np.abs(np.log(null.sizes) - math.log(n))))
    ranked = null.aggregate[g]
    draws = ranked.size
    above = draws - int(np.searchsorted(ranked, stat, side="left"))
    # reject when at most j draws reach the statistic: p = (1 + above) / (1 + draws) <= alpha
    j = math.floor(alpha * (draws + 1) + 1e-9) - 1
    threshold = math.inf if j < 0 else float(ranked[draws - 1 - j])
    return MmdTestResult(statistic=stat, threshold=threshold,
                         p_value=(1 + above) / (1 + draws))
