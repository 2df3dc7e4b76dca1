"""The `slos:` section of the config: service-level objectives and threshold alerts.

Parsed into frozen objects here (monitor/ owns the config); `alerts/` turns them into
Prometheus rules. Validation errors name the key path (`slos.objectives.1.target`) and
say what would be valid, like the rest of the config.

Durations are Prometheus-style strings (`30s`, `5m`, `1h`, `3d`); ratios are fractions
in (0, 1), never percentages.
"""

from __future__ import annotations

import bisect
import string
from typing import Literal

from pydantic import AwareDatetime, ConfigDict, Field, field_validator, model_validator

from monitor.catalog import LATENCY_BUCKETS
from monitor.durations import Duration, parse_duration
from monitor.frozen_model import Frozen

SloKind = Literal["availability", "latency", "accuracy", "false_accept_rate", "quality_windows",
                  "class_recall", "class_precision"]
#: Kinds judged on labelled predictions: they take `min_labeled_events`.
LABELED_KINDS: tuple[str, ...] = ("accuracy", "class_recall", "class_precision",
                                  "false_accept_rate")
#: Kinds whose SLI is one class's: they take `class` (default: the model's high_risk_classes).
CLASS_KINDS: tuple[str, ...] = ("class_recall", "class_precision")
Severity = Literal["page", "ticket"]
#: Values of the `objective` label on `visionmon_eval_windows_total` / `_good_total`.
QUALITY_OBJECTIVES: tuple[str, ...] = ("accuracy", "shadow_agreement", "ece", "drift")
#: Placeholders that `runbook_url` and `dashboard_url` may use.
URL_PLACEHOLDERS: tuple[str, ...] = ("alert", "model", "slo")

#: Where docs/runbooks/ is published: every alert links to `<base><AlertName>.md` unless
#: `slos.runbook_url` is set. A placeholder host, like the dashboard's: set the key to the URL
#: your copy of the docs is served from (a fork's `.../blob/<tag>/docs/runbooks/`, a wiki).
DEFAULT_RUNBOOK_BASE_URL = "https://visionmon.example.org/docs/runbooks/"
#: The file of an alert's runbook under the base URL (docs/runbooks/<AlertName>.md).
RUNBOOK_FILE = "{alert}.md"
DEFAULT_DASHBOARD_URL = "https://grafana.example.org/d/visionmon-slo?var-model={model}"


class _Frozen(Frozen):
    """A config section whose aliased keys (`for`) may also be set by field name (`for_`)."""

    model_config = ConfigDict(populate_by_name=True)


class BurnTier(_Frozen):
    """One multi-window burn-rate tier: alert when the error ratio over both `long` and
    `short` exceeds `factor` times the error budget (1 - target)."""

    severity: Severity
    """Severity label of the tier's alert: `page` or `ticket`."""
    long: Duration
    """Long window of the tier: the burn rate over it must exceed the factor."""
    short: Duration
    """Short window of the tier (the workbook uses 1/12 of the long one): the alert resets soon
    after the burn stops."""
    factor: float = Field(gt=0, description="burn-rate multiple of the error budget")
    for_: Duration = Field(default="0s", alias="for", description="hold time before firing")

    @model_validator(mode="after")
    def _short_below_long(self) -> BurnTier:
        if parse_duration(self.short) >= parse_duration(self.long):
            raise ValueError(f"short window {self.short} must be shorter than long window "
                             f"{self.long} (the workbook uses 1/12 of the long window)")
        return self


#: Google SRE workbook, chapter 5, table 5-8 plus the 1d/2h ticket tier (Sloth's defaults).
DEFAULT_TIERS: tuple[BurnTier, ...] = (
    BurnTier(severity="page", long="1h", short="5m", factor=14.4),
    BurnTier(severity="page", long="6h", short="30m", factor=6),
    BurnTier(severity="ticket", long="1d", short="2h", factor=3),
    BurnTier(severity="ticket", long="3d", short="6h", factor=1),
)


