"""Internal model: the validated config resolved into plain values the generators use.

`build_spec(loaded)` is the only place that reads the config. It resolves defaults that
live elsewhere in the config (ECE and shadow-agreement bounds from `quality:`), checks
references across sections (threshold windows against `windows.sizes`) and adapts the
burn-rate tiers of each SLO (`alerts.windows`). Everything downstream is a pure function
of an `AlertSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from alerts.windows import (
    Severity,
    Tier,
    adapt_to_target,
    drop_sparse_tiers,
    max_burn_rate,
    recording_windows,
    severities_for_kind,
)
from monitor.config import ConfigError, LoadedConfig
from monitor.durations import format_duration, parse_duration
from monitor.slo_spec import Check as CheckModel
from monitor.slo_spec import Objective, SloKind, SloSpec, WindowedCheck


@dataclass(frozen=True, slots=True)
class Slo:
    """One SLO with its final tiers. `target_text`/`budget_text` are exact decimals (the
    budget is written into expressions as text, so 1 - 0.999 prints as 0.001)."""

    name: str
    model: str
    version: str | None
    kind: SloKind
    target_text: str
    budget_text: str
    period_s: int
    tiers: tuple[Tier, ...]
    windows_s: tuple[int, ...]
    latency_threshold_s: float | None = None
    min_volume: int | None = None
    quality_objective: str | None = None

    @property
    def target(self) -> float:
        return float(self.target_text)

    @property
    def budget(self) -> float:
        return float(self.budget_text)

    @property
    def max_burn_rate(self) -> float:
        return max_burn_rate(self.budget)

    @property
    def group_by(self) -> tuple[str, ...]:
        """Labels the SLI keeps: per model, or per model and version."""
        return ("model",) if self.version is None else ("model", "version")

    @property
    def matchers(self) -> dict[str, str]:
        """Label matchers selecting this SLO's model (and version)."""
        m = {"model": self.model}
        if self.version is not None:
            m["version"] = self.version
        return m

    @property
    def title(self) -> str:
        return f"{self.model} {self.name}" + (f" ({self.version})" if self.version else "")


