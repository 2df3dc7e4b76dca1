"""docs/runbooks/: one page per alert the generator can emit, each naming only metrics,
recording rules and dashboard panels that exist and PromQL that parses; and the generated
rules link to those pages by default.

Conventions a runbook follows (docs/runbooks/README.md says them to the reader):
- a panel is written **Dashboard › Panel title** (`Executive`, `On-call` or `Debug`);
- PromQL sits in ```promql blocks, one query per line, alert labels as `<model>` in quotes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest
import yaml

from alerts import names
from alerts.checks import CHECKS
from alerts.spec import build_spec
from monitor.catalog import CATALOG, CLIENT_CATALOG
from monitor.config import ConfigError, parse_config, resolve
from monitor.slo_spec import DEFAULT_RUNBOOK_BASE_URL
from tests.alerts.conftest import ROOT, with_slos
from tests.alerts.test_rules import rule_files, series_names
from visionmon.config_docs import _slug

RUNBOOKS = ROOT / "docs" / "runbooks"
INDEX = RUNBOOKS / "README.md"
DASHBOARDS = ROOT / "dashboards" / "generated" / "dashboards"
PROMTOOL = shutil.which("promtool")

#: Series Prometheus itself provides, which a runbook may query.
PROMETHEUS_SERIES = frozenset({"ALERTS", "ALERTS_FOR_STATE", "up"})
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"instance", "job"})
#: Every series a runbook may query: the daemon's and the serving side's (emitter, bridge).
SERIES = CATALOG.series_names() | CLIENT_CATALOG.series_names()
#: What its prose may name besides: metric families (a histogram's bare name).
FAMILIES = {spec.name for catalog in (CATALOG, CLIENT_CATALOG) for spec in catalog}

_PANEL = re.compile(r"\*\*([^*›]+?)\s+›\s+([^*]+)\*\*")
_PROMQL_BLOCK = re.compile(r"^[ \t]*```promql\n(.*?)^[ \t]*```", re.S | re.M)
_METRIC_WORD = re.compile(r"(?<![A-Za-z0-9_:])(visionmon_[a-z0-9_]+)")
_RECORDING_WORD = re.compile(r"(?<![A-Za-z0-9_:])(slo:[a-z0-9_:]+)")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^{}]*)\}")
_LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")


def generator_alerts() -> set[str]:
    """Every alert name the generator can emit: one per threshold check, and the SLO alert."""
    return {d.alert for d in CHECKS} | {names.SLO_ALERT}


@dataclass(frozen=True, slots=True)
class Runbook:
    """One page of docs/runbooks/: `alert` is its file's stem."""

    alert: str
    text: str

    @property
    def queries(self) -> list[str]:
        """The PromQL of its ```promql blocks, one query per non-empty, non-comment line."""
        return [line.strip() for block in _PROMQL_BLOCK.findall(self.text)
                for line in block.splitlines()
                if line.strip() and not line.strip().startswith("#")]

    @property
    def panels(self) -> list[tuple[str, str]]:
        """(dashboard, panel title) of each **Dashboard › Panel title**, line breaks undone."""
        return [(" ".join(d.split()), " ".join(t.split())) for d, t in _PANEL.findall(self.text)]


def runbook(alert: str) -> Runbook:
    return Runbook(alert, (RUNBOOKS / f"{alert}.md").read_text())


def pages() -> list[Runbook]:
    """Every page in docs/runbooks/, the index included."""
    return [Runbook(p.stem, p.read_text()) for p in sorted(RUNBOOKS.glob("*.md"))]


def dashboard_panels() -> dict[str, set[str]]:
    """Generated dashboard name (`On-call`, from `visionmon / On-call`) -> its panel titles,
    rows included."""
    out: dict[str, set[str]] = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        doc = json.loads(path.read_text())
        titles: set[str] = set()
        stack = list(doc["panels"])
        while stack:
            panel = stack.pop()
            titles.add(panel["title"])
            stack += panel.get("panels", [])
        out[doc["title"].removeprefix("visionmon / ")] = titles
    return out


def recorded_names() -> set[str]:
    """Every recording rule the generator writes for the example config."""
    return {r["record"] for doc in rule_files(ROOT / "alerts" / "generated")
            for g in doc["groups"] for r in g["rules"] if "record" in r}


def _ids(items: list[Runbook]) -> list[str]:
    return [r.alert for r in items]


# --- one runbook per alert ---------------------------------------------------------


