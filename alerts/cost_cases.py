"""promtool unit tests of the cost and GPU recordings, from the spec alone.

Per model, synthetic series that its matchers select (plus a decoy series beside each that
they must not select) run for two hours at one sample a minute, and every recording is
asserted at the end with a value computed here the way Prometheus computes it:

* **the figures** (each recording within a relative 1e-9 of its value): 50 predictions/s
  over two versions; OpenCost allocating 2 GPUs at 1.5 an hour on a node beside a dearer
  one (or a 3.0 node); two GPUs at 60 % and 40 % drawing 250 W and 150 W; Triton running
  50 inferences/s in 10 executions/s for 0.5 s of compute a second;
* **power instead of energy**: without DCGM's energy counter, energy per prediction comes
  from mean power (the same 8 J);
* **no predictions**: cost per million predictions and energy per prediction are absent,
  not +Inf.

A label value the series need is found from each matcher's regular expression
(`sample_value`); an expression too unusual for that stops generation with its name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alerts.model import Cost, Matchers
from alerts.rules import number
from alerts.scenario import ScenarioError, labels_text, series_values
from monitor import cost_series as cs
from monitor.catalog import metric
from monitor.durations import format_duration

STEP_S = 60
#: Samples after the first (two hours): both windows (5m, 1h) are full at the end.
STEPS = 120
EVAL = format_duration(STEP_S * STEPS)
#: Predictions per second of each synthetic (version, class) series; 50/s in all.
PREDICTION_RATES: tuple[tuple[str, str, int], ...] = (("v1", "c0", 30), ("v2", "c1", 20))
GPU_ALLOCATION, GPU_HOURLY, NODE_HOURLY = 2.0, 1.5, 3.0
#: (utilisation %, power W) of the two synthetic GPUs.
GPUS: tuple[tuple[float, float], ...] = ((60.0, 250.0), (40.0, 150.0))
TRITON_INFERENCES, TRITON_EXECUTIONS, TRITON_COMPUTE_S = 50, 10, 0.5
DECOY = "visionmon-decoy"
#: How far a recording may be from its computed value, relative to it.
RELATIVE_TOLERANCE = 1e-9


def sample_value(pattern: str) -> str:
    """A label value `pattern` matches in full: the pattern itself, or it with `.*` dropped,
    `.+` as `x`, escapes undone or its first alternative."""
    first = pattern.split("|")[0].strip("()")
    candidates = []
    for p in (pattern, first):
        plain = p.replace(".*", "").replace(".+", "x")
        candidates += [re.sub(r"\\(.)", r"\1", plain), plain, p]
    for c in candidates:
        if c and re.fullmatch(pattern, c):
            return c
    raise ScenarioError(f"cannot find a label value that {pattern!r} matches for the cost "
                        "rules' promtool tests; use a plainer regular expression")


def matching(matchers: Matchers) -> dict[str, str]:
    """Labels that every matcher selects."""
    return {k: sample_value(v) for k, v in matchers}


def decoy(matchers: Matchers) -> dict[str, str] | None:
    """Labels the matchers do not select (None when the first matcher selects anything)."""
    label, pattern = matchers[0]
    if re.fullmatch(pattern, DECOY):
        return None
    return {**matching(matchers), label: DECOY}


def _spare(matchers: Matchers, *names: str) -> str:
    """The first of `names` that no matcher uses: a label telling two series apart."""
    used = {k for k, _ in matchers}
    return next(n for n in names if n not in used)


def _counter(per_second: float) -> str:
    return series_values([per_second * STEP_S * i for i in range(STEPS + 1)])


def _gauge(value: float) -> str:
    return series_values([value] * (STEPS + 1))


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    return {"series": labels_text(name, labels), "values": values}


@dataclass(frozen=True, slots=True)
class CostCase:
    """One promtool test: a sentence, the input series and the expected samples."""

    name: str
    inputs: tuple[dict[str, str], ...]
    expected: tuple[tuple[str, str, float | None], ...]

    def to_test(self) -> dict[str, Any]:
        tests: list[dict[str, Any]] = []
        for record, model, value in self.expected:
            selector = labels_text(record, {"model": model})
            if value is None:
                tests.append({"expr": selector, "eval_time": EVAL, "exp_samples": []})
                continue
            tests.append({"expr": within(selector, value), "eval_time": EVAL,
                          "exp_samples": [{"labels": labels_text("", {"model": model}),
                                           "value": 1}]})
        return {"name": self.name, "interval": format_duration(STEP_S),
                "input_series": [dict(s) for s in self.inputs], "promql_expr_test": tests}


def within(selector: str, value: float) -> str:
    """1 where the series is within RELATIVE_TOLERANCE of `value` (rates carry rounding
    error: promtool 2.42 computes 30.000000000000004 for a counter rising 30 a second)."""
    return f"abs({selector} - {number(value)}) <= bool {number(abs(value) * RELATIVE_TOLERANCE)}"


def prediction_series(cost: Cost, flowing: bool = True) -> list[dict[str, str]]:
    return [_series(metric("predictions_total"),
                    {"model": cost.model, "version": v, "class": c},
                    _counter(rate if flowing else 0))
            for v, c, rate in PREDICTION_RATES]


def _with_decoy(name: str, matchers: Matchers, labels: dict[str, str], match: str,
                other: str) -> list[dict[str, str]]:
    out = [_series(name, {**labels, **matching(matchers)}, match)]
    d = decoy(matchers)
    if d is not None:
        out.append(_series(name, {**labels, **d}, other))
    return out


def cost_series(cost: Cost) -> tuple[list[dict[str, str]], float | None]:
    """OpenCost's series for the model and its expected hourly cost (None: not knowable)."""
    if cost.kind == "per_hour":
        return [], cost.per_hour
    if cost.kind == "opencost_node":
        return (_with_decoy("node_total_hourly_cost", cost.matchers, {},
                            _gauge(NODE_HOURLY), _gauge(100.0)), NODE_HOURLY)
    if cost.kind == "opencost_gpu":
        node = matching(cost.matchers).get("node", "gpu-node-a")
        alloc = _with_decoy("container_gpu_allocation", cost.matchers, {"node": node},
                            _gauge(GPU_ALLOCATION), _gauge(4.0))
        prices = [_series("node_gpu_hourly_cost", {"node": n, "instance": "opencost"},
                          _gauge(p)) for n, p in ((node, GPU_HOURLY), (DECOY, 9.0))]
        return [*alloc, *prices], GPU_ALLOCATION * GPU_HOURLY
    return [], None