class Objective(_Frozen):
    """One SLO for one model (optionally one version). `target` is the good fraction."""

    name: str = Field(pattern=r"^[a-z0-9_\-]+$")
    """Name of the objective (the `slo` label); unique per model."""
    model: str
    """Model the objective is for (one of `models:`)."""
    version: str | None = None
    """Model version the objective is for; none: all versions of the model together."""
    kind: SloKind
    """SLI: `availability` (predictions not refused), `latency` (requests under
    latency_threshold_seconds), `accuracy` (labelled predictions correct), `false_accept_rate`
    (labelled predictions not false accepts under the model's `accept` rule), `quality_windows`
    (evaluation slices judged good on quality_objective), `class_recall` (labels of a class
    predicted as that class) or `class_precision` (predictions of a class whose label is that
    class); a class kind judges each class on its own."""
    class_: str | None = Field(default=None, alias="class")
    """Class of a `class_recall` or `class_precision` objective; none: each of the model's
    high_risk_classes, each its own objective (the alerts carry a `class` label)."""
    target: float = Field(gt=0, lt=1)
    """Good fraction aimed at, in (0, 1) (0.999, not 99.9); the error budget is 1 - target."""
    latency_threshold_seconds: float | None = None
    """Latency bound of a `latency` objective, in seconds; must be a bucket bound of
    visionmon_request_latency_seconds."""
    min_labeled_events: int = Field(default=100, ge=1)
    """Labelled predictions an `accuracy` or `false_accept_rate` SLI (labels of the class, or
    predictions of it, for a class kind) needs in a window before its alert may fire."""
    quality_objective: Literal["accuracy", "shadow_agreement", "ece", "drift"] | None = None
    """What a `quality_windows` objective judges each evaluation slice on: accuracy,
    shadow_agreement (needs a reference model for the model), ece or drift (needs a baseline)."""

    @field_validator("latency_threshold_seconds")
    @classmethod
    def _bucket_bound(cls, value: float | None) -> float | None:
        if value is None or value in LATENCY_BUCKETS:
            return value
        i = bisect.bisect_left(LATENCY_BUCKETS, value)
        if i == 0:
            near = f"the smallest bound is {LATENCY_BUCKETS[0]}"
        elif i == len(LATENCY_BUCKETS):
            near = f"the largest bound is {LATENCY_BUCKETS[-1]}"
        else:
            near = f"the nearest bounds are {LATENCY_BUCKETS[i - 1]} and {LATENCY_BUCKETS[i]}"
        raise ValueError(f"{value} s is not a bucket bound of visionmon_request_latency_seconds "
                         f"(a latency SLI can only count requests at a bucket bound); {near}")

    @model_validator(mode="after")
    def _kind_fields(self) -> Objective:
        if self.kind == "latency" and self.latency_threshold_seconds is None:
            raise ValueError("kind latency needs latency_threshold_seconds (one of "
                             f"{', '.join(str(b) for b in LATENCY_BUCKETS)})")
        if self.kind != "latency" and self.latency_threshold_seconds is not None:
            raise ValueError("latency_threshold_seconds is only valid for kind latency")
        if self.kind == "quality_windows" and self.quality_objective is None:
            raise ValueError("kind quality_windows needs quality_objective (one of "
                             f"{', '.join(QUALITY_OBJECTIVES)})")
        if self.kind != "quality_windows" and self.quality_objective is not None:
            raise ValueError("quality_objective is only valid for kind quality_windows")
        if self.kind not in LABELED_KINDS and "min_labeled_events" in self.model_fields_set:
            raise ValueError("min_labeled_events is only valid for kinds "
                             f"{', '.join(LABELED_KINDS)}")
        if self.kind not in CLASS_KINDS and self.class_ is not None:
            raise ValueError(f"class is only valid for kinds {', '.join(CLASS_KINDS)}")
        return self


#: The guide's rollout tier: while a version's declared rollout lasts, its availability,
#: latency and accuracy objectives page above 4x over 15 minutes, confirmed over 5.
ROLLOUT_TIER = BurnTier(severity="page", long="15m", short="5m", factor=4)
#: Kinds that get the rollout tier during a declared rollout of their version.
ROLLOUT_KINDS: tuple[str, ...] = ("availability", "latency", "accuracy")


