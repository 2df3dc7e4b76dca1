"""Results -> goals, markdown tables and the delay plot (docs/detection.md).

Pure functions over the JSON results that run.py collects; matplotlib (present in .venv,
not a visionmon dependency) draws the plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.detection.scenarios import (
    IMAGE_SAMPLING,
    LABEL_DELAY_S,
    LABEL_FRACTION,
    OTHER,
    REQUEST_RATE,
    Families,
    covariate_families,
)
from benchmarks.detection.visionmon_run import (
    ALPHA,
    DELAY_WINDOW,
    GROUPS,
    LATENCY_TARGET,
    LATENCY_THRESHOLD_S,
    MIN_ACCURACY,
    MIN_AGREEMENT,
    MIN_JOINS,
    WINDOWS,
)
from monitor.baseline import EMBEDDING_SAMPLE
from monitor.config import MMD_SHARE, MmdConfig, QualityConfig
from monitor.scored import INPUT_FEATURES
from monitor.slo_spec import ShadowAgreementDropCheck

N_FEATURES = sum(len(f) for f in GROUPS.values())   # drift features that vary here
#: features of the benchmark's baseline: N_FEATURES plus the input features that are constant
#: in this benchmark (width, height: no threshold, they never alarm)
BASELINE_FEATURES = len(GROUPS["pred"]) + len(INPUT_FEATURES) + len(GROUPS["embed"])
#: the MMD test's level by default: its share of drift.alpha (`drift.mmd.alpha` unset)
MMD_ALPHA = ALPHA * MMD_SHARE
#: the level the daemon tests each drift feature at by default (`drift.correction:
#: bonferroni`, `DriftMonitor.feature_alpha`): what drift.alpha leaves after the MMD test's
#: share, over the baseline's features
FAMILY_ALPHA = (ALPHA - MMD_ALPHA) / BASELINE_FEATURES
EMBED_ALPHA = ALPHA / len(GROUPS["embed"])
#: joined images a window needs before the daemon exports its shadow agreement
MIN_SHADOW_IMAGES = QualityConfig.model_validate({}).min_shadow_images
MMD = MmdConfig.model_validate({})
#: level of the shadow agreement test by default (`slos.thresholds.shadow_agreement_drop`)
AGREE_ALPHA = ShadowAgreementDropCheck().alpha
GOAL_FA = 10.0          # alarms per 1,000 windows
GOAL_EVENTS, GOAL_IMAGES = 1_000, 300
GOAL_SHADOW_IMAGES = 200
GOAL_ACC_POINTS = 3.0
GOAL_SPEEDUP = 10.0



def vm_signal_text(min_agreement: float = MIN_AGREEMENT, min_accuracy: float = MIN_ACCURACY,
                   agree_alpha: float | None = AGREE_ALPHA) -> dict[str, tuple[str, str]]:
    """signal -> (column title, what it is), with the run's quality bounds."""
    return {
        "vm_drift": ("vm drift", "the daemon's default drift verdict (`drift.correction: "
                     "bonferroni`): any drift feature's PSI above the exported "
                     f"`visionmon_drift_threshold`, each of the baseline's {BASELINE_FEATURES} "
                     f"features tested at (drift.alpha - the MMD test's {MMD_ALPHA:g}) / "
                     f"{BASELINE_FEATURES} = {ALPHA - MMD_ALPHA:g}/{BASELINE_FEATURES} = "
                     f"{FAMILY_ALPHA:.6f} (family-wise {100 * (ALPHA - MMD_ALPHA):g} %; "
                     f"{N_FEATURES} of them vary here, width and height are constant)"),
        "vm_drift_default": ("vm drift α0.01", "the same with `drift.correction: none`: each "
                             f"feature at drift.alpha = {ALPHA:g}"),
        "vm_embed": ("vm embed PCs", f"any of the 8 embedding principal components' PSI at "
                     f"alpha {ALPHA:g}/8 = {EMBED_ALPHA:.5f}"),
        "vm_mmd": ("vm MMD", "the embedding MMD statistic above its critical value (`drift.mmd`: "
                   f"alpha {MMD_ALPHA:g}, half of drift.alpha; the largest standardised MMD² at "
                   "0.5, 1 and 2 x the median distance against the baseline's reference sample of "
                   f"{EMBEDDING_SAMPLE:,} embeddings, its null simulated from the baseline's "
                   f"held-out embeddings; the last {MMD.reservoir} embeddings in the window, "
                   f"tested again every {MMD.every_images} new images)"),
        "vm_mmd_eq": ("vm MMD at Alibi's rate", "vm MMD with its critical value moved so that it "
                      "alarms on as many no-drift windows of 1,000 requests as Alibi's MMD did "
                      "(Alibi's level cannot move: p <= 0.01 is its smallest with 100 "
                      "permutations); the comparison at equal false-alarm rate"),
        "vm_agree": ("vm agreement", f"shadow agreement < {min_agreement} "
                     "(quality.min_shadow_agreement); the daemon exports the ratio only once the "
                     f"window holds quality.min_shadow_images = {MIN_SHADOW_IMAGES} joined images"),
        "vm_agree_test": ("vm agreement test", f"the shadow agreement test's p-value below "
                          f"{agree_alpha:g} (`slos.thresholds.shadow_agreement_drop.alpha`): "
                          "one-sided beta-binomial tests of each production class's agreement "
                          "with the reference model, of all classes with disagreements "
                          "weighted by the inverse of their class's baseline rate, and of the "
                          "images whose (production, reference) "
                          "class pair the baseline rarely showed, against the baseline's "
                          "agreement profile, weighted Bonferroni; exported from the "
                          "first joined image" if agree_alpha is not None else
                          "not run (the results predate the test)"),
        "vm_accuracy": ("vm accuracy", f"realized accuracy from labels < {min_accuracy} "
                        f"(quality.min_accuracy) with >= {MIN_JOINS} labels in the window"),
        "vm_alerts": ("vm alerts", "vm drift or vm MMD or vm agreement or vm agreement test: "
                      "what the generated alert rules fire on (`VisionmonDriftDetected` on any "
                      "feature's PSI above its threshold or the embedding MMD statistic above "
                      "its critical value, `VisionmonShadowAgreementLow` on the ratio below its "
                      "bound, `VisionmonShadowAgreementDropped` on the test's p-value; "
                      "`alerts/thresholds.py`), before their `for:` hold. The label-based rules "
                      "(calibration error, label coverage) are not measured here"),
    }


