"""Prometheus-backed annotations (the SDK's AnnotationQuery lacks the Prometheus fields).

Grafana's Prometheus data source turns every run of consecutive samples of the annotation
query into one event; `titleFormat`, `textFormat` and `tagKeys` read the series' labels.
"""

from __future__ import annotations

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard

from dashboards.panels import DATASOURCE


class PrometheusAnnotationQuery(dashboard.AnnotationQuery):
    """An AnnotationQuery that also serialises Prometheus's step, title, text and tag keys."""

    def __init__(self, name: str, expr: str, colour: str, step: str, title_format: str,
                 text_format: str, tag_keys: str) -> None:
        super().__init__(name=name, datasource=DATASOURCE, enable=True, hide=False,
                         icon_color=colour, expr=expr)
        self.step = step
        self.title_format = title_format
        self.text_format = text_format
        self.tag_keys = tag_keys

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        payload.update({"step": self.step, "titleFormat": self.title_format,
                        "textFormat": self.text_format, "tagKeys": self.tag_keys,
                        "useValueForTime": False})
        return payload


class PrometheusAnnotation(cogbuilder.Builder[dashboard.AnnotationQuery]):
    """Builder for `Dashboard.annotation()`; `step` is a duration such as `1m`."""

    def __init__(self, name: str, expr: str, colour: str, *, step: str, title_format: str,
                 text_format: str = "", tag_keys: str = "") -> None:
        self._internal = PrometheusAnnotationQuery(name, expr, colour, step, title_format,
                                                   text_format, tag_keys)

    def build(self) -> dashboard.AnnotationQuery:
        return self._internal
