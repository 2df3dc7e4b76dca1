"""Names of the cost and GPU recording rules, and of the other exporters' series they read.

The recordings (`visionmon:...`, Prometheus' level:metric:operations naming) are written by
`alerts.cost_rules` and drawn by the dashboards, so both import their names from here. The
external series belong to OpenCost, NVIDIA's DCGM exporter and Triton; visionmon never
exports them, and the catalog test accepts exactly these in generated expressions.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Every recording name visionmon's cost and GPU rules define starts with this.
RECORDING_PREFIX = "visionmon:"

# --- recordings (one series per model, label `model`) ---------------------------------
#: Cost per hour of what serves the model, in the currency of its `cost:` figure.
COST_PER_HOUR = "visionmon:cost_per_hour:sum"
#: Cost per million successful predictions over the last hour (same currency).
COST_PER_MILLION = "visionmon:cost_per_million_predictions:rate1h"
#: Mean utilisation of the model's GPUs over 5 minutes (0..1, DCGM).
GPU_UTILIZATION = "visionmon:gpu_utilization:ratio_avg5m"
#: Successful predictions per busy GPU-second over 5 minutes (Triton compute time, else
#: DCGM utilisation x GPUs).
PREDICTIONS_PER_GPU_SECOND = "visionmon:predictions_per_gpu_second:rate5m"
#: GPU energy per successful prediction over 5 minutes, joules (DCGM).
ENERGY_PER_PREDICTION = "visionmon:energy_per_prediction_joules:rate5m"
#: Inferences per model execution over 5 minutes: Triton's mean batch size.
BATCH_SIZE = "visionmon:triton_inferences_per_execution:rate5m"

#: Every recording above; each carries the one label `model`.
RECORDINGS: tuple[str, ...] = (COST_PER_HOUR, COST_PER_MILLION, GPU_UTILIZATION,
                               PREDICTIONS_PER_GPU_SECOND, ENERGY_PER_PREDICTION, BATCH_SIZE)
RECORDING_LABELS: tuple[str, ...] = ("model",)

#: Group (and file stem) of the generated cost and GPU rules.
COST_GROUP = "visionmon-cost"


@dataclass(frozen=True, slots=True)
class ExternalSeries:
    """A series another exporter writes: its name, the exporter, kind and unit."""

    name: str
    exporter: str
    kind: str
    unit: str


EXTERNAL: tuple[ExternalSeries, ...] = (
    ExternalSeries("node_total_hourly_cost", "OpenCost", "gauge", "currency per hour"),
    ExternalSeries("node_gpu_hourly_cost", "OpenCost", "gauge", "currency per GPU-hour"),
    ExternalSeries("container_gpu_allocation", "OpenCost", "gauge", "GPUs"),
    ExternalSeries("DCGM_FI_DEV_GPU_UTIL", "DCGM exporter", "gauge", "percent"),
    ExternalSeries("DCGM_FI_DEV_POWER_USAGE", "DCGM exporter", "gauge", "watts"),
    ExternalSeries("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM exporter", "counter",
                   "millijoules"),
    ExternalSeries("nv_inference_count", "Triton", "counter", "inferences"),
    ExternalSeries("nv_inference_exec_count", "Triton", "counter", "executions"),
    ExternalSeries("nv_inference_compute_infer_duration_us", "Triton", "counter",
                   "microseconds"),
)
EXTERNAL_NAMES: frozenset[str] = frozenset(s.name for s in EXTERNAL)


def external(name: str) -> str:
    """`name`, checked against `EXTERNAL` so that a generator fails at build time on a typo."""
    if name not in EXTERNAL_NAMES:
        raise KeyError(f"{name!r} is not an external series visionmon reads; they are "
                       f"{sorted(EXTERNAL_NAMES)}")
    return name
