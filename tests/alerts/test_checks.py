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


def test_the_checkpoint_alert_exists_only_with_checkpointing_configured(example_data):
    on = build_spec(with_slos(example_data))
    assert on.thresholds["checkpoint_failing"].enabled
    data = {**example_data, "state": {"checkpoint_interval_seconds": 10}}
    off = build_spec(with_slos(data))
    assert not off.thresholds["checkpoint_failing"].enabled
    assert CHECK["checkpoint_failing"].alert not in [r.alert for r in threshold_rules(off)]


def test_the_checkpoint_alert_allows_three_intervals_without_a_success_and_pages(example_data):
    data = {**example_data, "state": {"checkpoint_dir": "/tmp/x",
                                      "checkpoint_interval_seconds": 20}}
    c = build_spec(with_slos(data)).thresholds["checkpoint_failing"]
    assert (c.stale_s, c.severity, c.range_s, c.for_s) == (60.0, "page", 300, 300)
    rule = next(r for r in threshold_rules(build_spec(with_slos(data)))
                if r.alert == "VisionmonCheckpointFailing")
    assert "increase(visionmon_checkpoint_failures_total[5m])) > 0" in rule.expr
    assert "visionmon_last_checkpoint_timestamp_seconds < 60" in rule.expr
    c = build_spec(with_slos(data, thresholds={"checkpoint_failing": {"missed_intervals": 5}})
                   ).thresholds["checkpoint_failing"]
    assert c.stale_s == 100.0


def test_the_calibration_alert_reads_only_the_ece_against_labels(example):
    spec = build_spec(example)
    rule = next(r for r in threshold_rules(spec) if r.alert == CHECK["ece"].alert)
    assert 'source="labels"' in rule.expr
    case = next(c for c in threshold_cases(spec, step_seconds(spec))
                if c.rule.alert == rule.alert)
    reference = [i for i in case.instances if i.labels.get("source") == "reference"]
    assert len(reference) == 1 and not any(v is not None for v in reference[0].values)
    assert "reference" in case.name


def test_the_drift_case_moves_exactly_the_daemons_input_features():
    """The promtool case's camera change moves the 20 input features the daemon measures."""
    from alerts.threshold_cases import CAMERA_FEATURES
    from monitor.baseline import EMBEDDING_COMPONENTS
    from monitor.scored import INPUT_FEATURES

    measured = (*INPUT_FEATURES, *(f"embedding_pc{i + 1}" for i in range(EMBEDDING_COMPONENTS)))
    assert measured == CAMERA_FEATURES
    assert len(CAMERA_FEATURES) == 20