def dcgm_series(cost: Cost, energy: bool = True) -> list[dict[str, str]]:
    if not cost.dcgm:
        return []
    gpu = _spare(cost.dcgm, "UUID", "device", "gpu")
    out: list[dict[str, str]] = []
    for i, (util, watts) in enumerate(GPUS):
        tag = {gpu: f"GPU-{i}"}
        out += _with_decoy("DCGM_FI_DEV_GPU_UTIL", cost.dcgm, tag, _gauge(util), _gauge(100))
        out += _with_decoy("DCGM_FI_DEV_POWER_USAGE", cost.dcgm, tag, _gauge(watts),
                           _gauge(700))
        if energy:
            out += _with_decoy("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", cost.dcgm, tag,
                               _counter(watts * 1000), _counter(700_000))
    return out


def triton_series(cost: Cost) -> list[dict[str, str]]:
    if not cost.triton:
        return []
    version = {_spare(cost.triton, "version", "triton_version"): "1"}
    return [
        *_with_decoy("nv_inference_count", cost.triton, version,
                     _counter(TRITON_INFERENCES), _counter(999)),
        *_with_decoy("nv_inference_exec_count", cost.triton, version,
                     _counter(TRITON_EXECUTIONS), _counter(1)),
        *_with_decoy("nv_inference_compute_infer_duration_us", cost.triton, version,
                     _counter(TRITON_COMPUTE_S * 1e6), _counter(1e6)),
    ]


def expected(cost: Cost, flowing: bool = True) -> list[tuple[str, str, float | None]]:
    """Each recording's value at the end, computed in the order the rule computes it."""
    rate = float(sum(r for _, _, r in PREDICTION_RATES)) if flowing else 0.0
    _, hourly = cost_series(cost)
    out: list[tuple[str, str, float | None]] = []
    if hourly is not None:
        out.append((cs.COST_PER_HOUR, cost.model, hourly))
    if rate == 0:
        out.append((cs.COST_PER_MILLION, cost.model, None))
    elif hourly is not None:
        out.append((cs.COST_PER_MILLION, cost.model, hourly / 3600 / rate * 1e6))
    utils = [u for u, _ in GPUS]
    if cost.dcgm:
        out.append((cs.GPU_UTILIZATION, cost.model, sum(utils) / len(utils) / 100))
        watts = sum(w * 1000 for _, w in GPUS) / 1000
        out.append((cs.ENERGY_PER_PREDICTION, cost.model, watts / rate if rate > 0 else None))
    busy = TRITON_COMPUTE_S * 1e6 / 1e6 if cost.triton else sum(utils) / 100
    if cost.dcgm or cost.triton:
        out.append((cs.PREDICTIONS_PER_GPU_SECOND, cost.model, rate / busy))
    if cost.triton:
        out.append((cs.BATCH_SIZE, cost.model, TRITON_INFERENCES / TRITON_EXECUTIONS))
    return out


def cost_cases(cost: Cost) -> list[CostCase]:
    """The cases of one model (see the module docstring)."""
    inputs, hourly = cost_series(cost)
    gpus = [*dcgm_series(cost), *triton_series(cost)]
    what = {"per_hour": f"a fixed {hourly}/h",
            "opencost_gpu": f"OpenCost: {GPU_ALLOCATION:g} GPUs at {GPU_HOURLY}/h",
            "opencost_node": f"OpenCost: a node at {NODE_HOURLY}/h",
            "promql": "its own expression (the cost figures are not asserted)"}[cost.kind]
    cases = []
    if expected(cost):
        cases.append(CostCase(
            f"{cost.model}: {what}, 50 predictions/s, GPUs at 60 % and 40 % drawing 250 W and "
            "150 W, Triton batches of 5: every recording has its value and decoys are left out",
            tuple([*prediction_series(cost), *inputs, *gpus]), tuple(expected(cost))))
    if cost.dcgm:
        cases.append(CostCase(
            f"{cost.model}: without DCGM's energy counter, energy per prediction comes from "
            "mean power",
            tuple([*prediction_series(cost), *dcgm_series(cost, energy=False)]),
            tuple(e for e in expected(cost) if e[0] == cs.ENERGY_PER_PREDICTION)))
    idle = [e for e in expected(cost, flowing=False)
            if e[0] in (cs.COST_PER_MILLION, cs.ENERGY_PER_PREDICTION)]
    if idle:
        cases.append(CostCase(
            f"{cost.model}: no predictions: cost per million and energy per prediction are "
            "absent, not +Inf",
            tuple([*prediction_series(cost, flowing=False), *inputs, *gpus]), tuple(idle)))
    return cases


def cost_test_document(costs: Sequence[Cost], rule_files: Sequence[str]) -> dict[str, Any]:
    """The promtool test document of the cost rule file."""
    return {"rule_files": list(rule_files), "evaluation_interval": format_duration(STEP_S),
            "tests": [case.to_test() for c in costs for case in cost_cases(c)]}
