"""The threshold checks: one table that the spec, the rules and the promtool tests iterate.

A row (`CheckDefinition`) says everything about a check once: its config key
(`slos.thresholds.<key>`, also the alert's `check` label), the alert name, the catalog
metric it compares and how, how its values are resolved from the config, the pure
function that builds its rule (`alerts.thresholds`) and the one that builds the promtool
test case proving it (`alerts.threshold_cases`). The config model of each check
(`monitor.slo_spec`, one class per key) holds its options and its default window, `for`
and severity, since the config owns its own schema and defaults.

Adding a check: its config class and field in `monitor/slo_spec.py`, its rule builder,
its test-case builder and one row here (and a builder of the recordings its rule reads,
if any). Rules and test cases follow the rows' order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alerts import names
from alerts import threshold_cases as case
from alerts import thresholds as rule
from alerts.model import AlertSpec, Check
from alerts.rules import AlertingRule, RecordingRule, Rule, RuleGroup
from alerts.threshold_cases import ThresholdCase
from monitor.config import ConfigError, VisionmonConfig
from monitor.durations import parse_duration
from monitor.slo_spec import Check as CheckConfig
from monitor.slo_spec import ThresholdChecks


@dataclass(frozen=True, slots=True)
class Settings:
    """What a check takes from the config beyond `enabled`, `for` and `severity`. `for_s`
    overrides the configured hold (seconds); `applies` is False when the config never
    produces the data the check reads (the check is then off, whatever `enabled` says)."""

    window: str | None = None
    bound: float | None = None
    range_s: int | None = None
    min_records: int | None = None
    stale_s: float | None = None
    for_s: int | None = None
    classes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    applies: bool = True


@dataclass(frozen=True, slots=True)
class Context:
    """The config a check's settings may read: the whole validated config, for bounds
    that default to another section (`quality.max_ece`) or depend on it (`state:`)."""

    config: VisionmonConfig
    checks: ThresholdChecks
    source: str

    def window(self, key: str, check: CheckConfig, window: str) -> str:
        """The `windows.sizes` entry equal to `window` (label values are written as
        configured); a disabled check keeps its window unchecked."""
        if not check.enabled:
            return window
        sizes = list(self.config.windows.sizes)
        seconds = parse_duration(window)
        for size in sizes:
            if parse_duration(size) == seconds:
                return size
        raise ConfigError(f"{self.source}: slos.thresholds.{key}.window: window {window!r} is "
                          f"not one of the configured windows.sizes {sizes}; windowed gauges "
                          "are only exported for those")


Resolve = Callable[[Any, Context], Settings]
RuleBuilder = Callable[[AlertSpec, Check], AlertingRule]
RecordBuilder = Callable[[AlertSpec, Check], tuple[RecordingRule, ...]]
CaseBuilder = Callable[[AlertingRule, Check, int], ThresholdCase]


@dataclass(frozen=True, slots=True)
class CheckDefinition:
    """One threshold check. `metric` is the catalog name (short) of the series compared;
    `comparison` the PromQL operator comparing it with the resolved bound."""

    key: str
    alert: str
    metric: str
    comparison: str
    settings: Resolve
    rule: RuleBuilder
    case: CaseBuilder
    records: RecordBuilder = lambda spec, c: ()

    def defaults(self) -> CheckConfig:
        """The check's config with nothing set: its default window, `for` and severity."""
        default = ThresholdChecks.model_fields[self.key].default
        assert isinstance(default, CheckConfig)
        return default

    def resolve(self, ctx: Context) -> Check:
        """This check's config (`slos.thresholds.<key>`) as the generators read it."""
        c: CheckConfig = getattr(ctx.checks, self.key)
        s = self.settings(c, ctx)
        return Check(key=self.key, alert=self.alert, metric=self.metric,
                     comparison=self.comparison, enabled=c.enabled and s.applies,
                     severity=c.severity,
                     for_s=parse_duration(c.for_) if s.for_s is None else s.for_s,
                     window=s.window, bound=s.bound, range_s=s.range_s,
                     min_records=s.min_records, stale_s=s.stale_s, classes=s.classes)


def _windowed(key: str, bound: Callable[[Any, Context], float | None]) -> Resolve:
    """Settings of a check on a windowed gauge: its window, checked, and its bound."""
    return lambda c, ctx: Settings(window=ctx.window(key, c, c.window), bound=bound(c, ctx))


def _no_settings(c: Any, ctx: Context) -> Settings:
    return Settings()


def _is_zero(c: Any, ctx: Context) -> Settings:
    return Settings(bound=0.0)


def _drop_settings(c: Any, ctx: Context) -> Settings:
    """The agreement test's window defaults to the shadow_agreement check's."""
    window = c.window or ctx.checks.shadow_agreement.window
    return Settings(window=ctx.window("shadow_agreement_drop", c, window), bound=c.alpha)


def _unusual_settings(c: Any, ctx: Context) -> Settings:
    """The unusual-input test's window defaults to the drift check's."""
    window = c.window or ctx.checks.drift.window
    return Settings(window=ctx.window("unusual_inputs", c, window))


def _checkpoint_settings(c: Any, ctx: Context) -> Settings:
    """Failures counted over `window`; the last success older than `missed_intervals`
    checkpoint intervals; only with checkpointing configured."""
    state = ctx.config.state
    return Settings(bound=0.0, range_s=parse_duration(c.window),
                    stale_s=c.missed_intervals * state.checkpoint_interval_seconds,
                    applies=state.checkpoint_dir is not None)


