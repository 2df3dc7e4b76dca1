"""SLO spec -> Prometheus rule groups: pure functions, values as frozen dataclasses.

Per SLO, one group (evaluated in order, so alerts read recordings of the same cycle):

* `slo:sli_error:ratio_rate<w>` for every tier window and the SLO period: the fraction
  of bad events over `w`, summed `by (model[, version])` so the counters of several
  daemon replicas add up;
* meta recordings: objective, error budget, period in days, current burn rate (over
  the shortest window), period burn rate and the error budget left for the period;
* one `VisionmonErrorBudgetBurn` alert per burn-rate tier (Pyrra style), labelled
  `severity`, `slo`, `model` and the tier's windows and factor.

Metric names come from `monitor.catalog.metric()`, so a typo fails at build time.
"""

from __future__ import annotations

import string
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from alerts import names
from alerts.model import RolloutWindow, Slo
from alerts.templates import Label, Part, Query, Template, Text, Value, to_go
from alerts.windows import Tier
from monitor.catalog import metric
from monitor.durations import format_duration

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RecordingRule:
    record: str
    expr: str
    labels: Labels = ()


@dataclass(frozen=True, slots=True)
class AlertingRule:
    """An alert; `for_s` in seconds; annotations are templates (see `alerts.templates`)."""

    alert: str
    expr: str
    for_s: int
    labels: Labels
    annotations: tuple[tuple[str, Template], ...]


Rule = RecordingRule | AlertingRule


@dataclass(frozen=True, slots=True)
class RuleGroup:
    name: str
    rules: tuple[Rule, ...]


# --- PromQL text ---------------------------------------------------------------------


def number(x: float) -> str:
    """A float as PromQL text without a spurious `.0` (6.0 -> `6`, 14.4 -> `14.4`)."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def le_label(bound: float) -> str:
    """The `le` label value the exporter writes for a bucket bound (0.25 -> `0.25`,
    1.0 -> `1.0`), as prometheus_client does."""
    return repr(float(bound)) if bound != int(bound) else f"{bound:.1f}"


def selector(name: str, matchers: Mapping[str, str] | Sequence[str] = (), quote: str = '"'
             ) -> str:
    """`name{k="v",...}`. `matchers` is a mapping of equality matchers or ready-made
    matcher strings; `quote="'"` for queries embedded in annotation templates."""
    if isinstance(matchers, Mapping):
        parts = [f"{k}={quote}{v}{quote}" for k, v in matchers.items()]
    else:
        parts = list(matchers)
    return f"{name}{{{','.join(parts)}}}" if parts else name


def _eq(matchers: Mapping[str, str], quote: str = '"') -> list[str]:
    return [f"{k}={quote}{v}{quote}" for k, v in matchers.items()]


def error_ratio_expr(slo: Slo, window_s: int) -> str:
    """Fraction of bad events of `slo` over `window_s` seconds, per model (and version)."""
    w = format_duration(window_s)
    by = ", ".join(slo.group_by)
    m = [*_eq(slo.matchers), *slo.class_matcher]

    def rate(name: str, extra: Sequence[str] = ()) -> str:
        return f"sum by ({by}) (rate({selector(name, [*m, *extra])}[{w}]))"

    if slo.kind == "availability":
        requests = metric("requests_total")
        failed = rate(requests, ['status!="ok"'])
        return f"{failed}\n/\n{rate(requests)}\n"
    if slo.kind in LABELED_COUNTER:
        labeled = metric(LABELED_COUNTER[slo.kind])
        wrong = rate(labeled, ['outcome!="correct"'])
        return f"{wrong}\n/\n{rate(labeled)}\n"
    if slo.kind == "false_accept_rate":
        decisions = metric("acceptance_decisions_total")
        every = rate(decisions)
        false_accepts = rate(decisions, ['outcome="false_accept"'])
        # no false accept yet is 0, not no data: the ratio exists wherever labels do
        return f"(\n  {false_accepts}\n  or\n  0 * {every}\n)\n/\n{every}\n"
    if slo.kind == "latency":
        assert slo.latency_threshold_s is not None
        count = metric("request_latency_seconds") + "_count"
        bucket = metric("request_latency_seconds") + "_bucket"
        fast = rate(bucket, [f'le="{le_label(slo.latency_threshold_s)}"'])
        return f"(\n  {rate(count)}\n  -\n  {fast}\n)\n/\n{rate(count)}\n"
    assert slo.kind == "quality_windows" and slo.quality_objective is not None
    objective = [f'objective="{slo.quality_objective}"']
    total = rate(metric("eval_windows_total"), objective)
    good = rate(metric("eval_windows_good_total"), objective)
    return f"(\n  {total}\n  -\n  {good}\n)\n/\n{total}\n"


#: The labelled-prediction counter each label-judged SLI reads: by predicted class for
#: accuracy and precision, by true class for recall.
LABELED_COUNTER: dict[str, str] = {
    "accuracy": "labeled_predictions_total",
    "class_precision": "labeled_predictions_total",
    "class_recall": "labels_total",
}

#: The counter of all events of each SLI kind, and the label matchers it adds.
_ALL_EVENTS: dict[str, tuple[str, str]] = {
    "availability": ("requests_total", ""),
    "latency": ("request_latency_seconds", "_count"),
    **{kind: (counter, "") for kind, counter in LABELED_COUNTER.items()},
    "false_accept_rate": ("acceptance_decisions_total", ""),
    "quality_windows": ("eval_windows_total", ""),
}

#: A matcher on the alert's own class, filled by the annotation template (`Query.label_args`).
_ALERT_CLASS = "class=%q"


def events_expr(slo: Slo, window_s: int, quote: str = '"', alert_class: bool = False) -> str:
    """All events of the SLO's SLI counted over `window_s`, per model (and version, and
    class): the minimum-volume guard of label-judged SLOs, and what a burn-rate description
    says its long window holds (a daemon that started an hour ago has counted an hour of a
    3d window). `alert_class`: only the alerting class (`class=%q`, in a template)."""
    by = ", ".join(slo.group_by)
    short, suffix = _ALL_EVENTS[slo.kind]
    matchers = dict(slo.matchers)
    if slo.kind == "quality_windows":
        matchers["objective"] = slo.quality_objective or ""
    classes = [_ALERT_CLASS] if alert_class and slo.classes else list(slo.class_matcher)
    sel = selector(metric(short) + suffix, [*_eq(matchers, quote), *classes])
    return f"sum by ({by}) (increase({sel}[{format_duration(window_s)}]))"


def _slo_selector(record: str, slo: Slo, quote: str = '"', alert_class: bool = False) -> str:
    """A recording of this SLO; `alert_class`: only the alerting class's series."""
    matchers = _eq({names.SLO_LABEL: slo.name, **slo.matchers}, quote)
    return selector(record, [*matchers, *([_ALERT_CLASS] if alert_class and slo.classes
                                          else [])])


