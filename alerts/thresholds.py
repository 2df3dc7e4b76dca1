"""Plain threshold alerts (not SLOs): one pure function per check, spec -> rule.

Pages: Kafka disconnected and no events (the model, or the monitor, is blind).
Tickets by default: drift, calibration, shadow agreement, label coverage, consumer lag,
rejected records and the reference model (slow or partial degradation). Severities
can be changed per check in `slos.thresholds`.
"""

from __future__ import annotations

from alerts import names
from alerts.rules import AlertingRule, RuleGroup, number, selector, url_template
from alerts.spec import AlertSpec, Check, Thresholds
from alerts.templates import Label, Part, Query, Template, Text, Value
from monitor.catalog import metric
from monitor.durations import format_duration


def _links(spec: AlertSpec, alert: str, check: str, model: Part
           ) -> tuple[tuple[str, Template], ...]:
    ctx = {"alert": alert, "slo": check}
    return (("runbook_url", url_template(spec.runbook_url, ctx, model)),
            ("dashboard_url", url_template(spec.dashboard_url, ctx, model)))


def _rule(spec: AlertSpec, alert: str, check_name: str, check: Check, expr: str,
          summary: Template, description: Template, has_model: bool) -> AlertingRule:
    model: Part = Label("model") if has_model else Text("All")
    return AlertingRule(
        alert, expr, check.for_s,
        ((names.SEVERITY_LABEL, check.severity), ("check", check_name)),
        (("summary", summary), ("description", description),
         *_links(spec, alert, check_name, model)))


_MV = (Label("model"), Text(" "), Label("version"))


def drift_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    """Any drift test of a (model, version) above its critical value: each feature's PSI, or
    the embedding MMD statistic (labelled feature="embedding_mmd"). With the daemon's
    defaults the tests share `drift.alpha` (weighted Bonferroni), so on no drift the
    condition holds in at most that share of windows."""
    w = {"window": c.window or ""}
    mmd = (f"{selector(metric('embedding_mmd'), w)}\n"
           f"      > {selector(metric('embedding_mmd_threshold'), w)}")
    expr = (f"{selector(metric('drift_psi'), w)}\n  > {selector(metric('drift_threshold'), w)}\n"
            f"or\n  label_replace(\n      {mmd},\n"
            f"    \"feature\", \"{names.EMBEDDING_MMD_FEATURE}\", \"\", \"\")\n")
    return _rule(spec, names.DRIFT_ALERT, "drift", c, expr,
                 (*_MV, Text(": "), Label("feature"), Text(" drifted from the baseline")),
                 (Text("The drift statistic of "), Label("feature"),
                  Text(f" over the {c.window} window is "), Value("fixed3"),
                  Text(", above its critical value for "
                       f"{format_duration(c.for_s)} (PSI for a feature; the standardised "
                       "MMD² for embedding_mmd).")),
                 True)


def ece_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    assert c.bound is not None
    sel = selector(metric("calibration_ece"), {"window": c.window or ""})
    expr = f"{sel} > {number(c.bound)}\n"
    return _rule(spec, names.ECE_ALERT, "ece", c, expr,
                 (*_MV, Text(": confidence is miscalibrated")),
                 (Text(f"Expected calibration error over the {c.window} window is "),
                  Value("fixed3"), Text(f" (bound {number(c.bound)}, source "),
                  Label("source"), Text(")."),),
                 True)


def shadow_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    assert c.bound is not None
    sel = selector(metric("shadow_agreement_ratio"), {"window": c.window or ""})
    return _rule(spec, names.SHADOW_ALERT, "shadow_agreement", c, f"{sel} < {number(c.bound)}\n",
                 (*_MV, Text(": production disagrees with the reference model")),
                 (Text(f"Agreement with the reference model over the {c.window} window is "),
                  Value("percent"), Text(f" (bound {number(c.bound * 100)}%).")),
                 True)


def shadow_drop_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    """Agreement with the reference model significantly under the baseline's: the daemon's
    one-sided test per production class and overall (weighted-Bonferroni p-value) below
    alpha. Unlike the fixed bound it needs no minimum of joined images, so a new version
    that breaks one class is seen from its first few dozen images."""
    assert c.bound is not None
    sel = selector(metric("shadow_agreement_pvalue"), {"window": c.window or ""})
    return _rule(spec, names.SHADOW_DROP_ALERT, "shadow_agreement_drop", c,
                 f"{sel} < {number(c.bound)}\n",
                 (*_MV, Text(": agreement with the reference model fell below the baseline's")),
                 (Text(f"Over the {c.window} window, agreement with the reference model is "
                       "below the baseline's, for one production class or overall: p-value "),
                  Value("sci2"),
                  Text(f" (level {number(c.bound)}); the debug dashboard shows agreement by "
                       "class.")),
                 True)


