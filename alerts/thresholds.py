"""Plain threshold alerts (not SLOs): one pure function per check, resolved check -> rule.

Each builder is a column of `alerts.checks.CHECKS`, which says which check it builds; the
alert name, the `check` label, the metric and the comparison come from the resolved
`Check`, so they are written once, in the table.

Pages: Kafka disconnected and no events (the model, or the monitor, is blind), and failing
checkpoints (a restart would lose the state).
Tickets by default: drift, calibration, shadow agreement, high-risk recall, label
coverage, consumer lag,
rejected records, the reference model and unusual inputs (slow or partial degradation). Severities
can be changed per check in `slos.thresholds`.
"""

from __future__ import annotations

import textwrap

from alerts import names
from alerts.model import AlertSpec, Check, alternation
from alerts.rules import AlertingRule, RecordingRule, number, selector, unless_rollout, url_template
from alerts.templates import Label, Part, Query, QueryList, Template, Text, Value
from monitor.catalog import ECE_SOURCE_LABELS, metric
from monitor.durations import format_duration, parse_duration

#: How far back label coverage must have been healthy for a drop to count as a collapse.
LABEL_COVERAGE_LOOKBACK = "1d"


def _links(spec: AlertSpec, c: Check, model: Part) -> tuple[tuple[str, Template], ...]:
    ctx = {"alert": c.alert, "slo": c.key}
    return (("runbook_url", url_template(spec.runbook_url, ctx, model)),
            ("dashboard_url", url_template(spec.dashboard_url, ctx, model)))


def _rule(spec: AlertSpec, c: Check, expr: str, summary: Template, description: Template,
          has_model: bool) -> AlertingRule:
    model: Part = Label("model") if has_model else Text("All")
    return AlertingRule(
        c.alert, expr, c.for_s, ((names.SEVERITY_LABEL, c.severity), ("check", c.key)),
        (("summary", summary), ("description", description), *_links(spec, c, model)))


def _windowed(c: Check) -> str:
    """The check's metric on its window: `visionmon_x{window="1h"}`."""
    return selector(metric(c.metric), {"window": c.window or ""})


def _compared(c: Check) -> str:
    """`<the check's selector> <comparison> <bound>`, one line."""
    assert c.bound is not None
    sel = _windowed(c) if c.window is not None else metric(c.metric)
    return f"{sel} {c.comparison} {number(c.bound)}\n"


_MV = (Label("model"), Text(" "), Label("version"))


def _drift_tests(c: Check, op: str) -> str:
    """Every drift test of the window: each feature's PSI `op` its critical value, and the
    embedding MMD statistic `op` its critical value (labelled feature="embedding_mmd")."""
    w = {"window": c.window or ""}
    mmd = (f"{selector(metric('embedding_mmd'), w)}\n"
           f"      {op} {selector(metric('embedding_mmd_threshold'), w)}")
    return (f"{_windowed(c)}\n  {op} {selector(metric('drift_threshold'), w)}\n"
            f"or\n  label_replace(\n      {mmd},\n"
            f"    \"feature\", \"{names.EMBEDDING_MMD_FEATURE}\", \"\", \"\")\n")


def drift_records(spec: AlertSpec, c: Check) -> tuple[RecordingRule, ...]:
    """What the model/version drift alert reads: each test's statistic over its critical
    value (ordering the tests; > 1 is drifted when the critical value is positive), the
    number of tests over their critical value and the worst test."""
    w = {"window": c.window or ""}
    by = "model, version, window"
    exceedance = selector(names.DRIFT_EXCEEDANCE, w)
    return (
        RecordingRule(names.DRIFT_EXCEEDANCE, _drift_tests(c, "/")),
        RecordingRule(names.DRIFT_FEATURES_OVER,
                      f"count by ({by}) (\n"
                      + textwrap.indent(_drift_tests(c, c.comparison), "  ") + ")\n"),
        RecordingRule(names.DRIFT_WORST_FEATURE, f"topk by ({by}) (1, {exceedance})\n"),
    )


def drift_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    """One alert per model and version (not per feature) while any drift test of the window
    is over its critical value: a camera change that moves 17 features and the embeddings
    is one ticket, listing the tests furthest first. With the daemon's defaults the tests
    share `drift.alpha` (weighted Bonferroni), so on no drift the condition holds in at most
    that share of windows. Held back during the version's declared rollout."""
    w = c.window or ""
    count = selector(names.DRIFT_FEATURES_OVER, {"window": w})
    mv = f"model=%q,version=%q,window='{w}'"
    over = QueryList("drifted", f"sort_desc({names.DRIFT_EXCEEDANCE}{{{mv}}} > 1)", "feature",
                     "fixed2", ("model", "version"), "x")
    worst = QueryList("worst", f"{names.DRIFT_WORST_FEATURE}{{{mv}}}", "feature", "fixed2",
                      ("model", "version"), "x")
    return _rule(spec, c, f"{count} > 0\n{unless_rollout()}",
                 (*_MV, Text(": "), Value("integer"),
                  Text(" drift tests over their critical values, worst "), worst),
                 (Text(f"Over the {c.window} window, "), Value("integer"),
                  Text(" drift tests are over their critical values, for "
                       f"{format_duration(c.for_s)} (statistic / critical value, furthest "
                       "first): "), over,
                  Text(". PSI for an input feature, the standardised MMD² for embedding_mmd; "
                       "one alert per model and version, whatever the number of tests.")),
                 True)