def _slo_labels(slo: Slo) -> Labels:
    return ((names.SLO_LABEL, slo.name),)


# --- SLO groups ----------------------------------------------------------------------


def sli_recordings(slo: Slo) -> tuple[RecordingRule, ...]:
    """Error-ratio recordings at every tier window and the SLO period."""
    return tuple(RecordingRule(names.sli_error_record(w), error_ratio_expr(slo, w),
                               _slo_labels(slo)) for w in slo.windows_s)


def meta_recordings(slo: Slo) -> tuple[RecordingRule, ...]:
    """Objective, budget, period, and the burn rates and budget left derived from them."""
    labels = _slo_labels(slo) + tuple(slo.matchers.items())
    shortest = names.sli_error_record(slo.windows_s[0])
    period = names.sli_error_record(slo.period_s)
    return (
        RecordingRule(names.OBJECTIVE, f"vector({slo.target_text})",
                      (*labels, ("kind", slo.kind))),
        RecordingRule(names.ERROR_BUDGET, f"vector({slo.budget_text})", labels),
        RecordingRule(names.TIME_PERIOD_DAYS, f"vector({number(slo.period_s / 86400)})",
                      labels),
        RecordingRule(names.CURRENT_BURN_RATE,
                      f"{_slo_selector(shortest, slo)} / {slo.budget_text}", labels),
        RecordingRule(names.PERIOD_BURN_RATE,
                      f"{_slo_selector(period, slo)} / {slo.budget_text}", labels),
        RecordingRule(names.PERIOD_BUDGET_REMAINING,
                      f"1 - {_slo_selector(names.PERIOD_BURN_RATE, slo)}", labels),
    )


def threshold_of(slo: Slo, tier: Tier) -> str:
    """`(14.4 * 0.001)`: the error-ratio threshold of a tier, as written in the rule."""
    return f"({number(tier.factor)} * {slo.budget_text})"


def burn_alert_expr(slo: Slo, tier: Tier) -> str:
    """Both windows above the tier's threshold (plus the min-volume guard for labelled
    SLIs)."""
    thr = threshold_of(slo, tier)
    long_sel = _slo_selector(names.sli_error_record(tier.long_s), slo)
    short_sel = _slo_selector(names.sli_error_record(tier.short_s), slo)
    expr = f"(\n  {long_sel} > {thr}\nand\n  {short_sel} > {thr}\n)\n"
    if slo.min_volume is not None:
        on = ", ".join(slo.group_by)
        expr += f"and on ({on})\n  {events_expr(slo, tier.long_s)} >= {slo.min_volume}\n"
    return expr


