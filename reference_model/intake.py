"""Safe image intake: bytes -> RGB pixels at the model's input size + input features.

Every image goes through the same steps, each with a bounded refusal reason:

1. size checks on the encoded bytes (`empty`, `too_large`);
2. format sniffed from the magic bytes (`format_not_allowed`, `not_an_image`), then opened
   with only the allowed Pillow plugins;
3. width x height read from the header *before* any pixel data is decompressed
   (`too_many_pixels`, `bad_aspect_ratio`), so decompression bombs cost microseconds;
4. first frame decoded (`truncated`, `decode_error`; with the card's `fast_decode`, a JPEG
   much larger than needed is drafted, i.e. DCT-scaled), EXIF orientation applied,
   converted to 8-bit RGB (CMYK, 16-bit, palette, grey and alpha images included; alpha
   composited over `images.alpha_background`);
5. features measured (see `measure_features`; sharpness, JPEG quality and the difference
   hash by `reference_model.image_quality`), a thumbnail made when the failure gallery is
   on, and the model's input square cut as the card's pipeline says
   (`reference_model.preprocess`).

`ImageIntake.decode` never raises: anything unexpected becomes `decode_error`.
Nothing is ever written to disk.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from monitor.reference_config import ImagesConfig, ReferenceConfig
from monitor.scored import JPEG_QUALITY_ABSENT, MEASURED_FEATURES
from reference_model.image_quality import (
    DHASH_SIZE,
    SHARPNESS_SIDE,
    difference_hash,
    jpeg_quality_estimate,
    laplacian_variance,
)
from reference_model.preprocess import Preprocess, ResizeMode

#: Features are measured on a box-filtered copy of at most this many pixels (a bounded
#: cost per image); means are preserved by box filtering, the contrast is that of the
#: analysis image.
ANALYSIS_MAX_PIXELS = 65_536

#: Rec. 601 luma weights for R, G, B.
LUMA_601 = np.array([0.299, 0.587, 0.114], dtype=np.float64)

_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = frozenset({5, 6, 7, 8})


class IntakeReason(StrEnum):
    """Why an image was refused. Bounded: these are values of the `reason` label."""

    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    FORMAT_NOT_ALLOWED = "format_not_allowed"
    TOO_MANY_PIXELS = "too_many_pixels"
    BAD_ASPECT_RATIO = "bad_aspect_ratio"
    TRUNCATED = "truncated"
    DECODE_ERROR = "decode_error"


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An accepted image.

    `pixels`: (input_size, input_size, 3) uint8, RGB order (channel order and normalisation
    are applied later, on the inference device). `features`: the MEASURED_FEATURES values.
    `dhash`: its 64-bit difference hash (for the `duplicate` feature). `thumbnail`: a JPEG
    of at most `images.gallery.thumbnail_px` a side when the gallery is on, else None.
    """

    pixels: np.ndarray
    features: tuple[float, ...]
    dhash: int = 0
    thumbnail: bytes | None = None


@dataclass(frozen=True, slots=True)
class QualityMeasures:
    """Sharpness (Laplacian variance, 0-255 grey units squared, at SHARPNESS_SIDE²), the
    JPEG quality the file states (1-100, JPEG_QUALITY_ABSENT without one) and the dHash."""

    sharpness: float
    jpeg_quality: float
    dhash: int


def measure_quality(analysis: Image.Image, tables: dict[int, list[int]] | None
                    ) -> QualityMeasures:
    """Quality measures of one image from its (RGB) analysis image and the file's JPEG
    quantization tables (None for other formats)."""
    bilinear = Image.Resampling.BILINEAR
    grey = analysis.convert("L").resize((SHARPNESS_SIDE, SHARPNESS_SIDE), bilinear)
    sharp = laplacian_variance(np.asarray(grey))
    dhash = difference_hash(np.asarray(grey.resize(DHASH_SIZE, bilinear)))
    return QualityMeasures(sharp, jpeg_quality_estimate(tables), dhash)


#: JPEG quality of gallery thumbnails.
THUMBNAIL_QUALITY = 80


def thumbnail_jpeg(image: Image.Image, side: int) -> bytes:
    """A JPEG of `image` scaled to fit `side` x `side` pixels (never enlarged)."""
    thumb = image.copy()
    thumb.thumbnail((side, side), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=THUMBNAIL_QUALITY)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class IntakeRejection:
    """A refused image: a bounded reason and a short human-readable detail."""

    reason: IntakeReason
    detail: str


