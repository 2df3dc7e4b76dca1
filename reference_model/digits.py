"""A tiny real reference model for tests and the demo: coloured scikit-learn digits.

`load_digits` gives 1797 8x8 grey digits (values 0-16). They are upsampled (bilinear) to
32x32 and coloured with a fixed palette (navy background -> magenta -> yellow strokes),
so brightness, saturation and per-channel means are meaningful and a camera-firmware
colour change (per-channel gains) moves them. A ~10k-parameter CNN trains on them in a
few seconds on one CPU thread with a fixed seed; it returns (logits, 32-d embedding).

scikit-learn is imported only when the data is loaded.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch import nn

from monitor.atomic_write import replacing
from monitor.reference_config import ReferenceConfig
from reference_model.intake import normalise

DIGIT_CLASSES: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
INPUT_SIZE = 32
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
EMBEDDING_DIM = 32

#: Palette stops: intensity 0 (background), 0.5, 1 (stroke) -> RGB.
_STOPS = np.array([0.0, 0.5, 1.0])
_PALETTE = np.array([[24, 32, 72], [200, 70, 110], [250, 220, 90]], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class DigitsData:
    """images: (N, 32, 32, 3) uint8 RGB; labels: (N,) int64; fixed train/test split."""

    images: np.ndarray
    labels: np.ndarray
    train: np.ndarray
    test: np.ndarray


def colourise(gray01: np.ndarray) -> np.ndarray:
    """(..., H, W) intensities in [0, 1] -> (..., H, W, 3) uint8 through the fixed palette."""
    g = np.clip(gray01, 0.0, 1.0)
    channels = [np.interp(g, _STOPS, _PALETTE[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def load_digits_rgb(size: int = INPUT_SIZE, seed: int = 0,
                    test_fraction: float = 0.25) -> DigitsData:
    """The coloured digits at size x size with a seeded, stratification-free split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the digits model needs scikit-learn: pip install "
                          "'visionmon[test]' (or scikit-learn)") from err
    bunch = load_digits()
    gray = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]
    up = torch.nn.functional.interpolate(gray, size=(size, size), mode="bilinear",
                                         align_corners=False)[:, 0].numpy()
    images = colourise(up)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = round(len(labels) * test_fraction)
    return DigitsData(images, labels, np.sort(order[n_test:]), np.sort(order[:n_test]))