#: Per SLI kind: what its events are, and what a bad one did.
_BAD_EVENTS = {
    "availability": ("requests", "failed"),
    "accuracy": ("labeled predictions", "were wrong"),
    "class_recall": ("labeled images of the class", "were predicted as another class"),
    "class_precision": ("labeled predictions of the class", "were wrong"),
    "false_accept_rate": ("labeled predictions", "were false accepts"),
    "quality_windows": ("closed evaluation slices", "missed the {objective} objective"),
    "latency": ("requests", "took longer than {threshold}s"),
}


def burn_alert_labels(slo: Slo, tier: Tier) -> Labels:
    """Rule labels of a tier's alert (the series adds `model` and maybe `version`)."""
    return (
        (names.SEVERITY_LABEL, tier.severity),
        (names.SLO_LABEL, slo.name),
        ("long_window", tier.long),
        ("short_window", tier.short),
        ("burn_rate", number(tier.factor)),
    )


def burn_alert_annotations(slo: Slo, tier: Tier, runbook_url: str, dashboard_url: str
                           ) -> tuple[tuple[str, Template], ...]:
    """Summary, description (ratio, the events the long window holds, burn rate, budget
    left), runbook and dashboard. The event count says what the window holds: visionmon
    counts from its start, so a daemon up for minutes has minutes of a 3d window."""
    events, verb = _BAD_EVENTS[slo.kind]
    bad = verb.format(objective=slo.quality_objective,
                      threshold=number(slo.latency_threshold_s or 0))
    per_class = bool(slo.classes)
    args = ("class",) if per_class else ()
    long_sel = _slo_selector(names.sli_error_record(tier.long_s), slo, "'", per_class)
    remaining_sel = _slo_selector(names.PERIOD_BUDGET_REMAINING, slo, "'", per_class)
    adapted = ""
    if tier.configured_factor is not None:
        adapted = (f" (lowered from {number(tier.configured_factor)}x: a "
                   f"{_percent(slo.target_text)} target caps the burn rate at "
                   f"{number(round(slo.max_burn_rate, 2))}x)")
    which: Template = (Text(" for class "), Label("class")) if per_class else ()
    summary: Template = (
        Text(f"{slo.title} SLO"), *which,
        Text(f": error budget burning faster than {number(tier.factor)}x "
             f"({tier.long} and {tier.short} windows)"))
    description: Template = (
        Value("percent"),
        Text(" of the "),
        Query("events", events_expr(slo, tier.long_s, "'", per_class), "integer", args),
        Text(f" {events} visionmon counted over the last {tier.long} {bad}, a burn rate of "),
        Query("burn_rate", f"{long_sel} / {slo.budget_text}", "fixed1", args),
        Text(f"x the {_percent(slo.budget_text)} error budget; this {tier.severity} fires "
             f"above {number(tier.factor)}x{adapted}. Error budget left for the "
             f"{format_duration(slo.period_s)} period: "),
        Query("budget_left", remaining_sel, "percent", args),
        Text("."),
    )
    ctx = {"alert": names.SLO_ALERT, "slo": slo.name}
    return (
        ("summary", summary),
        ("description", description),
        ("runbook_url", url_template(runbook_url, ctx, Text(slo.model))),
        ("dashboard_url", url_template(dashboard_url, ctx, Text(slo.model))),
    )


def burn_alerts(slo: Slo, runbook_url: str, dashboard_url: str) -> tuple[AlertingRule, ...]:
    return tuple(
        AlertingRule(names.SLO_ALERT, burn_alert_expr(slo, tier), tier.for_s,
                     burn_alert_labels(slo, tier),
                     burn_alert_annotations(slo, tier, runbook_url, dashboard_url))
        for tier in slo.tiers)


def _above(ratio: str, threshold: str) -> str:
    """`(\n<a multi-line ratio>) > threshold`."""
    return f"(\n{textwrap.indent(ratio, '  ')}) > {threshold}\n"


def rollout_alert_expr(slo: Slo) -> str:
    """The rollout tier: per version, both windows above the tier's threshold (and the
    minimum volume), while the version's declared rollout lasts."""
    tier = slo.rollout_tier
    assert tier is not None
    per_version = replace(slo, split_versions=True)
    on = ", ".join(per_version.group_by)
    thr = threshold_of(slo, tier)
    expr = (_above(error_ratio_expr(per_version, tier.long_s), thr) + "and\n"
            + _above(error_ratio_expr(per_version, tier.short_s), thr))
    if slo.min_volume is not None:
        expr += f"and on ({on})\n  {events_expr(per_version, tier.long_s)} >= {slo.min_volume}\n"
    return expr + f"and on ({on})\n  {names.ROLLOUT_ACTIVE}\n"


def rollout_alert_labels(slo: Slo) -> Labels:
    assert slo.rollout_tier is not None
    return (*burn_alert_labels(slo, slo.rollout_tier), ("tier", names.ROLLOUT_TIER_LABEL))


