"""The model card's preprocessing: resize the shorter side, centre crop, filter, antialias,
and fast decode as an explicit option."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from monitor.reference_config import ImagesConfig, ReferenceConfig
from reference_model.intake import DecodedImage, ImageIntake
from reference_model.preprocess import Preprocess

SHA = "0" * 64


def card(**keys: object) -> ReferenceConfig:
    return ReferenceConfig(model="m", path="m.pt2", sha256=SHA, **keys)  # type: ignore[arg-type]


def jpeg(arr: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus texture: an image whose resampling differences show."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(9 * xx + 3 * yy), np.cos(7 * yy - 2 * xx), np.sin(5 * (xx + yy))])
    arr = 127 + 80 * base.transpose(1, 2, 0) + rng.normal(0, 20, (h, w, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def pixels(intake: ImageIntake, data: bytes) -> np.ndarray:
    out = intake.decode(data)
    assert isinstance(out, DecodedImage), out
    return out.pixels.astype(np.int16)


# --- the crop box: torchvision's Resize(R) + CenterCrop(S) arithmetic -----------------------

BOXES = [
    # (width, height, input_size, resize_size, expected resized size, expected crop offset)
    ("a landscape photo, 256 -> 224", 500, 375, 224, 256, (341, 256), (58, 16)),
    ("a portrait photo, 256 -> 224", 375, 500, 224, 256, (256, 341), (16, 58)),
    ("a square photo, 256 -> 224", 512, 512, 224, 256, (256, 256), (16, 16)),
    ("EfficientNet-Lite2, 297 -> 260", 683, 1024, 260, 297, (297, 445), (18, 92)),
    ("no resize_size: shorter side to input_size", 96, 32, 16, None, (48, 16), (16, 0)),
]


@pytest.mark.parametrize(("case", "w", "h", "size", "resize_size", "resized", "offset"), BOXES,
                         ids=[b[0] for b in BOXES])
def test_the_crop_box_is_torchvisions_resize_then_center_crop(
        case: str, w: int, h: int, size: int, resize_size: int | None,
        resized: tuple[int, int], offset: tuple[int, int]) -> None:
    box = Preprocess(size, "center_crop", resize_size).source_box(w, h)
    sx, sy = w / resized[0], h / resized[1]
    expected = (offset[0] * sx, offset[1] * sy, (offset[0] + size) * sx, (offset[1] + size) * sy)
    assert box == pytest.approx(expected)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "lanczos"])
def test_one_step_crop_equals_resizing_the_whole_image_then_cropping(interpolation: str) -> None:
    arr = photo_like(375, 500)
    pre = Preprocess(224, "center_crop", 256, interpolation)  # type: ignore[arg-type]
    one = np.asarray(pre.apply(Image.fromarray(arr)), dtype=np.int16)
    resized = Image.fromarray(arr).resize((341, 256), pre_filter(interpolation))
    two = np.asarray(resized.crop((58, 16, 58 + 224, 16 + 224)), dtype=np.int16)
    assert np.abs(one - two).max() <= 1


def pre_filter(name: str) -> Image.Resampling:
    return {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
            "lanczos": Image.Resampling.LANCZOS}[name]


def test_antialias_off_point_samples_like_torch_interpolate() -> None:
    arr = photo_like(300, 400)
    pre = Preprocess(64, "stretch", interpolation="bilinear", antialias=False)
    ours = np.asarray(pre.apply(Image.fromarray(arr)), dtype=np.float64)
    t = torch.from_numpy(arr).permute(2, 0, 1)[None].double()
    ref = torch.nn.functional.interpolate(t, size=(64, 64), mode="bilinear",
                                          align_corners=False, antialias=False)
    ref_px = ref[0].permute(1, 2, 0).clamp(0, 255).numpy()
    assert np.abs(ours - ref_px).max() <= 1.0
    smooth = np.asarray(Preprocess(64, "stretch").apply(Image.fromarray(arr)), np.float64)
    assert np.abs(smooth - ref_px).mean() > 3  # antialiasing really is a different filter


def test_the_interpolation_filter_changes_the_pixels() -> None:
    data = jpeg(photo_like(375, 500))
    bilinear = pixels(ImageIntake(ImagesConfig(), Preprocess(224, "center_crop", 256)), data)
    bicubic = pixels(ImageIntake(ImagesConfig(),
                                 Preprocess(224, "center_crop", 256, "bicubic")), data)
    assert np.abs(bilinear - bicubic).mean() > 0.5


# --- fast decode ----------------------------------------------------------------------------


def test_without_fast_decode_a_large_jpeg_is_decoded_whole() -> None:
    data = jpeg(photo_like(1200, 1600))
    pre = Preprocess(224, "center_crop", 256)
    got = pixels(ImageIntake(ImagesConfig(), pre), data)
    with Image.open(io.BytesIO(data)) as im:  # the exact pipeline, written out
        exact = np.asarray(pre.apply(im.convert("RGB")), dtype=np.int16)
    assert np.array_equal(got, exact)


def test_fast_decode_drafts_a_large_jpeg_and_stays_close() -> None:
    data = jpeg(photo_like(1200, 1600))
    exact = pixels(ImageIntake(ImagesConfig(), Preprocess(224, "center_crop", 256)), data)
    fast = pixels(ImageIntake(ImagesConfig(), Preprocess(224, "center_crop", 256,
                                                        fast_decode=True)), data)
    diff = np.abs(exact - fast)
    assert diff.max() > 0  # drafted: not the exact pixels
    assert diff.mean() < 8  # but the same picture


def test_fast_decode_leaves_small_images_exact() -> None:
    data = jpeg(photo_like(300, 400))
    exact = pixels(ImageIntake(ImagesConfig(), Preprocess(224, "center_crop", 256)), data)
    fast = pixels(ImageIntake(ImagesConfig(), Preprocess(224, "center_crop", 256,
                                                        fast_decode=True)), data)
    assert np.array_equal(exact, fast)


# --- the card ---------------------------------------------------------------------------


def test_the_card_expresses_the_standard_pipeline_and_the_intake_follows_it() -> None:
    c = card(input_size=224, resize="center_crop", resize_size=256,
             interpolation="bicubic", antialias=True)
    pre = ImageIntake.for_reference(ImagesConfig(), c).preprocess
    assert pre == Preprocess(224, "center_crop", 256, "bicubic", True, fast_decode=False)


def test_old_cards_keep_their_meaning() -> None:
    c = card(input_size=32, resize="center_crop")
    pre = Preprocess.from_card(c)
    assert (pre.shorter_side, pre.interpolation, pre.antialias, pre.fast_decode) == (
        32, "bilinear", True, False)
    assert Preprocess.from_card(card()).resize == "stretch"


BAD_CARDS = [
    ("resize_size needs center_crop", {"resize_size": 256}, "resize_size needs resize"),
    ("the crop must fit", {"resize": "center_crop", "input_size": 224, "resize_size": 200},
     "smaller than input_size"),
    ("antialias off is for point-sampled filters",
     {"interpolation": "lanczos", "antialias": False}, "antialias: false works with"),
    ("an unknown filter", {"interpolation": "area"}, "interpolation"),
]


@pytest.mark.parametrize(("case", "keys", "message"), BAD_CARDS, ids=[b[0] for b in BAD_CARDS])
def test_inconsistent_cards_are_refused_with_the_reason(case: str, keys: dict[str, object],
                                                        message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        card(**keys)
