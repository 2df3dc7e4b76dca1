"""CloudEvents 1.0 over HTTP, as KServe's payload logger sends them (receiver side only).

Three content modes of the HTTP protocol binding are read:
- binary: attributes in `ce-*` headers (values percent-encoded), `Content-Type` is
  `datacontenttype` and the body is the data. This is what KServe's agent sends.
- structured: `Content-Type: application/cloudevents+json`, one JSON object holding the
  attributes and `data` (a JSON value) or `data_base64`.
- batched: `Content-Type: application/cloudevents-batch+json`, a JSON array of those.

Every failure raises `Malformed` with a bounded reason (a metric label value).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import orjson

REQUIRED = ("specversion", "id", "source", "type")
STRUCTURED = "application/cloudevents+json"
BATCHED = "application/cloudevents-batch+json"
#: KServe's event types (pkg/logger: CEInferenceRequest / CEInferenceResponse).
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


class Malformed(Exception):
    """An HTTP message or payload that cannot be used; `reason` is a metric label value."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One event: context attributes, extensions (lower-case names) and raw data bytes.

    In structured mode `data` is re-serialized JSON when the event carried a JSON value,
    so a consumer always parses bytes, whatever the mode.
    """

    id: str
    type: str
    source: str
    specversion: str
    time: str | None
    datacontenttype: str | None
    data: bytes
    extensions: Mapping[str, str] = field(default_factory=dict)

    def timestamp(self) -> float | None:
        """The `time` attribute in epoch seconds, or None when absent or unreadable."""
        if not self.time:
            return None
        try:
            return datetime.fromisoformat(self.time).timestamp()
        except ValueError:
            return None


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def parse_http(headers: Mapping[str, str], body: bytes) -> list[CloudEvent]:
    """Events carried by one HTTP request. `headers` keys are matched case-insensitively."""
    lower = {k.lower(): v for k, v in headers.items()}
    media = _media_type(lower.get("content-type"))
    if media == STRUCTURED:
        return [_from_structured(_json(body, "structured event"))]
    if media == BATCHED:
        doc = _json(body, "event batch")
        if not isinstance(doc, list):
            raise Malformed("not_cloudevent", "a batched body must be a JSON array")
        return [_from_structured(item) for item in doc]
    return [_from_binary(lower, body)]


def _json(body: bytes, what: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise Malformed("invalid_json", f"{what} is not JSON: {str(err)[:80]}") from None


def _from_binary(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    attrs = {k[3:]: unquote(v) for k, v in headers.items() if k.startswith("ce-") and len(k) > 3}
    missing = [a for a in REQUIRED if not attrs.get(a)]
    if missing:
        names = ", ".join("ce-" + a for a in missing)
        raise Malformed("not_cloudevent", f"missing header(s) {names}")
    return _event(attrs, headers.get("content-type"), body)


def _from_structured(doc: Any) -> CloudEvent:
    if not isinstance(doc, dict):
        raise Malformed("not_cloudevent", "a structured event must be a JSON object")
    missing = [a for a in REQUIRED if not isinstance(doc.get(a), str) or not doc.get(a)]
    if missing:
        raise Malformed("not_cloudevent", f"missing attribute(s) {', '.join(missing)}")
    ctype = doc.get("datacontenttype")
    if "data_base64" in doc:
        try:
            data = base64.b64decode(str(doc["data_base64"]), validate=True)
        except (binascii.Error, ValueError):
            raise Malformed("invalid_data", "data_base64 is not base64") from None
    elif "data" not in doc or doc["data"] is None:
        data = b""
    elif isinstance(doc["data"], str) and _media_type(ctype) not in ("", "application/json"):
        data = doc["data"].encode()  # text data of a non-JSON content type, kept verbatim
    else:
        data = orjson.dumps(doc["data"])
    attrs = {k: v if isinstance(v, str) else orjson.dumps(v).decode()
             for k, v in doc.items() if k not in ("data", "data_base64", "datacontenttype")}
    return _event(attrs, ctype if isinstance(ctype, str) else None, data)


def _event(attrs: Mapping[str, str], ctype: str | None, data: bytes) -> CloudEvent:
    if attrs["specversion"] != "1.0":
        raise Malformed("not_cloudevent", f"specversion {attrs['specversion'][:16]!r} is not 1.0")
    known = {*REQUIRED, "time", "subject", "dataschema"}
    ext = {k.lower(): v for k, v in attrs.items() if k not in known}
    return CloudEvent(id=attrs["id"], type=attrs["type"], source=attrs["source"],
                      specversion=attrs["specversion"], time=attrs.get("time"),
                      datacontenttype=ctype, data=data, extensions=ext)
