"""Detection-quality benchmark: visionmon's signals and the peers on the same streams.

    .venv/bin/python benchmarks/detection/run.py --short     # under 10 minutes on 2 cores
    .venv/bin/python benchmarks/detection/run.py --full      # 15-17 minutes on 2 cores
    .venv/bin/python benchmarks/detection/run.py --render out/detection/results-full.json
    .venv/bin/python benchmarks/detection/run.py --dataset fashion --full
    .venv/bin/python benchmarks/detection/run.py --dataset clipart --short
    options: --dataset digits|fashion|clipart (default digits; fashion needs the Debian
             package dataset-fashion-mnist; clipart is the real-image workload of
             benchmarks/workloads, ImageNet networks on Debian's clip art, built on first
             use), --out DIR (default out/detection, out/detection-fashion or
             out/detection-real), --docs FILE (default docs/detection.md,
             docs/detection-fashion.md or docs/detection-real.md),
             --peers-python PATH (default .bench-venv-detection/bin/python; built by
             `bash benchmarks/peers_detection_env.sh`), --no-peers

Steps: train the production and reference models and build the image pools (cached in
OUT/workload), build the baseline file, start the peers in their own virtualenv (a second
process, on the second core), run every stream through visionmon's engine, wait for the
peers, then print the tables and write docs/detection.md with a delay-vs-severity plot
(docs/detection-delay.png). Raw results go to OUT/results-<mode>.json.

Modes:
  short  one seed per scenario, severities 1-5, 2,000 clean requests then 3,000 changed;
         no-drift run of 300,000 requests read as 1,000 windows of 100, 300 of 1,000 and
         30 of 10,000 (Alibi: 300, 300 and none of 10,000: one test on 2,000 images costs
         ~5 s); latency streams with 6 h of clean history and 2 h after the onset
  full   three seeds per scenario (median delay), no-drift run of 3,000,000 requests read
         as 3,000 / 3,000 / 300 windows (Alibi: 1,000 / 1,000 / 50)
The baseline every run uses is built from 50,000 clean requests (~10,000 sampled images; 5x
the largest window). Both modes also redraw the baseline with 8 seeds, at 10,000 requests
(as many as the largest window) and at 50,000, and measure, for each, the false-alarm rate
of the embedding-PC signal on windows of 2,000 clean images (300 windows per baseline in
short mode, 2,000 in full): how much a monitor's own rate depends on its baseline sample.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")   # two processes share two cores

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.detection import tables, visionmon_run  # noqa: E402
from benchmarks.detection.scenarios import (  # noqa: E402
    LABEL_FRACTION,
    NO_DRIFT,
    REQUEST_RATE,
    Families,
    all_scenarios,
    make_plan,
)
from benchmarks.detection.workload import (  # noqa: E402
    DATASETS,
    build_workload,
    real_families,
)
from monitor.config import LoadedConfig  # noqa: E402
from visionmon.app import build_statistics  # noqa: E402

CHUNK = 50                       # requests between checkpoints
ONSET = 2_000
AFTER = 3_000
LATENCY_HISTORY = round(6 * 3600 * REQUEST_RATE)   # fills the 6 h page window
LATENCY_AFTER = round(2 * 3600 * REQUEST_RATE)
MODES = {
    "short": {"seeds": [1], "fa_requests": 300_000,
              "fa_windows": {"10s": 1_000, "100s": 300, "1000s": 30},
              "alibi_windows": {"10s": 300, "100s": 300, "1000s": 0},
              "sensitivity_windows": 300},
    "full": {"seeds": [1, 2, 3], "fa_requests": 3_000_000,
             "fa_windows": {"10s": 3_000, "100s": 3_000, "1000s": 300},
             "alibi_windows": {"10s": 1_000, "100s": 1_000, "1000s": 50},
             "sensitivity_windows": 2_000},
}
FA_SEED = 7
SENSITIVITY_SEEDS = tuple(range(1_000, 1_008))   # 1,000 is the benchmark's baseline
#: baseline sizes (requests) of the sensitivity experiment: as large as the largest window,
#: and the size the benchmark uses
SENSITIVITY_SIZES = (10_000, visionmon_run.BASELINE_REQUESTS)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def daemon_settings(loaded: LoadedConfig) -> dict[str, object]:
    """The defaults the benchmark's daemon config resolved to, which the report describes."""
    from alerts.spec import build_spec

    stats = build_statistics(loaded)
    cfg = loaded.config
    model = cfg.models[0].name
    drop = build_spec(loaded).thresholds["shadow_agreement_drop"]
    return {"drift_alpha": cfg.drift.alpha, "drift_correction": cfg.drift.correction,
            "drift_feature_alpha": stats.drift.feature_alpha(model),
            "drift_features": len(stats.drift.baselines[model].features),
            "min_shadow_images": cfg.quality.min_shadow_images,
            "min_accuracy": cfg.quality.min_accuracy,
            "min_shadow_agreement": cfg.quality.min_shadow_agreement,
            "shadow_agreement_alpha": drop.bound if drop.enabled else None,
            "mmd": cfg.drift.mmd.model_dump()}