class Rollout(_Frozen):
    """A declared rollout of one model version, from `start` to `end` (timestamps with a
    time zone, e.g. 2026-12-07T09:00:00Z): while it lasts, the version's drift and agreement
    tickets are held back and its availability, latency and accuracy objectives also page
    through `rollout_tier`."""

    model: str
    """Model of the version rolled out (one of `models:`)."""
    version: str
    """Version rolled out (the canary)."""
    start: AwareDatetime
    """When the rollout starts (ISO 8601 with a time zone)."""
    end: AwareDatetime
    """When it ends, at the latest; after it the version is alerted on like any other."""

    @model_validator(mode="after")
    def _ordered(self) -> Rollout:
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} must be after start "
                             f"{self.start.isoformat()}")
        return self


class Check(_Frozen):
    """Base of the threshold checks: on by default, a hold time and a severity."""

    enabled: bool = True
    """Generate this alert (every check is on by default)."""
    for_: Duration = Field(default="0s", alias="for")
    """How long the condition must hold before the alert fires (Prometheus `for`)."""
    severity: Severity = "ticket"
    """Severity label of the alert: `page` or `ticket`."""


class WindowedCheck(Check):
    """A check on a windowed gauge; `window` picks one of the configured `windows.sizes`."""

    window: str = "1h"
    """Window of the gauge the alert reads; one of windows.sizes."""


class DriftCheck(WindowedCheck):
    """PSI above its sample-size-aware threshold (`visionmon_drift_threshold`)."""

    for_: Duration = Field(default="30m", alias="for")


class EceCheck(WindowedCheck):
    """Expected calibration error above `max` (default: `quality.max_ece`)."""

    for_: Duration = Field(default="1h", alias="for")
    max: float | None = Field(default=None, gt=0, le=1)
    """Largest expected calibration error before the alert; none: quality.max_ece."""


class ShadowAgreementCheck(WindowedCheck):
    """Agreement with the reference model below `min` (default: `quality.min_shadow_agreement`)."""

    for_: Duration = Field(default="30m", alias="for")
    min: float | None = Field(default=None, gt=0, lt=1)
    """Smallest agreement with the reference model before the alert; none:
    quality.min_shadow_agreement."""


class ShadowAgreementDropCheck(WindowedCheck):
    """Agreement with the reference model significantly under the baseline's, per production
    class or overall (`visionmon_shadow_agreement_pvalue` below `alpha`). `window` defaults
    to the shadow_agreement check's."""

    window: str | None = None  # type: ignore[assignment]
    """Window of the agreement test; none: the shadow_agreement check's window."""
    for_: Duration = Field(default="30m", alias="for")
    alpha: float = Field(default=0.001, gt=0, lt=1)
    """Level of the agreement test: the alert fires when its p-value is below alpha."""


class HighRiskRecallCheck(WindowedCheck):
    """Recall of any of a model's high_risk_classes under `min` over the window, once the class
    has `min_labels` labels in it; one alert per class (its `class` label). Generated only for
    models that declare high_risk_classes. `window` defaults to the ece check's (both judge
    labelled predictions)."""

    window: str | None = None  # type: ignore[assignment]
    """Window of the recall gauge; none: the ece check's window."""
    for_: Duration = Field(default="15m", alias="for")
    min: float = Field(default=0.8, gt=0, lt=1)
    """Smallest recall of a high-risk class (labels of the class predicted as it) before the
    alert."""
    min_labels: int = Field(default=20, ge=1)
    """Labels of the class the window must hold before its recall is judged (a recall from 3
    labels is noise)."""


class LabelCoverageCheck(WindowedCheck):
    """Labeled fraction of predictions collapsed below `min`: the label pipeline broke."""

    for_: Duration = Field(default="1h", alias="for")
    min: float = Field(default=0.01, gt=0, lt=1)
    """Smallest labelled fraction of predictions before the alert."""


class ConsumerLagCheck(Check):
    """Consumer lag above `min_records` and still growing over `growth_window`."""

    for_: Duration = Field(default="15m", alias="for")
    min_records: int = Field(default=1000, ge=0)
    """Consumer lag, in records, above which a growing lag alerts."""
    growth_window: Duration = "10m"
    """Window over which the lag must have grown."""


class KafkaDisconnectedCheck(Check):
    """`visionmon_kafka_connected == 0`: the monitor is blind."""

    for_: Duration = Field(default="2m", alias="for")
    severity: Severity = "page"


