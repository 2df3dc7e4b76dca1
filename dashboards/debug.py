"""Debug dashboard: why the model is worse, for a postmortem.

Rows: per-class quality (precision/recall table, most confused pairs, ROC-AUC and PR-AUC,
false accepts), drift (PSI and KL per
feature against their critical values, input-feature drift, embedding MMD, the baseline's
source, state and what it rests on), confidence and
calibration (heatmap, now vs baseline, reliability diagram, ECE), shadow model and labels
(agreement by class, label delay); with the lifecycle topic, the production model's metadata
(versions, artifact hashes, replicas, load times).
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.models.dashboard import DashboardLinkType, DynamicConfigValue

from dashboards import queries as q
from dashboards import scales
from dashboards.frame import DEBUG, new_dashboard
from dashboards.panels import (
    COUNT,
    GREEN,
    PERCENT,
    PLAIN,
    SECONDS,
    Query,
    Scale,
    bar_chart,
    bar_gauge,
    heatmap_panel,
    heatmap_query,
    neutral,
    stat_panel,
    table_panel,
    table_query,
    threshold_series,
    timeseries,
)
from dashboards.promql import eq
from monitor.catalog import ECE_SOURCE_LABELS, ECE_SOURCE_REFERENCE
from monitor.config import LoadedConfig, VisionmonConfig
from monitor.scored import INPUT_FEATURES

#: Drift statistics: no fixed level is drawn; the critical value is a second, red series.
DRIFT = Scale(PLAIN, ((None, GREEN),), 0.0)
CONFIDENCE_FEATURE = "confidence"


def _drift_panel(title: str, description: str, statistic: str, features: Sequence[str] | None,
                 critical_factor: str = "", width: int = 12) -> ts.Panel:
    """`statistic` per feature with its exported critical value drawn as a dashed series.

    `critical_factor` scales the exported PSI critical value (e.g. ` / 2` for KL).
    """
    panel = timeseries(
        title, description,
        [Query(q.drift(statistic, features), "{{feature}} ({{version}})"),
         Query(f"{q.drift('drift_threshold', features)}{critical_factor}",
               "critical {{feature}} ({{version}})")],
        DRIFT, width=width)
    return threshold_series(panel, "B")


#: The model metadata table's time columns (Grafana reads epoch milliseconds).
_TIME_COLUMNS = ("first load", "last load", "last prediction")


def _model_metadata() -> table.Panel:
    """One row per artifact some replica serves: its version, hash, replicas, load times and
    when the version last served (from the lifecycle topic)."""
    panel = table_panel(
        "Model metadata",
        "One row per artifact (SHA-256) that some replica's latest load of a version holds: "
        "replicas holding it, its first and latest load, the version's mean load time and "
        "its newest prediction. Two rows for one version: replicas serve different "
        "artifacts under one name (VisionmonArtifactMismatch).",
        [table_query(q.artifact_gauge("model_replicas")),
         table_query(q.artifact_gauge("model_first_load_timestamp_seconds", " * 1000")),
         table_query(q.artifact_gauge("model_last_load_timestamp_seconds", " * 1000")),
         table_query(q.model_load_mean_seconds()),
         table_query(q.version_last_prediction_ms())],
        neutral(COUNT),
        {"Value #A": "replicas", "Value #B": "first load", "Value #C": "last load",
         "Value #D": "mean load time", "Value #E": "last prediction"},
        width=24, height=8)
    for column in _TIME_COLUMNS:
        panel.override_by_name(column, [DynamicConfigValue(id_val="unit",
                                                           value="dateTimeAsIso")])
    panel.override_by_name("mean load time", [DynamicConfigValue(id_val="unit",
                                                                 value=SECONDS)])
    return panel


def gallery_link(cfg: VisionmonConfig) -> dash.DashboardLink:
    """A panel link to the daemon's failure gallery (`images.gallery.url`, or the daemon's
    port on localhost); the page answers 404 unless `images.gallery.enabled`."""
    url = cfg.images.gallery.url or f"http://localhost:{cfg.http.port}/gallery"
    return (dash.DashboardLink("Failure images (gallery)").type(DashboardLinkType.LINK).url(url)
            .target_blank(True)
            .tooltip("Thumbnails of recent wrong and disagreeing images "
                     "(needs images.gallery.enabled)"))


def build(loaded: LoadedConfig) -> dash.Dashboard:
    """The debug dashboard for this configuration."""
    cfg = loaded.config
    d = new_dashboard(DEBUG, loaded,
                      "Per-class quality, drift per feature, calibration and shadow-model "
                      "agreement, for postmortems.")

    d.with_row(dash.Row("Per-class quality (window $window)"))
    d.with_panel(table_panel(
        "Precision and recall by class",
        "Precision (class = predicted class) and recall (class = true class) over the window, "
        "0-100 %, for the selected classes.",
        [table_query(q.class_ratio("class_precision_ratio")),
         table_query(q.class_ratio("class_recall_ratio"))],
        scales.accuracy(cfg), {"Value #A": "precision", "Value #B": "recall"}))
    d.with_panel(table_panel(
        "Most confused pairs",
        "The ten (true, predicted) class pairs with the most labeled mistakes in the window.",
        [table_query(q.confused_pairs(10))], neutral(COUNT),
        {"Value": "mistakes", "Value #A": "mistakes", "true_class": "true",
         "pred_class": "predicted"}).links([gallery_link(cfg)]))

    d.with_panel(table_panel(
        "ROC-AUC and PR-AUC by class",
        "One-vs-rest ROC-AUC (0.5: chance) and PR-AUC (average precision) of the selected "
        f"classes over the window, from {cfg.auc.score_bins} score bins of labelled "
        "predictions with probs or topk (docs/statistics.md bounds the binning error).",
        [table_query(q.class_auc("class_roc_auc")), table_query(q.class_auc("class_pr_auc"))],
        scales.ranking(), {"Value #A": "ROC-AUC", "Value #B": "PR-AUC"}))
    d.with_panel(timeseries(
        "Macro ROC-AUC and PR-AUC",
        "Mean over the classes with labels in the window of the one-vs-rest ROC-AUC and PR-AUC "
        "(0..1), per version.",
        [Query(q.windowed_gauge("roc_auc_macro"), "ROC-AUC ({{version}})"),
         Query(q.windowed_gauge("pr_auc_macro"), "PR-AUC ({{version}})")],
        scales.ranking()))
    d.with_panel(timeseries(
        "False-accept ratio",
        "Accepted predictions (confidence at or above the model's accept.threshold) of a "
        "negative class whose label is another class, over the labelled predictions of the "
        "window (0-100 %), per version; models without an acceptance rule show nothing.",
        [Query(q.windowed_gauge("false_accept_ratio"), "{{version}}")],
        scales.false_accepts(cfg)))

    features = list(cfg.drift.features)
    d.with_row(dash.Row("Drift (window $window)"))
    d.with_panel(_drift_panel(
        "PSI per feature vs critical value",
        "Population stability index of each prediction feature over the window against the "
        "baseline (nats). Dashed red: the exported sample-size-aware critical value "
        "(visionmon_drift_threshold); drift where the solid line crosses it.",
        "drift_psi", features))
    d.with_panel(_drift_panel(
        "KL divergence per feature vs critical value",
        "KL(current || baseline) per prediction feature (nats). Dashed red: half the exported "
        "PSI critical value; to second order KL is half of PSI, so this is the matching level.",
        "drift_kl", features, critical_factor=" / 2"))
    d.with_panel(_drift_panel(
        "Input-feature drift (PSI)",
        "PSI of image features measured on sampled images (brightness, contrast, saturation, "
        "colour means, width, height, encoded bytes, sharpness, JPEG quality, duplicate "
        "flag) with their critical values. Link: the failure gallery's thumbnails.",
        "drift_psi", list(INPUT_FEATURES)).links([gallery_link(cfg)]))
    d.with_panel(threshold_series(timeseries(
        "Embedding drift (MMD^2)",
        "Squared maximum mean discrepancy (RBF kernel) between current and baseline "
        "reference-model embeddings. Dashed red: the calibrated critical value.",
        [Query(q.windowed_gauge("embedding_mmd"), "MMD^2 ({{version}})"),
         Query(q.windowed_gauge("embedding_mmd_threshold"), "critical ({{version}})")],
        DRIFT), "B"))
    d.with_panel(threshold_series(timeseries(
        "Unusual inputs vs 1 %",
        "Share of the window's scored images above the baseline's 99th percentile of each "
        "unusualness score (knn: embedding distance to the baseline's sample; energy: of the "
        "reference logits) against the 1 % a clean window holds. Dashed red: the critical "
        "value the alert VisionmonUnusualInputs compares with. Link: the failure gallery, "
        "which shows the most unusual images.",
        [Query(q.windowed_gauge("unusual_input_ratio"), "{{score}} ({{version}})"),
         Query(q.windowed_gauge("unusual_input_ratio_threshold"),
               "critical {{score}} ({{version}})")],
        scales.unusual_inputs()), "B").links([gallery_link(cfg)]))
    d.with_panel(table_panel(
        "Baseline",
        "Each model's baseline: source (file: loaded from baseline.path; first_events: "
        "collected from its first predictions), state (collecting: no drift is measured yet; "
        "sealed: bins fixed), its own version and the start of its content hash, which "
        "changes when it gains its image profile or its calibration.",
        [table_query(q.baseline_info())], neutral(COUNT),
        {"sha256": "hash", "version": "baseline version", "Value": "in use"},
        width=16, height=6))
    d.with_panel(stat_panel(
        "Baseline rests on",
        "Predictions binned, labelled predictions its calibration map is fitted on (the "
        "estimated accuracy is the raw mean confidence until baseline.min_labels), and "
        "scored images of its image profile (input and embedding drift start at "
        "baseline.images); while collecting, how many so far.",
        [Query(q.baseline_events(), "{{kind}} ({{model}})")], neutral(COUNT),
        width=8, height=6))

    keys = q.segment_keys(loaded)
    if keys:
        d.with_row(dash.Row("Segments (window $window)"))
        d.with_panel(table_panel(
            "Worst segments",
            "Each value of each segment key (models[].segments) selected by the segment "
            "variables: its worst drift over features and versions as PSI over the critical "
            "value (above 1: drifted), its lowest accuracy and lowest agreement with the "
            "reference model over versions, and its labelled predictions, over the window. "
            "Sort a column to find where an incident is; _other holds the values beyond a "
            "key's bound, _none the requests without the key.",
            [table_query(q.worst_segments_by_drift(keys)),
             table_query(q.worst_segments_by_accuracy(keys)),
             table_query(q.worst_segments_by_agreement(keys)),
             table_query(q.segment_labelled(keys))],
            neutral(PLAIN),
            {"segment_key": "key", "Value #A": "drift (PSI / critical)",
             "Value #B": "accuracy", "Value #C": "shadow agreement",
             "Value #D": "labelled"}, width=24))

    d.with_row(dash.Row("Confidence and calibration"))
    d.with_panel(heatmap_panel(
        "Top-1 confidence over time",
        "Predictions per confidence bucket per interval (y: confidence, 0-100 %).",
        heatmap_query(q.confidence_histogram()), PERCENT, neutral(COUNT)))
    d.with_panel(bar_chart(
        "Confidence: now vs baseline",
        "Share of predictions per baseline confidence bin (0-100 %): the selected window "
        "against the baseline profile.",
        [table_query(q.feature_share_now(CONFIDENCE_FEATURE)),
         table_query(q.feature_share_baseline(CONFIDENCE_FEATURE))],
        neutral(PERCENT, 0.0, 1.0), "bin", {"Value #A": "now", "Value #B": "baseline"}))
    d.with_panel(bar_chart(
        "Reliability diagram",
        "Per calibration bin over the window: mean top-1 confidence and accuracy of labeled "
        "predictions (0-100 %). A calibrated model has equal bars.",
        [table_query(q.calibration_bin_ratio("calibration_bin_confidence_sum_total")),
         table_query(q.calibration_bin_ratio("calibration_bin_correct_total"))],
        neutral(PERCENT, 0.0, 1.0), "bin",
        {"Value #A": "mean confidence", "Value #B": "accuracy"}, width=16))
    d.with_panel(stat_panel(
        "Expected calibration error",
        "Top-label ECE over the window (0-100 %), two ways: against the ground-truth labels "
        "(source=labels, what VisionmonCalibrationErrorHigh reads) and against the reference "
        "model's answers taken as labels (source=reference: available before labels arrive, "
        "but it counts the reference model's own mistakes as miscalibration). Orange from "
        "half of quality.max_ece, red above it.",
        [Query(q.windowed_gauge("calibration_ece", eq("source", ECE_SOURCE_LABELS)),
               "vs labels ({{version}})"),
         Query(q.windowed_gauge("calibration_ece", eq("source", ECE_SOURCE_REFERENCE)),
               "vs reference model ({{version}})")],
        scales.calibration_error(cfg), width=8, height=8))

    if cfg.kafka.topics.lifecycle is not None:
        d.with_row(dash.Row("Production model"))
        d.with_panel(_model_metadata())

    d.with_row(dash.Row("Shadow model and labels"))
    d.with_panel(bar_gauge(
        "Shadow agreement by class",
        "Share of scored images on which production's predicted class matched the reference "
        "model, per class over the window (0-100 %); 'all' is the windowed overall ratio.",
        [Query(q.shadow_agreement_by_class(), "{{class}}", instant=True),
         Query(q.windowed_gauge("shadow_agreement_ratio"), "all ({{version}})", instant=True)],
        scales.shadow_agreement(cfg)).links([gallery_link(cfg)]))
    alpha = scales.shadow_agreement_drop_alpha(cfg)
    d.with_panel(timeseries(
        "Shadow agreement test p-value",
        "One-sided test that agreement with the reference model fell below the baseline's, per "
        "production class, over all classes, over all classes weighted towards those "
        "that rarely disagree, and over the class pairs the baseline rarely showed (weighted "
        "Bonferroni), over the window; log axis. "
        f"Dashed: the alert's level ({alpha:g}) and ten times it; "
        "VisionmonShadowAgreementDropped fires while the line stays below the level. No line: "
        "the baseline holds no agreement profile, or no image joined yet.",
        [Query(q.windowed_gauge("shadow_agreement_pvalue"), "p ({{version}})")],
        scales.shadow_agreement_drop(cfg), draw_thresholds=True, log_axis=True))
    d.with_panel(timeseries(
        "Label delay",
        "Seconds from prediction to its ground-truth label, p50 and p95. Orange from half of "
        "labels.ttl, red at it: later labels are never joined.",
        [Query(q.label_delay_quantile(0.5), "p50 {{model}}"),
         Query(q.label_delay_quantile(0.95), "p95 {{model}}")],
        scales.label_delay(cfg), draw_thresholds=True))
    return d
