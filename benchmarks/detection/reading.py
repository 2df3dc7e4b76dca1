"""The numbers behind docs/detection-reading.md, as tables for the detection pages.

The sentences that explain the detection benchmark's results are written once, by hand, in
docs/detection-reading.md. A page that `run.py` generates carries only numbers: `reading_facts`
reads them off a run (plain values, no prose) and `reading_tables` / `sensitivity_tables`
format them as markdown tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import binom

from benchmarks.detection.scenarios import IMAGE_SAMPLING
from benchmarks.detection.visionmon_run import ALPHA, WINDOWS

STEP = 50                    # requests between readings (run.CHUNK)
#: visionmon signals whose no-drift rate is compared with the goal, and their titles
ALONE = {"vm_drift": "vm drift", "vm_mmd": "vm MMD", "vm_agree": "vm agreement",
         "vm_agree_test": "vm agreement test"}
UNION = ("vm_alerts", "vm alerts")
#: signals compared with Alibi's MMD, their titles, and whether only severity 5 counts
VS_ALIBI = (("vm_mmd", "vm MMD", False), ("vm_mmd_eq", "vm MMD at Alibi's rate", False),
            ("vm_drift", "vm drift", False), ("vm_embed", "vm embed PCs (severity 5)", True))


@dataclass(frozen=True, slots=True)
class OverGoal:
    """A visionmon signal that alarmed on more no-drift windows than the goal: `alarms` of
    `windows` windows of `requests` requests, its nominal `level` and the binomial chance of
    that many alarms or more at it."""

    signal: str
    requests: int
    alarms: int
    windows: int
    level: float
    chance: float


@dataclass(frozen=True, slots=True)
class VsAlibi:
    """A signal against Alibi's MMD on the shifts Alibi detected: how many, on how many the
    signal was no slower, and where it was later (name, its delay or None, Alibi's), in
    requests."""

    signal: str
    detected: int
    later: tuple[tuple[str, int | None, int], ...]


@dataclass(frozen=True, slots=True)
class EstimateMiss:
    """A covariate shift where a label-free estimate misses: the exported estimate's mean
    absolute error (points) and its direction (+1 too high, -1 too low, 0 within the goal),
    the rescaled agreement ratio's error (points), and vm drift's delay there."""

    shift: str
    estimate: float
    direction: int
    agreement: float | None
    drift: str


@dataclass(frozen=True, slots=True)
class BaselineSize:
    """The embedding-PC signal's no-drift rate (percent) over baselines of one size: its spread
    across baselines (`sd`), the spread the windows' binomial noise alone gives (`window_sd`)
    and their `ratio`."""

    requests: int
    role: str
    images: float
    lowest: float
    highest: float
    mean: float
    sd: float
    window_sd: float
    ratio: float


@dataclass(frozen=True, slots=True)
class Sensitivity:
    """*One baseline, one rate*: per baseline size, and the benchmark's own baseline against
    the false-alarm table (`observed` of `windows` windows, `expected` at its rate, `chance`
    of that few or fewer)."""

    seeds: int
    windows: int
    window_images: int
    sizes: tuple[BaselineSize, ...]
    used_seed: int
    used_requests: int
    used_rate: float | None = None
    used_rank: str = ""
    observed: int | None = None
    table_windows: int = 0
    expected: float = 0.0
    chance: float = 0.0


@dataclass(frozen=True, slots=True)
class Facts:
    """Every number docs/detection-reading.md refers to, for one run. Rates in percent where
    named `_pct`, errors in accuracy points, costs in ms."""

    drift_features: int
    varying_features: int
    feature_level: float
    mmd_level: float
    threshold_mismatches: int
    clean_agreement_pct: float
    min_agreement: float
    below_bound: tuple[tuple[int, str, float], ...]
    over_goal: tuple[OverGoal, ...]
    vs_alibi: tuple[VsAlibi, ...]
    alibi_rate: float | None
    mmd_rate: str
    matched_rate: float | None
    one_reading: int
    late_alibi: tuple[int, int]
    mmd_ms_per_image: float
    mmd_speedup: float
    psi_speedup: float
    no_drift_bias: tuple[float, float, float] | None
    agreement_noise: float | None
    agreement_mean: float | None
    agreement_over: tuple[int, int]
    misses: tuple[EstimateMiss, ...] = field(default=())


def pct(x: float) -> str:
    """A percentage with the precision its size deserves."""
    return "< 0.1 %" if x < 0.05 else f"{x:.1f} %" if x < 10 else f"{x:.0f} %"


def _per_k(v: tuple[int, int]) -> float:
    return 1000 * v[0] / v[1] if v[1] else 0.0


def _over_goal(fa: dict[str, dict[str, tuple[int, int]]], agree_alpha: float,
               mmd_alpha: float, goal: float) -> tuple[OverGoal, ...]:
    """visionmon's signals, and their union, above the goal on no-drift windows."""
    levels = {"vm_agree": ALPHA, "vm_drift": ALPHA - mmd_alpha, "vm_mmd": mmd_alpha,
              "vm_agree_test": agree_alpha, UNION[0]: ALPHA + agree_alpha}
    titles = {**ALONE, UNION[0]: UNION[1]}
    out = []
    for w in ("10s", "100s", "1000s"):
        for sig in (UNION[0], *ALONE):
            v = fa.get(w, {}).get(sig, (0, 0))
            if v[1] and _per_k(v) > goal:
                out.append(OverGoal(titles[sig], WINDOWS[w], v[0], v[1], levels[sig],
                                    float(binom.sf(v[0] - 1, v[1], levels[sig]))))
    return tuple(out)


def _vs_alibi(delays: dict[str, dict[str, Any]]) -> tuple[VsAlibi, ...]:
    """Each compared signal's delays against Alibi's on the shifts Alibi detected."""
    out = []
    for sig, title, strong_only in VS_ALIBI:
        if not any(sig in d for d in delays.values()):
            continue
        later, total = [], 0
        for name, d in delays.items():
            a = d.get("alibi_mmd")
            if a is None or (strong_only and not name.endswith("-s5")):
                continue
            total += 1
            v = d.get(sig)
            if v is None or v[0] > a[0]:
                later.append((name, None if v is None else int(v[0]), int(a[0])))
        out.append(VsAlibi(title, total, tuple(later)))
    return tuple(out)


def _misses(col: dict[str, Any], goal: float, noise: float) -> tuple[EstimateMiss, ...]:
    """Covariate shifts where the exported estimate misses the goal, or the rescaled agreement
    ratio misses it by more than twice its own noise while the estimate does not."""
    from benchmarks.detection.tables import fmt_delay

    fams = list(col["covariate"])
    order = sorted((k for k in col["acc_vm"] if k.split("-s")[0] in fams),
                   key=lambda k: (fams.index(k.split("-s")[0]), k))
    agree = col.get("acc_agree", {})
    out = []
    for k in order:
        est, ag = col["acc_vm"][k], agree.get(k)
        over = est > goal
        if not over and not (ag is not None and ag > max(goal, 2 * noise)):
            continue
        direction = 0 if not over else 1 if col["acc_signed"].get(k, 0.0) > 0 else -1
        out.append(EstimateMiss(k, 100 * est, direction, None if ag is None else 100 * ag,
                                fmt_delay(col["delays"].get(k, {}).get("vm_drift"))))
    return tuple(out)


def reading_facts(results: dict[str, Any], col: dict[str, Any],
                  fa: dict[str, dict[str, tuple[int, int]]], cost: dict[str, float]) -> Facts:
    """The numbers of one run that docs/detection-reading.md explains."""
    from benchmarks.detection import tables

    daemon = results.get("daemon") or {}
    agreement = float(results["workload"]["agreement"])
    msi = int(daemon.get("min_shadow_images", tables.MIN_SHADOW_IMAGES))
    bound = tables.quality_bounds(results)[0]
    below = tuple(
        (n, what, 100 * float(binom.cdf(math.ceil(bound * n) - 1, n, agreement)))
        for n, what in ((round(100 * IMAGE_SAMPLING), "a window of 100 requests"),
                        (msi, "`quality.min_shadow_images`"),
                        (round(1_000 * IMAGE_SAMPLING), "a window of 1,000 requests")))
    vs = _vs_alibi(col["delays"])
    mmd = next((v for v in vs if v.signal == "vm MMD"), None)
    eq = next((v for v in vs if v.signal == "vm MMD at Alibi's rate"), None)
    matched = tables.mmd_cutoff_at_alibi_rate(results)
    every = int({**tables.MMD.model_dump(), **(daemon.get("mmd") or {})}["every_images"])
    emb = results.get("embedding_costs") or {}
    goal = tables.GOAL_ACC_POINTS / 100
    exact = results["false_alarms"]["windows"].get("100s", [])
    bias = None
    if exact:
        est = np.array([r["estimate"] for r in exact], dtype=float)
        ex = np.array([r.get("estimate_exact", math.nan) for r in exact], dtype=float)
        real = np.array([r["realized"] for r in exact], dtype=float)
        bias = (100 * float(np.nanmean(est - real)), 100 * float(np.nanmean(ex - real)),
                100 * float(np.nanmax(np.abs(est - ex))))
    agree = {k: v for k, v in col.get("acc_agree", {}).items()
             if k.split("-s")[0] in col["covariate"] and k in col["acc_vm"]}
    noise = tables.agreement_scale(results) * math.sqrt(
        2 / math.pi * agreement * (1 - agreement) / (1_000 * IMAGE_SAMPLING))
    late = [x for x in (eq.later if eq else ()) if x[2] >= 1_000]
    return Facts(
        drift_features=int(daemon.get("drift_features", tables.BASELINE_FEATURES)),
        varying_features=tables.N_FEATURES,
        feature_level=tables.drift_alpha(results),
        mmd_level=tables.MMD_ALPHA,
        threshold_mismatches=results["false_alarms"].get("mismatches", 0) + sum(
            int(r.get("mismatches", 0)) for r in results["delays"]),
        clean_agreement_pct=100 * agreement,
        min_agreement=bound,
        below_bound=below,
        over_goal=_over_goal(fa, tables.agree_alpha(results) or 0.0, tables.MMD_ALPHA,
                             tables.GOAL_FA),
        vs_alibi=vs,
        alibi_rate=None if matched is None else 1000 * matched["rate"],
        mmd_rate=tables.per_1000(*fa["100s"]["vm_mmd"]) if "vm_mmd" in fa.get("100s", {})
        else "—",
        matched_rate=(None if matched is None
                      else 1000 * matched["alarms"] / matched["windows"]),
        one_reading=sum(1 for _, v, a in (mmd.later if mmd else ())
                        if v is not None and v - a <= STEP),
        late_alibi=(len(late), min((x[2] for x in late), default=0)),
        mmd_ms_per_image=emb["mmd_ms"] / every if emb else math.nan,
        mmd_speedup=cost.get("mmd_speedup", math.nan),
        psi_speedup=cost.get("psi_speedup", math.nan),
        no_drift_bias=bias,
        agreement_noise=100 * noise if agree else None,
        agreement_mean=100 * sum(agree.values()) / len(agree) if agree else None,
        agreement_over=(sum(1 for v in agree.values() if v > goal), len(agree)),
        misses=_misses(col, goal, noise),
    )


def _later(v: VsAlibi) -> str:
    return "; ".join(f"{name} {'—' if d is None else f'{d:,}'} vs {a:,}"
                     for name, d, a in v.later) or "—"


def reading_tables(f: Facts, goal_fa: float, goal_points: float) -> list[str]:
    """The tables of "Reading the results": each heading names the paragraph of
    docs/detection-reading.md that explains it."""
    out = ["### Drift family", "", "| | value |", "|---|---|",
           f"| drift features in the baseline (varying here) | {f.drift_features} "
           f"({f.varying_features}) |",
           f"| level of each feature | {f.feature_level:.6f} |",
           f"| level of the embedding MMD test | {f.mmd_level:g} |",
           f"| PSI > exported threshold against p < level: disagreements | "
           f"{f.threshold_mismatches} |", "",
           "### Shadow agreement ratio on clean images", "",
           f"Clean agreement {f.clean_agreement_pct:.1f} %, bound {f.min_agreement:g}.", "",
           "| joined images | chance the ratio is under the bound |", "|---|---|",
           *[f"| {n:,} ({what}) | {pct(p)} |" for n, what, p in f.below_bound], "",
           f"### visionmon signals above {goal_fa:g} false alarms per 1,000 windows", ""]
    if f.over_goal:
        out += ["| signal | window (requests) | alarms | nominal level | chance of as many "
                "or more |", "|---|---|---|---|---|",
                *[f"| {o.signal} | {o.requests:,} | {o.alarms} of {o.windows:,} | "
                  f"{100 * o.level:g} % | {pct(100 * o.chance)} |" for o in f.over_goal]]
    else:
        out += ["None."]
    out += ["", "### Against Alibi's MMD", ""]
    if f.vs_alibi:
        out += ["| signal | shifts Alibi detected | no slower | later (requests, vs Alibi) |",
                "|---|---|---|---|",
                *[f"| {v.signal} | {v.detected} | {v.detected - len(v.later)} | {_later(v)} |"
                  for v in f.vs_alibi], ""]
    out += ["| | value |", "|---|---|",
            f"| Alibi's false alarms per 1,000 windows of 1,000 requests (nominal 10) | "
            f"{'—' if f.alibi_rate is None else f'{f.alibi_rate:.0f}'} |",
            f"| vm MMD's, at its own level | {f.mmd_rate} |",
            f"| vm MMD's, its cutoff moved to Alibi's rate | "
            f"{'—' if f.matched_rate is None else f'{f.matched_rate:.0f}'} |",
            f"| shifts where vm MMD is one reading ({STEP} requests) behind Alibi | "
            f"{f.one_reading} |",
            f"| shifts where vm MMD at Alibi's rate is later and Alibi's first alarm came "
            f"1,000 or more requests after the onset (the earliest) | {f.late_alibi[0]} "
            f"({f.late_alibi[1]:,}) |",
            f"| vm MMD, per sampled image (tested again every few images) | "
            f"{f.mmd_ms_per_image:.2f} ms |",
            f"| vm MMD test / vm embed PCs: times less than one Alibi test | "
            f"{f.mmd_speedup:.0f}× / {f.psi_speedup:.0f}× |", "",
            "### Label-free accuracy", "", "| | points |", "|---|---|"]
    if f.no_drift_bias is not None:
        exported, exact, gap = f.no_drift_bias
        out += [f"| no drift, windows of 1,000: exported estimate − realized (mean) | "
                f"{exported:+.1f} |",
                f"| no drift: the per-event form − realized (mean) | {exact:+.1f} |",
                f"| no drift: largest gap between the two | {gap:.2f} |"]
    if f.agreement_noise is not None and f.agreement_mean is not None:
        over, total = f.agreement_over
        out += [f"| rescaled agreement ratio: binomial noise alone (mean absolute error) | "
                f"{f.agreement_noise:.1f} |",
                f"| rescaled agreement ratio: mean error over the covariate shifts "
                f"({over} of {total} over {goal_points:g}) | {f.agreement_mean:.1f} |"]
    out += ["", "| shift | exported estimate (points) | rescaled agreement ratio (points) | "
            "vm drift (requests / images) |", "|---|---|---|---|"]
    words = {1: ", too high", -1: ", too low", 0: ""}
    out += [f"| {m.shift} | {m.estimate:.1f}{words[m.direction]} | "
            f"{'—' if m.agreement is None else f'{m.agreement:.1f}'} | {m.drift} |"
            for m in f.misses]
    return out


def sensitivity_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The sensitivity experiment's runs, one per baseline size (results before sizes were
    recorded: one run at 10,000 requests, 1,000 windows of 2,000 images)."""
    sens = results.get("baseline_sensitivity")
    if not sens:
        return []
    if isinstance(sens, dict):
        sens = [{"requests": 10_000, "windows": 1_000, "window_images": 2_000, **sens}]
    return list(sens)


def sensitivity_facts(results: dict[str, Any],
                      fa: dict[str, dict[str, tuple[int, int]]]) -> Sensitivity | None:
    """*One baseline, one rate* of a run: the embedding-PC signal's no-drift rate over
    redrawn baselines of each size, and where the benchmark's own baseline falls."""
    runs = sensitivity_runs(results)
    if not runs:
        return None
    used_n = results["plan"]["baseline"]["n"]
    used_seed = results["plan"]["baseline"]["seed"]
    largest = max(WINDOWS.values())
    sizes, used, rank = [], None, ""
    for r in runs:
        rates = np.array(r["rate"]) * 100
        mean = float(rates.mean())
        sd = float(np.std(rates, ddof=1)) if rates.size > 1 else math.nan
        noise = 100 * math.sqrt(max(mean, 1e-9) / 100 * (1 - mean / 100) / r["windows"])
        sizes.append(BaselineSize(
            r["requests"], "as many as the largest window" if r["requests"] == largest
            else "the size every other table uses" if r["requests"] == used_n else "",
            float(np.mean(r["baseline_images"])), float(rates.min()), float(rates.max()), mean,
            sd, noise, sd / noise))
        if r["requests"] == used_n and used_seed in r["seed"]:
            used = float(rates[r["seed"].index(used_seed)])
            ends = [k for k, v in (("highest", rates.max()), ("lowest", rates.min()))
                    if math.isclose(used, v)]
            ties = int(np.isclose(rates, used).sum())
            rank = ("" if not ends else f"tied for the {ends[0]} of the {rates.size}"
                    if ties > 1 else f"the {ends[0]} of the {rates.size}")
    out = Sensitivity(len(runs[0]["rate"]), runs[0]["windows"], runs[0]["window_images"],
                      tuple(sizes), used_seed, used_n, used, rank)
    table = fa.get("1000s", {}).get("vm_embed")
    if used is None or not table or not table[1] or WINDOWS["1000s"] != largest:
        return out
    k, n = table
    return Sensitivity(out.seeds, out.windows, out.window_images, out.sizes, used_seed, used_n,
                       used, rank, k, n, used / 100 * n,
                       100 * float(binom.cdf(k, n, used / 100)))


