"""A real Prometheus server for tests: `visionmon.prometheus.PrometheusServer` (the one
way the project starts one), plus a marker that skips a test when the binary is absent.

    with PrometheusServer(tmp_path, ["127.0.0.1:9464"], rule_files=[...]) as prom:
        prom.wait_for_targets_up()
        prom.query("up")
"""

from __future__ import annotations

import pytest

from visionmon.prometheus import PROMETHEUS, PrometheusError, PrometheusServer

__all__ = ["PrometheusError", "PrometheusServer", "skip_without_prometheus"]

skip_without_prometheus = pytest.mark.skipif(PROMETHEUS is None,
                                             reason="prometheus binary not installed")
