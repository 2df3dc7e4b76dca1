"""Unusual inputs (F7): each scored image's unusualness scores, and their baseline profile.

A baseline built from scored images keeps, per score, the 99th percentile of its clean
images and quantile bins (the 99th percentile one of the edges): the window's share of
images above that percentile is compared with the 1 % a clean window shows
(`monitor.stats.unusual.exceedance_critical`). Scores (larger = more unusual):

- `knn`: `knn_distance` of the image's embedding to the baseline's embedding sample
  (unit-length embeddings, k = `DEFAULT_KNN_K`; unitless, in [0, 2]). Baseline images in
  the sample are scored leave-one-out.
- `energy`: the reference logits' energy (logit units), computed by the scorer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.scored import ScoredImage
from monitor.stats import bin_counts, quantile_edges
from monitor.stats.unusual import DEFAULT_KNN_K, knn_distance

#: the scores, in the order of the `score` label's values
UNUSUAL_SCORES: tuple[str, ...] = ("knn", "energy")
#: the baseline quantile a clean image exceeds with probability 1 - this
REFERENCE_QUANTILE = 0.99
#: quantile bins of each score's baseline distribution (the histogram's resolution)
PROFILE_BINS = 20
#: fewer finite baseline values: the score is not profiled (its 99th percentile would rest
#: on no image beyond it; the window test allows for its error, whatever the count)
MIN_PROFILE_VALUES = 100


@dataclass(frozen=True, slots=True, eq=False)
class UnusualProfile:
    """One score's baseline distribution: `p99` its 99th percentile, `edges` interior
    quantile edges (p99 among them) and `counts` baseline images per bin (right-closed
    bins, as `monitor.stats.binning`), in the score's unit."""

    name: str
    p99: float
    edges: np.ndarray
    counts: np.ndarray

    @property
    def images(self) -> float:
        """Baseline images behind the profile."""
        return float(self.counts.sum())

    @property
    def above(self) -> float:
        """Baseline images above the 99th percentile."""
        return float(self.counts[int(np.searchsorted(self.edges, self.p99)) + 1:].sum())

    def to_dict(self) -> dict[str, Any]:
        return {"p99": self.p99, "edges": self.edges.tolist(), "counts": self.counts.tolist()}

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> UnusualProfile:
        """The profile back from `to_dict`; ValueError names what is wrong."""
        if name not in UNUSUAL_SCORES:
            raise ValueError(f"unusual score {name!r} is not one of {list(UNUSUAL_SCORES)}")
        p99 = float(d["p99"])
        edges = np.asarray(d["edges"], dtype=np.float64)
        counts = np.asarray(d["counts"], dtype=np.float64)
        if not np.isfinite(p99) or edges.ndim != 1 or counts.shape != (edges.size + 1,) \
                or np.any(np.diff(edges) <= 0) or p99 not in edges or np.any(counts < 0):
            raise ValueError(f"unusual.{name}: needs a finite p99 among strictly increasing "
                             "edges and one non-negative count more than edges")
        return cls(name, p99, edges, counts)


def profile_of(name: str, values: np.ndarray) -> UnusualProfile | None:
    """The baseline profile of one score's values (non-finite ones dropped); None when
    fewer than `MIN_PROFILE_VALUES` remain."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < MIN_PROFILE_VALUES:
        return None
    p99 = float(np.quantile(v, REFERENCE_QUANTILE))
    edges = np.union1d(quantile_edges(v, PROFILE_BINS), [p99])
    return UnusualProfile(name, p99, edges, bin_counts(v, edges).astype(np.float64))


def baseline_scores(images: Sequence[ScoredImage], sample: np.ndarray
                    ) -> dict[str, np.ndarray]:
    """Each score of the baseline's own images: the kNN distance to `sample` (leave-one-out
    for the images whose embedding is a sample row) and the scorer's energy."""
    emb = np.stack([np.asarray(img.embedding, dtype=np.float64) for img in images])
    in_sample = {row.tobytes() for row in np.asarray(sample, dtype=np.float64)}
    skip = np.fromiter((row.tobytes() in in_sample for row in emb), bool, count=len(emb))
    out = {"energy": np.fromiter((img.energy for img in images), np.float64,
                                 count=len(images))}
    if sample.shape[0] > DEFAULT_KNN_K:
        out["knn"] = knn_distance(emb, sample, DEFAULT_KNN_K, skip_self=skip)
    return out


def unusual_profiles(images: Sequence[ScoredImage], sample: np.ndarray
                     ) -> dict[str, UnusualProfile]:
    """The profiles of the scores the baseline's images have enough values of."""
    scores = baseline_scores(images, sample)
    found = {n: profile_of(n, scores[n]) for n in UNUSUAL_SCORES if n in scores}
    return {n: p for n, p in found.items() if p is not None}


def image_scores(embeddings: np.ndarray, energy: np.ndarray,
                 profiles: Mapping[str, UnusualProfile], sample: np.ndarray | None
                 ) -> dict[str, np.ndarray]:
    """Each profiled score of a window's images (rows of `embeddings`, and `energy`):
    what the daemon compares with the profiles' 99th percentiles."""
    out: dict[str, np.ndarray] = {}
    if "knn" in profiles and sample is not None and len(embeddings):
        out["knn"] = knn_distance(embeddings, sample, DEFAULT_KNN_K)
    if "energy" in profiles:
        out["energy"] = np.asarray(energy, dtype=np.float64)
    return out
