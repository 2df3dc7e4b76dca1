"""Shadow SLIs from the reference model: agreement with production, reference-based
calibration, input-feature drift and embedding drift (PCA bins and MMD²).

Scored images join their production prediction by request id in either arrival order,
through bounded stores like the label join. Input features and embeddings feed the
drift monitor as continuous features with baseline bins; the first `baseline_images`
scored images of a model extend its baseline when it has no image profile yet. A snapshot
copies the counts, window totals and newest embeddings under the ingestion lock
(`capture`); the tests (agreement, ECE, MMD) run on the copy outside it (`ShadowCapture`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np

from monitor.baseline import (
    EMBEDDING_COMPONENTS,
    AgreementProfile,
    agreement_from_pairs,
    input_feature_matrix,
    with_images,
)
from monitor.catalog import CALIBRATION_BINS
from monitor.config import (
    MMD_SHARE,
    BaselineConfig,
    DriftConfig,
    MmdConfig,
    QualityConfig,
    VisionmonConfig,
)
from monitor.drift import DriftMonitor
from monitor.durations import parse_duration
from monitor.engine import EngineExtension, EventGroup, late_count, nan_if_null
from monitor.gallery import FailureGallery
from monitor.joins import JoinStore
from monitor.quality import QualityEvaluator
from monitor.scored import INPUT_FEATURES, ScoredImage
from monitor.snapshot import JoinStoreCounts, Series, SnapshotBuilder, join_store_counts
from monitor.stats import (
    AgreementMemo,
    MmdNull,
    MmdReference,
    ShadowStrata,
    UsualSplit,
    agreement_drop_test,
    calibration_bin_index,
    ece_from_bins,
    is_usual,
    mean_kernel_to_reference,
    mmd2_to_reference,
    mmd_null_test,
    shadow_stratified_estimate,
)
from monitor.windows import WindowedCounts, WindowSpec

B = CALIBRATION_BINS
T = TypeVar("T")
log = logging.getLogger(__name__)


class _Layout:
    """Bin layout of a version's window count vector for a model with C classes: joined
    images and agreeing ones; per production class the joined, agreeing and usual ones
    (agreement or a disagreement the baseline shows often), C bins each; then the
    calibration bins' events, confidence sums and correct answers (B bins each)."""

    def __init__(self, c: int) -> None:
        self.c = c
        self.n = 0
        self.agree = 1
        self.class_n = 2
        self.class_agree = self.class_n + c
        self.class_usual = self.class_agree + c
        self.cal_events = self.class_usual + c
        self.cal_conf = self.cal_events + B
        self.cal_correct = self.cal_conf + B
        self.size = self.cal_correct + B
        #: checkpoints written before the usual bins lack them (`_with_usual`)
        self.size_without_usual = self.size - c

    def classes(self, v: np.ndarray, start: int) -> np.ndarray:
        """The C per-class bins starting at `start` (last axis of `v`)."""
        return v[..., start:start + self.c]

    def calibration(self, v: np.ndarray, start: int) -> np.ndarray:
        """The B calibration bins starting at `start` (last axis of `v`)."""
        return v[..., start:start + B]


#: a joined image as the batch listeners get it: the prediction's segments, the join's
#: event time (s) and whether production agreed with the reference model
ShadowJoin = tuple[Mapping[str, str] | None, float, bool]


#: receives scored images' binned input features (`ShadowMonitor.feature_listeners`)
InputFeatureListener = Callable[
    [str, str, Sequence[Mapping[str, str] | None], np.ndarray,
     Mapping[str, tuple[np.ndarray, np.ndarray]]], None]


class _WaitingPrediction(NamedTuple):
    """A prediction waiting for its reference score (checkpointed as a list)."""

    version: str
    pred: int
    confidence: float
    #: the prediction's segments (`monitor.segments`), None without
    segments: Mapping[str, str] | None = None


class _WaitingScore(NamedTuple):
    """A reference score waiting for its prediction (checkpointed as a list)."""

    ref_pred: int
    ref_confidence: float


class _Joined(NamedTuple):
    """A prediction joined to its reference score at `ts`, the event time (s) of whichever
    of the two arrived second."""

    pred: int
    confidence: float
    ts: float
    ref_pred: int
    segments: Mapping[str, str] | None = None


class _CrossTerm(NamedTuple):
    """An embedding's mean kernel to the MMD reference of the baseline with `sha256`."""

    sha256: str
    value: np.ndarray


