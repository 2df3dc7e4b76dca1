"""Synchronous scoring of a set of images, for building baselines (no queue, no threads).

`score_images` runs the same intake and model as shadow scoring; `score_images_for_baseline`
reads images for `visionmon baseline build --images DIR_OR_JSONL`: a folder of image files
(request id = file stem) or JSON lines `{"request_id", "image_b64", "version"?, "ts"?}`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson

from monitor.config import ConfigError, LoadedConfig
from monitor.reference_config import ImagesConfig, ReferenceConfig
from monitor.scored import ScoredImage
from reference_model.duplicates import DuplicateWindow
from reference_model.intake import DecodedImage, ImageIntake
from reference_model.scorer import Scorer
from reference_model.shadow import class_index_map

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def score_images(config: ReferenceConfig, images_config: ImagesConfig,
                 classes: Sequence[str], items: Sequence[tuple[str, str, float, bytes]],
                 batch_size: int | None = None) -> list[ScoredImage]:
    """Score (request id, version, ts, encoded bytes) items; refused images are skipped.
    `batch_size`: the card's (as the daemon batches), unless given."""
    scorer = Scorer.from_config(config)
    batch_size = batch_size or scorer.info.batch_size
    mapping = class_index_map(config.classes, classes)
    intake = ImageIntake.for_reference(images_config, config)
    duplicates = DuplicateWindow(images_config.duplicates)
    decoded: list[tuple[tuple[str, str, float, bytes], DecodedImage]] = []
    for item in items:
        out = intake.decode(item[3])
        if isinstance(out, DecodedImage):
            decoded.append((item, out))
    scored: list[ScoredImage] = []
    for i in range(0, len(decoded), batch_size):
        chunk = decoded[i:i + batch_size]
        result = scorer.score([d.pixels for _, d in chunk])
        probs = result.probs if mapping is None else result.probs[:, mapping]
        energy = np.full(len(chunk), np.nan) if result.energy is None else result.energy
        for (item, d), p, emb, en in zip(chunk, probs, result.embeddings, energy, strict=True):
            k = int(np.argmax(p))
            scored.append(ScoredImage(item[0], config.model, item[1], item[2], k, float(p[k]),
                                      np.asarray(emb, dtype=np.float32),
                                      duplicates.features(config.model, d.features, d.dhash),
                                      energy=float(en)))
    return scored


def _read_items(path: Path, default_version: str) -> list[tuple[str, str, float, bytes]]:
    now = time.time()
    if path.is_dir():
        return [(p.stem, default_version, now, p.read_bytes())
                for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    items = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        obj = orjson.loads(line)
        items.append((str(obj["request_id"]), str(obj.get("version", default_version)),
                      float(obj.get("ts", now)), base64.b64decode(obj["image_b64"])))
    return items


def score_images_for_baseline(loaded: LoadedConfig, model: str, source: str
                              ) -> list[ScoredImage]:
    ref = loaded.config.reference
    if ref is None or ref.model != model:
        raise ConfigError(f"{loaded.path}: --images needs a `reference:` section for model "
                          f"{model!r} (the reference model computes the embeddings)")
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"--images {source}: no such file or folder")
    items = _read_items(path, "baseline")
    if not items:
        raise ConfigError(f"--images {source}: no images found (jpg, png or webp files, or "
                          "JSON lines with image_b64)")
    return score_images(ref, loaded.config.images, loaded.models[model].classes, items)
