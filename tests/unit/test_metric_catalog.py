"""The metric catalog names who computes each metric, covers the serving side, and
docs/metrics.md is generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.emitter.metrics import EmitterCollector
from collectors.kserve.bridge import BridgeCollector
from monitor.catalog import CATALOG, CLIENT_CATALOG, PREFIX, MetricSpec
from visionmon.metrics_docs import COMMAND, render

ROOT = Path(__file__).resolve().parents[2]
SPECS = [*CATALOG, *CLIENT_CATALOG]



@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_each_metric_names_the_module_that_computes_it(spec: MetricSpec) -> None:
    assert spec.modules, (f"MetricSpec {spec.name} names no module: add module=\"path/to/"
                          "the/file.py\" (the code that sets it) in monitor/catalog.py")
    for module in spec.modules:
        assert (ROOT / module).is_file(), f"MetricSpec {spec.name}: module {module} not found"


def test_each_named_module_mentions_its_metric() -> None:
    unfilled = {s.name for s in SPECS
                if not any(s.name.removeprefix(PREFIX) in (ROOT / m).read_text()
                           for m in s.modules)}
    assert not unfilled, ("metrics whose named modules never mention them (fill them or fix "
                          f"`module`): {sorted(unfilled)}")


def test_the_daemon_and_the_serving_side_never_share_a_name() -> None:
    assert not CATALOG.series_names() & CLIENT_CATALOG.series_names()


@pytest.mark.parametrize(("collector", "module"), [
    (EmitterCollector, "collectors/emitter/metrics.py"),
    (BridgeCollector, "collectors/kserve/bridge.py")], ids=["emitter", "kserve bridge"])
def test_the_serving_side_exports_exactly_its_catalog_entries(collector: type,
                                                             module: str) -> None:
    families = {(m.name, m.type, m.documentation) for m in collector(None).describe()}
    declared = {(s.base_name, s.kind, s.help) for s in CLIENT_CATALOG if module in s.modules}
    assert families == declared


def test_docs_metrics_md_is_generated_from_the_catalog() -> None:
    committed = (ROOT / "docs" / "metrics.md").read_text()
    assert committed == render(), f"docs/metrics.md is stale; run `{COMMAND}`"
    for spec in SPECS:
        assert f"`{spec.name}`" in committed
