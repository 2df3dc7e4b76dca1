"""The baseline: a versioned reference profile of one model's traffic.

It holds, fixed at build time, the class counts, the quantile bin edges and counts of
each continuous feature, a confidence calibration map and ATC's confidence threshold fitted
on labeled events, the shadow strata of labelled, shadow-scored events, and
(when images were profiled) input-feature bins, an embedding summary, per production
class, how often the reference model agreed, and each unusualness score's distribution
(`monitor.unusual`). Current windows are compared against it.
Files are JSON with a content hash checked on load.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from monitor.atomic_write import write_bytes_atomically
from monitor.events import PredictionEvent
from monitor.scored import INPUT_FEATURES, OWN_BIN_AT, ScoredImage
from monitor.stats import (
    IsotonicMap,
    UsualSplit,
    bin_counts,
    categorical_counts,
    fit_isotonic,
    median_heuristic_bandwidth,
    pca_fit,
    quantile_edges,
    split_usual,
)
from monitor.stats.label_free import ShadowStrata, atc_threshold, fit_shadow_strata
from monitor.stats.mmd_null import (
    DEFAULT_MMD_SCALES,
    DEFAULT_NULL_SIZES,
    MmdNull,
    MmdReference,
    calibrate_mmd_null,
    mmd_reference,
)
from monitor.unusual import UnusualProfile, unusual_profiles

FORMAT_VERSION = 1
PREDICTION_FEATURES = ("confidence", "margin", "entropy")
MIN_FEATURE_VALUES = 50      # a continuous feature needs this many values to be profiled
MIN_LABELED_FOR_CALIBRATION = 50
EMBEDDING_SAMPLE = 2000      # baseline embeddings kept as the MMD reference (rows)
EMBEDDING_NULL_DRAWS = 4000  # simulated clean windows behind the MMD test's critical value
#: the null simulates windows of at most 1/4 of the held-out rows (a window drawn from
#: barely more rows than it holds varies less than real traffic does)
NULL_ROWS_PER_WINDOW = 4
#: fewer scored images: no MMD test (half reference, half held out for windows of >= 20)
MIN_EMBEDDINGS_FOR_MMD = 2 * NULL_ROWS_PER_WINDOW * DEFAULT_NULL_SIZES[0]
EMBEDDING_COMPONENTS = 8


class BaselineError(Exception):
    """A baseline file is missing, corrupt, or does not fit the configured model."""


@dataclass(frozen=True, slots=True, eq=False)
class FeatureProfile:
    """Bins of one drift feature: `edges` are interior quantile edges (empty for the
    categorical predicted class), `counts` the baseline events per bin."""

    name: str
    edges: np.ndarray
    counts: np.ndarray

    @property
    def categorical(self) -> bool:
        return self.edges.size == 0

    def bin_of(self, values: np.ndarray) -> np.ndarray:
        if self.categorical:
            return values.astype(np.int64)
        return np.searchsorted(self.edges, values, side="left").astype(np.int64)

    def bin_labels(self, classes: Sequence[str]) -> list[str]:
        """Label values for the `bin` label: class names, or upper edges (`+Inf` last)."""
        if self.categorical:
            return list(classes)
        return [f"{e:.6g}" for e in self.edges.tolist()] + ["+Inf"]


@dataclass(frozen=True, slots=True, eq=False)
class EmbeddingProfile:
    """Reference embeddings: PCA basis (rows = components), the MMD reference sample, the
    RBF median bandwidth, and the MMD test's null simulated from held-out embeddings."""

    mean: np.ndarray
    components: np.ndarray
    sample: np.ndarray
    bandwidth: float
    null: MmdNull | None = None
    scales: tuple[float, ...] = DEFAULT_MMD_SCALES

    def mmd_reference(self) -> MmdReference:
        return mmd_reference(self.sample, self.bandwidth, self.scales)


