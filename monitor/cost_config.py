"""The `cost:` section: what each model costs to serve and which GPU series serve it.

`visionmon alerts generate` turns it into recording rules (docs/alerts.md, "Cost and GPU
recording rules"): cost per million predictions from a fixed hourly figure, from OpenCost's
series or from any PromQL expression, and, where the model's GPUs are named by label
matchers, GPU utilisation, predictions per GPU-second and energy per prediction from DCGM or
Triton. Amounts are in whatever currency the figure or OpenCost is in: visionmon never
converts or names one.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from monitor.frozen_model import Frozen

#: A Prometheus label name.
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OPENERS = {")": "(", "]": "[", "}": "{"}


def check_matchers(matchers: dict[str, str]) -> dict[str, str]:
    """Label names must be Prometheus label names and values valid regular expressions;
    at least one matcher, so that no rule sums a whole cluster by accident."""
    if not matchers:
        raise ValueError("give at least one label matcher (label: regex), e.g. "
                         "{namespace: serving, container: triton}; none would select every "
                         "series in the cluster")
    for label, pattern in matchers.items():
        if not LABEL_NAME.match(label):
            raise ValueError(f"{label!r} is not a Prometheus label name "
                             "([A-Za-z_][A-Za-z0-9_]*)")
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"label {label!r}: {pattern!r} is not a regular expression: "
                             f"{err}") from None
    return matchers


def check_balanced(expr: str) -> str:
    """A PromQL expression must be non-empty with balanced brackets and closed quotes (the
    generated rules are checked by promtool; this catches the typo at config load)."""
    if not expr.strip():
        raise ValueError("the expression is empty")
    stack: list[str] = []
    quote = ""
    escaped = False
    for ch in expr:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in ")]}" and (not stack or stack.pop() != _OPENERS[ch]):
            raise ValueError(f"unbalanced {ch!r} in {expr!r}")
    if quote or stack:
        raise ValueError(f"unclosed {quote or stack[-1]!r} in {expr!r}")
    return expr


class OpenCostSource(Frozen):
    """The hourly cost of a model read from OpenCost's series."""

    allocation: Literal["gpu", "node"] = "gpu"
    """What the model is charged for: `gpu`, the GPUs its containers are allocated
    (`container_gpu_allocation` selected by `matchers`, times its node's
    `node_gpu_hourly_cost`); `node`, whole nodes (`node_total_hourly_cost` selected by
    `matchers`) that serve only this model."""
    matchers: dict[str, str]
    """Label matchers (label: regular expression, anchored as Prometheus anchors them) that
    select the model's series: with allocation gpu the labels of `container_gpu_allocation`
    (`namespace`, `pod`, `container`, `node`), with node those of `node_total_hourly_cost`
    (`node`, `instance_type`, `region`). At least one."""

    @field_validator("matchers")
    @classmethod
    def _matchers(cls, v: dict[str, str]) -> dict[str, str]:
        return check_matchers(v)


class GpuSeries(Frozen):
    """Which GPU telemetry serves a model, by label matchers (label: regular expression)."""

    dcgm: dict[str, str] | None = None
    """Matchers selecting the model's GPUs in NVIDIA DCGM exporter series
    (`DCGM_FI_DEV_GPU_UTIL`, `DCGM_FI_DEV_POWER_USAGE`,
    `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`), e.g. `{namespace: serving, pod: "triton-.*"}`
    with the exporter's Kubernetes mapping or `{Hostname: gpu-node-1, gpu: "0"}` without it.
    Gives GPU utilisation, energy per prediction, and predictions per GPU-second when
    `triton` is unset."""
    triton: dict[str, str] | None = None
    """Matchers selecting the model in Triton's per-model counters (`nv_inference_count`,
    `nv_inference_exec_count`, `nv_inference_compute_infer_duration_us`), e.g.
    `{model: digits_onnx}`. Gives the mean batch size and predictions per GPU-second from
    the model's own compute time (exact on a GPU that several models share)."""

    @field_validator("dcgm", "triton")
    @classmethod
    def _matchers(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return None if v is None else check_matchers(v)

    @model_validator(mode="after")
    def _one_source(self) -> GpuSeries:
        if self.dcgm is None and self.triton is None:
            raise ValueError("gpu needs dcgm or triton matchers (or both); leave gpu out for "
                             "a model without GPU telemetry")
        return self


class ModelCost(Frozen):
    """What one model costs per hour, in exactly one way, and which GPUs serve it."""

    model: str
    """The model (one of `models[].name`)."""
    per_hour: float | None = Field(None, gt=0)
    """A fixed cost per hour of everything that serves the model (replicas, GPUs, share of
    nodes), in any currency: the rules and dashboards show amounts in the same one."""
    opencost: OpenCostSource | None = None
    """The hourly cost from OpenCost's series (`node_total_hourly_cost`,
    `node_gpu_hourly_cost`, `container_gpu_allocation`)."""
    promql: str | None = None
    """Any PromQL expression whose value is the model's cost per hour (one series, or
    several that are summed), for costs OpenCost does not model."""
    gpu: GpuSeries | None = None
    """The model's GPU series (DCGM or Triton); none: no GPU rules for this model."""

    @field_validator("promql")
    @classmethod
    def _balanced(cls, v: str | None) -> str | None:
        return None if v is None else check_balanced(v)

    @model_validator(mode="after")
    def _one_cost(self) -> ModelCost:
        given = [k for k in ("per_hour", "opencost", "promql") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of per_hour (a number), opencost (allocation "
                             f"and matchers) or promql (an expression); got "
                             f"{', '.join(given) or 'none'}")
        return self


class CostConfig(Frozen):
    """Serving cost and GPU use per model (recording rules and dashboard panels)."""

    models: list[ModelCost] = Field(min_length=1)
    """One entry per model whose cost is known (each model at most once)."""

    @model_validator(mode="after")
    def _once_per_model(self) -> CostConfig:
        names = [m.model for m in self.models]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"models {twice} appear more than once; give each model one entry")
        return self