class _Embedded(NamedTuple):
    """A reservoir entry: an image's event time (s), its embedding and its cross term
    (None until computed for the current baseline)."""

    ts: float
    embedding: np.ndarray
    cross: _CrossTerm | None



#: reservoir entries never change once made: a render process keeps those it was sent and
#: is sent only the new ones (collectors/render_worker.py)
ReservoirEntry = _Embedded

class _MmdCached(NamedTuple):
    """An MMD result and the images added to its reservoir when it was computed."""

    added: int
    statistic: float
    threshold: float


class _ByBaseline(NamedTuple, Generic[T]):
    """A value derived from the baseline with `sha256` (recomputed when it changes)."""

    sha256: str
    value: T


class _VersionShadow:
    def __init__(self, c: int, windows: tuple[WindowSpec, ...], usual_tag: str) -> None:
        self.c = c
        self.layout = _Layout(c)
        self.agree = np.zeros(c)          # by production's predicted class
        self.disagree = np.zeros(c)
        self.windows = WindowedCounts(windows, self.layout.size)
        #: the baseline pairs the usual bins were counted with (`ShadowMonitor._pairs_tag`)
        self.usual_tag = usual_tag

    def sync_usual(self, tag: str) -> None:
        """Under other baseline pairs than the usual bins were counted with, count every
        image in the windows as usual (never unusual) until new images fill them."""
        if tag != self.usual_tag:
            self.windows.copy_bins(self.layout.class_n, self.layout.class_usual, self.c)
            self.usual_tag = tag


#: The config's defaults, the only place defaults live (`shadow_join:`, `baseline.images`,
#: `quality.min_shadow_images`).
_JOIN = VisionmonConfig.model_fields["shadow_join"].get_default(call_default_factory=True)
_BASELINE_IMAGES = BaselineConfig().images
_MIN_SHADOW_IMAGES = QualityConfig().min_shadow_images


class MmdResults:
    """The last MMD result of each (model, version, window, baseline sha), kept by whatever
    renders snapshots: two renders may run at once, so it has a lock of its own. Pickled, it
    is an empty one: a render process keeps its own (collectors/render_worker.py)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str, str, str], _MmdCached] = {}

    def __reduce__(self) -> tuple[type[MmdResults], tuple[()]]:
        return MmdResults, ()

    def get(self, key: tuple[str, str, str, str]) -> _MmdCached | None:
        with self._lock:
            return self._last.get(key)

    def put(self, key: tuple[str, str, str, str], result: _MmdCached) -> None:
        """Keep `result` unless a render of a later capture stored a newer one."""
        with self._lock:
            last = self._last.get(key)
            if last is None or result.added >= last.added:
                self._last[key] = result


@dataclass(frozen=True, slots=True)
class MmdInputs:
    """A window's MMD test: its newest embeddings (entries are immutable) and the baseline's
    reference and null; the result goes to `results` under `key`, and is used again while
    fewer than `every` images were added to the reservoir since it (`added` now)."""

    key: tuple[str, str, str, str]
    added: int
    sha256: str
    ref: MmdReference
    null: MmdNull
    alpha: float
    window: tuple[_Embedded, ...]
    results: MmdResults
    every: int

    def compute(self) -> _MmdCached:
        """The last result while still fresh, else the test; cross terms missing for this
        baseline (entries kept from before it, or restored from a checkpoint) are computed
        here."""
        last = self.results.get(self.key)
        if last is not None and 0 <= self.added - last.added < self.every:
            return last  # (a result of later images is not this copy's)
        x = np.stack([it.embedding for it in self.window])
        kept = [it.cross.value if it.cross is not None and it.cross.sha256 == self.sha256
                else None for it in self.window]
        missing = [i for i, c in enumerate(kept) if c is None]
        if missing:
            for i, c in zip(missing, mean_kernel_to_reference(self.ref, x[missing]), strict=True):
                kept[i] = c
        cross = np.stack(kept)  # type: ignore[arg-type]  # all filled above
        result = mmd_null_test(self.null, mmd2_to_reference(self.ref, x, cross),
                               len(self.window), self.alpha)
        out = _MmdCached(self.added, result.statistic, result.threshold)
        self.results.put(self.key, out)
        return out


@dataclass(frozen=True, slots=True)
class MmdWindow:
    """One window's MMD: the inputs of its test (whose last result is used while fresh)."""

    model: str
    version: str
    window: str
    inputs: MmdInputs

    def render(self, b: SnapshotBuilder) -> None:
        got = self.inputs.compute()
        key = (self.model, self.version, self.window)
        b.set("visionmon_embedding_mmd", key, got.statistic)
        b.set("visionmon_embedding_mmd_threshold", key, got.threshold)


