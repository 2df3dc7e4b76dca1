"""Public-domain clip art from Debian's `openclipart-png`, labelled by category folder.

The package (`make system-deps` installs it) holds 8,121 PNGs under
/usr/share/openclipart/png/<category>/[<sub-folder>/]; 1,221 of them are symlinks to
duplicates, which are skipped, as are files of more than MAX_PIXELS, leaving 6,883
distinct images in 22 categories. The 13
categories with at least 100 images are the classes (computer, shapes, signs_and_symbols,
recreation, people, food, animals, transportation, unsorted, geography, tools, office,
special); the sub-folders (computer/icons, animals/birds, ...) are the subpopulations.
Most images are RGBA (transparent backgrounds), some palette or grey+alpha.

Why the PNG package rather than `openclipart-svg` + cairosvg: the .deb is larger (131 MB
against 25 MB, a few seconds more to fetch) but installs smaller (154 MB against 173 MB),
needs no extra Python package, and decoding a PNG costs about 12 ms here where rasterising
an SVG cost about 45 ms (7,432 SVGs in 332 s at 32 px, data-and-models.md).

VISIONMON_OPENCLIPART overrides the folder.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_ROOT = Path("/usr/share/openclipart/png")
MIN_PER_CLASS = 100
#: files declaring more pixels than this are skipped (one declares 13,000 x 13,000)
MAX_PIXELS = 16_000_000
#: sources are scaled (Lanczos) to fit this square and centred on a transparent canvas
SOURCE_SIDE = 256
_PNG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class ClipArt:
    """One distinct clip-art file: its path under the root, class and sub-folder."""

    path: str          # relative to the root, e.g. "animals/birds/owl_01.png"
    category: str      # the class: first folder
    subfolder: str     # first two folders ("animals/birds"), or the category itself


def clipart_root() -> Path:
    root = Path(os.environ.get("VISIONMON_OPENCLIPART", DEFAULT_ROOT))
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} is missing: install Debian's clip art with `make system-deps` (or "
            "`apt-get install openclipart-png`), or set VISIONMON_OPENCLIPART")
    return root


def catalogue(root: Path) -> list[ClipArt]:
    """Every distinct PNG under `root` (regular files only, first of equal contents, at
    most MAX_PIXELS), sorted by path."""
    seen: set[str] = set()
    out = []
    for path in sorted(root.rglob("*.png")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        width, height = struct.unpack(">II", data[16:24])  # the PNG header (IHDR)
        if not data.startswith(_PNG) or width * height > MAX_PIXELS:
            continue
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            continue
        sub = "/".join(parts[:2]) if len(parts) > 2 else parts[0]
        out.append(ClipArt(str(path.relative_to(root)), parts[0], sub))
    return out


def classes_of(items: list[ClipArt], min_per_class: int = MIN_PER_CLASS) -> tuple[str, ...]:
    """Categories with at least `min_per_class` images, by size (largest first), then name."""
    counts: dict[str, int] = defaultdict(int)
    for it in items:
        counts[it.category] += 1
    return tuple(sorted((c for c, n in counts.items() if n >= min_per_class),
                        key=lambda c: (-counts[c], c)))


def select(items: list[ClipArt], classes: tuple[str, ...], per_class: int,
           seed: int) -> list[ClipArt]:
    """At most `per_class` images of each class, drawn without replacement with `seed`
    (every image of a smaller class), in catalogue order."""
    rng = np.random.default_rng(seed)
    chosen: list[ClipArt] = []
    for c in classes:
        members = [it for it in items if it.category == c]
        if len(members) > per_class:
            keep = np.sort(rng.choice(len(members), per_class, replace=False))
            members = [members[i] for i in keep]
        chosen += members
    return sorted(chosen, key=lambda it: it.path)


def load_source(root: Path, item: ClipArt, side: int = SOURCE_SIDE) -> Image.Image:
    """The clip art as RGBA, scaled to fit side x side and centred on a transparent
    side x side canvas."""
    with Image.open(root / item.path) as im:
        rgba = im.convert("RGBA")
    w, h = rgba.size
    scale = side / max(w, h)
    rgba = rgba.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                       Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    canvas.paste(rgba, ((side - rgba.width) // 2, (side - rgba.height) // 2))
    return canvas
