"""What the reference model hands back for one sampled image (no torch types here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: Features the intake measures on each decoded image alone, in this order (units in docs).
MEASURED_FEATURES: tuple[str, ...] = (
    "brightness", "contrast", "saturation", "red_mean", "green_mean", "blue_mean",
    "width", "height", "bytes", "sharpness", "jpeg_quality",
)
#: Input features of a scored image: the measured ones, then `duplicate` (1 when the image
#: repeats one of its model's recent images, else 0), which needs the images before it.
INPUT_FEATURES: tuple[str, ...] = (*MEASURED_FEATURES, "duplicate")
#: `jpeg_quality` of an image whose file states no quantization table (PNG, WebP, ...).
JPEG_QUALITY_ABSENT = 0.0
#: Features whose lowest value means "not there" (no JPEG quality stated; not a duplicate):
#: the baseline puts an edge at it, so that value has a bin of its own whatever the
#: quantiles (an image format that appears or disappears is then drift).
OWN_BIN_AT: dict[str, float] = {"jpeg_quality": JPEG_QUALITY_ABSENT, "duplicate": 0.0}


@dataclass(frozen=True, slots=True)
class ScoredImage:
    """One image after intake and shadow scoring.

    `ref_pred` is the reference model's top-1 class index (in the production model's class
    order, after any mapping), `ref_confidence` its probability, `embedding` a float32
    vector, `features` the INPUT_FEATURES values (brightness etc. in [0, 1]; width/height
    in pixels; bytes = encoded size; `reference_model.intake.measure_features` for the
    rest), `thumbnail` a small JPEG for the failure gallery (None when it is off),
    `segments` the image's own `segment.<key>` headers (None: it has none, and takes its
    prediction's through the shadow join), `energy` the reference logits' energy
    (-logsumexp of the logits, in logit units; NaN when the scorer gave none).
    """

    request_id: str
    model: str
    version: str
    ts: float
    ref_pred: int
    ref_confidence: float
    embedding: np.ndarray
    features: tuple[float, ...]
    thumbnail: bytes | None = None
    segments: Mapping[str, str] | None = None
    energy: float = float("nan")
