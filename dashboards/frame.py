"""What every visionmon dashboard shares: identity (uid, title, file), tags, template
variables, time settings and the links that move between the three dashboards with the
current variables and time range."""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from dashboards.panels import DATASOURCE
from dashboards.promql import MODEL, eq, series
from dashboards.queries import segment_keys
from monitor.config import LoadedConfig
from monitor.durations import parse_duration

#: Tag on every generated dashboard, so generated ones can be told from hand-made ones.
GENERATED_BY = "generated_by:visionmon"
TAGS = ("visionmon", GENERATED_BY)

#: Data source provisioned by `provisioning.py`; the `datasource` variable defaults to it.
DATASOURCE_NAME = "visionmon-prometheus"
DATASOURCE_UID = "visionmon-prometheus"


@dataclass(frozen=True, slots=True)
class DashboardIdentity:
    """Stable identity of one dashboard: the uid never changes, so links and bookmarks hold."""

    uid: str
    title: str
    filename: str
    refresh: str
    time_from: str


EXECUTIVE = DashboardIdentity("visionmon-executive", "visionmon / Executive",
                              "visionmon-executive.json", "5m", "now-7d")
ONCALL = DashboardIdentity("visionmon-oncall", "visionmon / On-call",
                           "visionmon-oncall.json", "30s", "now-3h")
DEBUG = DashboardIdentity("visionmon-debug", "visionmon / Debug",
                          "visionmon-debug.json", "1m", "now-24h")
ALL_DASHBOARDS = (EXECUTIVE, ONCALL, DEBUG)


def default_window(sizes: list[str]) -> str:
    """The window the dashboards open on: the shortest of at least one hour, else the longest.

    An hour holds enough labeled events for per-class figures without hiding a fresh incident.
    """
    by_length = sorted(sizes, key=parse_duration)
    hour_or_more = [s for s in by_length if parse_duration(s) >= 3600]
    return hour_or_more[0] if hour_or_more else by_length[-1]


def _multi_query_variable(name: str, label: str, query: str) -> dash.QueryVariable:
    return (dash.QueryVariable(name).label(label).datasource(DATASOURCE).query(query)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.NATURAL_ASC)
            .multi(True).include_all(True).all_value(".*")
            .current(VariableOption(selected=True, text="All", value="$__all")))


def variables(loaded: LoadedConfig) -> list[dash.QueryVariable | dash.DatasourceVariable
                                              | dash.CustomVariable]:
    """datasource, model, version (multi), class (multi), one per segment key (multi),
    window: in that order."""
    first_model = next(iter(loaded.models))
    sizes = loaded.config.windows.sizes
    window = default_window(sizes)
    requests = series("requests_total")
    return [
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
        .current(VariableOption(selected=True, text=DATASOURCE_NAME, value=DATASOURCE_UID)),
        dash.QueryVariable("model").label("Model").datasource(DATASOURCE)
        .query(f"label_values({requests}, model)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.NATURAL_ASC)
        .multi(False).include_all(False)
        .current(VariableOption(selected=True, text=first_model, value=first_model)),
        _multi_query_variable("version", "Version",
                              f"label_values({series('requests_total', MODEL)}, version)"),
        _multi_query_variable("class", "Class",
                              f"label_values({series('predictions_total', MODEL)}, class)"),
        *(_multi_query_variable(key, f"Segment {key}", "label_values("
                                f"{series('segment_requests_total', MODEL, eq('segment_key', key))}"
                                ", segment)") for key in segment_keys(loaded)),
        dash.CustomVariable("window").label("Window").values(",".join(sizes)).multi(False)
        .include_all(False).current(VariableOption(selected=True, text=window, value=window))
        .options([VariableOption(selected=s == window, text=s, value=s) for s in sizes]),
    ]


def links(current: DashboardIdentity) -> list[dash.DashboardLink]:
    """Links to the other two dashboards, carrying variables and time range."""
    return [
        dash.DashboardLink(other.title.split(" / ")[-1]).type(DashboardLinkType.LINK)
        .url(f"/d/{other.uid}").icon("dashboard").tooltip(other.title)
        .include_vars(True).keep_time(True).target_blank(False)
        for other in ALL_DASHBOARDS if other != current
    ]


def new_dashboard(identity: DashboardIdentity, loaded: LoadedConfig,
                  description: str) -> dash.Dashboard:
    """A dashboard with uid, title, tags, variables, links and time settings; no panels yet."""
    d = (dash.Dashboard(identity.title).uid(identity.uid)
         .description(f"{description} Generated by `visionmon dashboards generate`; "
                      "do not edit in the UI, regenerate instead.")
         .tags(list(TAGS)).refresh(identity.refresh).time(identity.time_from, "now")
         .timezone("browser").tooltip(DashboardCursorSync.CROSSHAIR).editable())
    for variable in variables(loaded):
        d.with_variable(variable)
    for link in links(identity):
        d.link(link)
    return d
