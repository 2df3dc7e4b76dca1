"""On-call dashboard: what is broken right now and since when.

Rows: serving (latency quantiles, success ratio), burn rate per SLO with the page thresholds
drawn, a quality summary per version (drift, shadow agreement, accuracy; top-5 accuracy for
models with more than 5 classes), visionmon's firing alerts, Kafka and intake (lag,
connectivity, rejections), durable state (checkpoint age and failures), recall of the
configured high-risk classes. Version deploys and visionmon upgrades are annotations; with
the lifecycle topic, so are artifact loads, rollouts, rollbacks and failed loads.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.models.dashboard import ValueMap, ValueMappingResult

from dashboards import queries as q
from dashboards import scales
from dashboards.annotations import PrometheusAnnotation
from dashboards.frame import ONCALL, new_dashboard
from dashboards.panels import (
    GREEN,
    JOULES,
    ORANGE,
    PERCENT,
    PLAIN,
    RECORDS_PER_SECOND,
    RED,
    REQUESTS_PER_SECOND,
    Query,
    Scale,
    neutral,
    right_axis,
    stat_panel,
    table_panel,
    table_query,
    timeseries,
)
from monitor.config import LoadedConfig
from monitor.slo_spec import Objective

#: 1 is healthy for connectivity and liveness gauges.
UP = Scale(PLAIN, ((None, RED), (1.0, GREEN)), 0.0, 1.0)
#: Rejected records per second: orange from one per 10 s, red from one per second.
REJECTIONS = Scale(RECORDS_PER_SECOND, ((None, GREEN), (0.1, ORANGE), (1.0, RED)), 0.0)
#: Firing alerts: red as soon as one fires.
ALERT_COUNT = Scale(PLAIN, ((None, GREEN), (1.0, RED)), 0.0)
#: Drift tests over their critical value: red from one.
DRIFTED = Scale(PLAIN, ((None, GREEN), (1.0, RED)), 0.0)
#: Any failed checkpoint write is red.
FAILURES = Scale("suffix: /s", ((None, GREEN), (1e-9, RED)), 0.0)


def _up_mappings(down: str, up: str) -> list[ValueMap]:
    return [ValueMap(options={"0": ValueMappingResult(text=down, color=RED, index=0),
                              "1": ValueMappingResult(text=up, color=GREEN, index=1)})]


def _burn_rate_panel(obj: Objective, loaded: LoadedConfig) -> ts.Panel:
    cfg = loaded.config
    assert cfg.slos is not None
    classes = scales.objective_classes(obj, loaded)
    legend = "{{class}} " if classes else ""
    pages = ", ".join(f"{t.factor:g}x ({t.long} with {t.short})"
                      for t in scales.page_tiers(cfg))
    return timeseries(
        f"Burn rate: {obj.name} ({obj.model}, target {obj.target:.4g})",
        f"Error-budget burn rate (x) of the {obj.kind} objective over each page-tier window: "
        f"1 spends the budget exactly in {cfg.slos.period}. Dashed lines are the configured "
        f"page tiers: {pages}. The alert rules may lower a factor the target makes "
        "unreachable, and open tickets instead of pages for label-based objectives."
        + (" One line per class and window: each class is its own objective." if classes
           else ""),
        [Query(q.burn_rate(obj, w, classes), legend + w) for w in scales.burn_rate_windows(cfg)],
        scales.burn_rate(cfg), draw_thresholds=True, width=12)


def _lifecycle_annotations(d: dash.Dashboard) -> None:
    """Recent deploys from the lifecycle topic: a new artifact loaded, rollouts and
    rollbacks, failed loads."""
    d.annotation(PrometheusAnnotation(
        "Model artifact loaded", q.artifact_first_loaded(), "green",
        step=q.NEW_SERIES_LOOKBACK, title_format="{{model}} {{version}} loaded",
        text_format="artifact {{sha256}}", tag_keys="model,version"))
    d.annotation(PrometheusAnnotation(
        "Model rolled out or back",
        q.lifecycle_counted("model_rollouts_total", ("model", "version", "kind")), "orange",
        step=q.NEW_SERIES_LOOKBACK, title_format="{{model}} {{version}} {{kind}}",
        tag_keys="model,version,kind"))
    d.annotation(PrometheusAnnotation(
        "Model load failed",
        q.lifecycle_counted("model_load_failures_total", ("model", "version", "reason")),
        "red", step=q.NEW_SERIES_LOOKBACK,
        title_format="{{model}} {{version}} failed to load ({{reason}})",
        tag_keys="model,version,reason"))


#: Top-5 accuracy is drawn only for models with more classes than this.
TOP5_MIN_CLASSES = 5


def _quality_summary(d: dash.Dashboard, loaded: LoadedConfig) -> None:
    """Drift, shadow agreement and accuracy per version at a glance: what the tickets are
    about, without opening the debug dashboard."""
    cfg = loaded.config
    d.with_row(dash.Row("Model quality summary (window $window)"))
    d.with_panel(stat_panel(
        "Drift: tests over their critical value",
        "Per version, the input and prediction features whose PSI is over its critical value "
        "(the drift alert lists them), and whether the embedding MMD test is (1) or not (0).",
        [Query(q.drift_tests_over_by_version(), "{{version}} features"),
         Query(q.embedding_drift_by_version(), "{{version}} embeddings")],
        DRIFTED, width=8, height=6))
    d.with_panel(stat_panel(
        "Shadow agreement",
        "Per version, the share of scored images on which production agreed with the reference "
        "model over the window (0-100 %). Dashed bounds as on the debug dashboard.",
        [Query(q.shadow_agreement_by_version(), "{{version}}")],
        scales.shadow_agreement(cfg), width=8, height=6))
    many = sorted(m.name for m in loaded.models.values() if len(m.classes) > TOP5_MIN_CLASSES)
    top5 = ([Query(q.top5_accuracy_by_version(many), "{{version}} top-5")]
            if many else [])
    d.with_panel(stat_panel(
        "Accuracy: realized and estimated",
        "Per version over the window (0-100 %): realized accuracy from the joined labels, the "
        "label-free estimates (their method in the legend)"
        + (", and top-5 accuracy for models with more than "
           f"{TOP5_MIN_CLASSES} classes ({', '.join(many)})" if many else "") + ".",
        [Query(q.windowed_gauge("accuracy_ratio"), "{{version}} realized"),
         Query(q.windowed_gauge("estimated_accuracy_ratio"),
               "{{version}} estimated, {{method}}"), *top5],
        scales.accuracy(cfg), width=8, height=6))


def build(loaded: LoadedConfig) -> dash.Dashboard:
    """The on-call dashboard for this configuration."""
    cfg = loaded.config
    d = new_dashboard(ONCALL, loaded,
                      "Serving health, SLO burn, alerts and the Kafka pipeline, for whoever is "
                      "paged.")
    d.annotation(PrometheusAnnotation(
        "Model version first seen", q.version_first_seen(), "blue", step=q.NEW_SERIES_LOOKBACK,
        title_format="{{model}} {{version}} deployed", tag_keys="model,version"))
    d.annotation(PrometheusAnnotation(
        "visionmon upgraded", q.visionmon_build_first_seen(), "purple",
        step=q.NEW_SERIES_LOOKBACK, title_format="visionmon {{version}}", tag_keys="version"))
    if cfg.kafka.topics.lifecycle is not None:
        _lifecycle_annotations(d)

    d.with_row(dash.Row("Serving"))
    d.with_panel(timeseries(
        "Request latency p50 / p95 / p99",
        "Serving latency reported by the model server (seconds), from the request histogram, "
        "per version. Dashed: half and all of the tightest latency objective's bound.",
        [Query(q.request_latency_quantile(p), f"p{round(p * 100)} {{{{version}}}}")
         for p in (0.5, 0.95, 0.99)],
        scales.latency(cfg), draw_thresholds=True))
    d.with_panel(timeseries(
        "Request success ratio",
        "Share of requests with status ok (0-100 %), per version. Dashed: the strictest "
        "availability target.",
        [Query(q.request_success_ratio(), "{{version}}")],
        scales.success_ratio(cfg), draw_thresholds=True))

    objectives = scales.objectives(cfg)
    if objectives:
        assert cfg.slos is not None
        d.with_row(dash.Row("SLO burn rates"))
        for obj in objectives:
            d.with_panel(_burn_rate_panel(obj, loaded))

    _quality_summary(d, loaded)

    d.with_row(dash.Row("Alerts"))
    d.with_panel(stat_panel(
        "Firing alerts",
        "Number of visionmon's alerts (named Visionmon...) firing in the Prometheus that "
        "evaluates its rules; other teams' alerts there are left out.",
        [Query(q.firing_alert_count(), "firing")], ALERT_COUNT, width=6, height=6))
    d.with_panel(table_panel(
        "Firing alerts by name",
        "visionmon's alerts firing now, by alert name, severity, model and SLO (count of "
        "firing series).",
        [table_query(q.firing_alerts())], ALERT_COUNT,
        {"Value": "series", "Value #A": "series"}, width=18, height=6))

    d.with_row(dash.Row("Kafka and intake"))
    d.with_panel(timeseries(
        "Consumer lag",
        "Records between the committed offset and the partition end, per topic. Orange from "
        "one poll's worth (kafka.max_poll_records), red from ten.",
        [Query(q.consumer_lag(), "{{topic}}")], scales.consumer_lag(cfg), draw_thresholds=True,
        width=9))
    d.with_panel(stat_panel(
        "Kafka, consumer loop and reference model",
        "Per replica: does the consumer have a live broker connection, is the loop running; "
        "per model: is shadow scoring running (when it is not, shadow agreement and embedding "
        "drift stop updating).",
        [Query(q.kafka_connected(), "kafka {{instance}}"),
         Query(q.daemon_up(), "loop {{instance}}"),
         Query(q.reference_model_up(), "reference {{model}}")],
        UP, mappings=_up_mappings("DOWN", "UP"), width=5, height=8))
    d.with_panel(timeseries(
        "Rejected records by reason",
        "Records (and batch elements) refused per second, by topic and reason; images refused "
        "at intake, by reason.",
        [Query(q.records_rejected_per_second(), "{{topic}}: {{reason}}"),
         Query(q.images_rejected_per_second(), "image: {{reason}}")],
        REJECTIONS, width=10))
    bound = scales.threshold_checks(cfg).rejected_ratio.max
    d.with_panel(timeseries(
        "Rejected share by topic",
        "Share of records refused per topic (0-100 %), rejected over rejected plus accepted. "
        f"Dashed: half of and the rejected-records alert's bound ({bound:g}); the alert fires "
        "when the share stays above the bound.",
        [Query(q.records_rejected_ratio(), "{{topic}}")],
        scales.rejected_ratio(cfg), draw_thresholds=True, width=24))

    d.with_row(dash.Row("Durable state"))
    d.with_panel(timeseries(
        "Age of the last checkpoint",
        "Seconds since each replica last wrote its state checkpoint. Orange from two "
        "checkpoint intervals (state.checkpoint_interval_seconds), red from the "
        "checkpoint alert's limit: a restart loses what was counted since.",
        [Query(q.checkpoint_age(), "{{instance}}")], scales.checkpoint_age(cfg),
        draw_thresholds=True, width=12))
    d.with_panel(timeseries(
        "Checkpoint write failures",
        "Failed checkpoint writes per second, by replica and reason (encode: the state could "
        "not be serialised; io: the file could not be written; other).",
        [Query(q.checkpoint_failures_per_second(), "{{instance}}: {{reason}}")],
        FAILURES, width=12))

    gpus = [c.gpu for c in cfg.cost.models if c.gpu is not None] if cfg.cost else []
    if gpus:
        _gpu_row(d, any(g.dcgm for g in gpus))

    high_risk = sorted({c for m in loaded.models.values() for c in m.high_risk_classes})
    d.with_row(dash.Row("High-risk classes (window $window)"))
    title = ("Recall of high-risk classes: " + ", ".join(high_risk) if high_risk
             else "Recall of the selected classes")
    d.with_panel(timeseries(
        title,
        "Per-class recall (true class, 0-100 %) over the window for the classes the config "
        "marks high_risk_classes (the class variable when none are). Dashed: "
        "quality.min_accuracy and twice its tolerated error.",
        [Query(q.class_ratio("class_recall_ratio", high_risk or None),
               "{{class}} ({{version}})")],
        scales.accuracy(cfg), draw_thresholds=True, width=24))
    return d


def _gpu_row(d: dash.Dashboard, dcgm: bool) -> None:
    """GPU utilisation against throughput, and what a prediction takes of the GPU (the
    `cost:` section's GPU recordings, docs/alerts.md)."""
    d.with_row(dash.Row("GPU and throughput"))
    if dcgm:
        d.with_panel(right_axis(timeseries(
            "GPU utilisation against throughput",
            "Mean utilisation of each model's GPUs over 5 minutes (DCGM, 0-100 %, left axis) "
            "against its successful predictions per second (right axis). Utilisation rising "
            "while throughput stays flat: each prediction takes more GPU (a slower version, "
            "smaller batches, a co-tenant); throughput falling at low utilisation: the GPU "
            "waits on something else (decoding, the network).",
            [Query(q.gpu_utilization(), "GPU utilisation ({{model}})"),
             Query(q.predictions_per_second(("model",)), "predictions/s ({{model}})")],
            Scale(PERCENT, ((None, GREEN), (0.9, ORANGE)), 0.0), draw_thresholds=False),
            "B", REQUESTS_PER_SECOND))
    efficiency = [Query(q.predictions_per_gpu_second(), "per GPU-second ({{model}})")]
    if dcgm:
        efficiency.append(Query(q.energy_per_prediction(), "joules per prediction ({{model}})"))
    panel = timeseries(
        "Predictions per GPU-second" + (" and energy per prediction" if dcgm else ""),
        "Successful predictions per busy GPU-second over 5 minutes (the model's Triton compute "
        "time where configured, else DCGM utilisation), left axis"
        + ("; GPU energy per prediction in joules (DCGM), right axis" if dcgm else "")
        + ". A drop after a deploy is a slower model on the same hardware.",
        efficiency, neutral(PLAIN), width=12)
    d.with_panel(right_axis(panel, "B", JOULES) if dcgm else panel)