def ece_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    """ECE against the ground-truth labels only: the ECE against the reference model's
    answers (`source="reference"`) measures agreement with an imperfect model, not
    calibration, and is shown on the dashboards, not alerted on."""
    assert c.bound is not None
    sel = selector(metric(c.metric), {"window": c.window or "", "source": ECE_SOURCE_LABELS})
    return _rule(spec, c, f"{sel} {c.comparison} {number(c.bound)}\n",
                 (*_MV, Text(": confidence is miscalibrated")),
                 (Text("Expected calibration error against the ground-truth labels over the "
                       f"{c.window} window is "),
                  Value("fixed3"), Text(f" (bound {number(c.bound)})."),),
                 True)


def shadow_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    assert c.bound is not None
    return _rule(spec, c, _compared(c) + unless_rollout(),
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
    return _rule(spec, c, _compared(c) + unless_rollout(),
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
    sel = _windowed(c)
    b = number(c.bound)
    expr = (f"{sel} {c.comparison} {b}\nand\n"
            f"  max_over_time({sel}[{LABEL_COVERAGE_LOOKBACK}]) >= {b}\n")
    return _rule(spec, c, expr,
                 (*_MV, Text(": ground-truth labels stopped arriving")),
                 (Text("Only "), Value("percent"),
                  Text(f" of predictions got a label over the {c.window} window (bound "
                       f"{number(c.bound * 100)}%), down from at least that within the last "
                       f"{LABEL_COVERAGE_LOOKBACK}.")),
                 True)


def high_risk_recall_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    """Recall of a high-risk class under its bound, per model, version and class, once the
    window holds `min_records` labels of the class: a class that collapses (defects let
    through as `ok`) alerts by name even while the model-wide accuracy looks fine."""
    assert c.bound is not None and c.min_records is not None
    w = format_duration(parse_duration(c.window or ""))
    by = "model, version, class"
    parts = []
    for model, classes in c.classes:
        which = [f'model="{model}"', f'class=~"{alternation(classes)}"']
        recall = selector(metric(c.metric), [f'window="{c.window}"', *which])
        labels = selector(metric("labels_total"), which)
        parts.append(f"(\n  {recall} {c.comparison} {number(c.bound)}\nand on ({by})\n"
                     f"  sum by ({by}) (increase({labels}[{w}])) >= {c.min_records}\n)")
    return _rule(spec, c, "\nor\n".join(parts) + "\n",
                 (*_MV, Text(": recall of high-risk class "), Label("class"),
                  Text(" is low")),
                 (Text("Recall of high-risk class "), Label("class"),
                  Text(f" over the {c.window} window is "), Value("percent"),
                  Text(f" (bound {number(c.bound * 100)}%, judged once the window holds "
                       f"{c.min_records} labels of the class): labelled images of the class "
                       "are being predicted as another class; "
                       f"{metric('confusion_pair_total')} says which.")),
                 True)


def consumer_lag_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    assert c.range_s is not None and c.min_records is not None
    lag = metric(c.metric)
    expr = (f"{lag} {c.comparison} {c.min_records}\nand\n"
            f"  deriv({lag}[{format_duration(c.range_s)}]) > 0\n")
    return _rule(spec, c, expr,
                 (Text("visionmon is falling behind on "), Label("topic"), Text("/"),
                  Label("partition")),
                 (Text("Consumer lag is "), Value("integer"),
                  Text(f" records and has kept growing for {format_duration(c.for_s)}; "
                       "metrics are going stale.")),
                 False)


def kafka_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    return _rule(spec, c, _compared(c),
                 (Text("visionmon lost its Kafka connection"),),
                 (Text(f"No broker connection for {format_duration(c.for_s)}: no prediction "
                       "is being monitored."),),
                 False)


def no_events_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    assert c.range_s is not None and c.bound is not None
    after = format_duration(c.range_s)
    expr = (f"sum by (model) (increase({metric(c.metric)}[{after}])) {c.comparison} "
            f"{number(c.bound)}\n")
    last = metric("last_event_timestamp_seconds")
    return _rule(spec, c, expr,
                 (Label("model"), Text(f": no prediction events for {after}")),
                 (Text("No request reached visionmon for model "), Label("model"),
                  Text(f" in the last {after}; the newest event seen is "),
                  Query("age", f"time() - max({last}{{model=%q}})", "duration", ("model",)),
                  Text(" old.")),
                 True)


def rejected_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    assert c.range_s is not None and c.bound is not None
    w = format_duration(c.range_s)
    rejected = f"sum by (topic) (rate({metric(c.metric)}[{w}]))"
    accepted = f"sum by (topic) (rate({metric('events_accepted_total')}[{w}]))"
    expr = (f"{rejected}\n/\n(\n  {rejected}\n  +\n  ({accepted} or 0 * {rejected})\n)\n"
            f"{c.comparison} {number(c.bound)}\n")
    return _rule(spec, c, expr,
                 (Text("Records on "), Label("topic"), Text(" are being rejected")),
                 (Value("percent"), Text(f" of records on this topic were rejected over the "
                                         f"last {w} (bound {number(c.bound * 100)}%); see "
                                         "visionmon_records_rejected_total by reason and the "
                                         "dead-letter topic.")),
                 False)


def reference_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    return _rule(spec, c, _compared(c),
                 (Label("model"), Text(": the reference model is down")),
                 (Text(f"Shadow scoring has been stopped for {format_duration(c.for_s)}; "
                       "shadow agreement and embedding drift are not updated."),),
                 True)


def checkpoint_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    """Checkpoint writes keep failing: some failed within the window and the last success
    (if any since the daemon started) is older than the allowed number of intervals. The
    age is the one at the scrape (`timestamp(x) - x`), so a slow scrape interval does not
    make a healthy daemon look stale; a daemon that never wrote one has no timestamp, so
    nothing suppresses its failures."""
    assert c.range_s is not None and c.bound is not None and c.stale_s is not None
    w = format_duration(c.range_s)
    last = metric("last_checkpoint_timestamp_seconds")
    expr = (f"sum without (reason) (increase({metric(c.metric)}[{w}])) {c.comparison} "
            f"{number(c.bound)}\nunless\n  timestamp({last}) - {last} < {number(c.stale_s)}\n")
    return _rule(spec, c, expr,
                 (Text("visionmon cannot write its checkpoint on "), Label("instance")),
                 (Value("integer"),
                  Text(f" checkpoint writes failed over the last {w} and none succeeded within "
                       f"{number(c.stale_s)}s; time since the last successful write: "),
                  Query("age", f"time() - max({last}{{instance=%q}})", "duration",
                        ("instance",), missing="none since the daemon started"),
                  Text(". A restart now loses everything counted since then; see "
                       f"{metric(c.metric)} by reason and the daemon log.")),
                 False)


def artifact_mismatch_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    """More than one artifact SHA-256 among the replicas' latest loads of one version that
    served predictions within the window. The hashes are counted per (model, version,
    sha256) first, so several visionmon replicas that each see the same artifact count it
    once."""
    assert c.range_s is not None and c.bound is not None
    w = format_duration(c.range_s)
    info = metric(c.metric)
    expr = (f"count by (model, version) (\n  count by (model, version, sha256) ({info})\n)"
            f" {c.comparison} {number(c.bound)}\nand on (model, version)\n"
            f"  sum by (model, version) (increase({metric('requests_total')}[{w}])) > 0\n")
    return _rule(spec, c, expr,
                 (*_MV, Text(": replicas serve different artifacts under one version")),
                 (Value("integer"),
                  Text(" different artifact SHA-256s are loaded by the replicas serving this "
                       f"version, which served predictions within the last {w}; see "
                       f"{metric('model_replicas')} by sha256 and the debug dashboard's model "
                       "metadata table.")),
                 True)


def unusual_inputs_rule(spec: AlertSpec, c: Check) -> AlertingRule:
    """The share of the window's images above the baseline's 99th percentile of a score
    over the critical value the daemon exports with it (a one-sided test against the
    baseline's own share, about 1 %, at `drift.alpha` / 2 per score), as the MMD test is
    compared. Not held back during rollouts: a version does not choose its inputs."""
    w = {"window": c.window or ""}
    expr = (f"{_windowed(c)}\n  {c.comparison} "
            f"{selector(metric('unusual_input_ratio_threshold'), w)}\n")
    return _rule(spec, c, expr,
                 (*_MV, Text(": unusual inputs by the "), Label("score"), Text(" score")),
                 (Text(f"Over the {c.window} window, "), Value("percent"),
                  Text(" of the scored images are above the baseline's 99th percentile of the "),
                  Label("score"),
                  Text(" score, more than a clean window reaches (about 1%): images of "
                       "categories the model was not trained on, or corrupted ones.")),
                 True)
