"""YAML configuration -> frozen typed objects.

Every section is a pydantic model with `extra="forbid"`, so an unknown key is an
error, and every error names the file, the key path and what would be valid.
Secrets are never read from the file: only the *names* of environment variables.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from monitor.config_paths import ConfigPath, relative_to
from monitor.cost_config import CostConfig
from monitor.durations import Duration, parse_duration
from monitor.frozen_model import Frozen
from monitor.reference_config import ImagesConfig, ReferenceConfig
from monitor.segment_config import SegmentConfig
from monitor.slo_spec import CLASS_KINDS, Objective, SloSpec

CONFIG_VERSION = 1


class ConfigError(Exception):
    """A configuration problem, phrased for a human: file, key path, what would be valid."""


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


_LITERAL_SECRETS = {
    "sasl_password": "sasl_password_env",
    "sasl_username": "sasl_username_env",
    "ssl_password": "ssl_key_password_env",
    "password": "sasl_password_env",
}


class TopicsConfig(Frozen):
    predictions: str = "predictions"
    """Topic of the prediction events (one record per request; see docs/events.md)."""
    images: str = "images"
    """Topic of the sampled input images (raw bytes plus headers)."""
    feedback: str = "feedback"
    """Topic of the late ground-truth labels."""
    lifecycle: str | None = None
    """Topic of the production model's lifecycle events (loaded, load failed, rolled out, rolled
    back; see docs/events.md); none: not read, and no model metadata is exported."""

    @model_validator(mode="after")
    def _lifecycle_topic_of_its_own(self) -> TopicsConfig:
        others = {"predictions": self.predictions, "images": self.images,
                  "feedback": self.feedback}
        shared = [role for role, name in others.items() if name == self.lifecycle]
        if shared:
            raise ValueError(f"lifecycle topic {self.lifecycle!r} is also the {shared[0]} "
                             "topic; lifecycle events need a topic of their own")
        return self


class KafkaConfig(Frozen):
    bootstrap_servers: list[str] = Field(default_factory=lambda: ["127.0.0.1:9092"], min_length=1)
    """Brokers to bootstrap from, as host:port."""
    group_id: str = "visionmon"
    """Consumer group; replicas of one deployment share it and split the partitions."""
    client: Literal["kafka-python", "confluent-kafka"] = "kafka-python"
    """Client library: pure-Python kafka-python, or confluent-kafka (librdkafka; `pip install
    'visionmon[confluent]'`)."""
    topics: TopicsConfig = TopicsConfig()
    """Names of the input topics (three, and the optional lifecycle topic)."""
    dead_letter_topic: str | None = None
    """Topic that receives refused records with their original bytes and the reason; none: refused
    records are only counted."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How the client talks to the brokers: plain, TLS, SASL, or SASL over TLS."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """SASL mechanism; required with SASL_PLAINTEXT and SASL_SSL."""
    sasl_username_env: EnvName | None = None
    """Name of the environment variable holding the SASL user name."""
    sasl_password_env: EnvName | None = None
    """Name of the environment variable holding the SASL password."""
    ssl_cafile: ConfigPath | None = None
    """CA bundle (PEM) that verifies the brokers' certificates (SSL and SASL_SSL)."""
    ssl_certfile: ConfigPath | None = None
    """Client certificate (PEM) for mutual TLS."""
    ssl_keyfile: ConfigPath | None = None
    """Private key (PEM) of the client certificate."""
    ssl_key_password_env: EnvName | None = None
    """Name of the environment variable holding the client key's password."""
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    """Where a group without committed offsets starts reading: the oldest or the newest record."""
    poll_timeout_ms: int = Field(500, ge=10, le=60_000)
    """Longest wait of one poll for records, in milliseconds."""
    max_poll_records: int = Field(5000, ge=1, le=1_000_000)
    """Most records returned by one poll (one batch of the consumer loop)."""
    session_timeout_ms: int = Field(6000, ge=1000)
    """Broker-side timeout after which a silent consumer leaves the group, in milliseconds."""
    heartbeat_interval_ms: int = Field(1000, ge=100)
    """Interval of the consumer's heartbeats to the group coordinator, in milliseconds."""
    max_poll_interval_ms: int = Field(6000, ge=1000)
    """Longest time between two polls before the consumer is considered stuck and its partitions
    reassigned, in milliseconds."""
    commit_interval_seconds: float = Field(1.0, ge=0.0)
    """How often processed offsets are committed, in seconds (also on revocation and shutdown); 0
    commits after every batch."""
    lag_interval_seconds: float = Field(5.0, gt=0.0)
    """How often the consumer lag (visionmon_consumer_lag_records) is measured, in seconds."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_literal_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, instead in _LITERAL_SECRETS.items():
                if key in data:
                    raise ValueError(f"literal secret {key!r} is not allowed in the file; put "
                                     f"it in an environment variable and set {instead!r} to "
                                     "the variable's name")
        return data

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise ValueError("security_protocol SASL_* needs sasl_mechanism "
                                 "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
            if not (self.sasl_username_env and self.sasl_password_env):
                raise ValueError("security_protocol SASL_* needs sasl_username_env and "
                                 "sasl_password_env (names of environment variables)")
        return self


class AcceptRule(Frozen):
    """A model's operating threshold: which predictions are acted on without a person, and
    which errors among them are the costly ones (false accepts)."""

    threshold: float = Field(gt=0, le=1)
    """Confidence at or above which a prediction is accepted (acted on); below it, it is routed
    to human review. In (0, 1]."""
    negative_classes: list[str] = Field(default_factory=list)
    """Classes whose acceptance lets an item through (e.g. `ok` of a defect detector): a false
    accept is an accepted prediction of one of them whose label is another class. Empty: every
    accepted prediction whose label differs is a false accept. Each must be one of the model's
    classes."""


class ModelConfig(Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    """Model name: the `model` field of the events and the `model` label of the metrics."""
    classes: list[str] | None = None
    """Class names in the model's output order (at least 2, distinct); or use classes_file."""
    classes_file: ConfigPath | None = None
    """File with one class name per line (blank lines ignored), instead of classes."""
    high_risk_classes: list[str] = Field(default_factory=list)
    """Classes whose errors cost most; the dashboards show them on their own. Each must be one of
    the model's classes."""
    accept: AcceptRule | None = None
    """The acceptance rule (`{threshold: 0.8, negative_classes: [ok]}`): labelled predictions are
    counted as accepted or routed and correct or false accept
    (`visionmon_acceptance_decisions_total`, `visionmon_false_accept_ratio`); none: not counted."""
    segments: list[SegmentConfig] = Field(default_factory=list, max_length=8)
    """Segment keys (camera, site) whose values the model's counts, drift, quality and shadow
    agreement are also kept by, one key at a time (not their cross product), each value in
    `visionmon_segment_*` series labelled `segment_key` and `segment`. At most 8 keys."""

    @field_validator("segments")
    @classmethod
    def _distinct_segment_keys(cls, segments: list[SegmentConfig]) -> list[SegmentConfig]:
        keys = [s.key for s in segments]
        if len(set(keys)) != len(keys):
            twice = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(f"segment keys repeat: {twice}")
        return segments

    @field_validator("classes")
    @classmethod
    def _valid_classes(cls, classes: list[str] | None) -> list[str] | None:
        if classes is not None:
            _check_class_list(classes)
        return classes

    @model_validator(mode="after")
    def _one_class_source(self) -> ModelConfig:
        if (self.classes is None) == (self.classes_file is None):
            raise ValueError("give exactly one of 'classes' (inline list) or 'classes_file'")
        if self.classes is not None:
            unknown = [c for c in self.high_risk_classes if c not in self.classes]
            if unknown:
                raise ValueError(f"high_risk_classes {unknown} are not in the class list; "
                                 f"valid classes: {choices(self.classes)}")
            problem = unknown_negative_classes(self.accept, self.classes)
            if problem:
                raise ValueError(f"{problem} the class list; valid classes: "
                                 f"{choices(self.classes)}")
        return self