def stream_specs(seeds: list[int], covariate: Families | None = None
                 ) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for seed in seeds:
        for sc in all_scenarios(covariate=covariate):
            if sc.kind == "latency":
                out.append({"scenario": sc.name, "seed": seed, "onset": LATENCY_HISTORY,
                            "n": LATENCY_HISTORY + LATENCY_AFTER, "image_sampling": 0.0,
                            "label_fraction": 0.0, "latency": True})
            else:
                out.append({"scenario": sc.name, "seed": seed, "onset": ONSET,
                            "n": ONSET + AFTER, "image_sampling": None,
                            "label_fraction": None, "latency": False})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--short", action="store_true", help="the default")
    mode.add_argument("--full", action="store_true")
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--docs", type=Path, default=None)
    ap.add_argument("--peers-python", type=Path,
                    default=ROOT / ".bench-venv-detection" / "bin" / "python")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--reuse-peers", action="store_true",
                    help="take the peers' results from the previous run of this mode when "
                         "its plan (streams, seeds, baseline) is the same: the peers read "
                         "the same bytes and are seeded, so only their timings would differ")
    ap.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                    help="only rewrite the docs from a saved OUT/results-<mode>.json")
    args = ap.parse_args()
    suffix = {"digits": "", "clipart": "-real"}.get(args.dataset, f"-{args.dataset}")
    args.out = args.out or ROOT / "out" / f"detection{suffix}"
    args.docs = args.docs or ROOT / "docs" / f"detection{suffix}.md"
    if args.render is not None:
        print(tables.write_docs(json.loads(args.render.read_text()), args.docs))
        return 0
    name = "full" if args.full else "short"
    cfg = MODES[name]
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(1)
    dataset = DATASETS[args.dataset]
    work = build_workload(args.out / "workload", log, dataset)
    dataset = work.dataset   # a real workload's classes are known once it is loaded
    model, classes = dataset.name, dataset.classes
    baseline_path, base_plan = visionmon_run.build_bench_baseline(
        work.pools, args.out, model, classes, source=f"clean {dataset.name} pool")
    loaded = visionmon_run.bench_config(
        baseline_path, work.reference, classes, min_accuracy=dataset.min_accuracy,
        min_shadow_agreement=dataset.min_shadow_agreement)
    families = real_families(dataset.real) if dataset.real is not None else None
    streams = stream_specs(cfg["seeds"], families)
    plan = {
        "workload": str(work.folder), "chunk": CHUNK, "dataset": dataset.name, "model": model,
        "baseline": {"path": str(baseline_path), "seed": visionmon_run.BASELINE_SEED,
                     "n": visionmon_run.BASELINE_REQUESTS,
                     "label_fraction": visionmon_run.BASELINE_LABEL_FRACTION,
                     "images": int(base_plan.sampled.sum()),
                     "labelled": int(base_plan.labelled.sum())},
        "streams": streams,
        **({} if families is None else {"covariate": families}),
        "false_alarms": {"seed": FA_SEED, "n": cfg["fa_requests"],
                         "sizes": visionmon_run.WINDOWS, "max_windows": cfg["fa_windows"],
                         "alibi_max_windows": cfg["alibi_windows"]},
    }
    plan_path = args.out / f"plan-{name}.json"
    peers_out = args.out / f"peers-{name}.json"
    previous_plan = json.loads(plan_path.read_text()) if plan_path.exists() else None
    reused = None
    if args.reuse_peers:
        if previous_plan != json.loads(json.dumps(plan)) or not peers_out.exists():
            log(f"--reuse-peers: {plan_path} differs from this run's plan, or {peers_out} is "
                "missing; run without --reuse-peers")
            return 2
        reused = json.loads(peers_out.read_text())
        log(f"peers: reusing {peers_out} (same plan)")
    plan_path.write_text(json.dumps(plan, indent=1))
    peers_proc = None
    peers_note = ""
    if reused is not None:
        peers_note = ""   # the peers' results of the same plan are already in hand
    elif args.no_peers:
        peers_note = "peers not run (--no-peers)"
    elif not args.peers_python.exists():
        peers_note = (f"peers not run: {args.peers_python} is missing; build it with "
                      "`bash benchmarks/peers_detection_env.sh`")
    else:
        peers_out.unlink(missing_ok=True)
        log("peers: started in their own virtualenv")
        peers_log = open(args.out / f"peers-{name}.log", "w")  # noqa: SIM115
        peers_proc = subprocess.Popen(
            [str(args.peers_python), "-m", "benchmarks.detection.peers", str(plan_path),
             str(peers_out)], cwd=ROOT, stdout=peers_log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})

    scenarios = {sc.name: sc for sc in all_scenarios(covariate=families)}
    delay_runs = []
    t = time.perf_counter()
    for k, st in enumerate(streams):
        kw = {}
        if st["image_sampling"] is not None:
            kw = {"image_sampling": st["image_sampling"], "label_fraction": st["label_fraction"]}
        p = make_plan(work.pools, scenarios[str(st["scenario"])], int(st["seed"]),
                      int(st["onset"]), int(st["n"]), model=model, **kw)
        run = visionmon_run.run_delay(loaded, work.pools, p, CHUNK, latency=bool(st["latency"]))
        delay_runs.append(dataclasses.asdict(run))
        if k % 10 == 9:
            log(f"visionmon: {k + 1}/{len(streams)} streams ({time.perf_counter() - t:.0f} s)")
    log(f"visionmon: {len(streams)} streams in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    fa_plan = make_plan(work.pools, NO_DRIFT, FA_SEED, cfg["fa_requests"], cfg["fa_requests"],
                        label_fraction=LABEL_FRACTION, model=model)
    fa = visionmon_run.run_false_alarms(loaded, work.pools, fa_plan, cfg["fa_windows"])
    log(f"visionmon: no-drift run of {fa.requests:,} requests in "
        f"{time.perf_counter() - t:.0f} s")
    costs = visionmon_run.embedding_signal_costs(baseline_path, work.pools["clean"])
    t = time.perf_counter()
    sensitivity = [visionmon_run.baseline_sensitivity(
        work.pools, args.out / "baselines", model, classes, SENSITIVITY_SEEDS,
        cfg["sensitivity_windows"], requests=size) for size in SENSITIVITY_SIZES]
    log(f"visionmon: baseline sensitivity in {time.perf_counter() - t:.0f} s")

    peers = reused
    if peers_proc is not None:
        t = time.perf_counter()
        rc = peers_proc.wait()
        log(f"peers: exit {rc}, waited {time.perf_counter() - t:.0f} s")
        if rc == 0 and peers_out.exists():
            peers = json.loads(peers_out.read_text())
        else:
            peers_note = (f"peers failed (exit {rc}); see "
                          f"{(args.out / f'peers-{name}.log').relative_to(ROOT)}")
    results = {
        "mode": name, "plan": plan, "workload": work.info, "delays": delay_runs,
        "false_alarms": dataclasses.asdict(fa), "embedding_costs": costs,
        "baseline_sensitivity": sensitivity, "peers": peers,
        "daemon": daemon_settings(loaded),
        "peers_note": peers_note,
        "peers_reused": reused is not None,
        "wall_seconds": time.perf_counter() - t_start,
    }
    (args.out / f"results-{name}.json").write_text(json.dumps(results))
    markdown = tables.write_docs(results, args.docs)
    print(markdown)
    log(f"done in {time.perf_counter() - t_start:.0f} s; wrote {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
