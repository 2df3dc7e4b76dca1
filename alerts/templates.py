"""Alert annotation templates, written once and rendered two ways.

An annotation is a tuple of parts. `to_go()` turns it into the Go template Prometheus
expands; `render()` expands it in Python the way Prometheus would, which is what the
generated promtool tests expect. Keeping both in one place means a test's expected
text can never drift from the rule's template.

The Python renderings copy Prometheus' template functions: `humanizePercentage` is
`%.4g` of the value times 100, `humanizeDuration` prints d/h/m/s, and `printf` uses
Go's formatting (identical to Python's for the fixed-point verbs used here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Fmt = Literal["percent", "fixed1", "fixed2", "fixed3", "sci2", "integer", "duration"]

_GO_PIPES: dict[str, str] = {
    "percent": "humanizePercentage",
    "fixed1": 'printf "%.1f"',
    "fixed2": 'printf "%.2f"',
    "fixed3": 'printf "%.3f"',
    "sci2": 'printf "%.2e"',
    "integer": 'printf "%.0f"',
    "duration": "humanizeDuration",
}


@dataclass(frozen=True, slots=True)
class Text:
    """Literal text."""

    text: str


@dataclass(frozen=True, slots=True)
class Label:
    """The value of one of the alert's labels (`$labels.<name>`)."""

    name: str


@dataclass(frozen=True, slots=True)
class Value:
    """The alert's value (`$value`: the left-hand side of the expression)."""

    fmt: Fmt


@dataclass(frozen=True, slots=True)
class Query:
    """The first sample of a PromQL query run when the alert is evaluated.

    `promql` may contain `%q` placeholders filled, in order, with the alert's labels
    named in `label_args` (Go-quoted). Write other label values with single quotes.
    `key` names the value in `render(..., queries=)`; `missing` is shown when the query
    returns nothing."""

    key: str
    promql: str
    fmt: Fmt
    label_args: tuple[str, ...] = ()
    missing: str = "unknown"


@dataclass(frozen=True, slots=True)
class QueryList:
    """Every sample of a PromQL query, in the order the query returns them (`sort_desc`):
    `<label> (<value><suffix>)`, comma-separated; `missing` when it returns nothing.
    `promql` and `label_args` as for `Query`; `render(..., queries=)` takes the samples as
    (label value, value) pairs."""

    key: str
    promql: str
    label: str
    fmt: Fmt
    label_args: tuple[str, ...] = ()
    suffix: str = ""
    missing: str = "none"


Part = Text | Label | Value | Query | QueryList
Template = tuple[Part, ...]
#: What an annotation query returned: a value (Query; None when empty) or the samples
#: (QueryList).
QueryResult = float | None | tuple[tuple[str, float], ...]


def to_go(template: Template) -> str:
    """The Go template text Prometheus expands for this annotation."""
    out: list[str] = []
    for part in template:
        if isinstance(part, Text):
            out.append(part.text)
        elif isinstance(part, Label):
            out.append(f"{{{{ $labels.{part.name} }}}}")
        elif isinstance(part, Value):
            out.append(f"{{{{ $value | {_GO_PIPES[part.fmt]} }}}}")
        elif isinstance(part, QueryList):
            source = _query_source(part.promql, part.label_args)
            out.append(f"{{{{ range $i, $s := {source} }}}}{{{{ if $i }}}}, {{{{ end }}}}"
                       f"{{{{ $s.Labels.{part.label} }}}} ({{{{ $s.Value | "
                       f"{_GO_PIPES[part.fmt]} }}}}{part.suffix}){{{{ else }}}}{part.missing}"
                       "{{ end }}")
        else:
            source = _query_source(part.promql, part.label_args)
            out.append(f"{{{{ with {source} }}}}{{{{ . | first | value | "
                       f"{_GO_PIPES[part.fmt]} }}}}{{{{ else }}}}{part.missing}{{{{ end }}}}")
    return "".join(out)


def _query_source(promql: str, label_args: tuple[str, ...]) -> str:
    """The Go pipeline running `promql` (with `%q` filled from the alert's labels)."""
    if '"' in promql or "\\" in promql:
        raise ValueError(f"query {promql!r}: use single quotes inside queries")
    if label_args:
        args = " ".join(f"$labels.{a}" for a in label_args)
        return f'printf "{promql}" {args} | query'
    return f'query "{promql}"'



def render(template: Template, labels: Mapping[str, str], value: float,
           queries: Mapping[str, QueryResult] | None = None) -> str:
    """Expand the template as Prometheus would, given the alert's labels and value and
    the result of each query (None: the query returned nothing)."""
    queries = queries or {}
    out: list[str] = []
    for part in template:
        if isinstance(part, Text):
            out.append(part.text)
        elif isinstance(part, Label):
            out.append(labels.get(part.name, ""))
        elif isinstance(part, Value):
            out.append(go_format(part.fmt, value))
        elif isinstance(part, QueryList):
            samples = queries.get(part.key) or ()
            assert isinstance(samples, tuple), f"{part.key}: a QueryList takes samples"
            out.append(", ".join(f"{name} ({go_format(part.fmt, v)}{part.suffix})"
                                 for name, v in samples) or part.missing)
        else:
            result = queries.get(part.key)
            assert not isinstance(result, tuple), f"{part.key}: a Query takes one value"
            out.append(part.missing if result is None else go_format(part.fmt, result))
    return "".join(out)


def go_format(fmt: Fmt, v: float) -> str:
    """Format a sample value like the Prometheus template function named by `fmt`."""
    if fmt == "percent":
        return f"{_go_g4(v * 100)}%"
    if fmt == "fixed1":
        return f"{v:.1f}"
    if fmt == "fixed2":
        return f"{v:.2f}"
    if fmt == "fixed3":
        return f"{v:.3f}"
    if fmt == "sci2":
        return f"{v:.2e}"
    if fmt == "integer":
        return f"{v:.0f}"
    return humanize_duration(v)


def _go_g4(v: float) -> str:
    """Go's `%.4g` (C's rules: %e when the exponent is < -4 or >= 4, trailing zeros cut)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:.4g}"


def humanize_duration(v: float) -> str:
    """Prometheus' `humanizeDuration` for a number of seconds."""
    if math.isnan(v) or math.isinf(v):
        return _go_g4(v)
    if v == 0:
        return f"{_go_g4(v)}s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        whole = int(abs(v))
        seconds, minutes = whole % 60, (whole // 60) % 60
        hours, days = (whole // 3600) % 24, whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_go_g4(abs(v))}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{_go_g4(v)}{prefix}s"