@dataclass(frozen=True, slots=True)
class VersionShadowCounts:
    """One (model, version)'s agreement counts and window totals, copied for a snapshot,
    with its baseline's agreement profile (None without one)."""

    model: str
    version: str
    classes: tuple[str, ...]
    layout: _Layout
    agree: np.ndarray
    disagree: np.ndarray
    totals: Mapping[str, np.ndarray]
    profile: AgreementProfile | None
    #: the baseline's shadow strata (the shadow-stratified accuracy estimate), None without
    strata: ShadowStrata | None = None

    def render(self, b: SnapshotBuilder, min_agreement_images: int,
               memo: AgreementMemo | None = None) -> None:
        mv = (self.model, self.version)
        b.set("visionmon_shadow_scored_total", (*mv, "agree"), float(self.agree.sum()))
        b.set("visionmon_shadow_scored_total", (*mv, "disagree"), float(self.disagree.sum()))
        for i, name in enumerate(self.classes):
            if self.agree[i] or self.disagree[i]:
                b.set("visionmon_shadow_class_total", (*mv, name, "agree"), self.agree[i])
                b.set("visionmon_shadow_class_total", (*mv, name, "disagree"), self.disagree[i])
        lay, profile = self.layout, self.profile
        for window, v in self.totals.items():
            n = v[lay.n]
            if n >= min_agreement_images:
                b.set("visionmon_shadow_agreement_ratio", (*mv, window), v[lay.agree] / n)
            if profile is not None and n > 0:
                drop = agreement_drop_test(
                    lay.classes(v, lay.class_n), lay.classes(v, lay.class_agree),
                    profile.n, profile.agree, lay.classes(v, lay.class_usual), profile.usual,
                    memo)
                if drop is not None:
                    b.set("visionmon_shadow_agreement_pvalue", (*mv, window), drop.p_value)
            if n > 0:
                ev = lay.calibration(v, lay.cal_events)
                agreed = lay.calibration(v, lay.cal_correct)  # the reference agreed
                if self.strata is not None and ev.sum() >= min_agreement_images:
                    b.set("visionmon_estimated_accuracy_ratio",
                          (*mv, window, "shadow_stratified"),
                          shadow_stratified_estimate(self.strata, agreed, ev - agreed))
                if ev.sum():
                    ece = ece_from_bins(ev, lay.calibration(v, lay.cal_conf),
                                        lay.calibration(v, lay.cal_correct))
                    b.set("visionmon_calibration_ece", (*mv, window, "reference"), ece)


@dataclass(frozen=True, slots=True)
class ShadowCapture:
    """What the shadow series need, copied under the ingestion lock."""

    stores: tuple[JoinStoreCounts, ...]
    versions: tuple[VersionShadowCounts, ...]
    min_agreement_images: int
    mmd: tuple[MmdWindow, ...]
    #: images collected towards each baseline's image profile (`ShadowMonitor._collecting`)
    collecting: Mapping[str, Series]
    #: agreement tests of unchanged windows, remembered across renders
    memo: AgreementMemo | None = None

    def render(self, b: SnapshotBuilder) -> None:
        b.merge(self.collecting)
        for store in self.stores:
            store.render(b)
        for v in self.versions:
            v.render(b, self.min_agreement_images, self.memo)
        for w in self.mmd:
            w.render(b)


