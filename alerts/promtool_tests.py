"""Generates the promtool unit-test file for the generated rules, from the spec alone.

For every SLO and every burn-rate tier a scenario is built and run through
`alerts.simulate`, and the test asserts what the model says, at the steps that matter:

* **tier fires on time**: healthy traffic, then a burn rate between the tier's factor
  and the next faster tier's (e.g. 2 % errors, 20x, against 99.9 % for the 14.4x tier):
  silent one step before the computed firing step, firing at it, still firing right
  after recovery, resolved when the short window clears;
* **burn just under budget**: 0.9x the slowest tier's factor, sustained: nothing fires;
* **minimum volume** (accuracy): every label wrong but too few labels: no page.

The healthy history before an incident is the shortest of the tiers' windows (up to
1 day) after which no other alert fires before the tested one; where none exists,
other tickets may fire alongside (never another page). Each threshold alert gets a
scenario too: fires after its `for:`, silent one step before, a series just inside
the bound (or a blip shorter than `for:`) never fires, and it resolves.

Expected values are computed with Prometheus 2.x range semantics (see
`alerts.simulate`); re-check after a Prometheus 3 upgrade.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alerts import names
from alerts.rules import AlertingRule, burn_alert_annotations, burn_alert_labels, le_label, number
from alerts.simulate import Segment, SloRun, Traffic, hold, run_slo, window_delta
from alerts.spec import AlertSpec, Slo
from alerts.templates import render
from alerts.thresholds import LABEL_COVERAGE_LOOKBACK, threshold_rules
from alerts.windows import Tier
from monitor.catalog import metric
from monitor.durations import format_duration, parse_duration

#: Events per step in SLO scenarios: large, so bad counts are whole numbers.
EVENTS_PER_STEP = 10_000
#: Longest healthy history put before an incident (seconds).
MAX_HISTORY_S = 86_400
#: Longest history a relaxed scenario prefers (one long window of the tier).
PREFERRED_HISTORY_S = 6 * 3600
#: "Nice" burn rates tried first for an incident (2 % errors against 99.9 % is 20x).
_NICE = (1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100)
#: Burn rate of the "just under budget" scenario, relative to the slowest tier.
UNDER_BUDGET = 0.9


class ScenarioError(ValueError):
    """No scenario could be built that shows a tier firing (the spec is unusual)."""


def step_seconds(spec: AlertSpec) -> int:
    """Evaluation step of the tests: 1 minute, or less if a duration needs it."""
    durations = [60, spec.period_s]
    for slo in spec.slos:
        durations += [d for t in slo.tiers for d in (t.long_s, t.short_s, t.for_s)]
        durations += list(slo.windows_s)
    th = spec.thresholds
    for c in (th.drift, th.ece, th.shadow_agreement, th.shadow_agreement_drop,
              th.label_coverage, th.consumer_lag,
              th.kafka_disconnected, th.no_events, th.rejected_ratio, th.reference_model_down):
        if c.enabled:
            durations += [c.for_s] + ([c.range_s] if c.range_s else [])
    return math.gcd(*durations)


def series_values(values: Sequence[float]) -> str:
    """promtool's expanding notation: runs of a constant step become `a+bxn`."""
    out, i = [], 0
    while i < len(values):
        j = i
        if i + 1 < len(values):
            d = values[i + 1] - values[i]
            j = i + 1
            while j + 1 < len(values) and values[j + 1] - values[j] == d:
                j += 1
        else:
            d = 0
        sign = "+" if d >= 0 else "-"
        out.append(f"{number(values[i])}{sign}{number(abs(d))}x{j - i}")
        i = j + 1
    return " ".join(out)


def _duration(steps: int, step_s: int) -> str:
    """A Prometheus duration, hours at most (`24h44m` reads better than `1484m`)."""
    seconds = steps * step_s
    if seconds == 0:
        return "0s"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v)


