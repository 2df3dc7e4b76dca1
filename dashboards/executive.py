"""Executive dashboard: is the model good, is it drifting, are the SLOs kept, what does it cost.

Rows: model quality (realized vs estimated accuracy, label coverage, worst classes), drift
status per feature, SLO attainment and error budget left, traffic and cost proxy.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models.dashboard import DynamicConfigValue, Threshold, ThresholdsMode

from dashboards import queries as q
from dashboards import scales
from dashboards.frame import EXECUTIVE, new_dashboard
from dashboards.panels import (
    BLUE,
    COUNT,
    FLAG,
    IMAGES_PER_SECOND,
    REQUESTS_PER_SECOND,
    SECONDS,
    Query,
    Scale,
    bar_gauge,
    flag_mappings,
    higher_is_better,
    lower_is_better,
    neutral,
    stat_panel,
    timeseries,
)
from monitor.config import LoadedConfig

#: Amounts in the config's cost: currency (none named): plain numbers, two decimals.
COST = Scale(COUNT, ((None, BLUE),), 0.0, decimals=2)
#: Reference-model batch time (s): a batch slower than 0.5 s caps scoring at 2 batches/s.
BATCH_SECONDS = lower_is_better(0.5, 2.5, SECONDS)


def build(loaded: LoadedConfig) -> dash.Dashboard:
    """The executive dashboard for this configuration."""
    cfg = loaded.config
    d = new_dashboard(EXECUTIVE, loaded,
                      "Model quality, drift, SLOs and cost at a glance, per model and version.")

    d.with_row(dash.Row("Model quality (window $window)"))
    d.with_panel(timeseries(
        "Accuracy: realized vs estimated",
        "Realized accuracy of labeled predictions and the label-free estimate (0-100 %), over "
        "the selected window. The estimate is the first of quality.estimate_methods ("
        + ", ".join(cfg.quality.estimate_methods) + ") that the window has, its method in "
        "the legend: shadow_stratified (accuracy per agreement with the reference model and "
        "confidence bin), calibrated (confidence through the baseline's calibration map; "
        "mean_confidence before the baseline calibrates: often off by several points) or atc "
        "(the share above the baseline's ATC threshold); the on-call dashboard shows every "
        "method and docs/statistics.md says when each fails. The dashed lines are "
        "quality.min_accuracy and twice its tolerated error.",
        [Query(q.windowed_gauge("accuracy_ratio"), "realized {{version}}"),
         Query(q.preferred_estimate(cfg.quality.estimate_methods),
               "estimated, {{method}} ({{version}})")],
        scales.accuracy(cfg), draw_thresholds=True, width=16))
    d.with_panel(stat_panel(
        "Label coverage",
        "Share of predictions with a joined ground-truth label over the window (0-100 %). "
        "Realized accuracy is only as trustworthy as this share is large.",
        [Query(q.windowed_gauge("label_coverage_ratio"), "{{version}}")],
        scales.label_coverage(), width=8, height=8))
    d.with_panel(bar_gauge(
        "Worst classes by recall",
        "The five classes (true class) with the lowest recall over the window (0-100 %).",
        [Query(q.worst_classes_by_recall(5), "{{class}} ({{version}})", instant=True)],
        scales.accuracy(cfg), width=24, height=7))

    d.with_row(dash.Row("Drift (window $window)"))
    d.with_panel(stat_panel(
        "Drift status by feature",
        "DRIFT where a feature's PSI over the window exceeds its exported sample-size-aware "
        "critical value (visionmon_drift_threshold); 'embedding' compares MMD^2 with its "
        "calibrated critical value. Worst version shown.",
        [Query(q.drift_flag_by_feature(), "{{feature}}"),
         Query(q.embedding_drift_flag(), "embedding")],
        FLAG, mappings=flag_mappings("DRIFT"), width=24, height=6))

    objectives = scales.objectives(cfg)
    if objectives:
        assert cfg.slos is not None
        period = cfg.slos.period
        d.with_row(dash.Row(f"SLOs ({period})"))
        attainment = stat_panel(
            f"SLO attainment ({period})",
            "Good share of events over the SLO period per objective (0-100 %); green at or "
            "above the objective's target.",
            [Query(q.slo_attainment(o, period, scales.objective_classes(o, loaded)), o.name)
             for o in objectives],
            scales.objective_attainment(min(objectives, key=lambda o: o.target)), width=12,
            height=7)
        for o in objectives:
            attainment.override_by_name(o.name, [DynamicConfigValue(
                id_val="thresholds",
                value=dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
                    [Threshold(value=v, color=c)
                     for v, c in scales.objective_attainment(o).steps]).build())])
        d.with_panel(attainment)
        d.with_panel(bar_gauge(
            f"Error budget remaining ({period})",
            "Share of each objective's error budget (1 - target) not yet spent over the "
            "period (100 % = untouched, 0 % = exhausted).",
            [Query(q.error_budget_remaining(o, period, scales.objective_classes(o, loaded)), o.name)
             for o in objectives],
            higher_is_better(0.5, 0.25), width=12, height=7))

    d.with_row(dash.Row("Traffic and cost"))
    d.with_panel(timeseries(
        "Predictions per second",
        "Successful predictions per second, per version.",
        [Query(q.predictions_per_second(), "{{version}}")],
        neutral(REQUESTS_PER_SECOND), width=8))
    d.with_panel(timeseries(
        "Reference model: images scored per second",
        "Cost proxy: images per second through the reference (shadow) model.",
        [Query(q.reference_images_per_second(), "{{model}}")],
        neutral(IMAGES_PER_SECOND), width=8))
    d.with_panel(timeseries(
        "Reference model: batch time",
        "Cost proxy: inference time of one reference-model batch (seconds), p50 and p95.",
        [Query(q.reference_batch_seconds_quantile(0.5), "p50 {{model}}"),
         Query(q.reference_batch_seconds_quantile(0.95), "p95 {{model}}")],
        BATCH_SECONDS, draw_thresholds=True, width=8))
    if cfg.cost is not None:
        _cost_row(d)
    return d


def _cost_row(d: dash.Dashboard) -> None:
    """Cost per prediction and its trend, from the `cost:` recordings (docs/alerts.md)."""
    d.with_row(dash.Row("Cost per prediction"))
    d.with_panel(stat_panel(
        "Cost per million predictions",
        "What a million successful predictions cost over the last hour, in the currency of the "
        "config's cost: figures (or OpenCost's prices); the sparkline is its trend over the "
        "dashboard's range. Absent for an hour without predictions.",
        [Query(q.cost_per_million_predictions(), "{{model}}")], COST, width=8, height=8))
    d.with_panel(timeseries(
        "Cost per million predictions: trend",
        "Cost per million successful predictions over the last hour, against its mean over the "
        "last day (the cost: currency): a line above the day's mean means each prediction got "
        "dearer (less traffic on the same GPUs, or pricier nodes). Cost per hour in the "
        "legend's third series.",
        [Query(q.cost_per_million_predictions(), "per million, last hour ({{model}})"),
         Query(q.cost_per_million_predictions_daily_mean(), "per million, mean of the day "
               "({{model}})"),
         Query(q.cost_per_hour(), "per hour ({{model}})")],
        COST, width=16))