def _mismatch_settings(c: Any, ctx: Context) -> Settings:
    """More than one artifact per version, with traffic within `window`; only with the
    lifecycle topic configured (nothing else exports `visionmon_model_info`)."""
    return Settings(bound=1.0, range_s=parse_duration(c.window),
                    applies=ctx.config.kafka.topics.lifecycle is not None)


def _high_risk_settings(c: Any, ctx: Context) -> Settings:
    """Each model's high_risk_classes; the check is off when no model declares any."""
    classes = tuple((m.name, tuple(m.high_risk_classes)) for m in ctx.config.models
                    if m.high_risk_classes)
    window = c.window or ctx.checks.ece.window
    return Settings(window=ctx.window("high_risk_recall", c, window), bound=c.min,
                    min_records=c.min_labels, classes=classes, applies=bool(classes))


CHECKS: tuple[CheckDefinition, ...] = (
    CheckDefinition(
        "drift", "VisionmonDriftDetected", "drift_psi", ">",
        _windowed("drift", lambda c, ctx: None), rule.drift_rule, case.drift_case,
        rule.drift_records),
    CheckDefinition(
        "ece", "VisionmonCalibrationErrorHigh", "calibration_ece", ">",
        _windowed("ece", lambda c, ctx: c.max if c.max is not None
                  else ctx.config.quality.max_ece),
        rule.ece_rule, case.ece_case),
    CheckDefinition(
        "shadow_agreement", "VisionmonShadowAgreementLow", "shadow_agreement_ratio", "<",
        _windowed("shadow_agreement", lambda c, ctx: c.min if c.min is not None
                  else ctx.config.quality.min_shadow_agreement),
        rule.shadow_rule, case.shadow_case),
    CheckDefinition(
        "shadow_agreement_drop", "VisionmonShadowAgreementDropped", "shadow_agreement_pvalue",
        "<", _drop_settings, rule.shadow_drop_rule, case.shadow_drop_case),
    CheckDefinition(
        "label_coverage", "VisionmonLabelCoverageCollapsed", "label_coverage_ratio", "<",
        _windowed("label_coverage", lambda c, ctx: c.min),
        rule.label_coverage_rule, case.coverage_case),
    CheckDefinition(
        "high_risk_recall", "VisionmonHighRiskRecallLow", "class_recall_ratio", "<",
        _high_risk_settings, rule.high_risk_recall_rule, case.high_risk_recall_case),
    CheckDefinition(
        "consumer_lag", "VisionmonConsumerLagGrowing", "consumer_lag_records", ">",
        lambda c, ctx: Settings(range_s=parse_duration(c.growth_window),
                                min_records=c.min_records),
        rule.consumer_lag_rule, case.lag_case),
    CheckDefinition(
        "kafka_disconnected", "VisionmonKafkaDisconnected", "kafka_connected", "==",
        _is_zero, rule.kafka_rule, case.kafka_case),
    CheckDefinition(
        "no_events", "VisionmonNoEvents", "requests_total", "==",
        lambda c, ctx: Settings(bound=0.0, range_s=parse_duration(c.after), for_s=0),
        rule.no_events_rule, case.no_events_case),
    CheckDefinition(
        "rejected_ratio", "VisionmonRejectedRecordsHigh", "records_rejected_total", ">",
        lambda c, ctx: Settings(bound=c.max, range_s=parse_duration(c.window)),
        rule.rejected_rule, case.rejected_case),
    CheckDefinition(
        "reference_model_down", "VisionmonReferenceModelDown", "reference_model_up", "==",
        _is_zero, rule.reference_rule, case.reference_case),
    CheckDefinition(
        "checkpoint_failing", "VisionmonCheckpointFailing", "checkpoint_failures_total", ">",
        _checkpoint_settings, rule.checkpoint_rule, case.checkpoint_case),
    CheckDefinition(
        "artifact_mismatch", "VisionmonArtifactMismatch", "model_info", ">",
        _mismatch_settings, rule.artifact_mismatch_rule, case.artifact_mismatch_case),
    CheckDefinition(
        "unusual_inputs", "VisionmonUnusualInputs", "unusual_input_ratio", ">",
        _unusual_settings, rule.unusual_inputs_rule,
        case.unusual_inputs_case),
)

#: The rows by key (`slos.thresholds.<key>`).
CHECK: dict[str, CheckDefinition] = {d.key: d for d in CHECKS}


def resolve_checks(config: VisionmonConfig, checks: ThresholdChecks, source: str
                   ) -> tuple[Check, ...]:
    """Every check of the table, resolved from `slos.thresholds` (raises `ConfigError`
    naming the file and key path, e.g. for a window not in `windows.sizes`)."""
    ctx = Context(config, checks, source)
    return tuple(d.resolve(ctx) for d in CHECKS)


def threshold_rules(spec: AlertSpec) -> tuple[AlertingRule, ...]:
    """Every enabled threshold check's rule, in the table's order."""
    return tuple(CHECK[c.key].rule(spec, c) for c in spec.thresholds.enabled())


def threshold_group(spec: AlertSpec) -> RuleGroup:
    """Every enabled check's recordings, each set just before the alert that reads it."""
    rules: list[Rule] = []
    for c, alert in zip(spec.thresholds.enabled(), threshold_rules(spec), strict=True):
        rules += [*CHECK[c.key].records(spec, c), alert]
    return RuleGroup(names.THRESHOLD_GROUP, tuple(rules))


def threshold_cases(spec: AlertSpec, step_s: int) -> list[ThresholdCase]:
    """One promtool test case per enabled threshold check, in rule order."""
    rules = threshold_rules(spec)
    return [CHECK[c.key].case(r, c, step_s)
            for c, r in zip(spec.thresholds.enabled(), rules, strict=True)]
