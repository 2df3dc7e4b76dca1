"""The real-image workloads: labelled pools, their shifts, and what the production and
reference models say about them; built once, then read from a cache on disk.

  clipart   Debian's clip art (clipart.py), the 13 categories with >= 100 images, at most
            1,000 images each (5,232). production: MobileNetV2, frozen, ImageNet weights,
            + a linear head; reference: EfficientNet-Lite0 + a linear head, exported as a
            torch.export program and loaded by visionmon's own loader from its card. Half
            of the images (stratified) train both heads; the other half is the pool.
  imagenet  the 1,000 ImageNet classes, both networks as they ship (production
            MobileNetV2, reference EfficientNet-Lite0); the pool is 20 crops/flips of each
            of foolbox's 20 labelled ImageNet photos (400 images, 256-400 px).

`size="small"` builds the same thing on 10 classes x 8 images / 3 variants per photo, for
tests (well under a minute on a quiet 2-core machine).

The pool holds sources (RGBA clip art on a transparent 256-px square, or RGB photos).
`Workload.images(shift, severity)` renders them under an image shift (shifts.py) with a
seed fixed per shift and severity; `Workload.outputs(...)` runs both models on those
bytes: production through its own exact pipeline, the reference through visionmon's intake
and `Scorer`, as shadow scoring does. `Workload.stream(...)` draws (bytes, label, shift,
severity, served probabilities) items from the pool, with replacement, applying the stream
shifts (subpopulation, bad model version, label noise). Each variant is computed once and
cached as an .npz beside the manifest.

Cache folder: `cache_root()` / f"{name}-{size}-v{CACHE_VERSION}"; VISIONMON_WORKLOADS_CACHE
overrides the root (default ~/.cache/visionmon-workloads). Never committed.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from benchmarks.workloads import clipart, photos
from benchmarks.workloads.networks import (
    NETWORKS,
    TransferClassifier,
    export_program,
    imagenet_classes,
)
from benchmarks.workloads.shifts import (
    ALL_SHIFTS,
    CLEAN,
    IMAGE_SHIFTS,
    STREAM_SHIFTS,
    apply_shift,
    encode,
)
from monitor.reference_config import ImagesConfig, ReferenceConfig
from reference_model.duplicates import DuplicateWindow
from reference_model.intake import DecodedImage, ImageIntake, normalise
from reference_model.scorer import Scorer

log = logging.getLogger(__name__)

CACHE_VERSION = "2"   # bump when anything changes what a build produces (2: 12 input features)
SEED = 0
BATCH = 32
SIZES = ("full", "small")
PRODUCTION_NETWORK = "mobilenet-v2"
REFERENCE_NETWORK = "efficientnet-lite0"
#: subpopulation shift: draws concentrate on this many groups (sub-folders / photos),
#: chosen among those with at least this many pool images (or the largest, if none has)
SUBPOPULATION_GROUPS = 3
SUBPOPULATION_MIN_IMAGES = 20


def cache_root() -> Path:
    """$VISIONMON_WORKLOADS_CACHE, else $XDG_CACHE_HOME/visionmon-workloads, else
    ~/.cache/visionmon-workloads."""
    if env := os.environ.get("VISIONMON_WORKLOADS_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "visionmon-workloads"


@dataclass(frozen=True, slots=True)
class Item:
    """One request of a stream: the image bytes both models receive, its (possibly noisy)
    label, the shift in force, the production softmax served, and the pool row it came
    from (row of `Workload.outputs(shift, severity)`)."""

    image: bytes
    label: int
    shift: str
    severity: int
    probs: np.ndarray
    index: int


@dataclass(frozen=True, slots=True, eq=False)
class Outputs:
    """Both models on one pool variant; row i = pool image i.

    production_probs (N, C) float32 softmax served; production_embedding (N, 1280);
    reference_probs (N, C) float32 softmax of the reference model (its own classes, which
    are the production classes in the same order here); reference_embedding (N, D);
    features (N, F): the intake's input features; labels (N,) true classes."""

    labels: np.ndarray
    production_probs: np.ndarray
    production_embedding: np.ndarray
    reference_probs: np.ndarray
    reference_embedding: np.ndarray
    features: np.ndarray

    def accuracy(self) -> tuple[float, float]:
        """(production, reference) top-1 accuracy."""
        y = self.labels
        return (float((self.production_probs.argmax(1) == y).mean()),
                float((self.reference_probs.argmax(1) == y).mean()))


