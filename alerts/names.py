"""Conventions: every rule, group, label and file name the alert generator emits, and the
SLO alert's name.

Metric names come from `monitor.catalog` (through `metric()`); the threshold alerts' names
are written once, in their row of `alerts.checks.CHECKS`. The names here are the ones this
package defines itself (Sloth-style recording names), so the catalog test can tell them
apart from exported series.
"""

from __future__ import annotations

from monitor.durations import format_duration

# --- recording rules (Sloth naming) ---------------------------------------------
SLI_ERROR_PREFIX = "slo:sli_error:ratio_rate"
OBJECTIVE = "slo:objective:ratio"
ERROR_BUDGET = "slo:error_budget:ratio"
TIME_PERIOD_DAYS = "slo:time_period:days"
CURRENT_BURN_RATE = "slo:current_burn_rate:ratio"
PERIOD_BURN_RATE = "slo:period_burn_rate:ratio"
PERIOD_BUDGET_REMAINING = "slo:period_error_budget_remaining:ratio"

# --- recording rules of the threshold alerts and rollouts -------------------------------
#: Each drift test's statistic over its critical value (> 1: drifted), labelled `feature`.
DRIFT_EXCEEDANCE = "visionmon:drift_exceedance:ratio"
#: Drift tests over their critical value, per model, version and window.
DRIFT_FEATURES_OVER = "visionmon:drift_features_over_threshold:count"
#: The drift test furthest over its critical value, per model, version and window.
DRIFT_WORST_FEATURE = "visionmon:drift_worst_feature:ratio"
#: 1 while a declared rollout (`slos.rollouts`) of a model version lasts; absent otherwise.
ROLLOUT_ACTIVE = "visionmon:rollout_active:bool"

#: Every recording-rule name prefix this package defines (`str.startswith` takes the tuple).
RECORDING_PREFIX = ("slo:", "visionmon:")

# --- labels ------------------------------------------------------------------------
SLO_LABEL = "slo"
SEVERITY_LABEL = "severity"

# --- alerts --------------------------------------------------------------------------
SLO_ALERT = "VisionmonErrorBudgetBurn"
#: `feature` label value the embedding MMD test carries in the drift alert
EMBEDDING_MMD_FEATURE = "embedding_mmd"

# --- groups and files -----------------------------------------------------------------
THRESHOLD_GROUP = "visionmon-thresholds"
ROLLOUT_GROUP = "visionmon-rollouts"
#: `tier` label of the rollout tier's burn-rate alert.
ROLLOUT_TIER_LABEL = "rollout"
#: Rule files end in `.yml`; everything else in `.yaml`, so that
#: `promtool check rules DIR/*.yml` only sees rule files.
RULES_SUFFIX = ".yml"
TESTS_SUFFIX = ".test.yaml"
ALERTMANAGER_FILE = "alertmanager.yaml"


def sli_error_record(window_s: int) -> str:
    """`slo:sli_error:ratio_rate5m` for a 300 s window."""
    return f"{SLI_ERROR_PREFIX}{format_duration(window_s)}"


def slo_group_name(model: str, slo: str) -> str:
    """One rule group (and one rule file) per SLO: its recordings, meta recordings and
    alerts, in evaluation order."""
    return f"visionmon-slo-{model}-{slo}"