def rollout_alert_annotations(slo: Slo, runbook_url: str, dashboard_url: str
                              ) -> tuple[tuple[str, Template], ...]:
    tier = slo.rollout_tier
    assert tier is not None
    events, verb = _BAD_EVENTS[slo.kind]
    bad = verb.format(objective=slo.quality_objective,
                      threshold=number(slo.latency_threshold_s or 0))
    ctx = {"alert": names.SLO_ALERT, "slo": slo.name}
    return (
        ("summary", (Text(f"{slo.title} SLO: "), Label("version"),
                     Text(f" burns its error budget faster than {number(tier.factor)}x during "
                          f"its rollout ({tier.long} and {tier.short} windows)"))),
        ("description", (
            Value("percent"), Text(f" of the {events} of "), Label("version"),
            Text(f" over the last {tier.long} {bad}. While its declared rollout "
                 "(slos.rollouts) lasts, this page fires above "
                 f"{number(tier.factor)}x the {_percent(slo.budget_text)} error budget, so a "
                 "bad canary is caught within minutes of its rollout."))),
        ("runbook_url", url_template(runbook_url, ctx, Text(slo.model))),
        ("dashboard_url", url_template(dashboard_url, ctx, Text(slo.model))),
    )


def rollout_alerts(slo: Slo, runbook_url: str, dashboard_url: str
                   ) -> tuple[AlertingRule, ...]:
    """The rollout tier's alert of an availability, latency or accuracy SLO (none else)."""
    if slo.rollout_tier is None:
        return ()
    return (AlertingRule(names.SLO_ALERT, rollout_alert_expr(slo), slo.rollout_tier.for_s,
                         rollout_alert_labels(slo),
                         rollout_alert_annotations(slo, runbook_url, dashboard_url)),)


def slo_group(slo: Slo, runbook_url: str, dashboard_url: str) -> RuleGroup:
    """All rules of one SLO, in evaluation order."""
    return RuleGroup(names.slo_group_name(slo.model, slo.name),
                     (*sli_recordings(slo), *meta_recordings(slo),
                      *burn_alerts(slo, runbook_url, dashboard_url),
                      *rollout_alerts(slo, runbook_url, dashboard_url)))


def rollout_group(rollouts: Sequence[RolloutWindow]) -> RuleGroup:
    """`visionmon:rollout_active:bool{model, version}` = 1 from each declared rollout's start
    to its end (Prometheus' clock), absent otherwise."""
    return RuleGroup(names.ROLLOUT_GROUP, tuple(
        RecordingRule(names.ROLLOUT_ACTIVE,
                      f"vector(1) and on () (vector(time()) >= {r.start_s} < {r.end_s})",
                      (("model", r.model), ("version", r.version)))
        for r in rollouts))


def unless_rollout() -> str:
    """What a ticket held back during a declared rollout appends to its expression."""
    return f"unless on (model, version)\n  {names.ROLLOUT_ACTIVE}\n"


def slo_groups(slos: Sequence[Slo], runbook_url: str, dashboard_url: str
               ) -> tuple[RuleGroup, ...]:
    return tuple(slo_group(s, runbook_url, dashboard_url) for s in slos)


# --- shared helpers ------------------------------------------------------------------


def url_template(template: str, ctx: Mapping[str, str], model: Part) -> Template:
    """Expand `{alert}`/`{slo}` now; `{model}` becomes `model` (a literal model name, or
    the alert's `model` label for threshold alerts)."""
    parts: list[Part] = []
    for literal, field, _, _ in string.Formatter().parse(template):
        if literal:
            parts.append(Text(literal))
        if field is None:
            continue
        parts.append(model if field == "model" else Text(ctx.get(field, "")))
    merged: list[Part] = []
    for p in parts:
        if merged and isinstance(p, Text) and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + p.text)
        else:
            merged.append(p)
    return tuple(merged)


def _percent(decimal_text: str) -> str:
    pct = float(decimal_text) * 100
    return f"{round(pct, 6):g}%"


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """One rule in Prometheus' rule-file shape."""
    if isinstance(rule, RecordingRule):
        out: dict[str, Any] = {"record": rule.record, "expr": rule.expr}
        if rule.labels:
            out["labels"] = dict(rule.labels)
        return out
    out = {"alert": rule.alert, "expr": rule.expr}
    if rule.for_s:
        out["for"] = format_duration(rule.for_s)
    out["labels"] = dict(rule.labels)
    out["annotations"] = {k: to_go(t) for k, t in rule.annotations}
    return out


def rule_file(groups: Sequence[RuleGroup]) -> dict[str, Any]:
    """A Prometheus rule file (`groups:`) for these groups."""
    return {"groups": [{"name": g.name, "rules": [rule_to_dict(r) for r in g.rules]}
                       for g in groups]}