def sensitivity_tables(s: Sensitivity) -> list[str]:
    """The tables of *One baseline, one rate*."""
    out = [f"vm embed PCs on {s.windows:,} windows of {s.window_images:,} clean images per "
           f"baseline, {s.seeds} baselines per size (nominal 1 %):", "",
           "| baseline (requests) | images | lowest | highest | mean | sd across baselines "
           "(points) | sd of the windows alone | ratio |", "|---|---|---|---|---|---|---|---|"]
    for b in s.sizes:
        role = f" ({b.role})" if b.role else ""
        out.append(f"| {b.requests:,}{role} | ~{b.images:,.0f} | {b.lowest:.1f} % | "
                   f"{b.highest:.1f} % | {b.mean:.1f} % | {b.sd:.2f} | {b.window_sd:.2f} | "
                   f"{b.ratio:.1f}× |")
    if s.used_rate is not None:
        rank = f", {s.used_rank}" if s.used_rank else ""
        out += ["", "| the benchmark's baseline | value |", "|---|---|",
                f"| seed {s.used_seed:,}, {s.used_requests:,} requests: rate over these "
                f"windows | {s.used_rate:.1f} %{rank} |"]
        if s.observed is not None:
            out += [f"| the false-alarm table's {s.table_windows:,} windows of "
                    f"{max(WINDOWS.values()):,} requests: alarms expected at that rate / seen "
                    f"| {s.expected:.1f} / {s.observed} |",
                    f"| chance of {s.observed} or fewer | {pct(s.chance)} |"]
    return out
