"""Real ImageNet networks on one CPU core: visionmon's torch path against onnxruntime.

For EfficientNet-Lite0 and MobileNetV2 (ImageNet weights from the `workloads` extra,
224 px), images/s of the forward pass on one thread, on the same float32 batches, side by
side in one run:
  torch eager          float32, NCHW: what `Scorer` runs on the CPU today
  torch channels_last  the same with the model and batch in channels_last
  torch bf16           channels_last under CPU bf16 autocast (only where the CPU has
                       avx512_bf16 or AMX; the logits are compared with float32's)
  torch compile        `torch.compile` (inductor, C++ on the CPU), float32 channels_last;
                       its compile time is printed apart
  onnxruntime          the same network exported by `torch.onnx.export`, CPUExecutionProvider,
                       one intra-op and one inter-op thread, all graph optimisations
Then visionmon's own `Scorer` (the daemon's CPU path) with the imagenet workload's
reference card, on its 400 real photo crops, with and without `cpu_bf16`, at batch sizes
32 and 4: images/s and the share of photos whose top-1 stays the float32 top-1.
Every mode gets `--repeats` timed runs of `--images` images, interleaved (mode A, B, ...,
then again) so that a noisy neighbour falls on all of them; medians are printed, with the
ratio to onnxruntime and the top-1 agreement of each mode with torch eager.

onnx and onnxruntime are peers, not dependencies: they live in .bench-venv-onnx, which
layers over .venv's packages (`bash benchmarks/onnx_env.sh`).

    bash benchmarks/onnx_env.sh
    .bench-venv-onnx/bin/python benchmarks/cpu_networks.py [--batches 1,16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.workloads.networks import NETWORKS

Run = Callable[[np.ndarray], np.ndarray]   # float32 NCHW batch -> logits


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


class Logits(torch.nn.Module):
    """The network's logits alone (the loaders' modules may return (logits, embedding))."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, tuple) else out


