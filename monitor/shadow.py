"""Shadow SLIs from the reference model: agreement with production, reference-based
calibration, input-feature drift and embedding drift (PCA bins and MMD²).

Scored images join their production prediction by request id in either arrival order,
through bounded stores like the label join. Input features and embeddings feed the
drift monitor as continuous features with baseline bins; the first `baseline_images`
scored images of a model extend its baseline when it has no image profile yet.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any

import numpy as np

from monitor.baseline import EMBEDDING_COMPONENTS, agreement_from_pairs, with_images
from monitor.catalog import CALIBRATION_BINS
from monitor.config import MMD_SHARE, DriftConfig, MmdConfig
from monitor.drift import DriftMonitor
from monitor.engine import EngineExtension, EventGroup
from monitor.joins import JoinStore
from monitor.quality import QualityEvaluator
from monitor.scored import INPUT_FEATURES, ScoredImage
from monitor.snapshot import SnapshotBuilder
from monitor.stats import (
    MmdReference,
    UsualSplit,
    agreement_drop_test,
    calibration_bin_index,
    ece_from_bins,
    is_usual,
    mean_kernel_to_reference,
    mmd2_to_reference,
    mmd_null_test,
)
from monitor.windows import WindowedCounts, WindowSpec

B = CALIBRATION_BINS
log = logging.getLogger(__name__)


def _window_bins(c: int) -> int:
    """Bins of a version's windows: n, agree, per-class n (c), per-class agree (c), per-class
    usual pairs (c: agreement or a disagreement the baseline shows often), then the
    calibration bins' events, confidence and correct (B each)."""
    return 2 + 3 * c + 3 * B


class _VersionShadow:
    def __init__(self, c: int, windows: tuple[WindowSpec, ...], usual_tag: str) -> None:
        self.c = c
        self.agree = np.zeros(c)          # by production's predicted class
        self.disagree = np.zeros(c)
        self.windows = WindowedCounts(windows, _window_bins(c))
        #: the baseline pairs the usual bins were counted with (`ShadowMonitor._pairs_tag`)
        self.usual_tag = usual_tag

    def sync_usual(self, tag: str) -> None:
        """Under other baseline pairs than the usual bins were counted with, count every
        image in the windows as usual (never unusual) until new images fill them."""
        if tag != self.usual_tag:
            self.windows.copy_bins(2, 2 + 2 * self.c, self.c)
            self.usual_tag = tag


