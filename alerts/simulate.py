"""A small model of how Prometheus 2.x evaluates the generated rules, for computing what
the promtool tests expect.

Inputs are counters sampled once per step, starting at 0 at step 0. With samples on
the step grid and counters starting at 0, `rate()` over `[w]` at step `t` is exactly
`(c[t] - c[max(0, t - w)]) * (1 / w_seconds)`: the range is closed (`[t - w, t]`, Prometheus
2.x; Prometheus 3 drops the sample at `t - w`), the first sample either sits on the
range start or is 0 (so extrapolation adds nothing), and the last sits on the range
end. The same float operations are done in the same order as PromQL, so the values
printed in annotations match to the last digit.

Alert state follows Prometheus: pending at the first evaluation where the expression
returns the series, firing once it has been returned for `for`, and gone at the first
evaluation where it is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alerts.model import Slo
from alerts.windows import Tier


@dataclass(frozen=True, slots=True)
class Segment:
    """`steps` evaluation steps, each adding `events` events of which `bad` are bad."""

    steps: int
    events: int
    bad: int


@dataclass(frozen=True, slots=True)
class Traffic:
    """Cumulative good and bad counters, one sample per step from step 0 (both 0)."""

    good: tuple[int, ...]
    bad: tuple[int, ...]

    @classmethod
    def of(cls, segments: Sequence[Segment]) -> Traffic:
        good, bad = [0], [0]
        for seg in segments:
            if not 0 <= seg.bad <= seg.events:
                raise ValueError(f"segment {seg}: bad events must be within 0..events")
            for _ in range(seg.steps):
                good.append(good[-1] + seg.events - seg.bad)
                bad.append(bad[-1] + seg.bad)
        return cls(tuple(good), tuple(bad))

    @property
    def total(self) -> tuple[int, ...]:
        return tuple(g + b for g, b in zip(self.good, self.bad, strict=True))

    @property
    def last_step(self) -> int:
        return len(self.good) - 1


def window_delta(cum: Sequence[float], t: int, w: int) -> float | None:
    """`c[t] - c[t - w]` over the samples in `[t - w, t]`; None with fewer than 2."""
    lo = max(0, t - w)
    if t - lo < 1:
        return None
    return cum[t] - cum[lo]


def rate(cum: Sequence[float], t: int, w: int, step_s: int) -> float | None:
    """`rate(c[w])` at step `t` (w in steps), per second. Prometheus 2.x multiplies the
    increase by `extrapolation / range_seconds` (here `1.0 / range_seconds`) rather than
    dividing by the range, which can differ in the last bit."""
    d = window_delta(cum, t, w)
    return None if d is None else d * (1.0 / float(w * step_s))


def _deltas(cum: np.ndarray, w: int) -> np.ndarray:
    """`window_delta` at every step (NaN where the window holds fewer than 2 samples)."""
    t = np.arange(cum.size)
    lo = np.maximum(0, t - w)
    out = (cum - cum[lo]).astype(np.float64)
    out[t - lo < 1] = np.nan
    return out


def error_ratios(slo: Slo, traffic: Traffic, w: int, step_s: int) -> np.ndarray:
    """The SLI recording `slo:sli_error:ratio_rate<w>` at every step (NaN: no sample or
    0/0). Same float operations, in the same order, as the generated PromQL."""
    per_second = 1.0 / float(w * step_s)  # see rate()
    good = _deltas(np.asarray(traffic.good, dtype=np.float64), w) * per_second
    with np.errstate(divide="ignore", invalid="ignore"):
        if slo.kind in ("availability", "accuracy", "class_recall", "class_precision",
                        "false_accept_rate"):
            bad = _deltas(np.asarray(traffic.bad, dtype=np.float64), w) * per_second
            return bad / (good + bad)  # bad / sum(good, bad)
        total = _deltas(np.asarray(traffic.total, dtype=np.float64), w) * per_second
        return (total - good) / total  # (total - good) / total


def volumes(traffic: Traffic, w: int) -> np.ndarray:
    """`sum(increase(...[w]))` over the good and bad series: events in the window."""
    return (_deltas(np.asarray(traffic.good, dtype=np.float64), w)
            + _deltas(np.asarray(traffic.bad, dtype=np.float64), w))


@dataclass(frozen=True, slots=True)
class TierState:
    """One tier's alert at one step: its value ($value) and the annotation queries."""

    value: float
    burn_rate: float
    budget_left: float | None


@dataclass(frozen=True, slots=True)
class SloRun:
    """Firing tiers per step: `firing[t]` maps a tier index to its state."""

    slo: Slo
    step_s: int
    traffic: Traffic
    firing: tuple[dict[int, TierState], ...]

    def first_firing(self, tier: int, start: int = 0) -> int | None:
        for t in range(start, len(self.firing)):
            if tier in self.firing[t]:
                return t
        return None

    def first_silent(self, tier: int, start: int) -> int | None:
        for t in range(start, len(self.firing)):
            if tier not in self.firing[t]:
                return t
        return None


def tier_values(slo: Slo, tier: Tier, traffic: Traffic, step_s: int) -> np.ndarray:
    """The tier's alert expression at every step: the long-window ratio where both
    windows exceed the threshold (and the volume guard holds), NaN elsewhere."""
    threshold = tier.factor * slo.budget
    long_w, short_w = tier.long_s // step_s, tier.short_s // step_s
    r_long = error_ratios(slo, traffic, long_w, step_s)
    r_short = error_ratios(slo, traffic, short_w, step_s)
    with np.errstate(invalid="ignore"):
        ok = (r_long > threshold) & (r_short > threshold)
        if slo.min_volume is not None:
            ok &= volumes(traffic, long_w) >= slo.min_volume
    return np.where(ok, r_long, np.nan)


def run_slo(slo: Slo, traffic: Traffic, step_s: int) -> SloRun:
    """Evaluate every tier's alert at every step of `traffic`."""
    for t_ in slo.tiers:
        for d in (t_.long_s, t_.short_s, t_.for_s):
            if d % step_s:
                raise ValueError(f"{d}s is not a multiple of the {step_s}s step")
    r_period = error_ratios(slo, traffic, slo.period_s // step_s, step_s)
    firing: list[dict[int, TierState]] = [{} for _ in range(traffic.last_step + 1)]
    for i, tier in enumerate(slo.tiers):
        values = tier_values(slo, tier, traffic, step_s)
        held = hold([not np.isnan(v) for v in values], tier.for_s // step_s)
        for t in np.flatnonzero(held):
            value = float(values[t])
            period = float(r_period[t])
            left = None if np.isnan(period) else 1 - period / slo.budget
            firing[t][i] = TierState(value, value / slo.budget, left)
    return SloRun(slo, step_s, traffic, tuple(firing))


def hold(conditions: Sequence[bool], for_steps: int) -> list[bool]:
    """Firing timeline of an alert whose expression held at each step (`for` in steps)."""
    out, since = [], None
    for t, cond in enumerate(conditions):
        if not cond:
            since = None
            out.append(False)
            continue
        since = t if since is None else since
        out.append(t - since >= for_steps)
    return out
