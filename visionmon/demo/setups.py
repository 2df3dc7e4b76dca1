"""What the demo serves and watches: the digits models trained at start-up (the default), or
ImageNet networks as they ship on real photos (`--workload real`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from collectors.kafka.client import Producer
from visionmon.demo.serving import PoolServing, Serving, ServingTopics, SimulatedServing

WORKLOADS = ("digits", "real")
#: the real workload's colour incident: every image written as BGR by a new camera pipeline
REAL_COLOUR_SHIFT = ("channel_swap", 5)
#: the class the real workload's bad canary collapses onto (also its high-risk class)
REAL_COLLAPSED_CLASS = "traffic light"


@dataclass(frozen=True, slots=True)
class DemoSetup:
    """One model under watch: its names, reference model card, baseline file, how traffic
    is served, and the floors the demo's signals read (ratios, 0-1)."""

    model: str
    classes: tuple[str, ...]
    high_risk: tuple[str, ...]
    reference: dict[str, Any]
    baseline: Path
    serving: Callable[[Producer, int, float], Serving]
    accuracy_floor: float
    agreement_floor: float
    accuracy_target: float
    summary: str
    #: traffic defaults where the command line leaves them out: event seconds per wall
    #: second, and the share of requests whose image is sampled
    speed: float = 10.0
    image_fraction: float = 0.1


# --- digits ------------------------------------------------------------------------------


def digits_setup(out: Path, seed: int) -> DemoSetup:
    """Two small CNNs trained on scikit-learn's digits (about 20 s)."""
    import torch

    from reference_model.digits import (
        DIGIT_CLASSES,
        build_digits_reference,
        model_inputs,
        render_digit,
        train_digits_model,
    )

    torch.set_num_threads(1)
    ref = build_digits_reference(out, seed=0, epochs=16)
    prod = train_digits_model(ref.data, seed=seed, epochs=10)
    data = ref.data
    idx = data.test
    with torch.inference_mode():
        probs = torch.softmax(prod(model_inputs(data.images[idx]))[0], 1).numpy()
    items = [(f"baseline-{i}", "v1", time.time(), render_digit(data.images[i]))
             for i in idx[:400]]
    baseline = _baseline(out, "digits", DIGIT_CLASSES, ref.config, probs,
                         [int(data.labels[i]) for i in idx], [f"baseline-{i}" for i in idx],
                         items, "demo: held-out digits")
    return DemoSetup(
        "digits", DIGIT_CLASSES, ("seven",), ref.config.model_dump(mode="json"), baseline,
        lambda producer, s, fraction: SimulatedServing(
            data=ref.data, model=prod, producer=producer, topics=ServingTopics(), seed=s,
            image_fraction=fraction),
        accuracy_floor=0.85, agreement_floor=0.8, accuracy_target=0.9,
        summary=f"reference model: test accuracy {ref.test_accuracy:.3f}, sha256 "
                f"{ref.sha256[:12]}…")


# --- real photos, ImageNet networks --------------------------------------------------------


def _workloads() -> Any:
    """benchmarks.workloads.workload, from the source checkout this package runs from (the
    workloads are benchmark code, not installed with the package)."""
    try:
        from benchmarks.workloads import workload
    except ModuleNotFoundError as err:
        if err.name not in ("benchmarks", "benchmarks.workloads"):
            raise   # a missing dependency of the workloads, not a missing checkout
        root = Path(__file__).resolve().parents[2]
        if not (root / "benchmarks" / "workloads").is_dir():
            raise SystemExit("--workload real needs a source checkout of visionmon (it uses "
                             "benchmarks/workloads): git clone the repository and run "
                             "`make setup`, then `.venv/bin/visionmon demo --workload real`"
                             ) from None
        sys.path.insert(0, str(root))
        from benchmarks.workloads import workload
    return workload