@dataclass(frozen=True, slots=True, eq=False)
class AgreementProfile:
    """Joined baseline images per class the production model predicted (`n`) and how many
    of them the reference model agreed with (`agree`): the shadow agreement test's
    reference (`monitor.stats.agreement`); `usual` the unusual count's reference (the
    disagreement pairs the baseline showed often, and their rate), absent from older files."""

    n: np.ndarray
    agree: np.ndarray
    usual: UsualSplit | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Baseline:
    model: str
    classes: tuple[str, ...]
    events: int
    created_at: float
    features: Mapping[str, FeatureProfile]
    calibration: IsotonicMap | None = None
    labeled_events: int = 0
    embedding: EmbeddingProfile | None = None
    source: str = ""
    baseline_version: str = "1"
    agreement: AgreementProfile | None = None
    #: ATC's confidence threshold, fitted with the calibration map on the same labelled
    #: events (`atc_threshold`); None in files written before it existed
    atc_threshold: float | None = None
    #: P(correct | agrees with the reference × confidence bin) of the labelled, shadow-scored
    #: baseline events (`fit_shadow_strata`); None without both, and in older files
    shadow_strata: ShadowStrata | None = None
    #: per unusualness score, its baseline distribution; empty in older files (then the
    #: scores are not exported)
    unusual: Mapping[str, UnusualProfile] = field(default_factory=dict)
    sha256: str = field(default="")


# --- building -----------------------------------------------------------------


def _continuous(name: str, values: np.ndarray, k: int) -> FeatureProfile | None:
    values = values[np.isfinite(values)]
    if values.size < MIN_FEATURE_VALUES:
        return None
    edges = quantile_edges(values, k)
    if name in OWN_BIN_AT:
        edges = np.union1d(edges, [OWN_BIN_AT[name]])
    return FeatureProfile(name, edges, bin_counts(values, edges).astype(np.float64))


def build_baseline(model: str, classes: Sequence[str], events: Iterable[PredictionEvent],
                   labels: Mapping[str, int] | None = None, k: int = 10,
                   images: Sequence[ScoredImage] = (), created_at: float = 0.0,
                   source: str = "") -> Baseline:
    """Profile a model's events (and optionally labels and scored images)."""
    evs = [e for e in events if e.model == model and e.ok and e.pred >= 0]
    if not evs:
        raise BaselineError(f"no successful predictions of model {model!r} to build from")
    preds = np.fromiter((e.pred for e in evs), dtype=np.int64, count=len(evs))
    features: dict[str, FeatureProfile] = {
        "predicted_class": FeatureProfile(
            "predicted_class", np.empty(0),
            categorical_counts(preds, len(classes)).astype(np.float64)),
    }
    for name in PREDICTION_FEATURES:
        vals = np.fromiter((getattr(e, name) for e in evs), dtype=np.float64, count=len(evs))
        prof = _continuous(name, vals, k)
        if prof is not None:
            features[name] = prof
    calibration = None
    atc = None
    labeled = 0
    if labels:
        pairs = [(e.confidence, e.pred == labels[e.request_id]) for e in evs
                 if e.request_id in labels and math.isfinite(e.confidence)]
        labeled = len(pairs)
        if labeled >= MIN_LABELED_FOR_CALIBRATION:
            conf = np.array([p[0] for p in pairs])
            correct = np.array([p[1] for p in pairs], dtype=np.float64)
            calibration = fit_isotonic(conf, correct)
            atc = atc_threshold(conf, correct > 0)
    base = Baseline(model=model, classes=tuple(classes), events=len(evs),
                    created_at=created_at, features=features, calibration=calibration,
                    labeled_events=labeled, source=source, atc_threshold=atc,
                    shadow_strata=shadow_strata_of(evs, images, labels or {}))
    if not images:
        return seal(base)
    return with_images(base, images, k, agreement_profile(evs, images, len(classes)))


def shadow_strata_of(events: Sequence[PredictionEvent], images: Sequence[ScoredImage],
                     labels: Mapping[str, int]) -> ShadowStrata | None:
    """The shadow strata of the events that have a label and a scored image (joined by
    request id); None with fewer than MIN_LABELED_FOR_CALIBRATION of them."""
    ref = {img.request_id: img.ref_pred for img in images}
    rows = [(e.confidence, e.pred == ref[e.request_id], e.pred == labels[e.request_id])
            for e in events if e.request_id in ref and e.request_id in labels
            and math.isfinite(e.confidence) and 0.0 <= e.confidence <= 1.0]
    if len(rows) < MIN_LABELED_FOR_CALIBRATION:
        return None
    conf, agrees, correct = (np.array(col) for col in zip(*rows, strict=True))
    return fit_shadow_strata(conf, agrees, correct)


