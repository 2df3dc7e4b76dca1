"""Every PromQL expression in the generated dashboards, with Grafana's variables replaced by
concrete values the way Grafana would send them to Prometheus."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboards.generate import render_all
from monitor.config import LoadedConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "examples" / "visionmon.yaml"

#: Grafana interval macros -> durations Prometheus accepts (scrape interval in tests: 1 s).
INTERVALS = {"$__rate_interval": "10s", "$__range": "15m", "$__interval": "2s"}
#: Multi-value variables: Grafana sends a regex alternation in parentheses.
MULTI_VALUES = {"version": "(v1|v2)", "class": "(seven|three|zero)",
                "camera": "(cam-1|cam-2|cam-3|_other)", "site": "(plant-a|plant-b|_none)"}


@dataclass(frozen=True, slots=True)
class PanelQuery:
    """One expression: where it comes from, the raw text and how Grafana runs it."""

    dashboard: str
    panel: str
    ref: str
    expr: str
    instant: bool

    @property
    def id(self) -> str:
        panel = re.sub(r"[^A-Za-z0-9]+", "-", self.panel).strip("-").lower()
        return f"{self.dashboard.removeprefix('visionmon-')}/{panel}/{self.ref}"


def dashboards_of(loaded: LoadedConfig) -> dict[str, dict[str, Any]]:
    """uid -> dashboard JSON, as generated (nothing written to disk)."""
    out = {}
    for rel, text in render_all(loaded).items():
        if rel.endswith(".json"):
            d = json.loads(text)
            out[d["uid"]] = d
    return out


def _panels(d: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for p in d.get("panels", []):
        yield p
        yield from p.get("panels", [])  # panels inside collapsed rows


def queries_of(dashboards: Mapping[str, Mapping[str, Any]]) -> list[PanelQuery]:
    """Panel targets and Prometheus annotations of every dashboard, in order."""
    out: list[PanelQuery] = []
    for uid, d in dashboards.items():
        for p in _panels(d):
            for t in p.get("targets") or []:
                out.append(PanelQuery(uid, p["title"], t["refId"], t["expr"],
                                      bool(t.get("instant"))))
        for a in d.get("annotations", {}).get("list", []):
            if a.get("expr"):
                out.append(PanelQuery(uid, f"annotation {a['name']}", "ann", a["expr"], False))
    return out


def current_values(d: Mapping[str, Any]) -> dict[str, str]:
    """Each single-value variable's default (`current`) and a concrete list for multi ones."""
    values: dict[str, str] = {}
    for v in d["templating"]["list"]:
        if v["name"] in MULTI_VALUES:
            values[v["name"]] = MULTI_VALUES[v["name"]]
        else:
            values[v["name"]] = str(v["current"]["value"])
    return values


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace interval macros, then `${name}` and `$name` (longest names first)."""
    for macro, duration in INTERVALS.items():
        expr = expr.replace(macro, duration)
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    if "$" in expr:
        raise AssertionError(f"unsubstituted variable left in {expr!r}")
    return expr


def concrete_queries(loaded: LoadedConfig) -> list[tuple[PanelQuery, str]]:
    """(query, expression ready for Prometheus) for every query of every dashboard."""
    dashboards = dashboards_of(loaded)
    return [(q, substitute(q.expr, current_values(dashboards[q.dashboard])))
            for q in queries_of(dashboards)]


def example_queries() -> list[tuple[PanelQuery, str]]:
    """The concrete queries of the dashboards generated from examples/visionmon.yaml."""
    return concrete_queries(load_config(EXAMPLE_CONFIG))


def metrics_in(expr: str) -> set[str]:
    """Names of visionmon metric families an expression reads (histogram suffixes folded)."""
    from monitor.catalog import CATALOG

    names = set()
    for raw in re.findall(r"\bvisionmon_[a-z0-9_]+", expr):
        spec = CATALOG.family_of(raw)
        names.add(spec.name if spec is not None else raw)
    return names
