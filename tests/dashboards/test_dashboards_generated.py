"""The generated dashboards: golden files, structure, units and thresholds, provisioning."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.generate import rule_outputs
from alerts.spec import build_spec
from dashboards import scales
from dashboards.frame import ALL_DASHBOARDS, DATASOURCE_UID, GENERATED_BY, default_window
from dashboards.generate import SDK_BUILD, render_all, write_all
from dashboards.promql import eq, recorded
from monitor.catalog import CATALOG
from monitor.config import ConfigError, load_config, parse_config, resolve
from monitor.cost_series import COST_PER_MILLION
from tests.dashboards.panel_queries import (
    EXAMPLE_CONFIG,
    ROOT,
    dashboards_of,
    metrics_in,
    queries_of,
)
from visionmon.cli import main

GOLDEN = ROOT / "dashboards" / "generated"
REGENERATE = ("visionmon dashboards generate --config examples/visionmon.yaml "
              "--out dashboards/generated")


#: uid -> dashboard JSON
Dashboards = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def example() -> Dashboards:
    return dashboards_of(load_config(EXAMPLE_CONFIG))


def _panels(d: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for p in d["panels"]:
        if p["type"] != "row":
            yield p


def _config(**changes: Any) -> Any:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data.update(changes)
    return resolve(parse_config(data, "test.yaml"), "test.yaml")


def test_the_real_dashboards_package_is_imported_not_this_test_folder() -> None:
    import dashboards

    assert Path(dashboards.__file__).parent == ROOT / "dashboards", (
        "tests/dashboards must stay without __init__.py: as a package it would shadow the "
        "dashboards package")


# --- golden files ------------------------------------------------------------------------

def test_committed_golden_files_match_a_fresh_generation() -> None:
    fresh = render_all(load_config(EXAMPLE_CONFIG))
    committed = {str(p.relative_to(GOLDEN)): p.read_text()
                 for p in sorted(GOLDEN.rglob("*")) if p.is_file()}
    assert sorted(committed) == sorted(fresh), f"file set differs; run: {REGENERATE}"
    for rel, text in fresh.items():
        assert committed[rel] == text, f"{rel} is stale; run: {REGENERATE}"


def test_write_all_writes_what_render_all_returns_and_leaves_no_temporary_files(
        tmp_path: Path) -> None:
    loaded = load_config(EXAMPLE_CONFIG)
    paths = write_all(loaded, str(tmp_path / "out"))
    rendered = render_all(loaded)
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in paths) == sorted(rendered)
    for p in paths:
        assert p.read_text() == rendered[str(p.relative_to(tmp_path / "out"))]
    assert not [p for p in (tmp_path / "out").rglob(".*")], "temporary files left behind"


def test_the_cli_generates_dashboards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["dashboards", "generate", "--config", str(EXAMPLE_CONFIG),
                 "--out", str(tmp_path)])
    assert code == 0
    assert "visionmon-oncall.json" in capsys.readouterr().out


def test_the_sdk_build_the_docs_name_is_the_one_installed() -> None:
    from importlib.metadata import version

    assert version("grafana-foundation-sdk") == SDK_BUILD
    assert SDK_BUILD in (ROOT / "docs" / "dashboards.md").read_text()


# --- identity, variables, links ----------------------------------------------------------

def test_three_dashboards_with_stable_uids_and_the_generated_by_tag(example: Dashboards) -> None:
    assert sorted(example) == sorted(i.uid for i in ALL_DASHBOARDS)
    for d in example.values():
        assert GENERATED_BY in d["tags"]
        assert d["schemaVersion"] == 41  # Grafana 11.6 types
        assert "do not edit" in d["description"].lower()


def test_variables_are_datasource_model_version_class_segment_keys_window(
        example: Dashboards) -> None:
    for d in example.values():
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert list(variables) == ["datasource", "model", "version", "class", "camera", "site",
                                   "window"]
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["datasource"]["current"]["value"] == DATASOURCE_UID
        assert variables["version"]["multi"] and variables["class"]["multi"]
        for key in ("camera", "site"):  # every value of the key, or a chosen few
            assert variables[key]["multi"] and variables[key]["allValue"] == ".*"
            assert f'segment_key="{key}"' in variables[key]["query"]
        assert not variables["model"]["multi"] and not variables["window"]["multi"]
        assert variables["window"]["query"] == "5m,1h,1d"
        assert variables["window"]["current"]["value"] == "1h"
        assert variables["model"]["current"]["value"] == "digits"


@pytest.mark.parametrize(("sizes", "expected"), [
    (["5m", "1h", "1d"], "1h"),
    (["1d", "2h"], "2h"),
    (["1m", "5m"], "5m"),
])
def test_the_default_window_is_the_shortest_of_at_least_an_hour(sizes: list[str],
                                                                 expected: str) -> None:
    assert default_window(sizes) == expected


def test_each_dashboard_links_to_the_other_two_carrying_variables_and_time(
        example: Dashboards) -> None:
    for uid, d in example.items():
        targets = {link["url"] for link in d["links"]}
        assert targets == {f"/d/{other}" for other in example if other != uid}
        assert all(link["includeVars"] and link["keepTime"] for link in d["links"])


# --- panels ------------------------------------------------------------------------------

def test_every_panel_has_datasource_unit_thresholds_colour_and_a_query(example: Dashboards) -> None:
    for d in example.values():
        for p in _panels(d):
            where = f"{d['uid']}: {p['title']}"
            defaults = p["fieldConfig"]["defaults"]
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert defaults.get("unit"), where
            steps = defaults["thresholds"]["steps"]
            assert steps and steps[0]["value"] is None, where
            assert all(s["color"] for s in steps), where
            colour = defaults.get("color", {}).get("mode") or p["options"]["color"]["scheme"]
            assert colour, where
            assert p.get("targets"), where
            assert p.get("description"), where


def test_drift_panels_draw_the_exported_critical_value_not_a_constant(example: Dashboards) -> None:
    statistic = re.compile(r"visionmon_(drift_psi|drift_kl|embedding_mmd)\{")
    drift_panels = [p for d in example.values() for p in _panels(d)
                    if any(statistic.search(t["expr"]) for t in p["targets"])]
    assert len(drift_panels) >= 5
    for p in drift_panels:
        exprs = " ".join(t["expr"] for t in p["targets"])
        assert re.search(r"visionmon_(drift_threshold|embedding_mmd_threshold)\{", exprs), \
            p["title"]
        steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        if p["type"] == "timeseries":
            assert len(steps) == 1, f"{p['title']}: drift levels must come from the series"
            overrides = p["fieldConfig"]["overrides"]
            assert any(o["matcher"] == {"id": "byFrameRefID", "options": "B"}
                       for o in overrides), p["title"]


def test_every_metric_and_label_in_every_query_is_in_the_catalog(example: Dashboards) -> None:
    selector = re.compile(r"\b(visionmon_[a-z0-9_]+)(\{([^}]*)\})?")
    for q in queries_of(example):
        for name, _, body in selector.findall(q.expr):
            spec = CATALOG.family_of(name)
            assert spec is not None, f"{q.id}: {name} is not in the catalog"
            labels = {m.split("=")[0].rstrip("!~") for m in body.split(",") if m}
            allowed = set(spec.labels) | ({"le"} if name.endswith("_bucket") else set())
            assert labels <= allowed, f"{q.id}: {name} has no label(s) {labels - allowed}"


CONTENT = [
    # (what the issue asks for, dashboard uid, metric the panel must read)
    ("executive: realized accuracy", "visionmon-executive", "visionmon_accuracy_ratio"),
    ("executive: estimated accuracy", "visionmon-executive",
     "visionmon_estimated_accuracy_ratio"),
    ("executive: label coverage", "visionmon-executive", "visionmon_label_coverage_ratio"),
    ("debug: baseline source and state", "visionmon-debug", "visionmon_baseline_info"),
    ("debug: what the baseline rests on", "visionmon-debug", "visionmon_baseline_events"),
    ("executive: drift status", "visionmon-executive", "visionmon_drift_threshold"),
    ("executive: SLO status and error budget", "visionmon-executive",
     "visionmon_requests_total"),
    ("executive: predictions per second", "visionmon-executive", "visionmon_predictions_total"),
    ("executive: reference images per second", "visionmon-executive",
     "visionmon_reference_images_scored_total"),
    ("executive: reference batch time", "visionmon-executive",
     "visionmon_reference_batch_seconds_bucket"),
    ("executive: worst classes by recall", "visionmon-executive",
     "visionmon_class_recall_ratio"),
    ("on-call: latency quantiles", "visionmon-oncall", "visionmon_request_latency_seconds_bucket"),
    ("on-call: firing alerts", "visionmon-oncall", "ALERTS{"),
    ("on-call: consumer lag", "visionmon-oncall", "visionmon_consumer_lag_records"),
    ("on-call: Kafka connectivity", "visionmon-oncall", "visionmon_kafka_connected"),
    ("on-call: rejected records by reason", "visionmon-oncall",
     "visionmon_records_rejected_total"),
    ("on-call: version changes", "visionmon-oncall", "visionmon_last_event_timestamp_seconds"),
    ("on-call: high-risk recall", "visionmon-oncall", 'class=~"seven"'),
    ("debug: precision table", "visionmon-debug", "visionmon_class_precision_ratio"),
    ("debug: confused pairs", "visionmon-debug", "visionmon_confusion_pair_total"),
    ("debug: KL per feature", "visionmon-debug", "visionmon_drift_kl"),
    ("debug: confidence heatmap", "visionmon-debug", "visionmon_prediction_confidence_bucket"),
    ("debug: confidence baseline", "visionmon-debug", "visionmon_baseline_bin_ratio"),
    ("debug: reliability diagram", "visionmon-debug", "visionmon_calibration_bin_correct_total"),
    ("debug: input-feature drift", "visionmon-debug", 'feature=~"brightness|'),
    ("debug: embedding MMD", "visionmon-debug", "visionmon_embedding_mmd_threshold"),
    ("debug: shadow agreement by class", "visionmon-debug", "visionmon_shadow_class_total"),
    ("debug: label delay", "visionmon-debug", "visionmon_label_delay_seconds_bucket"),
    ("debug: shadow agreement test", "visionmon-debug", "visionmon_shadow_agreement_pvalue"),
    ("on-call: reference model up", "visionmon-oncall", "visionmon_reference_model_up"),
    ("on-call: rejected share", "visionmon-oncall", "visionmon_events_accepted_total"),
    ("executive: cost per million predictions", "visionmon-executive",
     "visionmon:cost_per_million_predictions:rate1h{"),
    ("executive: its trend against the day's mean", "visionmon-executive",
     "avg_over_time(visionmon:cost_per_million_predictions:rate1h{"),
    ("on-call: GPU utilisation", "visionmon-oncall", "visionmon:gpu_utilization:ratio_avg5m{"),
    ("on-call: predictions per GPU-second", "visionmon-oncall",
     "visionmon:predictions_per_gpu_second:rate5m{"),
    ("on-call: energy per prediction", "visionmon-oncall",
     "visionmon:energy_per_prediction_joules:rate5m{"),
]


@pytest.mark.parametrize(("what", "uid", "needle"), CONTENT, ids=[c[0] for c in CONTENT])
def test_the_issue_panels_are_present(example: Dashboards, what: str, uid: str,
                                      needle: str) -> None:
    assert any(needle in q.expr for q in queries_of({uid: example[uid]})), what


def test_the_estimated_accuracy_says_its_method_and_the_baseline_is_not_filtered_by_version(
        example: Dashboards) -> None:
    """The estimate is the calibrated one or the raw mean confidence: the legend says which.
    A baseline's `version` is its own, so the `$version` variable must not filter it."""
    targets = [t for p in _panels(example["visionmon-executive"]) for t in p.get("targets", [])
               if "visionmon_estimated_accuracy_ratio" in t["expr"]]
    assert targets and all("{{method}}" in t["legendFormat"] for t in targets)
    baseline = [q for q in queries_of({"visionmon-debug": example["visionmon-debug"]})
                if re.search(r"visionmon_baseline_(info|events)\b", q.expr)]
    assert baseline and all("$version" not in q.expr for q in baseline)


