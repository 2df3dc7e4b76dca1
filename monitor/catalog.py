"""Every metric visionmon exports: name, kind, help, unit, labels, buckets, the module
that computes it and when it is exported.

This is the single source of truth: the Prometheus exporter, the OpenTelemetry
bridge, the Grafana dashboards, the alert rules and docs/metrics.md are all generated
from it, so a name is typed exactly once. `CLIENT_CATALOG` holds the serving side's
metrics (the emitter and the KServe bridge), which the daemon never exports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["counter", "gauge", "histogram", "info"]

PREFIX = "visionmon_"
#: The label value that label values past a bound fold into (versions, series, segments).
OTHER = "_other"

#: Request latency buckets (seconds), 1 ms to 10 s. SLO latency thresholds must be one of these.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3,
    0.4, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0,
)
#: Top-1 confidence buckets, 0.05 wide from 0 to 1.
CONFIDENCE_BUCKETS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 21))
#: Label delay buckets (seconds), 1 s to 7 days.
LABEL_DELAY_BUCKETS: tuple[float, ...] = (
    1, 5, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600,
    86400, 3 * 86400, 7 * 86400,
)
#: Reference-model batch time buckets (seconds).
BATCH_SECONDS_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: Production-model load time buckets (seconds), 0.1 s to 10 min.
MODEL_LOAD_SECONDS_BUCKETS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)

#: Baseline-rank buckets of unusualness scores: 0.05 wide, then the 99th percentile and 1.
UNUSUAL_RANK_BUCKETS: tuple[float, ...] = (*(round(0.05 * i, 2) for i in range(1, 20)), 0.99,
                                           1.0)

#: Number of equal-width confidence bins for calibration (ECE) counters.
CALIBRATION_BINS = 15
#: `source` of visionmon_calibration_ece computed against the ground-truth labels (feedback).
ECE_SOURCE_LABELS = "labels"
#: `source` of visionmon_calibration_ece computed against the reference model's answers.
ECE_SOURCE_REFERENCE = "reference"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family. `name` is the exposition name (counters end in `_total`).

    `module` names the file(s) that compute it (comma-separated paths from the repository
    root; docs/metrics.md lists them and a test checks each one mentions the metric).
    `condition` says when a running daemon exports it, if not always ("with a reference
    model (reference:)"): the end-to-end test expects every metric without one."""

    name: str
    kind: MetricKind
    help: str
    unit: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    module: str = ""
    condition: str = ""

    @property
    def modules(self) -> tuple[str, ...]:
        """The paths in `module`."""
        return tuple(p.strip() for p in self.module.split(",") if p.strip())

    @property
    def base_name(self) -> str:
        """Name without the `_total` suffix, as prometheus_client metric families want it."""
        if self.kind == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        if self.kind == "info" and self.name.endswith("_info"):
            return self.name[: -len("_info")]
        return self.name

    def series_names(self) -> tuple[str, ...]:
        """Every sample name this family produces on /metrics."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


MV = ("model", "version")
#: When the reference model's GPU metrics exist: a GPU, a driver and NVML's binding.
REFERENCE_GPU = ("with a reference model on a CUDA GPU that NVML reads (pip install "
                 "'visionmon[gpu]')")
MVW = ("model", "version", "window")
DRIFT = ("model", "version", "feature", "window")
#: a segment value's series: the key is a label value, so the families stay the same
#: whatever keys a config declares (docs/metrics.md, "segments")
SEG = ("model", "version", "segment_key", "segment")
_SEGMENTED = "with models[].segments"
_UNUSUAL_WINDOW = ("with a reference model and images, a baseline with unusualness profiles, "
                   "and quality.min_shadow_images scored images in the window")

_SPECS: tuple[MetricSpec, ...] = (
    # --- build and runtime -------------------------------------------------
    MetricSpec(f"{PREFIX}build_info", "info", "visionmon build; value is always 1.", "",
               ("version",),
               module="visionmon/app.py"),
    MetricSpec(f"{PREFIX}config_info", "info",
               "Loaded configuration: file hash and config schema version.", "",
               ("config_sha256", "config_version"),
               module="visionmon/app.py"),
    MetricSpec(f"{PREFIX}up", "gauge", "1 while the consumer loop is alive.", "",
               module="collectors/daemon.py"),
    MetricSpec(f"{PREFIX}kafka_connected", "gauge",
               "1 when the Kafka consumer has a live broker connection, else 0.", "",
               module="collectors/daemon.py"),
    MetricSpec(f"{PREFIX}consumer_lag_records", "gauge",
               "Records between the committed position and the partition end.", "records",
               ("topic", "partition"),
               module="collectors/daemon.py"),
    MetricSpec(f"{PREFIX}assigned_partitions", "gauge",
               "Partitions currently assigned to this replica.", "", ("topic",),
               module="collectors/daemon.py"),
    MetricSpec(f"{PREFIX}commits_total", "counter", "Offset commits, by outcome.", "",
               ("outcome",),
               module="collectors/daemon.py"),
    MetricSpec(f"{PREFIX}duplicates_skipped_total", "counter",
               "Records delivered again that the state already held (after a restore or a "
               "rebalance): skipped, not counted twice; per topic.", "", ("topic",),
               module="collectors/ledger.py, collectors/daemon.py"),
    MetricSpec(f"{PREFIX}poll_batch_seconds", "histogram",
               "Time to decode and apply one polled batch.", "seconds", (),
               BATCH_SECONDS_BUCKETS,
               module="collectors/daemon.py"),
    MetricSpec(f"{PREFIX}checkpoint_writes_total", "counter",
               "State checkpoints written, by outcome.", "", ("outcome",),
               module="collectors/daemon.py",
               condition="with state.checkpoint_dir"),
    MetricSpec(f"{PREFIX}checkpoint_failures_total", "counter",
               "Failed checkpoint writes, by reason: encode (the state could not be "
               "serialised), io (the file could not be written), other.", "", ("reason",),
               module="collectors/daemon.py",
               condition="with state.checkpoint_dir"),
    MetricSpec(f"{PREFIX}checkpoint_corrupt_total", "counter",
               "Checkpoints found corrupt at start and set aside.", "",
               module="collectors/daemon.py",
               condition="with state.checkpoint_dir"),
    MetricSpec(f"{PREFIX}last_checkpoint_timestamp_seconds", "gauge",
               "Wall-clock time of the last successful checkpoint.", "seconds",
               module="collectors/daemon.py",
               condition="with state.checkpoint_dir, after the first successful write"),
    MetricSpec(f"{PREFIX}snapshot_timestamp_seconds", "gauge",
               "Wall-clock time at which the counts shown on /metrics were copied: time() minus "
               "this is their age, at most http.snapshot_interval_seconds when scraped (twice "
               "that while the next snapshot is late).", "seconds",
               module="collectors/snapshot_cache.py"),
    MetricSpec(f"{PREFIX}snapshot_render_seconds", "gauge",
               "Time the statistics of the snapshot shown on /metrics took to compute (in the "
               "render worker process; rendered in the daemon, the copy of the counts too), not "
               "the text.", "seconds",
               module="collectors/snapshot_cache.py"),
    MetricSpec(f"{PREFIX}render_worker_restarts_total", "counter",
               "Restarts of the process that renders snapshots, by reason: exited (it died), "
               "timeout (killed after not answering); snapshots are rendered in the daemon "
               "until it is back.", "", ("reason",),
               module="collectors/render_worker.py",
               condition="with http.render_worker (the default)"),
    # --- records -----------------------------------------------------------
    MetricSpec(f"{PREFIX}records_consumed_total", "counter",
               "Kafka records read, per topic (a batch message counts once).", "",
               ("topic",),
               module="monitor/engine.py"),
    MetricSpec(f"{PREFIX}events_accepted_total", "counter",
               "Events that passed validation, per topic.", "", ("topic",),
               module="monitor/engine.py"),
    MetricSpec(f"{PREFIX}records_rejected_total", "counter",
               "Records or batch elements refused, per topic and reason.", "",
               ("topic", "reason"),
               module="monitor/engine.py",
               condition="once a record is refused"),
    MetricSpec(f"{PREFIX}dead_letter_records_total", "counter",
               "Rejected records produced to the dead-letter topic, by outcome.", "",
               ("outcome",),
               module="collectors/daemon.py",
               condition="with kafka.dead_letter_topic, once a record is refused"),
    MetricSpec(f"{PREFIX}series_limited_total", "counter",
               "Events whose model or version was folded into `_other` by a cardinality limit.",
               "", ("model",),
               module="monitor/engine.py",
               condition="once a model has more than limits.max_versions_per_model versions"),
    MetricSpec(f"{PREFIX}late_events_total", "counter",
               "Events at least the longest window older than their model's newest event "
               "time (the windows' right edge), per topic: predictions by their event time, "
               "labels by their join's (the later of label and prediction), images when "
               "scored. Still counted in the cumulative counters; left out of every window.",
               "",
               ("topic",),
               module="monitor/engine.py, monitor/labels.py, monitor/shadow.py",
               condition="once an event is older than the longest window"),
    MetricSpec(f"{PREFIX}series_capped", "gauge",
               "Label sets of a metric beyond limits.max_series_per_metric in the latest "
               "snapshot, by metric: folded into `_other` (counters and histograms, summed) "
               "or left out (gauges).", "", ("metric",),
               module="monitor/series_cap.py",
               condition="once a metric has more than limits.max_series_per_metric label sets"),
    # --- predictions -------------------------------------------------------
    MetricSpec(f"{PREFIX}predictions_total", "counter",
               "Successful predictions by predicted class.", "", ("model", "version", "class"),
               module="monitor/engine.py"),
    MetricSpec(f"{PREFIX}requests_total", "counter", "Requests by status (ok|error).", "",
               ("model", "version", "status"),
               module="monitor/engine.py"),
    MetricSpec(f"{PREFIX}request_latency_seconds", "histogram",
               "Serving latency reported by the model server.", "seconds", MV,
               LATENCY_BUCKETS,
               module="monitor/engine.py"),
    MetricSpec(f"{PREFIX}prediction_confidence", "histogram",
               "Top-1 probability of successful predictions.", "ratio", MV,
               CONFIDENCE_BUCKETS,
               module="monitor/engine.py"),
    MetricSpec(f"{PREFIX}last_event_timestamp_seconds", "gauge",
               "Event time (ts) of the newest prediction seen.", "seconds", MV,
               module="monitor/engine.py"),
    # --- drift -------------------------------------------------------------
    MetricSpec(f"{PREFIX}drift_psi", "gauge",
               "Population stability index of the window against the baseline.", "", DRIFT,
               module="monitor/drift.py",
               condition="with a baseline (baseline.mode file, or first_events once sealed)"),
    MetricSpec(f"{PREFIX}drift_kl", "gauge",
               "KL(current || baseline) in nats.", "", DRIFT,
               module="monitor/drift.py",
               condition="with a baseline (baseline.mode file, or first_events once sealed)"),
    MetricSpec(f"{PREFIX}drift_threshold", "gauge",
               "Sample-size-aware PSI critical value; drift when PSI exceeds it.", "", DRIFT,
               module="monitor/drift.py",
               condition="with a baseline (baseline.mode file, or first_events once sealed)"),
    MetricSpec(f"{PREFIX}drift_window_events", "gauge",
               "Events in the window the drift figures were computed on.", "", DRIFT,
               module="monitor/drift.py",
               condition="with a baseline (baseline.mode file, or first_events once sealed)"),
    MetricSpec(f"{PREFIX}feature_bin_total", "counter",
               "Events per baseline bin of each drift feature.", "",
               ("model", "version", "feature", "bin"),
               module="monitor/drift.py",
               condition="with a baseline (baseline.mode file, or first_events once sealed)"),
    MetricSpec(f"{PREFIX}baseline_bin_ratio", "gauge",
               "Smoothed baseline proportion of each bin.", "ratio",
               ("model", "version", "feature", "bin"),
               module="monitor/drift.py",
               condition="with a baseline (baseline.mode file, or first_events once sealed)"),
    MetricSpec(f"{PREFIX}baseline_info", "info",
               "Each model's baseline: source file (loaded from baseline.path) or first_events "
               "(collected from the model's first predictions); state collecting (no drift "
               "yet) or sealed (bins fixed, drift measured); version the baseline's own "
               "baseline_version (not a model version: a collected baseline spans whatever "
               "versions served); sha256 the first 16 hex digits of its content hash, which "
               "changes when a sealed baseline gains its image profile or its calibration.", "",
               ("model", "version", "source", "state", "sha256"),
               module="monitor/drift.py",
               condition="with baseline.mode file or first_events"),
    MetricSpec(f"{PREFIX}baseline_events", "gauge",
               "What the model's baseline rests on, by kind: predictions (binned), labelled "
               "(labeled predictions its calibration map is fitted on, or joined so far "
               "towards baseline.min_labels), images (scored images of its image profile, or "
               "collected so far towards baseline.images).", "", ("model", "kind"),
               module="monitor/drift.py",
               condition="with baseline.mode file or first_events"),
    # --- labels, calibration, per-class SLIs --------------------------------
    MetricSpec(f"{PREFIX}labels_total", "counter",
               "Joined labels by true class and outcome (correct|incorrect).", "",
               ("model", "version", "class", "outcome"),
               module="monitor/labels.py",
               condition="once labels join predictions (feedback topic)"),
    MetricSpec(f"{PREFIX}labeled_predictions_total", "counter",
               "Joined labels by predicted class and outcome (correct|incorrect).", "",
               ("model", "version", "class", "outcome"),
               module="monitor/labels.py",
               condition="once labels join predictions (feedback topic)"),
    MetricSpec(f"{PREFIX}labels_duplicate_total", "counter",
               "Labels for a request that already has one: counted and dropped, or replacing "
               "a label still waiting for its prediction, by the policy labels.duplicates "
               "(first|last).", "", ("model", "policy"),
               module="monitor/labels.py"),
    MetricSpec(f"{PREFIX}top5_correct_total", "counter",
               "Labeled predictions whose label is in the top 5.", "", MV,
               module="monitor/labels.py",
               condition="once labels join predictions (feedback topic), with top-5 scores"),
    MetricSpec(f"{PREFIX}confusion_pair_total", "counter",
               "Labeled predictions by (true, predicted) pair, most confused pairs only.", "",
               ("model", "version", "true_class", "pred_class"),
               module="monitor/labels.py",
               condition="once labels join predictions (feedback topic) and one is wrong"),
    MetricSpec(f"{PREFIX}calibration_bin_events_total", "counter",
               "Labeled predictions per confidence bin (15 equal-width bins).", "",
               ("model", "version", "bin"),
               module="monitor/labels.py",
               condition="once labels join predictions (feedback topic)"),
    MetricSpec(f"{PREFIX}calibration_bin_confidence_sum_total", "counter",
               "Sum of top-1 confidence per calibration bin.", "", ("model", "version", "bin"),
               module="monitor/labels.py",
               condition="once labels join predictions (feedback topic)"),
    MetricSpec(f"{PREFIX}calibration_bin_correct_total", "counter",
               "Correct labeled predictions per calibration bin.", "",
               ("model", "version", "bin"),
               module="monitor/labels.py",
               condition="once labels join predictions (feedback topic)"),
    MetricSpec(f"{PREFIX}calibration_ece", "gauge",
               "Top-label expected calibration error over the window, by what the confidence "
               f"is checked against: source=\"{ECE_SOURCE_LABELS}\" the ground-truth labels, "
               f"source=\"{ECE_SOURCE_REFERENCE}\" the reference model's answers taken as "
               "labels.", "ratio", ("model", "version", "window", "source"),
               module="monitor/labels.py, monitor/shadow.py",
               condition="source=labels: once labels join predictions (feedback topic); "
                         "source=reference: with a reference model and images"),
    MetricSpec(f"{PREFIX}calibration_mce", "gauge",
               "Maximum calibration error over the window.", "ratio", MVW,
               module="monitor/labels.py",
               condition="once labels join predictions (feedback topic)"),
    MetricSpec(f"{PREFIX}brier_score", "gauge",
               "Multiclass Brier score over the window (needs probs).", "", MVW,
               module="monitor/labels.py",
               condition="once labels join predictions that carry probability vectors"),
    MetricSpec(f"{PREFIX}accuracy_ratio", "gauge",
               "Realized accuracy of labeled predictions over the window.", "ratio", MVW,
               module="monitor/labels.py",
               condition="once labels join predictions (feedback topic)"),
    MetricSpec(f"{PREFIX}estimated_accuracy_ratio", "gauge",
               "Label-free accuracy estimate over the window; method calibrated: mean "
               "confidence mapped through the baseline's calibration map (fitted on labels); "
               "mean_confidence: the raw mean top-1 confidence, because the baseline has no "
               "calibration yet (often optimistic or pessimistic by several points); atc: the "
               "share of predictions whose confidence is at least the baseline's ATC "
               "threshold (exported beside calibrated when the baseline has it); "
               "shadow_stratified: the baseline's accuracy per (agrees with the reference x "
               "confidence bin), weighted by the window's shadow-scored images.", "ratio",
               (*MVW, "method"),
               module="monitor/labels.py, monitor/shadow.py",
               condition="with a baseline (baseline.mode file, or first_events once sealed)"),
    MetricSpec(f"{PREFIX}label_coverage_ratio", "gauge",
               "Labeled predictions / predictions over the window.", "ratio", MVW,
               module="monitor/labels.py",
               condition="once labels join predictions (feedback topic)"),
    MetricSpec(f"{PREFIX}class_recall_ratio", "gauge",
               "Per-class recall over the window (class = true class).", "ratio",
               ("model", "version", "class", "window"),
               module="monitor/labels.py",
               condition="once labels join predictions (feedback topic)"),
    MetricSpec(f"{PREFIX}class_precision_ratio", "gauge",
               "Per-class precision over the window (class = predicted class).", "ratio",
               ("model", "version", "class", "window"),
               module="monitor/labels.py",
               condition="once labels join predictions (feedback topic)"),
    MetricSpec(f"{PREFIX}acceptance_decisions_total", "counter",
               "Labelled predictions by acceptance decision (accepted: confidence at or above "
               "the model's accept.threshold; routed: below it, to human review) and outcome "
               "(correct; false_accept: accepted, wrong, predicted one of "
               "accept.negative_classes, or any class without them; incorrect: other errors), "
               "by predicted class and true class (only pairs that occurred; true_class "
               "_other beyond limits.max_series_per_metric pairs per version).", "",
               ("model", "version", "decision", "outcome", "class", "true_class"),
               module="monitor/acceptance.py",
               condition="with models[].accept, once labels join predictions"),
    MetricSpec(f"{PREFIX}false_accept_ratio", "gauge",
               "False accepts / labelled predictions over the window (the guide's M15, "
               "incorrect accepts / total).", "ratio", MVW,
               module="monitor/acceptance.py",
               condition="with models[].accept, once labels join predictions"),
    MetricSpec(f"{PREFIX}class_roc_auc", "gauge",
               "One-vs-rest ROC-AUC of the class over the window, from auc.score_bins score "
               "bins of labelled predictions with probs or topk (0.5: no better than chance; "
               "exported once the class has a positive and a negative).", "",
               ("model", "version", "class", "window"),
               module="monitor/class_auc.py",
               condition="with auc.enabled, once labels join predictions with probs or topk"),
    MetricSpec(f"{PREFIX}roc_auc_macro", "gauge",
               "Mean of visionmon_class_roc_auc over the classes that have one in the window.",
               "", MVW,
               module="monitor/class_auc.py",
               condition="with auc.enabled, once labels join predictions with probs or topk"),
    MetricSpec(f"{PREFIX}class_pr_auc", "gauge",
               "One-vs-rest PR-AUC (average precision) of the class over the window, from "
               "auc.score_bins score bins of labelled predictions with probs or topk "
               "(exported once the class has a positive).", "",
               ("model", "version", "class", "window"),
               module="monitor/class_auc.py",
               condition="with auc.enabled, once labels join predictions with probs or topk"),
    MetricSpec(f"{PREFIX}pr_auc_macro", "gauge",
               "Mean of visionmon_class_pr_auc over the classes that have one in the window.",
               "", MVW,
               module="monitor/class_auc.py",
               condition="with auc.enabled, once labels join predictions with probs or topk"),
    MetricSpec(f"{PREFIX}label_delay_seconds", "histogram",
               "Time from prediction to its ground-truth label.", "seconds", ("model",),
               LABEL_DELAY_BUCKETS,
               module="monitor/labels.py",
               condition="once labels join predictions (feedback topic)"),
    MetricSpec(f"{PREFIX}pending_joins", "gauge",
               "Entries waiting in a join store for their other half.", "", ("store",),
               module="monitor/snapshot.py"),
    MetricSpec(f"{PREFIX}join_evicted_total", "counter",
               "Join-store entries evicted before being joined.", "", ("store", "reason"),
               module="monitor/snapshot.py",
               condition="once a join-store entry is evicted"),
    MetricSpec(f"{PREFIX}eval_windows_total", "counter",
               "Closed evaluation slices per quality objective.", "",
               ("model", "version", "objective"),
               module="monitor/quality.py",
               condition="once an evaluation slice (quality.eval_slice) closes"),
    MetricSpec(f"{PREFIX}eval_windows_good_total", "counter",
               "Closed evaluation slices in which the objective held.", "",
               ("model", "version", "objective"),
               module="monitor/quality.py",
               condition="once an evaluation slice (quality.eval_slice) closes"),
    # --- the production model's lifecycle (the optional lifecycle topic) ------
    MetricSpec(f"{PREFIX}model_info", "info",
               "Artifacts the replicas serve, per model version: one series per SHA-256 that "
               "is some replica's latest load of the version. Two series for one (model, "
               "version) mean replicas serve different artifacts under one version name.", "",
               ("model", "version", "sha256"),
               module="monitor/lifecycle.py",
               condition="with kafka.topics.lifecycle, once a replica reports a load"),
    MetricSpec(f"{PREFIX}model_replicas", "gauge",
               "Replicas (hosts) whose latest load of the version is this artifact.", "",
               ("model", "version", "sha256"),
               module="monitor/lifecycle.py",
               condition="with kafka.topics.lifecycle, once a replica reports a load"),
    MetricSpec(f"{PREFIX}model_first_load_timestamp_seconds", "gauge",
               "Event time of the first load of this artifact by a replica that still holds "
               "it.", "seconds", ("model", "version", "sha256"),
               module="monitor/lifecycle.py",
               condition="with kafka.topics.lifecycle, once a replica reports a load"),
    MetricSpec(f"{PREFIX}model_last_load_timestamp_seconds", "gauge",
               "Event time of the latest load of this artifact by any replica.", "seconds",
               ("model", "version", "sha256"),
               module="monitor/lifecycle.py",
               condition="with kafka.topics.lifecycle, once a replica reports a load"),
    MetricSpec(f"{PREFIX}model_load_seconds", "histogram",
               "Time replicas took to load and warm up the production model.", "seconds", MV,
               MODEL_LOAD_SECONDS_BUCKETS,
               module="monitor/lifecycle.py",
               condition="with kafka.topics.lifecycle, once a replica reports a load"),
    MetricSpec(f"{PREFIX}model_load_failures_total", "counter",
               "Failed loads of the production model, by reason.", "",
               ("model", "version", "reason"),
               module="monitor/lifecycle.py",
               condition="with kafka.topics.lifecycle, once a load fails"),
    MetricSpec(f"{PREFIX}model_rollouts_total", "counter",
               "Versions rolled out or rolled back (kind rolled_out|rolled_back).", "",
               ("model", "version", "kind"),
               module="monitor/lifecycle.py",
               condition="with kafka.topics.lifecycle, once a rollout is reported"),
    # --- reference model ----------------------------------------------------
    MetricSpec(f"{PREFIX}reference_model_info", "info",
               "Loaded reference model: file hash, device, batch size and the precision it "
               "computes in (float32, or bf16: autocast on CUDA, reference.cpu_bf16 on the "
               "CPU).", "",
               ("model", "sha256", "device", "batch_size", "precision"),
               module="reference_model/shadow.py",
               condition="with a reference model (reference:)"),
    MetricSpec(f"{PREFIX}reference_model_up", "gauge",
               "1 when shadow scoring is running, 0 when disabled or failed.", "", ("model",),
               module="reference_model/shadow.py",
               condition="with a reference model (reference:)"),
    MetricSpec(f"{PREFIX}reference_model_load_seconds", "gauge",
               "Time taken to load and warm up the reference model.", "seconds", ("model",),
               module="reference_model/shadow.py",
               condition="with a reference model (reference:)"),
    MetricSpec(f"{PREFIX}reference_batch_seconds", "histogram",
               "Inference time of one reference-model batch.", "seconds", ("model",),
               BATCH_SECONDS_BUCKETS,
               module="reference_model/shadow.py",
               condition="with a reference model and images"),
    MetricSpec(f"{PREFIX}reference_queue_depth", "gauge",
               "Images waiting for the reference model.", "", ("model",),
               module="reference_model/shadow.py",
               condition="with a reference model (reference:)"),
    MetricSpec(f"{PREFIX}reference_images_scored_total", "counter",
               "Images scored by the reference model.", "", ("model",),
               module="reference_model/shadow.py",
               condition="with a reference model (reference:)"),
    MetricSpec(f"{PREFIX}reference_errors_total", "counter",
               "Reference-model failures, by reason: failed batches, or decode worker "
               "processes that died.", "", ("model", "reason"),
               module="reference_model/shadow.py",
               condition="with a reference model (reference:), once a batch fails"),
    MetricSpec(f"{PREFIX}images_rejected_total", "counter",
               "Images refused at intake, by reason.", "", ("reason",),
               module="reference_model/shadow.py",
               condition="with a reference model (reference:), once an image is refused"),
    MetricSpec(f"{PREFIX}images_dropped_total", "counter",
               "Images dropped by the queue policy, by reason.", "", ("reason",),
               module="reference_model/shadow.py",
               condition="with a reference model (reference:), once an image is dropped"),
    MetricSpec(f"{PREFIX}reference_gpu_utilization_ratio", "gauge",
               "Share of NVML's last sample period in which the reference model's GPU ran a "
               "kernel (any process's), 0..1.", "ratio", ("model",),
               module="reference_model/gpu.py", condition=REFERENCE_GPU),
    MetricSpec(f"{PREFIX}reference_gpu_memory_used_bytes", "gauge",
               "Memory in use on the reference model's GPU (by every process), from NVML.",
               "bytes", ("model",),
               module="reference_model/gpu.py", condition=REFERENCE_GPU),
    MetricSpec(f"{PREFIX}reference_gpu_memory_total_bytes", "gauge",
               "Memory of the reference model's GPU, from NVML.", "bytes", ("model",),
               module="reference_model/gpu.py", condition=REFERENCE_GPU),
    MetricSpec(f"{PREFIX}reference_gpu_power_watts", "gauge",
               "Power drawn by the reference model's GPU, from NVML (absent where the board "
               "does not report it).", "watts", ("model",),
               module="reference_model/gpu.py", condition=REFERENCE_GPU),
    MetricSpec(f"{PREFIX}shadow_scored_total", "counter",
               "Scored images joined to their prediction, by agreement.", "",
               ("model", "version", "outcome"),
               module="monitor/shadow.py",
               condition="with a reference model and images"),
    MetricSpec(f"{PREFIX}shadow_class_total", "counter",
               "Shadow outcomes by production's predicted class.", "",
               ("model", "version", "class", "outcome"),
               module="monitor/shadow.py",
               condition="with a reference model and images"),
    MetricSpec(f"{PREFIX}shadow_agreement_ratio", "gauge",
               "Agreement of production with the reference model over the window; absent "
               "below quality.min_shadow_images joined images.", "ratio",
               MVW,
               module="monitor/shadow.py",
               condition="with a reference model and images, from quality.min_shadow_images "
                         "joined images"),
    MetricSpec(f"{PREFIX}shadow_agreement_pvalue", "gauge",
               "One-sided p-value that agreement with the reference model fell under the "
               "baseline's over the window: the smallest of one test per production class "
               "and the overall ones (count, weighted count, unusual class pairs), "
               "weighted-Bonferroni-adjusted; absent without the baseline's agreement "
               "profile.", "", MVW,
               module="monitor/shadow.py",
               condition="with a reference model and images, and a baseline with an "
                         "agreement profile"),
    MetricSpec(f"{PREFIX}embedding_mmd", "gauge",
               "Embedding drift of the window against the baseline's reference sample: the "
               "largest MMD^2 (RBF kernel, three bandwidths), each standardised by its "
               "simulated null.", "", MVW,
               module="monitor/shadow.py",
               condition="with a reference model and images, and a baseline with embeddings"),
    MetricSpec(f"{PREFIX}embedding_mmd_threshold", "gauge",
               "Critical value of visionmon_embedding_mmd at the MMD test's level, from the "
               "baseline's simulated null.", "", MVW,
               module="monitor/shadow.py",
               condition="with a reference model and images, and a baseline with embeddings"),
    MetricSpec(f"{PREFIX}unusual_input_ratio", "gauge",
               "Share of the window's scored images above the baseline's 99th percentile of "
               "an unusualness score (score: knn, the distance of the embedding to its 5th "
               "nearest neighbour in the baseline's sample; energy, -logsumexp of the "
               "reference logits); clean traffic: about 0.01.", "ratio",
               (*MVW, "score"),
               module="monitor/unusual_monitor.py",
               condition=_UNUSUAL_WINDOW),
    MetricSpec(f"{PREFIX}unusual_input_ratio_threshold", "gauge",
               "Largest visionmon_unusual_input_ratio a clean window of as many images "
               "reaches at the test's level (one-sided beta-binomial test on the baseline's "
               "own count above its 99th percentile, at drift.alpha / 2 per score; for a "
               "large baseline, the binomial test against 0.01): a ratio above it is unusual.",
               "ratio",
               (*MVW, "score"),
               module="monitor/unusual_monitor.py",
               condition=_UNUSUAL_WINDOW),
    MetricSpec(f"{PREFIX}unusual_input_rank", "histogram",
               "Scored images by the share of baseline images with a lower unusualness score "
               "(1 above the baseline's 99th percentile): uniform for clean traffic, mass in "
               "the top bucket for unusual inputs.", "ratio",
               ("model", "version", "score"), UNUSUAL_RANK_BUCKETS,
               module="monitor/unusual_monitor.py",
               condition="with a reference model and images, and a baseline with unusualness "
                         "profiles"),
    # --- segments: one series per value of each segment key, in families of their own so
    # that a sum over the overall families never counts an event twice ------------------
    MetricSpec(f"{PREFIX}segment_requests_total", "counter",
               "Requests per segment value (segment_key: a key of models[].segments, segment: "
               "its value, _other beyond the key's bound, _none without the key), by status; "
               "each request counts once per key. Segment series live in these "
               "visionmon_segment_* families only, never in the overall ones, so a sum over an "
               "overall family counts each event once; the key is a label value, so the "
               "families are the same whatever keys a config declares.", "",
               (*SEG, "status"),
               module="monitor/segments.py", condition=_SEGMENTED),
    MetricSpec(f"{PREFIX}segment_values_folded_total", "counter",
               "Requests whose segment value was folded into _other: beyond the key's "
               "max_values, or not in its values list.", "", ("model", "segment_key"),
               module="monitor/segments.py", condition=_SEGMENTED),
    MetricSpec(f"{PREFIX}segment_drift_psi", "gauge",
               "Population stability index of one segment value's window against the model's "
               "baseline: the prediction features and, with a reference model, the scored "
               "images' input features (an image's segment.<key> headers, else its "
               "prediction's segments; an image scored before its prediction arrives and "
               "without headers counts under _none).", "", (*SEG, "feature", "window"),
               module="monitor/segments.py", condition=f"{_SEGMENTED} and a baseline"),
    MetricSpec(f"{PREFIX}segment_drift_threshold", "gauge",
               "Sample-size-aware PSI critical value of one segment value's window, at the "
               "model's per-feature level; drift when PSI exceeds it.", "",
               (*SEG, "feature", "window"),
               module="monitor/segments.py", condition=f"{_SEGMENTED} and a baseline"),
    MetricSpec(f"{PREFIX}segment_drift_window_events", "gauge",
               "Events of one segment value in the window its drift figures were computed "
               "on.", "", (*SEG, "feature", "window"),
               module="monitor/segments.py", condition=f"{_SEGMENTED} and a baseline"),
    MetricSpec(f"{PREFIX}segment_labelled_events", "gauge",
               "Labelled predictions of one segment value over the window.", "",
               (*SEG, "window"),
               module="monitor/segments.py", condition=f"{_SEGMENTED}, once labels join"),
    MetricSpec(f"{PREFIX}segment_accuracy_ratio", "gauge",
               "Realized accuracy of one segment value's labelled predictions over the "
               "window.", "ratio", (*SEG, "window"),
               module="monitor/segments.py", condition=f"{_SEGMENTED}, once labels join"),
    MetricSpec(f"{PREFIX}segment_calibration_ece", "gauge",
               "Expected calibration error of one segment value's labelled predictions over "
               "the window.", "ratio", (*SEG, "window"),
               module="monitor/segments.py", condition=f"{_SEGMENTED}, once labels join"),
    MetricSpec(f"{PREFIX}segment_class_recall_ratio", "gauge",
               "Per-class recall of one segment value over the window (class = true class; "
               "classes with labels in the window only).", "ratio",
               (*SEG, "class", "window"),
               module="monitor/segments.py", condition=f"{_SEGMENTED}, once labels join"),
    MetricSpec(f"{PREFIX}segment_shadow_images", "gauge",
               "Images of one segment value (its prediction's segments) joined to their "
               "prediction and scored by the reference model over the window.", "",
               (*SEG, "window"),
               module="monitor/segments.py",
               condition=f"{_SEGMENTED}, with a reference model and images"),
    MetricSpec(f"{PREFIX}segment_shadow_agreement_ratio", "gauge",
               "Agreement of production with the reference model on one segment value's "
               "images over the window; absent below quality.min_shadow_images images.",
               "ratio", (*SEG, "window"),
               module="monitor/segments.py",
               condition=f"{_SEGMENTED}, with a reference model and images, from "
                         "quality.min_shadow_images joined images"),
)

EMITTER = "collectors/emitter/metrics.py"
BRIDGE = "collectors/kserve/bridge.py"
#: The serving side's own metrics (the emitter library in the model server, the KServe
#: bridge): never exported by the daemon, listed here so that the naming rules and
#: docs/metrics.md cover them too.
_CLIENT_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec(f"{PREFIX}emitter_events_total", "counter",
               "Events accepted into the logger's buffer, by kind.", "", ("kind",),
               module=EMITTER),
    MetricSpec(f"{PREFIX}emitter_sent_total", "counter",
               "Events handed to the Kafka client, by kind.", "", ("kind",), module=EMITTER),
    MetricSpec(f"{PREFIX}emitter_messages_total", "counter",
               "Kafka messages handed to the client, by kind.", "", ("kind",), module=EMITTER),
    MetricSpec(f"{PREFIX}emitter_dropped_total", "counter",
               "Events dropped before reaching Kafka, by kind and reason.", "",
               ("kind", "reason"), module=EMITTER),
    MetricSpec(f"{PREFIX}emitter_images_unsampled_total", "counter",
               "Images offered but not selected by sampling.", "", module=EMITTER),
    MetricSpec(f"{PREFIX}emitter_queue_events", "gauge",
               "Events buffered and not yet handed to Kafka.", "", module=EMITTER),
    MetricSpec(f"{PREFIX}emitter_queue_bytes", "gauge",
               "Bytes buffered and not yet handed to Kafka.", "bytes", module=EMITTER),
    MetricSpec(f"{PREFIX}bridge_cloudevents_received_total", "counter",
               "CloudEvents received, by type.", "", ("type",), module=BRIDGE),
    MetricSpec(f"{PREFIX}bridge_cloudevents_malformed_total", "counter",
               "HTTP messages or events that could not be used.", "", ("reason",),
               module=BRIDGE),
    MetricSpec(f"{PREFIX}bridge_unpaired_total", "counter",
               "Halves that left without their partner, by half and reason.", "",
               ("half", "reason"), module=BRIDGE),
    MetricSpec(f"{PREFIX}bridge_pairs_total", "counter",
               "Requests paired with their response.", "", module=BRIDGE),
    MetricSpec(f"{PREFIX}bridge_predictions_total", "counter",
               "Predictions handed to the emitter (one per instance).", "", module=BRIDGE),
    MetricSpec(f"{PREFIX}bridge_images_total", "counter",
               "Sampled images handed to the emitter.", "", module=BRIDGE),
    MetricSpec(f"{PREFIX}bridge_pending", "gauge",
               "Halves waiting for their partner.", "", module=BRIDGE),
    MetricSpec(f"{PREFIX}bridge_pending_bytes", "gauge",
               "Bytes held by waiting halves.", "bytes", module=BRIDGE),
)

#: The set of label values `reason` may take on rejection counters is bounded by
#: `monitor.events.RejectReason`; `window` by the configured windows.


class Catalog:
    """Lookup over the metric specs; iteration order is declaration order."""

    def __init__(self, specs: tuple[MetricSpec, ...]) -> None:
        by_name: dict[str, MetricSpec] = {}
        for spec in specs:
            if spec.name in by_name:
                raise ValueError(f"metric {spec.name} declared twice in the catalog")
            if not spec.name.startswith(PREFIX):
                raise ValueError(f"metric {spec.name} lacks the {PREFIX} prefix")
            if spec.kind == "counter" and not spec.name.endswith("_total"):
                raise ValueError(f"counter {spec.name} must end in _total")
            if spec.kind == "histogram" and not spec.buckets:
                raise ValueError(f"histogram {spec.name} needs buckets")
            by_name[spec.name] = spec
        self._by_name = by_name

    def __iter__(self) -> Iterator[MetricSpec]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> MetricSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"metric {name!r} is not in the catalog") from None

    def series_names(self) -> frozenset[str]:
        """Every sample name that can appear on /metrics (histogram parts included)."""
        return frozenset(s for spec in self for s in spec.series_names())

    def family_of(self, series: str) -> MetricSpec | None:
        """The family a sample or recording-rule input name belongs to, if any."""
        if series in self._by_name:
            return self._by_name[series]
        for suffix in ("_bucket", "_sum", "_count"):
            if series.endswith(suffix):
                spec = self._by_name.get(series[: -len(suffix)])
                if spec is not None and spec.kind == "histogram":
                    return spec
        return None


CATALOG = Catalog(_SPECS)
#: The serving side's metrics (emitter, KServe bridge); disjoint from `CATALOG`.
CLIENT_CATALOG = Catalog(_CLIENT_SPECS)


def metric(short: str) -> str:
    """Full metric name for a short name (`"requests_total"` -> `"visionmon_requests_total"`),
    checked against the catalog so generators fail at build time on a typo."""
    name = short if short.startswith(PREFIX) else PREFIX + short
    return CATALOG[name].name
