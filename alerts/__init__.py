"""SLO spec -> Prometheus recording and alerting rules, promtool tests, Alertmanager example.

Public API:

* `alerts.generate.write_all(loaded, out_dir)`: everything `visionmon alerts generate`
  writes; `write_rules(loaded, out_dir)`: the rule files only; `generate(loaded)` /
  `outputs(spec)`: the documents without writing them.
* `alerts.spec.build_spec(loaded) -> AlertSpec`: the resolved internal model
  (`alerts.model`).
* `alerts.rules.slo_group(slo, ...)`, `alerts.checks.threshold_group(spec)`: pure rule
  generators; `alerts.checks.CHECKS`: the threshold checks, one row each (alert name,
  metric, comparison, settings, rule, promtool case); `alerts.names`: every other rule,
  alert, label and file name.

See docs/alerts.md.
"""
