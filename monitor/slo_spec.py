"""The `slos:` section of the config: service-level objectives and threshold alerts.

Parsed into frozen objects here (monitor/ owns the config); `alerts/` turns them into
Prometheus rules.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Objective(_Frozen):
    """One SLO for one model (optionally one version)."""

    name: str = Field(pattern=r"^[a-z0-9_\-]+$")
    model: str
    version: str | None = None
    kind: Literal["availability", "latency", "accuracy", "quality_windows"]
    target: float = Field(gt=0, lt=1)
    latency_threshold_seconds: float | None = None
    min_labeled_events: int = Field(100, ge=1)
    quality_objective: str | None = None


class SloSpec(_Frozen):
    version: Literal[1] = 1
    period: str = "30d"
    objectives: list[Objective] = Field(default_factory=list)
