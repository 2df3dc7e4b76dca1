"""Data, models and image pools of the detection benchmark (.venv: needs torch).

Two data sets, chosen by `run.py --dataset` (`DATASETS`):
  digits   scikit-learn's 1,797 digits, coloured and upsampled to 32x32 by
           `reference_model.digits.load_digits_rgb`, split 50/50 with a fixed seed: 899
           images train both models, the 898 others are the pool
  fashion  Fashion-MNIST from Debian's `dataset-fashion-mnist` (`fashion.py`): 6,000 of its
           training images train both models, 2,000 of its test images are the pool
Streams draw from the pool with replacement.

Models, trained here with fixed seeds on one CPU thread:
  production  `ProductionNet` below: conv(5x5, s2) -> conv(3x3, s2) -> flatten -> linear, a
              different architecture from the reference, so they disagree on some images
  reference   `reference_model.digits.DigitsNet` (returns logits and a 32-d embedding),
              saved as TorchScript and loaded by the project's scorer from its model card

Pools: for each covariate shift and severity, every pool image is corrupted once (noise and
rotation draw per image from a seeded generator), encoded as PNG, served through the
production model (decoded from those PNG bytes) and scored by `score_images` (the
reference model's intake and model, as shadow scoring does). A stream repeats pool images,
and the same bytes always score the same, so each distinct image is scored once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from benchmarks.detection.fashion import BACKGROUND, FASHION_CLASSES, load_fashion_rgb
from benchmarks.detection.scenarios import CLEAN, COVARIATE, Pool, load_pool, save_pool
from monitor.reference_config import ImagesConfig, ReferenceConfig
from reference_model.digits import (
    DIGIT_CLASSES,
    DigitsData,
    digits_reference_config,
    load_digits_rgb,
    model_inputs,
    render_digit,
    save_torchscript,
    train_digits_model,
)
from reference_model.profile import score_images

SPLIT_SEED = 0
TEST_FRACTION = 0.5
PRODUCTION_SEED = 0
REFERENCE_SEED = 1
CACHE_VERSION = "1"   # bump when anything below changes the pools
FASHION_TRAIN = 6_000


@dataclass(frozen=True, slots=True)
class Dataset:
    """One data set of the benchmark and how its two models are trained on it."""

    name: str                         # also the served model's name in the records
    title: str
    classes: tuple[str, ...]
    load: Callable[[], DigitsData]
    fill: tuple[int, int, int] | None  # what a rotation uncovers (None: digits background)
    production_epochs: int
    reference_epochs: int
    reference_lr: float
    #: quality bounds of the benchmark's daemon config (quality.min_accuracy,
    #: quality.min_shadow_agreement), set under the clean pool's accuracy and agreement as an
    #: operator sets them under a model's normal level
    min_accuracy: float
    min_shadow_agreement: float
    #: the real-image workload (benchmarks/workloads) whose pools this data set reads instead
    #: of training models here; None for the small data sets trained here
    real: str | None = None


def _trained_elsewhere() -> DigitsData:
    raise NotImplementedError("the real-image workloads are built by benchmarks/workloads")


DATASETS: dict[str, Dataset] = {
    "digits": Dataset("digits", "scikit-learn digits", DIGIT_CLASSES,
                      lambda: load_digits_rgb(seed=SPLIT_SEED, test_fraction=TEST_FRACTION),
                      None, production_epochs=15, reference_epochs=40, reference_lr=0.02,
                      min_accuracy=0.9, min_shadow_agreement=0.9),
    "fashion": Dataset("fashion", "Fashion-MNIST", FASHION_CLASSES,
                       lambda: load_fashion_rgb(FASHION_TRAIN, 2_000, seed=SPLIT_SEED),
                       BACKGROUND, production_epochs=10, reference_epochs=15,
                       reference_lr=0.02, min_accuracy=0.75, min_shadow_agreement=0.75),
    # production 0.755 accurate and 0.769 in agreement with the reference on the clean pool
    "clipart": Dataset("clipart", "Debian clip art, 13 classes, ImageNet networks", (),
                       _trained_elsewhere, None, production_epochs=0, reference_epochs=0,
                       reference_lr=0.0, min_accuracy=0.65, min_shadow_agreement=0.65,
                       real="clipart"),
}
#: pool images of the real workload the detection benchmark uses: each shifted variant costs
#: two ImageNet networks per image on the CPU (about 0.1 s), so 600 of the 2,612
REAL_POOL = 600


class ProductionNet(nn.Module):
    """The served model: 32x32 RGB -> 10 logits."""

    def __init__(self, classes: int = len(DIGIT_CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 12, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(12, 24, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(24 * 8 * 8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_production(data: DigitsData, seed: int = PRODUCTION_SEED, epochs: int = 15,
                     lr: float = 3e-3, batch_size: int = 32) -> ProductionNet:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = ProductionNet()
    x = model_inputs(data.images[data.train])
    y = torch.from_numpy(data.labels[data.train])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


# --- corruptions ------------------------------------------------------------------------


def corrupt(rgb: np.ndarray, family: str, level: float, rng: np.random.Generator,
            fill: tuple[int, int, int] | None = None) -> bytes:
    """One (32, 32, 3) uint8 image under one covariate shift, as PNG bytes; `fill` is the
    colour a rotation uncovers."""
    if family == CLEAN:
        return render_digit(rgb)
    if family == "brightness":
        return render_digit(rgb, brightness=level)
    if family == "colour_balance":
        return render_digit(rgb, gains=(1.0 + (1.0 - level) / 2, 1.0, level))
    if family == "blur":
        return render_digit(rgb, blur=level)
    if family == "rotation":
        return render_digit(rgb, rotate=level * (1.0 if rng.random() < 0.5 else -1.0),
                            fill=fill)
    x = rgb.astype(np.float64)
    if family == "contrast":
        mean = x.mean(axis=(0, 1), keepdims=True)
        x = mean + level * (x - mean)
    elif family == "noise":
        x = x + rng.normal(0.0, level, size=x.shape)
    else:
        raise ValueError(f"unknown covariate shift {family!r}")
    return render_digit(np.clip(np.rint(x), 0, 255).astype(np.uint8))


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


# --- the whole set-up --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    folder: Path
    dataset: Dataset
    reference: ReferenceConfig
    pools: dict[str, Pool]
    info: dict[str, float | int | str]


def _variants(families: Mapping[str, tuple[str, Sequence[float]]] = COVARIATE
              ) -> list[tuple[str, str, float]]:
    out = [(CLEAN, CLEAN, 0.0)]
    for family, (_, levels) in families.items():
        out += [(f"{family}-s{s}", family, lv) for s, lv in enumerate(levels, start=1)]
    return out


def real_families(name: str) -> dict[str, tuple[str, tuple[float, ...]]]:
    """The covariate families of a real-image workload: its image shifts (corruptions and
    pipeline skews), each level as one number (saturation: its factor)."""
    from benchmarks.workloads.shifts import IMAGE_SHIFTS

    out = {}
    for fam, shift in IMAGE_SHIFTS.items():
        levels = tuple(float(v[0] if isinstance(v, tuple) else v)  # type: ignore[arg-type]
                       for v in shift.levels)
        # the tables cut a unit at its first comma
        unit = shift.unit.replace("[0, 1]", "1").replace("sd, pixels", "px sd")
        out[fam] = (unit.replace("x a + b", "x a (+ b)"), levels)
    return out


def build_real_workload(folder: Path, log: Callable[[str], None], dataset: Dataset,
                        pool_limit: int = REAL_POOL, size: str = "full",
                        root: Path | None = None,
                        families: Mapping[str, tuple[str, Sequence[float]]] | None = None
                        ) -> Workload:
    """Pools of a real-image workload (benchmarks/workloads, built and cached in `root`):
    the first `pool_limit` pool images, clean and under every image shift (or those of
    `families`) at severities 1-5, with both networks' outputs, written to `folder` as the
    peers read them."""
    from benchmarks.workloads.workload import load_workload

    assert dataset.real is not None
    folder.mkdir(parents=True, exist_ok=True)
    real = load_workload(dataset.real, size, root, progress=log, pool_limit=pool_limit)
    ds = dataclasses.replace(dataset, classes=real.classes)
    manifest = folder / "manifest.json"
    fams = real_families(dataset.real) if families is None else families
    key = {"cache_version": CACHE_VERSION, "dataset": dataset.name, "pool": len(real.labels),
           "source": str(real.folder), "reference_sha256": real.reference.sha256,
           "families": sorted(fams)}
    names = [v for v, _, _ in _variants(fams)]
    if manifest.exists():
        info = json.loads(manifest.read_text())
        if {k: info.get(k) for k in key} == key:
            pools = {v: load_pool(folder / f"pool-{v}.npz") for v in names}
            log(f"workload: loaded from {folder}")
            return Workload(folder, ds, real.reference, pools, info)
    t0 = time.perf_counter()
    pools = {}
    for variant, family, _ in _variants(fams):
        sev = 0 if variant == CLEAN else int(variant.rsplit("-s", 1)[1])
        out = real.outputs(family, sev)
        pool = Pool(out.labels.astype(np.int64), out.production_probs.astype(np.float64),
                    real.images(family, sev), out.reference_embedding,
                    np.argmax(out.reference_probs, axis=1).astype(np.int64),
                    out.reference_probs.max(axis=1).astype(np.float64),
                    out.features, out.reference_probs.astype(np.float32))
        save_pool(folder / f"pool-{variant}.npz", pool)
        pools[variant] = pool
    info: dict[str, float | int | str] = {
        **key, "workload": real.name, "pool_images": len(real.labels),
        "train_images": int(real.manifest["train_images"]),
        "production_network": real.manifest["production_network"],
        "reference_network": real.manifest["reference_network"],
        **_summary(pools, t0)}
    _save_manifest(manifest, info, log, f"{len(pools)} pools of {len(real.labels)} images")
    return Workload(folder, ds, real.reference, pools, info)


def _summary(pools: dict[str, Pool], t0: float) -> dict[str, float | int | str]:
    """Both models' accuracy and agreement on the clean pool, production accuracy on every
    variant, and the seconds since `t0`."""
    clean = pools[CLEAN]
    return {
        "production_accuracy": float((clean.top == clean.labels).mean()),
        "reference_accuracy": float((clean.ref_pred == clean.labels).mean()),
        "agreement": float((clean.ref_pred == clean.top).mean()),
        "build_seconds": round(time.perf_counter() - t0, 1),
        "accuracy_by_variant": json.dumps({v: round(float((p.top == p.labels).mean()), 4)
                                           for v, p in pools.items()}),
    }


def _save_manifest(manifest: Path, info: dict[str, float | int | str],
                   log: Callable[[str], None], what: str) -> None:
    tmp = manifest.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(manifest)
    log(f"workload: {what} built in {info['build_seconds']} s (production accuracy "
        f"{info['production_accuracy']:.3f}, reference {info['reference_accuracy']:.3f}, "
        f"agreement {info['agreement']:.3f})")


def build_workload(folder: Path, log: Callable[[str], None] = print,
                   dataset: Dataset = DATASETS["digits"]) -> Workload:
    """Train both models on `dataset` and build every pool, or load them from `folder` when
    they were built from the same data set by the same code version."""
    if dataset.real is not None:
        return build_real_workload(folder, log, dataset)
    torch.set_num_threads(1)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.json"
    ref_path = folder / "reference.ts"
    if manifest.exists():
        info = json.loads(manifest.read_text())
        if (info.get("cache_version") == CACHE_VERSION and ref_path.exists()
                and info.get("dataset", "digits") == dataset.name):
            pools = {v: load_pool(folder / f"pool-{v}.npz") for v, _, _ in _variants()}
            ref = digits_reference_config(ref_path, info["reference_sha256"], device="cpu",
                                          model=dataset.name)
            log(f"workload: loaded from {folder}")
            return Workload(folder, dataset, ref, pools, {"dataset": dataset.name, **info})
    t0 = time.perf_counter()
    data = dataset.load()
    prod = train_production(data, epochs=dataset.production_epochs)
    ref_net = train_digits_model(data, seed=REFERENCE_SEED, epochs=dataset.reference_epochs,
                                 lr=dataset.reference_lr)
    sha = save_torchscript(ref_net, ref_path)
    ref = digits_reference_config(ref_path, sha, device="cpu", model=dataset.name)
    t_train = time.perf_counter() - t0
    pool_images = data.images[data.test]
    pool_labels = data.labels[data.test]
    pools: dict[str, Pool] = {}
    for variant, family, level in _variants():
        rng = np.random.default_rng([SPLIT_SEED, int(hashlib.sha1(variant.encode())
                                                     .hexdigest()[:8], 16)])
        pngs = [corrupt(img, family, level, rng, dataset.fill) for img in pool_images]
        pixels = np.stack([decode_png(b) for b in pngs])
        with torch.inference_mode():
            probs = prod(model_inputs(pixels)).double().softmax(1).numpy()
        items = [(f"p{k}", "v1", 0.0, b) for k, b in enumerate(pngs)]
        scored = score_images(ref, ImagesConfig(), dataset.classes, items)
        if len(scored) != len(pngs):
            raise RuntimeError(f"pool {variant}: the intake refused "
                               f"{len(pngs) - len(scored)} images")
        pool = Pool(pool_labels.astype(np.int64), probs, pngs,
                    np.stack([s.embedding for s in scored]).astype(np.float32),
                    np.array([s.ref_pred for s in scored], dtype=np.int64),
                    np.array([s.ref_confidence for s in scored]),
                    np.array([s.features for s in scored], dtype=np.float64))
        save_pool(folder / f"pool-{variant}.npz", pool)
        pools[variant] = pool
    info: dict[str, float | int | str] = {
        "cache_version": CACHE_VERSION,
        "dataset": dataset.name,
        "reference_sha256": sha,
        "train_images": int(data.train.size),
        "pool_images": int(data.test.size),
        "train_seconds": round(t_train, 1),
        **_summary(pools, t0),
    }
    _save_manifest(manifest, info, log, "models and pools")
    return Workload(folder, dataset, ref, pools, info)