class ShadowMonitor(EngineExtension):
    """Joins reference scores to predictions and feeds input/embedding drift."""

    def __init__(self, models: Mapping[str, Sequence[str]], windows: tuple[WindowSpec, ...],
                 drift: DriftMonitor, quality: QualityEvaluator | None = None,
                 max_entries: int = 50_000, ttl_seconds: float = 3600.0,
                 hash_request_ids: bool = False, baseline_images: int = 300,
                 mmd: MmdConfig | None = None, mmd_alpha: float | None = None,
                 version_key: Callable[[str, str], str] | None = None,
                 min_agreement_images: int = 1) -> None:
        self.models = {m: tuple(c) for m, c in models.items()}
        self.windows = windows
        self.drift = drift
        self.quality = quality
        self.predictions: JoinStore[tuple[str, int, float]] = JoinStore(
            "shadow_predictions", max_entries, ttl_seconds, hash_request_ids)
        self.early: JoinStore[tuple[int, float]] = JoinStore(
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
        #: (model, version) -> recent (event time, embedding, (baseline sha, cross term))
        self.reservoirs: dict[tuple[str, str], deque[tuple[float, np.ndarray, Any]]] = {}
        #: level of the MMD test: `drift.mmd.alpha`, or the share of `drift.alpha` it gets
        self.mmd_alpha = next(a for a in (mmd_alpha, mmd.alpha, DriftConfig().alpha * MMD_SHARE)
                              if a is not None)
        self.mmd_every = mmd.every_images
        self._mmd_refs: dict[str, tuple[str, MmdReference]] = {}
        #: model -> (baseline sha, tag of its usual pairs)
        self._tags: dict[str, tuple[str, str]] = {}
        #: joined images a window needs before its agreement ratio is exported
        self.min_agreement_images = min_agreement_images
        self.scored = 0
        #: (model, version, window, baseline sha) -> (embeddings added when computed,
        #: statistic, critical value)
        self._mmd_cache: dict[tuple[str, str, str, str], tuple[int, float, float]] = {}
        self._added: dict[tuple[str, str], int] = {}
        #: maps an image's version header to the cardinality-limited version label
        self.version_key = version_key or (lambda _m, v: v)

    def _state(self, model: str, version: str) -> _VersionShadow:
        s = self.by_version.get((model, version))
        if s is None:
            s = self.by_version[(model, version)] = _VersionShadow(
                len(self.models[model]), self.windows, self._pairs_tag(model))
        return s

    def _usual_split(self, model: str) -> tuple[str, UsualSplit] | None:
        """The model's baseline sha and its usual pairs (None without them)."""
        baseline = self.drift.baselines.get(model)
        profile = None if baseline is None else baseline.agreement
        if baseline is None or profile is None or profile.usual is None:
            return None
        return baseline.sha256, profile.usual

    def _pairs_tag(self, model: str) -> str:
        """A tag of the usual pairs of the model's baseline ("" without them): the windows'
        usual bins are only compared with the pairs they were counted with."""
        split = self._usual_split(model)
        if split is None:
            return ""
        sha, usual = split
        cached = self._tags.get(model)
        if cached is None or cached[0] != sha:
            pairs = np.ascontiguousarray(usual.pairs, dtype=np.int64)
            cached = self._tags[model] = (sha, hashlib.sha256(pairs.tobytes()).hexdigest()[:16])
        return cached[1]

    # --- feeding ------------------------------------------------------------------
    def on_predictions(self, groups: Mapping[tuple[str, str], EventGroup]) -> None:
        newest = -math.inf
        for (model, version), evs in groups.items():
            newest = max(newest, float(evs.column("ts").max()))
            if not len(self.early):  # no image is waiting: store the batch whole
                keep = evs.predicted()
                self.predictions.put_many(
                    list(map(attrgetter("request_id"), keep)), list(map(attrgetter("ts"), keep)),
                    list(zip(repeat(version), map(attrgetter("pred"), keep),
                             map(attrgetter("confidence"), keep))))
                continue
            joins: list[tuple[int, float, float, int, float]] = []
            for e in evs:
                if not e.ok or e.pred < 0:
                    continue
                early = self.early.pop(e.request_id) if len(self.early) else None
                if early is None:
                    self.predictions.put(e.request_id, e.ts, (version, e.pred, e.confidence))
                else:
                    joins.append((e.pred, e.confidence, e.ts, early[0], early[1]))
            if joins:
                self._join(model, version, joins)
        if newest > -math.inf:
            self.predictions.expire(newest)
            self.early.expire(newest)

    def apply_scored(self, items: Sequence[ScoredImage]) -> None:
        """Results from the reference model (call under the engine's lock)."""
        self.scored += len(items)
        by_mv: dict[tuple[str, str], list[ScoredImage]] = {}
        for it in items:
            if it.model in self.models:
                key = (it.model, self.version_key(it.model, it.version))
                by_mv.setdefault(key, []).append(it)
        for (model, version), its in by_mv.items():
            self._profile(model, its)
            joins: dict[str, list[tuple[int, float, float, int, float]]] = {}
            for it in its:
                hit = self.predictions.pop(it.request_id)
                if hit is None:
                    self.early.put(it.request_id, it.ts, (it.ref_pred, it.ref_confidence))
                    continue
                pred_version, pred, conf = hit  # the prediction's version is authoritative
                joins.setdefault(pred_version, []).append((pred, conf, it.ts, it.ref_pred, it.ts))
            for pred_version, js in joins.items():
                self._join(model, pred_version, js)
            self._features(model, version, its)

    def _profile(self, model: str, its: list[ScoredImage]) -> None:
        """Extend the model's baseline with images once enough have been scored, and with
        the agreement of the images joined meanwhile (when any joined)."""
        baseline = self.drift.baselines.get(model)
        if baseline is None or baseline.embedding is not None or self.baseline_images <= 0:
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
        if len(buf) >= self.baseline_images:
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
        """Scored images collected so far towards the image profile of each sealed baseline
        without one (`DriftMonitor.lifecycle` counts the profile's images once it exists)."""
        if self.baseline_images <= 0:
            return
        for model, baseline in self.drift.baselines.items():
            if baseline.embedding is None:
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
        usual[ok] = is_usual(pred[ok], ref[ok], split[1].pairs, c)
        return usual

    def _features(self, model: str, version: str, its: list[ScoredImage]) -> None:
        baseline = self.drift.baselines.get(model)
        if baseline is None or baseline.embedding is None:
            return
        ts = np.array([it.ts for it in its])
        feats = np.array([it.features for it in its], dtype=np.float64)
        for j, name in enumerate(INPUT_FEATURES):
            self.drift.add_values(model, version, name, ts, feats[:, j])
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
            res.extend(zip(ts.tolist(), emb, repeat(None)))
        else:  # the cross term of MMD², once per embedding
            tag = baseline.sha256
            cross = mean_kernel_to_reference(ref, emb)
            res.extend((t, e, (tag, c)) for t, e, c in zip(ts.tolist(), emb, cross, strict=True))
        self._added[(model, version)] = self._added.get((model, version), 0) + len(its)

    def _join(self, model: str, version: str,
              joins: list[tuple[int, float, float, int, float]]) -> None:
        s = self._state(model, version)
        s.sync_usual(self._pairs_tag(model))
        n = len(joins)
        pred = np.array([j[0] for j in joins], dtype=np.int64)
        conf = np.array([j[1] for j in joins], dtype=np.float64)
        at = np.array([max(j[2], j[4]) for j in joins], dtype=np.float64)
        ref = np.array([j[3] for j in joins], dtype=np.int64)
        agree = pred == ref
        np.add.at(s.agree, pred[agree], 1.0)
        np.add.at(s.disagree, pred[~agree], 1.0)
        if model in self._collect_pairs:
            self._collect_pairs[model].append((pred, ref))
        c = s.c
        fin = np.isfinite(conf)
        cb = calibration_bin_index(conf[fin]) if fin.any() else np.empty(0, np.int64)
        a = agree
        u = self._usual(model, pred, ref)
        cal = 2 + 3 * c
        ts = np.concatenate([at, at[a], at, at[a], at[u], at[fin], at[fin], at[fin][a[fin]]])
        bins = np.concatenate([np.zeros(n, np.int64), np.ones(int(a.sum()), np.int64),
                               2 + pred, 2 + c + pred[a], 2 + 2 * c + pred[u], cal + cb,
                               cal + B + cb, cal + 2 * B + cb[a[fin]]])
        w = np.concatenate([np.ones(n), np.ones(int(a.sum())), np.ones(n),
                            np.ones(int(a.sum())), np.ones(int(u.sum())), np.ones(cb.size),
                            conf[fin], np.ones(int(a[fin].sum()))])
        s.windows.add(ts, bins, w)
        wm = self.drift.watermark.get(model, -math.inf)
        self.drift.watermark[model] = max(wm, float(at.max()))
        if self.quality is not None:
            for t, ok in zip(at.tolist(), agree.tolist(), strict=True):
                self.quality.on_shadow(model, version, t, ok)

    # --- reading ------------------------------------------------------------------
    def _mmd_reference(self, model: str) -> MmdReference | None:
        """The model's MMD reference (kernel sums of its baseline sample), built once per
        baseline; None when the baseline has no calibrated MMD null."""
        baseline = self.drift.baselines.get(model)
        if baseline is None or baseline.embedding is None or baseline.embedding.null is None:
            return None
        cached = self._mmd_refs.get(model)
        if cached is None or cached[0] != baseline.sha256:
            cached = self._mmd_refs[model] = (baseline.sha256,
                                              baseline.embedding.mmd_reference())
        return cached[1]

    def _mmd(self, model: str, version: str, window: str, seconds: int, now: float
             ) -> tuple[float, float] | None:
        baseline = self.drift.baselines.get(model)
        res = self.reservoirs.get((model, version))
        ref = self._mmd_reference(model)
        if baseline is None or baseline.embedding is None or ref is None or not res:
            return None
        null = baseline.embedding.null
        assert null is not None
        if sum(1 for it in res if it[0] > now - seconds) < int(null.sizes[0]):
            return None
        key = (model, version, window, baseline.sha256)
        cached = self._mmd_cache.get(key)
        added = self._added.get((model, version), 0)
        # recompute only once `drift.mmd.every_images` new images arrived
        if cached is not None and added - cached[0] < self.mmd_every:
            return cached[1], cached[2]
        tag = baseline.sha256
        stale = [i for i, it in enumerate(res) if it[2] is None or it[2][0] != tag]
        if stale:  # kept from before this baseline, or restored from a checkpoint
            fresh = mean_kernel_to_reference(ref, np.stack([res[i][1] for i in stale]))
            for i, c in zip(stale, fresh, strict=True):
                res[i] = (res[i][0], res[i][1], (tag, c))
        current = [it for it in res if it[0] > now - seconds][-int(null.sizes[-1]):]
        x = np.stack([it[1] for it in current])
        cross = np.stack([it[2][1] for it in current])
        result = mmd_null_test(null, mmd2_to_reference(ref, x, cross), len(current),
                               self.mmd_alpha)
        self._mmd_cache[key] = (added, result.statistic, result.threshold)
        return result.statistic, result.threshold

    def snapshot(self, b: SnapshotBuilder) -> None:
        self._collecting(b)
        b.set("visionmon_pending_joins", ("shadow_predictions",), float(len(self.predictions)))
        b.set("visionmon_pending_joins", ("shadow_early",), float(len(self.early)))
        for store in (self.predictions, self.early):
            for reason, n in store.evicted.items():
                b.set("visionmon_join_evicted_total", (store.name, reason), float(n))
        for (model, version), s in self.by_version.items():
            mv = (model, version)
            classes = self.models[model]
            b.set("visionmon_shadow_scored_total", (*mv, "agree"), float(s.agree.sum()))
            b.set("visionmon_shadow_scored_total", (*mv, "disagree"), float(s.disagree.sum()))
            for i, name in enumerate(classes):
                if s.agree[i] or s.disagree[i]:
                    b.set("visionmon_shadow_class_total", (*mv, name, "agree"), s.agree[i])
                    b.set("visionmon_shadow_class_total", (*mv, name, "disagree"),
                          s.disagree[i])
            now = self.drift.watermark.get(model, 0.0)
            c = s.c
            s.sync_usual(self._pairs_tag(model))
            baseline = self.drift.baselines.get(model)
            profile = None if baseline is None else baseline.agreement
            for window, v in s.windows.totals(now).items():
                if v[0] >= self.min_agreement_images:
                    b.set("visionmon_shadow_agreement_ratio", (*mv, window), v[1] / v[0])
                if profile is not None and v[0] > 0:
                    drop = agreement_drop_test(v[2:2 + c], v[2 + c:2 + 2 * c], profile.n,
                                               profile.agree, v[2 + 2 * c:2 + 3 * c],
                                               profile.usual)
                    if drop is not None:
                        b.set("visionmon_shadow_agreement_pvalue", (*mv, window), drop.p_value)
                if v[0] > 0:
                    cal = 2 + 3 * c
                    ev = v[cal:cal + B]
                    if ev.sum():
                        ece = ece_from_bins(ev, v[cal + B:cal + 2 * B],
                                            v[cal + 2 * B:cal + 3 * B])
                        b.set("visionmon_calibration_ece", (*mv, window, "reference"), ece)
        for (model, version) in self.reservoirs:
            now = self.drift.watermark.get(model, 0.0)
            for spec in self.windows:
                got = self._mmd(model, version, spec.name, spec.seconds, now)
                if got is not None:
                    b.set("visionmon_embedding_mmd", (model, version, spec.name), got[0])
                    b.set("visionmon_embedding_mmd_threshold", (model, version, spec.name),
                          got[1])

    def agreement_by_class(self, model: str, version: str, window: str) -> np.ndarray:
        """Per production class agreement ratio in a window (NaN without data)."""
        s = self.by_version.get((model, version))
        if s is None:
            return np.full(len(self.models[model]), np.nan)
        v = s.windows.totals(self.drift.watermark.get(model, 0.0))[window]
        n, a = v[2:2 + s.c], v[2 + s.c:2 + 2 * s.c]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, a / n, np.nan)

    # --- checkpoint -------------------------------------------------------------------
    def state(self) -> Any:
        return {
            "predictions": self.predictions.state(list),
            "early": self.early.state(list),
            "versions": [[m, v, s.agree, s.disagree, s.windows.state(), s.usual_tag]
                         for (m, v), s in self.by_version.items()],
            "reservoirs": [[m, v, [[it[0], it[1]] for it in r]] for (m, v), r in
                           self.reservoirs.items()],
            "scored": self.scored,
        }

    def restore(self, state: Any) -> None:
        self.predictions.restore(state["predictions"], lambda x: (str(x[0]), int(x[1]),
                                                                  float(x[2])))
        self.early.restore(state["early"], lambda x: (int(x[0]), float(x[1])))
        for m, v, agree, disagree, windows, *tag in state["versions"]:
            if m not in self.models:
                continue
            s = self._state(m, v)
            s.agree[...] = agree
            s.disagree[...] = disagree
            rings = [{k: np.asarray(x) for k, x in r.items()} for r in windows]
            if not tag:  # checkpointed before the usual bins: every image counted as usual
                rings = [_with_usual(r, s.c) for r in rings]
            s.windows.restore(rings)
            # the windows' usual bins hold to the pairs they were counted with
            s.usual_tag = str(tag[0]) if tag else ""
            s.sync_usual(self._pairs_tag(m))
        for m, v, items in state.get("reservoirs", []):
            r = self.reservoirs[(m, v)] = deque(maxlen=self.reservoir_size)
            for t, e in items:
                r.append((float(t), np.asarray(e, dtype=np.float64), None))
        self.scored = int(state.get("scored", 0))


def _with_usual(ring: dict[str, np.ndarray], c: int) -> dict[str, np.ndarray]:
    """A window ring checkpointed before the per-class usual-pair bins: every image counted
    as usual (never unusual), as a window without the baseline's pairs counts them."""
    counts = ring["counts"]
    if counts.ndim != 2 or counts.shape[1] != _window_bins(c) - c:
        raise ValueError("checkpointed shadow window has a different shape; windows changed?")
    return {**ring, "counts": np.concatenate([counts[:, :2 + 2 * c], counts[:, 2:2 + c],
                                              counts[:, 2 + 2 * c:]], axis=1)}