def unknown_negative_classes(rule: AcceptRule | None, classes: Sequence[str]) -> str:
    """`accept.negative_classes [...] are not in` when the rule names a class the model lacks;
    empty when it names none."""
    unknown = [c for c in (rule.negative_classes if rule else []) if c not in classes]
    return f"accept.negative_classes {unknown} are not in" if unknown else ""


def choices(names: Sequence[str], limit: int = 40) -> str:
    """Valid choices for an error message: `a, b, c`, or the first `limit` and how many
    more (a 1,000-class model's list would bury the message)."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names) - limit} more)"


def _check_class_list(classes: list[str]) -> None:
    if len(classes) < 2:
        raise ValueError("a class list needs at least 2 classes")
    if len(set(classes)) != len(classes):
        dupes = sorted({c for c in classes if classes.count(c) > 1})
        raise ValueError(f"duplicate class names {dupes}")


class HttpConfig(Frozen):
    bind: str = "127.0.0.1"
    """Address the /metrics, /healthz and /readyz server listens on (127.0.0.1: this host only)."""
    port: int = Field(9464, ge=0, le=65535)
    """Port of the HTTP server; 0 picks a free one."""
    tls_certfile: ConfigPath | None = None
    """Server certificate (PEM); set: serve HTTPS (TLS 1.2 or later)."""
    tls_keyfile: ConfigPath | None = None
    """Private key (PEM) of the server certificate."""
    basic_auth_user_env: EnvName | None = None
    """Name of the environment variable holding the basic-auth user; set: every endpoint asks for
    it."""
    basic_auth_password_env: EnvName | None = None
    """Name of the environment variable holding the basic-auth password."""
    snapshot_interval_seconds: float = Field(5.0, ge=0)
    """Seconds between two computations of the statistics /metrics shows: every scrape within this
    time of the last computation gets the same snapshot (its time is
    `visionmon_snapshot_timestamp_seconds`), none an older one (twice as old while the next is
    late); 0 computes for every scrape. When scrapes come more often than this, the next snapshot
    is computed ahead and no scrape waits for one; when they come less often (Prometheus every
    15 s), the next is computed on a timer shortly before the next scrape is due, and that
    scrape does not wait either; a 1,000-class model's snapshot takes about a
    second of CPU, so 5 s keeps it to a fifth of a core with scrapes every second (see
    docs/benchmarks.md, scrapes against ingestion). Lower it for small models that need fresher
    numbers."""
    render_worker: bool = True
    """Compute the statistics, text and gzip of each snapshot in a worker process (on another core),
    so that a large model's scrapes do not take CPU from the consumer loop's interpreter; the
    daemon only copies the counts. false: compute them in the daemon's process (one core)."""


