"""Threshold scales taken from the configuration, so panels colour what the config calls bad.

Rule used throughout: orange below the configured bound, red once the shortfall is twice what
the bound tolerates (e.g. min_accuracy 0.9 tolerates 10 % errors: red below 80 %).
Drift panels take no scale from here: their critical values are exported series.
"""

from __future__ import annotations

from dashboards.panels import (
    COUNT,
    GREEN,
    ORANGE,
    PERCENT,
    PLAIN,
    RED,
    SECONDS,
    Scale,
    Step,
    higher_is_better,
    lower_is_better,
)
from monitor.config import LoadedConfig, VisionmonConfig
from monitor.config import objective_classes as classes_of
from monitor.durations import parse_duration
from monitor.slo_spec import BurnTier, Objective, ThresholdChecks


def _twice_the_shortfall(bound: float) -> float:
    return max(0.0, 2.0 * bound - 1.0)


def accuracy(cfg: VisionmonConfig) -> Scale:
    """Accuracy, recall and precision (0..1): orange below quality.min_accuracy."""
    bound = cfg.quality.min_accuracy
    return higher_is_better(bound, _twice_the_shortfall(bound))


def shadow_agreement(cfg: VisionmonConfig) -> Scale:
    """Agreement with the reference model (0..1): orange below quality.min_shadow_agreement."""
    bound = cfg.quality.min_shadow_agreement
    return higher_is_better(bound, _twice_the_shortfall(bound))


def threshold_checks(cfg: VisionmonConfig) -> ThresholdChecks:
    """The threshold alerts' settings (slos.thresholds, or their defaults without `slos:`)."""
    return cfg.slos.thresholds if cfg.slos is not None else ThresholdChecks()


def shadow_agreement_drop_alpha(cfg: VisionmonConfig) -> float:
    """Level of the shadow agreement test's alert (slos.thresholds.shadow_agreement_drop)."""
    return threshold_checks(cfg).shadow_agreement_drop.alpha


def rejected_ratio(cfg: VisionmonConfig) -> Scale:
    """Share of records refused (0..1): orange from half the rejected-records alert's bound
    (slos.thresholds.rejected_ratio.max), red from the bound."""
    bound = threshold_checks(cfg).rejected_ratio.max
    return lower_is_better(bound / 2.0, bound, PERCENT)


def checkpoint_age(cfg: VisionmonConfig) -> Scale:
    """Seconds since the last good checkpoint: orange from two checkpoint intervals, red from
    the checkpoint alert's limit (slos.thresholds.checkpoint_failing.missed_intervals)."""
    interval = cfg.state.checkpoint_interval_seconds
    missed = threshold_checks(cfg).checkpoint_failing.missed_intervals
    return Scale(SECONDS, ((None, GREEN), (2.0 * interval, ORANGE),
                           (max(missed, 2) * interval, RED)), 0.0)


def shadow_agreement_drop(cfg: VisionmonConfig) -> Scale:
    """p-value of the shadow agreement test (0..1, log axis): red below the alert's level,
    orange within a decade above it."""
    alpha = shadow_agreement_drop_alpha(cfg)
    return Scale(PLAIN, ((None, RED), (alpha, ORANGE), (min(1.0, 10.0 * alpha), GREEN)),
                 None, 1.0)


def calibration_error(cfg: VisionmonConfig) -> Scale:
    """ECE (0..1): orange from half of quality.max_ece, red above it."""
    bound = cfg.quality.max_ece
    return lower_is_better(bound / 2.0, bound, PERCENT)


def unusual_inputs() -> Scale:
    """Share of images above the baseline's 99th percentile of a score (0..1): a clean
    window holds about 1 %; orange above it, red at twice it (the alert compares with the
    exported critical value, which allows for the window's size)."""
    return lower_is_better(0.01, 0.02, PERCENT)


def label_coverage() -> Scale:
    """Labeled share of predictions (0..1): realized accuracy on under 1 % of traffic is
    anecdotal (red), under 5 % noisy (orange)."""
    return higher_is_better(0.05, 0.01)