def test_every_metric_an_alert_rule_reads_is_drawn_on_a_dashboard(example: Dashboards) -> None:
    """Whoever is paged finds what the alert fired on: each visionmon metric in a generated
    rule (alerting or recording) is read by at least one panel."""
    drawn = set().union(*(metrics_in(q.expr) for q in queries_of(example)))
    spec = build_spec(load_config(EXAMPLE_CONFIG))
    read: dict[str, set[str]] = {}
    for out in rule_outputs(spec):
        for group in out.document["groups"]:
            for rule in group["rules"]:
                for name in metrics_in(rule["expr"]):
                    read.setdefault(name, set()).add(rule.get("alert") or rule["record"])
    assert read, "no rule reads a visionmon metric"
    missing = {name: sorted(rules) for name, rules in read.items() if name not in drawn}
    assert not missing, f"metrics alerts read but no panel draws: {missing}"


def test_the_shadow_agreement_test_panel_draws_the_alert_level_on_a_log_axis(
        example: Dashboards) -> None:
    panel = next(p for p in _panels(example["visionmon-debug"])
                 if "visionmon_shadow_agreement_pvalue" in json.dumps(p["targets"]))
    custom = panel["fieldConfig"]["defaults"]["custom"]
    assert custom["scaleDistribution"] == {"type": "log", "log": 10}
    alpha = load_config(EXAMPLE_CONFIG).config.slos.thresholds.shadow_agreement_drop.alpha
    steps = [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, alpha, 10 * alpha]