@pytest.mark.parametrize("alert", sorted(generator_alerts()))
def test_every_alert_the_generator_can_emit_has_a_runbook(alert):
    page = RUNBOOKS / f"{alert}.md"
    assert page.is_file(), f"{alert} has no runbook: write docs/runbooks/{alert}.md"
    text = page.read_text()
    assert text.startswith(f"# {alert}\n"), f"{page.name} must open with '# {alert}'"
    for heading in ("## What fired", "## First three things to look at",
                    "## Telling the causes apart", "## Roll back or ticket"):
        assert f"\n{heading}\n" in text, f"{page.name} lacks the section {heading!r}"
    assert "](README.md#the-on-call-routine)" in text, f"{page.name} must link the routine"


def test_the_generated_rules_emit_only_alerts_the_runbook_test_knows(generated):
    """The example config turns every check on: whatever alert name its rules carry must be
    one `generator_alerts()` enumerates, so no emitted alert escapes the test above."""
    emitted = {r["alert"] for doc in rule_files(generated) for g in doc["groups"]
               for r in g["rules"] if "alert" in r}
    assert emitted == generator_alerts()


def test_every_runbook_is_for_an_alert_and_listed_in_the_index():
    index = INDEX.read_text()
    for page in pages():
        if page.alert == "README":
            continue
        assert page.alert in generator_alerts(), f"{page.alert}.md: no alert has this name"
        assert f"]({page.alert}.md)" in index, f"README.md does not link {page.alert}.md"


# --- what a runbook names exists -----------------------------------------------------


@pytest.mark.parametrize("page", pages(), ids=_ids(pages()))
def test_every_metric_and_recording_rule_a_runbook_names_exists(page):
    unknown = sorted(set(_METRIC_WORD.findall(page.text)) - SERIES - FAMILIES)
    assert not unknown, f"{page.alert}.md names metrics not in the catalog: {unknown}"
    unrecorded = sorted(set(_RECORDING_WORD.findall(page.text)) - recorded_names())
    assert not unrecorded, f"{page.alert}.md names recording rules never written: {unrecorded}"


@pytest.mark.parametrize("page", pages(), ids=_ids(pages()))
def test_every_panel_a_runbook_names_is_on_its_dashboard(page):
    panels = dashboard_panels()
    assert page.text.count("›") == len(page.panels), \
        f"{page.alert}.md: write panels as **Dashboard › Panel title**"
    for dashboard, title in page.panels:
        assert dashboard in panels, f"{page.alert}.md: no dashboard {dashboard!r}; " \
                                    f"the dashboards are {sorted(panels)}"
        assert title in panels[dashboard], f"{page.alert}.md: {dashboard} has no panel " \
                                           f"{title!r}"


@pytest.mark.parametrize("page", pages(), ids=_ids(pages()))
def test_every_query_reads_known_series_with_their_labels(page):
    """A query reads what /metrics serves (a histogram's `_bucket`, never its bare name), a
    recording rule or one of Prometheus' own series, and matches only labels it carries."""
    readable = SERIES | recorded_names() | PROMETHEUS_SERIES
    for query in page.queries:
        unknown = sorted(series_names(query) - readable)
        assert not unknown, f"{page.alert}.md: no such series {unknown}: {query}"
        for name, body in _SELECTOR.findall(query):
            spec = CATALOG.family_of(name) or CLIENT_CATALOG.family_of(name)
            if spec is None:
                continue
            allowed = set(spec.labels) | TARGET_LABELS | (
                {"le"} if name.endswith("_bucket") else set())
            unknown = sorted(set(_MATCHER.findall(body)) - allowed)
            assert not unknown, f"{page.alert}.md: {name} has no label {unknown}: {query}"


@pytest.mark.parametrize("page", pages(), ids=_ids(pages()))
def test_every_link_of_a_runbook_reaches_a_page_and_heading(page):
    for target, anchor in _LINK.findall(page.text):
        path = (RUNBOOKS / target) if target else RUNBOOKS / f"{page.alert}.md"
        assert path.is_file(), f"{page.alert}.md links a missing page {target!r}"
        if anchor:
            headings = {_slug(line.lstrip("#")) for line in path.read_text().splitlines()
                        if line.startswith("#")}
            assert anchor in headings, f"{page.alert}.md: {target} has no heading #{anchor}"


def test_the_runbooks_hold_queries_and_panels_for_the_checks_above_to_read():
    """The checks above pass vacuously on pages without queries or panels."""
    for alert in generator_alerts():
        page = runbook(alert)
        assert len(page.queries) >= 2, f"{alert}.md has fewer than two PromQL queries"
        assert page.panels, f"{alert}.md names no dashboard panel"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package "
                    "prometheus)")
