"""Unusual inputs per window: how many scored images exceed their baseline's 99th percentile.

For each (model, version) and each profiled score (`monitor.unusual`), the windows count
the images scored and those above the baseline's 99th percentile; a snapshot exports the
ratio and the largest ratio a clean window reaches at the test's level (a one-sided test
against the about 1 % of the baseline's images above it, `monitor.stats.unusual`), so that
the alert compares the two as the MMD alert does. A histogram of each score's baseline
rank (the share of baseline images scoring lower: uniform on [0, 1] for clean traffic)
counts since start. Images above a 99th percentile are offered to the failure gallery
with their excess.

Scores are computed before the ingestion lock is taken (`prepare`: a (batch x 2,000)
distance block per batch); under the lock only counts are added (`apply`). Memory: per
(model, version) 2 x scores counts per window slice and 21 histogram buckets per score.
Windows counted under an earlier baseline keep their counts until they slide out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.baseline import Baseline
from monitor.catalog import UNUSUAL_RANK_BUCKETS
from monitor.engine import EngineExtension, bucket_index
from monitor.gallery import FailureGallery
from monitor.scored import ScoredImage
from monitor.snapshot import SnapshotBuilder, histogram_value
from monitor.stats.unusual import exceedance_critical
from monitor.unusual import UNUSUAL_SCORES, UnusualProfile, image_scores
from monitor.windows import WindowedCounts, WindowSpec

S = len(UNUSUAL_SCORES)
RANK_BUCKETS = UNUSUAL_RANK_BUCKETS
_RANK_EDGES = np.asarray(RANK_BUCKETS)


def baseline_rank(values: np.ndarray, profile: UnusualProfile) -> np.ndarray:
    """The share of baseline images scoring at most each value, interpolated linearly
    between the profile's edges (at an edge: exact); 1 above the 99th percentile."""
    cum = np.cumsum(profile.counts)[:-1] / profile.counts.sum()
    rank = np.interp(values, profile.edges, cum, left=0.0)
    return np.where(values > profile.p99, 1.0, rank)


def excess(values: np.ndarray, profile: UnusualProfile) -> np.ndarray:
    """How far each value lies above the 99th percentile, in units of the baseline's
    spread from its median to that percentile (0 at the percentile; unitless)."""
    cum = np.cumsum(profile.counts)[:-1] / profile.counts.sum()
    median = float(np.interp(0.5, cum, profile.edges))
    spread = max(profile.p99 - median, 1e-12)
    return (values - profile.p99) / spread


def critical_ratio(n: float, alpha: float, profile: UnusualProfile) -> float:
    """The largest share of `n` images above the profile's 99th percentile that a clean
    window reaches with probability more than `alpha` (`exceedance_critical`): a window's
    ratio above it has p <= alpha."""
    return exceedance_critical(int(n), alpha, profile.above, profile.images) / n


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """One (model, version)'s images of a batch and their scores (NaN: not scored)."""

    model: str
    version: str
    ts: np.ndarray
    request_ids: tuple[str, ...]
    scores: np.ndarray        # (images, S)
    above: np.ndarray         # (images, S) booleans
    ranks: np.ndarray         # (images, S)
    excess: np.ndarray        # (images,): the largest excess over the scores


class _VersionUnusual:
    __slots__ = ("hist", "sums", "windows")

    def __init__(self, windows: tuple[WindowSpec, ...]) -> None:
        #: per score, [scored, above] in every window
        self.windows = WindowedCounts(windows, 2 * S)
        self.hist = np.zeros((S, len(RANK_BUCKETS) + 1), dtype=np.int64)
        self.sums = np.zeros(S)


@dataclass(frozen=True, slots=True)
class UnusualCapture:
    """The counts copied for a snapshot (statistics computed in `render`)."""

    rows: tuple[tuple[str, str, Mapping[str, np.ndarray], np.ndarray, np.ndarray,
                      Mapping[str, UnusualProfile]], ...]
    min_images: int
    alpha: float

    def render(self, b: SnapshotBuilder) -> None:
        for model, version, totals, hist, sums, profiles in self.rows:
            for j, score in enumerate(UNUSUAL_SCORES):
                if hist[j].sum():
                    b.set("visionmon_unusual_input_rank", (model, version, score),
                          histogram_value(hist[j], sums[j]))
                profile = profiles.get(score)
                for window, v in totals.items():
                    n, above = v[2 * j], v[2 * j + 1]
                    if profile is not None and n >= self.min_images:
                        key = (model, version, window, score)
                        b.set("visionmon_unusual_input_ratio", key, above / n)
                        b.set("visionmon_unusual_input_ratio_threshold", key,
                              critical_ratio(n, self.alpha, profile))