class LimitsConfig(Frozen):
    max_message_bytes: int = Field(1_048_576, ge=256)
    """Largest Kafka record accepted, in bytes; larger ones are refused (reason `too_large`)."""
    max_batch_events: int = Field(10_000, ge=1)
    """Most prediction events in one record (a JSON array or newline-delimited objects)."""
    max_versions_per_model: int = Field(8, ge=1)
    """Distinct model versions tracked per model; later versions are counted under `_other`."""
    max_series_per_metric: int = Field(30_000, ge=100)
    """Largest number of label combinations one metric may export. Beyond it, the excess values
    of the metric's most varied label fold into `_other` (counters and histograms, summed) or
    are left out (gauges), counted in `visionmon_series_capped{metric}`. The default holds the
    per-class window gauges of a 1,000-class model for 8 versions and 3 windows (24,000)."""
    max_future_skew_seconds: float = Field(300.0, ge=0)
    """How far in the future an event's timestamp may be (clock skew), in seconds; later ones are
    refused."""
    max_request_id_chars: int = Field(256, ge=8)
    """Longest request_id accepted, in characters."""
    max_model_replicas: int = Field(1000, ge=1)
    """Most replicas' latest model loads kept from the lifecycle topic, one per (model, version,
    host); beyond it the oldest load is forgotten (counted in
    `visionmon_join_evicted_total{store="model_replicas"}`)."""