def sniff_format(data: bytes) -> str | None:
    """Pillow format name from the magic bytes, or None when not a known image format."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypavif", b"ftypmif1"):
        return "HEIF"
    if head[:4] == b"8BPS":
        return "PSD"
    if head[:2] in (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6"):
        return "PPM"
    return None


def measure_features(rgb: np.ndarray, width: int, height: int, n_bytes: int,
                     sharpness: float = math.nan,
                     jpeg_quality: float = JPEG_QUALITY_ABSENT) -> tuple[float, ...]:
    """The MEASURED_FEATURES of one image, in MEASURED_FEATURES order.

    `rgb`: (H, W, 3) uint8 analysis image. brightness = mean Rec. 601 luma in [0, 1];
    contrast = population std of that luma (same scale); saturation = mean HSV saturation
    ((max - min) / max, 0 for black) in [0, 1]; red/green/blue_mean in [0, 1];
    width/height = the original (EXIF-oriented) size in pixels; bytes = encoded size;
    sharpness and jpeg_quality as `QualityMeasures` says.
    """
    planes = np.ascontiguousarray(rgb.reshape(-1, 3).T)  # (3, N) uint8, one copy
    r, g, b = planes[0], planes[1], planes[2]
    hi = np.maximum(np.maximum(r, g), b)
    lo = np.minimum(np.minimum(r, g), b)
    # (hi - lo) / hi is 0 where hi == 0 because then hi - lo == 0 too
    sat = (hi - lo).astype(np.float32) / np.maximum(hi, 1).astype(np.float32)
    w_r, w_g, w_b = (np.float32(v / 255.0) for v in LUMA_601)
    luma = r.astype(np.float32) * w_r + g.astype(np.float32) * w_g + b.astype(np.float32) * w_b
    sums = planes.sum(axis=1, dtype=np.uint64)
    n = float(r.size)
    values = (float(luma.mean(dtype=np.float64)), float(luma.std(dtype=np.float64)),
              float(sat.mean(dtype=np.float64)), float(sums[0]) / (255.0 * n),
              float(sums[1]) / (255.0 * n), float(sums[2]) / (255.0 * n),
              float(width), float(height), float(n_bytes), float(sharpness),
              float(jpeg_quality))
    assert len(values) == len(MEASURED_FEATURES)
    return values


def normalise(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float],
              channel_order: Literal["RGB", "BGR"] = "RGB") -> np.ndarray:
    """Reference (numpy) model-input transform: (N, H, W, 3) uint8 RGB -> (N, 3, H, W)
    float32 `(pixel / 255 - mean) / std`, channels in `channel_order` (mean/std are given
    in that order). The scorer does the same on the inference device."""
    x = pixels.astype(np.float32) / np.float32(255.0)
    if channel_order == "BGR":
        x = x[..., ::-1]
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(((x - m) / s).transpose(0, 3, 1, 2))


class _Refused(Exception):
    def __init__(self, reason: IntakeReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ImageIntake:
    """Decodes images under the `images:` limits into the reference card's input size.

    Thread-safe: holds only immutable settings, so one instance serves all decode workers.
    """

    def __init__(self, limits: ImagesConfig, input_size: int | Preprocess,
                 resize: ResizeMode = "stretch") -> None:
        """`input_size`: the square side (with `resize`, the other options at their
        defaults), or the whole pipeline as a `Preprocess`."""
        Image.init()  # import the format plugins now, not during the first decode
        self._limits = limits
        self._allowed = tuple(limits.allowed_formats)
        self._thumbnail_px = limits.gallery.thumbnail_px if limits.gallery.enabled else 0
        self._geometry = (input_size if isinstance(input_size, Preprocess)
                          else Preprocess(input_size, resize))

    @classmethod
    def for_reference(cls, limits: ImagesConfig, card: ReferenceConfig) -> ImageIntake:
        return cls(limits, Preprocess.from_card(card))

    @property
    def preprocess(self) -> Preprocess:
        return self._geometry

    def decode(self, data: bytes) -> DecodedImage | IntakeRejection:
        """Decode one encoded image; never raises."""
        try:
            return self._decode(data)
        except _Refused as refused:
            return IntakeRejection(refused.reason, refused.detail)
        except Image.DecompressionBombError as err:
            return IntakeRejection(IntakeReason.TOO_MANY_PIXELS, str(err)[:200])
        except Exception as err:  # Pillow raises many types on hostile input
            return IntakeRejection(IntakeReason.DECODE_ERROR,
                                   f"{type(err).__name__}: {str(err)[:160]}")

    def _decode(self, data: bytes) -> DecodedImage:
        lim = self._limits
        if not data:
            raise _Refused(IntakeReason.EMPTY, "zero bytes")
        if len(data) > lim.max_bytes:
            raise _Refused(IntakeReason.TOO_LARGE, f"{len(data)} bytes > limit {lim.max_bytes}")
        fmt = sniff_format(data)
        if fmt is not None and fmt not in self._allowed:
            raise _Refused(IntakeReason.FORMAT_NOT_ALLOWED,
                           f"{fmt} is not in images.allowed_formats {list(self._allowed)}")
        try:
            im = Image.open(io.BytesIO(data), formats=self._allowed)
        except Image.UnidentifiedImageError:
            raise _Refused(IntakeReason.NOT_AN_IMAGE if fmt is None else IntakeReason.DECODE_ERROR,
                           "not a decodable image" if fmt is None
                           else f"{fmt} header is invalid") from None
        with im:
            w, h = im.size
            self._check_geometry(w, h)
            orientation = _orientation(im)
            self._draft(im, w, h)
            try:
                im.load()  # first frame only (animated WebP/PNG: later frames are not read)
            except (OSError, EOFError, SyntaxError, ValueError) as err:
                text = str(err)
                truncated = "truncated" in text or isinstance(err, EOFError) \
                    or "broken data stream" in text
                raise _Refused(IntakeReason.TRUNCATED if truncated else IntakeReason.DECODE_ERROR,
                               f"{type(err).__name__}: {text[:160]}") from None
            tables = getattr(im, "quantization", None) if im.format == "JPEG" else None
            rgb = self._to_rgb(_exif_transpose(im, orientation))
            if orientation in _SWAPS_AXES:
                w, h = h, w
            square = self._geometry.apply(rgb)
            analysis = _analysis_image(rgb)
            quality = measure_quality(analysis, tables)
            if square is rgb and analysis is rgb:
                pixels = np.asarray(rgb, dtype=np.uint8)  # one array for both
                features = measure_features(pixels, w, h, len(data), quality.sharpness,
                                            quality.jpeg_quality)
            else:
                features = measure_features(np.asarray(analysis), w, h, len(data),
                                            quality.sharpness, quality.jpeg_quality)
                pixels = np.asarray(square, dtype=np.uint8)
            thumbnail = (thumbnail_jpeg(analysis, self._thumbnail_px) if self._thumbnail_px
                         else None)
        return DecodedImage(pixels, features, quality.dhash, thumbnail)

    def _check_geometry(self, w: int, h: int) -> None:
        lim = self._limits
        if w <= 0 or h <= 0:
            raise _Refused(IntakeReason.DECODE_ERROR, f"invalid size {w}x{h}")
        if w * h > lim.max_pixels:
            raise _Refused(IntakeReason.TOO_MANY_PIXELS,
                           f"{w}x{h} = {w * h} pixels > limit {lim.max_pixels}")
        ratio = max(w, h) / min(w, h)
        if ratio > lim.max_aspect_ratio:
            raise _Refused(IntakeReason.BAD_ASPECT_RATIO,
                           f"{w}x{h}: aspect ratio {ratio:.0f} > limit {lim.max_aspect_ratio:g}")

    def _draft(self, im: Image.Image, w: int, h: int) -> None:
        """With fast_decode, let JPEG decode at 1/2, 1/4 or 1/8 scale when that still covers
        what we need."""
        if im.format != "JPEG":
            return
        target = self._geometry.draft_target(w, h, math.isqrt(ANALYSIS_MAX_PIXELS))
        if target is not None:
            im.draft(None, target)

    def _to_rgb(self, im: Image.Image) -> Image.Image:
        mode = im.mode
        if mode == "RGB":
            return im
        if mode.startswith("I;16") or mode in ("I", "F"):
            arr = np.asarray(im)
            if mode == "F":
                arr8 = np.clip(arr, 0, 255).astype(np.uint8)
            else:  # 16-bit samples (PNG): scale 0..65535 to 0..255
                arr8 = (np.clip(arr.astype(np.float64), 0, 65535) / 257.0 + 0.5).astype(np.uint8)
            return Image.fromarray(arr8, "L").convert("RGB")
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            mode = im.mode
        if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            rgba = im.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (*self._limits.alpha_background, 255))
            return Image.alpha_composite(bg, rgba).convert("RGB")
        return im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGBX


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a corrupt EXIF block must not refuse the image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _exif_transpose(im: Image.Image, orientation: int) -> Image.Image:
    """Apply the EXIF orientation (ImageOps.exif_transpose); a bad EXIF block is ignored."""
    if orientation == 1:
        return im
    try:
        out = ImageOps.exif_transpose(im)
    except Exception:
        return im
    return out if out is not None else im


def _analysis_image(rgb: Image.Image) -> Image.Image:
    w, h = rgb.size
    if w * h <= ANALYSIS_MAX_PIXELS:
        return rgb
    factor = math.ceil(math.sqrt(w * h / ANALYSIS_MAX_PIXELS))
    return rgb.reduce(factor)
