"""What the reference model hands back for one sampled image (no torch types here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Input features measured on every decoded image, in this order (units in docs).
INPUT_FEATURES: tuple[str, ...] = (
    "brightness", "contrast", "saturation", "red_mean", "green_mean", "blue_mean",
    "width", "height", "bytes",
)


@dataclass(frozen=True, slots=True)
class ScoredImage:
    """One image after intake and shadow scoring.

    `ref_pred` is the reference model's top-1 class index (in the production model's class
    order, after any mapping), `ref_confidence` its probability, `embedding` a float32
    vector, `features` the INPUT_FEATURES values (brightness etc. in [0, 1]; width/height
    in pixels; bytes = encoded size).
    """

    request_id: str
    model: str
    version: str
    ts: float
    ref_pred: int
    ref_confidence: float
    embedding: np.ndarray
    features: tuple[float, ...]
