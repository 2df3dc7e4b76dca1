"""config -> three Grafana dashboards (JSON) + file-provisioning YAML, written atomically.

Layout under the output folder:

    dashboards/visionmon-executive.json, visionmon-oncall.json, visionmon-debug.json
    provisioning/dashboards/visionmon.yaml     (file provider, do-not-edit header)
    provisioning/datasources/visionmon.yaml    (Prometheus data source)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import debug, executive, oncall, provisioning
from dashboards.frame import DEBUG, EXECUTIVE, ONCALL, DashboardIdentity
from monitor.atomic_write import write_text_atomically
from monitor.config import ConfigError, LoadedConfig

#: SDK build the dashboards are generated with (Grafana 11.6 types, schemaVersion 41).
SDK_BUILD = "1769699379!11.6.0"

BUILDERS: tuple[tuple[DashboardIdentity, Callable[[LoadedConfig], dash.Dashboard]], ...] = (
    (EXECUTIVE, executive.build),
    (ONCALL, oncall.build),
    (DEBUG, debug.build),
)


def render_dashboard(identity: DashboardIdentity,
                     build: Callable[[LoadedConfig], dash.Dashboard],
                     loaded: LoadedConfig) -> str:
    """One dashboard as plain Grafana JSON (sorted keys, 2-space indent, trailing newline)."""
    try:
        model = build(loaded).build()
    except (KeyError, ValueError) as err:
        raise ConfigError(f"{loaded.path}: building the {identity.title!r} dashboard: "
                          f"{err}") from err
    text = JSONEncoder(sort_keys=True, indent=2).encode(model)
    if not json.loads(text).get("panels"):
        raise ConfigError(f"{loaded.path}: the {identity.title!r} dashboard has no panels; "
                          "refusing to write it")
    return text + "\n"


def render_all(loaded: LoadedConfig) -> dict[str, str]:
    """Every generated file: path relative to the output folder -> text. Pure; writes nothing."""
    files = {f"dashboards/{identity.filename}": render_dashboard(identity, build, loaded)
             for identity, build in BUILDERS}
    files["provisioning/dashboards/visionmon.yaml"] = provisioning.dashboards_provider(
        loaded.path)
    files["provisioning/datasources/visionmon.yaml"] = provisioning.prometheus_datasource(
        loaded.path)
    return files


def write_all(loaded: LoadedConfig, out_dir: str) -> list[Path]:
    """Render everything first, then write each file via a temporary file and a rename.

    Returns the written paths. Raises ConfigError naming the config and the dashboard when
    a dashboard cannot be built (nothing is written then).
    """
    files = render_all(loaded)
    root = Path(out_dir)
    written: list[Path] = []
    for rel, text in files.items():
        target = root / rel
        try:
            write_text_atomically(target, text)
        except OSError as err:
            raise ConfigError(f"writing {target}: {err.strerror or err}") from None
        written.append(target)
    return written