def label_coverage_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    """Coverage below the bound although it was above it within the last day: the label
    pipeline broke (a model that never had labels does not alert)."""
    assert c.bound is not None
    sel = selector(metric("label_coverage_ratio"), {"window": c.window or ""})
    b = number(c.bound)
    expr = f"{sel} < {b}\nand\n  max_over_time({sel}[{LABEL_COVERAGE_LOOKBACK}]) >= {b}\n"
    return _rule(spec, names.LABEL_COVERAGE_ALERT, "label_coverage", c, expr,
                 (*_MV, Text(": ground-truth labels stopped arriving")),
                 (Text("Only "), Value("percent"),
                  Text(f" of predictions got a label over the {c.window} window (bound "
                       f"{number(c.bound * 100)}%), down from at least that within the last "
                       f"{LABEL_COVERAGE_LOOKBACK}.")),
                 True)


#: How far back label coverage must have been healthy for a drop to count as a collapse.
LABEL_COVERAGE_LOOKBACK = "1d"


def consumer_lag_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    assert c.range_s is not None and c.min_records is not None
    lag = metric("consumer_lag_records")
    expr = (f"{lag} > {c.min_records}\nand\n  deriv({lag}[{format_duration(c.range_s)}]) > 0\n")
    return _rule(spec, names.CONSUMER_LAG_ALERT, "consumer_lag", c, expr,
                 (Text("visionmon is falling behind on "), Label("topic"), Text("/"),
                  Label("partition")),
                 (Text("Consumer lag is "), Value("integer"),
                  Text(f" records and has kept growing for {format_duration(c.for_s)}; "
                       "metrics are going stale.")),
                 False)


def kafka_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    return _rule(spec, names.KAFKA_ALERT, "kafka_disconnected", c,
                 f"{metric('kafka_connected')} == 0\n",
                 (Text("visionmon lost its Kafka connection"),),
                 (Text(f"No broker connection for {format_duration(c.for_s)}: no prediction "
                       "is being monitored."),),
                 False)


def no_events_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    assert c.range_s is not None
    after = format_duration(c.range_s)
    expr = f"sum by (model) (increase({metric('requests_total')}[{after}])) == 0\n"
    last = metric("last_event_timestamp_seconds")
    return _rule(spec, names.NO_EVENTS_ALERT, "no_events", c, expr,
                 (Label("model"), Text(f": no prediction events for {after}")),
                 (Text("No request reached visionmon for model "), Label("model"),
                  Text(f" in the last {after}; the newest event seen is "),
                  Query("age", f"time() - max({last}{{model=%q}})", "duration", ("model",)),
                  Text(" old.")),
                 True)


def rejected_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    assert c.range_s is not None and c.bound is not None
    w = format_duration(c.range_s)
    rejected = f"sum by (topic) (rate({metric('records_rejected_total')}[{w}]))"
    accepted = f"sum by (topic) (rate({metric('events_accepted_total')}[{w}]))"
    expr = (f"{rejected}\n/\n(\n  {rejected}\n  +\n  ({accepted} or 0 * {rejected})\n)\n"
            f"> {number(c.bound)}\n")
    return _rule(spec, names.REJECTED_ALERT, "rejected_ratio", c, expr,
                 (Text("Records on "), Label("topic"), Text(" are being rejected")),
                 (Value("percent"), Text(f" of records on this topic were rejected over the "
                                         f"last {w} (bound {number(c.bound * 100)}%); see "
                                         "visionmon_records_rejected_total by reason and the "
                                         "dead-letter topic.")),
                 False)


def reference_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    return _rule(spec, names.REFERENCE_DOWN_ALERT, "reference_model_down", c,
                 f"{metric('reference_model_up')} == 0\n",
                 (Label("model"), Text(": the reference model is down")),
                 (Text(f"Shadow scoring has been stopped for {format_duration(c.for_s)}; "
                       "shadow agreement and embedding drift are not updated."),),
                 True)


def threshold_rules(spec: AlertSpec) -> tuple[AlertingRule, ...]:
    """Every enabled threshold check, in a fixed order."""
    th: Thresholds = spec.thresholds
    builders = (
        (th.drift, drift_rule), (th.ece, ece_rule), (th.shadow_agreement, shadow_rule),
        (th.shadow_agreement_drop, shadow_drop_rule), (th.label_coverage, label_coverage_rule),
        (th.consumer_lag, consumer_lag_rule),
        (th.kafka_disconnected, kafka_rule), (th.no_events, no_events_rule),
        (th.rejected_ratio, rejected_rule), (th.reference_model_down, reference_rule),
    )
    return tuple(build(spec, check) for check, build in builders if check.enabled)


def threshold_group(spec: AlertSpec) -> RuleGroup:
    return RuleGroup(names.THRESHOLD_GROUP, threshold_rules(spec))
