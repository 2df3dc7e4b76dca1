"""The `duplicate` input feature: does an image repeat one of its model's recent images?

Each model keeps the difference hashes (`reference_model.image_quality.difference_hash`)
of its last `window` images in a ring of uint64 (8 bytes an image, `images.duplicates`).
An image is a duplicate (1.0) when its hash is within `max_distance` bits of one in the
ring, else 0.0; either way it then joins the ring. Its share in a window is the duplicate
rate, binned and tested for drift like the other input features.
"""

from __future__ import annotations

import numpy as np

from monitor.reference_config import DuplicatesConfig
from reference_model.image_quality import min_hamming


class DuplicateWindow:
    """The recent hashes of each model. Not thread-safe: one caller (the inference
    thread, or a baseline build) feeds it, in arrival order."""

    def __init__(self, config: DuplicatesConfig) -> None:
        self.window = config.window
        self.max_distance = config.max_distance
        self._rings: dict[str, np.ndarray] = {}
        self._filled: dict[str, int] = {}
        self._next: dict[str, int] = {}

    def flag(self, model: str, dhash: int) -> float:
        """1.0 when `dhash` is within `max_distance` bits of one of `model`'s last
        `window` hashes, else 0.0; the hash is then remembered."""
        ring = self._rings.get(model)
        if ring is None:
            ring = self._rings[model] = np.zeros(self.window, dtype=np.uint64)
            self._filled[model] = self._next[model] = 0
        filled = self._filled[model]
        dup = min_hamming(dhash, ring[:filled]) <= self.max_distance
        at = self._next[model]
        ring[at] = np.uint64(dhash)
        self._next[model] = (at + 1) % self.window
        self._filled[model] = min(filled + 1, self.window)
        return 1.0 if dup else 0.0

    def features(self, model: str, measured: tuple[float, ...], dhash: int
                 ) -> tuple[float, ...]:
        """An image's INPUT_FEATURES: its measured features and its duplicate flag."""
        return (*measured, self.flag(model, dhash))
