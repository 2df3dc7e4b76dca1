"""Reference-model throughput: decode only, inference only, end to end (images/s).

    python benchmarks/reference.py                      # CPU, quick sizes
    python benchmarks/reference.py --device cuda --images 4096 --workers 14

Models: a ResNet-50-sized network defined here (bottleneck blocks 3-4-6-3, 25.6 M
parameters, random weights; speed only) and the tiny digits CNN, both at 224 x 224,
saved as an artifact and loaded through `load_reference` like the daemon does.
Images: 224 x 224 JPEGs cut from scikit-learn's two sample photos (synthetic gradients
if scikit-learn is absent). Each cell is the median of `--repeats` runs.

* decode: `ImageIntake.decode` over the JPEGs in a pool of `--workers` threads, then in
  `--workers` worker processes (`ProcessDecoder`, chunks of `DECODE_CHUNK`).
* inference: `Scorer.score` on already-decoded uint8 batches (host -> device copy,
  normalisation and the forward pass included).
* end to end: `ShadowScorer.submit` of JPEG bytes until `on_scored` has seen them all
  (`--decode-mode`: auto decodes in processes on CUDA, in threads on the CPU).
* `--interference`: prediction-decoding throughput (the consumer loop's CPU work) alone
  and while the digits model is shadow-scoring images on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image
from torch import nn

from monitor.events import ImageEvent
from monitor.reference_config import ImagesConfig, ReferenceConfig
from reference_model.artifact import load_reference
from reference_model.decode_pool import DECODE_CHUNK, ProcessDecoder
from reference_model.digits import DigitsNet, save_export, save_torchscript
from reference_model.intake import ImageIntake
from reference_model.scorer import Scorer
from reference_model.shadow import ShadowScorer, decode_in_processes

SIZE = 224


# --------------------------------------------------------------------------- models


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride) -> 1x1 expand (x4), with a projection shortcut."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.short(x))


class ResNet50Sized(nn.Module):
    """ResNet-50 layout (3-4-6-3 bottlenecks, 2048-d pooled embedding, 1000 classes).
    forward(x) -> (logits, embedding)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for i, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
            for b in range(blocks):
                layers.append(Bottleneck(cin, width, 2 if b == 0 and i > 0 else 1))
                cin = width * 4
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(2048, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.features(x)
        return self.fc(emb), emb


def build_artifact(name: str, fmt: str, out: Path) -> tuple[Path, str, int]:
    torch.manual_seed(0)
    net: nn.Module = ResNet50Sized() if name == "resnet50" else DigitsNet()
    net.eval()
    if fmt == "pt2":
        path = out / f"{name}.pt2"
        sha = save_export(net, path, SIZE)
    else:
        path = out / f"{name}.ts"
        sha = save_torchscript(net, path)
    classes = 1000 if name == "resnet50" else 10
    return path, sha, classes


# --------------------------------------------------------------------------- images


def make_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """n distinct 224 x 224 JPEGs (quality 90) from random crops of two photos."""
    rng = np.random.default_rng(seed)
    try:
        from sklearn.datasets import load_sample_images

        photos = [Image.fromarray(a) for a in load_sample_images().images]
    except ImportError:
        yy, xx = np.mgrid[0:480, 0:640]
        photos = [Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1)
                                  .astype(np.uint8))]
    out = []
    for i in range(n):
        ph = photos[i % len(photos)]
        w, h = ph.size
        side = int(rng.integers(160, min(w, h)))
        x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        crop = ph.crop((x, y, x + side, y + side)).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


# --------------------------------------------------------------------------- timing