# --- sources -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Sources:
    """What a build starts from: encoded source images, labels and groups, split."""

    classes: tuple[str, ...]
    images: list[bytes]          # PNG (RGBA clip art) or JPEG (photos)
    labels: np.ndarray
    groups: list[str]            # sub-folder or source photo: the subpopulations
    train: np.ndarray            # indices that train the heads (empty: no heads)
    pool: np.ndarray             # indices of the pool, in a seeded random order


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def clipart_sources(size: str, seed: int = SEED) -> Sources:
    root = clipart.clipart_root()
    items = clipart.catalogue(root)
    classes = clipart.classes_of(items)
    per_class = 1000
    if size == "small":
        classes, per_class = classes[:10], 8
    chosen = clipart.select(items, classes, per_class, seed)
    labels = np.array([classes.index(it.category) for it in chosen], dtype=np.int64)
    rng = np.random.default_rng(seed)
    train, pool = [], []
    for c in range(len(classes)):  # stratified halves
        idx = rng.permutation(np.flatnonzero(labels == c))
        train += idx[: len(idx) // 2].tolist()
        pool += idx[len(idx) // 2:].tolist()
    images = [_png(clipart.load_source(root, it)) for it in chosen]
    return Sources(classes, images, labels, [it.subfolder for it in chosen],
                   np.sort(np.array(train)), rng.permutation(np.array(pool)))


def imagenet_sources(size: str, seed: int = SEED) -> Sources:
    rng = np.random.default_rng(seed)
    per_photo = 20 if size == "full" else 3
    images: list[bytes] = []
    labels: list[int] = []
    groups: list[str] = []
    for p in photos.imagenet_photos():
        variants = photos.photo_variants(p, per_photo, rng, shorter=(256, 400),
                                         quality=(90, 95))
        images += variants
        labels += [p.label] * len(variants)
        groups += [p.source] * len(variants)
    pool = rng.permutation(len(images))
    return Sources(imagenet_classes(), images, np.array(labels, dtype=np.int64), groups,
                   np.zeros(0, dtype=np.int64), pool)


# --- models --------------------------------------------------------------------------------


def network_intake(name: str) -> tuple[ImageIntake, dict[str, Any]]:
    """The exact intake of a network's card, and the card."""
    return ImageIntake(ImagesConfig(), NETWORKS[name].preprocess()), NETWORKS[name].card


def decode(intake: ImageIntake, images: Sequence[bytes]) -> list[DecodedImage]:
    out = [intake.decode(b) for b in images]
    bad = [i for i, d in enumerate(out) if not isinstance(d, DecodedImage)]
    if bad:
        raise RuntimeError(f"the intake refused {len(bad)} images, e.g. #{bad[0]}: "
                           f"{out[bad[0]]}")
    return out  # type: ignore[return-value]


def embed(net: nn.Module, intake: ImageIntake, card: dict[str, Any],
          images: Sequence[bytes]) -> np.ndarray:
    """(N, D) float32 embeddings of encoded images (`net.embed` after the card's pipeline)."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), BATCH):
            px = np.stack([d.pixels for d in decode(intake, images[i:i + BATCH])])
            x = torch.from_numpy(normalise(px, card["mean"], card["std"],
                                           card["channel_order"]))
            out.append(net.embed(x).numpy())  # type: ignore[operator]
    return np.concatenate(out).astype(np.float32)


def train_head(emb: np.ndarray, labels: np.ndarray, classes: int, seed: int = SEED,
               weight_decay: float = 1e-3, steps: int = 200) -> nn.Linear:
    """Multinomial logistic regression on frozen embeddings (full-batch L-BFGS, L2)."""
    torch.manual_seed(seed)
    head = nn.Linear(emb.shape[1], classes)
    x, y = torch.from_numpy(emb), torch.from_numpy(labels)
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=steps,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(head(x), y) + weight_decay * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head.eval()


def bad_version_head(head: nn.Linear, level: float, seed: int = SEED) -> nn.Linear:
    """A copy of the classifier with Gaussian noise of sd `level` x sd(weights) added to its
    weights: a damaged or badly converted checkpoint."""
    gen = torch.Generator().manual_seed(seed)
    bad = nn.Linear(head.in_features, head.out_features)
    with torch.no_grad():
        w = head.weight
        bad.weight.copy_(w + level * float(w.std()) * torch.randn(w.shape, generator=gen))
        bad.bias.copy_(head.bias)
    return bad.eval()


def _softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.double(), dim=1).numpy().astype(np.float32)


# --- the workload ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Variant:
    images: list[bytes]
    outputs: Outputs


class Workload:
    """A built workload, read from its cache folder (see the module docstring).

    `pool_limit`: use only the first that many pool images (the pool is in a seeded random
    order, so they are a random sample): shifted variants of the full clip-art pool cost
    about 2 x 2,612 network passes each on the CPU. Variants computed on a limited pool are
    cached apart (`<variant>-n<limit>.npz`); a cached full-pool variant is sliced."""

    def __init__(self, folder: Path, pool_limit: int | None = None) -> None:
        self.folder = folder
        self.manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
        self.name: str = self.manifest["name"]
        self.classes: tuple[str, ...] = tuple(self.manifest["classes"])
        with np.load(folder / "pool.npz") as z:
            self.sources = _unpack(z["data"], z["offsets"])
            self.labels = z["labels"].astype(np.int64)
            self.groups: list[str] = [str(g) for g in z["groups"]]
        self._full = len(self.sources)
        if pool_limit is not None and pool_limit < self._full:
            self.sources = self.sources[:pool_limit]
            self.labels = self.labels[:pool_limit]
            self.groups = self.groups[:pool_limit]
        self.source_format: str = self.manifest["source_format"]
        # float32, whatever the CPU: the cached variants were scored so (cards written
        # before `cpu_bf16` existed say nothing of it)
        self.reference = ReferenceConfig(**{"cpu_bf16": False, **self.manifest["reference_card"]},
                                         path=str(folder / "reference.pt2"))
        self._production: nn.Module | None = None
        self._scorer: Scorer | None = None

    # models, loaded on first use
    def production(self) -> nn.Module:
        """The served model: embed() and classify() (a TransferClassifier for clip art)."""
        if self._production is None:
            net = NETWORKS[self.manifest["production_network"]].load()
            if "production_head" in self.manifest:
                with np.load(self.folder / "production_head.npz") as z:
                    head = nn.Linear(z["weight"].shape[1], z["weight"].shape[0])
                    with torch.no_grad():
                        head.weight.copy_(torch.from_numpy(z["weight"]))
                        head.bias.copy_(torch.from_numpy(z["bias"]))
                net = TransferClassifier(net, head.eval()).eval()
            self._production = net
        return self._production

    def scorer(self) -> Scorer:
        """The reference model as the daemon loads it (hash checked, card applied)."""
        if self._scorer is None:
            self._scorer = Scorer.from_config(self.reference, device="cpu")
        return self._scorer

    def images(self, shift: str, severity: int = 0) -> list[bytes]:
        """The pool's bytes under an image shift (CLEAN, or a stream shift: the clean pool)."""
        return self._variant(shift, severity).images

    def outputs(self, shift: str = CLEAN, severity: int = 0) -> Outputs:
        """Both models on the pool under `shift` at `severity` (computed once, cached)."""
        if shift in STREAM_SHIFTS and shift != "bad_version":
            shift, severity = CLEAN, 0
        if shift == "bad_version":
            clean = self.outputs()
            level = float(STREAM_SHIFTS[shift].level(severity))  # type: ignore[arg-type]
            bad = bad_version_head(self.production().fc, level,  # type: ignore[arg-type]
                                   seed=SEED + severity)
            with torch.inference_mode():
                probs = _softmax(bad(torch.from_numpy(clean.production_embedding)))
            return Outputs(clean.labels, probs, clean.production_embedding,
                           clean.reference_probs, clean.reference_embedding, clean.features)
        return self._variant(shift, severity).outputs

    def stream(self, shift: str, severity: int, n: int, seed: int) -> Iterator[Item]:
        """`n` requests drawn from the pool with replacement under `shift` at `severity`
        (CLEAN with severity 0 for no shift)."""
        rng = np.random.default_rng([seed, zlib.crc32(shift.encode()), severity])
        out = self.outputs(shift, severity)
        images = self.images(shift, severity)
        m = len(images)
        weights = np.full(m, 1.0 / m)
        if shift == "subpopulation":
            sizes = {g: self.groups.count(g) for g in set(self.groups)}
            floor = min(SUBPOPULATION_MIN_IMAGES, max(sizes.values()))
            groups = sorted(g for g, k in sizes.items() if k >= floor)
            target = set(rng.choice(groups, min(SUBPOPULATION_GROUPS, len(groups)),
                                    replace=False).tolist())
            hit = np.array([g in target for g in self.groups])
            share = float(ALL_SHIFTS[shift].level(severity))  # type: ignore[arg-type]
            weights = np.where(hit, share / hit.sum(), (1 - share) / (~hit).sum())
        rows = rng.choice(m, size=n, p=weights / weights.sum())
        labels = out.labels[rows].copy()
        if shift == "label_noise":
            share = float(ALL_SHIFTS[shift].level(severity))  # type: ignore[arg-type]
            flip = rng.random(n) < share
            other = rng.integers(1, len(self.classes), size=n)
            labels = np.where(flip, (labels + other) % len(self.classes), labels)
        for row, label in zip(rows.tolist(), labels.tolist(), strict=True):
            yield Item(images[row], int(label), shift, severity,
                       out.production_probs[row], int(row))

    # --- variants
    def _variant(self, shift: str, severity: int) -> _Variant:
        if shift != CLEAN and shift not in IMAGE_SHIFTS:
            if shift in ALL_SHIFTS:
                return self._variant(CLEAN, 0)
            raise ValueError(f"unknown shift {shift!r}; known: {[CLEAN, *ALL_SHIFTS]}")
        key = CLEAN if shift == CLEAN else f"{shift}-s{severity}"
        full = self.folder / "variants" / f"{key}.npz"
        n = len(self.sources)
        path = full if n == self._full else full.with_name(f"{key}-n{n}.npz")
        if path.exists():
            return _load_variant(path)
        if full.exists():
            return _slice(_load_variant(full), n)
        t0 = time.perf_counter()
        images = render_shift(self.sources, shift, severity, self.source_format)
        variant = _Variant(images, self._run_models(images))
        _save_variant(path, variant)
        log.info("%s: variant %s computed in %.1f s", self.name, key, time.perf_counter() - t0)
        return variant

    def _run_models(self, images: list[bytes]) -> Outputs:
        intake, card = network_intake(self.manifest["production_network"])
        prod = self.production()
        emb = embed(prod, intake, card, images)
        with torch.inference_mode():
            probs = _softmax(prod.classify(torch.from_numpy(emb)))  # type: ignore[operator]
        ref_intake = ImageIntake.for_reference(ImagesConfig(), self.reference)
        scorer = self.scorer()
        ref_probs, ref_emb, feats = [], [], []
        duplicates = DuplicateWindow(ImagesConfig().duplicates)
        for i in range(0, len(images), BATCH):
            decoded = decode(ref_intake, images[i:i + BATCH])
            result = scorer.score([d.pixels for d in decoded])
            ref_probs.append(result.probs)
            ref_emb.append(result.embeddings)
            feats += [duplicates.features("workload", d.features, d.dhash) for d in decoded]
        return Outputs(self.labels, probs, emb, np.concatenate(ref_probs).astype(np.float32),
                       np.concatenate(ref_emb).astype(np.float32),
                       np.asarray(feats, dtype=np.float64))


def render_shift(sources: Sequence[bytes], shift: str, severity: int, fmt: str) -> list[bytes]:
    """Encoded images (`fmt`) of `sources` under an image shift at `severity`, seeded by
    the shift and severity (the same sources give the same bytes)."""
    rng = np.random.default_rng([SEED, zlib.crc32(shift.encode()), severity])
    images = []
    for data in sources:
        with Image.open(io.BytesIO(data)) as im:
            source = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB")
        images.append(encode(apply_shift(source, shift, severity, rng), fmt))
    return images


def _slice(v: _Variant, n: int) -> _Variant:
    o = v.outputs
    return _Variant(v.images[:n], Outputs(o.labels[:n], o.production_probs[:n],
                                          o.production_embedding[:n], o.reference_probs[:n],
                                          o.reference_embedding[:n], o.features[:n]))


def _unpack(data: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    raw = data.tobytes()
    return [raw[int(a):int(b)] for a, b in itertools.pairwise(offsets.tolist())]


def _pack(images: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.cumsum([0] + [len(b) for b in images]).astype(np.int64)
    return np.frombuffer(b"".join(images), dtype=np.uint8), offsets


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


def _save_variant(path: Path, v: _Variant) -> None:
    data, offsets = _pack(v.images)
    o = v.outputs
    _atomic_savez(path, data=data, offsets=offsets, labels=o.labels,
                  production_probs=o.production_probs,
                  production_embedding=o.production_embedding,
                  reference_probs=o.reference_probs, reference_embedding=o.reference_embedding,
                  features=o.features)


def _load_variant(path: Path) -> _Variant:
    with np.load(path) as z:
        return _Variant(_unpack(z["data"], z["offsets"]),
                        Outputs(z["labels"], z["production_probs"], z["production_embedding"],
                                z["reference_probs"], z["reference_embedding"], z["features"]))


# --- building -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipe:
    """How one workload is built."""

    name: str
    title: str
    sources: Callable[[str], Sources]
    source_format: str                 # how the pool's images are encoded: PNG or JPEG
    transfer: bool                     # train linear heads (else the networks as shipped)


WORKLOADS: dict[str, Recipe] = {
    "clipart": Recipe("clipart", "Debian clip art, 13 classes", clipart_sources, "PNG", True),
    "imagenet": Recipe("imagenet", "ImageNet photos from packages, 1,000 classes",
                       imagenet_sources, "JPEG", False),
}


def workload_folder(name: str, size: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / f"{name}-{size}-v{CACHE_VERSION}"


def load_workload(name: str, size: str = "full", root: Path | None = None,
                  progress: Callable[[str], None] = log.info,
                  pool_limit: int | None = None) -> Workload:
    """The workload from its cache folder, built there first if it is not yet."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; known: {sorted(WORKLOADS)}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    folder = workload_folder(name, size, root)
    manifest = folder / "manifest.json"
    if not (manifest.exists() and json.loads(manifest.read_text()).get("complete")):
        build(WORKLOADS[name], size, folder, progress)
    return Workload(folder, pool_limit)


def build(recipe: Recipe, size: str, folder: Path,
          progress: Callable[[str], None] = log.info) -> None:
    """Build a workload into `folder`: sources, heads, the reference artifact, the clean
    pool's outputs; the manifest says `complete` only at the end, so a build stopped
    half-way starts again."""
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    src = recipe.sources(size)
    progress(f"{recipe.name}-{size}: {len(src.images)} images, {len(src.classes)} classes, "
             f"{len(src.train)} train, {len(src.pool)} pool")
    prod_net = NETWORKS[PRODUCTION_NETWORK].load()
    ref_net = NETWORKS[REFERENCE_NETWORK].load()
    manifest: dict[str, Any] = {"name": recipe.name, "size": size,
                                "cache_version": CACHE_VERSION, "title": recipe.title,
                                "classes": list(src.classes),
                                "source_format": recipe.source_format,
                                "production_network": PRODUCTION_NETWORK,
                                "reference_network": REFERENCE_NETWORK}
    ref_card = dict(NETWORKS[REFERENCE_NETWORK].card)
    if recipe.transfer:
        train_images = [src.images[i] for i in src.train]
        y = src.labels[src.train]
        heads = {}
        for role, net, name in (("production", prod_net, PRODUCTION_NETWORK),
                                ("reference", ref_net, REFERENCE_NETWORK)):
            t = time.perf_counter()
            intake, card = network_intake(name)
            emb = embed(net, intake, card, train_images)
            heads[role] = train_head(emb, y, len(src.classes))
            progress(f"  {role} head on {name}: {len(y)} images embedded and fitted in "
                     f"{time.perf_counter() - t:.0f} s")
        w = heads["production"]
        _atomic_savez(folder / "production_head.npz", weight=w.weight.detach().numpy(),
                      bias=w.bias.detach().numpy())
        manifest["production_head"] = "production_head.npz"
        ref_model: nn.Module = TransferClassifier(ref_net, heads["reference"]).eval()
        ref_card["embedding"] = "backbone.pool"
    else:
        ref_model = ref_net
    t = time.perf_counter()
    sha = export_program(ref_model, folder / "reference.pt2", ref_card["input_size"])
    progress(f"  reference exported to reference.pt2 in {time.perf_counter() - t:.0f} s")
    manifest["reference_card"] = {
        "model": recipe.name, "sha256": sha, "classes": list(src.classes),
        "device": "cpu", "batch_size": BATCH, "cpu_threads": 1, "thread_nice": 0, **ref_card}
    pool = src.pool
    data, offsets = _pack([src.images[i] for i in pool])
    _atomic_savez(folder / "pool.npz", data=data, offsets=offsets, labels=src.labels[pool],
                  groups=np.array([src.groups[i] for i in pool]))
    _write_manifest(folder, {**manifest, "complete": False})
    t = time.perf_counter()
    clean = Workload(folder).outputs()  # computed and cached as the variant `clean`
    prod_acc, ref_acc = clean.accuracy()
    agreement = float((clean.production_probs.argmax(1)
                       == clean.reference_probs.argmax(1)).mean())
    progress(f"  clean pool scored by both models in {time.perf_counter() - t:.0f} s: "
             f"production {prod_acc:.3f}, reference {ref_acc:.3f}, agreement {agreement:.3f}")
    manifest.update(production_accuracy=round(prod_acc, 4),
                    reference_accuracy=round(ref_acc, 4), agreement=round(agreement, 4),
                    pool_images=len(pool), train_images=len(src.train),
                    build_seconds=round(time.perf_counter() - t0, 1), complete=True)
    _write_manifest(folder, manifest)
    progress(f"{recipe.name}-{size}: built in {manifest['build_seconds']} s -> {folder}")


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(folder / "manifest.json")