#: signal -> (column title, what it is); the titles and the order do not depend on the run
VM_SIGNALS = vm_signal_text()
PEER_SIGNALS: dict[str, tuple[str, str]] = {
    "evidently_default": ("Evidently default", "default column drift test on class and "
                          "confidence (Jensen-Shannon / Wasserstein, 0.1)"),
    "evidently_psi": ("Evidently PSI 0.1", "psi test, threshold 0.1, class and confidence"),
    "alibi_mmd": ("Alibi MMD", "MMDDrift, p_val 0.01, 100 permutations (torch seeded), "
                  "same embeddings"),
    "bbsd": ("BBSD", "Failing Loudly's black-box shift detection (Rabanser et al. 2019): the "
             "reference model's softmax on the window's images against the baseline's, one "
             "two-sample KS test per class, Bonferroni over the classes at 0.05 (real-image "
             "pools only: the small data sets' pools do not keep the reference softmax)"),
}


# --- signals ------------------------------------------------------------------------------


def _arr(xs: Sequence[float] | None, n: int, fill: float) -> np.ndarray:
    if xs is None:
        return np.full(n, fill)
    a = np.asarray(xs, dtype=np.float64)
    return np.where(np.isnan(a), fill, a)


def drift_alpha(results: dict[str, Any]) -> float:
    """The per-feature level of the daemon's drift verdict in this run (as run.py recorded
    it from `DriftMonitor.feature_alpha`; FAMILY_ALPHA for results that predate that)."""
    return float((results.get("daemon") or {}).get("drift_feature_alpha", FAMILY_ALPHA))


def agree_alpha(results: dict[str, Any]) -> float | None:
    """Level of the shadow agreement test in the run (None: results that predate it)."""
    return (results.get("daemon") or {}).get("shadow_agreement_alpha")


def quality_bounds(results: dict[str, Any]) -> tuple[float, float]:
    """(min_shadow_agreement, min_accuracy) of the run's daemon config (the digits defaults
    for results that predate their recording)."""
    daemon = results.get("daemon") or {}
    return (float(daemon.get("min_shadow_agreement", MIN_AGREEMENT)),
            float(daemon.get("min_accuracy", MIN_ACCURACY)))


def vm_masks(p: dict[str, Any], mmd: Any, agree: Any, accuracy: Any, n: int,
             family_alpha: float = FAMILY_ALPHA,
             bounds: tuple[float, float] = (MIN_AGREEMENT, MIN_ACCURACY),
             agree_p: Any = None, alpha_agree: float | None = None
             ) -> dict[str, np.ndarray]:
    """Alarm of every visionmon signal at each reading (NaN readings never alarm).
    `vm_shadow` (either shadow agreement alert) is not a column of its own."""
    groups = {g: _arr(p.get(g), n, 1.0) for g in GROUPS}
    pmin = np.minimum.reduce(list(groups.values()))
    out = {
        "vm_drift": pmin < family_alpha,
        "vm_drift_default": pmin < ALPHA,
        "vm_embed": groups["embed"] < EMBED_ALPHA,
        "vm_mmd": _arr(mmd, n, 0.0) > 1.0,
        "vm_agree": _arr(agree, n, 1.0) < bounds[0],
        "vm_agree_test": (_arr(agree_p, n, 1.0) < alpha_agree if alpha_agree is not None
                          else np.zeros(n, dtype=bool)),
        "vm_accuracy": _arr(accuracy, n, 1.0) < bounds[1],
    }
    out["vm_shadow"] = out["vm_agree"] | out["vm_agree_test"]
    out["vm_alerts"] = out["vm_drift"] | out["vm_mmd"] | out["vm_shadow"]
    return out