class NoEventsCheck(Check):
    """A model that had traffic received no request for `after`."""

    after: Duration = "10m"
    """Silence after which a model that had traffic alerts."""
    severity: Severity = "page"


class RejectedRatioCheck(Check):
    """Rejected / (rejected + accepted) records per topic above `max` over `window`."""

    for_: Duration = Field(default="10m", alias="for")
    max: float = Field(default=0.05, gt=0, lt=1)
    """Largest share of refused records per topic before the alert."""
    window: Duration = "10m"
    """Window over which the refused share is computed."""


class ReferenceModelDownCheck(Check):
    """`visionmon_reference_model_up == 0`: shadow scoring stopped."""

    for_: Duration = Field(default="10m", alias="for")


class CheckpointFailingCheck(Check):
    """Checkpoint writes failed within `window` and none succeeded for `missed_intervals` x
    `state.checkpoint_interval_seconds`: a restart would lose the state counted since the last
    good checkpoint. Only generated when `state.checkpoint_dir` is set."""

    for_: Duration = Field(default="5m", alias="for")
    severity: Severity = "page"
    window: Duration = "5m"
    """Window in which a failed checkpoint write counts."""
    missed_intervals: int = Field(default=3, ge=1)
    """Checkpoint intervals without a successful write before the alert can fire."""


class ArtifactMismatchCheck(Check):
    """The replicas serving one model version hold more than one artifact (SHA-256 in
    `visionmon_model_info`) while the version serves predictions within `window`. Only
    generated when `kafka.topics.lifecycle` is set."""

    for_: Duration = Field(default="10m", alias="for")
    window: Duration = "10m"
    """Window in which the version must have served a prediction for the alert to fire."""


class UnusualInputsCheck(WindowedCheck):
    """More of the window's scored images above the baseline's 99th percentile of an
    unusualness score than a clean window shows (`visionmon_unusual_input_ratio` over
    `visionmon_unusual_input_ratio_threshold`, the test's critical value): images of categories
    the model was not trained on, or corrupted ones. One alert per score; without a reference
    model the ratio is not exported and the alert never fires, as reference_model_down.
    `window` defaults to the drift check's (both compare a window with the baseline)."""

    for_: Duration = Field(default="30m", alias="for")
    window: str | None = None  # type: ignore[assignment]
    """Window of the unusual-input test; none: the drift check's window."""


class ThresholdChecks(_Frozen):
    """Plain threshold alerts (not SLOs). All are on by default; `enabled: false` drops one."""

    drift: DriftCheck = DriftCheck()
    ece: EceCheck = EceCheck()
    shadow_agreement: ShadowAgreementCheck = ShadowAgreementCheck()
    shadow_agreement_drop: ShadowAgreementDropCheck = ShadowAgreementDropCheck()
    label_coverage: LabelCoverageCheck = LabelCoverageCheck()
    high_risk_recall: HighRiskRecallCheck = HighRiskRecallCheck()
    consumer_lag: ConsumerLagCheck = ConsumerLagCheck()
    kafka_disconnected: KafkaDisconnectedCheck = KafkaDisconnectedCheck()
    no_events: NoEventsCheck = NoEventsCheck()
    rejected_ratio: RejectedRatioCheck = RejectedRatioCheck()
    reference_model_down: ReferenceModelDownCheck = ReferenceModelDownCheck()
    checkpoint_failing: CheckpointFailingCheck = CheckpointFailingCheck()
    artifact_mismatch: ArtifactMismatchCheck = ArtifactMismatchCheck()
    unusual_inputs: UnusualInputsCheck = UnusualInputsCheck()


def _check_url_template(value: str) -> str:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as err:
        raise ValueError(f"not a valid URL template: {err}") from None
    unknown = sorted({f for f in fields if f not in URL_PLACEHOLDERS})
    if unknown:
        raise ValueError(f"unknown placeholder(s) {unknown}; valid placeholders are "
                         f"{{{'}, {'.join(URL_PLACEHOLDERS)}}}")
    return value