class ShadowMonitor(EngineExtension):
    """Joins reference scores to predictions and feeds input/embedding drift."""
    name = "shadow"

    def __init__(self, models: Mapping[str, Sequence[str]], windows: tuple[WindowSpec, ...],
                 drift: DriftMonitor, quality: QualityEvaluator | None = None,
                 max_entries: int = _JOIN.max_entries,
                 ttl_seconds: float = parse_duration(_JOIN.ttl),
                 hash_request_ids: bool = False, baseline_images: int = _BASELINE_IMAGES,
                 mmd: MmdConfig | None = None, mmd_alpha: float | None = None,
                 version_key: Callable[[str, str], str] | None = None,
                 min_agreement_images: int = _MIN_SHADOW_IMAGES,
                 late: Callable[[int], None] | None = None) -> None:
        """`late` is told how many scored images came too late for any window (their event
        time at least the longest window behind the model's watermark)."""
        self.models = {m: tuple(c) for m, c in models.items()}
        self.windows = windows
        self.late = late or (lambda _n: None)
        self._horizon_s = max((w.seconds for w in windows), default=math.inf)
        self.drift = drift
        self.quality = quality
        self.predictions: JoinStore[_WaitingPrediction] = JoinStore(
            "shadow_predictions", max_entries, ttl_seconds, hash_request_ids)
        self.early: JoinStore[_WaitingScore] = JoinStore(
            "shadow_early", max_entries, ttl_seconds, hash_request_ids)
        self.by_version: dict[tuple[str, str], _VersionShadow] = {}
        self.baseline_images = baseline_images
        self._collect: dict[str, list[ScoredImage]] = {}
        #: model -> (production class, reference class) of the images joined since its first
        #: images started to be collected: the agreement profile at sealing (bounded by the
        #: joins of that time)
        self._collect_pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        mmd = mmd or MmdConfig()
        self.reservoir_size = mmd.reservoir
        #: (model, version) -> its most recent embeddings
        self.reservoirs: dict[tuple[str, str], deque[_Embedded]] = {}
        #: level of the MMD test: `drift.mmd.alpha`, or the share of `drift.alpha` it gets
        self.mmd_alpha = next(a for a in (mmd_alpha, mmd.alpha, DriftConfig().alpha * MMD_SHARE)
                              if a is not None)
        self.mmd_every = mmd.every_images
        #: model -> its baseline's MMD reference
        self._mmd_refs: dict[str, _ByBaseline[MmdReference]] = {}
        #: model -> the tag of its baseline's usual pairs
        self._tags: dict[str, _ByBaseline[str]] = {}
        #: joined images a window needs before its agreement ratio is exported
        self.min_agreement_images = min_agreement_images
        self.scored = 0
        #: the last MMD result of each window (kept by renders, outside the lock)
        self._mmd_cache = MmdResults()
        #: the last agreement tests by their counts (used by renders, outside the lock)
        self._agreement_memo = AgreementMemo()
        self._added: dict[tuple[str, str], int] = {}
        #: maps an image's version header to the cardinality-limited version label
        self.version_key = version_key or (lambda _m, v: v)
        #: the failure gallery, told of scored images and shadow joins (None when off)
        self.gallery: FailureGallery | None = None
        #: told each batch of joined images of one (model, version): (the prediction's
        #: segments, join time in s, whether production agreed with the reference)
        self.batch_listeners: list[Callable[[str, str, Sequence[ShadowJoin]], None]] = []
        #: called with each batch of scored images' input features as the drift statistics
        #: count them (model, version, each image's segments, times in s, {feature: (indices
        #: of the images it counts, their baseline bins)})
        self.feature_listeners: list[InputFeatureListener] = []

    def _state(self, model: str, version: str) -> _VersionShadow:
        s = self.by_version.get((model, version))
        if s is None:
            s = self.by_version[(model, version)] = _VersionShadow(
                len(self.models[model]), self.windows, self._pairs_tag(model))
        return s

    def _usual_split(self, model: str) -> _ByBaseline[UsualSplit] | None:
        """The usual pairs of the model's baseline (None without them)."""
        baseline = self.drift.baselines.get(model)
        profile = None if baseline is None else baseline.agreement
        if baseline is None or profile is None or profile.usual is None:
            return None
        return _ByBaseline(baseline.sha256, profile.usual)

    def _pairs_tag(self, model: str) -> str:
        """A tag of the usual pairs of the model's baseline ("" without them): the windows'
        usual bins are only compared with the pairs they were counted with."""
        split = self._usual_split(model)
        if split is None:
            return ""
        cached = self._tags.get(model)
        if cached is None or cached.sha256 != split.sha256:
            pairs = np.ascontiguousarray(split.value.pairs, dtype=np.int64)
            cached = self._tags[model] = _ByBaseline(
                split.sha256, hashlib.sha256(pairs.tobytes()).hexdigest()[:16])
        return cached.value

    # --- feeding ------------------------------------------------------------------
    def on_predictions(self, groups: Mapping[tuple[str, str], EventGroup]) -> None:
        newest = -math.inf
        for (model, version), evs in groups.items():
            newest = max(newest, float(evs.column("ts").max()))
            if not len(self.early):  # no image is waiting: store the batch whole
                keep = evs.predicted()
                self.predictions.put_many(
                    list(map(attrgetter("request_id"), keep)), list(map(attrgetter("ts"), keep)),
                    list(map(_WaitingPrediction, repeat(version), map(attrgetter("pred"), keep),
                             map(attrgetter("confidence"), keep),
                             map(attrgetter("segments"), keep))))
                continue
            joins: list[_Joined] = []
            for e in evs:
                if not e.ok or e.pred < 0:
                    continue
                early = self.early.pop(e.request_id) if len(self.early) else None
                if early is None:
                    self.predictions.put(e.request_id, e.ts,
                                         _WaitingPrediction(version, e.pred, e.confidence,
                                                            e.segments))
                else:
                    joins.append(_Joined(e.pred, e.confidence, e.ts, early.ref_pred,
                                         e.segments))
                    if self.gallery is not None:
                        self.gallery.on_shadow_join(e.request_id, version, e.pred,
                                                    e.confidence, early.ref_pred)
            if joins:
                self._join(model, version, joins)
        # a baseline sealed by this batch (DriftMonitor runs first) gains the image
        # profile its first images already filled
        for model in {m for m, _ in groups if m in self._collect}:
            self._maybe_seal(model)
        if newest > -math.inf:
            self.predictions.expire(newest)
            self.early.expire(newest)

    def apply_scored(self, items: Sequence[ScoredImage]) -> None:
        """Results from the reference model (call under the engine's lock)."""
        self.scored += len(items)
        if self.gallery is not None:
            self.gallery.on_scored(items)
        by_mv: dict[tuple[str, str], list[ScoredImage]] = {}
        for it in items:
            if it.model in self.models:
                key = (it.model, self.version_key(it.model, it.version))
                by_mv.setdefault(key, []).append(it)
        for (model, version), its in by_mv.items():
            ts = np.fromiter(map(attrgetter("ts"), its), dtype=np.float64, count=len(its))
            self.late(late_count(ts, max(self.drift.watermark.get(model, -math.inf),
                                         float(ts.max())), self._horizon_s))
            self._profile(model, its)
            joins: dict[str, list[_Joined]] = {}
            #: each image's segments: its own headers, else its prediction's when joined now
            segs: list[Mapping[str, str] | None] = []
            for it in its:
                hit = self.predictions.pop(it.request_id)
                if hit is None:
                    self.early.put(it.request_id, it.ts,
                                   _WaitingScore(it.ref_pred, it.ref_confidence))
                    segs.append(it.segments)
                    continue
                segs.append(hit.segments if it.segments is None else it.segments)
                # the prediction's version is authoritative
                joins.setdefault(hit.version, []).append(
                    _Joined(hit.pred, hit.confidence, it.ts, it.ref_pred, hit.segments))
                if self.gallery is not None:
                    self.gallery.on_shadow_join(it.request_id, hit.version, hit.pred,
                                                hit.confidence, it.ref_pred)
            for pred_version, js in joins.items():
                self._join(model, pred_version, js)
            self._features(model, version, its, segs)

    def _awaits_profile(self, model: str) -> bool:
        """Scored images of `model` go towards an image profile: its baseline has none yet,
        or it has no baseline yet and collects one from its first events (the first images
        scored are kept while its first predictions are still being collected)."""
        if self.baseline_images <= 0:
            return False
        baseline = self.drift.baselines.get(model)
        if baseline is None:
            return self.drift.collects_first_events(model)
        return baseline.embedding is None

    def _profile(self, model: str, its: list[ScoredImage]) -> None:
        """Collect the model's first scored images towards its baseline's image profile, and
        the agreement of the images joined meanwhile (when any joined)."""
        if not self._awaits_profile(model):
            self._collect.pop(model, None)   # profiled elsewhere meanwhile: stop collecting
            self._collect_pairs.pop(model, None)
            return
        if model not in self._collect:
            self._collect[model] = []
            self._collect_pairs[model] = [(np.zeros(0, np.int64), np.zeros(0, np.int64))]
            log.info("baseline of model %s: collecting its first %d scored images for its "
                     "image profile", model, self.baseline_images)
        buf = self._collect[model]
        buf.extend(its[: self.baseline_images - len(buf)])
        self._maybe_seal(model)

    def _maybe_seal(self, model: str) -> None:
        """Extend the model's baseline with its image profile once enough images are
        collected and the baseline itself is sealed (else: at its sealing)."""
        baseline = self.drift.baselines.get(model)
        buf = self._collect.get(model)
        if baseline is None or buf is None or len(buf) < self.baseline_images:
            return
        c = len(self.models[model])
        joined = self._collect_pairs.pop(model)
        pred = np.concatenate([p for p, _ in joined])
        ref = np.concatenate([r for _, r in joined])
        ok = (ref >= 0) & (ref < c)
        agreement = agreement_from_pairs(pred[ok], ref[ok], c)
        profiled = with_images(baseline, buf, agreement=agreement)
        self.drift.set_baseline(profiled)
        del self._collect[model]
        log.info("baseline of model %s: image profile from %d scored images (sha256 %s); "
                 "input and embedding drift are measured from now on", model, len(buf),
                 profiled.sha256[:16])

    def _collecting(self, b: SnapshotBuilder) -> None:
        """Scored images collected so far towards the image profile of each baseline without
        one, sealed or still collecting (`DriftMonitor.lifecycle` counts the profile's
        images once it exists)."""
        for model in self.models:
            if self._awaits_profile(model):
                b.set("visionmon_baseline_events", (model, "images"),
                      float(len(self._collect.get(model, ()))))

    def _usual(self, model: str, pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Per joined image, whether its pair is usual by the model's baseline; all of them
        without the baseline's pairs, so that such images never count as unusual."""
        split = self._usual_split(model)
        usual = np.ones(pred.size, dtype=bool)
        if split is None:
            return usual
        c = len(self.models[model])
        ok = (ref >= 0) & (ref < c)    # a reference class out of range is never unusual
        usual[ok] = is_usual(pred[ok], ref[ok], split.value.pairs, c)
        return usual

    def _features(self, model: str, version: str, its: list[ScoredImage],
                  segs: Sequence[Mapping[str, str] | None]) -> None:
        """Input features and embeddings of scored images into the drift statistics;
        `segs`: each image's segments, for the `feature_listeners`."""
        baseline = self.drift.baselines.get(model)
        if baseline is None or baseline.embedding is None:
            return
        ts = np.array([it.ts for it in its])
        feats = input_feature_matrix(its)
        binned: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for j, name in enumerate(INPUT_FEATURES):
            got = self.drift.add_values(model, version, name, ts, feats[:, j])
            if got is not None:
                binned[name] = got
        if binned:
            for feature_listener in self.feature_listeners:
                feature_listener(model, version, segs, ts, binned)
        emb = np.stack([np.asarray(it.embedding, dtype=np.float64) for it in its])
        centred = emb - baseline.embedding.mean
        pcs = centred @ baseline.embedding.components.T
        for j in range(min(pcs.shape[1], EMBEDDING_COMPONENTS)):
            self.drift.add_values(model, version, f"embedding_pc{j + 1}", ts, pcs[:, j])
        res = self.reservoirs.get((model, version))
        if res is None:
            res = self.reservoirs[(model, version)] = deque(maxlen=self.reservoir_size)
        ref = self._mmd_reference(model)
        if ref is None:
            res.extend(map(_Embedded, ts.tolist(), emb, repeat(None)))
        else:  # the cross term of MMD², once per embedding
            sha = baseline.sha256
            cross = mean_kernel_to_reference(ref, emb)
            res.extend(_Embedded(t, e, _CrossTerm(sha, c))
                       for t, e, c in zip(ts.tolist(), emb, cross, strict=True))
        self._added[(model, version)] = self._added.get((model, version), 0) + len(its)

    def _join(self, model: str, version: str, joins: list[_Joined]) -> None:
        s = self._state(model, version)
        s.sync_usual(self._pairs_tag(model))
        n = len(joins)
        pred = np.fromiter(map(attrgetter("pred"), joins), dtype=np.int64, count=n)
        conf = np.fromiter(map(attrgetter("confidence"), joins), dtype=np.float64, count=n)
        at = np.fromiter(map(attrgetter("ts"), joins), dtype=np.float64, count=n)
        ref = np.fromiter(map(attrgetter("ref_pred"), joins), dtype=np.int64, count=n)
        agree = pred == ref
        np.add.at(s.agree, pred[agree], 1.0)
        np.add.at(s.disagree, pred[~agree], 1.0)
        if model in self._collect_pairs:
            self._collect_pairs[model].append((pred, ref))
        lay = s.layout
        fin = np.isfinite(conf)
        cb = calibration_bin_index(conf[fin]) if fin.any() else np.empty(0, np.int64)
        a = agree
        u = self._usual(model, pred, ref)
        # (time, bin, weight) of every count, one part per group of bins
        ts = np.concatenate([at, at[a], at, at[a], at[u], at[fin], at[fin], at[fin][a[fin]]])
        bins = np.concatenate([np.full(n, lay.n), np.full(int(a.sum()), lay.agree),
                               lay.class_n + pred, lay.class_agree + pred[a],
                               lay.class_usual + pred[u], lay.cal_events + cb,
                               lay.cal_conf + cb, lay.cal_correct + cb[a[fin]]])
        w = np.concatenate([np.ones(n), np.ones(int(a.sum())), np.ones(n),
                            np.ones(int(a.sum())), np.ones(int(u.sum())), np.ones(cb.size),
                            conf[fin], np.ones(int(a[fin].sum()))])
        s.windows.add(ts, bins.astype(np.int64, copy=False), w)
        wm = self.drift.watermark.get(model, -math.inf)
        self.drift.watermark[model] = max(wm, float(at.max()))
        if self.quality is not None:
            for t, ok in zip(at.tolist(), agree.tolist(), strict=True):
                self.quality.on_shadow(model, version, t, ok)
        for listener in self.batch_listeners:
            listener(model, version, [(j.segments, t, ok) for j, t, ok
                                      in zip(joins, at.tolist(), agree.tolist(), strict=True)])

    # --- reading ------------------------------------------------------------------
    def _mmd_reference(self, model: str) -> MmdReference | None:
        """The model's MMD reference (kernel sums of its baseline sample), built once per
        baseline; None when the baseline has no calibrated MMD null."""
        baseline = self.drift.baselines.get(model)
        if baseline is None or baseline.embedding is None or baseline.embedding.null is None:
            return None
        cached = self._mmd_refs.get(model)
        if cached is None or cached.sha256 != baseline.sha256:
            cached = self._mmd_refs[model] = _ByBaseline(baseline.sha256,
                                                         baseline.embedding.mmd_reference())
        return cached.value

    def _mmd_window(self, model: str, version: str, spec: WindowSpec, now: float
                    ) -> MmdWindow | None:
        """What the MMD of one window needs (under the lock): the window's newest embeddings
        (the render uses the last result while fewer than `drift.mmd.every_images` images
        arrived since it); None without a testable reference or with too few images."""
        baseline = self.drift.baselines.get(model)
        res = self.reservoirs.get((model, version))
        ref = self._mmd_reference(model)
        if baseline is None or baseline.embedding is None or ref is None or not res:
            return None
        null = baseline.embedding.null
        assert null is not None
        current = [it for it in res if it.ts > now - spec.seconds]
        if len(current) < int(null.sizes[0]):
            return None
        key = (model, version, spec.name, baseline.sha256)
        added = self._added.get((model, version), 0)
        return MmdWindow(model, version, spec.name, MmdInputs(
            key, added, baseline.sha256, ref, null, self.mmd_alpha,
            tuple(current[-int(null.sizes[-1]):]), self._mmd_cache, self.mmd_every))

    def _counts(self, model: str, version: str, s: _VersionShadow) -> VersionShadowCounts:
        """Copy one (model, version)'s counts and window totals (under the lock)."""
        s.sync_usual(self._pairs_tag(model))
        baseline = self.drift.baselines.get(model)
        return VersionShadowCounts(
            model, version, self.models[model], s.layout, s.agree.copy(), s.disagree.copy(),
            s.windows.totals(self.drift.watermark.get(model, 0.0)),
            None if baseline is None else baseline.agreement,
            None if baseline is None else baseline.shadow_strata)

    def capture(self) -> ShadowCapture:
        mmd = (self._mmd_window(m, v, spec, self.drift.watermark.get(m, 0.0))
               for (m, v) in self.reservoirs for spec in self.windows)
        collecting = SnapshotBuilder()
        self._collecting(collecting)
        return ShadowCapture(
            (join_store_counts(self.predictions), join_store_counts(self.early)),
            tuple(self._counts(m, v, s) for (m, v), s in self.by_version.items()),
            self.min_agreement_images, tuple(w for w in mmd if w is not None),
            collecting.build(), self._agreement_memo)

    def agreement_by_class(self, model: str, version: str, window: str) -> np.ndarray:
        """Per production class agreement ratio in a window (NaN without data)."""
        s = self.by_version.get((model, version))
        if s is None:
            return np.full(len(self.models[model]), np.nan)
        v = s.windows.totals(self.drift.watermark.get(model, 0.0))[window]
        n, a = s.layout.classes(v, s.layout.class_n), s.layout.classes(v, s.layout.class_agree)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, a / n, np.nan)

    # --- checkpoint -------------------------------------------------------------------
    def state(self) -> Any:
        return {
            "predictions": self.predictions.state(list),
            "early": self.early.state(list),
            "versions": [[m, v, s.agree, s.disagree, s.windows.state(), s.usual_tag]
                         for (m, v), s in self.by_version.items()],
            "reservoirs": [[m, v, [[it.ts, it.embedding] for it in r]] for (m, v), r in
                           self.reservoirs.items()],
            "scored": self.scored,
            "collecting": {m: _collected_images(buf, self._collect_pairs.get(m, []))
                           for m, buf in self._collect.items()},
        }

    def restore(self, state: Any) -> None:
        # a confidence of NaN (none sent) is checkpointed as JSON null
        # a waiting prediction checkpointed before segments holds three values
        self.predictions.restore(state["predictions"], lambda x: _WaitingPrediction(
            str(x[0]), int(x[1]), nan_if_null(x[2]), x[3] if len(x) > 3 else None))
        self.early.restore(state["early"], lambda x: _WaitingScore(int(x[0]), float(x[1])))
        for m, v, agree, disagree, windows, *tag in state["versions"]:
            if m not in self.models:
                continue
            s = self._state(m, v)
            s.agree[...] = agree
            s.disagree[...] = disagree
            rings = [{k: np.asarray(x) for k, x in r.items()} for r in windows]
            if not tag:  # checkpointed before the usual bins: every image counted as usual
                rings = [_with_usual(r, s.layout) for r in rings]
            s.windows.restore(rings)
            # the windows' usual bins hold to the pairs they were counted with
            s.usual_tag = str(tag[0]) if tag else ""
            s.sync_usual(self._pairs_tag(m))
        for m, v, items in state.get("reservoirs", []):
            r = self.reservoirs[(m, v)] = deque(maxlen=self.reservoir_size)
            for t, e in items:
                r.append(_Embedded(float(t), np.asarray(e, dtype=np.float64), None))
        self.scored = int(state.get("scored", 0))
        for m, d in state.get("collecting", {}).items():
            if m in self.models and self._awaits_profile(m):
                self._collect[m] = _images_collected(m, d)[:self.baseline_images]
                self._collect_pairs[m] = [(np.asarray(d["pairs_pred"], dtype=np.int64),
                                           np.asarray(d["pairs_ref"], dtype=np.int64))]