class UnusualMonitor(EngineExtension):
    """Counts scored images above their baseline's 99th percentile per window."""

    name = "unusual"

    def __init__(self, windows: tuple[WindowSpec, ...],
                 baselines: Callable[[str], Baseline | None],
                 watermark: Callable[[str], float], alpha: float,
                 min_images: int, version_key: Callable[[str, str], str] | None = None,
                 gallery: FailureGallery | None = None) -> None:
        """`baselines` gives a model's current baseline, `watermark` its newest event
        time (what the windows end at, as for the other blocks); `alpha` is the level of each
        score's test; a window's ratio is exported from `min_images` scored images."""
        self.windows = windows
        self.baselines = baselines
        self.watermark = watermark
        self.alpha = alpha
        self.min_images = min_images
        self.version_key = version_key or (lambda _m, v: v)
        self.gallery = gallery
        self.by_version: dict[tuple[str, str], _VersionUnusual] = {}

    # --- feeding ---------------------------------------------------------------------
    def prepare(self, items: Sequence[ScoredImage]) -> list[PreparedBatch]:
        """Each (model, version)'s scores against its baseline (no lock needed: baselines
        are immutable values); models without profiles are left out."""
        groups: dict[tuple[str, str], list[ScoredImage]] = {}
        for it in items:
            groups.setdefault((it.model, self.version_key(it.model, it.version)), []).append(it)
        out = []
        for (model, version), its in groups.items():
            baseline = self.baselines(model)
            if baseline is None or not baseline.unusual:
                continue
            sample = None if baseline.embedding is None else baseline.embedding.sample
            emb = np.stack([np.asarray(it.embedding, dtype=np.float64) for it in its])
            energy = np.fromiter((it.energy for it in its), np.float64, count=len(its))
            got = image_scores(emb, energy, baseline.unusual, sample)
            scores = np.full((len(its), S), np.nan)
            above = np.zeros((len(its), S), dtype=bool)
            ranks = np.full((len(its), S), np.nan)
            ex = np.full(len(its), -np.inf)
            for j, name in enumerate(UNUSUAL_SCORES):
                prof = baseline.unusual.get(name)
                if prof is None or name not in got:
                    continue
                v = got[name]
                scores[:, j] = v
                ok = np.isfinite(v)
                above[:, j] = ok & (v > prof.p99)
                ranks[ok, j] = baseline_rank(v[ok], prof)
                ex = np.fmax(ex, np.where(ok, excess(v, prof), -np.inf))
            out.append(PreparedBatch(model, version,
                                     np.fromiter((it.ts for it in its), np.float64, len(its)),
                                     tuple(it.request_id for it in its), scores, above, ranks,
                                     ex))
        return out

    def apply(self, batches: Sequence[PreparedBatch]) -> None:
        """Add prepared batches to the windows and histograms (under the engine's lock)."""
        for p in batches:
            s = self.by_version.get((p.model, p.version))
            if s is None:
                s = self.by_version[(p.model, p.version)] = _VersionUnusual(self.windows)
            scored = np.isfinite(p.scores)
            rows, cols = np.nonzero(scored)
            ts = np.concatenate([p.ts[rows], p.ts[rows[p.above[rows, cols]]]])
            bins = np.concatenate([2 * cols, 2 * cols[p.above[rows, cols]] + 1])
            s.windows.add(ts, bins.astype(np.int64))
            for j in range(S):
                r = p.ranks[scored[:, j], j]
                s.hist[j] += np.bincount(bucket_index(r, _RANK_EDGES),
                                         minlength=s.hist.shape[1])
                s.sums[j] += float(r.sum())
            if self.gallery is not None:
                for i in np.flatnonzero(p.above.any(axis=1)):
                    self.gallery.on_unusual(p.request_ids[i], float(p.excess[i]))

    def apply_scored(self, items: Sequence[ScoredImage]) -> None:
        self.apply(self.prepare(items))

    # --- reading ---------------------------------------------------------------------
    def capture(self) -> UnusualCapture:
        rows = [(model, version, s.windows.totals(self.watermark(model)), s.hist.copy(),
                 s.sums.copy(), self._profiles(model))
                for (model, version), s in self.by_version.items()]
        return UnusualCapture(tuple(rows), self.min_images, self.alpha)

    def _profiles(self, model: str) -> Mapping[str, UnusualProfile]:
        baseline = self.baselines(model)
        return {} if baseline is None else baseline.unusual

    def state(self) -> Any:
        return [[m, v, {"windows": s.windows.state(), "hist": s.hist.tolist(),
                        "sums": s.sums.tolist()}]
                for (m, v), s in self.by_version.items()]

    def restore(self, state: Any) -> None:
        self.by_version.clear()
        for m, v, d in state:
            s = _VersionUnusual(self.windows)
            s.windows.restore([{k: np.asarray(x) for k, x in ring.items()}
                               for ring in d["windows"]])
            s.hist[...] = np.asarray(d["hist"], dtype=np.int64)
            s.sums[...] = np.asarray(d["sums"], dtype=np.float64)
            self.by_version[(m, v)] = s