class SloSpec(_Frozen):
    """Versioned SLO spec. `windows` overrides the burn-rate tiers (e.g. compressed
    windows for an end-to-end test); production configs leave it unset."""

    version: Literal[1] = 1
    """Version of the SLO spec; this visionmon reads version 1."""
    period: Duration = "30d"
    """Error-budget period of every objective."""
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL
    """URL that visionmon's docs/runbooks/ folder is served from, ending in /; each alert links
    to its runbook there, <base><AlertName>.md. Set this or runbook_url, not both."""
    runbook_url: str | None = None
    """Runbook link of every alert, replacing visionmon's runbooks; may use {alert}, {model} and
    {slo}. None: runbook_base_url followed by {alert}.md."""
    dashboard_url: str = DEFAULT_DASHBOARD_URL
    """Dashboard link of every alert; may use {alert}, {model} and {slo}."""
    windows: list[BurnTier] | None = Field(default=None, min_length=1)
    """Burn-rate tiers; none: the SRE workbook's four (14.4x 1h/5m and 6x 6h/30m page, 3x 1d/2h and
    1x 3d/6h ticket). Override only to compress time in tests."""
    objectives: list[Objective] = Field(default_factory=list)
    """The SLOs, each for one model (and optionally one version)."""
    thresholds: ThresholdChecks = ThresholdChecks()
    """Plain threshold alerts (not SLOs)."""
    rollouts: list[Rollout] = Field(default_factory=list)
    """Declared rollouts of canary versions (see docs/alerts.md#rollouts): regenerate the rules
    and reload Prometheus when one is added."""
    rollout_tier: BurnTier = ROLLOUT_TIER
    """Burn-rate tier of a version's availability, latency and accuracy objectives while its
    declared rollout lasts (default: page above 4x over 15m, confirmed over 5m)."""

    @field_validator("runbook_url", "dashboard_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url_template(value)

    @field_validator("runbook_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.endswith("/"):
            raise ValueError(f"{value!r} must end with / (each alert links to "
                             f"<base>{RUNBOOK_FILE.format(alert='<AlertName>')})")
        if "{" in value or "}" in value:
            raise ValueError("a base URL takes no placeholder; use runbook_url for a template")
        return value

    @field_validator("windows")
    @classmethod
    def _distinct_tiers(cls, tiers: list[BurnTier] | None) -> list[BurnTier] | None:
        if tiers is not None:
            pairs = [(parse_duration(t.long), parse_duration(t.short)) for t in tiers]
            if len(set(pairs)) != len(pairs):
                raise ValueError("two tiers share the same long/short windows")
        return tiers

    @model_validator(mode="after")
    def _consistent(self) -> SloSpec:
        if {"runbook_url", "runbook_base_url"} <= self.model_fields_set:
            raise ValueError("runbook_url and runbook_base_url are both set: runbook_url "
                             "replaces the runbooks at runbook_base_url; keep one")
        period = parse_duration(self.period)
        for i, tier in enumerate(self.burn_tiers()):
            if parse_duration(tier.long) >= period:
                where = f"windows.{i}.long" if self.windows is not None else "period"
                raise ValueError(f"{where}: tier window {tier.long} must be shorter than the "
                                 f"SLO period {self.period}")
        seen: dict[tuple[str, str], int] = {}
        for j, obj in enumerate(self.objectives):
            key = (obj.name, obj.model)
            if key in seen:
                raise ValueError(f"objectives.{j}: objective {obj.name!r} for model "
                                 f"{obj.model!r} is already defined at objectives.{seen[key]}; "
                                 "names must be unique per model (the `slo` label)")
            seen[key] = j
        for j, r in enumerate(self.rollouts):
            for i, earlier in enumerate(self.rollouts[:j]):
                same = (earlier.model, earlier.version) == (r.model, r.version)
                if same and r.start < earlier.end and earlier.start < r.end:
                    raise ValueError(f"rollouts.{j}: overlaps rollouts.{i} of {r.model} "
                                     f"{r.version}; merge them into one (one series per "
                                     "version while a rollout lasts)")
        return self

    def runbook_template(self) -> str:
        """The runbook link template of every alert: `runbook_url`, else the alert's file
        under `runbook_base_url`."""
        return self.runbook_url or self.runbook_base_url + RUNBOOK_FILE

    def burn_tiers(self) -> tuple[BurnTier, ...]:
        """The configured tiers, or the SRE-workbook defaults."""
        return tuple(self.windows) if self.windows is not None else DEFAULT_TIERS
