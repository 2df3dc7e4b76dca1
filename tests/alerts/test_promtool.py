"""promtool proves the generated rules: they load, their unit tests pass, and a changed
burn factor or hold time makes those tests fail."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from alerts import names
from alerts.generate import write_all
from tests.alerts.conftest import with_slos

PROMTOOL = shutil.which("promtool")
pytestmark = [pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed "
                                "(Debian package prometheus)"), pytest.mark.slow]


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_promtool_accepts_every_generated_rule_file(generated):
    rule_files = sorted(generated.glob("*.yml"))
    assert len(rule_files) == 10  # 7 SLOs, the thresholds, cost and the declared rollouts
    result = promtool("check", "rules", *rule_files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


def test_every_generated_promtool_unit_test_passes(generated):
    """Run per file in parallel: the 1-day histories make each file take a few seconds."""
    test_files = sorted(generated.glob(f"*{names.TESTS_SUFFIX}"))
    assert len(test_files) == 9  # 7 SLOs, the thresholds and cost
    with ThreadPoolExecutor(max_workers=len(test_files)) as pool:
        results = list(pool.map(lambda p: promtool("test", "rules", p.name, cwd=generated),
                                test_files))
    failures = {p.name: r.stdout + r.stderr for p, r in zip(test_files, results, strict=True)
                if r.returncode != 0}
    assert not failures, "\n".join(f"{n}:\n{out}" for n, out in failures.items())


MUTATIONS = [
    # sentence, rule file stem, text in the rules, replacement, test chosen by its name
    ("paging at 12x instead of 14.4x pages a minute early", "visionmon-slo-digits-availability",
     "(14.4 * 0.001)", "(12 * 0.001)", "14.4x 1h/5m tier"),
    ("a 6x page reading the 1d window instead of 6h fires late", "visionmon-slo-digits-latency",
     "slo:sli_error:ratio_rate6h{slo=\"latency\",model=\"digits\"} > (6 * 0.01)",
     "slo:sli_error:ratio_rate1d{slo=\"latency\",model=\"digits\"} > (6 * 0.01)",
     "6x 6h/30m tier"),
    ("a ticket at 1.2x instead of 1x opens too late", "visionmon-slo-digits-accuracy",
     "(1 * 0.05)", "(1.2 * 0.05)", "1x 3d/6h tier"),
    ("a minimum volume of 50 labels lets a quiet hour page", "visionmon-slo-digits-accuracy",
     ">= 100", ">= 50", "fewer than 100 labels"),
    ("a false-accept SLI that reads correct outcomes as bad pages on healthy traffic",
     "visionmon-slo-digits-false-accepts", 'outcome="false_accept"', 'outcome="correct"',
     "14.4x 1h/5m tier"),
    ("a Kafka page held 3m instead of 2m fires late", "visionmon-thresholds",
     "for: 2m", "for: 3m", "kafka:"),
    ("a calibration alert that also reads the reference model's ECE fires on it",
     "visionmon-thresholds", 'visionmon_calibration_ece{window="1h",source="labels"}',
     'visionmon_calibration_ece{window="1h"}', "calibration:"),
    ("a checkpoint alert that never counts a write as recent pages on intermittent failures",
     "visionmon-thresholds", "visionmon_last_checkpoint_timestamp_seconds < 30",
     "visionmon_last_checkpoint_timestamp_seconds < 0", "checkpoint failing:"),
    ("a GPU price not joined on its node charges every node's GPUs", "visionmon-cost",
     "* on (node) group_left ()\n        max by (node) (node_gpu_hourly_cost)",
     "* on () group_left ()\n        max(node_gpu_hourly_cost)", "every recording has its value"),
    ("utilisation read as a ratio, not a percentage, is 100 times too high", "visionmon-cost",
     "[5m])) / 100\n", "[5m]))\n", "every recording has its value"),
    ("energy in millijoules read as joules is 1000 times too high", "visionmon-cost",
     "[5m])) / 1000\n", "[5m])) / 1\n", "every recording has its value"),
    ("a cost per million that divides by zero predictions records +Inf", "visionmon-cost",
     '(rate(visionmon_predictions_total{model="digits"}[1h])) > 0)',
     '(rate(visionmon_predictions_total{model="digits"}[1h])))', "absent, not +Inf"),
]


@pytest.mark.parametrize(("sentence", "stem", "old", "new", "test_name"), MUTATIONS,
                         ids=[m[0] for m in MUTATIONS])
def test_a_mutated_rule_fails_its_promtool_test(generated, tmp_path, sentence, stem, old, new,
                                                test_name):
    rules = (generated / f"{stem}{names.RULES_SUFFIX}").read_text()
    assert old in rules, f"{old!r} not in {stem}"
    tests = yaml.safe_load((generated / f"{stem}{names.TESTS_SUFFIX}").read_text())
    tests["tests"] = [t for t in tests["tests"] if test_name in t["name"]]
    assert len(tests["tests"]) == 1, test_name
    (tmp_path / f"{stem}{names.TESTS_SUFFIX}").write_text(yaml.safe_dump(tests))

    # Unchanged, this test passes (test_every_generated_promtool_unit_test_passes).
    (tmp_path / f"{stem}{names.RULES_SUFFIX}").write_text(rules.replace(old, new))
    mutated = promtool("test", "rules", f"{stem}{names.TESTS_SUFFIX}", cwd=tmp_path)
    assert mutated.returncode != 0, f"{sentence}: the tests did not notice"


def test_a_lowered_tier_of_a_90_percent_target_fires_in_its_generated_test(example_data,
                                                                          tmp_path):
    """14.4x cannot fire at 90 % (at most 10x): the tier is lowered to 8x, and the promtool
    test generated for it shows it paging."""
    loaded = with_slos(example_data, objectives=[
        {"name": "accuracy", "model": "digits", "kind": "accuracy", "target": 0.9}])
    write_all(loaded, tmp_path)
    stem = "visionmon-slo-digits-accuracy"
    assert "(8 * 0.1)" in (tmp_path / f"{stem}{names.RULES_SUFFIX}").read_text()
    tests = yaml.safe_load((tmp_path / f"{stem}{names.TESTS_SUFFIX}").read_text())
    tests["tests"] = [t for t in tests["tests"] if "8x 1h/5m tier" in t["name"]]
    assert len(tests["tests"]) == 1
    (tmp_path / "lowered.test.yaml").write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", "lowered.test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_model_without_false_accepts_records_a_false_accept_ratio_of_zero(generated,
                                                                           tmp_path):
    """Only correct and routed outcomes exist: the SLI is 0, not absent (its `or 0 *` arm)."""
    stem = "visionmon-slo-digits-false-accepts"
    name = "visionmon_acceptance_decisions_total"
    mv = 'model="digits",version="v1",class="one"'
    doc = {"rule_files": [f"{stem}{names.RULES_SUFFIX}"], "evaluation_interval": "1m",
           "tests": [{"interval": "1m", "input_series": [
               {"series": f'{name}{{{mv},decision="accepted",outcome="correct",'
                          f'true_class="one"}}', "values": "0+60x20"},
               {"series": f'{name}{{{mv},decision="routed",outcome="incorrect",'
                          f'true_class="two"}}', "values": "0+6x20"}],
               "promql_expr_test": [{
                   "expr": 'slo:sli_error:ratio_rate5m{slo="false-accepts"}', "eval_time": "10m",
                   "exp_samples": [{"labels": 'slo:sli_error:ratio_rate5m{model="digits",'
                                              'slo="false-accepts"}', "value": 0}]}]}]}
    shutil.copy(generated / f"{stem}{names.RULES_SUFFIX}", tmp_path)
    (tmp_path / "zero.test.yaml").write_text(yaml.safe_dump(doc))
    result = promtool("test", "rules", "zero.test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
