"""What a generated promtool test is written in: promtool's series notation, durations and
series names, shared by the SLO scenarios and the threshold-check cases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from alerts.rules import number


class ScenarioError(ValueError):
    """No scenario could be built that shows an alert firing (the spec is unusual)."""


def series_values(values: Sequence[float]) -> str:
    """promtool's expanding notation: runs of a constant step become `a+bxn`."""
    out, i = [], 0
    while i < len(values):
        j = i
        if i + 1 < len(values):
            d = values[i + 1] - values[i]
            j = i + 1
            while j + 1 < len(values) and values[j + 1] - values[j] == d:
                j += 1
        else:
            d = 0
        sign = "+" if d >= 0 else "-"
        out.append(f"{number(values[i])}{sign}{number(abs(d))}x{j - i}")
        i = j + 1
    return " ".join(out)


def steps_text(steps: int, step_s: int) -> str:
    """A Prometheus duration, hours at most (`24h44m` reads better than `1484m`)."""
    seconds = steps * step_s
    if seconds == 0:
        return "0s"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v)


def labels_text(name: str, labels: Mapping[str, str]) -> str:
    """`name{k="v",...}` as an input series of a promtool test."""
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"