class OtelConfig(Frozen):
    endpoint: str | None = None
    """OTLP/HTTP metrics endpoint (e.g. http://collector:4318/v1/metrics); none: no OpenTelemetry
    export."""
    interval_seconds: float = Field(15.0, gt=0)
    """Export interval of the OpenTelemetry metrics, in seconds."""
    service_name: str = "visionmon"
    """`service.name` resource attribute of the exported metrics."""


class StateConfig(Frozen):
    checkpoint_dir: ConfigPath | None = None
    """Folder (made private, mode 0700) of the state checkpoint; none: no checkpoint, a restart
    starts from empty windows."""
    checkpoint_interval_seconds: float = Field(10.0, gt=0)
    """How often the state is checkpointed, in seconds (also at shutdown)."""
    hash_request_ids: bool = False
    """Keep request ids in the join stores and checkpoints only as 128-bit hashes (they may carry
    personal data)."""


class WindowsConfig(Frozen):
    sizes: list[str] = Field(default_factory=lambda: ["5m", "1h", "1d"], min_length=1)
    """Sliding windows of the windowed gauges (their `window` label), as durations (5m, 1h)."""
    slices: int = Field(60, ge=2, le=1440)
    """Slices per window: a window slides by size / slices (60: a 1h window moves by the minute)."""
    segment_slices: int = Field(6, ge=1, le=1440)
    """Slices per window of the per-segment statistics (`models[].segments`): fewer than `slices`,
    since each segment value keeps its own count vectors (a 1,000-class model with 2 keys of 50
    values keeps 2 x 52 x 6 slices x 1,001 classes per window and version); a segment window
    slides by size / segment_slices."""

    @field_validator("sizes")
    @classmethod
    def _durations(cls, sizes: list[str]) -> list[str]:
        for s in sizes:
            parse_duration(s)
        if len(set(sizes)) != len(sizes):
            raise ValueError("window sizes must be distinct")
        return sizes

    def seconds(self) -> list[int]:
        return [parse_duration(s) for s in self.sizes]


class BaselineConfig(Frozen):
    mode: Literal["file", "first_events", "none"] = "none"
    """Where the baseline comes from: `file` (built by `visionmon baseline build`), `first_events`
    (profiled from the first baseline.events predictions of each model) or `none` (drift
    detection off)."""
    path: ConfigPath | None = None
    """Baseline file for mode file; `{model}` is replaced by the model's name."""
    events: int = Field(10_000, ge=100)
    """Predictions profiled into the baseline with mode first_events."""
    images: int = Field(300, ge=0)
    """Scored images that extend a baseline without an image profile (input and embedding drift); 0
    turns that off. With first_events, the first images scored, also before the predictions
    seal it. Half become the embedding MMD test's reference and half its held-out rows,
    which bound the window it tests to a quarter of them: 300 images test windows of 32
    embeddings, 2,048 or more windows of 256."""
    quantile_bins: int = Field(10, ge=2, le=100)
    """Bins of each continuous feature (confidence, margin, entropy), at baseline quantiles."""
    min_labels: int = Field(200, ge=20)
    """With first_events: labelled predictions (joined labels, from the first event on) whose
    confidence and correctness fit the baseline's calibration map once there are this many;
    until then `visionmon_estimated_accuracy_ratio` is the mean confidence
    (`method="mean_confidence"`), then the calibrated estimate (`method="calibrated"`). At 96 %
    accuracy, 200 labels put the calibrated estimate within about 1.4 points (one binomial sd)
    of the accuracy it was fitted on; 50 labels, within 2.8."""

    @model_validator(mode="after")
    def _file_needs_path(self) -> BaselineConfig:
        if self.mode == "file" and not self.path:
            raise ValueError("baseline mode 'file' needs 'path'")
        return self


#: Share of `drift.alpha` the embedding MMD test gets when `drift.mmd.alpha` is unset.
MMD_SHARE = 0.5