def median_rate(run: Callable[[], int], repeats: int) -> float:
    """Median images/s over `repeats` calls of run() (which returns images processed)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        n = run()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def bench_decode(jpegs: list[bytes], intake: ImageIntake, workers: int, repeats: int) -> float:
    with ThreadPoolExecutor(workers) as pool:
        def run() -> int:
            return sum(1 for _ in pool.map(intake.decode, jpegs, chunksize=16))

        run()  # warm the pool
        return median_rate(run, repeats)


def bench_decode_processes(jpegs: list[bytes], workers: int, repeats: int) -> float:
    """Decode in `workers` worker processes, in chunks as ShadowScorer hands them over."""
    decoder = ProcessDecoder(ImagesConfig(), SIZE, workers)
    chunks = [jpegs[i:i + DECODE_CHUNK] for i in range(0, len(jpegs), DECODE_CHUNK)]
    try:
        with ThreadPoolExecutor(workers) as pool:
            def run() -> int:
                return sum(len(r) for r in pool.map(decoder.decode, chunks))

            run()  # start the workers
            return median_rate(run, repeats)
    finally:
        decoder.close()


def print_decode_sweep(jpegs: list[bytes], workers: int, repeats: int) -> None:
    """Decode-only images/s for 1, 2, 4, ... up to `workers`, in threads and in processes."""
    intake = ImageIntake(ImagesConfig(), SIZE)
    counts = sorted({min(2 ** k, workers) for k in range(workers.bit_length() + 1)})
    print("| workers | threads | processes |")
    print("|---:|---:|---:|")
    for w in counts:
        threads = bench_decode(jpegs, intake, w, repeats)
        processes = bench_decode_processes(jpegs, w, repeats)
        print(f"| {w} | {threads:,.0f} | {processes:,.0f} |", flush=True)


def bench_inference(scorer: Scorer, pixels: list[np.ndarray], batch: int, n: int,
                    repeats: int) -> float:
    scorer.warm_up([batch])

    def run() -> int:
        done = 0
        while done < n:
            scorer.score(pixels[:batch])
            done += batch
        return done

    return median_rate(run, repeats)


class GpuUtilisation:
    """Mean GPU utilisation (%) sampled with nvidia-smi every 100 ms, when available."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuUtilisation:
        try:
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return self
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            with contextlib.suppress(ValueError):
                self.samples.append(float(line.strip()))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)

    @property
    def mean(self) -> float | None:
        busy = self.samples[2:] or self.samples  # skip the ramp-up samples
        return statistics.fmean(busy) if busy else None


def bench_end_to_end(card: ReferenceConfig, scorer: Scorer, jpegs: list[bytes], classes: int,
                     repeats: int) -> tuple[float, float | None]:
    seen = [0]
    cv = threading.Condition()

    def on_scored(batch: list) -> None:
        with cv:
            seen[0] += len(batch)
            cv.notify_all()

    shadow = ShadowScorer(card, ImagesConfig(), [f"c{i}" for i in range(classes)], on_scored,
                          scorer=scorer)
    events = [ImageEvent(f"r{i}", card.model, "v1", 0.0, "image/jpeg", data)
              for i, data in enumerate(jpegs)]

    def run() -> int:
        with cv:
            target = seen[0] + len(events)
        for i in range(0, len(events), 256):  # the consumer loop hands over poll batches
            shadow.submit(events[i:i + 256])
        with cv:
            if not cv.wait_for(lambda: seen[0] >= target, 600):
                raise RuntimeError("end-to-end run did not finish")
        return len(events)

    try:
        run()  # warm-up: thread start, first batches
        with GpuUtilisation() as util:
            rate = median_rate(run, repeats)
        dropped = shadow.counts()["dropped"]["queue_full"]
        if dropped:
            print(f"  note: {dropped} images dropped by the queue", file=sys.stderr)
    finally:
        shadow.close()
    return rate, util.mean