def _collected_images(images: Sequence[ScoredImage],
                      pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """An image profile in progress, as `with_images` and the agreement profile read it:
    each image's time, reference answer, features and embedding, and the (production,
    reference) classes of the images joined meanwhile. Bounded by `baseline.images`."""
    empty = np.zeros(0, np.int64)
    return {"ts": [it.ts for it in images], "ref_pred": [it.ref_pred for it in images],
            "ref_confidence": [it.ref_confidence for it in images],
            "features": [list(it.features) for it in images],
            "embedding": [np.asarray(it.embedding, dtype=np.float32) for it in images],
            "energy": [it.energy for it in images],
            "pairs_pred": np.concatenate([empty, *(p for p, _ in pairs)]),
            "pairs_ref": np.concatenate([empty, *(r for _, r in pairs)])}


def _images_collected(model: str, d: Mapping[str, Any]) -> list[ScoredImage]:
    """The collected images back from `_collected_images` (request ids are not kept; a
    checkpoint from before energies were collected gives NaN, so no energy profile)."""
    energy = d.get("energy", [None] * len(d["ts"]))
    return [ScoredImage("", model, "", float(t), int(r), nan_if_null(c),
                        np.asarray(e, dtype=np.float32),
                        tuple(nan_if_null(f) for f in feats), energy=nan_if_null(en))
            for t, r, c, feats, e, en in zip(d["ts"], d["ref_pred"], d["ref_confidence"],
                                             d["features"], d["embedding"], energy,
                                             strict=True)]


def _with_usual(ring: dict[str, np.ndarray], lay: _Layout) -> dict[str, np.ndarray]:
    """A window ring checkpointed before the per-class usual-pair bins: every image counted
    as usual (never unusual), as a window without the baseline's pairs counts them. The old
    layout is this one without the usual bins, so they are inserted where they belong."""
    counts = ring["counts"]
    if counts.ndim != 2 or counts.shape[1] != lay.size_without_usual:
        raise ValueError("checkpointed shadow window has a different shape; windows changed?")
    before, after = counts[:, :lay.class_usual], counts[:, lay.class_usual:]
    usual = lay.classes(counts, lay.class_n)  # every joined image counted as usual
    return {**ring, "counts": np.concatenate([before, usual, after], axis=1)}