@pytest.mark.parametrize("page", pages(), ids=_ids(pages()))
def test_every_query_in_a_runbook_parses(page, tmp_path):
    """promtool parses each query as the expression of a recording rule."""
    if not page.queries:
        pytest.skip(f"{page.alert}.md has no query")
    rules = [{"record": f"runbook:query_{i}", "expr": q} for i, q in enumerate(page.queries)]
    path = tmp_path / f"{page.alert}.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": page.alert, "rules": rules}]}))
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, f"{page.alert}.md:\n{result.stdout}{result.stderr}"


# --- the generated rules link to them --------------------------------------------------


def _runbook_urls(groups) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for g in groups:
        for r in g["rules"]:
            if "alert" in r:
                out.setdefault(r["alert"], set()).add(r["annotations"]["runbook_url"])
    return out


def test_every_generated_alert_links_its_runbook_under_the_base_url(generated):
    urls = _runbook_urls(g for doc in rule_files(generated) for g in doc["groups"])
    assert set(urls) == generator_alerts()
    for alert, links in urls.items():
        assert links == {f"{DEFAULT_RUNBOOK_BASE_URL}{alert}.md"}
        assert (RUNBOOKS / f"{alert}.md").is_file()


def test_the_committed_prometheus_rule_links_the_runbooks_too():
    doc = yaml.safe_load((ROOT / "deploy" / "prometheusrule.yaml").read_text())
    urls = _runbook_urls(doc["spec"]["groups"])
    assert urls and all(links == {f"{DEFAULT_RUNBOOK_BASE_URL}{a}.md"}
                        for a, links in urls.items())


def _spec_without_runbook_keys(example_data, **slos):
    data = dict(example_data)
    kept = {k: v for k, v in data["slos"].items()
            if k not in ("runbook_url", "runbook_base_url")}
    data["slos"] = {**kept, **slos}
    return build_spec(resolve(parse_config(data, "test.yaml"), "test.yaml"))


URLS = [
    ("a config that says nothing links visionmon's runbooks",
     {}, f"{DEFAULT_RUNBOOK_BASE_URL}{{alert}}.md"),
    ("a base URL gets each alert's file appended",
     {"runbook_base_url": "https://git.example.com/ops/visionmon/-/blob/v0.1.0/docs/runbooks/"},
     "https://git.example.com/ops/visionmon/-/blob/v0.1.0/docs/runbooks/{alert}.md"),
    ("an explicit runbook_url template is kept as written",
     {"runbook_url": "https://wiki.example.com/{model}/{alert}"},
     "https://wiki.example.com/{model}/{alert}"),
]


@pytest.mark.parametrize(("sentence", "slos", "template"), URLS, ids=[u[0] for u in URLS])
def test_the_runbook_link_template(example_data, sentence, slos, template):
    assert _spec_without_runbook_keys(example_data, **slos).runbook_url == template


REFUSED = [
    ("a base URL must end with a slash",
     {"runbook_base_url": "https://docs.example.com/runbooks"},
     ["slos.runbook_base_url", "must end with /"]),
    ("a base URL takes no placeholder",
     {"runbook_base_url": "https://docs.example.com/{model}/"},
     ["slos.runbook_base_url", "use runbook_url for a template"]),
    ("a runbook_url and a base URL together are refused",
     {"runbook_url": "https://wiki.example.com/{alert}"},
     ["runbook_url and runbook_base_url are both set"]),
]


@pytest.mark.parametrize(("sentence", "slos", "fragments"), REFUSED,
                         ids=[r[0] for r in REFUSED])
def test_a_bad_runbook_setting_is_refused(example_data, sentence, slos, fragments):
    """The example config sets runbook_base_url, so a runbook_url added to it is a second."""
    with pytest.raises(ConfigError) as err:
        with_slos(example_data, **slos)
    for fragment in fragments:
        assert fragment in str(err.value), f"{fragment!r} not in {err.value}"


def test_the_scanners_find_panels_metrics_and_queries():
    """The conventions the checks read, on a sample page."""
    page = Runbook("Sample", "See **On-call › Consumer\n   lag** and visionmon_up.\n"
                             "  ```promql\n  # comment\n  sum(visionmon_up)\n\n"
                             "  up{job=\"x\"}\n  ```\n"
                             "Then slo:current_burn_rate:ratio.\n")
    assert page.panels == [("On-call", "Consumer lag")]
    assert page.queries == ["sum(visionmon_up)", 'up{job="x"}']
    assert _METRIC_WORD.findall(page.text) == ["visionmon_up", "visionmon_up"]
    assert _RECORDING_WORD.findall(page.text) == ["slo:current_burn_rate:ratio"]
    assert _MATCHER.findall('model="<model>",version=~"a|b", le!="1.0"') == \
        ["model", "version", "le"]