def bench_interference(jpegs: list[bytes], digits_card: ReferenceConfig, seconds: float,
                       rounds: int = 5) -> str:
    """Prediction-decoding throughput alone vs while images are shadow-scored by the card's
    model: `rounds` alternating pairs of `seconds` each (the scorer is fed only in the busy
    half), so slow drifts of a shared machine fall on both sides; medians and their ratio."""
    from monitor.events import DecodeLimits, ModelClassIndex, PredictionDecoder

    ref_classes = list(digits_card.classes or [f"c{i}" for i in range(10)])
    classes = [f"c{i}" for i in range(10)]
    decoder = PredictionDecoder({"digits": ModelClassIndex.of(classes)}, DecodeLimits())
    record = (b'{"request_id":"r1","model":"digits","version":"v1","ts":1700000000,'
              b'"pred":3,"probs":[0.05,0.05,0.05,0.55,0.05,0.05,0.05,0.05,0.05,0.05]}')

    def loop_rate() -> float:
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(200):
                decoder.decode(record, 1.8e9)
            n += 200
        return n / seconds

    scorer = Scorer(load_reference(digits_card), digits_card)
    shadow = ShadowScorer(digits_card, ImagesConfig(), ref_classes, lambda b: None,
                          scorer=scorer)
    model = digits_card.model
    busy_phase = threading.Event()
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            if not busy_phase.wait(0.05):
                continue
            shadow.submit([ImageEvent(f"r{i + k}", model, "v1", 0.0, None, jpegs[k])
                           for k in range(min(64, len(jpegs)))])
            i += 64
            time.sleep(0.05)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    alone: list[float] = []
    busy: list[float] = []
    scored_busy = 0
    for _ in range(rounds):
        time.sleep(0.5)  # let the queue drain: the alone half must be alone
        alone.append(loop_rate())
        before = shadow.counts()["scored"][""]
        busy_phase.set()
        time.sleep(0.5)  # scoring under way
        busy.append(loop_rate())
        busy_phase.clear()
        scored_busy += shadow.counts()["scored"][""] - before
    stop.set()
    feeder.join()
    shadow.close()
    a, b = statistics.median(alone), statistics.median(busy)
    return (f"consumer loop, median of {rounds} alternating {seconds:g} s rounds, "
            f"{model} scoring: {a:,.0f} "
            f"predictions/s alone, {b:,.0f} while scoring ({100 * (b / a - 1):+.1f} %; "
            f"{scored_busy / (rounds * (seconds + 0.5)):,.0f} images/s scored meanwhile); "
            f"per round alone {', '.join(f'{x:,.0f}' for x in alone)}; "
            f"busy {', '.join(f'{x:,.0f}' for x in busy)}")


# --------------------------------------------------------------------------- main