def _labels_text(name: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


# --- SLO scenarios ----------------------------------------------------------------------


def slo_input_series(slo: Slo, traffic: Traffic) -> list[dict[str, str]]:
    """The two counters an SLO reads, labelled like the daemon labels them."""
    base = {"model": slo.model, "version": slo.version or "v1"}
    total = traffic.total
    pairs: list[tuple[str, Sequence[int]]]
    if slo.kind == "availability":
        pairs = [(_labels_text(metric("requests_total"), {**base, "status": "ok"}), traffic.good),
                 (_labels_text(metric("requests_total"), {**base, "status": "error"}),
                  traffic.bad)]
    elif slo.kind == "accuracy":
        name = metric("labeled_predictions_total")
        pairs = [(_labels_text(name, {**base, "class": "c0", "outcome": "correct"}), traffic.good),
                 (_labels_text(name, {**base, "class": "c0", "outcome": "incorrect"}),
                  traffic.bad)]
    elif slo.kind == "latency":
        assert slo.latency_threshold_s is not None
        hist = metric("request_latency_seconds")
        pairs = [(_labels_text(f"{hist}_count", base), total),
                 (_labels_text(f"{hist}_bucket", {**base, "le": le_label(slo.latency_threshold_s)}),
                  traffic.good)]
    else:
        objective = {**base, "objective": slo.quality_objective or ""}
        pairs = [(_labels_text(metric("eval_windows_total"), objective), total),
                 (_labels_text(metric("eval_windows_good_total"), objective), traffic.good)]
    return [{"series": s, "values": series_values(v)} for s, v in pairs]


def slo_exp_alerts(spec: AlertSpec, run: SloRun, t: int) -> list[dict[str, Any]]:
    """What promtool should see firing for `VisionmonErrorBudgetBurn` at step `t`."""
    slo = run.slo
    out = []
    for i, state in sorted(run.firing[t].items()):
        tier = slo.tiers[i]
        labels = {**slo.matchers, **dict(burn_alert_labels(slo, tier))}
        queries = {"burn_rate": state.burn_rate, "budget_left": state.budget_left}
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
                    f"{_duration(h, step_s)} of healthy traffic {what} through the "
                    f"{number(tier.factor)}x {tier.long}/{tier.short} tier "
                    f"{_duration(fire - h, step_s)} after onset, not "
                    f"{_duration(1, step_s)} earlier, and resolves "
                    f"{_duration(resolved - stop, step_s)} after recovery")
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
            f"{_duration(length, step_s)}")
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
    name = (f"{slo.title}: every label wrong but one label per {_duration(1, step_s)}: fewer "
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
    return {
        "name": scenario.name,
        "interval": format_duration(step_s),
        "input_series": slo_input_series(scenario.slo, run.traffic),
        "alert_rule_test": [
            {"eval_time": _duration(t, step_s), "alertname": names.SLO_ALERT,
             "exp_alerts": slo_exp_alerts(spec, run, t)}
            for t in scenario.checks],
    }


# --- threshold scenarios ---------------------------------------------------------------


@dataclass(slots=True)
class Instance:
    """One alert instance: its labels, and per step the expression's value (None: the
    expression does not return it) and the annotation query results."""

    labels: dict[str, str]
    values: list[float | None]
    queries: list[dict[str, float | None]] = field(default_factory=list)
    fires: bool = False


@dataclass(slots=True)
class ThresholdCase:
    name: str
    rule: AlertingRule
    series: dict[str, list[float]]
    instances: list[Instance]
    step_s: int
    main: int = 0

    def firing(self) -> list[list[bool]]:
        steps = self.rule.for_s // self.step_s
        return [hold([v is not None for v in inst.values], steps) for inst in self.instances]

    def checks(self) -> tuple[int, ...]:
        timeline = self.firing()[self.main]
        fire = timeline.index(True)
        resolved = timeline.index(False, fire)
        return tuple(sorted({fire - 1, fire, resolved - 1, resolved, len(timeline) - 1}))

    def exp_alerts(self, t: int) -> list[dict[str, Any]]:
        out = []
        for inst, timeline in zip(self.instances, self.firing(), strict=True):
            if not timeline[t]:
                continue
            value = inst.values[t]
            assert value is not None
            labels = {**inst.labels, **dict(self.rule.labels)}
            queries = inst.queries[t] if inst.queries else {}
            out.append({"exp_labels": labels,
                        "exp_annotations": {k: render(tpl, labels, value, queries)
                                            for k, tpl in self.rule.annotations}})
        return out

    def to_test(self) -> dict[str, Any]:
        fire = self.firing()[self.main]
        assert True in fire, f"{self.name}: the main series never fires"
        for i, (inst, f) in enumerate(zip(self.instances, self.firing(), strict=True)):
            if i != self.main and any(f) != inst.fires:
                raise ScenarioError(f"{self.name}: series {inst.labels} "
                                    + ("never fires" if inst.fires else "fires"))
        return {
            "name": self.name,
            "interval": format_duration(self.step_s),
            "input_series": [{"series": s, "values": series_values(v)}
                             for s, v in self.series.items()],
            "alert_rule_test": [
                {"eval_time": _duration(t, self.step_s), "alertname": self.rule.alert,
                 "exp_alerts": self.exp_alerts(t)} for t in self.checks()],
        }


def _steps(*runs: tuple[int, float]) -> list[float]:
    """Concatenate (count, value) runs into a per-step gauge."""
    return [v for n, v in runs for _ in range(n)]


def _cumulative(increments: Iterable[float]) -> list[float]:
    out = [0.0]
    for inc in increments:
        out.append(out[-1] + inc)
    return out


def _gauge_case(rule: AlertingRule, step_s: int, name: str, metric_name: str,
                base: dict[str, str], bad: float, near: float, good: float,
                compare: Callable[[float], bool], fmt_near: str) -> ThresholdCase:
    """A gauge compared with a constant: a bad spell longer than `for:`, a series just
    inside the bound, and a bad blip one step shorter than `for:`."""
    f = rule.for_s // step_s
    lead, bad_len, tail = 5, f + 5, 5
    total = lead + bad_len + tail
    main = _steps((lead, good), (bad_len, bad), (tail, good))
    near_s = _steps((total, near))
    blip = _steps((lead, good), (max(f - 1, 0), bad), (total - lead - max(f - 1, 0), good))
    variants = [("main", main), ("near", near_s)] + ([("blip", blip)] if f >= 2 else [])
    series, instances = {}, []
    for tag, values in variants:
        labels = {**base, "model": f"{base.get('model', 'digits')}-{tag}"} if "model" in base \
            else {**base, "instance": tag}
        series[_labels_text(metric_name, labels)] = values
        instances.append(Instance(labels, [v if compare(v) else None for v in values]))
    blip_text = f", a {_duration(max(f - 1, 0), step_s)} blip" if f >= 2 else ""
    full = (f"{name} fires after {_duration(f, step_s)}, not {_duration(1, step_s)} earlier; "
            f"{fmt_near}{blip_text} never fires; it resolves when the value recovers")
    return ThresholdCase(full, rule, series, instances, step_s)


def drift_case(rule: AlertingRule, step_s: int, window: str) -> ThresholdCase:
    f = rule.for_s // step_s
    lead, bad_len, tail = 5, f + 5, 5
    total = lead + bad_len + tail
    threshold = 0.05
    variants = [("predicted_class", _steps((lead, 0.02), (bad_len, 0.08), (tail, 0.02))),
                ("confidence", _steps((total, 0.049)))]
    if f >= 2:
        variants.append(("margin", _steps((lead, 0.02), (f - 1, 0.08), (total - lead - f + 1,
                                                                         0.02))))
    series, instances = {}, []
    for feature, psi in variants:
        labels = {"model": "digits", "version": "v1", "feature": feature, "window": window}
        series[_labels_text(metric("drift_psi"), labels)] = psi
        series[_labels_text(metric("drift_threshold"), labels)] = _steps((total, threshold))
        instances.append(Instance(labels, [v if v > threshold else None for v in psi]))
    # the embedding MMD test: a statistic and critical value without a feature label
    mmd_labels = {"model": "digits", "version": "v2", "window": window}
    mmd = _steps((lead, 1.0), (bad_len, 4.5), (tail, 1.0))
    series[_labels_text(metric("embedding_mmd"), mmd_labels)] = mmd
    series[_labels_text(metric("embedding_mmd_threshold"), mmd_labels)] = _steps((total, 2.7))
    instances.append(Instance({**mmd_labels, "feature": names.EMBEDDING_MMD_FEATURE},
                              [v if v > 2.7 else None for v in mmd], fires=True))
    name = (f"drift: PSI above its threshold, or the embedding MMD statistic above its "
            f"critical value (as feature embedding_mmd), fires after {_duration(f, step_s)}, "
            f"not {_duration(1, step_s)} earlier; PSI just under the threshold"
            + (f" and a {_duration(f - 1, step_s)} blip" if f >= 2 else "")
            + " never fire; it resolves when the statistic drops")
    return ThresholdCase(name, rule, series, instances, step_s)


def lag_case(rule: AlertingRule, step_s: int, min_records: int, range_s: int) -> ThresholdCase:
    f, w = rule.for_s // step_s, range_s // step_s
    growth = max(100, min_records // 5)
    lead = 5
    grow_steps = min_records // growth + 2 + f + 5
    increments = [0.0] * lead + [float(growth)] * grow_steps + [0.0] * (w + 5)
    lag = _cumulative(increments)
    stable = [float(min_records * 5)] * len(lag)

    def growing(values: list[float], t: int) -> float | None:
        lo = max(0, t - w)
        window = values[lo:t + 1]
        if len(window) < 2 or not values[t] > min_records or min(window) == max(window):
            return None
        return values[t]

    labels_main = {"topic": "predictions", "partition": "0"}
    labels_stable = {"topic": "predictions", "partition": "1"}
    series = {_labels_text(metric("consumer_lag_records"), labels_main): lag,
              _labels_text(metric("consumer_lag_records"), labels_stable): stable}
    instances = [Instance(labels_main, [growing(lag, t) for t in range(len(lag))]),
                 Instance(labels_stable, [growing(stable, t) for t in range(len(lag))])]
    name = (f"consumer lag: lag above {min_records} records and growing fires after "
            f"{_duration(f, step_s)}, not {_duration(1, step_s)} earlier; a large stable lag "
            f"never fires; it resolves {format_duration(range_s)} after the lag stops growing")
    return ThresholdCase(name, rule, series, instances, step_s)


def no_events_case(rule: AlertingRule, step_s: int, range_s: int) -> ThresholdCase:
    w = range_s // step_s
    lead, gap, tail = 20, w + 5, 5
    per_step = 100.0
    incs = [per_step] * lead + [0.0] * gap + [per_step] * tail
    requests = _cumulative(incs)
    stop = lead
    last_ts = [float(min(i, stop) if i <= lead + gap else i) * step_s
               for i in range(len(requests))]
    sparse = _cumulative([1.0 if i % w == 0 else 0.0 for i in range(len(incs))])
    series = {
        _labels_text(metric("requests_total"),
                     {"model": "digits", "version": "v1", "status": "ok"}): requests,
        _labels_text(metric("last_event_timestamp_seconds"),
                     {"model": "digits", "version": "v1"}): last_ts,
        _labels_text(metric("requests_total"),
                     {"model": "fashion", "version": "v1", "status": "ok"}): sparse,
    }

    def quiet(c: list[float], t: int) -> float | None:
        d = window_delta(c, t, w)
        return 0.0 if d is not None and d == 0 else None

    n = len(requests)
    main = Instance({"model": "digits"}, [quiet(requests, t) for t in range(n)],
                    [{"age": float(t * step_s) - last_ts[t]} for t in range(n)])
    other = Instance({"model": "fashion"}, [quiet(sparse, t) for t in range(n)])
    name = (f"no events: a model without requests for {format_duration(range_s)} pages, not "
            f"{_duration(1, step_s)} earlier; a model with one request every "
            f"{format_duration(range_s)} never does; it resolves when requests resume")
    return ThresholdCase(name, rule, series, [main, other], step_s)


def rejected_case(rule: AlertingRule, step_s: int, bound: float, range_s: int
                  ) -> ThresholdCase:
    f, w = rule.for_s // step_s, range_s // step_s
    lead, bad_len, tail = 5, w + f + 5, w + 2
    n = lead + bad_len + tail
    rejected_per_step = math.ceil(2 * bound * 1000)
    near_rejected = math.ceil(bound * 1000) - 1
    topics = {
        "predictions": ([0.0] * lead + [float(rejected_per_step)] * bad_len + [0.0] * tail,
                        [float(1000 - rejected_per_step)] * n),
        "feedback": ([float(near_rejected)] * n, [float(1000 - near_rejected)] * n),
        "images": ([0.0] * lead + [10.0] * bad_len + [0.0] * tail, None),
    }
    series: dict[str, list[float]] = {}
    instances = []
    per_second = 1.0 / float(w * step_s)  # as Prometheus 2.x rate() does
    for topic, (rej_inc, acc_inc) in topics.items():
        rej = _cumulative(rej_inc)
        series[_labels_text(metric("records_rejected_total"),
                            {"topic": topic, "reason": "invalid_json"})] = rej
        acc = None
        if acc_inc is not None:
            acc = _cumulative(acc_inc)
            series[_labels_text(metric("events_accepted_total"), {"topic": topic})] = acc
        values: list[float | None] = []
        for t in range(n + 1):
            d_rej = window_delta(rej, t, w)
            if d_rej is None:
                values.append(None)
                continue
            r_rej = d_rej * per_second
            if acc is None:
                r_acc = 0 * r_rej
            else:
                d_acc = window_delta(acc, t, w)
                assert d_acc is not None
                r_acc = d_acc * per_second
            den = r_rej + r_acc
            ratio = r_rej / den if den else math.nan
            values.append(ratio if ratio > bound else None)
        instances.append(Instance({"topic": topic}, values, fires=topic == "images"))
    name = (f"rejected records: more than {number(bound * 100)}% rejected over "
            f"{format_duration(range_s)} fires after {_duration(f, step_s)}, not "
            f"{_duration(1, step_s)} earlier; {number(near_rejected / 10)}% never fires; a topic "
            "with only rejections fires too; it resolves when rejections stop")
    case = ThresholdCase(name, rule, series, instances, step_s)
    return case


def threshold_cases(spec: AlertSpec, step_s: int) -> list[ThresholdCase]:
    """One scenario per enabled threshold alert, in rule order."""
    th = spec.thresholds
    rules = {r.alert: r for r in threshold_rules(spec)}
    cases: list[ThresholdCase] = []
    base_mvw = {"model": "digits", "version": "v1"}
    if names.DRIFT_ALERT in rules:
        cases.append(drift_case(rules[names.DRIFT_ALERT], step_s, th.drift.window or ""))
    if names.ECE_ALERT in rules:
        b = th.ece.bound or 0.0
        cases.append(_gauge_case(
            rules[names.ECE_ALERT], step_s, "calibration: ECE above its bound",
            metric("calibration_ece"),
            {**base_mvw, "window": th.ece.window or "", "source": "labels"},
            bad=round(b + 0.05, 6), near=round(b - 0.001, 6), good=round(b / 2, 6),
            compare=lambda v: v > b, fmt_near=f"ECE {number(round(b - 0.001, 6))}"))
    if names.SHADOW_ALERT in rules:
        b = th.shadow_agreement.bound or 0.0
        cases.append(_gauge_case(
            rules[names.SHADOW_ALERT], step_s, "shadow agreement: agreement below its bound",
            metric("shadow_agreement_ratio"), {**base_mvw, "window": th.shadow_agreement.window
                                               or ""},
            bad=round(b - 0.1, 6), near=round(b + 0.001, 6), good=round((1 + b) / 2, 6),
            compare=lambda v: v < b, fmt_near=f"agreement {number(round(b + 0.001, 6))}"))
    if names.SHADOW_DROP_ALERT in rules:
        a = th.shadow_agreement_drop.bound or 0.0
        cases.append(_gauge_case(
            rules[names.SHADOW_DROP_ALERT], step_s,
            "shadow agreement drop: agreement significantly under the baseline's",
            metric("shadow_agreement_pvalue"),
            {**base_mvw, "window": th.shadow_agreement_drop.window or ""},
            bad=float(f"{a / 100:.3g}"), near=float(f"{a * 1.001:.6g}"), good=0.5,
            compare=lambda v: v < a, fmt_near=f"p-value {number(float(f'{a * 1.001:.6g}'))}"))
    if names.LABEL_COVERAGE_ALERT in rules:
        cases.append(coverage_case(rules[names.LABEL_COVERAGE_ALERT], step_s,
                                   th.label_coverage.bound or 0.0,
                                   th.label_coverage.window or ""))
    if names.CONSUMER_LAG_ALERT in rules:
        c = th.consumer_lag
        cases.append(lag_case(rules[names.CONSUMER_LAG_ALERT], step_s, c.min_records or 0,
                              c.range_s or step_s))
    if names.KAFKA_ALERT in rules:
        cases.append(_gauge_case(
            rules[names.KAFKA_ALERT], step_s, "kafka: a lost broker connection",
            metric("kafka_connected"), {}, bad=0.0, near=1.0, good=1.0,
            compare=lambda v: v == 0, fmt_near="a connected replica"))
    if names.NO_EVENTS_ALERT in rules:
        cases.append(no_events_case(rules[names.NO_EVENTS_ALERT], step_s,
                                    th.no_events.range_s or step_s))
    if names.REJECTED_ALERT in rules:
        c = th.rejected_ratio
        cases.append(rejected_case(rules[names.REJECTED_ALERT], step_s, c.bound or 0.0,
                                   c.range_s or step_s))
    if names.REFERENCE_DOWN_ALERT in rules:
        cases.append(_gauge_case(
            rules[names.REFERENCE_DOWN_ALERT], step_s, "reference model: shadow scoring down",
            metric("reference_model_up"), {"model": "digits"}, bad=0.0, near=1.0, good=1.0,
            compare=lambda v: v == 0, fmt_near="a running reference model"))
    return cases


def coverage_case(rule: AlertingRule, step_s: int, bound: float, window: str) -> ThresholdCase:
    f = rule.for_s // step_s
    lookback = parse_duration(LABEL_COVERAGE_LOOKBACK) // step_s
    lead, bad_len, tail = 5, f + 5, 5
    healthy, collapsed = round(bound * 20, 6), round(bound / 10, 6)
    main = _steps((lead, healthy), (bad_len, collapsed), (tail, healthy))
    never = _steps((lead + bad_len + tail, collapsed))
    series, instances = {}, []
    for model, values in (("digits", main), ("fashion", never)):
        labels = {"model": model, "version": "v1", "window": window}
        series[_labels_text(metric("label_coverage_ratio"), labels)] = values
        instances.append(Instance(labels, [
            v if v < bound and max(values[max(0, t - lookback):t + 1]) >= bound else None
            for t, v in enumerate(values)]))
    name = (f"label coverage: a drop below {number(bound * 100)}% fires after "
            f"{_duration(f, step_s)}, not {_duration(1, step_s)} earlier; a model that never "
            "had labels never fires; it resolves when labels return")
    return ThresholdCase(name, rule, series, instances, step_s)


# --- the file -----------------------------------------------------------------------------


def _document(rule_files: Sequence[str], step_s: int, tests: list[dict[str, Any]]
              ) -> dict[str, Any]:
    return {"rule_files": list(rule_files), "evaluation_interval": format_duration(step_s),
            "tests": tests}


def slo_test_document(spec: AlertSpec, slo: Slo, rule_files: Sequence[str]) -> dict[str, Any]:
    """The promtool test document for one SLO's rule file."""
    step_s = step_seconds(spec)
    return _document(rule_files, step_s, [slo_test(spec, s) for s in slo_scenarios(slo, step_s)])


def threshold_test_document(spec: AlertSpec, rule_files: Sequence[str]) -> dict[str, Any]:
    """The promtool test document for the threshold rule file."""
    step_s = step_seconds(spec)
    return _document(rule_files, step_s,
                     [case.to_test() for case in threshold_cases(spec, step_s)])