class DigitsNet(nn.Module):
    """Conv(3->8, s2) -> Conv(8->16, s2) -> Conv(16->32) -> global average pool = embedding
    (32-d) -> Linear(32->10) = logits. forward(x) -> (logits, embedding)."""

    def __init__(self, classes: int = len(DIGIT_CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, EMBEDDING_DIM, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(EMBEDDING_DIM, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.features(x)
        return self.head(emb), emb


class LogitsOnly(nn.Module):
    """Wraps a (logits, embedding) network to return logits only (for exporting a model
    whose embedding is taken from a submodule, e.g. `net.features`)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: tuple[torch.Tensor, torch.Tensor] = self.net(x)
        return out[0]


def model_inputs(images: np.ndarray) -> torch.Tensor:
    """(N, 32, 32, 3) uint8 -> normalised float32 NCHW, as the scorer would feed it."""
    return torch.from_numpy(normalise(images, MEAN, STD, "RGB"))


def train_digits_model(data: DigitsData, *, seed: int = 0, epochs: int = 12,
                       batch_size: int = 32, lr: float = 0.01) -> DigitsNet:
    """Train DigitsNet on data.train (Adam, cross-entropy, fixed seed); eval mode."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = DigitsNet()
    x = model_inputs(data.images[data.train])
    y = torch.from_numpy(data.labels[data.train])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * ((len(y) + batch_size - 1) // batch_size))
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(net(x[idx])[0], y[idx])
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def accuracy(net: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of `net` on uint8 RGB images."""
    with torch.inference_mode():
        logits = net(model_inputs(images))[0]
    return float((logits.argmax(1).numpy() == labels).mean())


def save_torchscript(net: nn.Module, path: str | Path) -> str:
    """torch.jit.script + save (written to a temporary name, then renamed); -> sha256."""
    return _atomic_save(path, lambda tmp: torch.jit.save(torch.jit.script(net), str(tmp)))


def save_export(net: nn.Module, path: str | Path, input_size: int = INPUT_SIZE) -> str:
    """torch.export with a dynamic batch dimension, saved as .pt2; -> sha256."""
    example = (torch.zeros(2, 3, input_size, input_size),)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(net, example, dynamic_shapes=({0: batch},))
    return _atomic_save(path, lambda tmp: torch.export.save(program, str(tmp)))


def _atomic_save(path: str | Path, write: Any) -> str:
    # the temporary file keeps the extension: torch.export.save wants .pt2
    with replacing(path, suffix=Path(path).suffix) as tmp:
        write(tmp)
        return hashlib.sha256(tmp.read_bytes()).hexdigest()


def digits_reference_config(path: str | Path, sha256: str, **overrides: Any) -> ReferenceConfig:
    """The model card of the digits model (production model name `digits`)."""
    card: dict[str, Any] = {
        "model": "digits", "path": str(path), "sha256": sha256, "input_size": INPUT_SIZE,
        "mean": list(MEAN), "std": list(STD), "channel_order": "RGB",
        "embedding": "second_output", "device": "cpu", "batch_size": 64,
        # 8x8 inputs: bf16 buys no speed, and tests compare with float32 forward passes
        "cpu_bf16": False}
    card.update(overrides)
    return ReferenceConfig(**card)


def render_digit(rgb: np.ndarray, fmt: str = "PNG", *, size: int | None = None,
                 rotate: float = 0.0, blur: float = 0.0,
                 gains: Sequence[float] = (1.0, 1.0, 1.0), brightness: float = 1.0,
                 quality: int = 92, fill: Sequence[int] | None = None) -> bytes:
    """Encode one (H, W, 3) uint8 digit, optionally corrupted.

    `rotate`: degrees counter-clockwise (background-filled); `blur`: Gaussian radius in
    pixels; `gains`: per-channel multipliers (a camera-firmware colour-balance change);
    `brightness`: overall multiplier; `size`: output side in pixels (bilinear); `fill`: the
    RGB a rotation uncovers (default: the digits palette's background).
    """
    im = Image.fromarray(rgb, "RGB")
    if size is not None and size != im.size[0]:
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    if rotate:
        bg = tuple(int(v) for v in (_PALETTE[0] if fill is None else fill))
        im = im.rotate(rotate, resample=Image.Resampling.BILINEAR, fillcolor=bg)
    if blur:
        im = im.filter(ImageFilter.GaussianBlur(blur))
    factors = np.asarray(gains, dtype=np.float64) * brightness
    if not np.allclose(factors, 1.0):
        arr = np.asarray(im, dtype=np.float64) * factors
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    if fmt.upper() in ("JPEG", "JPG", "WEBP"):
        im.save(buf, fmt.upper().replace("JPG", "JPEG"), quality=quality)
    else:
        im.save(buf, fmt.upper())
    return buf.getvalue()


@dataclass(frozen=True, slots=True)
class DigitsArtifact:
    """A trained, saved digits model and its card."""

    path: Path
    sha256: str
    config: ReferenceConfig
    data: DigitsData
    test_accuracy: float


def build_digits_reference(out_dir: str | Path, *, seed: int = 0, epochs: int = 12,
                           **card_overrides: Any) -> DigitsArtifact:
    """Train the digits model, save `digits.ts` in out_dir, return its card and data."""
    data = load_digits_rgb(seed=seed)
    net = train_digits_model(data, seed=seed, epochs=epochs)
    path = Path(out_dir) / "digits.ts"
    sha = save_torchscript(net, path)
    acc = accuracy(net, data.images[data.test], data.labels[data.test])
    return DigitsArtifact(path, sha, digits_reference_config(path, sha, **card_overrides),
                          data, acc)
