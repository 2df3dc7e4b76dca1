"""Internal model: the values the generators read, resolved from the config by `alerts.spec`.

Frozen dataclasses only, so that every generator (`rules`, `thresholds`, `threshold_cases`,
`promtool_tests`, `alertmanager`) is a pure function of an `AlertSpec`. This module imports
no generator, so any of them may import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from alerts.windows import Severity, Tier, max_burn_rate
from monitor.slo_spec import SloKind

#: Characters a regular expression treats specially.
_REGEX_SPECIAL = frozenset(".+*?()|[]{}^$\\")


def alternation(values: tuple[str, ...]) -> str:
    """`a|b\\.c`: a regex matching exactly these values, written for a PromQL double-quoted
    string (a special character gets a backslash, itself escaped for the string)."""
    return "|".join("".join("\\\\" + ch if ch in _REGEX_SPECIAL else ch for ch in v)
                    for v in values)


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
    classes: tuple[str, ...] = ()
    rollout_tier: Tier | None = None
    split_versions: bool = False

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
        """Labels the SLI keeps: per model, or per model and version (with a version, or
        `split_versions` for the rollout tier); and per class for a class kind (each class
        is its own objective)."""
        per_version = self.version is not None or self.split_versions
        by = ("model", "version") if per_version else ("model",)
        return (*by, "class") if self.classes else by

    @property
    def class_matcher(self) -> tuple[str, ...]:
        """`class=~"a|b"` selecting a class kind's classes (none for other kinds)."""
        if not self.classes:
            return ()
        return (f'class=~"{alternation(self.classes)}"',)

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
    """One resolved threshold check: its row of `alerts.checks.CHECKS` (key, alert name,
    metric, comparison) plus the configured values. `for_s` and `range_s` in seconds;
    `window` is the `window` label value of a windowed gauge; `bound` the value the metric
    is compared with (a ratio, a PSI, a p-value or a count, as the check says); `stale_s`
    how old the last success may be (seconds) before failures count; `classes` the
    (model, classes) pairs a per-class check reads; `min_records` the least events (records
    or labels, as the check says) before the value is judged."""

    key: str
    alert: str
    metric: str
    comparison: str
    enabled: bool
    severity: Severity
    for_s: int
    window: str | None = None
    bound: float | None = None
    range_s: int | None = None
    min_records: int | None = None
    stale_s: float | None = None
    classes: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The resolved threshold checks, in the order of `alerts.checks.CHECKS`."""

    checks: tuple[Check, ...]

    def __iter__(self) -> Iterator[Check]:
        return iter(self.checks)

    def __getitem__(self, key: str) -> Check:
        """The check configured as `slos.thresholds.<key>`."""
        for check in self.checks:
            if check.key == key:
                return check
        raise KeyError(f"no threshold check {key!r}; the checks are "
                       f"{[c.key for c in self.checks]}")

    def enabled(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.enabled)


#: (label, regular expression) pairs selecting another exporter's series.
Matchers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Cost:
    """One model's resolved `cost:` entry: how its hourly cost is computed (`kind` is
    `per_hour`, `opencost_gpu`, `opencost_node` or `promql`; `value` the number, unused or
    the expression) and the matchers of its DCGM and Triton series (empty: none)."""

    model: str
    kind: str
    per_hour: float | None = None
    matchers: Matchers = ()
    promql: str | None = None
    dcgm: Matchers = ()
    triton: Matchers = ()


@dataclass(frozen=True, slots=True)
class RolloutWindow:
    """A declared rollout of one model version, from `start_s` to `end_s` (Unix seconds)."""

    model: str
    version: str
    start_s: int
    end_s: int


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """Everything the rule, test and Alertmanager generators need."""

    source: str
    period_s: int
    slos: tuple[Slo, ...]
    thresholds: Thresholds
    runbook_url: str
    dashboard_url: str
    costs: tuple[Cost, ...] = ()
    rollouts: tuple[RolloutWindow, ...] = ()