def label_delay(cfg: VisionmonConfig) -> Scale:
    """Seconds until a label arrives: orange from half the join TTL, red at the TTL (labels
    later than labels.ttl are never joined)."""
    ttl = float(parse_duration(cfg.labels.ttl))
    return lower_is_better(ttl / 2.0, ttl, SECONDS)


def consumer_lag(cfg: VisionmonConfig) -> Scale:
    """Records behind: orange from one poll's worth (kafka.max_poll_records), red at ten."""
    poll = float(cfg.kafka.max_poll_records)
    return lower_is_better(poll, 10.0 * poll, COUNT)


def objective_attainment(obj: Objective) -> Scale:
    """Good share over the SLO period: green at or above the target, red below."""
    return Scale(PERCENT, ((None, RED), (obj.target, GREEN)), None, 1.0, 3)


def latency(cfg: VisionmonConfig) -> Scale:
    """Latency in seconds: red above the tightest latency objective's bound, if any."""
    bounds = [o.latency_threshold_seconds for o in objectives(cfg)
              if o.kind == "latency" and o.latency_threshold_seconds is not None]
    if not bounds:
        return Scale(SECONDS, ((None, GREEN),), 0.0)
    bound = min(bounds)
    return Scale(SECONDS, ((None, GREEN), (bound / 2.0, ORANGE), (bound, RED)), 0.0)


def false_accepts(cfg: VisionmonConfig) -> Scale:
    """False accepts / labelled predictions (0..1): orange above the strictest false_accept_rate
    objective's error budget, red above twice it; without one, no colour."""
    budgets = [1.0 - o.target for o in objectives(cfg) if o.kind == "false_accept_rate"]
    if not budgets:
        return Scale(PERCENT, ((None, GREEN),), 0.0)
    return lower_is_better(min(budgets), 2.0 * min(budgets), PERCENT)


def ranking() -> Scale:
    """ROC-AUC and PR-AUC (0..1): red at or below 0.5 (chance for ROC-AUC), else no colour."""
    return Scale(PLAIN, ((None, RED), (0.5, GREEN)), 0.0, 1.0)


def success_ratio(cfg: VisionmonConfig) -> Scale:
    """Request success (0..1): red below the strictest availability target (else 99 %)."""
    targets = [o.target for o in objectives(cfg) if o.kind == "availability"]
    target = max(targets) if targets else 0.99
    return Scale(PERCENT, ((None, RED), (target, GREEN)), None, 1.0)


def objectives(cfg: VisionmonConfig) -> list[Objective]:
    """Configured SLOs, in file order (empty without an `slos:` section)."""
    return list(cfg.slos.objectives) if cfg.slos is not None else []


def objective_classes(obj: Objective, loaded: LoadedConfig) -> tuple[str, ...]:
    """The classes a class_recall/class_precision objective judges (`class`, else the model's
    high_risk_classes); () for other kinds."""
    return classes_of(obj, loaded.models[obj.model])


def page_tiers(cfg: VisionmonConfig) -> tuple[BurnTier, ...]:
    """The burn-rate tiers that page (slos.windows, else the SRE-workbook defaults in
    monitor.slo_spec); all tiers when none pages."""
    if cfg.slos is None:
        return ()
    tiers = cfg.slos.burn_tiers()
    return tuple(t for t in tiers if t.severity == "page") or tiers


def burn_rate(cfg: VisionmonConfig) -> Scale:
    """Burn rate (x): orange from the slowest page tier's factor, red from the fastest's
    (6x and 14.4x with the workbook defaults)."""
    factors = sorted({t.factor for t in page_tiers(cfg)})
    steps: list[Step] = [(None, GREEN)]
    if factors:
        steps.append((factors[0], ORANGE if len(factors) > 1 else RED))
    if len(factors) > 1:
        steps.append((factors[-1], RED))
    return Scale(PLAIN, tuple(steps), 0.0)


def burn_rate_windows(cfg: VisionmonConfig) -> tuple[str, ...]:
    """The windows a burn-rate panel draws: each page tier's short and long window."""
    windows = {w for t in page_tiers(cfg) for w in (t.short, t.long)}
    return tuple(sorted(windows, key=parse_duration))
