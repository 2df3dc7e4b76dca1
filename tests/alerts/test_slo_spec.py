"""The `slos:` section: what it accepts, and errors that name the key path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from alerts.checks import CHECKS
from alerts.spec import build_spec
from monitor.config import ConfigError, parse_config, resolve
from monitor.slo_spec import DEFAULT_TIERS, SloSpec
from tests.alerts.conftest import with_slos

AVAIL = {"name": "availability", "model": "digits", "kind": "availability", "target": 0.999}

REFUSED: list[tuple[str, dict[str, Any], list[str]]] = [
    ("a latency threshold between bucket bounds names the nearest bounds",
     {"objectives": [{**AVAIL, "name": "lat", "kind": "latency", "target": 0.99,
                      "latency_threshold_seconds": 0.35}]},
     ["slos.objectives.0.latency_threshold_seconds", "nearest bounds are 0.3 and 0.4"]),
    ("a latency threshold above the last bucket names the largest bound",
     {"objectives": [{**AVAIL, "name": "lat", "kind": "latency", "target": 0.99,
                      "latency_threshold_seconds": 30}]},
     ["latency_threshold_seconds", "largest bound is 10.0"]),
    ("a latency objective without a threshold lists the bucket bounds",
     {"objectives": [{**AVAIL, "kind": "latency"}]},
     ["slos.objectives.0", "needs latency_threshold_seconds", "0.25"]),
    ("a threshold on an availability objective is refused",
     {"objectives": [{**AVAIL, "latency_threshold_seconds": 0.25}]},
     ["only valid for kind latency"]),
    ("a quality-window objective must say which objective label it reads",
     {"objectives": [{**AVAIL, "kind": "quality_windows"}]},
     ["needs quality_objective", "shadow_agreement"]),
    ("an unknown quality objective is refused",
     {"objectives": [{**AVAIL, "kind": "quality_windows", "quality_objective": "vibes"}]},
     ["slos.objectives.0.quality_objective"]),
    ("min_labeled_events only applies to accuracy",
     {"objectives": [{**AVAIL, "min_labeled_events": 5}]},
     ["min_labeled_events is only valid for kinds accuracy, class_recall, class_precision, "
      "false_accept_rate"]),
    ("a class on a kind that judges no class is refused",
     {"objectives": [{**AVAIL, "class": "seven"}]},
     ["slos.objectives.0", "class is only valid for kinds class_recall, class_precision"]),
    ("a class the model does not have is refused with the valid classes",
     {"objectives": [{**AVAIL, "kind": "class_recall", "class": "dent"}]},
     ["slos.objectives.0.class", "'dent' is not a class of model 'digits'", "valid classes: zero"]),
    ("a target of 100 % is refused",
     {"objectives": [{**AVAIL, "target": 1.0}]}, ["slos.objectives.0.target"]),
    ("a target given in percent is refused",
     {"objectives": [{**AVAIL, "target": 99.9}]}, ["slos.objectives.0.target"]),
    ("an objective name with spaces is refused",
     {"objectives": [{**AVAIL, "name": "my slo"}]}, ["slos.objectives.0.name"]),
    ("two objectives with one name for one model are refused",
     {"objectives": [AVAIL, AVAIL]}, ["objectives.1", "already defined at objectives.0"]),
    ("an unknown model is refused with the configured models",
     {"objectives": [{**AVAIL, "model": "cats"}]},
     ["slos.objectives.0.model", "unknown model 'cats'", "digits"]),
    ("a URL template with an unknown placeholder lists the valid ones",
     {"runbook_url": "https://wiki/{team}/{alert}"},
     ["slos.runbook_url", "['team']", "{alert}, {model}, {slo}"]),
    ("a tier whose short window is not shorter than its long one is refused",
     {"windows": [{"severity": "page", "long": "5m", "short": "1h", "factor": 14.4}]},
     ["slos.windows.0", "must be shorter than long window"]),
    ("a tier window as long as the period is refused",
     {"period": "1d", "windows": [{"severity": "page", "long": "1d", "short": "1h",
                                   "factor": 2}]},
     ["windows.0.long", "shorter than the SLO period 1d"]),
    ("a tier with an unknown severity is refused",
     {"windows": [{"severity": "critical", "long": "1h", "short": "5m", "factor": 14.4}]},
     ["slos.windows.0.severity"]),
    ("a period that is not a duration is refused",
     {"period": "a month"}, ["slos.period", "not a duration"]),
    ("an unknown key in a threshold check is refused",
     {"thresholds": {"ece": {"maximum": 0.2}}}, ["slos.thresholds.ece.maximum", "unknown key"]),
    ("an unknown spec version is refused",
     {"version": 2}, ["slos.version"]),
]


@pytest.mark.parametrize(("sentence", "patch", "fragments"), REFUSED,
                         ids=[r[0] for r in REFUSED])
def test_a_bad_slos_section_is_refused_with_its_key_path(example_data, sentence, patch,
                                                        fragments):
    with pytest.raises(ConfigError) as err:
        with_slos(example_data, **patch)
    text = str(err.value)
    assert text.startswith("test.yaml"), text
    for fragment in fragments:
        assert fragment in text, f"{sentence}: {fragment!r} not in:\n{text}"


def test_a_false_accept_objective_needs_the_models_acceptance_rule(example_data):
    data = copy.deepcopy(example_data)
    del data["models"][0]["accept"]
    with pytest.raises(ConfigError) as err:
        with_slos(data)
    assert ("slos.objectives.6.kind: false_accept_rate needs an acceptance rule on model "
            "'digits' (models[].accept: {threshold: ...}); models with one: none") in str(err.value)


def test_a_threshold_window_must_be_a_configured_window(example_data):
    loaded = with_slos(example_data, thresholds={"ece": {"window": "2h"}})
    with pytest.raises(ConfigError) as err:
        build_spec(loaded)
    assert "slos.thresholds.ece.window" in str(err.value)
    assert "['5m', '1h', '1d']" in str(err.value)


def test_the_agreement_test_takes_the_agreement_checks_window_unless_given(example_data):
    """A config written before the check existed, whose windows lack 1h, still loads."""
    data = copy.deepcopy(example_data)
    data["windows"]["sizes"] = ["5m", "1d"]
    data["slos"]["thresholds"] = {k: {**v, "window": "1d"} if "window" in v else v
                                  for k, v in data["slos"]["thresholds"].items()
                                  if k != "shadow_agreement_drop"}
    th = build_spec(resolve(parse_config(data))).thresholds
    assert th["shadow_agreement"].window == th["shadow_agreement_drop"].window == "1d"
    assert th["shadow_agreement_drop"].bound == 0.001
    explicit = with_slos(example_data, thresholds={
        "shadow_agreement_drop": {"window": "5m", "alpha": 0.0001}})
    th = build_spec(explicit).thresholds
    assert th["shadow_agreement_drop"].window == "5m"
    assert th["shadow_agreement_drop"].bound == 0.0001


def test_a_config_without_slos_gets_threshold_alerts_with_defaults(example_data):
    data = copy.deepcopy(example_data)
    del data["slos"]
    spec = build_spec(resolve(parse_config(data)))
    assert spec.slos == ()
    assert spec.thresholds["kafka_disconnected"].enabled
    assert spec.thresholds["ece"].bound == data["quality"]["max_ece"]


def test_the_default_tiers_are_the_sre_workbook_table():
    assert [(t.severity, t.long, t.short, t.factor) for t in SloSpec().burn_tiers()] == [
        ("page", "1h", "5m", 14.4), ("page", "6h", "30m", 6.0),
        ("ticket", "1d", "2h", 3.0), ("ticket", "3d", "6h", 1.0)]
    assert SloSpec().burn_tiers() == DEFAULT_TIERS


def test_the_example_config_declares_every_kind_and_every_threshold_check(example):
    spec = build_spec(example)
    assert {s.kind for s in spec.slos} == {"availability", "latency", "accuracy",
                                           "quality_windows", "class_recall",
                                           "class_precision", "false_accept_rate"}
    assert [c.key for c in spec.thresholds.enabled()] == [d.key for d in CHECKS]