class MmdConfig(Frozen):
    """The embedding MMD² test against the baseline's reference sample (needs a reference
    model); its null is simulated when the baseline is built (`monitor.stats.mmd_null`)."""

    alpha: float | None = Field(None, ge=0.001, lt=0.5)
    """Level of the test. Unset: half of `drift.alpha`, and the drift features share the other half,
    so that a model's drift verdict (any feature or MMD) keeps `drift.alpha`. Set: the test runs
    at this level and the features keep all of `drift.alpha`. The critical value rests on about
    alpha x 4,000 of the baseline's simulated windows, so levels under 0.001 (4 windows) are
    refused."""
    reservoir: int = Field(256, ge=20, le=4096)
    """Most recent embeddings kept per (model, version). A window is tested on at most its last 256,
    or fewer: the largest window the baseline's null covers (a quarter of its held-out
    embeddings; 256 from 1,024 held out, 32 for a 300-image baseline)."""
    every_images: int = Field(5, ge=1)
    """Recompute the test once this many new images arrived (each test costs one kernel over the
    window's embeddings, about 1 ms at 256)."""
    permutations: int | None = None
    """Ignored: the permutation test it sized is gone. Accepted so that older configs load; the
    daemon logs a warning when it is set."""


PredictionFeature = Literal["predicted_class", "confidence", "margin", "entropy"]


class DriftConfig(Frozen):
    alpha: float = Field(0.01, gt=0, lt=0.5)
    """False-alarm rate of the drift verdict on no drift, per (model, version, window). With
    `correction: bonferroni` it is shared: where the baseline has the embedding MMD test and
    `mmd.alpha` is unset, that test gets alpha / 2 and each of the k features alpha / (2k);
    otherwise each feature gets alpha / k. With `none`, alpha per feature."""
    correction: Literal["bonferroni", "none"] = "bonferroni"
    """Multiple-testing correction across the drift features: `bonferroni` shares alpha among them,
    `none` tests each at alpha."""
    min_effect: float = Field(0.0, ge=0)
    """Smallest PSI that counts as drift whatever the sample size (0: the threshold decides)."""
    features: list[PredictionFeature] = Field(
        default_factory=lambda: list(get_args(PredictionFeature)))
    """Prediction features tested for drift (image and embedding features are added when a reference
    model scores images)."""
    mmd: MmdConfig = Field(default_factory=MmdConfig)


class JoinConfig(Frozen):
    """A bounded join store: entries waiting for their partner record, in event time."""

    max_entries: int = Field(200_000, ge=1)
    """Entries kept; the oldest are evicted beyond this (counted with reason `capacity`)."""
    ttl: Duration = "1d"
    """How long an entry waits for its partner, in event time (evicted with reason `ttl`)."""


class LabelJoinConfig(JoinConfig):
    """The label join: a join store, and what a second label for one request does."""

    duplicates: Literal["first", "last"] = "first"
    """Which label of a request stands when a second one arrives (both are counted in
    `visionmon_labels_duplicate_total`): `first` keeps the first; `last` lets a later label
    replace one still waiting for its prediction. A label already joined stands under
    either policy: its counters never decrease (docs/events.md)."""


#: label-free estimates a preference can name (`calibrated` includes `mean_confidence`)
EstimateChoice = Literal["shadow_stratified", "calibrated", "atc"]
DEFAULT_ESTIMATE_METHODS: tuple[EstimateChoice, ...] = ("shadow_stratified", "calibrated", "atc")
#: the `method` label values of `visionmon_estimated_accuracy_ratio` each choice stands for
ESTIMATE_LABELS: dict[EstimateChoice, tuple[str, ...]] = {
    "shadow_stratified": ("shadow_stratified",),
    "calibrated": ("calibrated", "mean_confidence"),
    "atc": ("atc",)}


