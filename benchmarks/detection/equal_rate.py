"""Detectors compared at an equal false-alarm rate, as an expected run time before a false
alarm (numpy only).

Each detector that records a score at every reading (visionmon's drift p-values and MMD
ratio, BBSD's adjusted p-value) has its threshold moved until it alarms on the same share
`rate` of the no-drift run's disjoint 1,000-request windows; its delays are then read
again at that threshold. Checked on disjoint windows of W requests, a detector that alarms
on a share r of them runs W / r requests, on average, before its first false alarm (a
geometric number of windows): that is the expected run time the tables quote, in requests
and in hours at the benchmark's request rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.detection.scenarios import REQUEST_RATE
from benchmarks.detection.visionmon_run import DELAY_WINDOW, GROUPS, WINDOWS

#: detector -> its title in the tables
SCORED: dict[str, str] = {"vm_drift": "vm drift (smallest PSI p-value)",
                          "vm_mmd": "vm MMD (statistic / critical value)",
                          "bbsd": "BBSD (Bonferroni KS p-value)"}


@dataclass(frozen=True, slots=True)
class Matched:
    """One detector at the common rate: its cutoff on the score (alarm when score > cutoff),
    the no-drift windows above it and the delays (requests, images) per scenario."""

    detector: str
    cutoff: float
    alarms: int
    windows: int
    delays: dict[str, tuple[int, int] | None]


def cutoff_at_rate(null_scores: Sequence[float], rate: float) -> float:
    """The smallest cutoff above which at most round(rate x n) of the no-drift scores lie
    (alarm: score > cutoff); NaN scores never alarm."""
    s = np.asarray(null_scores, dtype=float)
    s = np.sort(s[~np.isnan(s)])[::-1]
    k = math.floor(rate * s.size + 0.5)   # halves up (round() would round them to even)
    if s.size == 0:
        return math.inf
    return float(s[k]) if k < s.size else -math.inf


def expected_run(rate: float, window: int = WINDOWS[DELAY_WINDOW]) -> float:
    """Requests before the first false alarm on disjoint windows of `window` requests that
    each alarm with probability `rate` (inf for 0)."""
    return math.inf if rate <= 0 else window / rate


def hours(requests: float) -> float:
    return requests / REQUEST_RATE / 3600


def _first(scores: Sequence[float], cutoff: float, after: Sequence[Sequence[int]]
           ) -> tuple[int, int] | None:
    s = np.asarray(scores, dtype=float)
    hit = np.flatnonzero(np.where(np.isnan(s), -math.inf, s) > cutoff)
    return None if hit.size == 0 else (int(after[hit[0]][0]), int(after[hit[0]][1]))


def _vm_drift_score(p: dict[str, Any], n: int) -> np.ndarray:
    groups = [np.asarray(p.get(g) if p.get(g) is not None else [math.nan] * n, dtype=float)
              for g in GROUPS]
    pmin = np.fmin.reduce(groups)
    return -pmin


def scores(results: dict[str, Any]) -> dict[str, tuple[list[float], dict[str, Any]]]:
    """detector -> (no-drift scores on the 1,000-request windows, scenario -> list over seeds
    of (scores, [(requests, images) after the onset]) at every reading)."""
    out: dict[str, tuple[list[float], dict[str, Any]]] = {}
    rows = results["false_alarms"]["windows"].get(DELAY_WINDOW, [])
    if rows:
        null_drift = [float(-np.fmin.reduce([float(r.get(f"p_{g}", math.nan))
                                              for g in GROUPS])) for r in rows]
        null_mmd = [float(r.get("mmd", math.nan)) for r in rows]
        drift: dict[str, Any] = {}
        mmd: dict[str, Any] = {}
        for run in results["delays"]:
            if run.get("latency_page_after") is not None or run["scenario"].startswith("lat"):
                continue
            n = len(run["events_after"])
            after = list(zip(run["events_after"], run["images_after"], strict=True))
            drift.setdefault(run["scenario"], []).append(
                (_vm_drift_score(run["p"], n).tolist(), after))
            mmd.setdefault(run["scenario"], []).append(
                ([math.nan if v is None else v for v in run["mmd"]], after))
        out["vm_drift"] = (null_drift, drift)
        out["vm_mmd"] = (null_mmd, mmd)
    peers = results.get("peers") or {}
    prow = (peers.get("false_alarms") or {}).get(DELAY_WINDOW, [])
    null_bbsd = [-float(r["bbsd_p"]) for r in prow if r.get("bbsd_p") is not None]
    if null_bbsd:
        bbsd: dict[str, Any] = {}
        for d in peers.get("delays", []):
            if d.get("bbsd_p"):
                bbsd.setdefault(d["scenario"], []).append(
                    ([-p for _, _, p in d["bbsd_p"]], [(e, i) for e, i, _ in d["bbsd_p"]]))
        out["bbsd"] = (null_bbsd, bbsd)
    return out


def match(results: dict[str, Any], rate: float,
          scored: dict[str, tuple[list[float], dict[str, Any]]] | None = None
          ) -> list[Matched]:
    """Every scored detector at the false-alarm share `rate` of no-drift windows (`scored`:
    `scores(results)`, when the caller has it); the delay of a scenario run with several
    seeds is their median (a miss counts as infinitely late)."""
    from benchmarks.detection.tables import median_delay

    out = []
    for det, (null, runs) in (scores(results) if scored is None else scored).items():
        cut = cutoff_at_rate(null, rate)
        arr = np.asarray(null, dtype=float)
        alarms = int(np.sum(np.where(np.isnan(arr), -math.inf, arr) > cut))
        delays = {name: median_delay([_first(s, cut, after) for s, after in seeds])
                  for name, seeds in runs.items()}
        out.append(Matched(det, cut, alarms, int(np.sum(~np.isnan(arr))), delays))
    return out


def _threshold(m: Matched) -> str:
    """The cutoff as the detector's own reading: p-value scores are stored negated."""
    if m.detector in ("vm_drift", "bbsd"):
        return f"p < {-m.cutoff:.3g}"
    return f"> {m.cutoff:.3g}"


