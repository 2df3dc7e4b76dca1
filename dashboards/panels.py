"""Panel factories: every panel gets a data source, a unit, thresholds and a colour mode.

The factories take a `Scale` (unit, range, threshold steps) as a required argument, so a panel
without units or thresholds cannot be built. Queries are `Query` values; the factories turn
them into Prometheus targets with reference ids A, B, C, ... in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import barchart, bargauge, heatmap, prometheus, stat, table
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import heatmap as heatmap_m
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    FieldColorModeId,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

#: Every panel reads from the data source picked in the `datasource` variable.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

# Grafana unit ids used here (see grafana_foundation_sdk.models.units).
SECONDS = units.Seconds
PERCENT = units.PercentUnit          # a 0..1 ratio drawn as 0..100 %
REQUESTS_PER_SECOND = units.RequestsPerSecond
RECORDS_PER_SECOND = units.RecordsPerSecond
IMAGES_PER_SECOND = "suffix: img/s"  # Grafana custom unit: value followed by the suffix
COUNT = units.Short
JOULES = units.Joule
PLAIN = units.NoUnit                 # dimensionless statistics (PSI, KL, MMD^2, burn rate x)

GREEN, ORANGE, RED, BLUE = "green", "orange", "red", "blue"


Step = tuple[float | None, str]


@dataclass(frozen=True, slots=True)
class Scale:
    """How a panel's values read: Grafana unit, optional axis range, threshold steps.

    `steps` are (lower bound, colour) pairs in ascending order; the first bound is None
    (Grafana's base step, from minus infinity).
    """

    unit: str
    steps: tuple[Step, ...]
    min: float | None = None
    max: float | None = None
    decimals: int | None = None

    def __post_init__(self) -> None:
        if not self.steps or self.steps[0][0] is not None:
            raise ValueError("threshold steps must start with the base step (None, colour)")


def higher_is_better(warn_below: float, bad_below: float, unit: str = PERCENT,
                     lo: float | None = 0.0, hi: float | None = 1.0) -> Scale:
    """Red below `bad_below`, orange below `warn_below`, green above (ratios by default)."""
    return Scale(unit, ((None, RED), (bad_below, ORANGE), (warn_below, GREEN)), lo, hi)


def lower_is_better(warn_above: float, bad_above: float, unit: str = PLAIN,
                    lo: float | None = 0.0) -> Scale:
    """Green below `warn_above`, orange up to `bad_above`, red above."""
    return Scale(unit, ((None, GREEN), (warn_above, ORANGE), (bad_above, RED)), lo)


def neutral(unit: str, lo: float | None = 0.0, hi: float | None = None) -> Scale:
    """A single blue base step: volumes and throughput, where no level is good or bad."""
    return Scale(unit, ((None, BLUE),), lo, hi)


def flag_mappings(bad_text: str, good_text: str = "OK") -> list[ValueMap]:
    """Value mappings for a 0/1 status series."""
    return [ValueMap(options={
        "0": ValueMappingResult(text=good_text, color=GREEN, index=0),
        "1": ValueMappingResult(text=bad_text, color=RED, index=1),
    })]


#: A 0/1 status series: 0 green, 1 red (pair with `flag_mappings`).
FLAG = Scale(PLAIN, ((None, GREEN), (1.0, RED)), 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target. `instant` queries are evaluated once at the end of the time range
    (tables, bar charts); `fmt` is Grafana's result format (time_series, table, heatmap)."""

    expr: str
    legend: str = ""
    instant: bool = False
    fmt: PromQueryFormat = PromQueryFormat.TIME_SERIES


def table_query(expr: str) -> Query:
    """An instant query returned as a table (one row per series)."""
    return Query(expr, instant=True, fmt=PromQueryFormat.TABLE)


def heatmap_query(expr: str, legend: str = "{{le}}") -> Query:
    """A range query of per-bucket counts returned in Grafana's heatmap format."""
    return Query(expr, legend, fmt=PromQueryFormat.HEATMAP)


def ref_id(index: int) -> str:
    """Target reference id for the index-th query: A, B, ..., Z."""
    if not 0 <= index < 26:
        raise ValueError("a panel takes at most 26 queries")
    return chr(ord("A") + index)


def _target(query: Query, index: int) -> prometheus.Dataquery:
    t = (prometheus.Dataquery().expr(query.expr).ref_id(ref_id(index))
         .legend_format(query.legend or "__auto").format(query.fmt))
    return t.instant() if query.instant else t.range()


def _thresholds(scale: Scale) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=v, color=c) for v, c in scale.steps])


def _colour(mode: FieldColorModeId) -> dash.FieldColor:
    return dash.FieldColor().mode(mode)


Panel = (ts.Panel | stat.Panel | bargauge.Panel | table.Panel | heatmap.Panel
         | barchart.Panel)


def _common(panel: Panel, title: str, description: str, queries: Sequence[Query],
             scale: Scale, width: int, height: int) -> None:
    panel.title(title).description(description).datasource(DATASOURCE)
    panel.unit(scale.unit).thresholds(_thresholds(scale)).span(width).height(height)
    if scale.min is not None:
        panel.min(scale.min)
    if scale.max is not None:
        panel.max(scale.max)
    if scale.decimals is not None:
        panel.decimals(scale.decimals)
    for i, q in enumerate(queries):
        panel.with_target(_target(q, i))