def real_setup(out: Path, seed: int) -> DemoSetup:
    """MobileNetV2 serves, EfficientNet-Lite0 shadow-scores, both with their ImageNet weights
    and 1,000 classes, on crops of the labelled photos that ship in packages (built and
    cached by benchmarks/workloads: about 1.5 minutes the first time, then seconds)."""
    import torch

    torch.set_num_threads(1)
    wl = _workloads()
    work = wl.load_workload("imagenet", "full", progress=lambda m: None)
    clean = work.outputs()
    images = work.images(wl.CLEAN)
    shift, severity = REAL_COLOUR_SHIFT
    shifted = work.outputs(shift, severity)
    shifted_images = work.images(shift, severity)
    classes = work.classes
    model = work.reference.model
    n = len(images)
    now = time.time()
    # the card's defaults (batches of 4 on the CPU, bf16 where it has it), for the baseline's
    # image profile and the daemon alike: one precision on both sides
    reference = work.reference.model_copy(update={"batch_size": "auto", "cpu_bf16": "auto"})
    items = [(f"baseline-{i}", "v1", now, images[i]) for i in range(n)]
    baseline = _baseline(out, model, classes, reference, clean.production_probs,
                         clean.labels.tolist(), [f"baseline-{i}" for i in range(n)], items,
                         "demo: ImageNet photo crops")
    fmt = "image/jpeg" if work.source_format == "JPEG" else "image/png"
    pools = {"clean": (images, clean.production_probs),
             "colour_shift": (shifted_images, shifted.production_probs)}
    accuracy = float((clean.production_probs.argmax(1) == clean.labels).mean())
    agreement = float((clean.production_probs.argmax(1)
                       == clean.reference_probs.argmax(1)).mean())
    return DemoSetup(
        model, classes, (REAL_COLLAPSED_CLASS,), reference.model_dump(mode="json"),
        baseline,
        lambda producer, s, fraction: PoolServing(
            model=model, classes=classes, pools=pools, labels=clean.labels,
            collapsed_class=classes.index(REAL_COLLAPSED_CLASS), content_type=fmt,
            producer=producer, topics=ServingTopics(), seed=s, image_fraction=fraction),
        accuracy_floor=round(accuracy - 0.1, 2), agreement_floor=round(agreement - 0.15, 2),
        accuracy_target=round(accuracy - 0.05, 2),
        # EfficientNet-Lite0 scores about 10 images/s on one core beside the demo's broker,
        # serving stack and daemon: 6 images/s keeps its queue short, and at half the speed
        # a 1-minute window still holds about 70 of them
        speed=5.0, image_fraction=0.05,
        summary=f"production MobileNetV2 and reference EfficientNet-Lite0 (ImageNet weights, "
                f"{len(classes):,} classes) on {n} photo crops: production accuracy "
                f"{accuracy:.3f}, agreement {agreement:.3f}; the colour incident writes "
                f"every image as BGR")


# --- shared ------------------------------------------------------------------------------


def _baseline(out: Path, model: str, classes: Sequence[str], reference: Any,
              probs: np.ndarray, labels: Sequence[int], ids: Sequence[str],
              items: Sequence[tuple[str, str, float, bytes]], source: str) -> Path:
    """Last week's known-good traffic, profiled: the production model's predictions on the
    held-out images the demo traffic is drawn from, with their labels (for calibration), and
    reference-scored images. Not the training images: on those both models are more
    confident, and agree more, than they ever are in production."""
    from monitor import baseline as baseline_mod
    from monitor.events import DecodeLimits, ModelClassIndex, PredictionDecoder
    from monitor.reference_config import ImagesConfig
    from reference_model.profile import score_images

    dec = PredictionDecoder({model: ModelClassIndex.of(classes)}, DecodeLimits())
    now = time.time()
    events, by_id = [], {}
    for rid, p_row, label in zip(ids, probs, labels, strict=True):
        p = p_row.astype(float).round(6)
        p[int(p.argmax())] += 1.0 - p.sum()
        events += dec.decode(orjson.dumps({"request_id": rid, "ts": now, "model": model,
                                           "version": "v1", "probs": p.tolist()}), now).events
        by_id[rid] = int(label)
    scored = score_images(reference, ImagesConfig(), classes, items)
    b = baseline_mod.build_baseline(model, classes, events, by_id, images=scored,
                                    created_at=now, source=source)
    return baseline_mod.save(b, out / f"{model}.baseline.json")


SETUPS: dict[str, Callable[[Path, int], DemoSetup]] = {"digits": digits_setup,
                                                       "real": real_setup}