class QualityConfig(Frozen):
    """Bounds that decide whether a closed evaluation slice was good (time-slice SLOs)."""

    eval_slice: Duration = "5m"
    """Length of one evaluation slice of the time-slice SLOs (event time)."""
    min_labels: int = Field(20, ge=1)
    """Labelled predictions a slice needs before its accuracy and calibration are judged."""
    min_accuracy: float = Field(0.9, ge=0, le=1)
    """Accuracy a slice needs to be good; also the objective `accuracy` of quality_windows SLOs."""
    min_shadow_agreement: float = Field(0.9, ge=0, le=1)
    """Agreement with the reference model a slice needs to be good; default bound of the
    shadow_agreement threshold alert."""
    min_shadow_images: int = Field(100, ge=1)
    """Joined images a window (or evaluation slice) needs before its shadow agreement is exported
    (judged): with 20 images and a true agreement of 0.96, binomial noise alone puts the ratio
    under 0.9 in ~5 % of windows; with 100, in ~1 %."""
    max_ece: float = Field(0.1, ge=0, le=1)
    """Largest calibration error (ECE) of a good slice; default bound of the ece alert."""
    estimate_methods: list[EstimateChoice] = Field(
        default_factory=lambda: list(DEFAULT_ESTIMATE_METHODS), min_length=1)
    """The label-free accuracy estimate the executive dashboard shows, in order of
    preference: per model, version and window, the first of these methods exported
    (`calibrated` stands for `mean_confidence` until the baseline has calibrated). Every
    method is exported, and the on-call dashboard shows them all; the demo reads the default
    order. Default: shadow_stratified first, the lowest error on the clip-art workload's
    corruptions (5.4 points from 100 shadow-scored images a window, against calibrated's 6.2
    from every prediction); it needs a reference model, a baseline built with labels and
    images and `quality.min_shadow_images` scored images in the window, else calibrated
    stands. It rests on the reference model: on clean traffic calibrated is closer (1.3
    against 2.2 points), and a reference model hurt by a shift reads as a production error
    (docs/statistics.md says when each fails)."""

    @field_validator("estimate_methods")
    @classmethod
    def _distinct(cls, methods: list[EstimateChoice]) -> list[EstimateChoice]:
        if len(set(methods)) != len(methods):
            raise ValueError("list each method once")
        return methods


class AucConfig(Frozen):
    """Per-class one-vs-rest ROC-AUC and PR-AUC of labelled predictions, from score bins
    (docs/statistics.md gives the binning error's bound)."""

    enabled: bool = True
    """Compute `visionmon_class_roc_auc`, `visionmon_class_pr_auc` and their macro means from
    labelled predictions that carry `probs` or `topk`."""
    score_bins: int = Field(50, ge=2, le=1000)
    """Equal-width bins of a class's score on [0, 1]: more bins, a smaller binning error and more
    memory (two counts per bin, per class that occurs in a slice)."""
    slices: int = Field(6, ge=2, le=60)
    """Slices per window of the AUC counts: the AUC of a window covers between (slices - 1) /
    slices of it and all of it. Fewer than `windows.slices`, since each slice holds bins x
    classes: 6 slices of 50 bins at 1,000 classes are at most 4.8 MB per version and window."""


