"""Grafana dashboards generated from the metric catalog and the config (grafana-foundation-sdk).

Entry point: `dashboards.generate.write_all(loaded, out_dir)`; see docs/dashboards.md.
"""
