"""The generated rules: catalog names only, expected shapes, golden files, the writer."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from alerts import names
from alerts.checks import CHECK, CHECKS, threshold_rules
from alerts.generate import generate, outputs
from alerts.model import alternation
from alerts.rules import (
    AlertingRule,
    RecordingRule,
    burn_alert_annotations,
    error_ratio_expr,
    le_label,
    rollout_alerts,
    rollout_group,
    slo_group,
)
from alerts.spec import build_spec
from alerts.templates import (
    Label,
    Query,
    QueryList,
    Text,
    Value,
    go_format,
    humanize_duration,
    render,
    to_go,
)
from alerts.writer import EmptyOutputError, write_yaml
from collectors.exporter import bucket_label
from monitor.catalog import CATALOG, LATENCY_BUCKETS
from monitor.config import ConfigError
from monitor.cost_series import EXTERNAL_NAMES
from monitor.cost_series import RECORDING_PREFIX as COST_PREFIX
from tests.alerts.conftest import ROOT, with_slos

GOLDEN = ROOT / "alerts" / "generated"

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(r"(?<![0-9.A-Za-z_:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "Inf", "NaN", "inf", "nan"}
_TEMPLATE_QUERIES = re.compile(r'(?:query|printf) "([^"]*)"')


def series_names(expr: str) -> set[str]:
    """Metric and recording names an expression reads (functions, keywords, label names,
    label values and durations removed)."""
    text = _STRINGS.sub(" ", expr)
    text = _BRACES.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name, call in _TOKEN.findall(text) if not call and name not in _KEYWORDS}


def rule_files(directory: Path) -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted(directory.glob("*.yml"))]


def all_expressions(directory: Path) -> list[str]:
    """Every rule expression and every query inside an annotation template."""
    out = []
    for doc in rule_files(directory):
        for group in doc["groups"]:
            for rule in group["rules"]:
                out.append(rule["expr"])
                for text in rule.get("annotations", {}).values():
                    out += [q.replace("%q", '"x"') for q in _TEMPLATE_QUERIES.findall(text)
                            if "{" in q or "(" in q]
    return out


PARSED = [
    ("a ratio of sums by model", 'sum by (model) (rate(a_total{x="y"}[5m])) / b',
     {"a_total", "b"}),
    ("recording names keep their colons", "slo:sli_error:ratio_rate1h{slo='x'} > (14.4 * 0.001)",
     {"slo:sli_error:ratio_rate1h"}),
    ("functions, keywords and numbers are not names",
     "time() - max(x) and on (model) deriv(y[10m]) > 1e-05", {"x", "y"}),
    ("label values that look like names are ignored", 'a{le="0.25",status!="ok"}', {"a"}),
]


@pytest.mark.parametrize(("sentence", "expr", "expected"), PARSED, ids=[p[0] for p in PARSED])
def test_the_expression_scanner_finds_exactly_the_series(sentence, expr, expected):
    assert series_names(expr) == expected


def test_every_series_named_in_a_generated_expression_is_in_the_catalog(generated):
    defined = {r["record"] for doc in rule_files(generated) for g in doc["groups"]
               for r in g["rules"] if "record" in r}
    exported = CATALOG.series_names()
    seen: set[str] = set()
    for expr in all_expressions(generated):
        for name in series_names(expr):
            seen.add(name)
            if name.startswith((*names.RECORDING_PREFIX, COST_PREFIX)):
                assert name in defined, f"{name} is read but never recorded: {expr}"
            elif name in EXTERNAL_NAMES:
                continue  # OpenCost, DCGM and Triton series (monitor.cost_series.EXTERNAL)
            else:
                assert name in exported, f"{name} is not in the metric catalog: {expr}"
    assert {"visionmon_requests_total", "visionmon_request_latency_seconds_bucket",
            "visionmon_labeled_predictions_total", "visionmon_eval_windows_good_total",
            "visionmon_drift_psi", "visionmon_kafka_connected",
            "visionmon_last_event_timestamp_seconds"} <= seen


def test_the_latency_le_label_is_written_as_the_exporter_writes_it():
    for bound in LATENCY_BUCKETS:
        assert le_label(bound) == bucket_label(bound)


def test_the_example_produces_a_group_per_slo_with_every_window_and_meta_recording(example):
    spec = build_spec(example)
    group = slo_group(spec.slos[0], spec.runbook_url, spec.dashboard_url)
    records = [r.record for r in group.rules if isinstance(r, RecordingRule)]
    windows = ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
    assert records[:8] == [f"slo:sli_error:ratio_rate{w}" for w in windows]
    assert records[8:] == [names.OBJECTIVE, names.ERROR_BUDGET, names.TIME_PERIOD_DAYS,
                           names.CURRENT_BURN_RATE, names.PERIOD_BURN_RATE,
                           names.PERIOD_BUDGET_REMAINING]
    alerts = [r for r in group.rules if isinstance(r, AlertingRule)]
    # the workbook's four tiers, then the rollout tier
    assert [dict(a.labels)["burn_rate"] for a in alerts] == ["14.4", "6", "3", "1", "4"]
    assert [dict(a.labels)["severity"] for a in alerts] == ["page", "page", "ticket", "ticket",
                                                            "page"]
    assert all(a.for_s == 0 for a in alerts)
    assert "(14.4 * 0.001)" in alerts[0].expr
    assert dict(alerts[4].labels)["tier"] == names.ROLLOUT_TIER_LABEL


def test_the_rollout_tier_pages_per_version_only_while_a_declared_rollout_lasts(example):
    spec = build_spec(example)
    kinds = {s.kind: s for s in spec.slos}
    assert all(kinds[k].rollout_tier is not None for k in ("availability", "latency", "accuracy"))
    assert all(kinds[k].rollout_tier is None
               for k in ("quality_windows", "class_recall", "class_precision"))
    alert = rollout_alerts(kinds["availability"], "", "")[0]
    assert 'sum by (model, version) (rate(visionmon_requests_total{model="digits"}[15m]))' \
        in alert.expr
    assert "> (4 * 0.001)" in alert.expr
    assert alert.expr.rstrip().endswith(f"and on (model, version)\n  {names.ROLLOUT_ACTIVE}")
    (record,) = rollout_group(spec.rollouts).rules
    assert isinstance(record, RecordingRule) and record.record == names.ROLLOUT_ACTIVE
    # 2026-12-07T09:00:00Z to 13:00:00Z, as in examples/visionmon.yaml
    assert record.expr == ("vector(1) and on () (vector(time()) >= 1796634000 "
                           "< 1796648400)")
    assert dict(record.labels) == {"model": "digits", "version": "v2"}


def test_drift_and_agreement_tickets_are_held_back_during_a_rollout_and_pages_never(example):
    rules = {r.alert: r for r in threshold_rules(build_spec(example))}
    held = {a for a, r in rules.items() if names.ROLLOUT_ACTIVE in r.expr}
    assert held == {CHECK[k].alert for k in ("drift", "shadow_agreement",
                                             "shadow_agreement_drop")}
    assert all(dict(rules[a].labels)["severity"] == "ticket" for a in held)


def test_a_rollout_of_an_unknown_model_or_ending_before_it_starts_is_refused(example_data):
    rollout = {"model": "cats", "version": "v2", "start": "2026-12-07T09:00:00Z",
               "end": "2026-12-07T13:00:00Z"}
    with pytest.raises(ConfigError, match=r"slos.rollouts.0.model: unknown model 'cats'"):
        with_slos(example_data, rollouts=[rollout])
    with pytest.raises(ConfigError, match=r"slos.rollouts.0.*must be after start"):
        with_slos(example_data, rollouts=[{**rollout, "model": "digits",
                                          "end": "2026-12-07T08:00:00Z"}])
    with pytest.raises(ConfigError, match=r"rollouts.1: overlaps rollouts.0 of digits v2"):
        later = {**rollout, "model": "digits", "start": "2026-12-07T12:00:00Z",
                 "end": "2026-12-07T14:00:00Z"}
        with_slos(example_data, rollouts=[{**rollout, "model": "digits"}, later])
    with pytest.raises(ConfigError, match=r"slos.rollouts.0.start"):
        with_slos(example_data, rollouts=[{**rollout, "model": "digits",
                                          "start": "2026-12-07T09:00:00"}])


SLI_SHAPES = [
    ("availability counts every status but ok as bad", 0,
     ['status!="ok"', "sum by (model) (rate(visionmon_requests_total{model=\"digits\"}[1h]))"]),
    ("latency subtracts the bucket at the threshold from the count", 1,
     ["visionmon_request_latency_seconds_count", 'le="0.25"', "-"]),
    ("accuracy counts labels whose outcome is not correct", 2,
     ['outcome!="correct"', "visionmon_labeled_predictions_total"]),
    ("quality windows subtract good slices of its objective from all slices", 3,
     ['visionmon_eval_windows_good_total{model="digits",objective="accuracy"}']),
    ("false accepts divide false_accept outcomes, or 0 without any, by every decision", 6,
     ['visionmon_acceptance_decisions_total{model="digits",outcome="false_accept"}',
      '  or\n  0 * sum by (model) (rate(visionmon_acceptance_decisions_total{model="digits"}']),
]


@pytest.mark.parametrize(("sentence", "index", "fragments"), SLI_SHAPES,
                         ids=[s[0] for s in SLI_SHAPES])
def test_each_sli_kind_has_its_error_ratio(example, sentence, index, fragments):
    expr = error_ratio_expr(build_spec(example).slos[index], 3600)
    for fragment in fragments:
        assert fragment in expr


def test_a_per_version_slo_filters_and_groups_by_version(example_data):
    loaded = with_slos(example_data, objectives=[
        {"name": "availability-v2", "model": "digits", "version": "v2",
         "kind": "availability", "target": 0.999}])
    slo = build_spec(loaded).slos[0]
    expr = error_ratio_expr(slo, 300)
    assert 'version="v2"' in expr and "sum by (model, version)" in expr


def test_the_accuracy_alerts_carry_the_minimum_volume_guard(example):
    slo = build_spec(example).slos[2]
    group = slo_group(slo, "", "")
    for alert in (r for r in group.rules if isinstance(r, AlertingRule)
                  and dict(r.labels).get("tier") != names.ROLLOUT_TIER_LABEL):
        assert "and on (model)" in alert.expr
        assert "increase(visionmon_labeled_predictions_total" in alert.expr
        assert alert.expr.rstrip().endswith(">= 100")


def test_a_class_objective_without_class_judges_each_high_risk_class_on_its_own(example_data):
    data = copy.deepcopy(example_data)
    data["models"][0]["high_risk_classes"] = ["seven", "nine"]
    loaded = with_slos(data, objectives=[
        {"name": "recall", "model": "digits", "kind": "class_recall", "target": 0.95}])
    slo = build_spec(loaded).slos[0]
    assert slo.classes == ("seven", "nine") and slo.min_volume == 100
    expr = error_ratio_expr(slo, 300)
    assert 'visionmon_labels_total{model="digits",class=~"seven|nine",outcome!="correct"}' in expr
    assert "sum by (model, class)" in expr
    alerts = [r for r in slo_group(slo, "", "").rules if isinstance(r, AlertingRule)]
    assert [dict(a.labels)["severity"] for a in alerts] == ["page", "ticket", "ticket", "ticket"]
    for alert in alerts:
        assert "and on (model, class)" in alert.expr
        assert "{{ $labels.class }}" in to_go(dict(alert.annotations)["summary"])


def test_a_precision_objective_reads_predictions_of_its_one_class(example_data):
    loaded = with_slos(example_data, objectives=[
        {"name": "p", "model": "digits", "version": "v2", "kind": "class_precision",
         "class": "one", "target": 0.9, "min_labeled_events": 30}])
    expr = error_ratio_expr(build_spec(loaded).slos[0], 300)
    assert ('visionmon_labeled_predictions_total{model="digits",version="v2",class=~"one",'
            'outcome!="correct"}') in expr
    assert "sum by (model, version, class)" in expr


def test_a_class_name_with_regex_characters_is_matched_literally():
    assert alternation(("a.b", "c|d", "e")) == "a\\\\.b|c\\\\|d|e"


def test_a_class_objective_on_a_model_without_high_risk_classes_is_refused(example_data):
    data = copy.deepcopy(example_data)
    data["models"][0]["high_risk_classes"] = []
    with pytest.raises(ConfigError) as err:
        with_slos(data, objectives=[
            {"name": "recall", "model": "digits", "kind": "class_recall", "target": 0.95}])
    assert "slos.objectives.0.class" in str(err.value)
    assert "declares none; set class (one of zero, one" in str(err.value)


def test_the_high_risk_recall_check_is_off_without_high_risk_classes(example_data):
    data = copy.deepcopy(example_data)
    data["models"][0]["high_risk_classes"] = []
    assert not build_spec(with_slos(data, objectives=[])).thresholds["high_risk_recall"].enabled


def test_a_low_target_gets_lowered_tiers_whose_annotation_says_so(example_data, caplog):
    loaded = with_slos(example_data, objectives=[
        {"name": "accuracy", "model": "digits", "kind": "accuracy", "target": 0.9}])
    slo = build_spec(loaded).slos[0]
    assert [t.factor for t in slo.tiers] == [8, 6, 3, 1]
    assert "can never fire" in caplog.text
    group = slo_group(slo, "", "")
    fast = next(r for r in group.rules if isinstance(r, AlertingRule))
    assert "(8 * 0.1)" in fast.expr
    assert "lowered from 14.4x: a 90% target caps the burn rate at 10x" in to_go(
        dict(fast.annotations)["description"])


def test_threshold_alerts_page_only_for_blindness_and_lost_state_by_default(example):
    severities = {r.alert: dict(r.labels)["severity"] for r in threshold_rules(build_spec(example))}
    assert {a for a, s in severities.items() if s == "page"} == {
        CHECK["kafka_disconnected"].alert, CHECK["no_events"].alert,
        CHECK["checkpoint_failing"].alert}
    assert len(severities) == 14


def test_disabled_checks_and_no_objectives_generate_nothing_and_say_so(example_data):
    off = {d.key: {"enabled": False} for d in CHECKS}
    without_cost = {k: v for k, v in example_data.items() if k != "cost"}
    with pytest.raises(ConfigError, match="nothing to generate"):
        generate(with_slos(without_cost, objectives=[], thresholds=off))


def test_the_writer_stamps_a_do_not_edit_header(generated):
    for path in generated.iterdir():
        assert path.read_text().startswith("# GENERATED by `visionmon alerts generate`")
        assert "DO NOT EDIT" in path.read_text().splitlines()[0]


WRITER_REFUSES = [
    ("an empty document", {}),
    ("a rule file without groups", {"groups": []}),
    ("a rule group without rules", {"groups": [{"name": "g", "rules": []}]}),
    ("a test file without tests", {"rule_files": ["x.yml"], "tests": []}),
]


@pytest.mark.parametrize(("sentence", "document"), WRITER_REFUSES,
                         ids=[w[0] for w in WRITER_REFUSES])
def test_the_writer_refuses_to_write_an_empty_file(tmp_path, sentence, document):
    with pytest.raises(EmptyOutputError):
        write_yaml(tmp_path / "out.yml", document, "test", "test")
    assert not list(tmp_path.iterdir())


def test_the_committed_files_match_a_fresh_generation(example, generated):
    """alerts/generated/ is regenerated and diffed; to update it run
    `visionmon alerts generate --config examples/visionmon.yaml --out alerts/generated`."""
    fresh = {p.name: p.read_text() for p in generated.iterdir()}
    committed = {p.name: p.read_text() for p in GOLDEN.iterdir()} if GOLDEN.exists() else {}
    assert sorted(committed) == sorted(fresh), "regenerate alerts/generated (see docstring)"
    for name, text in fresh.items():
        assert committed[name] == text, f"alerts/generated/{name} is stale (see docstring)"
    assert sorted(o.name for o in outputs(build_spec(example))) == sorted(fresh)


TEMPLATES = [
    ("a percentage keeps four significant digits", Value("percent"), 0.014666666666666666,
     "1.467%"),
    ("a whole percentage has no decimals", Value("percent"), 0.008, "0.8%"),
    ("a burn rate has one decimal", Value("fixed1"), 14.666666666666666, "14.7"),
    ("a duration reads in minutes and seconds", Value("duration"), 600.0, "10m 0s"),
    ("a long duration reads in days", Value("duration"), 90061.0, "1d 1h 1m 1s"),
    ("a sub-minute duration has four significant digits", Value("duration"), 12.5, "12.5s"),
]


@pytest.mark.parametrize(("sentence", "part", "value", "text"), TEMPLATES,
                         ids=[t[0] for t in TEMPLATES])
def test_annotations_render_like_prometheus_templates(sentence, part, value, text):
    assert render((part,), {}, value) == text


def test_a_template_renders_to_go_and_to_its_expected_text_from_one_definition():
    tpl = (Label("model"), Text(": "), Value("percent"), Text(" left "),
           Query("q", "x{model=%q}", "fixed1", ("model",)))
    assert to_go(tpl) == ('{{ $labels.model }}: {{ $value | humanizePercentage }} left '
                          '{{ with printf "x{model=%q}" $labels.model | query }}'
                          '{{ . | first | value | printf "%.1f" }}{{ else }}unknown{{ end }}')
    assert render(tpl, {"model": "digits"}, 0.5, {"q": 2.0}) == "digits: 50% left 2.0"
    assert render(tpl, {"model": "digits"}, 0.5, {"q": None}) == "digits: 50% left unknown"
    assert go_format("integer", 1234.4) == "1234"
    assert humanize_duration(0.5) == "500ms"


def test_a_burn_rate_description_says_how_many_events_its_long_window_holds(example):
    """A daemon up for minutes has minutes of a 3d window: the count says so."""
    slo = build_spec(example).slos[0]
    slowest = slo.tiers[-1]
    description = dict(burn_alert_annotations(slo, slowest, "", ""))["description"]
    text = render(description, {}, 0.02, {"events": 120.0, "burn_rate": 20.0,
                                          "budget_left": 0.99})
    assert text.startswith("2% of the 120 requests visionmon counted over the last 3d failed")
    assert "increase(visionmon_requests_total{model='digits'}[3d])" in to_go(description)


def test_a_query_list_renders_every_sample_in_order_like_its_go_template():
    part = QueryList("over", "sort_desc(x{model=%q} > 1)", "feature", "fixed2", ("model",), "x")
    go = to_go((part,))
    assert go == ('{{ range $i, $s := printf "sort_desc(x{model=%q} > 1)" $labels.model | query '
                  '}}{{ if $i }}, {{ end }}{{ $s.Labels.feature }} ({{ $s.Value | printf "%.2f" '
                  '}}x){{ else }}none{{ end }}')
    samples = (("blue_mean", 3.2), ("brightness", 2.0))
    assert render((part,), {}, 0.0, {"over": samples}) == "blue_mean (3.20x), brightness (2.00x)"
    assert render((part,), {}, 0.0, {"over": ()}) == "none"