def torch_modes(net: torch.nn.Module, batch: int, bf16: bool
                ) -> tuple[dict[str, Run], float]:
    """mode -> run, and torch.compile's compile seconds."""
    eager = Logits(net).eval()
    cl = Logits(net).eval().to(memory_format=torch.channels_last)

    def run_eager(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return eager(torch.from_numpy(x)).numpy()

    def run_cl(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return cl(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).numpy()

    def run_bf16(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return cl(t).float().numpy()

    compiled = torch.compile(cl, dynamic=False)

    def run_compiled(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return compiled(t).numpy()

    t0 = time.perf_counter()
    run_compiled(np.zeros((batch, 3, 224, 224), np.float32))
    compile_s = time.perf_counter() - t0
    modes: dict[str, Run] = {"torch eager": run_eager, "torch channels_last": run_cl}
    if bf16:
        modes["torch bf16"] = run_bf16
    modes["torch compile"] = run_compiled
    return modes, compile_s


def onnx_mode(net: torch.nn.Module, folder: Path) -> Run:
    import onnxruntime as ort

    path = folder / "net.onnx"
    buf = io.BytesIO()
    torch.onnx.export(Logits(net).eval(), (torch.zeros(1, 3, 224, 224),), buf, dynamo=False,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    path.write_bytes(buf.getvalue())
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(["logits"], {"x": x})[0]
    return run


def measure(modes: dict[str, Run], batch: int, images: int, repeats: int, seed: int = 0
            ) -> dict[str, tuple[float, float]]:
    """mode -> (median images/s, top-1 agreement with the first mode on `images` inputs)."""
    rng = np.random.default_rng(seed)
    batches = [rng.normal(size=(batch, 3, 224, 224)).astype(np.float32)
               for _ in range(max(1, images // batch))]
    rates: dict[str, list[float]] = {m: [] for m in modes}
    top1: dict[str, np.ndarray] = {}
    for m, run in modes.items():   # warm-up, and the top-1 of each mode
        run(batches[0])
        top1[m] = np.concatenate([run(b).argmax(axis=1) for b in batches[:4]])
    for _ in range(repeats):
        for m, run in modes.items():
            t0 = time.perf_counter()
            for b in batches:
                run(b)
            rates[m].append(len(batches) * batch / (time.perf_counter() - t0))
    first = next(iter(modes))
    return {m: (statistics.median(r), float((top1[m] == top1[first]).mean()))
            for m, r in rates.items()}


def scorer_rows(batches: list[int], repeats: int) -> list[str]:
    """visionmon's own `Scorer` with the imagenet workload's reference card (EfficientNet-Lite0,
    1,000 classes) on its 400 real photo crops, decoded once by the card's intake: images/s
    with and without `cpu_bf16` at each batch size, and the share of photos whose top-1 is
    the float32 top-1 (exact pipeline, batch 32)."""
    from benchmarks.workloads.workload import decode, load_workload
    from monitor.reference_config import ImagesConfig
    from reference_model.intake import ImageIntake
    from reference_model.scorer import Scorer

    work = load_workload("imagenet", "full")
    intake = ImageIntake.for_reference(ImagesConfig(), work.reference)
    pixels = [d.pixels for d in decode(intake, work.images("clean"))]
    rows, want = [], None
    for bf16 in (False, True):
        for batch in batches:
            card = work.reference.model_copy(update={"device": "cpu", "cpu_threads": 1,
                                                     "batch_size": batch, "cpu_bf16": bf16})
            scorer = Scorer.from_config(card)
            rates, top1 = [], None
            for _ in range(repeats):
                t0 = time.perf_counter()
                preds = [scorer.score(pixels[i:i + batch]).probs.argmax(axis=1)
                         for i in range(0, len(pixels), batch)]
                rates.append(len(pixels) / (time.perf_counter() - t0))
                top1 = np.concatenate(preds)
            assert top1 is not None
            if want is None:
                want = top1
            same = float((top1 == want).mean())
            rows.append(f"| Lite0 `Scorer` | {batch} | {'bf16' if bf16 else 'float32'} | "
                        f"{statistics.median(rates):,.1f} | {100 * same:.1f} % of "
                        f"{len(pixels)} photos |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--networks", default="efficientnet-lite0,mobilenet-v2")
    p.add_argument("--batches", default="1,16")
    p.add_argument("--images", type=int, default=64, help="images per timed run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--scorer-batches", default="32,4",
                   help="batch sizes of visionmon's Scorer table (the first is the float32 "
                        "reference for top-1); empty: skip that table")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    bf16 = cpu_has_bf16()
    why = "measured (the CPU has avx512_bf16 or AMX)" if bf16 else "left out (no bf16 here)"
    print(f"torch {torch.__version__}, one thread; bf16 autocast {why}")
    try:
        import onnxruntime
        print(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        print("onnxruntime is missing: run `bash benchmarks/onnx_env.sh` and use "
              ".bench-venv-onnx/bin/python")
        return 2
    print()
    print("| network | batch | mode | images/s (median) | × onnxruntime | top-1 = eager |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks.split(","):
            net = NETWORKS[name].load().eval()
            ort_run = onnx_mode(net, Path(tmp))
            for batch in (int(b) for b in args.batches.split(",")):
                modes, compile_s = torch_modes(net, batch, bf16)
                modes["onnxruntime"] = ort_run
                res = measure(modes, batch, max(args.images, batch), args.repeats)
                ort_rate = res["onnxruntime"][0]
                for m, (rate, agree) in res.items():
                    extra = f" (compiled in {compile_s:.0f} s)" if m == "torch compile" else ""
                    print(f"| {name} | {batch} | {m}{extra} | {rate:,.1f} | "
                          f"{rate / ort_rate:.2f} | {100 * agree:.0f} % |", flush=True)
    if args.scorer_batches:
        print()
        print("| model | batch | precision | images/s (median) | top-1 = float32 batch "
              f"{args.scorer_batches.split(',')[0]} |")
        print("|---|---|---|---|---|")
        for row in scorer_rows([int(b) for b in args.scorer_batches.split(",")],
                               max(1, args.repeats // 2)):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
