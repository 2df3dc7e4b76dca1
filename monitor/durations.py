"""Prometheus-style durations (`30s`, `5m`, `1h`, `3d`, `2w`) <-> whole seconds.

One grammar for the whole config: `monitor.config` and `monitor.slo_spec` declare their
duration keys as `Duration`, and `alerts/` and `dashboards/` parse and format windows here.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_DURATION = re.compile(r"^(\d+)(s|m|h|d|w)$")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """'5m' -> 300 seconds. Accepts s, m, h, d, w units."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration; use a number and a unit, "
                         "e.g. 30s, 5m, 1h, 1d")
    return int(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def format_duration(seconds: int) -> str:
    """300 -> '5m': the largest unit that divides the value exactly (Prometheus style)."""
    for unit in ("w", "d", "h", "m"):
        size = _DURATION_SECONDS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _checked(text: str) -> str:
    parse_duration(text)
    return text


#: A config value that must be a duration; kept as written (`5m`) for the rules to quote.
Duration = Annotated[str, AfterValidator(_checked)]