def section(results: dict[str, Any], col: dict[str, Any],
            fa: dict[str, dict[str, tuple[int, int]]], rates: Sequence[float] = (0.01, 0.001)
            ) -> list[str]:
    """The page's section: each signal's expected run time before a false alarm at its
    default setting, then the scored detectors' delays at equal rates (a rate is shown only
    where the no-drift run has at least 1 / rate windows)."""
    from benchmarks.detection.tables import PEER_SIGNALS, VM_SIGNALS, fmt_delay, per_1000

    titles = {**VM_SIGNALS, **PEER_SIGNALS}
    lines = ["## At equal false-alarm rate", "",
             "Checked on disjoint windows of 1,000 requests, a detector that alarms on a share "
             "r of no-drift windows runs 1,000 / r requests, on average, before its first "
             f"false alarm (hours at {REQUEST_RATE:g} requests per second). At each signal's "
             "default setting:", "",
             "| signal | false alarms per 1,000 windows | expected run before a false alarm |",
             "|---|---|---|"]
    for sig, (a, n) in (fa.get(DELAY_WINDOW) or {}).items():
        if sig not in titles or n == 0:
            continue
        run = expected_run(a / n)
        text = (f"> {hours(expected_run(3 / n)):,.1f} h (none in {n:,} windows)" if a == 0
                else f"{run:,.0f} requests, {hours(run):,.1f} h")
        lines.append(f"| {titles[sig][0]} | {per_1000(a, n)} | {text} |")
    matched_by_rate = []
    scored = scores(results)
    n_null = max((len(v[0]) for v in scored.values()), default=0)
    for rate in rates:
        if n_null and n_null * rate >= 1:
            matched_by_rate.append((rate, match(results, rate, scored)))
    if not matched_by_rate:
        return [*lines, ""]
    dets = [m.detector for m in matched_by_rate[0][1]]
    lines += ["", "The detectors that record a score at every reading, each with its threshold "
              "moved until it alarms on the same share of the no-drift run's 1,000-request "
              "windows; delays in requests / images after the onset on covariate shifts "
              "(— = not detected within the stream). The rate is per disjoint window, while "
              "the delays are read on the sliding window every 50 requests: a detector read "
              "that often false-alarms sooner than the run time quoted, and by a factor that "
              "differs between detectors (how much consecutive readings move together).", ""]
    for rate, matched in matched_by_rate:
        run = expected_run(rate)
        lines += [f"### {1000 * rate:g} false alarms per 1,000 windows (expected run "
                  f"{run:,.0f} requests, {hours(run):,.1f} h)", "",
                  "| shift | sev | " + " | ".join(SCORED[d] for d in dets) + " |",
                  "|---|---|" + "---|" * len(dets),
                  "| threshold (no-drift windows past it) | | " + " | ".join(
                      f"{_threshold(m)} ({m.alarms} of {m.windows:,})" for m in matched) + " |"]
        caught = dict.fromkeys(dets, 0)
        total = 0
        for fam in col["covariate"]:
            for sev in range(1, 6):
                name = f"{fam}-s{sev}"
                if not any(name in m.delays for m in matched):
                    continue
                total += 1
                cells = []
                for m in matched:
                    d = m.delays.get(name)
                    caught[m.detector] += d is not None
                    cells.append(fmt_delay(d) if name in m.delays else "n/r")
                lines.append(f"| {fam} | {sev} | " + " | ".join(cells) + " |")
        lines.append("| **detected** | | " + " | ".join(
            f"**{caught[d]} of {total}**" for d in dets) + " |")
        lines.append("")
    return lines
