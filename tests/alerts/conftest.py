"""Fixtures for the alert-generator tests: the example config and its generated files."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.generate import write_all
from monitor.config import LoadedConfig, load_config, parse_config, resolve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "visionmon.yaml"


@pytest.fixture(scope="session")
def example() -> LoadedConfig:
    return load_config(EXAMPLE)


@pytest.fixture(scope="session")
def example_data() -> dict[str, Any]:
    """The example config as plain YAML data (copy before changing it)."""
    return dict(yaml.safe_load(EXAMPLE.read_text()))


@pytest.fixture(scope="session")
def generated(example: LoadedConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`visionmon alerts generate` output for examples/visionmon.yaml."""
    out = tmp_path_factory.mktemp("alerts")
    write_all(example, out)
    return out


def with_slos(data: dict[str, Any], **slos: Any) -> LoadedConfig:
    """The example config with keys of its `slos:` section replaced."""
    d = copy.deepcopy(data)
    d["slos"] = {**d.get("slos", {}), **slos}
    return resolve(parse_config(d, "test.yaml"), "test.yaml")
