"""`visionmon alerts generate`: config -> rule files, promtool tests, Alertmanager example.

The pipeline is `load_config` -> `build_spec` (internal model, `alerts.model`) -> pure
generators (`rules`; the checks table `checks` with `thresholds` and `threshold_cases`;
`promtool_tests`; `alertmanager`) -> `writer`. Output layout:

    visionmon-slo-<model>-<slo>.yml         one rule group per SLO
    visionmon-slo-<model>-<slo>.test.yaml   its promtool unit tests
    visionmon-thresholds.yml                the threshold alerts
    visionmon-thresholds.test.yaml          their promtool unit tests
    visionmon-cost.yml                      cost and GPU recordings (with a `cost:` section)
    visionmon-cost.test.yaml                their promtool unit tests
    visionmon-rollouts.yml                  declared rollouts, when slos.rollouts has any
    alertmanager.yaml                       example routing (page / ticket)

Rule files alone end in `.yml`, so `promtool check rules DIR/*.yml` checks exactly the
rules and `promtool test rules DIR/*.test.yaml` runs every test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts import alertmanager, names
from alerts.checks import threshold_group
from alerts.cost_cases import cost_test_document
from alerts.cost_rules import cost_group
from alerts.model import AlertSpec
from alerts.promtool_tests import slo_test_document, threshold_test_document
from alerts.rules import rollout_group, rule_file, slo_group
from alerts.scenario import ScenarioError
from alerts.spec import build_spec
from alerts.writer import write_yaml
from monitor.config import ConfigError, LoadedConfig
from monitor.cost_series import COST_GROUP


@dataclass(frozen=True, slots=True)
class Output:
    """One file to write: its name in the output directory, document and description."""

    name: str
    document: dict[str, Any]
    what: str


def outputs(spec: AlertSpec) -> tuple[Output, ...]:
    """Every generated document, in a stable order (pure): each rule file followed by its
    promtool tests, then the Alertmanager example."""
    out: list[Output] = []
    rules = {o.name: o for o in rule_outputs(spec)}
    for slo in spec.slos:
        name = slo_group(slo, spec.runbook_url, spec.dashboard_url).name
        out.append(rules[name + names.RULES_SUFFIX])
        try:
            tests = slo_test_document(spec, slo, [name + names.RULES_SUFFIX])
        except ScenarioError as err:
            raise ConfigError(f"{spec.source}: slos: cannot build promtool tests: {err}") from None
        out.append(Output(name + names.TESTS_SUFFIX, tests,
                          f"promtool unit tests of {name}{names.RULES_SUFFIX}."))
    threshold_file = names.THRESHOLD_GROUP + names.RULES_SUFFIX
    if threshold_file in rules:
        out.append(rules[threshold_file])
        out.append(Output(names.THRESHOLD_GROUP + names.TESTS_SUFFIX,
                          threshold_test_document(spec, [threshold_file]),
                          f"promtool unit tests of {threshold_file}."))
    cost_file = COST_GROUP + names.RULES_SUFFIX
    if cost_file in rules:
        out.append(rules[cost_file])
        try:
            tests = cost_test_document(spec.costs, [cost_file])
        except ScenarioError as err:
            raise ConfigError(f"{spec.source}: cost: cannot build promtool tests: {err}") from None
        out.append(Output(COST_GROUP + names.TESTS_SUFFIX, tests,
                          f"promtool unit tests of {cost_file}."))
    rollout_file = names.ROLLOUT_GROUP + names.RULES_SUFFIX
    if rollout_file in rules:
        out.append(rules[rollout_file])
    out.append(Output(names.ALERTMANAGER_FILE, alertmanager.config(),
                      "Example Alertmanager routing for the generated alerts."))
    return tuple(out)


def generate(loaded: LoadedConfig) -> tuple[Output, ...]:
    """Resolve the config and build every document; raises ConfigError on bad specs."""
    spec = build_spec(loaded)
    if not spec.slos and not threshold_group(spec).rules and not spec.costs:
        raise ConfigError(f"{loaded.path}: slos: nothing to generate: no objectives, every "
                          "threshold check disabled and no cost: section")
    return outputs(spec)


def rule_outputs(spec: AlertSpec) -> tuple[Output, ...]:
    """Only the rule files (e.g. for a Prometheus started by a test)."""
    outs: list[Output] = []
    for slo in spec.slos:
        group = slo_group(slo, spec.runbook_url, spec.dashboard_url)
        outs.append(Output(group.name + names.RULES_SUFFIX, rule_file([group]),
                           f"Recording and burn-rate alerting rules of the {slo.title} SLO."))
    group = threshold_group(spec)
    if group.rules:
        outs.append(Output(group.name + names.RULES_SUFFIX, rule_file([group]),
                           "Threshold alerts (not SLOs)."))
    if spec.costs:
        group = cost_group(spec.costs)
        outs.append(Output(group.name + names.RULES_SUFFIX, rule_file([group]),
                           "Cost and GPU recording rules (the config's `cost:` section)."))
    if spec.rollouts:
        outs.append(Output(names.ROLLOUT_GROUP + names.RULES_SUFFIX,
                           rule_file([rollout_group(spec.rollouts)]),
                           "Declared rollouts (slos.rollouts): 1 while each lasts."))
    return tuple(outs)


def write_rules(loaded: LoadedConfig, out_dir: str | Path) -> list[Path]:
    """Write only the rule files; returns their paths."""
    source = Path(loaded.path).name
    return [write_yaml(Path(out_dir) / o.name, o.document, source, o.what)
            for o in rule_outputs(build_spec(loaded))]


def write_all(loaded: LoadedConfig, out_dir: str | Path) -> list[Path]:
    """Generate and write every file into `out_dir`; returns the written paths."""
    source = Path(loaded.path).name
    return [write_yaml(Path(out_dir) / o.name, o.document, source, o.what)
            for o in generate(loaded)]
