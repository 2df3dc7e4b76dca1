"""Lifecycle events of the production model (the optional `lifecycle` topic): a replica
loaded a version or failed to, a version was rolled out or rolled back.

Decoding is pure and never raises on bad input, as for the other topics: each element of a
message (one object, a JSON array or NDJSON) becomes a `LifecycleEvent` or a `Rejection`
with its reason. Fields, limits and the fields each kind requires come from the contract's
table (`monitor.contract.LIFECYCLE`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from monitor.contract import (
    HOST,
    LIFECYCLE,
    LIFECYCLE_KIND,
    LOAD_FAILURE_REASON,
    LOAD_SECONDS,
    MODEL_NAME,
    SHA256,
    VERSION,
    RejectReason,
    Text,
)
from monitor.events import (
    Decoded,
    DecodeLimits,
    ModelClassIndex,
    _Bad,
    _optional_str,
    _text,
    _typed_number,
    decode_message,
    parse_timestamp,
)

LOADED, LOAD_FAILED, ROLLED_OUT, ROLLED_BACK = LIFECYCLE_KIND.values
_SHA256 = re.compile(SHA256.pattern or "")
#: kind -> the optional fields it requires
_NEEDS: dict[str, tuple[str, ...]] = {}
for _rule in LIFECYCLE.required_if:
    for _kind in _rule.values:
        _NEEDS[_kind] = _NEEDS.get(_kind, ()) + _rule.fields


class LifecycleEvent(NamedTuple):
    """One lifecycle event. `sha256` and `load_seconds` (s) are set for `loaded`, `reason`
    for `load_failed`; `host` for both."""

    kind: str
    ts: float
    model: str
    version: str
    host: str | None = None
    sha256: str | None = None
    load_seconds: float | None = None
    reason: str | None = None
    from_version: str | None = None


class LifecycleDecoder:
    """Decodes `lifecycle` records, each element accepted or refused on its own."""

    def __init__(self, models: Mapping[str, ModelClassIndex], limits: DecodeLimits) -> None:
        self._models = models
        self._limits = limits

    def decode(self, raw: bytes | None, now: float) -> Decoded:
        return decode_message(raw, self._limits, lambda item: self._event(item, now))

    def _event(self, obj: Any, now: float) -> LifecycleEvent:
        if type(obj) is not dict:
            raise _Bad(RejectReason.NOT_OBJECT, "a lifecycle event must be a JSON object")
        kind = _choice(obj, "kind", LIFECYCLE_KIND.values)
        for name in _NEEDS.get(kind, ()):
            if obj.get(name) is None:
                raise _Bad(RejectReason.MISSING_FIELD, f"{name} is required when kind is {kind}")
        model = _text(obj, "model", MODEL_NAME)
        version = _text(obj, "version", VERSION)
        if "ts" not in obj or obj["ts"] is None:
            raise _Bad(RejectReason.MISSING_FIELD, "ts is required")
        ts = parse_timestamp(obj["ts"], now, self._limits.max_future_skew_seconds)
        if model not in self._models:
            raise _Bad(RejectReason.UNKNOWN_MODEL, f"model {model[:64]!r} is not configured")
        host = _optional_text(obj, "host", HOST)
        sha = _optional_text(obj, "sha256", SHA256)
        if sha is not None and not _SHA256.fullmatch(sha):
            raise _Bad(RejectReason.OUT_OF_RANGE, "sha256 must be 64 lower-case hex digits")
        seconds = obj.get("load_seconds")
        if seconds is not None:
            seconds = _typed_number(seconds, "load_seconds", RejectReason.OUT_OF_RANGE)
            low, below = LOAD_SECONDS.minimum or 0.0, LOAD_SECONDS.below or 0.0
            if not low <= seconds < below:  # NaN fails both
                raise _Bad(RejectReason.OUT_OF_RANGE,
                           f"load_seconds must be >= {low:g} and < {below:g}")
        reason = (_choice(obj, "reason", LOAD_FAILURE_REASON.values)
                  if obj.get("reason") is not None else None)
        from_version = _optional_text(obj, "from_version", VERSION)
        _optional_str(obj, "detail")
        return LifecycleEvent(kind, ts, model, version, host, sha, seconds, reason,
                              from_version)


def _choice(obj: Mapping[str, Any], key: str, values: tuple[str, ...]) -> str:
    value = obj.get(key)
    if value is None:
        raise _Bad(RejectReason.MISSING_FIELD, f"{key} is required")
    if type(value) is not str:
        raise _Bad(RejectReason.WRONG_TYPE, f"{key} must be a string")
    if value not in values:
        raise _Bad(RejectReason.INVALID_CHOICE,
                   f"{key} {value[:64]!r} is not one of {', '.join(values)}")
    return value


def _optional_text(obj: Mapping[str, Any], key: str, rule: Text) -> str | None:
    return None if obj.get(key) is None else _text(obj, key, rule)
