"""The threshold checks' table: one row per config check, each read by the spec, the rules
and the promtool tests."""

from __future__ import annotations

import pytest

from alerts.checks import CHECK, CHECKS, threshold_cases, threshold_rules
from alerts.promtool_tests import step_seconds
from alerts.spec import build_spec
from alerts.threshold_cases import COMPARE
from monitor.catalog import metric
from monitor.slo_spec import ThresholdChecks
from tests.alerts.conftest import with_slos


def test_the_table_has_one_row_per_config_check_in_the_config_order():
    rows = [d.key for d in CHECKS]
    fields = list(ThresholdChecks.model_fields)
    missing = [k for k in fields if k not in rows]
    extra = [k for k in rows if k not in fields]
    assert not missing, f"slos.thresholds.{missing} has no row in alerts/checks.py CHECKS"
    assert not extra, f"rows {extra} of alerts/checks.py have no field in ThresholdChecks"
    assert rows == fields


@pytest.mark.parametrize("row", CHECKS, ids=[d.key for d in CHECKS])
def test_each_row_names_a_catalog_metric_a_comparison_and_a_distinct_alert(row):
    assert metric(row.metric)
    assert row.comparison in COMPARE
    assert row.alert.startswith("Visionmon")
    assert [d.alert for d in CHECKS].count(row.alert) == 1


def test_the_defaults_come_from_the_config_models():
    assert CHECK["kafka_disconnected"].defaults().severity == "page"
    assert CHECK["ece"].defaults().for_ == "1h"
    assert CHECK["drift"].defaults().window == "1h"


def test_every_enabled_row_gets_its_rule_and_its_promtool_case_in_table_order(example):
    spec = build_spec(example)
    rows = [CHECK[c.key] for c in spec.thresholds.enabled()]
    rules = threshold_rules(spec)
    assert [r.alert for r in rules] == [d.alert for d in rows]
    assert [dict(r.labels)["check"] for r in rules] == [d.key for d in rows]
    cases = threshold_cases(spec, step_seconds(spec))
    assert [c.rule.alert for c in cases] == [d.alert for d in rows]
    for case, row in zip(cases, rows, strict=True):
        assert any(s.startswith(metric(row.metric)) for s in case.series), row.key


def test_a_disabled_check_has_neither_rule_nor_case(example_data):
    spec = build_spec(with_slos(example_data, thresholds={"ece": {"enabled": False}}))
    assert "ece" not in [dict(r.labels)["check"] for r in threshold_rules(spec)]
    assert CHECK["ece"].alert not in [c.rule.alert for c in
                                      threshold_cases(spec, step_seconds(spec))]