def agreement_profile(events: Sequence[PredictionEvent], images: Sequence[ScoredImage],
                      n_classes: int) -> AgreementProfile | None:
    """Per production class, the images joined to their prediction by request id and how
    many the reference model agreed with; None when no image joins."""
    pred = {e.request_id: e.pred for e in events if e.ok and e.pred >= 0}
    pairs = [(pred[img.request_id], img.ref_pred) for img in images
             if img.request_id in pred and 0 <= img.ref_pred < n_classes]
    if not pairs:
        return None
    return agreement_from_pairs(np.array([x[0] for x in pairs], dtype=np.int64),
                                np.array([x[1] for x in pairs], dtype=np.int64), n_classes)


def agreement_from_pairs(pred: np.ndarray, ref: np.ndarray, n_classes: int
                         ) -> AgreementProfile | None:
    """The agreement profile of joined images whose production and reference classes are
    `pred` and `ref` (in arrival order); None without images."""
    if not len(pred):
        return None
    p, r = np.asarray(pred, dtype=np.int64), np.asarray(ref, dtype=np.int64)
    return AgreementProfile(np.bincount(p, minlength=n_classes).astype(np.float64),
                            np.bincount(p[p == r], minlength=n_classes).astype(np.float64),
                            split_usual(p, r, n_classes))


def input_feature_matrix(images: Sequence[ScoredImage]) -> np.ndarray:
    """(images, INPUT_FEATURES) values; features an image lacks (one collected before the
    later features existed, restored from a checkpoint) are NaN, so never binned."""
    out = np.full((len(images), len(INPUT_FEATURES)), np.nan)
    for i, img in enumerate(images):
        n = min(len(img.features), len(INPUT_FEATURES))
        out[i, :n] = img.features[:n]
    return out


def with_images(baseline: Baseline, images: Sequence[ScoredImage], k: int = 10,
                agreement: AgreementProfile | None = None) -> Baseline:
    """The baseline extended with input-feature bins and an embedding profile (PCA basis,
    PC bins, a sample and bandwidth for MMD) from scored images, and with `agreement` when
    given (else the baseline's own)."""
    features = dict(baseline.features)
    feats = input_feature_matrix(images)
    for j, name in enumerate(INPUT_FEATURES):
        prof = _continuous(name, feats[:, j], k)
        if prof is not None:
            features[name] = prof
    emb = np.stack([np.asarray(img.embedding, dtype=np.float64) for img in images])
    embedding = embedding_profile(emb, k_components=EMBEDDING_COMPONENTS)
    pcs = (emb - embedding.mean) @ embedding.components.T
    for j in range(pcs.shape[1]):
        prof = _continuous(f"embedding_pc{j + 1}", pcs[:, j], k)
        if prof is not None:
            features[prof.name] = prof
    return seal(Baseline(model=baseline.model, classes=baseline.classes, events=baseline.events,
                         created_at=baseline.created_at, features=features,
                         calibration=baseline.calibration,
                         labeled_events=baseline.labeled_events, embedding=embedding,
                         source=baseline.source, baseline_version=baseline.baseline_version,
                         agreement=agreement or baseline.agreement,
                         atc_threshold=baseline.atc_threshold,
                         shadow_strata=baseline.shadow_strata,
                         unusual=unusual_profiles(images, embedding.sample)))


