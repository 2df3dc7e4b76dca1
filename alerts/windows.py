"""Burn-rate tiers: the SRE-workbook table, adapted to each SLO's target and kind.

A tier alerts when the error ratio over both its long and its short window exceeds
`factor x (1 - target)`. Three adjustments are made per SLO, each logged:

* **Unreachable tiers.** The largest possible burn rate is `1 / (1 - target)` (every
  event bad). A tier whose factor is at or above it can never fire, so its factor is
  lowered to `max(0.8 x max burn rate, largest reachable factor of the other tiers)`,
  rounded down to 2 decimals. The tier keeps its windows and severity; it now fires
  when more than 80 % of events are bad (or with the next tier's threshold, so a faster
  tier is never less sensitive than a slower one).
* **Severity by kind.** Requests (availability, latency) use the tiers as configured.
  Accuracy, class recall, class precision and false accepts page only on their fastest
  page tier (a sudden collapse); their other tiers open tickets, since labels arrive
  late. Quality-window SLOs only open tickets.
* **Sparse time slices.** A quality-window SLO counts one event per evaluation slice, so
  a tier whose short window holds fewer than two slices is dropped (it would flap).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Literal

from monitor.durations import format_duration

log = logging.getLogger(__name__)

Severity = Literal["page", "ticket"]
#: An unreachable tier is lowered to this fraction of the maximum burn rate.
ADAPTED_FRACTION = 0.8
#: A quality-window tier needs at least this many evaluation slices in its short window.
MIN_SLICES_PER_SHORT_WINDOW = 2


@dataclass(frozen=True, slots=True)
class Tier:
    """One multi-window burn-rate tier. Durations in seconds; `factor` is a multiple of
    the error budget. `configured_factor` is set when the factor was adapted."""

    severity: Severity
    long_s: int
    short_s: int
    factor: float
    for_s: int = 0
    configured_factor: float | None = None

    @property
    def long(self) -> str:
        return format_duration(self.long_s)

    @property
    def short(self) -> str:
        return format_duration(self.short_s)

    def budget_consumed(self, period_s: int) -> float:
        """Fraction of the period's error budget burnt when the long window fires."""
        return self.factor * self.long_s / period_s


def max_burn_rate(budget: float) -> float:
    """1 / (1 - target): the burn rate when every event is bad."""
    return 1.0 / budget


def adapt_to_target(tiers: tuple[Tier, ...], budget: float, what: str) -> tuple[Tier, ...]:
    """Lower the factor of every tier that could never fire for this budget (see module
    docstring). `what` names the SLO in the warning."""
    ceiling = max_burn_rate(budget)
    reachable = [t.factor for t in tiers if t.factor < ceiling]
    lowered = max(ADAPTED_FRACTION * ceiling, max(reachable, default=0.0))
    lowered = math.floor(lowered * 100) / 100
    out = []
    for t in tiers:
        if t.factor < ceiling:
            out.append(t)
            continue
        log.warning("%s: the %sx tier (%s/%s) can never fire: with an error budget of %g the "
                    "burn rate cannot exceed %.4gx; using %gx instead", what, _num(t.factor),
                    t.long, t.short, budget, ceiling, lowered)
        out.append(replace(t, factor=lowered, configured_factor=t.factor))
    return tuple(out)


def severities_for_kind(kind: str, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
    """Apply the page-vs-ticket policy of an SLO kind (see module docstring)."""
    if kind == "quality_windows":
        return tuple(replace(t, severity="ticket") for t in tiers)
    if kind in ("accuracy", "class_recall", "class_precision", "false_accept_rate"):
        pages = [t for t in tiers if t.severity == "page"]
        if not pages:
            return tiers
        fastest = max(pages, key=lambda t: (t.factor, -t.long_s))
        return tuple(t if t is fastest else replace(t, severity="ticket") for t in tiers)
    return tiers


def drop_sparse_tiers(tiers: tuple[Tier, ...], slice_s: int, what: str) -> tuple[Tier, ...]:
    """Drop tiers whose short window holds fewer than two evaluation slices."""
    keep = []
    for t in tiers:
        if t.short_s < MIN_SLICES_PER_SHORT_WINDOW * slice_s:
            log.warning("%s: dropping the %sx tier (%s/%s): its short window holds fewer than "
                        "%d evaluation slices of %s", what, _num(t.factor), t.long, t.short,
                        MIN_SLICES_PER_SHORT_WINDOW, format_duration(slice_s))
            continue
        keep.append(t)
    return tuple(keep)


def recording_windows(tiers: tuple[Tier, ...], period_s: int) -> tuple[int, ...]:
    """Every window an SLO needs an error-ratio recording for, shortest first (seconds)."""
    return tuple(sorted({w for t in tiers for w in (t.long_s, t.short_s)} | {period_s}))


def _num(x: float) -> str:
    return f"{x:g}"