def test_version_changes_are_annotations_with_their_labels(example: Dashboards) -> None:
    annotations = example["visionmon-oncall"]["annotations"]["list"]
    deploys = [a for a in annotations if "last_event_timestamp" in a.get("expr", "")]
    assert deploys and deploys[0]["tagKeys"] == "model,version"
    assert deploys[0]["datasource"]["uid"] == "${datasource}"


def test_burn_rate_panels_draw_the_page_thresholds_of_the_workbook(example: Dashboards) -> None:
    burn = [p for p in _panels(example["visionmon-oncall"]) if p["title"].startswith("Burn")]
    assert len(burn) == 7  # one per objective in examples/visionmon.yaml
    for p in burn:
        steps = [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]
        assert steps == [None, 6.0, 14.4]
        assert p["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"
        # a class objective draws one line per class and window
        assert [t["legendFormat"].removeprefix("{{class}} ") for t in p["targets"]] == [
            "5m", "30m", "1h", "6h"]
    per_class = [p for p in burn if "class_recall" in p["description"]]
    assert per_class and all(t["legendFormat"].startswith("{{class}} ")
                             for t in per_class[0]["targets"])


def test_configured_burn_tiers_replace_the_workbook_windows_and_factors() -> None:
    slos = yaml.safe_load(EXAMPLE_CONFIG.read_text())["slos"]
    slos["windows"] = [
        {"severity": "page", "long": "2h", "short": "10m", "factor": 10},
        {"severity": "ticket", "long": "1d", "short": "2h", "factor": 2},
    ]
    oncall = dashboards_of(_config(slos=slos))["visionmon-oncall"]
    burn = [p for p in _panels(oncall) if p["title"].startswith("Burn")]
    for p in burn:
        assert [t["legendFormat"].removeprefix("{{class}} ") for t in p["targets"]] == [
            "10m", "2h"]
        steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [(s["value"], s["color"]) for s in steps] == [(None, "green"), (10.0, "red")]


def test_thresholds_follow_the_quality_section() -> None:
    cfg = _config(quality={"min_accuracy": 0.8}).config
    assert scales.accuracy(cfg).steps == ((None, "red"), (pytest.approx(0.6), "orange"),
                                          (0.8, "green"))


# --- other configurations ----------------------------------------------------------------

def test_a_config_without_slos_or_high_risk_classes_still_generates() -> None:
    loaded = _config(slos=None, cost=None, models=[{"name": "m", "classes": ["a", "b"]}])
    dashboards = dashboards_of(loaded)
    titles = [p["title"] for d in dashboards.values() for p in d["panels"]]
    assert not any(t.startswith(("Burn rate", "SLO attainment")) for t in titles)
    assert "Recall of the selected classes" in titles


def test_an_unknown_metric_fails_generation_naming_the_dashboard(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboards import queries

    monkeypatch.setattr(queries, "consumer_lag", lambda: queries.series("no_such_metric"))
    with pytest.raises(ConfigError, match=r"On-call.*no_such_metric"):
        render_all(load_config(EXAMPLE_CONFIG))


# --- provisioning ------------------------------------------------------------------------

def test_provisioning_files_carry_a_do_not_edit_header_and_point_at_the_json(
        tmp_path: Path) -> None:
    files = render_all(load_config(EXAMPLE_CONFIG))
    provider = files["provisioning/dashboards/visionmon.yaml"]
    datasource = files["provisioning/datasources/visionmon.yaml"]
    for text in (provider, datasource):
        assert text.startswith("# Generated by `visionmon dashboards generate`")
        assert "DO NOT EDIT" in text
    p = yaml.safe_load(provider)["providers"][0]
    assert p["type"] == "file" and p["options"]["path"].endswith("/visionmon")
    assert p["allowUiUpdates"] is False
    ds = yaml.safe_load(datasource)["datasources"][0]
    assert ds["uid"] == DATASOURCE_UID and ds["type"] == "prometheus"
    assert ds["url"] == "$VISIONMON_PROMETHEUS_URL"


def test_dashboard_json_is_plain_importable_json(example: Dashboards) -> None:
    for d in example.values():
        assert "kind" not in d and "apiVersion" not in d  # no app-platform manifest wrapper
        json.dumps(d)
        assert all(p["gridPos"]["w"] > 0 and p["gridPos"]["h"] > 0 for p in d["panels"])


def test_gpu_utilisation_and_throughput_share_a_panel_on_two_axes(example: Dashboards) -> None:
    panel = next(p for p in _panels(example["visionmon-oncall"])
                 if p["title"] == "GPU utilisation against throughput")
    exprs = [t["expr"] for t in panel["targets"]]
    assert "visionmon:gpu_utilization" in exprs[0] and "visionmon_predictions_total" in exprs[1]
    right = next(o for o in panel["fieldConfig"]["overrides"]
                 if o["matcher"] == {"id": "byFrameRefID", "options": "B"})
    assert {"id": "custom.axisPlacement", "value": "right"} in right["properties"]


def test_a_config_without_cost_has_no_cost_or_gpu_panels() -> None:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data.pop("cost")
    loaded = resolve(parse_config(data, "test.yaml"), "test.yaml")
    exprs = " ".join(q.expr for q in queries_of(dashboards_of(loaded)))
    assert "visionmon:" not in exprs


def test_a_recording_the_rules_do_not_define_fails_generation() -> None:
    with pytest.raises(KeyError, match="is not a visionmon recording"):
        recorded("visionmon:cost_per_billion:rate1h")
    with pytest.raises(ValueError, match="takes matchers on"):
        recorded(COST_PER_MILLION, eq("version", "v1"))


def test_top5_accuracy_is_drawn_only_for_models_with_more_than_five_classes() -> None:
    slos = {**yaml.safe_load(EXAMPLE_CONFIG.read_text())["slos"], "objectives": [],
            "rollouts": []}

    def summary(models: list[dict[str, object]]) -> str:
        oncall = dashboards_of(_config(models=models, slos=slos, cost=None))["visionmon-oncall"]
        panel = next(p for p in _panels(oncall) if p["title"] == "Accuracy: realized and "
                     "estimated")
        return json.dumps(panel["targets"])

    small = {"name": "defects", "classes": ["ok", "scratch", "dent"]}
    digits = {"name": "digits", "classes": [str(i) for i in range(10)]}
    assert "top5_correct_total" not in summary([small])
    both = summary([small, digits])
    assert 'visionmon_top5_correct_total{model=~\\"$model\\",version=~\\"$version\\",' \
           'model=~\\"digits\\"}' in both


def test_every_alert_the_generator_writes_is_named_for_the_firing_alerts_panels() -> None:
    from alerts.checks import CHECKS
    from alerts.names import SLO_ALERT
    from dashboards.queries import ALERT_NAME_PREFIX

    assert all(n.startswith(ALERT_NAME_PREFIX) for n in [SLO_ALERT, *(d.alert for d in CHECKS)])