def with_calibration(baseline: Baseline, confidence: np.ndarray, correct: np.ndarray
                     ) -> Baseline:
    """The baseline with a confidence calibration map fitted on labeled events (top-1
    confidence, 1 when the label matched): what a file baseline gets from its labels, given
    to a first-events baseline by the labels that arrive after it, and ATC's threshold
    fitted on the same events. Its content, so its hash, changes."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    calibration = fit_isotonic(conf, ok)
    return seal(Baseline(model=baseline.model, classes=baseline.classes, events=baseline.events,
                         created_at=baseline.created_at, features=baseline.features,
                         calibration=calibration, labeled_events=int(conf.size),
                         embedding=baseline.embedding, source=baseline.source,
                         baseline_version=baseline.baseline_version,
                         agreement=baseline.agreement, atc_threshold=atc_threshold(conf, ok > 0),
                         shadow_strata=baseline.shadow_strata, unusual=baseline.unusual))


def profiled_images(baseline: Baseline) -> int:
    """Scored images behind the baseline's image profile (0 without one): the values of its
    most complete input or embedding feature (too few to bin: its embedding sample)."""
    if baseline.embedding is None:
        return 0
    names = (*INPUT_FEATURES, *(f"embedding_pc{j + 1}" for j in range(EMBEDDING_COMPONENTS)))
    counts = [baseline.features[n].counts.sum() for n in names if n in baseline.features]
    return round(float(max(counts))) if counts else int(baseline.embedding.sample.shape[0])


def embedding_profile(emb: np.ndarray, k_components: int = EMBEDDING_COMPONENTS,
                      seed: int = 0, null_draws: int = EMBEDDING_NULL_DRAWS) -> EmbeddingProfile:
    """PCA basis, and the MMD reference: up to `EMBEDDING_SAMPLE` rows (at most half), the
    other rows held out to simulate the test's null (`calibrate_mmd_null`)."""
    rng = np.random.default_rng(seed)
    basis = pca_fit(emb, min(k_components, emb.shape[1], emb.shape[0]))
    order = rng.permutation(emb.shape[0])
    testable = emb.shape[0] >= MIN_EMBEDDINGS_FOR_MMD   # else: no held-out rows, no test
    cut = min(EMBEDDING_SAMPLE, emb.shape[0] // 2 if testable else emb.shape[0])
    sample = emb[np.sort(order[:cut])]
    bandwidth = float(median_heuristic_bandwidth(sample, rng=rng))
    held = emb[order[cut:]]
    null = calibrate_mmd_null(mmd_reference(sample, bandwidth), held, rng,
                              sizes=null_sizes(held.shape[0]),
                              draws=null_draws) if testable else None
    return EmbeddingProfile(np.asarray(basis.mean), np.asarray(basis.components), sample,
                            bandwidth, null)


def null_sizes(held_rows: int) -> tuple[int, ...]:
    """The window sizes a null simulated from `held_rows` rows covers: at most a quarter of
    them each, so that the largest window the daemon tests grows with the baseline."""
    return tuple(s for s in DEFAULT_NULL_SIZES if s * NULL_ROWS_PER_WINDOW <= held_rows)


def _split_old_sample(sample: np.ndarray, bandwidth: float
                      ) -> tuple[np.ndarray, MmdNull | None]:
    """A null for a baseline written before the test had one: a seeded random half of its
    sample stays the reference, the other half is held out (the sample is in input order,
    so a split by position could separate classes or times)."""
    if sample.shape[0] < MIN_EMBEDDINGS_FOR_MMD:
        return sample, None
    order = np.random.default_rng(0).permutation(sample.shape[0])
    cut = sample.shape[0] // 2
    reference, held = sample[np.sort(order[:cut])], sample[order[cut:]]
    null = calibrate_mmd_null(mmd_reference(reference, bandwidth), held,
                              np.random.default_rng(0), sizes=null_sizes(held.shape[0]),
                              draws=EMBEDDING_NULL_DRAWS)
    return reference, null


def _agreement_from_dict(agr: Mapping[str, Any], n_classes: int) -> AgreementProfile:
    n = np.asarray(agr["n"], dtype=np.float64)
    agree = np.asarray(agr["agree"], dtype=np.float64)
    if n.shape != (n_classes,) or agree.shape != (n_classes,) or np.any(agree > n) \
            or np.any(agree < 0):
        raise ValueError(f"agreement counts must be {n_classes} pairs with 0 <= agree <= n")
    if "pairs" not in agr:  # an older file: no unusual count
        return AgreementProfile(n, agree)
    raw = np.asarray(agr["pairs"], dtype=np.float64)
    held_n = np.asarray(agr["pairs_n"], dtype=np.float64)
    held_usual = np.asarray(agr["pairs_usual"], dtype=np.float64)
    if (raw.size and (raw.ndim != 2 or raw.shape[1] != 2)) or np.any(raw != np.rint(raw)) \
            or np.any(raw < 0) or np.any(raw >= n_classes) \
            or held_n.shape != (n_classes,) or held_usual.shape != (n_classes,) \
            or np.any(held_usual > held_n) or np.any(held_usual < 0) or np.any(held_n > n):
        raise ValueError(f"agreement pairs must be [production, reference] class pairs in "
                         f"0..{n_classes - 1}, and pairs_n, pairs_usual {n_classes} counts with "
                         "0 <= pairs_usual <= pairs_n <= n")
    return AgreementProfile(n, agree, UsualSplit(raw.reshape(-1, 2).astype(np.int64), held_n,
                                                 held_usual))


def _embedding_from_dict(emb: Mapping[str, Any]) -> EmbeddingProfile:
    sample = np.asarray(emb["sample"], dtype=np.float64)
    bandwidth = float(emb["bandwidth"])
    mean, components = np.asarray(emb["mean"]), np.asarray(emb["components"])
    null = emb.get("null")
    if null is None:  # an older file: half its sample stays the reference
        reference, built = _split_old_sample(sample, bandwidth)
        return EmbeddingProfile(mean, components, reference, bandwidth, built)
    return EmbeddingProfile(
        mean, components, sample, bandwidth,
        MmdNull(np.asarray(null["sizes"], dtype=np.int64),
                np.asarray(null["mean"], dtype=np.float64),
                np.asarray(null["sd"], dtype=np.float64),
                np.asarray(null["aggregate"], dtype=np.float64)),
        tuple(float(s) for s in emb["scales"]))


# --- serialising --------------------------------------------------------------


def to_dict(b: Baseline) -> dict[str, Any]:
    out: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": b.model, "classes": list(b.classes), "events": b.events,
        "created_at": b.created_at, "source": b.source,
        "baseline_version": b.baseline_version,
        "features": {n: {"edges": f.edges.tolist(), "counts": f.counts.tolist()}
                     for n, f in b.features.items()},
        "labeled_events": b.labeled_events,
        "calibration": None if b.calibration is None else {
            "x": b.calibration.x_thresholds.tolist(), "y": b.calibration.y_values.tolist()},
        "embedding": None if b.embedding is None else {
            "mean": b.embedding.mean.tolist(), "components": b.embedding.components.tolist(),
            "sample": b.embedding.sample.tolist(), "bandwidth": b.embedding.bandwidth,
            **({} if b.embedding.null is None else {
                "scales": list(b.embedding.scales),
                "null": {"sizes": b.embedding.null.sizes.tolist(),
                         "mean": b.embedding.null.mean.tolist(),
                         "sd": b.embedding.null.sd.tolist(),
                         "aggregate": b.embedding.null.aggregate.tolist()}})},
    }
    if b.atc_threshold is not None:  # absent from older files, whose hash stays theirs
        out["atc_threshold"] = b.atc_threshold
    if b.shadow_strata is not None:  # absent from older files, whose hash stays theirs
        out["shadow_strata"] = {"accuracy": b.shadow_strata.accuracy.tolist(),
                                "counts": b.shadow_strata.counts.tolist()}
    if b.agreement is not None:  # absent from older files, whose hash stays theirs
        out["agreement"] = {"n": b.agreement.n.tolist(), "agree": b.agreement.agree.tolist()}
        u = b.agreement.usual
        if u is not None:
            out["agreement"].update(pairs=u.pairs.tolist(), pairs_n=u.n.tolist(),
                                    pairs_usual=u.usual.tolist())
    if b.unusual:  # absent from older files, whose hash stays theirs
        out["unusual"] = {n: p.to_dict() for n, p in b.unusual.items()}
    return out


