"""The failure gallery: thumbnails of the most recent images that went wrong.

Opt-in (`images.gallery`), in memory only: never checkpointed, never written to disk. A
scored image that carries a thumbnail (made by the decode worker, outside any lock) waits
in a bounded store (`images.gallery.waiting`, oldest dropped first) for what decides
whether it failed; it enters the gallery when

- `disagree`: the shadow join finds the reference model's class differs from production's;
- `wrong`: its label joins and differs from production's class (an image already shown as
  disagreeing moves to the front with both reasons);
- `unusual`: the unusual-input monitor finds it above a baseline's 99th percentile of an
  unusualness score and offers its excess over it (the page shows the highest first).

The gallery keeps the newest `images.gallery.size` entries. Memory: (size + waiting)
thumbnails of at most `thumbnail_px`² pixels as JPEG (a few kB each at 96 px; at most
96 × 96 × 3 bytes plus headers) and a few numbers each. Feeding runs under the engine's
lock and costs dictionary operations; the HTTP page reads a copy taken under the
gallery's own lock.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from monitor.events import PredictionEvent
from monitor.joins import JoinStore
from monitor.reference_config import GalleryConfig
from monitor.scored import ScoredImage

Reason = Literal["wrong", "disagree", "unusual"]


@dataclass(frozen=True, slots=True)
class GalleryEntry:
    """One failure: its thumbnail (JPEG bytes), why it is shown, and the answers.

    `ts` is the image's event time (s since the epoch); classes are names (None when not
    known yet); confidences are probabilities (NaN when not known); `segment` comes from the
    prediction when events carry one; `score` is its unusualness score when it was offered
    as unusual, else None."""

    thumbnail: bytes
    model: str
    version: str
    reasons: tuple[Reason, ...]
    ts: float
    prediction: str | None = None
    confidence: float = math.nan
    reference: str | None = None
    reference_confidence: float = math.nan
    label: str | None = None
    segment: str | None = None
    score: float | None = None


class FailureGallery:
    """The bounded ring of failure thumbnails and the store of images waiting for their
    verdict (module docstring)."""

    def __init__(self, models: Mapping[str, Sequence[str]], config: GalleryConfig,
                 hash_request_ids: bool = False) -> None:
        self.classes = {m: tuple(c) for m, c in models.items()}
        self.size = config.size
        #: request id -> the entry it would be (no reason yet), until its verdict
        self.waiting: JoinStore[GalleryEntry] = JoinStore(
            "gallery_waiting", config.waiting, math.inf, hash_request_ids)
        self._shown: OrderedDict[str, GalleryEntry] = OrderedDict()
        self._lock = threading.Lock()

    # --- feeding (under the engine's lock) --------------------------------------------
    def on_scored(self, images: Sequence[ScoredImage]) -> None:
        """Keep the thumbnails of scored images until their verdict."""
        for it in images:
            classes = self.classes.get(it.model)
            if it.thumbnail is None or classes is None:
                continue
            self.waiting.put(it.request_id, it.ts, GalleryEntry(
                it.thumbnail, it.model, it.version, (), it.ts,
                reference=_name(classes, it.ref_pred), reference_confidence=it.ref_confidence))

    def on_shadow_join(self, request_id: str, version: str, pred: int, confidence: float,
                       ref_pred: int) -> None:
        """A prediction joined its reference score: remember production's answer, and show
        the image when the two classes differ."""
        key = self.waiting.key(request_id)
        entry = self.waiting.get(request_id)
        if entry is None:
            return
        entry = replace(entry, version=version,
                        prediction=_name(self.classes[entry.model], pred),
                        confidence=confidence)
        self.waiting.put(request_id, entry.ts, entry)
        if pred != ref_pred:
            self._show(key, replace(entry, reasons=("disagree",)))

    def on_label(self, model: str, version: str, prediction: PredictionEvent, label: int,
                 _label_ts: float) -> None:
        """`LabelMonitor.joined_listeners`: a wrong label shows the image, if it waits."""
        if prediction.pred == label or not prediction.request_id:
            return
        entry = self.waiting.pop(prediction.request_id)
        if entry is None:
            return
        classes = self.classes[model]
        key = self.waiting.key(prediction.request_id)
        self._show(key, replace(
            entry, reasons=("wrong",), version=prediction.version,
            prediction=_name(classes, prediction.pred), confidence=prediction.confidence,
            label=_name(classes, label), segment=getattr(prediction, "segment", None)))

    def on_unusual(self, request_id: str, score: float) -> None:
        """Show a waiting image that scored unusual, with its `score` (the unusual-input
        monitor offers its excess over the baseline's 99th percentile; the page shows the
        highest first)."""
        entry = self.waiting.get(request_id)
        if entry is not None:
            self._show(self.waiting.key(request_id),
                       replace(entry, reasons=("unusual",), score=score))

    def _show(self, key: str, entry: GalleryEntry) -> None:
        """Show `entry` as the newest; an image already shown keeps its earlier reasons
        (after the new one), its score and its label."""
        with self._lock:
            before = self._shown.pop(key, None)
            if before is not None:
                entry = replace(
                    entry,
                    reasons=(*entry.reasons,
                             *(r for r in before.reasons if r not in entry.reasons)),
                    score=entry.score if entry.score is not None else before.score,
                    label=entry.label if entry.label is not None else before.label)
            self._shown[key] = entry
            while len(self._shown) > self.size:
                self._shown.popitem(last=False)

    # --- reading (any thread) -----------------------------------------------------------
    def entries(self) -> tuple[GalleryEntry, ...]:
        """The entries shown, newest first."""
        with self._lock:
            return tuple(reversed(self._shown.values()))


def _name(classes: Sequence[str], index: int) -> str | None:
    return classes[index] if 0 <= index < len(classes) else None
