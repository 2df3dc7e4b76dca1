"""The `cost:` section and its recording rules: config errors that name the key, the
expression of each cost source, and promtool proving the generated tests of every form."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from alerts.checks import CHECKS
from alerts.cost_cases import sample_value
from alerts.cost_rules import cost_group, per_hour_expr
from alerts.generate import write_all
from alerts.scenario import ScenarioError
from alerts.spec import build_spec
from monitor import cost_series as cs
from monitor.config import ConfigError, LoadedConfig, parse_config, resolve

PROMTOOL = shutil.which("promtool")


def with_cost(data: dict[str, Any], *models: dict[str, Any]) -> LoadedConfig:
    """The example config with `cost.models` replaced."""
    d = copy.deepcopy(data)
    d["cost"] = {"models": list(models)}
    return resolve(parse_config(d, "test.yaml"), "test.yaml")


BAD = [
    ("two cost sources for one model", {"model": "digits", "per_hour": 2, "promql": "vector(1)"},
     "cost.models.0: Value error, give exactly one of per_hour"),
    ("no cost source", {"model": "digits"}, "got none"),
    ("a negative hourly cost", {"model": "digits", "per_hour": -1},
     "cost.models.0.per_hour: Input should be greater than 0"),
    ("OpenCost without matchers", {"model": "digits", "opencost": {"matchers": {}}},
     "cost.models.0.opencost.matchers: Value error, give at least one label matcher"),
    ("an OpenCost allocation that does not exist",
     {"model": "digits", "opencost": {"allocation": "cluster", "matchers": {"node": "a"}}},
     "cost.models.0.opencost.allocation: Input should be 'gpu' or 'node'"),
    ("a matcher on something that is not a label name",
     {"model": "digits", "per_hour": 1, "gpu": {"dcgm": {"pod-name": "x"}}},
     "cost.models.0.gpu.dcgm: Value error, 'pod-name' is not a Prometheus label name"),
    ("a matcher that is not a regular expression",
     {"model": "digits", "per_hour": 1, "gpu": {"triton": {"model": "digits("}}},
     "cost.models.0.gpu.triton: Value error, label 'model': 'digits(' is not a regular"),
    ("a gpu section without DCGM or Triton", {"model": "digits", "per_hour": 1, "gpu": {}},
     "cost.models.0.gpu: Value error, gpu needs dcgm or triton"),
    ("an expression with an unclosed bracket",
     {"model": "digits", "promql": "sum(node_total_hourly_cost{node='a'}"},
     "cost.models.0.promql: Value error, unclosed '('"),
    ("an unknown key", {"model": "digits", "per_hour": 1, "currency": "EUR"},
     "cost.models.0.currency: unknown key"),
]


@pytest.mark.parametrize(("sentence", "entry", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_cost_entry_is_refused_naming_its_key(example_data, sentence, entry, message):
    with pytest.raises(ConfigError) as err:
        with_cost(example_data, entry)
    assert message in str(err.value)


def test_an_unknown_model_and_a_model_given_twice_are_refused(example_data):
    with pytest.raises(ConfigError, match=r"cost.models.0.model: unknown model 'cats'; "
                                          r"configured models are \['digits'\]"):
        with_cost(example_data, {"model": "cats", "per_hour": 1})
    with pytest.raises(ConfigError, match=r"models \['digits'\] appear more than once"):
        with_cost(example_data, {"model": "digits", "per_hour": 1},
                  {"model": "digits", "per_hour": 2})


HOURLY = [
    ("a fixed figure is a constant vector", {"per_hour": 2.5}, ["vector(2.5)"]),
    ("OpenCost nodes sum the selected nodes' total price",
     {"opencost": {"allocation": "node", "matchers": {"node": "gpu-1"}}},
     ['sum(node_total_hourly_cost{node=~"gpu-1"})']),
    ("OpenCost GPUs join each allocation to its node's GPU price",
     {"opencost": {"matchers": {"namespace": "serving"}}},
     ['container_gpu_allocation{namespace=~"serving"}', "* on (node) group_left ()",
      "max by (node) (node_gpu_hourly_cost)"]),
    ("an expression of the user's own is summed to one series",
     {"promql": 'my_cost{team="vision"}'}, ['sum(\n  my_cost{team="vision"}\n)']),
]


@pytest.mark.parametrize(("sentence", "source", "fragments"), HOURLY,
                         ids=[h[0] for h in HOURLY])
def test_each_cost_source_has_its_hourly_expression(example_data, sentence, source, fragments):
    cost = build_spec(with_cost(example_data, {"model": "digits", **source})).costs[0]
    expr = per_hour_expr(cost)
    for fragment in fragments:
        assert fragment in expr


RECORDS = [
    ("a cost alone records the hourly cost and the cost per million", {},
     [cs.COST_PER_HOUR, cs.COST_PER_MILLION]),
    ("DCGM adds utilisation, energy and predictions per GPU-second",
     {"gpu": {"dcgm": {"Hostname": "gpu-1"}}},
     [cs.COST_PER_HOUR, cs.COST_PER_MILLION, cs.GPU_UTILIZATION, cs.ENERGY_PER_PREDICTION,
      cs.PREDICTIONS_PER_GPU_SECOND]),
    ("Triton alone adds predictions per GPU-second and the batch size",
     {"gpu": {"triton": {"model": "digits"}}},
     [cs.COST_PER_HOUR, cs.COST_PER_MILLION, cs.PREDICTIONS_PER_GPU_SECOND, cs.BATCH_SIZE]),
]


@pytest.mark.parametrize(("sentence", "extra", "records"), RECORDS, ids=[r[0] for r in RECORDS])
def test_the_recordings_follow_the_gpu_sources(example_data, sentence, extra, records):
    spec = build_spec(with_cost(example_data, {"model": "digits", "per_hour": 1, **extra}))
    rules = cost_group(spec.costs).rules
    assert [r.record for r in rules] == records  # type: ignore[union-attr]
    assert all(dict(r.labels) == {"model": "digits"} for r in rules)  # type: ignore[union-attr]


def test_predictions_per_gpu_second_read_triton_compute_time_before_dcgm(example):
    rules = {r.record: r.expr for r in cost_group(build_spec(example).costs).rules}  # type: ignore[union-attr]
    assert "nv_inference_compute_infer_duration_us" in rules[cs.PREDICTIONS_PER_GPU_SECOND]
    assert "DCGM_FI_DEV_GPU_UTIL" not in rules[cs.PREDICTIONS_PER_GPU_SECOND]


def test_a_config_without_cost_writes_no_cost_files(example_data, tmp_path):
    d = copy.deepcopy(example_data)
    d.pop("cost")
    write_all(resolve(parse_config(d, "test.yaml"), "test.yaml"), tmp_path)
    assert not list(tmp_path.glob(f"{cs.COST_GROUP}*"))


VALUES = [
    ("a plain name is itself", "serving", "serving"),
    ("a prefix pattern drops its wildcard", "triton-.*", "triton-"),
    ("a one-or-more wildcard becomes a character", "gpu-.+", "gpu-x"),
    ("an escaped dot is a dot", r"node\.a", "node.a"),
    ("an alternation takes its first branch", "(a|b)", "a"),
]


@pytest.mark.parametrize(("sentence", "pattern", "value"), VALUES, ids=[v[0] for v in VALUES])
def test_a_test_series_label_is_found_from_its_matcher(sentence, pattern, value):
    assert sample_value(pattern) == value


def test_a_matcher_too_unusual_for_a_test_series_stops_generation_naming_the_section(
        example_data, tmp_path):
    with pytest.raises(ScenarioError, match=r"cannot find a label value that '\[0-9\]\{3\}'"):
        sample_value("[0-9]{3}")
    loaded = with_cost(example_data, {"model": "digits", "per_hour": 1,
                                      "gpu": {"dcgm": {"gpu": "[0-9]{3}"}}})
    with pytest.raises(ConfigError, match="cost: cannot build promtool tests"):
        write_all(loaded, tmp_path)


FORMS = [
    ("a fixed figure with DCGM", {"per_hour": 9, "gpu": {"dcgm": {"Hostname": "gpu-.*"}}}),
    ("OpenCost nodes with Triton",
     {"opencost": {"allocation": "node", "matchers": {"node": "gpu-node-1"}},
      "gpu": {"triton": {"model": "digits_onnx"}}}),
    ("OpenCost GPUs selected by their node", {"opencost": {"matchers": {"node": "gpu-2"}}}),
    ("the user's own expression", {"promql": "sum(my_cost_per_hour)"}),
]


@pytest.mark.slow
@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
@pytest.mark.parametrize(("sentence", "source"), FORMS, ids=[f[0] for f in FORMS])
def test_the_generated_cost_tests_pass_for_every_form(example_data, tmp_path: Path, sentence,
                                                      source):
    write_all(with_cost(example_data, {"model": "digits", **source}), tmp_path)
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "test", "rules", f"{cs.COST_GROUP}.test.yaml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_cost_section_alone_is_something_to_generate(example_data, tmp_path):
    d = copy.deepcopy(example_data)
    d["slos"] = {"objectives": [], "thresholds": {k.key: {"enabled": False} for k in CHECKS}}
    written = write_all(resolve(parse_config(d, "test.yaml"), "test.yaml"), tmp_path)
    assert sorted(p.name for p in written if p.suffix == ".yml") == [f"{cs.COST_GROUP}.yml"]
