"""Fashion-MNIST for the detection benchmark, from the Debian package `dataset-fashion-mnist`.

70,000 grey 28x28 product photos in 10 classes (Zalando, MIT licence), read from the
package's idx files. Each image is padded with 2 black pixels to 32x32 and repeated into
three equal channels, so the benchmark's intake, models and corruptions take it as they take
the coloured digits; a colour-balance shift gives the grey images a tint.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from reference_model.digits import DigitsData

#: where Debian installs the data; VISIONMON_FASHION_MNIST overrides it
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES: tuple[str, ...] = (
    "tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
    "ankle_boot")
BACKGROUND = (0, 0, 0)
SIDE = 28
PAD = 2


def fashion_root() -> Path:
    return Path(os.environ.get("VISIONMON_FASHION_MNIST", DEFAULT_ROOT))


def _idx(path: Path, offset: int) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: install the Debian package with `sudo apt-get install -y "
            "dataset-fashion-mnist`, or set VISIONMON_FASHION_MNIST to a folder holding "
            "Fashion-MNIST's four idx .gz files")
    with gzip.open(path) as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=offset)


def load_fashion_rgb(train: int, pool: int, seed: int = 0) -> DigitsData:
    """`train` images drawn (seeded, without replacement) from Fashion-MNIST's 60,000
    training images and `pool` from its 10,000 test images, as (N, 32, 32, 3) uint8; the
    first `train` rows are the training split, the rest the test split."""
    root = fashion_root()
    x_tr = _idx(root / "train-images-idx3-ubyte.gz", 16).reshape(-1, SIDE, SIDE)
    y_tr = _idx(root / "train-labels-idx1-ubyte.gz", 8)
    x_te = _idx(root / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, SIDE, SIDE)
    y_te = _idx(root / "t10k-labels-idx1-ubyte.gz", 8)
    rng = np.random.default_rng(seed)
    a = np.sort(rng.choice(y_tr.size, size=train, replace=False))
    b = np.sort(rng.choice(y_te.size, size=pool, replace=False))
    gray = np.concatenate([x_tr[a], x_te[b]])
    gray = np.pad(gray, ((0, 0), (PAD, PAD), (PAD, PAD)))
    images = np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))
    labels = np.concatenate([y_tr[a], y_te[b]]).astype(np.int64)
    return DigitsData(images, labels, np.arange(train), np.arange(train, train + pool))