class VisionmonConfig(Frozen):
    version: Literal[1]
    """Config schema version; this visionmon reads version 1."""
    kafka: KafkaConfig = KafkaConfig()
    """The Kafka cluster, topics, consumer group and security."""
    models: list[ModelConfig] = Field(min_length=1)
    """The monitored models (at least one), each with its class list."""
    http: HttpConfig = HttpConfig()
    """The /metrics, /healthz and /readyz HTTP server."""
    limits: LimitsConfig = LimitsConfig()
    """Limits on what one record may hold and how many series are exported."""
    otel: OtelConfig = OtelConfig()
    """Optional OpenTelemetry (OTLP/HTTP) export of the same metrics."""
    state: StateConfig = StateConfig()
    """The state checkpoint that lets a restart resume its windows."""
    windows: WindowsConfig = WindowsConfig()
    """The sliding windows of the windowed gauges."""
    baseline: BaselineConfig = BaselineConfig()
    """The reference profile that drift is measured against."""
    drift: DriftConfig = DriftConfig()
    """The drift tests: levels, correction and features."""
    labels: LabelJoinConfig = LabelJoinConfig()
    """The join of late labels (feedback) to their predictions."""
    shadow_join: JoinConfig = JoinConfig(max_entries=50_000, ttl="1h")
    """The join of reference-model scores to their predictions (shadow agreement)."""
    quality: QualityConfig = QualityConfig()
    """Bounds of the time-slice quality SLIs."""
    auc: AucConfig = AucConfig()
    """Per-class ROC-AUC and PR-AUC over the windows."""
    images: ImagesConfig = ImagesConfig()
    """Limits applied to sampled images before they are decoded."""
    reference: ReferenceConfig | None = None
    """The reference model that re-scores sampled images; none: no shadow scoring, no input or
    embedding drift."""
    cost: CostConfig | None = None
    """Serving cost and GPU series per model, for the cost and GPU recording rules of `visionmon
    alerts generate` and their dashboard panels; none: no cost or GPU rules."""
    slos: SloSpec | None = None
    """SLOs and threshold alerts for `visionmon alerts generate`; none: threshold alerts with their
    defaults."""

    @model_validator(mode="after")
    def _unique_models(self) -> VisionmonConfig:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        return self

    @model_validator(mode="after")
    def _gallery_needs_reference(self) -> VisionmonConfig:
        if self.images.gallery.enabled and self.reference is None:
            raise ValueError("images.gallery.enabled needs a `reference:` section: the "
                             "gallery shows images the reference model scored (add one, or "
                             "set images.gallery.enabled: false)")
        return self

    @model_validator(mode="after")
    def _mmd_share_resolvable(self) -> VisionmonConfig:
        share = self.drift.alpha * MMD_SHARE
        if self.reference is not None and self.drift.mmd.alpha is None and share < 0.001:
            raise ValueError(
                f"drift.alpha {self.drift.alpha:g} leaves the embedding MMD test "
                f"{share:g} (its share with drift.mmd.alpha unset), under 0.001, the smallest "
                "level the baseline's simulated null resolves: raise drift.alpha to at least "
                "0.002 or set drift.mmd.alpha")
        return self


# ---------------------------------------------------------------------------
# Loading


def _format_error(path: str, err: ValidationError) -> str:
    lines = [f"{path}: invalid configuration ({err.error_count()} problem(s))"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of config version 1; check the spelling)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        got = e.get("input")
        suffix = "" if e["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) \
            else f" (got {got!r})"
        lines.append(f"  {loc}: {msg}{suffix}")
    return "\n".join(lines)


def parse_config(data: Any, path: str = "<config>") -> VisionmonConfig:
    """Validate already-parsed YAML data; `path` only appears in error messages."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with 'version' and 'models'")
    if "version" in data and data["version"] != CONFIG_VERSION:
        raise ConfigError(
            f"{path}: version: unsupported config version {data['version']!r}; "
            f"this visionmon reads version {CONFIG_VERSION}")
    try:
        return VisionmonConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(path, err)) from None


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read, validate and resolve a config file (class files are read relative to it)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"{p}: cannot read config file: {err.strerror}") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    config = parse_config(data, str(p))
    return resolve(config, str(p), hashlib.sha256(raw).hexdigest())


class ModelClasses(Frozen):
    """A model's class list, resolved from inline or file, with a name -> index map."""

    name: str
    classes: tuple[str, ...]
    high_risk_classes: tuple[str, ...] = ()
    accept: AcceptRule | None = None
    segments: tuple[SegmentConfig, ...] = ()

    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}


class LoadedConfig(Frozen):
    """The validated config plus what was resolved from disk."""

    path: str
    sha256: str
    config: VisionmonConfig
    models: dict[str, ModelClasses]


def objective_classes(obj: Objective, model: ModelClasses) -> tuple[str, ...]:
    """The classes a class_recall/class_precision objective judges, each on its own: its
    `class`, or the model's high_risk_classes; () for other kinds."""
    if obj.kind not in CLASS_KINDS:
        return ()
    return (obj.class_,) if obj.class_ is not None else model.high_risk_classes


def _check_objective_class(path: str, j: int, obj: Objective, model: ModelClasses) -> None:
    if obj.kind not in CLASS_KINDS:
        return
    if obj.class_ is not None and obj.class_ not in model.classes:
        raise ConfigError(f"{path}: slos.objectives.{j}.class: {obj.class_!r} is not a class of "
                          f"model {model.name!r}; valid classes: {choices(model.classes)}")
    if not objective_classes(obj, model):
        raise ConfigError(f"{path}: slos.objectives.{j}.class: a {obj.kind} objective without "
                          f"class judges the model's high_risk_classes, and model "
                          f"{model.name!r} declares none; set class (one of "
                          f"{choices(model.classes)}) or the model's high_risk_classes")


