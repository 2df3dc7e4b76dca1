"""The model card's geometric pipeline: how the model's input square is cut from an image.

Pretrained networks are evaluated with one of a few standard pipelines; a reference model
must be fed the one it was trained with, or its disagreement with production measures the
monitor rather than the model. This module turns a card's keys into the exact Pillow call:

  stretch       resize the whole image to input_size x input_size (aspect ratio not kept)
  center_crop   resize the shorter side to `resize_size` (default input_size), keeping the
                aspect ratio, then cut the centre input_size square: torchvision's
                `Resize(resize_size)` + `CenterCrop(input_size)`, e.g. 256 -> 224 (crop
                ratio 0.875), with its integer rounding (longer side truncated, crop offset
                rounded)

`interpolation` names the filter (torchvision's names). With `antialias` (Pillow's resize,
torchvision's PIL path) the filter widens with the scale factor when shrinking; without it
the image is point-sampled through the filter (`Image.transform`, as torch's
`interpolate(antialias=False)` does for bilinear; Pillow's bicubic uses a = -0.5, torch's
a = -0.75).

`fast_decode` allows two approximations that make large JPEGs cheap: DCT-domain draft
decoding at 1/2, 1/4 or 1/8 scale (down to twice what the crop needs), and Pillow's
`reducing_gap` (a box reduction before the filter). They change the pixels a little;
docs/reference-model.md gives their measured top-1 parity with the exact pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from PIL import Image

from monitor.reference_config import check_preprocess

if TYPE_CHECKING:
    from monitor.reference_config import ReferenceConfig

ResizeMode = Literal["stretch", "center_crop"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "box", "hamming", "lanczos"]

#: Pillow filters by torchvision's interpolation names.
FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING, "lanczos": Image.Resampling.LANCZOS}
#: With fast_decode: `reducing_gap` of Pillow's resize (box-reduce first while the image is
#: more than this many times the target).
REDUCING_GAP = 3.0
#: With fast_decode: a JPEG is drafted to at least this many times what the crop needs.
DRAFT_MARGIN = 2

#: (left, top, right, bottom) in source pixels, floats.
Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Preprocess:
    """How decoded RGB pixels become the model's input_size x input_size square."""

    input_size: int
    resize: ResizeMode = "stretch"
    #: center_crop: the shorter side is resized to this first; None = input_size.
    resize_size: int | None = None
    interpolation: Interpolation = "bilinear"
    antialias: bool = True
    fast_decode: bool = False

    def __post_init__(self) -> None:
        check_preprocess(self.input_size, self.resize, self.resize_size, self.interpolation,
                         self.antialias)

    @classmethod
    def from_card(cls, card: ReferenceConfig) -> Preprocess:
        return cls(card.input_size, card.resize, card.resize_size, card.interpolation,
                   card.antialias, card.fast_decode)

    @property
    def shorter_side(self) -> int:
        """The shorter side the image is scaled to before the crop (center_crop)."""
        return self.resize_size or self.input_size

    def source_box(self, width: int, height: int) -> Box:
        """The part of a width x height image that becomes the input square, in source
        pixel coordinates (floats)."""
        if self.resize == "stretch":
            return (0.0, 0.0, float(width), float(height))
        r, s = self.shorter_side, self.input_size
        # torchvision's Resize(r): the shorter side becomes r, the longer is truncated
        if width <= height:
            new_w, new_h = r, max(r, int(r * height / width))
        else:
            new_w, new_h = max(r, int(r * width / height)), r
        left = round((new_w - s) / 2.0)  # torchvision's CenterCrop offsets
        top = round((new_h - s) / 2.0)
        sx, sy = width / new_w, height / new_h
        return (left * sx, top * sy, (left + s) * sx, (top + s) * sy)

    def apply(self, rgb: Image.Image) -> Image.Image:
        """The input square of a decoded image (returned as is when it already is one)."""
        s = self.input_size
        w, h = rgb.size
        if (w, h) == (s, s) and self.shorter_side == s:
            return rgb
        box = self.source_box(w, h)
        if not self.antialias:
            scale_x, scale_y = (box[2] - box[0]) / s, (box[3] - box[1]) / s
            return rgb.transform((s, s), Image.Transform.AFFINE,
                                 (scale_x, 0.0, box[0], 0.0, scale_y, box[1]),
                                 resample=FILTERS[self.interpolation])
        gap = REDUCING_GAP if self.fast_decode else None
        return rgb.resize((s, s), FILTERS[self.interpolation], box=box, reducing_gap=gap)

    def draft_target(self, width: int, height: int, analysis_side: int) -> tuple[int, int] | None:
        """With fast_decode, the smallest size a JPEG may be draft-decoded to, or None.

        The draft keeps DRAFT_MARGIN times what is needed (the shorter side the crop reads,
        and `analysis_side` for the input features), so the card's filter still does the
        last 2x or more of the reduction: drafting down to just what is needed changed the
        top-1 of 4-5 % of 369 real photos of 500-1,000 px, the margin none of them (they are
        no longer drafted) and 2-5 % of larger JPEGs (docs/reference-model.md). libjpeg
        scales by 1/2, 1/4 or 1/8, so a draft happens from 2 x the target on."""
        if not self.fast_decode:
            return None
        need = DRAFT_MARGIN * max(self.shorter_side, analysis_side)
        if min(width, height) < 2 * need:
            return None
        scale = need / min(width, height)
        return (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