Delay = tuple[int, int] | None   # (requests, images) after the onset; None: not detected


def vm_delays(run: dict[str, Any], family_alpha: float = FAMILY_ALPHA,
              bounds: tuple[float, float] = (MIN_AGREEMENT, MIN_ACCURACY),
              alpha_agree: float | None = None) -> dict[str, Delay]:
    n = len(run["events_after"])
    masks = vm_masks(run["p"], run["mmd"], run["agree"], run["accuracy"], n, family_alpha,
                     bounds, run.get("agree_p"), alpha_agree)
    out: dict[str, Delay] = {}
    for name, m in masks.items():
        hit = np.flatnonzero(m)
        out[name] = None if hit.size == 0 else (int(run["events_after"][hit[0]]),
                                                int(run["images_after"][hit[0]]))
    return out


def median_delay(ds: list[Delay]) -> Delay:
    """Median over seeds; a seed that did not detect counts as infinitely late."""
    if not ds:
        return None
    ev = sorted(math.inf if d is None else d[0] for d in ds)
    im = sorted(math.inf if d is None else d[1] for d in ds)
    mid = len(ds) // 2
    e, i = (ev[mid], im[mid]) if len(ds) % 2 else ((ev[mid - 1] + ev[mid]) / 2,
                                                   (im[mid - 1] + im[mid]) / 2)
    return None if math.isinf(e) else (round(e), round(i))


def fmt_delay(d: Delay, images: bool = True) -> str:
    if d is None:
        return "—"
    return f"{d[0]:,} / {d[1]}" if images else f"{d[0]:,}"


# --- collecting ------------------------------------------------------------------------------


def collect(results: dict[str, Any]) -> dict[str, Any]:
    """Per scenario: median delays of every signal, accuracy-estimate errors."""
    by: dict[str, dict[str, list[Delay]]] = {}
    acc_vm: dict[str, list[float]] = {}
    acc_exact: dict[str, list[float]] = {}
    acc_agree: dict[str, list[float]] = {}
    acc_agree_signed: dict[str, list[float]] = {}
    acc_signed: dict[str, list[float]] = {}
    agree_level: dict[str, list[float]] = {}
    latency: dict[str, list[int | None]] = {}
    family_alpha = drift_alpha(results)
    for run in results["delays"]:
        name = run["scenario"]
        if run["latency_page_after"] is not None or name.startswith("latency"):
            latency.setdefault(name, []).append(run["latency_page_after"])
            continue
        for sig, d in vm_delays(run, family_alpha, quality_bounds(results),
                                agree_alpha(results)).items():
            by.setdefault(name, {}).setdefault(sig, []).append(d)
        for key, store in (("estimate", acc_vm), ("estimate_exact", acc_exact)):
            errs = [abs(e - r) for ea, e, r in zip(run["events_after"], run[key],
                                                   run["realized"], strict=True)
                    if ea % 1_000 == 0 and not math.isnan(e)]
            if errs:
                store.setdefault(name, []).append(float(np.mean(errs)))
        # the shadow agreement ratio rescaled to an accuracy: agreement x the clean
        # accuracy / the clean agreement (the reading where the ratio is exported)
        scale = agreement_scale(results)
        diffs = [a * scale - r for ea, a, r in zip(run["events_after"], run["agree"],
                                                   run["realized"], strict=True)
                 if ea % 1_000 == 0 and not math.isnan(a) and not math.isnan(r)]
        if diffs and scale:
            acc_agree.setdefault(name, []).append(float(np.mean(np.abs(diffs))))
            acc_agree_signed.setdefault(name, []).append(float(np.mean(diffs)))
        signed = [e - r for ea, e, r in zip(run["events_after"], run["estimate"],
                                            run["realized"], strict=True)
                  if ea % 1_000 == 0 and not math.isnan(e)]
        if signed:
            acc_signed.setdefault(name, []).append(float(np.mean(signed)))
        # the agreement ratio the stream settles at: its readings over the last 1,000 requests
        last = [a for ea, a in zip(run["events_after"], run["agree"], strict=True)
                if ea > run["events_after"][-1] - 1_000 and not math.isnan(a)]
        if last:
            agree_level.setdefault(name, []).append(float(np.mean(last)))
    acc_cbpe: dict[str, list[float]] = {}
    peers = results.get("peers") or {}
    for d in peers.get("delays", []):
        name = d["scenario"]
        for sig in PEER_SIGNALS:
            if sig in d:
                v = d[sig]
                by.setdefault(name, {}).setdefault(sig, []).append(
                    None if v is None else (int(v[0]), int(v[1])))
        if "cbpe" in d:
            e = np.abs(np.asarray(d["cbpe"]["estimate"]) - np.asarray(d["cbpe"]["realized"]))
            acc_cbpe.setdefault(name, []).append(float(e.mean()))
    matched = mmd_cutoff_at_alibi_rate(results)
    if matched is not None:
        for run in results["delays"]:
            stats = run.get("mmd_stat")
            if stats is None or run["scenario"] not in by:
                continue
            hit = np.flatnonzero(_arr(stats, len(stats), -math.inf) > matched["cutoff"])
            by[run["scenario"]].setdefault("vm_mmd_eq", []).append(
                None if hit.size == 0 else (int(run["events_after"][hit[0]]),
                                            int(run["images_after"][hit[0]])))
    delays = {name: {sig: median_delay(ds) for sig, ds in sigs.items()}
              for name, sigs in by.items()}
    return {"covariate": covariate_families(results.get("plan")),
            "delays": delays, "acc_vm": {k: float(np.mean(v)) for k, v in acc_vm.items()},
            "acc_exact": {k: float(np.mean(v)) for k, v in acc_exact.items()},
            "acc_cbpe": {k: float(np.mean(v)) for k, v in acc_cbpe.items()},
            "acc_agree": {k: float(np.mean(v)) for k, v in acc_agree.items()},
            "acc_agree_signed": {k: float(np.mean(v)) for k, v in acc_agree_signed.items()},
            "acc_signed": {k: float(np.mean(v)) for k, v in acc_signed.items()},
            "agree_level": {k: float(np.median(v)) for k, v in agree_level.items()},
            "latency": latency}