@dataclass(frozen=True, slots=True)
class Check:
    """One resolved threshold check. `for_s` and `range_s` in seconds; `window` is the
    `window` label value of a windowed gauge; `bound` a ratio (or PSI) bound."""

    enabled: bool
    severity: Severity
    for_s: int
    window: str | None = None
    bound: float | None = None
    range_s: int | None = None
    min_records: int | None = None


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Resolved threshold checks, one per kind of plain alert."""

    drift: Check
    ece: Check
    shadow_agreement: Check
    shadow_agreement_drop: Check
    label_coverage: Check
    consumer_lag: Check
    kafka_disconnected: Check
    no_events: Check
    rejected_ratio: Check
    reference_model_down: Check


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """Everything the rule, test and Alertmanager generators need."""

    source: str
    period_s: int
    slos: tuple[Slo, ...]
    thresholds: Thresholds
    runbook_url: str
    dashboard_url: str


def _exact(x: float) -> Decimal:
    return Decimal(repr(x))


def _text(d: Decimal) -> str:
    return format(d.normalize(), "f")


def build_slo(index: int, obj: Objective, spec: SloSpec, eval_slice_s: int) -> Slo:
    """Resolve one `slos.objectives[index]` entry (see `alerts.windows` for tier rules)."""
    period_s = parse_duration(spec.period)
    configured = tuple(Tier(severity=t.severity, long_s=parse_duration(t.long),
                            short_s=parse_duration(t.short), factor=t.factor,
                            for_s=parse_duration(t.for_)) for t in spec.burn_tiers())
    target = _exact(obj.target)
    budget = Decimal(1) - target
    what = f"slos.objectives.{index} ({obj.name}, model {obj.model})"
    tiers = adapt_to_target(configured, float(_text(budget)), what)
    tiers = severities_for_kind(obj.kind, tiers)
    if obj.kind == "quality_windows":
        tiers = drop_sparse_tiers(tiers, eval_slice_s, what)
        if not tiers:
            raise ConfigError(f"slos.objectives.{index}: every burn tier's short window holds "
                              f"fewer than two evaluation slices of {format_duration(eval_slice_s)}"
                              " (quality.eval_slice); lengthen the short windows")
    return Slo(
        name=obj.name, model=obj.model, version=obj.version, kind=obj.kind,
        target_text=_text(target), budget_text=_text(budget), period_s=period_s, tiers=tiers,
        windows_s=recording_windows(configured, period_s),
        latency_threshold_s=obj.latency_threshold_seconds,
        min_volume=obj.min_labeled_events if obj.kind == "accuracy" else None,
        quality_objective=obj.quality_objective,
    )


def _window(path: str, window: str, sizes: list[str]) -> str:
    """The `windows.sizes` entry equal to `window` (label values are written as configured)."""
    seconds = parse_duration(window)
    for size in sizes:
        if parse_duration(size) == seconds:
            return size
    raise ConfigError(f"{path}: window {window!r} is not one of the configured windows.sizes "
                      f"{sizes}; windowed gauges are only exported for those")


def build_thresholds(spec: SloSpec, loaded: LoadedConfig, source: str) -> Thresholds:
    """Resolve `slos.thresholds`; bounds left unset come from the `quality:` section."""
    cfg = loaded.config
    th = spec.thresholds
    sizes = list(cfg.windows.sizes)

    def base(c: CheckModel) -> dict[str, Any]:
        return {"enabled": c.enabled, "severity": c.severity, "for_s": parse_duration(c.for_)}

    def windowed(name: str, c: WindowedCheck, bound: float | None) -> Check:
        window = _window(f"{source}: slos.thresholds.{name}.window", c.window, sizes) \
            if c.enabled else c.window
        return Check(**base(c), window=window, bound=bound)

    return Thresholds(
        drift=windowed("drift", th.drift, None),
        ece=windowed("ece", th.ece, th.ece.max if th.ece.max is not None
                     else cfg.quality.max_ece),
        shadow_agreement=windowed(
            "shadow_agreement", th.shadow_agreement,
            th.shadow_agreement.min if th.shadow_agreement.min is not None
            else cfg.quality.min_shadow_agreement),
        shadow_agreement_drop=windowed(
            "shadow_agreement_drop",
            th.shadow_agreement_drop.model_copy(update={
                "window": th.shadow_agreement_drop.window or th.shadow_agreement.window}),
            th.shadow_agreement_drop.alpha),
        label_coverage=windowed("label_coverage", th.label_coverage, th.label_coverage.min),
        consumer_lag=Check(**base(th.consumer_lag),
                           range_s=parse_duration(th.consumer_lag.growth_window),
                           min_records=th.consumer_lag.min_records),
        kafka_disconnected=Check(**base(th.kafka_disconnected)),
        no_events=Check(**{**base(th.no_events), "for_s": 0},
                        range_s=parse_duration(th.no_events.after)),
        rejected_ratio=Check(**base(th.rejected_ratio), bound=th.rejected_ratio.max,
                             range_s=parse_duration(th.rejected_ratio.window)),
        reference_model_down=Check(**base(th.reference_model_down)),
    )


def build_spec(loaded: LoadedConfig) -> AlertSpec:
    """Resolve the config's `slos:` section (defaults when absent) into an `AlertSpec`.
    Raises `ConfigError` naming the file and key path on cross-section problems."""
    cfg = loaded.config
    spec = cfg.slos if cfg.slos is not None else SloSpec()
    source = loaded.path
    eval_slice_s = parse_duration(cfg.quality.eval_slice)
    slos = []
    for i, obj in enumerate(spec.objectives):
        try:
            slos.append(build_slo(i, obj, spec, eval_slice_s))
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    return AlertSpec(
        source=source, period_s=parse_duration(spec.period), slos=tuple(slos),
        thresholds=build_thresholds(spec, loaded, source),
        runbook_url=spec.runbook_url, dashboard_url=spec.dashboard_url,
    )
