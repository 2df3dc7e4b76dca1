"""`cost:` -> the cost and GPU recording rules: pure functions of `alerts.model.Cost`.

One group, `visionmon-cost`, evaluated in order, one series per model (label `model`):

* `visionmon:cost_per_hour:sum`: the model's hourly cost (a fixed figure, OpenCost's GPU or
  node prices for the series its matchers select, or the user's expression);
* `visionmon:cost_per_million_predictions:rate1h`: that cost over the last hour's
  successful predictions, per million; absent (not +Inf) while there are none;
* with DCGM matchers: `visionmon:gpu_utilization:ratio_avg5m` (mean utilisation, 0..1) and
  `visionmon:energy_per_prediction_joules:rate5m` (the energy counter, or mean power when a
  GPU has no counter);
* `visionmon:predictions_per_gpu_second:rate5m`: predictions per busy GPU-second, from the
  model's Triton compute time when Triton matchers are given, else from DCGM utilisation;
* with Triton matchers: `visionmon:triton_inferences_per_execution:rate5m` (mean batch size).

Predictions are visionmon's own `visionmon_predictions_total`, summed over versions and
replicas; other exporters' names come from `monitor.cost_series.external()`.
"""

from __future__ import annotations

from collections.abc import Sequence

from alerts.model import Cost, Matchers
from alerts.rules import RecordingRule, RuleGroup, number, selector
from monitor import cost_series as cs
from monitor.catalog import metric
from monitor.cost_series import external

#: Window of the per-million cost (its name says 1h).
COST_WINDOW = "1h"
#: Window of the GPU recordings (their names say 5m).
GPU_WINDOW = "5m"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def external_selector(name: str, matchers: Matchers) -> str:
    """`name{label=~"regex",...}` for another exporter's series."""
    return selector(external(name), [f"{k}=~{_quote(v)}" for k, v in matchers])


def predictions(cost: Cost) -> str:
    """The model's successful predictions, as a selector."""
    return selector(metric("predictions_total"), {"model": cost.model})


def per_hour_expr(cost: Cost) -> str:
    """The model's cost per hour (label-free)."""
    if cost.kind == "per_hour":
        assert cost.per_hour is not None
        return f"vector({number(cost.per_hour)})"
    if cost.kind == "opencost_node":
        return f"sum({external_selector('node_total_hourly_cost', cost.matchers)})"
    if cost.kind == "opencost_gpu":
        allocation = external_selector("container_gpu_allocation", cost.matchers)
        price = f"max by (node) ({external('node_gpu_hourly_cost')})"
        return f"sum(\n  {allocation}\n  * on (node) group_left ()\n  {price}\n)\n"
    assert cost.kind == "promql" and cost.promql is not None
    return f"sum(\n  {cost.promql.strip()}\n)\n"


def cost_per_million_expr(cost: Cost) -> str:
    """Hourly cost / 3600 over predictions per second, times a million."""
    hourly = selector(cs.COST_PER_HOUR, {"model": cost.model})
    rate = f"sum by (model) (rate({predictions(cost)}[{COST_WINDOW}]))"
    return f"{hourly} / 3600\n/\n({rate} > 0)\n* 1e6\n"


def _sum_rate(name: str, matchers: Matchers) -> str:
    return f"sum(rate({external_selector(name, matchers)}[{GPU_WINDOW}]))"


def _sum_avg(name: str, matchers: Matchers) -> str:
    return f"sum(avg_over_time({external_selector(name, matchers)}[{GPU_WINDOW}]))"


def _prediction_rate(cost: Cost) -> str:
    return f"sum(rate({predictions(cost)}[{GPU_WINDOW}]))"


def utilization_expr(cost: Cost) -> str:
    """Mean DCGM utilisation of the model's GPUs (percent -> 0..1)."""
    util = external_selector("DCGM_FI_DEV_GPU_UTIL", cost.dcgm)
    return f"avg(avg_over_time({util}[{GPU_WINDOW}])) / 100"


def gpu_seconds_expr(cost: Cost) -> str:
    """Busy GPU-seconds per second: Triton's compute time of the model (microseconds ->
    seconds) when given, else the sum of DCGM utilisations (percent -> GPUs)."""
    if cost.triton:
        return f"{_sum_rate('nv_inference_compute_infer_duration_us', cost.triton)} / 1e6"
    return f"{_sum_avg('DCGM_FI_DEV_GPU_UTIL', cost.dcgm)} / 100"


def per_gpu_second_expr(cost: Cost) -> str:
    """Successful predictions per busy GPU-second; absent while the GPUs are idle."""
    return f"{_prediction_rate(cost)}\n/\n({gpu_seconds_expr(cost)} > 0)\n"


def energy_expr(cost: Cost) -> str:
    """Joules per successful prediction: DCGM's energy counter (millijoules) where it exists,
    else mean power (watts = joules per second)."""
    energy = f"{_sum_rate('DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION', cost.dcgm)} / 1000"
    power = _sum_avg("DCGM_FI_DEV_POWER_USAGE", cost.dcgm)
    return f"(\n  {energy}\n  or\n  {power}\n)\n/\n({_prediction_rate(cost)} > 0)\n"


def batch_size_expr(cost: Cost) -> str:
    """Triton inferences per model execution: the mean batch size."""
    count = _sum_rate("nv_inference_count", cost.triton)
    execs = _sum_rate("nv_inference_exec_count", cost.triton)
    return f"{count}\n/\n({execs} > 0)\n"


def cost_recordings(cost: Cost) -> tuple[RecordingRule, ...]:
    """Every recording of one model, in evaluation order."""
    labels = (("model", cost.model),)
    rules = [RecordingRule(cs.COST_PER_HOUR, per_hour_expr(cost), labels),
             RecordingRule(cs.COST_PER_MILLION, cost_per_million_expr(cost), labels)]
    if cost.dcgm:
        rules.append(RecordingRule(cs.GPU_UTILIZATION, utilization_expr(cost), labels))
        rules.append(RecordingRule(cs.ENERGY_PER_PREDICTION, energy_expr(cost), labels))
    if cost.dcgm or cost.triton:
        rules.append(RecordingRule(cs.PREDICTIONS_PER_GPU_SECOND, per_gpu_second_expr(cost),
                                   labels))
    if cost.triton:
        rules.append(RecordingRule(cs.BATCH_SIZE, batch_size_expr(cost), labels))
    return tuple(rules)


def cost_group(costs: Sequence[Cost]) -> RuleGroup:
    """The cost and GPU recordings of every configured model (no rules: none configured)."""
    return RuleGroup(cs.COST_GROUP, tuple(r for c in costs for r in cost_recordings(c)))
