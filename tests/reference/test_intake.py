"""Image intake: hostile and unusual images are refused with a reason or converted."""

from __future__ import annotations

import io
import math
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from monitor.reference_config import ImagesConfig
from monitor.scored import MEASURED_FEATURES
from reference_model.intake import (
    DecodedImage,
    ImageIntake,
    IntakeReason,
    IntakeRejection,
    measure_features,
    normalise,
)
from reference_model.preprocess import Preprocess

FEATURE = {name: i for i, name in enumerate(MEASURED_FEATURES)}


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height RGB pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + _chunk(b"IEND", b""))


def intake(size: int = 32, **limits: object) -> ImageIntake:
    return ImageIntake(ImagesConfig(**limits), size)  # type: ignore[arg-type]


def accepted(result: DecodedImage | IntakeRejection) -> DecodedImage:
    assert isinstance(result, DecodedImage), result
    return result


def refused(result: DecodedImage | IntakeRejection) -> IntakeReason:
    assert isinstance(result, IntakeRejection), result
    return result.reason


def noisy_jpeg(w: int = 64, h: int = 64) -> bytes:
    arr = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return encode(Image.fromarray(arr), "JPEG", quality=90)


def animated_webp() -> bytes:
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50,
                  lossless=True)


REFUSALS = [
    ("zero bytes are empty", lambda: b"", {}, IntakeReason.EMPTY),
    ("text is not an image", lambda: b"hello, this is not an image at all", {},
     IntakeReason.NOT_AN_IMAGE),
    ("a PNG declaring 30000 x 30000 is a decompression bomb", lambda: png_declaring(30000, 30000),
     {}, IntakeReason.TOO_MANY_PIXELS),
    ("8000 x 8000 is over max_pixels though under Pillow's own limit",
     lambda: png_declaring(8000, 8000), {}, IntakeReason.TOO_MANY_PIXELS),
    ("a JPEG cut in half is truncated", lambda: noisy_jpeg()[: len(noisy_jpeg()) // 2], {},
     IntakeReason.TRUNCATED),
    ("1 x 100000 exceeds the aspect-ratio limit",
     lambda: encode(Image.new("RGB", (1, 100_000)), "PNG"), {}, IntakeReason.BAD_ASPECT_RATIO),
    ("GIF is not an allowed format", lambda: encode(Image.new("RGB", (8, 8)), "GIF"), {},
     IntakeReason.FORMAT_NOT_ALLOWED),
    ("BMP is not an allowed format", lambda: encode(Image.new("RGB", (8, 8)), "BMP"), {},
     IntakeReason.FORMAT_NOT_ALLOWED),
    ("JPEG is refused when only PNG is allowed", lambda: noisy_jpeg(),
     {"allowed_formats": ["PNG"]}, IntakeReason.FORMAT_NOT_ALLOWED),
    ("bytes over max_bytes are too large", lambda: noisy_jpeg(256, 256), {"max_bytes": 1000},
     IntakeReason.TOO_LARGE),
    ("a JPEG marker followed by garbage cannot be decoded",
     lambda: b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, {}, IntakeReason.DECODE_ERROR),
]


@pytest.mark.parametrize(("data", "limits", "reason"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refusals_carry_a_bounded_reason(data, limits, reason) -> None:
    assert refused(intake(**limits).decode(data())) == reason


def test_bombs_are_refused_from_the_header_without_decompressing() -> None:
    ii = intake()
    bombs = [png_declaring(30000, 30000), png_declaring(8000, 8000)]
    ii.decode(bombs[1])  # warm
    start = time.perf_counter()
    for _ in range(10):
        for bomb in bombs:
            assert refused(ii.decode(bomb)) == IntakeReason.TOO_MANY_PIXELS
    assert (time.perf_counter() - start) / 20 < 0.02  # 64 M pixels would take far longer


def test_extreme_aspect_ratio_is_resized_when_the_limit_allows_it() -> None:
    data = encode(Image.new("RGB", (1, 100_000), (10, 200, 30)), "PNG")
    img = accepted(intake(max_aspect_ratio=1e6).decode(data))
    assert img.pixels.shape == (32, 32, 3)
    assert (img.features[FEATURE["width"]], img.features[FEATURE["height"]]) == (1.0, 100000.0)


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    cyan = Image.new("CMYK", (40, 30), (255, 0, 0, 0))
    img = accepted(intake().decode(encode(cyan, "JPEG", quality=95)))
    r, g, b = (img.features[FEATURE[k]] for k in ("red_mean", "green_mean", "blue_mean"))
    assert r < 0.05 and g > 0.95 and b > 0.95


def test_16_bit_png_is_scaled_not_clipped() -> None:
    grey16 = Image.fromarray(np.full((20, 30), 32896, dtype=np.uint16))  # 32896 / 257 = 128
    data = encode(grey16, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    img = accepted(intake().decode(data))
    assert img.pixels.dtype == np.uint8
    assert np.all(img.pixels == 128)
    assert img.features[FEATURE["brightness"]] == pytest.approx(128 / 255, abs=1e-6)


def test_palette_and_alpha_are_composited_over_the_background() -> None:
    clear = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    img = accepted(intake().decode(encode(clear, "PNG")))
    assert np.all(img.pixels == 255)  # fully transparent -> the white background
    black_bg = accepted(intake(alpha_background=(0, 0, 0)).decode(encode(clear, "PNG")))
    assert np.all(black_bg.pixels == 0)

    pal = Image.new("RGB", (16, 16), (0, 0, 255)).convert("P")
    img = accepted(intake().decode(encode(pal, "PNG")))
    assert img.features[FEATURE["blue_mean"]] == pytest.approx(1.0)

    gray_alpha = Image.new("LA", (8, 8), (100, 255))
    assert np.all(accepted(intake().decode(encode(gray_alpha, "PNG"))).pixels == 100)


def test_animated_webp_uses_the_first_frame_only() -> None:
    img = accepted(intake().decode(animated_webp()))
    assert img.features[FEATURE["red_mean"]] == pytest.approx(1.0, abs=0.02)
    assert img.features[FEATURE["green_mean"]] == pytest.approx(0.0, abs=0.02)


def test_exif_orientation_is_applied() -> None:
    # Stored 40 wide x 20 tall, left half red, right half blue; orientation 6 means
    # "rotate 90 degrees clockwise to display", so the display is 20 x 40, red on top.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif)
    img = accepted(intake().decode(data))
    assert (img.features[FEATURE["width"]], img.features[FEATURE["height"]]) == (20.0, 40.0)
    top, bottom = img.pixels[3, 16], img.pixels[28, 16]
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_features_of_a_known_image_match_hand_computed_values() -> None:
    # Quadrants: red, blue / white, black (64 x 64, lossless PNG).
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[:32, :32] = (255, 0, 0)
    arr[:32, 32:] = (0, 0, 255)
    arr[32:, :32] = (255, 255, 255)
    data = encode(Image.fromarray(arr), "PNG")
    feats = dict(zip(MEASURED_FEATURES, accepted(intake().decode(data)).features, strict=True))
    luma = [0.299, 0.114, 1.0, 0.0]
    mean = sum(luma) / 4  # 0.35325
    std = math.sqrt(sum((v - mean) ** 2 for v in luma) / 4)  # 0.38834...
    assert feats["brightness"] == pytest.approx(mean, abs=1e-6)
    assert feats["contrast"] == pytest.approx(std, abs=1e-6)
    assert feats["saturation"] == pytest.approx(0.5, abs=1e-6)  # red, blue 1; white, black 0
    assert (feats["red_mean"], feats["green_mean"], feats["blue_mean"]) == pytest.approx(
        (0.5, 0.25, 0.5), abs=1e-6)
    assert (feats["width"], feats["height"], feats["bytes"]) == (64.0, 64.0, float(len(data)))


def test_large_images_are_measured_on_a_box_filtered_copy() -> None:
    arr = np.zeros((1024, 1024, 3), np.uint8)
    arr[:512] = (200, 100, 50)
    big = measure_features(arr, 1024, 1024, 1)
    img = accepted(intake().decode(encode(Image.fromarray(arr), "PNG")))
    np.testing.assert_allclose(img.features[:6], big[:6], atol=1e-6)


def test_center_crop_keeps_the_middle() -> None:
    arr = np.zeros((32, 96, 3), np.uint8)
    arr[:, 32:64] = 255  # only the centre third is white
    crop = ImageIntake(ImagesConfig(), 16, "center_crop").decode(encode(Image.fromarray(arr),
                                                                        "PNG"))
    px = accepted(crop).pixels
    assert np.all(px[:, 1:-1] == 255)  # the filter reads a little across the crop edge
    assert px.min() > 200


def test_normalise_applies_channel_order_mean_and_std() -> None:
    px = np.array([[[[255, 0, 51]]]], np.uint8)  # one pixel, RGB
    rgb = normalise(px, (0.5, 0.5, 0.5), (0.5, 0.25, 0.1), "RGB")[0, :, 0, 0]
    np.testing.assert_allclose(rgb, [1.0, -2.0, -3.0], atol=1e-6)
    bgr = normalise(px, (0.2, 0.5, 0.5), (1.0, 1.0, 1.0), "BGR")[0, :, 0, 0]
    np.testing.assert_allclose(bgr, [0.0, -0.5, 0.5], atol=1e-6)


def test_random_bytes_after_every_magic_never_raise() -> None:
    rng = np.random.default_rng(1)
    magics = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBPVP8 ", b"GIF89a", b""]
    ii = intake()
    for magic in magics:
        for _ in range(20):
            tail = rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
            result = ii.decode(magic + tail)
            assert isinstance(result, IntakeRejection | DecodedImage)


def test_with_fast_decode_a_large_jpeg_is_drafted_but_reports_its_original_size() -> None:
    arr = np.zeros((1152, 1536, 3), np.uint8)  # drafted: >= 4 x the 256 px it needs
    arr[:, :768] = (230, 40, 40)
    arr[:, 768:] = (40, 40, 230)
    data = encode(Image.fromarray(arr), "JPEG", quality=95)
    img = accepted(ImageIntake(ImagesConfig(), Preprocess(64, fast_decode=True)).decode(data))
    feats = dict(zip(MEASURED_FEATURES, img.features, strict=True))
    assert (feats["width"], feats["height"]) == (1536.0, 1152.0)
    assert feats["red_mean"] == pytest.approx(135 / 255, abs=0.01)
    assert feats["blue_mean"] == pytest.approx(135 / 255, abs=0.01)
    assert img.pixels.shape == (64, 64, 3)
    assert img.pixels[32, 5, 0] > 200 and img.pixels[32, 60, 2] > 200
