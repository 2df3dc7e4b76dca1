"""Spec -> model: the validated config resolved into the plain values of `alerts.model`.

`build_spec(loaded)` is the only place that reads the config. It adapts the burn-rate
tiers of each SLO (`alerts.windows`) and resolves the threshold checks through their
table (`alerts.checks`: defaults that live elsewhere in the config, such as the ECE bound
from `quality:`, and windows checked against `windows.sizes`). Everything downstream is a
pure function of an `AlertSpec`.
"""

from __future__ import annotations

from decimal import Decimal

from alerts.checks import resolve_checks
from alerts.model import AlertSpec, Check, Slo, Thresholds
from alerts.windows import (
    Tier,
    adapt_to_target,
    drop_sparse_tiers,
    recording_windows,
    severities_for_kind,
)
from monitor.config import ConfigError, LoadedConfig
from monitor.durations import format_duration, parse_duration
from monitor.slo_spec import LABELED_KINDS, Objective, SloSpec

__all__ = ["AlertSpec", "Check", "Slo", "Thresholds", "build_slo", "build_spec"]


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
        min_volume=obj.min_labeled_events if obj.kind in LABELED_KINDS else None,
        quality_objective=obj.quality_objective,
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
        thresholds=Thresholds(resolve_checks(cfg, spec.thresholds, source)),
        runbook_url=spec.runbook_template(), dashboard_url=spec.dashboard_url,
    )