def resolve(config: VisionmonConfig, path: str = "<config>", sha256: str = "") -> LoadedConfig:
    """Resolve every path key against the config file's folder (`monitor.config_paths`),
    read class files and check references across sections."""
    config = relative_to(config, Path(path).parent)
    models: dict[str, ModelClasses] = {}
    for i, m in enumerate(config.models):
        if m.classes is not None:
            classes = list(m.classes)
        else:
            assert m.classes_file is not None
            cpath = Path(m.classes_file)
            try:
                classes = [ln.strip() for ln in cpath.read_text().splitlines() if ln.strip()]
            except OSError as err:
                raise ConfigError(f"{path}: models.{i}.classes_file: cannot read {cpath}: "
                                  f"{err.strerror}") from None
            try:
                _check_class_list(classes)
            except ValueError as err:
                raise ConfigError(f"{path}: models.{i}.classes_file: {cpath}: {err}") from None
            unknown = [c for c in m.high_risk_classes if c not in classes]
            if unknown:
                raise ConfigError(f"{path}: models.{i}.high_risk_classes: {unknown} are not in "
                                  f"{cpath}; valid classes: {choices(classes)}")
            problem = unknown_negative_classes(m.accept, classes)
            if problem:
                raise ConfigError(f"{path}: models.{i}.{problem} {cpath}; valid classes: "
                                  f"{choices(classes)}")
        models[m.name] = ModelClasses(name=m.name, classes=tuple(classes),
                                      high_risk_classes=tuple(m.high_risk_classes),
                                      accept=m.accept,
                                      segments=tuple(m.segments))
    if config.slos is not None:
        for j, obj in enumerate(config.slos.objectives):
            if obj.model not in models:
                raise ConfigError(f"{path}: slos.objectives.{j}.model: unknown model "
                                  f"{obj.model!r}; configured models are {sorted(models)}")
            _check_objective_class(path, j, obj, models[obj.model])
            if obj.kind == "false_accept_rate" and models[obj.model].accept is None:
                with_rule = sorted(n for n, m in models.items() if m.accept is not None)
                raise ConfigError(
                    f"{path}: slos.objectives.{j}.kind: false_accept_rate needs an acceptance "
                    f"rule on model {obj.model!r} (models[].accept: {{threshold: ...}}); models "
                    f"with one: {with_rule or 'none'}")
        for j, rollout in enumerate(config.slos.rollouts):
            if rollout.model not in models:
                raise ConfigError(f"{path}: slos.rollouts.{j}.model: unknown model "
                                  f"{rollout.model!r}; configured models are {sorted(models)}")
    if config.cost is not None:
        for j, cost in enumerate(config.cost.models):
            if cost.model not in models:
                raise ConfigError(f"{path}: cost.models.{j}.model: unknown model "
                                  f"{cost.model!r}; configured models are {sorted(models)}")
    ref = config.reference
    if ref is not None and ref.model not in models:
        raise ConfigError(f"{path}: reference.model: unknown model {ref.model!r}; "
                          f"configured models are {sorted(models)}")
    if ref is not None and ref.classes is not None:
        missing = [c for c in models[ref.model].classes if c not in ref.classes]
        if missing:
            raise ConfigError(
                f"{path}: reference.classes: lacks production classes {choices(missing)} of model "
                f"{ref.model!r} (every production class must appear, matched by name); "
                f"reference.classes lists: {choices(ref.classes)}")
    return LoadedConfig(path=path, sha256=sha256, config=config, models=models)


def read_secret(env_name: str | None, what: str) -> str | None:
    """Value of a secret from the environment variable the config names."""
    if env_name is None:
        return None
    value = os.environ.get(env_name)
    if value is None:
        raise ConfigError(f"{what}: environment variable {env_name} is not set")
    return value
