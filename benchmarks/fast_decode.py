"""Fast decode against the exact pipeline, on real photos, with real ImageNet networks.

For each network of `benchmarks.workloads.networks`, the real photos that packages ship
(`benchmarks.workloads.photos`: 41 photos, 20 of them labelled) and random crops, flips
and rescales of each, re-encoded as JPEG (`--variants` at a shorter side of 500-1,000 px,
`--large-variants` upscaled to 1,500-3,000 px, where JPEG draft decoding applies), go
through the reference model's intake twice, with the network's card as it is
(`fast_decode: false`) and with `fast_decode: true`, and then through the network. Printed:
  - top-1 / top-5 accuracy on the 20 labelled ImageNet photos, exact pipeline and fast
  - per image set, the share of images whose top-1 is the same with and without fast
    decode, and the decode speed (images/s on one thread, median of --repeats alternating passes)

  .venv/bin/python benchmarks/fast_decode.py [--variants 8] [--networks mobilenet-v2 ...]

One torch thread; about 15 minutes on a quiet 2-core machine with the defaults.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.workloads.networks import NETWORKS
from benchmarks.workloads.photos import (
    UNLABELLED,
    packaged_photos,
    photo_variants,
)
from monitor.reference_config import ImagesConfig
from reference_model.intake import DecodedImage, ImageIntake, normalise

SEED = 0


def decode_all(intake: ImageIntake, images: list[bytes]) -> np.ndarray:
    out = [intake.decode(b) for b in images]
    bad = [i for i, d in enumerate(out) if not isinstance(d, DecodedImage)]
    if bad:
        raise RuntimeError(f"the intake refused images {bad[:5]}: {out[bad[0]]}")
    return np.stack([d.pixels for d in out if isinstance(d, DecodedImage)])


def decode_rates(intakes: list[ImageIntake], images: list[bytes],
                 repeats: int) -> list[float]:
    """Images/s of each intake's ImageIntake.decode on this thread, median of `repeats`
    passes; the intakes take turns within each repeat, so a busy machine slows all alike."""
    seconds: list[list[float]] = [[] for _ in intakes]
    for _ in range(repeats):
        for k, intake in enumerate(intakes):
            t0 = time.perf_counter()
            for b in images:
                intake.decode(b)
            seconds[k].append(time.perf_counter() - t0)
    return [len(images) / statistics.median(s) for s in seconds]


def logits(net: torch.nn.Module, pixels: np.ndarray, card: dict[str, object],
           batch: int = 32) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for i in range(0, len(pixels), batch):
            x = torch.from_numpy(normalise(pixels[i:i + batch], card["mean"],  # type: ignore[arg-type]
                                           card["std"]))  # type: ignore[arg-type]
            out.append(net(x).numpy())
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", type=int, default=8,
                    help="variants per photo at a shorter side of 500-1,000 px")
    ap.add_argument("--large-variants", type=int, default=2,
                    help="variants per photo at a shorter side of 1,500-3,000 px (upscaled)")
    ap.add_argument("--networks", nargs="+", default=["mobilenet-v2", "efficientnet-lite0"],
                    choices=sorted(NETWORKS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(SEED)
    photos = packaged_photos()
    labels = np.array([p.label for p in photos])
    labelled = np.flatnonzero(labels != UNLABELLED)
    sets: dict[str, list[bytes]] = {"500-1,000 px": [], "1,500-3,000 px": []}
    for p in photos:
        sets["500-1,000 px"] += photo_variants(p, args.variants, rng)
        sets["1,500-3,000 px"] += photo_variants(p, args.large_variants, rng,
                                                 shorter=(1500, 3000))
    sets["500-1,000 px"] = [p.data for p in photos] + sets["500-1,000 px"]
    print(f"{len(photos)} photos ({labelled.size} labelled); {args.variants} + "
          f"{args.large_variants} JPEG variants of each (random crops, flips, rescales); "
          f"torch {torch.__version__}, {args.threads} thread(s)\n")
    rows = []
    print("| network | top-1 exact | top-5 exact | top-1 fast decode |")
    print("|---|---:|---:|---:|")
    for name in args.networks:
        nw = NETWORKS[name]
        net = nw.load()
        exact_in = ImageIntake(ImagesConfig(), nw.preprocess())
        fast_in = ImageIntake(ImagesConfig(), nw.preprocess(fast_decode=True))
        for set_name, images in sets.items():
            if not images:
                continue
            exact = logits(net, decode_all(exact_in, images), nw.card)
            fast = logits(net, decode_all(fast_in, images), nw.card)
            top_e, top_f = exact.argmax(1), fast.argmax(1)
            if set_name == "500-1,000 px":  # the photos as shipped come first
                y = labels[labelled]
                top5 = np.mean([y[k] in np.argsort(-exact[i])[:5]
                                for k, i in enumerate(labelled)])
                print(f"| {name} | {(top_e[labelled] == y).mean():.2f} | {top5:.2f} | "
                      f"{(top_f[labelled] == y).mean():.2f} |", flush=True)
            jpegs = images[len(photos):] if set_name == "500-1,000 px" else images
            jpegs = jpegs or images
            rate_e, rate_f = decode_rates([exact_in, fast_in], jpegs, args.repeats)
            same = int((top_e == top_f).sum())
            rows.append(f"| {name} | {set_name} | {100 * same / len(images):.1f} % ({same} of "
                        f"{len(images)}) | {rate_e:,.0f} | {rate_f:,.0f} | "
                        f"{rate_f / rate_e:.2f}x |")
    print("\n| network | JPEGs (shorter side) | identical top-1 | decode exact (img/s) | "
          "decode fast (img/s) | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size


if __name__ == "__main__":
    main()