def _hash(d: Mapping[str, Any]) -> str:
    body = orjson.dumps({k: v for k, v in d.items() if k != "sha256"},
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


def seal(b: Baseline) -> Baseline:
    """The same baseline with its content hash filled in."""
    d = to_dict(b)
    return from_dict({**d, "sha256": _hash(d)})


def from_dict(d: Mapping[str, Any], where: str = "baseline") -> Baseline:
    if d.get("format_version") != FORMAT_VERSION:
        raise BaselineError(f"{where}: format_version {d.get('format_version')!r} is not "
                            f"{FORMAT_VERSION}; rebuild it with `visionmon baseline build`")
    try:
        features = {n: FeatureProfile(n, np.asarray(f["edges"], dtype=np.float64),
                                      np.asarray(f["counts"], dtype=np.float64))
                    for n, f in d["features"].items()}
        cal = d.get("calibration")
        emb = d.get("embedding")
        agr = d.get("agreement")
        unusual = {n: UnusualProfile.from_dict(n, u) for n, u in d.get("unusual", {}).items()}
        b = Baseline(
            model=d["model"], classes=tuple(d["classes"]), events=int(d["events"]),
            created_at=float(d["created_at"]), features=features,
            calibration=None if cal is None else IsotonicMap(np.asarray(cal["x"]),
                                                              np.asarray(cal["y"])),
            labeled_events=int(d.get("labeled_events", 0)),
            embedding=None if emb is None else _embedding_from_dict(emb),
            source=str(d.get("source", "")), baseline_version=str(d.get("baseline_version", "1")),
            agreement=None if agr is None else _agreement_from_dict(agr, len(d["classes"])),
            atc_threshold=None if d.get("atc_threshold") is None
            else float(d["atc_threshold"]),
            shadow_strata=None if d.get("shadow_strata") is None
            else ShadowStrata(np.asarray(d["shadow_strata"]["accuracy"], dtype=np.float64),
                              np.asarray(d["shadow_strata"]["counts"], dtype=np.int64)),
            unusual=unusual, sha256=str(d.get("sha256", "")))
    except (KeyError, TypeError, ValueError) as err:
        raise BaselineError(f"{where}: malformed baseline ({err})") from None
    if emb is not None and emb.get("null") is None and b.embedding is not None \
            and b.embedding.null is not None:
        return seal(b)   # an older file given a null on load: its content, so its hash, changed
    return b


def save(b: Baseline, path: str | os.PathLike[str]) -> Path:
    """Write atomically (temp file + rename); the content hash goes into the file."""
    b = seal(b)
    return write_bytes_atomically(
        path, orjson.dumps({**to_dict(b), "sha256": b.sha256}, option=orjson.OPT_INDENT_2))


def load(path: str | os.PathLike[str], model: str | None = None,
         classes: Sequence[str] | None = None) -> Baseline:
    p = Path(path)
    try:
        d = orjson.loads(p.read_bytes())
    except FileNotFoundError:
        raise BaselineError(f"{p}: baseline file not found; build one with "
                            "`visionmon baseline build`") from None
    except orjson.JSONDecodeError as err:
        raise BaselineError(f"{p}: not valid JSON ({err}); the file is corrupt") from None
    if not isinstance(d, dict):
        raise BaselineError(f"{p}: not a baseline file")
    want = _hash(d)
    if d.get("sha256") != want:
        raise BaselineError(f"{p}: content hash mismatch (file says {d.get('sha256')!r}, "
                            f"content is {want}); the file was edited or truncated")
    b = from_dict(d, str(p))
    if model is not None and b.model != model:
        raise BaselineError(f"{p}: baseline is for model {b.model!r}, not {model!r}")
    if classes is not None and tuple(classes) != b.classes:
        at = next((i for i, (x, y) in enumerate(zip(b.classes, classes, strict=False))
                   if x != y), min(len(b.classes), len(classes)))
        theirs = b.classes[at] if at < len(b.classes) else "nothing"
        ours = classes[at] if at < len(classes) else "nothing"
        raise BaselineError(f"{p}: baseline class list differs from the config's for "
                            f"{b.model!r}: {len(b.classes)} classes against {len(classes)}, "
                            f"class {at} is {theirs!r} in the baseline and {ours!r} in the "
                            "config")
    return b
