"""Per-image cost of the intake (decode + features + model-input square), gallery off and on,
and of the parts this adds alone (quality measures, thumbnail) on the analysis image.

Prints the median microseconds per image over `--repeats` passes of `--images` synthetic
JPEGs (blurred noise) per side length; the parts' table gives the median and the minimum of
`--repeats` x 200 calls (the minimum is what a loaded machine distorts least). Run it against
another checkout to compare the first table, e.g.
`PYTHONPATH=/path/to/other python benchmarks/intake_features.py --no-gallery`.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image, ImageFilter

from monitor.reference_config import ImagesConfig
from reference_model.intake import ImageIntake


def _jpegs(side: int, n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        im = Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8))
        buf = io.BytesIO()
        im.filter(ImageFilter.GaussianBlur(3)).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def _median_us(intake: ImageIntake, images: list[bytes], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for data in images:
            intake.decode(data)
        runs.append((time.perf_counter() - t0) / len(images) * 1e6)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--no-gallery", action="store_true",
                    help="only the gallery-off row (for checkouts without images.gallery)")
    args = ap.parse_args()
    modes: list[tuple[str, ImagesConfig]] = [("off", ImagesConfig())]
    if not args.no_gallery:
        modes.append(("on", ImagesConfig.model_validate({"gallery": {"enabled": True}})))
    print(f"{'side':>6} {'gallery':>8} {'median us/image':>16}")
    for side in (64, 256, 1024):
        images = _jpegs(side, args.images, side)
        for name, cfg in modes:
            intake = ImageIntake(cfg, args.input_size)
            _median_us(intake, images[:5], 1)  # warm-up
            print(f"{side:>6} {name:>8} {_median_us(intake, images, args.repeats):>16.0f}")
    if not args.no_gallery:
        _parts(args.repeats)


def _parts(repeats: int) -> None:
    from reference_model.intake import measure_quality, thumbnail_jpeg

    analysis = Image.open(io.BytesIO(_jpegs(256, 1, 0)[0])).convert("RGB")
    calls = {"measure_quality": lambda: measure_quality(analysis, None),
             "thumbnail_jpeg 96": lambda: thumbnail_jpeg(analysis, 96)}
    print(f"\n{'part (256x256 analysis image)':<30} {'median us':>10} {'min us':>8}")
    for name, call in calls.items():
        runs = []
        for _ in range(repeats * 200):
            t0 = time.perf_counter()
            call()
            runs.append((time.perf_counter() - t0) * 1e6)
        print(f"{name:<30} {statistics.median(runs):>10.0f} {min(runs):>8.0f}")


if __name__ == "__main__":
    main()