def agreement_scale(results: dict[str, Any]) -> float:
    """Clean production accuracy over clean agreement with the reference model, on the pool:
    the factor that turns an agreement ratio into an accuracy estimate (0: unknown)."""
    info = results.get("workload") or {}
    acc, agree = info.get("production_accuracy"), info.get("agreement")
    return float(acc) / float(agree) if acc and agree else 0.0


def mmd_cutoff_at_alibi_rate(results: dict[str, Any]) -> dict[str, float] | None:
    """vm MMD's statistic cutoff at which it alarms on as many no-drift windows of 1,000
    requests as Alibi's MMD did (its level is fixed at p <= 0.01 with 100 permutations, so
    only visionmon's side can move): the comparison "at equal false-alarm rate"."""
    rows = results["false_alarms"]["windows"].get(DELAY_WINDOW, [])
    stats = np.array([r.get("mmd_stat", math.nan) for r in rows], dtype=float)
    stats = stats[~np.isnan(stats)]
    peer_rows = ((results.get("peers") or {}).get("false_alarms") or {}).get(DELAY_WINDOW, [])
    alibi = [r["alibi_mmd"] for r in peer_rows if r.get("alibi_mmd") is not None]
    if stats.size == 0 or not alibi:
        return None
    rate = sum(alibi) / len(alibi)
    k = round(rate * stats.size)   # windows above the cutoff
    ranked = np.sort(stats)[::-1]
    cutoff = float(ranked[k]) if k < ranked.size else -math.inf
    return {"cutoff": cutoff, "rate": rate, "alarms": float(np.sum(stats > cutoff)),
            "windows": float(stats.size)}