def progress(line: str) -> None:
    print(f"  .. {line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--models", default="resnet50,digits")
    p.add_argument("--batch-sizes", default="32,64,128,256")
    p.add_argument("--images", type=int, default=0,
                   help="images per measurement (default 4096 on cuda, 256 on cpu)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    p.add_argument("--format", default="pt2", choices=["pt2", "ts"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--cpu-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--e2e-batch", type=int, default=0,
                   help="batch size for the end-to-end rows (default: the largest)")
    p.add_argument("--decode-mode", default="auto", choices=["auto", "threads", "processes"],
                   help="reference.decode_mode for the end-to-end rows")
    p.add_argument("--cuda-graphs", default="on", choices=["on", "off"],
                   help="reference.cuda_graphs (ignored with --compile)")
    p.add_argument("--no-decode-rows", action="store_true",
                   help="skip the decode-only rows (inference and end to end only)")
    p.add_argument("--decode-sweep", action="store_true",
                   help="only decode: 1, 2, 4, ... --workers threads, then as many processes")
    p.add_argument("--interference", action="store_true")
    p.add_argument("--interference-model", default="digits",
                   choices=["digits", "efficientnet-lite0"],
                   help="the model shadow-scoring during --interference: the tiny digits CNN, "
                        "or EfficientNet-Lite0 with its ImageNet weights and 1,000 classes "
                        "(the imagenet workload's reference card, built on first use)")
    args = p.parse_args(argv)

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    n_images = args.images or (4096 if device == "cuda" else 256)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    e2e_batch = args.e2e_batch or max(batches)
    torch.set_num_threads(args.cpu_threads)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "-"
    graphs = device == "cuda" and args.cuda_graphs == "on" and not args.compile
    print(f"torch {torch.__version__}, device {device} ({gpu}), {os.cpu_count()} CPUs, "
          f"{args.workers} decode workers ({args.decode_mode}), {args.cpu_threads} torch CPU "
          f"threads, "
          f"{n_images} images per run, median of {args.repeats}, format {args.format}"
          f"{', compiled' if args.compile else ''}"
          f"{', CUDA graphs' if graphs else ''}")

    jpegs = make_jpegs(n_images)
    print(f"JPEG {SIZE}x{SIZE}: mean {statistics.fmean(len(j) for j in jpegs) / 1024:.1f} KiB")
    if args.decode_sweep:
        print_decode_sweep(jpegs, args.workers, args.repeats)
        return 0
    rows: list[tuple[str, str, str, float, str]] = []
    intake = ImageIntake(ImagesConfig(), SIZE)
    if not args.no_decode_rows:
        rate = bench_decode(jpegs, intake, args.workers, args.repeats)
        progress(f"decode in threads: {rate:,.0f} images/s")
        rows.append(("-", "decode", "-", rate, f"{args.workers} threads"))
        rate = bench_decode_processes(jpegs, args.workers, args.repeats)
        progress(f"decode in processes: {rate:,.0f} images/s")
        rows.append(("-", "decode", "-", rate, f"{args.workers} processes"))
    pixels = [d.pixels for d in map(intake.decode, jpegs[:max(batches)])]  # type: ignore[union-attr]

    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            path, sha, classes = build_artifact(name, args.format, Path(tmp))
            card = ReferenceConfig(
                model=name, path=str(path), sha256=sha, input_size=SIZE, device=device,
                batch_size=max(batches), queue_size=n_images + 1024,
                queue_max_bytes=1 << 31, decode_workers=args.workers, linger_ms=2.0,
                compile=args.compile, cpu_threads=args.cpu_threads,
                decode_mode=args.decode_mode, cuda_graphs=args.cuda_graphs == "on",
                cpu_bf16=False)  # the CPU rows of docs/reference-model.md are float32
            loaded = load_reference(card)
            for batch in batches:
                bcard = card.model_copy(update={"batch_size": batch})
                scorer = Scorer(loaded, bcard)
                n = max(batch, n_images if device == "cuda" else min(n_images, 2 * batch))
                rate = bench_inference(scorer, pixels, batch, n, args.repeats)
                progress(f"{name} inference batch {batch}: {rate:,.0f} images/s")
                rows.append((name, "inference", str(batch), rate,
                             f"{1000 * batch / rate:.1f} ms/batch"
                             + (f", {scorer.graphs} CUDA graphs" if scorer.graphs else "")))
            ecard = card.model_copy(update={"batch_size": e2e_batch})
            escorer = Scorer(loaded, ecard)
            escorer.warm_up()  # every padded size: graph capture / compilation up front
            e2e_jpegs = jpegs if device == "cuda" or name == "digits" else jpegs[:e2e_batch]
            rate, util = bench_end_to_end(ecard, escorer, e2e_jpegs, classes, args.repeats)
            mode = "processes" if decode_in_processes(ecard, device) else "threads"
            note = f"decode in {mode}" + (f", GPU busy {util:.0f} %" if util is not None else "") \
                + (f", {escorer.graphs} CUDA graphs" if escorer.graphs else "")
            rows.append((name, "end to end", str(e2e_batch), rate, note))
            progress(f"{name} end to end: {rate:,.0f} images/s")
            del loaded, scorer, escorer
            if device == "cuda":
                torch.cuda.empty_cache()
        if args.interference:
            if args.interference_model == "digits":
                dpath, dsha, _ = build_artifact("digits", "ts", Path(tmp))
                dcard = ReferenceConfig(model="digits", path=str(dpath), sha256=dsha,
                                        input_size=SIZE, device="cpu", batch_size=64,
                                        decode_workers=1, cpu_threads=1, cpu_bf16=False)
            else:
                from benchmarks.workloads.workload import load_workload

                dcard = load_workload("imagenet", "full").reference.model_copy(update={
                    "device": "cpu", "batch_size": 32, "decode_workers": 1,
                    "cpu_threads": 1, "cpu_bf16": False})
            interference = bench_interference(jpegs, dcard, 3.0)

    print()
    print(f"| {'model':<9} | {'mode':<10} | {'batch':>5} | {'images/s':>9} | notes")
    print(f"|{'-' * 11}|{'-' * 12}|{'-' * 7}|{'-' * 11}|{'-' * 24}")
    for model, mode, batch, rate, note in rows:
        print(f"| {model:<9} | {mode:<10} | {batch:>5} | {rate:>9,.0f} | {note}")
    if args.interference:
        print()
        print(interference)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