def timeseries(title: str, description: str, queries: Sequence[Query], scale: Scale, *,
               draw_thresholds: bool = False, log_axis: bool = False, width: int = 12,
               height: int = 8) -> ts.Panel:
    """Lines over time, coloured by series; `draw_thresholds` adds the steps as dashed lines,
    `log_axis` draws the y axis in powers of ten (p-values)."""
    p = ts.Panel()
    _common(p, title, description, queries, scale, width, height)
    p.color_scheme(_colour(FieldColorModeId.PALETTE_CLASSIC)).line_width(1).fill_opacity(10)
    p.legend(common_b.VizLegendOptions().show_legend(True)
             .display_mode(common.LegendDisplayMode.LIST)
             .placement(common.LegendPlacement.BOTTOM))
    mode = (common.GraphThresholdsStyleMode.DASHED if draw_thresholds
            else common.GraphThresholdsStyleMode.OFF)
    p.thresholds_style(common_b.GraphThresholdsStyleConfig().mode(mode))
    if log_axis:
        p.scale_distribution(common_b.ScaleDistributionConfig()
                             .type(common.ScaleDistribution.LOG).log(10))
    return p


def threshold_series(panel: ts.Panel, ref: str) -> ts.Panel:
    """Draw query `ref` as a red dashed line: a threshold exported as a series."""
    return panel.override_by_query(ref, [
        DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": RED}),
        DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
        DynamicConfigValue(id_val="custom.fillOpacity", value=0),
    ])


def right_axis(panel: ts.Panel, ref: str, unit: str) -> ts.Panel:
    """Draw query `ref` against a second y axis on the right, in its own unit (two
    quantities on one time axis, e.g. GPU utilisation against throughput)."""
    return panel.override_by_query(ref, [
        DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
        DynamicConfigValue(id_val="unit", value=unit),
    ])


def stat_panel(title: str, description: str, queries: Sequence[Query], scale: Scale, *,
               mappings: list[ValueMap] | None = None, width: int = 6,
               height: int = 5) -> stat.Panel:
    """Big numbers (last non-null value), background coloured by the thresholds."""
    p = stat.Panel()
    _common(p, title, description, queries, scale, width, height)
    p.color_scheme(_colour(FieldColorModeId.THRESHOLDS))
    p.reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    p.color_mode(common.BigValueColorMode.BACKGROUND).graph_mode(common.BigValueGraphMode.AREA)
    p.text_mode(common.BigValueTextMode.VALUE_AND_NAME)
    if mappings:
        p.mappings(list(mappings))
    return p


def bar_gauge(title: str, description: str, queries: Sequence[Query], scale: Scale, *,
              width: int = 12, height: int = 8) -> bargauge.Panel:
    """Horizontal bars, one per series, coloured by the thresholds."""
    p = bargauge.Panel()
    _common(p, title, description, queries, scale, width, height)
    p.color_scheme(_colour(FieldColorModeId.THRESHOLDS))
    p.reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    p.display_mode(common.BarGaugeDisplayMode.GRADIENT)
    p.orientation(common.VizOrientation.HORIZONTAL)
    return p


def _merge_and_rename(panel: table.Panel | barchart.Panel, rename: Mapping[str, str]) -> None:
    """Join instant-table queries on their labels; drop Time and rename `Value #X` columns."""
    panel.with_transformation(DataTransformerConfig(id_val="merge", options={}))
    panel.with_transformation(DataTransformerConfig(id_val="organize", options={
        "excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True},
        "renameByName": dict(rename),
    }))


def table_panel(title: str, description: str, queries: Sequence[Query], scale: Scale,
                rename: Mapping[str, str], *, width: int = 12, height: int = 10) -> table.Panel:
    """A table from instant queries merged on their labels; numeric cells coloured by the
    thresholds."""
    p = table.Panel()
    _common(p, title, description, queries, scale, width, height)
    p.color_scheme(_colour(FieldColorModeId.THRESHOLDS))
    # Colour only the value cells; label columns (class, version, ...) stay plain text.
    p.override_by_field_type("number", [
        DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"})])
    _merge_and_rename(p, rename)
    return p


def bar_chart(title: str, description: str, queries: Sequence[Query], scale: Scale,
              x_field: str, rename: Mapping[str, str], *, width: int = 12,
              height: int = 8) -> barchart.Panel:
    """Grouped bars per `x_field` value, from instant table queries merged on their labels."""
    p = barchart.Panel()
    _common(p, title, description, queries, scale, width, height)
    p.color_scheme(_colour(FieldColorModeId.PALETTE_CLASSIC))
    p.x_field(x_field).show_value(common.VisibilityMode.AUTO).fill_opacity(80)
    p.legend(common_b.VizLegendOptions().show_legend(True)
             .display_mode(common.LegendDisplayMode.LIST)
             .placement(common.LegendPlacement.BOTTOM))
    _merge_and_rename(p, rename)
    return p


def heatmap_panel(title: str, description: str, query: Query, y_unit: str, scale: Scale, *,
                  width: int = 12, height: int = 8) -> heatmap.Panel:
    """Pre-bucketed heatmap (Prometheus `heatmap` format, buckets by `le`)."""
    p = heatmap.Panel()
    _common(p, title, description, [query], scale, width, height)
    p.calculate(False)
    p.y_axis(heatmap.YAxisConfig().unit(y_unit))
    p.cell_values(heatmap.CellValues().unit(scale.unit))
    # The SDK would emit steps=0 and fill="": set Grafana's own defaults explicitly.
    p.color(heatmap.HeatmapColorOptions().mode(heatmap_m.HeatmapColorMode.SCHEME)
            .scheme("Oranges").scale(heatmap_m.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5).steps(64).fill("dark-orange").reverse(False))
    return p
