"""Does the CUDA path give the CPU path's answers, and how fast is MMD on the GPU?

    python benchmarks/cuda_parity.py                 # on a CUDA machine
    python benchmarks/cuda_parity.py --device cpu    # smoke run here (compares CPU to CPU)

1. Scorer parity: the digits model, trained here on CPU and saved as TorchScript and as a
   torch.export program, scores the held-out digits on the CPU (float32) and on the device
   (bf16 autocast, channels_last, pinned copies). Printed: top-1 agreement, accuracy of
   each, the largest and mean |p_device - p_cpu| and the worst embedding cosine.
2. The same through `ShadowScorer` (PNG bytes -> decode workers -> batches): the device's
   reference predictions against the CPU scorer's.
3. MMD: `reference_model.embeddings` on the device against the numpy reference
   (`tests.oracles.mmd.mmd2_rbf`), and the permutation test's time on the device and on
   the CPU (float64) for growing reservoirs (median of `--repeats`).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from monitor.events import ImageEvent
from monitor.reference_config import ImagesConfig
from monitor.stats.mmd import median_heuristic_bandwidth
from reference_model import embeddings
from reference_model.artifact import load_reference
from reference_model.digits import (
    digits_reference_config,
    load_digits_rgb,
    render_digit,
    save_export,
    save_torchscript,
    train_digits_model,
)
from reference_model.scorer import Scorer, ScoreResult
from reference_model.shadow import ShadowScorer
from tests.oracles.mmd import mmd2_rbf


def compare(name: str, cpu: ScoreResult, dev: ScoreResult, labels: np.ndarray) -> str:
    """One table row: how far the device's probabilities and embeddings are from the CPU's."""
    top_cpu, top_dev = cpu.probs.argmax(1), dev.probs.argmax(1)
    dp = np.abs(dev.probs - cpu.probs)
    num = (cpu.embeddings * dev.embeddings).sum(1)
    den = np.linalg.norm(cpu.embeddings, axis=1) * np.linalg.norm(dev.embeddings, axis=1)
    cosine = float((num / np.maximum(den, 1e-12)).min())
    return (f"| {name:<20} | {len(labels):>6} | {100 * (top_cpu == top_dev).mean():>8.2f} | "
            f"{100 * (top_cpu == labels).mean():>7.2f} | {100 * (top_dev == labels).mean():>7.2f} "
            f"| {dp.max():>9.2e} | {dp.mean():>9.2e} | {cosine:>10.6f} |")


def scorer_parity(device: str, tmp: Path) -> tuple[list[str], Scorer, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    data = load_digits_rgb()
    net = train_digits_model(data)
    images, labels = data.images[data.test], data.labels[data.test]
    rows = []
    cpu_ts: Scorer | None = None
    for fmt, save in (("TorchScript", save_torchscript), ("torch.export", save_export)):
        path = tmp / ("digits.ts" if fmt == "TorchScript" else "digits.pt2")
        sha = save(net, path)
        card = digits_reference_config(path, sha, batch_size=512)  # one batch: a CUDA graph
        cpu = Scorer(load_reference(card, "cpu"), card)
        dev = Scorer(load_reference(card, device), card.model_copy(update={"device": device}))
        dev_result = dev.score(images)
        rows.append(compare(f"{fmt} ({dev.graphs} graphs)", cpu.score(images), dev_result,
                            labels))
        if cpu_ts is None:
            cpu_ts = cpu
    assert cpu_ts is not None
    return rows, cpu_ts, images, labels


def shadow_parity(device: str, tmp: Path, cpu: Scorer, images: np.ndarray) -> str:
    """PNG bytes through ShadowScorer on the device vs the CPU scorer on the same pixels."""
    path = tmp / "digits.ts"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    card = digits_reference_config(path, sha, device=device, batch_size=64, decode_workers=4,
                                   decode_mode="processes")
    got: dict[str, int] = {}
    done = threading.Event()

    def on_scored(batch: list) -> None:
        for s in batch:
            got[s.request_id] = s.ref_pred
        if len(got) >= len(images):
            done.set()

    shadow = ShadowScorer(card, ImagesConfig(), [str(i) for i in range(10)], on_scored)
    try:
        shadow.submit([ImageEvent(f"r{i}", "digits", "v1", 0.0, "image/png", render_digit(img))
                       for i, img in enumerate(images)])
        if not done.wait(120):
            return f"ShadowScorer on {device}: only {len(got)} of {len(images)} scored in 120 s"
    finally:
        shadow.close()
    want = cpu.score(images).probs.argmax(1)
    same = sum(got[f"r{i}"] == int(want[i]) for i in range(len(images)))
    return (f"ShadowScorer on {device} (PNG -> 4 decode processes -> batches of 64): "
            f"{same} of {len(images)} reference predictions equal the CPU scorer's")


def mmd_rows(device: str, repeats: int) -> list[str]:
    rng = np.random.default_rng(0)
    rows = []
    for n, dim, perms in ((500, 64, 500), (2000, 64, 500), (2000, 1280, 500), (5000, 64, 200)):
        x = rng.normal(size=(n, dim))
        y = rng.normal(0.02, 1.0, size=(n, dim))
        sigma = median_heuristic_bandwidth(x[:1000])
        ref = mmd2_rbf(x[:2000], y[:2000], sigma)
        got = embeddings.mmd2_rbf(x[:2000], y[:2000], sigma, device=device)
        times = {}
        pvals = {}
        for where in (device, "cpu"):
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                _, pvals[where] = embeddings.mmd2_permutation_test(x, y, sigma, perms, 0, where)
                if where == "cuda":
                    torch.cuda.synchronize()
                runs.append(time.perf_counter() - start)
            times[where] = statistics.median(runs)
        err = abs(got - ref) / abs(ref)
        rows.append(f"| {n:>5} + {n:<5} | {dim:>5} | {perms:>5} | {err:>9.1e} "
                    f"| {1000 * times[device]:>9.1f} | {1000 * times['cpu']:>9.1f} "
                    f"| {times['cpu'] / times[device]:>6.1f} | {pvals[device]:.4f} / "
                    f"{pvals['cpu']:.4f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cpu-threads", type=int, default=0, help="torch CPU threads (0: all)")
    p.add_argument("--skip-mmd", action="store_true", help="scorer parity only")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available; run with --device cpu for a smoke run", file=sys.stderr)
        return 2
    if args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {args.device} ({name}), "
          f"{torch.get_num_threads()} torch CPU threads")
    with tempfile.TemporaryDirectory() as tmp:
        rows, cpu, images, _ = scorer_parity(args.device, Path(tmp))
        print()
        print("Scorer: CPU float32 against the device (bf16 autocast on CUDA), held-out digits")
        print("| artifact             | images | top-1 same % | acc CPU % | acc dev % "
              "| max abs dp | mean abs dp | min emb cos |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(rows))
        print()
        print(shadow_parity(args.device, Path(tmp), cpu, images))
    if args.skip_mmd:
        return 0
    print()
    print(f"MMD²: device float32 against numpy float64 (relative error, 2000 + 2000 rows); "
          f"permutation test time, median of {args.repeats}")
    print("| rows (x + y) | dim | perms | rel. err | device ms | CPU ms | CPU/dev | p dev / CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(mmd_rows(args.device, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