def false_alarms(results: dict[str, Any]) -> dict[str, dict[str, tuple[int, int]]]:
    """window -> signal -> (alarms, windows). vm agreement counts only the windows where the
    daemon exported the ratio (enough joined images)."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    family_alpha = drift_alpha(results)
    for w, rows in results["false_alarms"]["windows"].items():
        n = len(rows)
        if not n:
            continue
        p = {g: [r.get(f"p_{g}", math.nan) for r in rows] for g in GROUPS}
        agree = [r["agree"] for r in rows]
        agree_p = [r.get("agree_p", math.nan) for r in rows]
        masks = vm_masks(p, [r["mmd"] for r in rows], agree,
                         [r["accuracy"] for r in rows], n, family_alpha,
                         quality_bounds(results), agree_p, agree_alpha(results))
        out[w] = {k: (int(m.sum()), n) for k, m in masks.items()}
        for sig, vals in (("vm_agree", agree), ("vm_agree_test", agree_p)):
            evaluated = sum(1 for a in vals if a is not None and not math.isnan(a))
            out[w][sig] = (out[w][sig][0], evaluated)
    peers = results.get("peers") or {}
    for w, rows in peers.get("false_alarms", {}).items():
        for sig in PEER_SIGNALS:
            vals = [r[sig] for r in rows if r.get(sig) is not None]
            if vals:
                out.setdefault(w, {})[sig] = (int(sum(vals)), len(vals))
    return out


def per_1000(a: int, n: int) -> str:
    """Rate per 1,000 windows with a 95 % upper bound when nothing was seen."""
    if n == 0:
        return "—"
    if a == 0:
        return f"0 (<{1000 * 3.0 / n:.0f})"   # rule of three
    rate = 1000 * a / n
    return f"{rate:.1f}" if rate < 1 else f"{rate:.0f}"   # a rare alarm never shows as 0


# --- writing ------------------------------------------------------------------------------------


def _scenario_rows(covariate: Families) -> list[tuple[str, str, int, str]]:
    """(scenario name, family, severity, level text) in table order."""
    rows = []
    for fam, (unit, levels) in covariate.items():
        rows += [(f"{fam}-s{s}", fam, s, f"{lv:g} {unit.split(',')[0]}")
                 for s, lv in enumerate(levels, 1)]
    for fam, (kind, unit, levels) in OTHER.items():
        if kind == "latency":
            continue
        if len(levels) == 1:
            rows.append((f"{fam}-s3", fam, 3, unit))
        else:
            rows += [(f"{fam}-s{s}", fam, s, f"{lv:g} {unit}") for s, lv in
                     enumerate(levels, 1)]
    return rows


def delay_table(col: dict[str, Any], signals: Sequence[str]) -> list[str]:
    titles = {**VM_SIGNALS, **PEER_SIGNALS}
    head = "| scenario | sev | level | " + " | ".join(titles[s][0] for s in signals) + " |"
    lines = [head, "|" + "---|" * (3 + len(signals))]
    for name, fam, sev, level in _scenario_rows(col["covariate"]):
        d = col["delays"].get(name)
        if d is None:
            continue
        cells = []
        for s in signals:
            cells.append(fmt_delay(d[s]) if s in d else "n/r")
        lines.append(f"| {fam} | {sev} | {level} | " + " | ".join(cells) + " |")
    return lines


def goals(results: dict[str, Any], col: dict[str, Any],
          fa: dict[str, dict[str, tuple[int, int]]], cost: dict[str, float]) -> list[str]:
    lines = ["| goal | result | verdict |", "|---|---|---|"]
    # 1. false alarms: what the alert rules fire on, and every verdict the daemon exports
    def fa_cells(sig: str) -> tuple[str, str]:
        rates = {w: fa[w][sig] for w in fa if sig in fa[w] and fa[w][sig][1]}
        text = "; ".join(f"{WINDOWS[w]:,}: {per_1000(*v)} over {v[1]:,}"
                         for w, v in rates.items())
        over = [f"{WINDOWS[w]:,}" for w, (a, n) in rates.items() if 1000 * a / n > GOAL_FA]
        return text, ("met" if not over else f"missed at {' / '.join(over)}")

    alerts_text, alerts_verdict = fa_cells("vm_alerts")
    none_text, none_verdict = fa_cells("vm_drift_default")
    lines.append("| no-drift false alarms ≤ 10 per 1,000 windows at 100 / 1,000 / 10,000 "
                 f"| per 1,000 windows, the daemon's defaults (drift features and embedding MMD "
                 f"sharing drift.alpha, agreement from {MIN_SHADOW_IMAGES} joined images): "
                 f"vm alerts (drift, MMD or agreement, what the alert rules fire on): "
                 f"{alerts_text}. With `drift.correction: none` ({ALPHA:g} per feature), "
                 f"vm drift alone: {none_text} | vm alerts: {alerts_verdict}; "
                 f"`correction: none`: {none_verdict} |")
    # 2. covariate severity >= 3, by what the alert rules fire on
    misses: dict[str, list[str]] = {"vm_alerts": []}
    total = 0
    for name, fam, sev, _ in _scenario_rows(col["covariate"]):
        if fam not in col["covariate"] or sev < 3 or name not in col["delays"]:
            continue
        total += 1
        for sig, missed in misses.items():
            d = col["delays"][name].get(sig)
            if d is None or (d[0] > GOAL_EVENTS and d[1] > GOAL_IMAGES):
                missed.append(f"{name} ({fmt_delay(d)})")
    m_alerts = misses["vm_alerts"]
    lines.append(f"| covariate shifts, severity ≥ 3, detected within {GOAL_EVENTS:,} requests "
                 f"or {GOAL_IMAGES} images | {total - len(m_alerts)} of {total} by vm alerts"
                 + (f"; late or missed: {', '.join(m_alerts)}" if m_alerts else "")
                 + f" | {'met' if not m_alerts else 'missed'} |")
    # 3. bad version by shadow agreement (either of its two alerts)
    cells, ok = [], True
    for name in ("bad_version_class-s3", "bad_version_random-s3"):
        d = col["delays"].get(name, {}).get("vm_shadow")
        cells.append(f"{name}: {fmt_delay(d)}")
        ok &= d is not None and d[1] <= GOAL_SHADOW_IMAGES
    lines.append(f"| bad version caught by shadow agreement within {GOAL_SHADOW_IMAGES} images "
                 f"(one class wrong; 10 % wrong) | {'; '.join(cells)} (requests / images) "
                 f"| {'met' if ok else 'missed'} |")
    # 4. accuracy estimate
    cov = {k: v for k, v in col["acc_vm"].items() if k.split("-s")[0] in col["covariate"]}
    if cov:
        worst_name = max(cov, key=lambda k: cov[k])
        over = sorted(k for k, v in cov.items() if 100 * v > GOAL_ACC_POINTS)
        others = []
        for label, key in (("the per-event form computed outside the daemon", "acc_exact"),
                           ("NannyML CBPE", "acc_cbpe"),
                           ("the shadow agreement ratio rescaled", "acc_agree")):
            vals = {k: v for k, v in col[key].items() if k in cov}
            if vals:
                n_over = sum(100 * v > GOAL_ACC_POINTS for v in vals.values())
                others.append(f"{label}: mean {100 * np.mean(list(vals.values())):.1f}, "
                              f"{n_over} of {len(vals)} over {GOAL_ACC_POINTS:g}")
        lines.append(
            f"| label-free accuracy error ≤ {GOAL_ACC_POINTS:g} points on covariate shifts "
            f"| visionmon (the exported estimate): mean "
            f"{100 * np.mean(list(cov.values())):.1f} points over {len(cov)} shift/severity "
            f"pairs, {len(over)} over {GOAL_ACC_POINTS:g} (worst {worst_name} "
            f"{100 * cov[worst_name]:.1f}). For comparison, {'; '.join(others)} "
            f"| {'met' if not over else 'missed'} |")
    # 5. vs Alibi, at equal false-alarm rate on the 1,000-request window
    alibi_fa = fa.get("100s", {}).get("alibi_mmd")
    matched = mmd_cutoff_at_alibi_rate(results)
    for sig, cost_key in (("vm_embed", "psi_speedup"), ("vm_mmd", "mmd_speedup"),
                          ("vm_mmd_eq", "mmd_speedup")):
        if sig == "vm_mmd_eq" and matched is None:
            continue
        slower, compared = [], 0
        for name, d in col["delays"].items():
            a = d.get("alibi_mmd")
            if "alibi_mmd" not in d or a is None:
                continue
            compared += 1
            v = d.get(sig)
            if v is None or v[0] > a[0]:
                slower.append(f"{name} {fmt_delay(v, False)} vs {fmt_delay(a, False)}")
        own = fa.get("100s", {}).get(sig)
        if sig == "vm_mmd_eq" and matched is not None:
            own = (int(matched["alarms"]), int(matched["windows"]))
        speed = cost.get(cost_key, math.nan)
        fa_text = (f"false alarms per 1,000 windows of 1,000: {per_1000(*own)} vs Alibi "
                   f"{per_1000(*alibi_fa)}; " if own and alibi_fa else "")
        lines.append(
            f"| {VM_SIGNALS[sig][0]} vs Alibi MMD: delay no worse at equal false-alarm rate, "
            f"≥ {GOAL_SPEEDUP:g}× less compute | {fa_text}no slower in "
            f"{compared - len(slower)} of {compared} shifts Alibi detected"
            + (f" (slower: {'; '.join(slower[:6])}{' …' if len(slower) > 6 else ''}, "
               "requests)" if slower else "")
            + f"; {speed:.0f}× less compute per window of ~200 images "
            f"| {'met' if not slower and speed >= GOAL_SPEEDUP else 'missed'} |")
    return lines


def compute_costs(results: dict[str, Any]) -> dict[str, float]:
    fa = results["false_alarms"]
    out: dict[str, float] = {}
    req = fa["requests"]
    images = max(1.0, req * IMAGE_SAMPLING)
    out["us_per_request"] = 1e6 * fa["feed_seconds"]["predictions"] / req
    out["us_per_image"] = 1e6 * fa["feed_seconds"]["images"] / images
    out["us_per_label"] = 1e6 * fa["feed_seconds"]["feedback"] / max(1.0, req * LABEL_FRACTION)
    snaps = max(1, fa["snapshots"])
    for ext, s in fa["snapshot_seconds"].items():
        out[f"ms_snapshot_{ext}"] = 1e3 * s / snaps
    per_window = WINDOWS["100s"]
    out["ms_vm_window"] = (per_window * (out["us_per_request"] + IMAGE_SAMPLING
                                         * out["us_per_image"] + LABEL_FRACTION
                                         * out["us_per_label"]) / 1e3
                           + sum(v for k, v in out.items() if k.startswith("ms_snapshot_")))
    peers = results.get("peers") or {}
    sec = peers.get("seconds", {})
    for k, v in sec.items():
        out[f"ms_peer_{k}"] = 1e3 * v["mean"]
    emb = results.get("embedding_costs") or {}
    if emb:
        out["ms_vm_embed_psi"] = emb["psi_ms"]
        out["ms_vm_embed_mmd"] = emb["mmd_ms"]
    if "alibi_mmd_100s" in sec:
        out["speedup"] = out["ms_peer_alibi_mmd_100s"] / out["ms_vm_window"]
        if emb:
            out["psi_speedup"] = out["ms_peer_alibi_mmd_100s"] / emb["psi_ms"]
            out["mmd_speedup"] = out["ms_peer_alibi_mmd_100s"] / emb["mmd_ms"]
    return out


def plot(col: dict[str, Any], path: Path, horizon: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = [*col["covariate"], "prior_shift", "bad_version_random", "label_noise"]
    signals = ["vm_drift", "vm_embed", "vm_mmd", "vm_agree", "vm_agree_test", "vm_accuracy",
               "evidently_default", "evidently_psi", "alibi_mmd", "bbsd"]
    styles = {"vm_drift": ("C0", "-", "o"), "vm_embed": ("C1", "-", "s"),
              "vm_mmd": ("C2", "-", "^"), "vm_agree": ("C3", "-", "D"),
              "vm_agree_test": ("C8", "-", "P"),
              "vm_accuracy": ("C4", "-", "v"), "evidently_default": ("C5", "--", "o"),
              "evidently_psi": ("C6", "--", "s"), "alibi_mmd": ("C7", "--", "^"),
              "bbsd": ("C9", "--", "v")}
    titles = {**VM_SIGNALS, **PEER_SIGNALS}
    rows = -(-len(fams) // 3)
    fig, axes = plt.subplots(rows, 3, figsize=(13, 10 * rows / 3), sharey=True, squeeze=False)
    miss = horizon * 1.6
    # bad version and label noise leave the images and class mix unchanged: a drift alarm
    # there is a false alarm, so those panels show the signals that can see them
    only = {"bad_version_random": {"vm_agree", "vm_agree_test", "vm_accuracy",
                                   "evidently_default", "evidently_psi"},
            "label_noise": {"vm_agree", "vm_agree_test", "vm_accuracy", "evidently_default",
                            "evidently_psi"}}
    for ax in axes.ravel()[len(fams):]:
        ax.set_visible(False)
    for ax, fam in zip(axes.ravel(), fams, strict=False):
        for sig in signals:
            if fam in only and sig not in only[fam]:
                continue
            xs, ys = [], []
            for s in range(1, 6):
                d = col["delays"].get(f"{fam}-s{s}", {})
                if sig not in d:
                    continue
                xs.append(s)
                ys.append(miss if d[sig] is None else max(d[sig][0], 25))
            if xs:
                c, ls, mk = styles[sig]
                ax.plot(xs, ys, color=c, linestyle=ls, marker=mk, label=titles[sig][0])
        ax.axhline(horizon, color="grey", linewidth=0.6)
        ax.set_yscale("log")
        ax.set_title(fam)
        ax.set_xticks(range(1, 6))
        ax.set_xlabel("severity")
    for ax in axes[:, 0]:
        ax.set_ylabel("requests after onset to first alarm")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4)
    fig.suptitle(f"Detection delay vs severity (window of 1,000 requests; points above the "
                 f"grey line = not detected within {horizon:,})")
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def check_daemon(results: dict[str, Any]) -> None:
    """The signal descriptions quote the daemon's defaults: refuse to describe a run whose
    daemon (as run.py recorded it) used others."""
    daemon = results.get("daemon")
    if not daemon:
        return
    expected = {"drift_correction": "bonferroni", "drift_features": BASELINE_FEATURES,
                "min_shadow_images": MIN_SHADOW_IMAGES, "mmd": MMD.model_dump()}
    wrong = {k: (daemon.get(k), v) for k, v in expected.items() if daemon.get(k) != v}
    if not math.isclose(daemon.get("drift_feature_alpha", math.nan), FAMILY_ALPHA):
        wrong["drift_feature_alpha"] = (daemon.get("drift_feature_alpha"), FAMILY_ALPHA)
    if wrong:
        raise ValueError(f"the run's daemon settings differ from what the report describes "
                         f"(recorded, described): {wrong}; update benchmarks/detection/tables.py")


def write_docs(results: dict[str, Any], docs: Path) -> str:
    """Write docs/detection.md (or the data set's page, and the plot next to it); returns the
    markdown."""
    from benchmarks.detection import equal_rate, report_text

    check_daemon(results)
    col = collect(results)
    fa = false_alarms(results)
    cost = compute_costs(results)
    plan = results["plan"]
    horizon = max(s["n"] - s["onset"] for s in plan["streams"] if not s["latency"])
    png = docs.with_name(f"{docs.stem}-delay.png")
    plot(col, png, horizon)
    md = report_text.render(results, col, fa, cost, horizon, png.name,
                            goals(results, col, fa, cost),
                            delay_table(col, [s for s in VM_SIGNALS if s != "vm_mmd_eq"]),
                            delay_table(col, ["vm_drift", "vm_embed", "vm_mmd",
                                              *(["vm_mmd_eq"] if any(
                                                  "vm_mmd_eq" in d
                                                  for d in col["delays"].values()) else []),
                                              *[s for s in PEER_SIGNALS if any(
                                                  s in d for d in col["delays"].values())]]),
                            fa_table(fa), accuracy_table(col), cost_table(cost, results),
                            latency_table(col), equal_rate.section(results, col, fa))
    tmp = docs.with_name(docs.name + ".tmp")
    tmp.write_text(md)
    tmp.replace(docs)
    return md


def fa_table(fa: dict[str, dict[str, tuple[int, int]]]) -> list[str]:
    sigs = [s for s in [*VM_SIGNALS, *PEER_SIGNALS]
            if s != "vm_accuracy" and any(s in v for v in fa.values())]
    titles = {**VM_SIGNALS, **PEER_SIGNALS}
    lines = ["| window (requests) | windows | " + " | ".join(titles[s][0] for s in sigs) + " |",
             "|" + "---|" * (2 + len(sigs))]
    for w, v in fa.items():
        n = max(x[1] for x in v.values())
        cells = ["—" if s not in v or v[s][1] == 0
                 else per_1000(*v[s]) + ("" if v[s][1] == n else f" ({v[s][1]} w.)")
                 for s in sigs]
        lines.append(f"| {WINDOWS[w]:,} | {n:,} | " + " | ".join(cells) + " |")
    return lines


def accuracy_table(col: dict[str, Any]) -> list[str]:
    lines = ["| shift | " + " | ".join(f"s{s}" for s in range(1, 6)) + " |",
             "|---|" + "---|" * 5]
    for fam in [*col["covariate"], "prior_shift"]:
        cells = []
        for s in range(1, 6):
            k = f"{fam}-s{s}"
            vm = col["acc_vm"].get(k)
            if vm is None:
                cells.append("—")
                continue
            cells.append(" / ".join("—" if v is None else f"{100 * v:.1f}"
                                    for v in (vm, col["acc_exact"].get(k),
                                              col["acc_cbpe"].get(k),
                                              col.get("acc_agree", {}).get(k))))
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    return lines


def cost_table(cost: dict[str, float], results: dict[str, Any]) -> list[str]:
    rows = [("visionmon: decode + apply, per request", f"{cost['us_per_request']:.1f} µs"),
            ("visionmon: decode + join + drift features, per sampled image",
             f"{cost['us_per_image']:.1f} µs"),
            ("visionmon: decode + join, per label", f"{cost['us_per_label']:.1f} µs")]
    for k, v in cost.items():
        if k.startswith("ms_snapshot_"):
            rows.append((f"visionmon: {k[len('ms_snapshot_'):]}.snapshot (3 windows)",
                         f"{v:.2f} ms"))
    rows.append(("visionmon: every signal for one 1,000-request window (feeding its 1,000 "
                 "requests, 200 images, 300 labels + one snapshot)",
                 f"{cost['ms_vm_window']:.1f} ms"))
    if "ms_vm_embed_psi" in cost:
        rows.append(("visionmon embed PCs: project, bin and test ~200 embeddings (8 PCs)",
                     f"{cost['ms_vm_embed_psi']:.2f} ms"))
        rows.append(("visionmon MMD: cross terms of ~200 embeddings against the "
                     f"{EMBEDDING_SAMPLE:,}-row reference, MMD² at 3 bandwidths and the "
                     "simulated-null test (numpy)", f"{cost['ms_vm_embed_mmd']:.1f} ms"))
    names = {"evidently_default": "Evidently default test, class + confidence, one window",
             "evidently_psi": "Evidently psi, class + confidence, one window",
             "alibi_mmd_10s": "Alibi MMDDrift.predict, window of 100 requests (~20 images)",
             "alibi_mmd_100s": "Alibi MMDDrift.predict, window of 1,000 requests (~200 images)",
             "alibi_mmd_1000s": "Alibi MMDDrift.predict, window of 10,000 requests "
                                "(~2,000 images)",
             f"alibi_mmd_100s_ref{EMBEDDING_SAMPLE}": "Alibi MMDDrift.predict, ~200 images, "
                                f"with visionmon's {EMBEDDING_SAMPLE:,}-row reference (timed "
                                "only; the delays use its 500-row one)",
             "nannyml_cbpe_fit": "NannyML CBPE fit on the baseline's "
                                 f"{_baseline_labelled(results):,} labelled requests",
             "nannyml_cbpe": "NannyML CBPE estimate, 3 chunks of 1,000"}
    for k, label in names.items():
        if f"ms_peer_{k}" in cost:
            rows.append((label, f"{cost[f'ms_peer_{k}']:.1f} ms"))
    return ["| what | time (one CPU core) |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]


def _baseline_labelled(results: dict[str, Any]) -> int:
    b = results["plan"]["baseline"]
    return int(b.get("labelled", round(b["n"] * b["label_fraction"])))


def latency_table(col: dict[str, Any]) -> list[str]:
    lines = ["| latency multiplier | vm: first page after onset (requests) | minutes of event "
             "time | Evidently default test incl. latency column (requests / images) |",
             "|---|---|---|---|"]
    levels = OTHER["latency"][2]
    for s, lv in enumerate(levels, 1):
        vals = col["latency"].get(f"latency-s{s}")
        if not vals:
            continue
        ev = col["delays"].get(f"latency-s{s}", {})
        ev_text = fmt_delay(ev["evidently_default"]) if "evidently_default" in ev else "n/r"
        d = median_delay([None if v is None else (v, 0) for v in vals])
        if d is None:
            lines.append(f"| ×{lv:g} | not paged within 2 h | — | {ev_text} |")
            continue
        v = d[0]
        lines.append(f"| ×{lv:g} | {v:,} | {v / REQUEST_RATE / 60:.0f} | {ev_text} |")
    return lines


STREAM_FACTS = {
    "rate": REQUEST_RATE, "sampling": IMAGE_SAMPLING, "labels": LABEL_FRACTION,
    "label_delay": LABEL_DELAY_S, "latency_target": LATENCY_TARGET,
    "latency_threshold": LATENCY_THRESHOLD_S,
}


def write_page(path: Path, lines: list[str]) -> None:
    """Write a generated markdown page and say where it went."""
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")
