"""Generates the promtool unit-test file for the generated rules, from the spec alone.

For every SLO and every burn-rate tier a scenario is built and run through
`alerts.simulate`, and the test asserts what the model says, at the steps that matter:

* **tier fires on time**: healthy traffic, then a burn rate between the tier's factor
  and the next faster tier's (e.g. 2 % errors, 20x, against 99.9 % for the 14.4x tier):
  silent one step before the computed firing step, firing at it, still firing right
  after recovery, resolved when the short window clears;
* **burn just under budget**: 0.9x the slowest tier's factor, sustained: nothing fires;
* **minimum volume** (accuracy, false accepts): every label bad but too few labels: no
  page.

The healthy history before an incident is the shortest of the tiers' windows (up to
1 day) after which no other alert fires before the tested one; where none exists,
other tickets may fire alongside (never another page). Each threshold alert gets the
case its row of `alerts.checks.CHECKS` names (`alerts.threshold_cases`).

Expected values are computed with Prometheus 2.x range semantics (see
`alerts.simulate`); re-check after a Prometheus 3 upgrade.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alerts import names
from alerts.checks import threshold_cases
from alerts.model import AlertSpec, Slo
from alerts.rules import (
    LABELED_COUNTER,
    burn_alert_annotations,
    burn_alert_labels,
    le_label,
    number,
    rollout_alert_annotations,
    rollout_alert_labels,
)
from alerts.scenario import ScenarioError, labels_text, series_values, steps_text
from alerts.simulate import Segment, SloRun, Traffic, hold, run_slo, tier_values, window_delta
from alerts.templates import render
from alerts.windows import Tier
from monitor.catalog import metric
from monitor.durations import format_duration

#: Events per step in SLO scenarios: large, so bad counts are whole numbers.
EVENTS_PER_STEP = 10_000
#: Longest healthy history put before an incident (seconds).
MAX_HISTORY_S = 86_400
#: Longest history a relaxed scenario prefers (one long window of the tier).
PREFERRED_HISTORY_S = 6 * 3600
#: "Nice" burn rates tried first for an incident (2 % errors against 99.9 % is 20x).
_NICE = (1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100)
#: A class no class objective judges: its input series is all bad and must never alert.
OUTSIDE_CLASS = "class-outside-the-objective"
#: Burn rate of the "just under budget" scenario, relative to the slowest tier.
UNDER_BUDGET = 0.9


def step_seconds(spec: AlertSpec) -> int:
    """Evaluation step of the tests: 1 minute, or less if a duration needs it."""
    durations = [60, spec.period_s]
    for slo in spec.slos:
        tiers = (*slo.tiers, *([slo.rollout_tier] if slo.rollout_tier is not None else []))
        durations += [d for t in tiers for d in (t.long_s, t.short_s, t.for_s)]
        durations += list(slo.windows_s)
    for c in spec.thresholds.enabled():
        durations += [c.for_s] + ([c.range_s] if c.range_s else [])
    return math.gcd(*durations)


# --- SLO scenarios ----------------------------------------------------------------------


def slo_input_series(slo: Slo, traffic: Traffic, version: str | None = None
                     ) -> list[dict[str, str]]:
    """The two counters an SLO reads, labelled like the daemon labels them (`version`:
    the version label; default the SLO's, else v1)."""
    base = {"model": slo.model, "version": version or slo.version or "v1"}
    total = traffic.total
    pairs: list[tuple[str, Sequence[int]]]
    if slo.kind == "availability":
        pairs = [(labels_text(metric("requests_total"), {**base, "status": "ok"}), traffic.good),
                 (labels_text(metric("requests_total"), {**base, "status": "error"}),
                  traffic.bad)]
    elif slo.kind in LABELED_COUNTER:
        name = metric(LABELED_COUNTER[slo.kind])
        cls = {"class": slo.classes[0] if slo.classes else "c0"}
        pairs = [(labels_text(name, {**base, **cls, "outcome": "correct"}), traffic.good),
                 (labels_text(name, {**base, **cls, "outcome": "incorrect"}), traffic.bad)]
        if slo.classes:
            # a class outside the objective, every label wrong: it must never alert
            pairs.append((labels_text(name, {**base, "class": OUTSIDE_CLASS,
                                             "outcome": "incorrect"}), total))
    elif slo.kind == "false_accept_rate":
        name = metric("acceptance_decisions_total")
        accepted = {**base, "decision": "accepted", "class": "c0"}
        pairs = [(labels_text(name, {**accepted, "outcome": "correct", "true_class": "c0"}),
                  traffic.good),
                 (labels_text(name, {**accepted, "outcome": "false_accept", "true_class": "c1"}),
                  traffic.bad)]
    elif slo.kind == "latency":
        assert slo.latency_threshold_s is not None
        hist = metric("request_latency_seconds")
        pairs = [(labels_text(f"{hist}_count", base), total),
                 (labels_text(f"{hist}_bucket", {**base, "le": le_label(slo.latency_threshold_s)}),
                  traffic.good)]
    else:
        objective = {**base, "objective": slo.quality_objective or ""}
        pairs = [(labels_text(metric("eval_windows_total"), objective), total),
                 (labels_text(metric("eval_windows_good_total"), objective), traffic.good)]
    return [{"series": s, "values": series_values(v)} for s, v in pairs]


def slo_exp_alerts(spec: AlertSpec, run: SloRun, t: int) -> list[dict[str, Any]]:
    """What promtool should see firing for `VisionmonErrorBudgetBurn` at step `t`."""
    slo = run.slo
    out = []
    for i, state in sorted(run.firing[t].items()):
        tier = slo.tiers[i]
        cls = {"class": slo.classes[0]} if slo.classes else {}
        labels = {**slo.matchers, **cls, **dict(burn_alert_labels(slo, tier))}
        events = window_delta(run.traffic.total, t, tier.long_s // run.step_s)
        queries = {"burn_rate": state.burn_rate, "budget_left": state.budget_left,
                   "events": None if events is None else float(events)}
        annotations = {k: render(tpl, labels, state.value, queries) for k, tpl in
                       burn_alert_annotations(slo, tier, spec.runbook_url, spec.dashboard_url)}
        out.append({"exp_labels": labels, "exp_annotations": annotations})
    return out


@dataclass(frozen=True, slots=True)
class SloScenario:
    """A sentence, the traffic, and the steps at which alerts are asserted."""

    name: str
    slo: Slo
    segments: tuple[Segment, ...]
    checks: tuple[int, ...]
    step_s: int

    def run(self) -> SloRun:
        return run_slo(self.slo, Traffic.of(self.segments), self.step_s)


def incident_burn_rate(slo: Slo, tier: Tier) -> float:
    """A burn rate above `tier` but below every faster tier (and the maximum)."""
    above = [t.factor for t in slo.tiers if t.factor > tier.factor]
    ceiling = min([*above, slo.max_burn_rate])
    for nice in _NICE:
        if tier.factor * 1.25 <= nice < ceiling:
            return float(nice)
    return (tier.factor + ceiling) / 2


def _bad_per_step(rate_x: float, slo: Slo, round_down: bool = False) -> int:
    exact = rate_x * slo.budget * EVENTS_PER_STEP
    bad = math.floor(exact) if round_down else round(exact)
    return min(bad, EVENTS_PER_STEP)


def _quiet_before(run: SloRun, target: int, start: int, fire: int, strict: bool) -> bool:
    """Nothing (strict) or no other page fires in [start, fire]; only `target` at `fire`."""
    tiers = run.slo.tiers
    for t in range(start, fire + 1):
        others = [i for i in run.firing[t] if i != target]
        if strict and others:
            return False
        if any(tiers[i].severity == "page" for i in others):
            return False
    return True


def _no_page(run: SloRun, target: int) -> bool:
    return not any(run.slo.tiers[i].severity == "page" for step in run.firing for i in step
                   if i != target)


def _acceptable(run: SloRun, target: int, start: int, fire: int, strict: bool) -> bool:
    """Strict: nothing else fires from `start` to `fire`. Always: no other page fires
    before a tested page, and no page at all in a ticket's scenario."""
    if strict and not _quiet_before(run, target, start, fire, True):
        return False
    if run.slo.tiers[target].severity == "ticket":
        return _no_page(run, target)
    return _quiet_before(run, target, start, fire, False)


def tier_scenario(slo: Slo, index: int, step_s: int) -> SloScenario:
    """Incident scenario proving tier `index` fires on time and resolves."""
    tier = slo.tiers[index]
    r = incident_burn_rate(slo, tier)
    bad = _bad_per_step(r, slo)
    long_w, short_w = tier.long_s // step_s, tier.short_s // step_s
    longest = max(t.long_s for t in slo.tiers)
    windows = sorted({w // step_s for t in slo.tiers for w in (t.long_s, t.short_s)
                      if w <= MAX_HISTORY_S} | {min(MAX_HISTORY_S, longest) // step_s})
    # Relaxed: a history of one long window shows the workbook's arithmetic (fires after
    # factor / rate of the long window); beyond 6 h that costs too much test time.
    preferred = ([long_w] if tier.long_s <= PREFERRED_HISTORY_S else []) + [short_w]
    relaxed = list(dict.fromkeys([*preferred, *windows]))
    for strict, candidates in ((True, windows), (False, relaxed)):
        for h in candidates:
            probe = (Segment(h, EVENTS_PER_STEP, 0),
                     Segment(long_w + short_w + tier.for_s // step_s + 1, EVENTS_PER_STEP, bad))
            run = run_slo(slo, Traffic.of(probe), step_s)
            fire = run.first_firing(index, h)
            if fire is None or fire == h:
                continue
            if not _acceptable(run, index, h, fire, strict):
                continue
            burn_steps = fire - h + short_w
            segments = (Segment(h, EVENTS_PER_STEP, 0), Segment(burn_steps, EVENTS_PER_STEP, bad),
                        Segment(short_w + 1, EVENTS_PER_STEP, 0))
            full = run_slo(slo, Traffic.of(segments), step_s)
            stop = h + burn_steps
            resolved = full.first_silent(index, stop + 1)
            if full.first_firing(index, h) != fire or resolved is None:
                continue
            if tier.severity == "ticket" and not _no_page(full, index):
                continue
            checks = tuple(sorted({h, fire - 1, fire, resolved - 1, resolved}))
            pct = number(round(bad / EVENTS_PER_STEP * 100, 4))
            what = "pages" if tier.severity == "page" else "opens a ticket"
            name = (f"{slo.title}: {pct}% bad events ({number(round(r, 2))}x the budget) after "
                    f"{steps_text(h, step_s)} of healthy traffic {what} through the "
                    f"{number(tier.factor)}x {tier.long}/{tier.short} tier "
                    f"{steps_text(fire - h, step_s)} after onset, not "
                    f"{steps_text(1, step_s)} earlier, and resolves "
                    f"{steps_text(resolved - stop, step_s)} after recovery")
            return SloScenario(name, slo, segments, checks, step_s)
    raise ScenarioError(f"{slo.title}: no history up to {format_duration(MAX_HISTORY_S)} shows "
                        f"the {number(tier.factor)}x {tier.long}/{tier.short} tier firing before "
                        "any other page")


def under_budget_scenario(slo: Slo, step_s: int) -> SloScenario:
    """A sustained burn just under the slowest tier: nothing fires."""
    slowest = min(t.factor for t in slo.tiers)
    bad = _bad_per_step(UNDER_BUDGET * slowest, slo, round_down=True)
    length = max(t.short_s + t.for_s for t in slo.tiers) // step_s + 1
    checks = tuple(sorted({t.short_s // step_s for t in slo.tiers} | {length}))
    pct = number(round(bad / EVENTS_PER_STEP * 100, 4))
    rate_x = bad / EVENTS_PER_STEP / slo.budget
    name = (f"{slo.title}: {pct}% bad events ({number(round(rate_x, 3))}x the budget, just under "
            f"the slowest {number(slowest)}x tier) fire nothing for "
            f"{steps_text(length, step_s)}")
    scenario = SloScenario(name, slo, (Segment(length, EVENTS_PER_STEP, bad),), checks, step_s)
    if any(scenario.run().firing):
        raise ScenarioError(f"{name}: something fires")
    return scenario


def min_volume_scenario(slo: Slo, step_s: int) -> SloScenario | None:
    """Accuracy only: one wrong label per step; the guard keeps the fast tier silent."""
    if slo.min_volume is None:
        return None
    pages = [t for t in slo.tiers if t.severity == "page"]
    if not pages or pages[0].long_s // step_s >= slo.min_volume:
        return None
    fast = pages[0]
    length = slo.min_volume + 1
    checks = (slo.min_volume - 1, slo.min_volume, length)
    name = (f"{slo.title}: every label wrong but one label per {steps_text(1, step_s)}: fewer "
            f"than {slo.min_volume} labels in {fast.long} never page; slower tiers open "
            f"tickets once {slo.min_volume} labels arrived")
    return SloScenario(name, slo, (Segment(length, 1, 1),), checks, step_s)


def slo_scenarios(slo: Slo, step_s: int) -> list[SloScenario]:
    out = [tier_scenario(slo, i, step_s) for i in range(len(slo.tiers))]
    out.append(under_budget_scenario(slo, step_s))
    guard = min_volume_scenario(slo, step_s)
    if guard is not None:
        out.append(guard)
    return out


def slo_test(spec: AlertSpec, scenario: SloScenario) -> dict[str, Any]:
    run = scenario.run()
    step_s = scenario.step_s
    outside = (f"; {OUTSIDE_CLASS}, every label wrong, never alerts" if scenario.slo.classes
               else "")
    return {
        "name": scenario.name + outside,
        "interval": format_duration(step_s),
        "input_series": slo_input_series(scenario.slo, run.traffic),
        "alert_rule_test": [
            {"eval_time": steps_text(t, step_s), "alertname": names.SLO_ALERT,
             "exp_alerts": slo_exp_alerts(spec, run, t)}
            for t in scenario.checks],
    }


# --- the rollout tier ---------------------------------------------------------------------

#: The canary version of a rollout scenario (when the SLO names no version) and the other.
CANARY, STABLE = "v2", "v1"


def _doubled(segments: Sequence[Segment]) -> tuple[Segment, ...]:
    """Two versions' identical traffic, summed (what a model-wide SLI counts)."""
    return tuple(Segment(s.steps, 2 * s.events, 2 * s.bad) for s in segments)


def rollout_test(spec: AlertSpec, slo: Slo, step_s: int) -> dict[str, Any] | None:
    """The rollout tier of an availability, latency or accuracy SLO: the canary, in its
    declared rollout, burning between the tier's factor and the next faster tier's pages
    through the rollout tier and nothing else does; for a model-wide SLO, another version
    burning the same way without a rollout never pages through it."""
    tier = slo.rollout_tier
    if tier is None:
        return None
    canary = slo.version or CANARY
    long_w, short_w = tier.long_s // step_s, tier.short_s // step_s
    above = [t.factor for t in slo.tiers if t.factor > tier.factor]
    ceiling = min([*above, slo.max_burn_rate])
    rate_x = next((float(n) for n in _NICE if tier.factor * 1.25 <= n < ceiling),
                  (tier.factor + ceiling) / 2)
    bad = _bad_per_step(rate_x, slo)
    burn = long_w + short_w + tier.for_s // step_s + 1
    histories = sorted({w // step_s for t in slo.tiers for w in (t.long_s, t.short_s)
                        if w <= MAX_HISTORY_S} | {MAX_HISTORY_S // step_s})
    for h in histories:
        segments = (Segment(h, EVENTS_PER_STEP, 0), Segment(burn, EVENTS_PER_STEP, bad),
                    Segment(short_w + 1, EVENTS_PER_STEP, 0))
        model_wide = run_slo(slo, Traffic.of(segments if slo.version else _doubled(segments)),
                             step_s)
        if not any(model_wide.firing):
            break
    else:
        raise ScenarioError(f"{slo.title}: no healthy history keeps the other tiers quiet "
                            f"while the {number(tier.factor)}x rollout tier is tested")
    traffic = Traffic.of(segments)
    values = tier_values(slo, tier, traffic, step_s)
    firing = hold([not np.isnan(v) for v in values], tier.for_s // step_s)
    fire = firing.index(True)
    resolved = firing.index(False, fire)
    checks = sorted({h, fire - 1, fire, resolved - 1, resolved, len(firing) - 1})
    labels = {"model": slo.model, "version": canary, **dict(rollout_alert_labels(slo))}
    annotations = rollout_alert_annotations(slo, spec.runbook_url, spec.dashboard_url)

    def expected(t: int) -> list[dict[str, Any]]:
        if not firing[t]:
            return []
        value = float(values[t])
        return [{"exp_labels": labels,
                 "exp_annotations": {k: render(tpl, labels, value) for k, tpl in annotations}}]

    series = slo_input_series(slo, traffic, canary)
    if slo.version is None:
        series += slo_input_series(slo, traffic, STABLE)
    steps = len(firing)
    series.append({"series": labels_text(names.ROLLOUT_ACTIVE,
                                         {"model": slo.model, "version": canary}),
                   "values": series_values([1.0] * steps)})
    pct = number(round(bad / EVENTS_PER_STEP * 100, 4))
    other = (f"; {STABLE}, burning the same without a rollout, never pages through it"
             if slo.version is None else "")
    name = (f"{slo.title}: during its declared rollout, {canary} at {pct}% bad events "
            f"({number(round(rate_x, 2))}x the budget) after {steps_text(h, step_s)} of healthy "
            f"traffic pages through the {number(tier.factor)}x {tier.long}/{tier.short} rollout "
            f"tier {steps_text(fire - h, step_s)} after onset, not {steps_text(1, step_s)} "
            f"earlier, and no other tier fires{other}")
    return {
        "name": name,
        "interval": format_duration(step_s),
        "input_series": series,
        "alert_rule_test": [{"eval_time": steps_text(t, step_s), "alertname": names.SLO_ALERT,
                             "exp_alerts": expected(t)} for t in checks],
    }


# --- the file -----------------------------------------------------------------------------


def _document(rule_files: Sequence[str], step_s: int, tests: list[dict[str, Any]]
              ) -> dict[str, Any]:
    return {"rule_files": list(rule_files), "evaluation_interval": format_duration(step_s),
            "tests": tests}


def slo_test_document(spec: AlertSpec, slo: Slo, rule_files: Sequence[str]) -> dict[str, Any]:
    """The promtool test document for one SLO's rule file."""
    step_s = step_seconds(spec)
    tests = [slo_test(spec, s) for s in slo_scenarios(slo, step_s)]
    rollout = rollout_test(spec, slo, step_s)
    return _document(rule_files, step_s, tests + ([rollout] if rollout is not None else []))


def threshold_test_document(spec: AlertSpec, rule_files: Sequence[str]) -> dict[str, Any]:
    """The promtool test document for the threshold rule file."""
    step_s = step_seconds(spec)
    return _document(rule_files, step_s,
                     [case.to_test() for case in threshold_cases(spec, step_s)])
