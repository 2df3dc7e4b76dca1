"""PromQL building blocks checked against the metric catalog.

`series()` is the only place a metric name enters a query: it looks the short name up in
`monitor.catalog` and refuses a label the catalog entry does not declare, so renaming a metric
or a label breaks generation instead of leaving an empty panel. Grafana variables (`$model`,
`$version`, `$class`, `$window`) and interval macros (`$__rate_interval`, `$__range`) stay in
the text; Grafana substitutes them at query time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from monitor.catalog import CATALOG, metric
from monitor.cost_series import RECORDING_LABELS, RECORDINGS

#: One label matcher: (label, operator, value); operator is one of = != =~ !~.
Matcher = tuple[str, str, str]

#: Grafana's rate window: at least four scrape intervals (set by the data source's timeInterval).
RATE_INTERVAL = "$__rate_interval"
#: Grafana's dashboard time range, as a PromQL duration.
RANGE = "$__range"

_OPERATORS = frozenset({"=", "!=", "=~", "!~"})
_HISTOGRAM_PARTS = frozenset({"bucket", "sum", "count"})


def eq(label: str, value: str) -> Matcher:
    """`label="value"`."""
    return (label, "=", value)


def regex(label: str, pattern: str) -> Matcher:
    """`label=~"pattern"` (Prometheus anchors the pattern at both ends)."""
    return (label, "=~", pattern)


#: Matchers bound to the dashboards' template variables.
MODEL: Matcher = regex("model", "$model")
VERSION: Matcher = regex("version", "$version")
CLASS: Matcher = regex("class", "$class")
WINDOW: Matcher = eq("window", "$window")
MODEL_VERSION: tuple[Matcher, ...] = (MODEL, VERSION)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def alternation(values: Iterable[str]) -> str:
    """A regex matching exactly one of `values` (metacharacters escaped), e.g. `a|b\\.c`."""
    return "|".join(re.escape(v) for v in values)


def series(short: str, *matchers: Matcher, part: str = "") -> str:
    """A selector such as `visionmon_requests_total{model=~"$model"}`.

    `short` is the catalog name with or without the `visionmon_` prefix; `part` selects a
    histogram's `bucket`, `sum` or `count` series. Raises KeyError for a metric missing from
    the catalog and ValueError for a label the metric does not carry.
    """
    spec = CATALOG[metric(short)]
    name = spec.name
    allowed = set(spec.labels)
    if part:
        if spec.kind != "histogram" or part not in _HISTOGRAM_PARTS:
            raise ValueError(f"{spec.name} has no _{part} series (kind {spec.kind})")
        name = f"{spec.name}_{part}"
        if part == "bucket":
            allowed.add("le")
    for label, op, _ in matchers:
        if op not in _OPERATORS:
            raise ValueError(f"unknown matcher operator {op!r} for {spec.name}")
        if label not in allowed:
            raise ValueError(f"{spec.name} has no label {label!r}; it has {sorted(allowed)}")
    if not matchers:
        return name
    body = ",".join(f"{label}{op}{_quote(value)}" for label, op, value in matchers)
    return f"{name}{{{body}}}"


def recorded(name: str, *matchers: Matcher) -> str:
    """A selector of one of visionmon's cost and GPU recordings (`monitor.cost_series`),
    which carry the label `model` only. Raises KeyError for another name, ValueError for
    another label."""
    if name not in RECORDINGS:
        raise KeyError(f"{name!r} is not a visionmon recording; they are {list(RECORDINGS)}")
    for label, op, _ in matchers:
        if label not in RECORDING_LABELS or op not in _OPERATORS:
            raise ValueError(f"{name} takes matchers on {list(RECORDING_LABELS)}, got {label}{op}")
    if not matchers:
        return name
    return f"{name}{{{','.join(f'{k}{op}{_quote(v)}' for k, op, v in matchers)}}}"


def rate(selector: str, window: str = RATE_INTERVAL) -> str:
    """`rate(selector[window])`: per-second increase of a counter."""
    return f"rate({selector}[{window}])"


def increase(selector: str, window: str) -> str:
    """`increase(selector[window])`: counter increase over `window`."""
    return f"increase({selector}[{window}])"


def aggregate(op: str, expr: str, by: Sequence[str] = ()) -> str:
    """`op by (labels) (expr)`, or `op(expr)` without grouping labels."""
    if by:
        return f"{op} by ({', '.join(by)}) ({expr})"
    return f"{op}({expr})"


def total(expr: str, by: Sequence[str] = ()) -> str:
    """`sum by (...) (expr)`."""
    return aggregate("sum", expr, by)


_BINARY_OPERATORS = (" + ", " - ", " * ", " / ", " % ", " ^ ", " == ", " != ", " > ", " < ",
                     " >= ", " <= ", " and ", " or ", " unless ")


def _top_level(expr: str) -> str:
    """`expr` with everything inside brackets and string literals blanked out."""
    out: list[str] = []
    depth, quoted, escaped = 0, False, False
    for ch in expr:
        if quoted:
            quoted = escaped or ch != '"'
            escaped = not escaped and ch == "\\"
            out.append("_")
        elif ch == '"':
            quoted = True
            out.append("_")
        elif ch in "([{":
            depth += 1
            out.append("_")
        elif ch in ")]}":
            depth -= 1
            out.append("_")
        else:
            out.append(ch if depth == 0 else "_")
    return "".join(out)


def group(expr: str) -> str:
    """`expr` in parentheses when it has a top-level binary operator, else unchanged."""
    top = _top_level(expr)
    return f"({expr})" if any(op in top for op in _BINARY_OPERATORS) else expr


def ratio(numerator: str, denominator: str) -> str:
    """`numerator / denominator` (each grouped if needed); NaN where the denominator is 0."""
    return f"{group(numerator)} / {group(denominator)}"


def histogram_quantile(q: float, short: str, matchers: Sequence[Matcher],
                       by: Sequence[str] = (), window: str = RATE_INTERVAL) -> str:
    """The q-quantile (0 < q < 1) of a catalog histogram, in the histogram's unit."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile {q} must lie strictly between 0 and 1")
    buckets = rate(series(short, *matchers, part="bucket"), window)
    return f"histogram_quantile({q:g}, {total(buckets, ('le', *by))})"


def le_label(bound: float) -> str:
    """The `le` label value Prometheus client libraries write for a bucket bound (`0.25`, `1.0`)."""
    return repr(float(bound))
