"""The shifts of the real-image workloads, each at severities 1-5.

Image shifts change the encoded bytes that both the production and the reference model
receive (the `images` topic carries what production was served). They act on a source
image (RGBA for clip art, RGB for photos), whose clean rendering is its composite over
white:

  ImageNet-C corruptions (Hendrycks & Dietterich 2019, their levels, written with numpy and
  Pillow; the levels were set for 224-px images, and the workloads' sources are about 256 px)
    gaussian_noise   sd, of the [0, 1] scale         .08 .12 .18 .26 .38
    shot_noise       Poisson photons per unit        60 25 12 5 3
    gaussian_blur    sd, px (Pillow's box approx.)   1 2 3 4 6
    jpeg_quality     JPEG quality                    25 18 15 10 7
    pixelate         box-downscale factor            .6 .5 .4 .3 .25
    brightness       added to HSV value              .1 .2 .3 .4 .5
    contrast         factor around channel means     .4 .3 .2 .1 .05
    saturation       HSV saturation x a + b          (.3, 0) (.1, 0) (2, 0) (5, .1) (20, .2)
  pipeline skews, on a share of the images (a new pipeline rolled out to some traffic)
    alpha_black      transparent pixels composited over black instead of white
    channel_swap     RGB written as BGR
    wrong_resize     halved and restored with nearest neighbour (no antialiasing)
    shares           .1 .25 .5 .75 1

Stream shifts (`STREAM_SHIFTS`, applied when a stream is drawn, see workload.py) leave
the pool's images as they are: a subpopulation shift (draws concentrate on a few
sub-folders), a bad model version (production's classifier weights perturbed) and label
noise (feedback labels replaced by another class).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

CLEAN = "clean"
SEVERITIES = (1, 2, 3, 4, 5)

Corruption = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclass(frozen=True, slots=True)
class Shift:
    """One shift family: what it changes, its unit and its level at severities 1-5."""

    name: str
    kind: str                      # corruption, skew, population, model, labels
    unit: str
    levels: tuple[object, ...]

    def level(self, severity: int) -> object:
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be in {SEVERITIES}, got {severity}")
        return self.levels[severity - 1]


# --- colour space helpers (float arrays in [0, 1]) ---------------------------------------


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of the circle)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(-1)
    delta = v - rgb.min(-1)
    s = np.where(v > 0, delta / np.where(v > 0, v, 1.0), 0.0)
    safe = np.where(delta > 0, delta, 1.0)
    h = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe,
                                                  4.0 + (r - g) / safe))
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of rgb_to_hsv."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(np.int64) % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = [np.choose(i, [c[k] for c in choices]) for k in range(3)]
    return np.stack(out, axis=-1)


# --- ImageNet-C corruptions: (H, W, 3) float in [0, 1] -> same -----------------------------


def _gaussian_noise(x: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(0.0, sd, size=x.shape)


def _shot_noise(x: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(np.clip(x, 0, 1) * photons) / photons


def _via_pillow(x: np.ndarray, op: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    im = Image.fromarray(to_uint8(x), "RGB")
    return np.asarray(op(im), dtype=np.float64) / 255.0


def _gaussian_blur(x: np.ndarray, sd: float, _rng: np.random.Generator) -> np.ndarray:
    return _via_pillow(x, lambda im: im.filter(ImageFilter.GaussianBlur(sd)))


def _jpeg(x: np.ndarray, quality: float, _rng: np.random.Generator) -> np.ndarray:
    def roundtrip(im: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(quality))
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return _via_pillow(x, roundtrip)


def _pixelate(x: np.ndarray, factor: float, _rng: np.random.Generator) -> np.ndarray:
    def op(im: Image.Image) -> Image.Image:
        w, h = im.size
        small = im.resize((max(1, int(w * factor)), max(1, int(h * factor))),
                          Image.Resampling.BOX)
        return small.resize((w, h), Image.Resampling.BOX)
    return _via_pillow(x, op)


def _brightness(x: np.ndarray, add: float, _rng: np.random.Generator) -> np.ndarray:
    hsv = rgb_to_hsv(np.clip(x, 0, 1))
    hsv[..., 2] = np.clip(hsv[..., 2] + add, 0, 1)
    return hsv_to_rgb(hsv)


def _contrast(x: np.ndarray, factor: float, _rng: np.random.Generator) -> np.ndarray:
    means = x.mean(axis=(0, 1), keepdims=True)
    return (x - means) * factor + means


def _saturation(x: np.ndarray, ab: tuple[float, float],
                _rng: np.random.Generator) -> np.ndarray:
    hsv = rgb_to_hsv(np.clip(x, 0, 1))
    hsv[..., 1] = np.clip(hsv[..., 1] * ab[0] + ab[1], 0, 1)
    return hsv_to_rgb(hsv)


CORRUPTIONS: dict[str, tuple[Shift, Corruption]] = {
    "gaussian_noise": (Shift("gaussian_noise", "corruption", "sd of [0, 1]",
                             (0.08, 0.12, 0.18, 0.26, 0.38)), _gaussian_noise),
    "shot_noise": (Shift("shot_noise", "corruption", "photons per unit intensity",
                         (60, 25, 12, 5, 3)), _shot_noise),
    "gaussian_blur": (Shift("gaussian_blur", "corruption", "sd, pixels",
                            (1, 2, 3, 4, 6)), _gaussian_blur),
    "jpeg_quality": (Shift("jpeg_quality", "corruption", "JPEG quality",
                           (25, 18, 15, 10, 7)), _jpeg),
    "pixelate": (Shift("pixelate", "corruption", "downscale factor",
                       (0.6, 0.5, 0.4, 0.3, 0.25)), _pixelate),
    "brightness": (Shift("brightness", "corruption", "added to HSV value",
                         (0.1, 0.2, 0.3, 0.4, 0.5)), _brightness),
    "contrast": (Shift("contrast", "corruption", "factor around the channel means",
                       (0.4, 0.3, 0.2, 0.1, 0.05)), _contrast),
    "saturation": (Shift("saturation", "corruption", "HSV saturation x a + b",
                         ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2))),
                   _saturation),
}

SKEW_SHARES = (0.1, 0.25, 0.5, 0.75, 1.0)
SKEWS: dict[str, Shift] = {
    name: Shift(name, "skew", f"share of images: {what}", SKEW_SHARES)
    for name, what in (("alpha_black", "transparency composited over black"),
                       ("channel_swap", "RGB written as BGR"),
                       ("wrong_resize", "halved and restored, nearest neighbour"))}

STREAM_SHIFTS: dict[str, Shift] = {
    "subpopulation": Shift("subpopulation", "population",
                           "share of draws from a few sub-folders", (0.1, 0.2, 0.35, 0.5, 0.7)),
    "bad_version": Shift("bad_version", "model",
                         "sd of the noise added to the classifier's weights, in units of "
                         "their sd", (0.25, 0.5, 1.0, 1.5, 2.5)),
    "label_noise": Shift("label_noise", "labels", "share of labels replaced by another class",
                         (0.05, 0.1, 0.2, 0.3, 0.5)),
}

IMAGE_SHIFTS: dict[str, Shift] = {**{k: v[0] for k, v in CORRUPTIONS.items()}, **SKEWS}
ALL_SHIFTS: dict[str, Shift] = {**IMAGE_SHIFTS, **STREAM_SHIFTS}


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def composite(source: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """RGB of a source image over a background colour (RGB images are returned as is)."""
    if source.mode == "RGB":
        return source
    rgba = source.convert("RGBA")
    bg = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(bg, rgba).convert("RGB")


WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


def apply_shift(source: Image.Image, shift: str, severity: int,
                rng: np.random.Generator) -> Image.Image:
    """The RGB image a stream carries for `source` under an image shift (CLEAN: composited
    over white). Randomness (noise, which images a skew hits) comes from `rng`."""
    if shift == CLEAN:
        return composite(source, WHITE)
    if shift in CORRUPTIONS:
        spec, fn = CORRUPTIONS[shift]
        x = np.asarray(composite(source, WHITE), dtype=np.float64) / 255.0
        return Image.fromarray(to_uint8(fn(x, spec.level(severity), rng)), "RGB")  # type: ignore[arg-type]
    if shift not in SKEWS:
        raise ValueError(f"unknown image shift {shift!r}; known: {sorted(IMAGE_SHIFTS)}")
    hit = rng.random() < float(SKEWS[shift].level(severity))  # type: ignore[arg-type]
    if shift == "alpha_black":
        return composite(source, BLACK if hit else WHITE)
    rgb = composite(source, WHITE)
    if not hit:
        return rgb
    if shift == "channel_swap":
        return Image.fromarray(np.ascontiguousarray(np.asarray(rgb)[..., ::-1]), "RGB")
    w, h = rgb.size
    half = rgb.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.NEAREST)
    return half.resize((w, h), Image.Resampling.NEAREST)


def encode(rgb: Image.Image, fmt: str) -> bytes:
    """PNG, or JPEG at quality 95."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        rgb.save(buf, "JPEG", quality=95)
    else:
        rgb.save(buf, "PNG", compress_level=1)
    return buf.getvalue()
