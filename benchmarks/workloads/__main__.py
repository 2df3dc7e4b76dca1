"""Build (or load) the real-image workloads and print what they hold.

  .venv/bin/python -m benchmarks.workloads [--size full|small] [clipart] [imagenet]

The first run builds into the cache (`workload.cache_root()`); later runs read it.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.workloads.workload import SIZES, WORKLOADS, load_workload


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workloads", nargs="*", help=f"some of {sorted(WORKLOADS)} (default: all)")
    ap.add_argument("--size", default="full", choices=SIZES)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)
    if unknown := sorted(set(args.workloads) - set(WORKLOADS)):
        ap.error(f"unknown workloads {unknown}; known: {sorted(WORKLOADS)}")
    torch.set_num_threads(args.threads)
    for name in args.workloads or sorted(WORKLOADS):
        t0 = time.perf_counter()
        wl = load_workload(name, args.size, progress=lambda s: print(s, flush=True))
        m = wl.manifest
        print(f"{name}-{args.size}: {len(wl.classes)} classes, {m['train_images']} train and "
              f"{m['pool_images']} pool images; production {m['production_network']} "
              f"{m['production_accuracy']:.3f}, reference {m['reference_network']} "
              f"{m['reference_accuracy']:.3f}, agreement {m['agreement']:.3f}; built in "
              f"{m['build_seconds']} s, ready in {time.perf_counter() - t0:.1f} s "
              f"({wl.folder})", flush=True)


if __name__ == "__main__":
    main()
