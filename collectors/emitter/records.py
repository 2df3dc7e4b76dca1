"""Contract v1 records (docs/events.md) built from what serving code knows.

Pure functions (and `file_sha256`, which reads a model artifact): a prediction, a label or
a lifecycle event becomes one JSON object serialized with orjson
(numpy arrays and scalars are accepted as they are); an image becomes the raw bytes plus
the headers the `images` topic requires. Validation here is limited to misuse of the API;
the daemon's decoders remain the judge of the values.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from collectors.kafka.client import Headers
from monitor.contract import SEGMENT_HEADER_PREFIX, SEGMENTS

_OPTS = orjson.OPT_SERIALIZE_NUMPY

#: Leading bytes of the image formats the contract accepts -> their media type.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


def sniff_image_type(data: bytes) -> str | None:
    """`image/jpeg`, `image/png` or `image/webp` from the file signature, else None."""
    for magic, ctype in _MAGIC:
        if data.startswith(magic):
            return ctype
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers (orjson serializes arrays but not every scalar)."""
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "ndim", 1) == 0 else value


def prediction_record(request_id: str, model: str, version: str, ts: float, *,
                      probs: Any = None, pred: int | str | None = None,
                      confidence: float | None = None,
                      topk: Sequence[tuple[int | str, float]] | Mapping[str, float] | None = None,
                      latency_s: float | None = None, latency_ms: float | None = None,
                      status: str = "ok", deployment: str | None = None,
                      segments: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The `predictions` object for one request (ts in epoch seconds, latency in s or ms).

    `topk` may be a list of (class, probability) pairs or a {class name: probability}
    mapping (TorchServe's classifier output); it is sent in descending probability order.
    `segments` says where the request came from (`{"camera": "c12"}`, strings).
    Raises ValueError for misuse: both latencies, an unknown status, an empty or
    non-string request id, model or version, segments that are not strings.
    """
    for name, value in (("request_id", request_id), ("model", model), ("version", version)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    if status not in ("ok", "error"):
        raise ValueError(f"status must be 'ok' or 'error', not {status!r}")
    if latency_s is not None and latency_ms is not None:
        raise ValueError("give latency_s or latency_ms, not both")
    rec: dict[str, Any] = {"request_id": request_id, "ts": ts, "model": model,
                           "version": version}
    if status == "error":
        rec["status"] = "error"
    if probs is not None:
        rec["probs"] = probs
    if pred is not None:
        rec["pred"] = _plain(pred)
    if confidence is not None:
        rec["confidence"] = float(confidence)
    if topk is not None:
        pairs = list(topk.items()) if isinstance(topk, Mapping) else list(topk)
        pairs.sort(key=lambda kv: -float(kv[1]))
        rec["topk"] = [[_plain(c), float(p)] for c, p in pairs]
    if latency_ms is None and latency_s is not None:
        latency_ms = float(latency_s) * 1000.0
    if latency_ms is not None and math.isfinite(latency_ms):
        rec["latency_ms"] = round(float(latency_ms), 3)
    if deployment is not None:
        rec["deployment"] = deployment
    if segments:
        rec["segments"] = checked_segments(segments)
    return rec


def checked_segments(segments: Mapping[str, str]) -> dict[str, str]:
    """`segments` as a plain dict, refusing (ValueError) what the daemon would refuse:
    non-string or wrongly sized keys and values, too many entries (monitor/contract.py)."""
    if len(segments) > SEGMENTS.max_items:
        raise ValueError(f"segments has more than {SEGMENTS.max_items} entries")
    out: dict[str, str] = {}
    for k, v in segments.items():
        for what, text, shape in (("key", k, SEGMENTS.key), ("value", v, SEGMENTS.value)):
            most = shape.max_chars or 0
            if not isinstance(text, str) or not shape.min_chars <= len(text) <= most:
                raise ValueError(f"segment {what} {text!r} must be a string of "
                                 f"{shape.min_chars}..{most} characters")
        out[k] = v
    return out


def label_record(request_id: str, label: int | str, ts: float, *, source: str | None = None,
                 model: str | None = None) -> dict[str, Any]:
    """The `feedback` object for one request's ground truth (ts in epoch seconds).

    `label` is a class index or name; `model` lets the daemon check the label on arrival
    (else it is resolved against the prediction's model at the join). Raises ValueError
    for misuse: an empty or non-string request id, model or source, a label that is
    neither a non-negative integer nor a non-empty string.
    """
    if not isinstance(request_id, str) or not request_id:
        raise ValueError("request_id must be a non-empty string")
    label = _plain(label)
    index = isinstance(label, int) and not isinstance(label, bool) and label >= 0
    if not (index or (isinstance(label, str) and label)):
        raise ValueError(f"label must be a class index >= 0 or a class name, not {label!r}")
    rec: dict[str, Any] = {"request_id": request_id, "label": label, "ts": ts}
    for name, value in (("source", source), ("model", model)):
        if value is not None:
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
            rec[name] = value
    return rec


#: The kinds of lifecycle event (the contract's `kind` values).
LIFECYCLE_KINDS = ("loaded", "load_failed", "rolled_out", "rolled_back")


def lifecycle_record(kind: str, model: str, version: str, ts: float, *,
                     host: str | None = None, sha256: str | None = None,
                     load_seconds: float | None = None, reason: str | None = None,
                     from_version: str | None = None, detail: str | None = None
                     ) -> dict[str, Any]:
    """The `lifecycle` object for one event (ts in epoch seconds, load time in seconds).

    Raises ValueError for misuse: an unknown kind, an empty or non-string model, version or
    host, a `loaded` event without its hash, host and load time, a `load_failed` one without
    its host and reason. The daemon checks the values (hash format, reason list)."""
    if kind not in LIFECYCLE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(LIFECYCLE_KINDS)}, not {kind!r}")
    rec: dict[str, Any] = {"kind": kind, "ts": ts, "model": model, "version": version}
    optional = {"host": host, "sha256": sha256, "reason": reason,
                "from_version": from_version, "detail": detail}
    for name, value in (("model", model), ("version", version), *optional.items()):
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"{name} must be a non-empty string")
    needs = {"loaded": ("host", "sha256", "load_seconds"), "load_failed": ("host", "reason")}
    given = {**optional, "load_seconds": load_seconds}
    missing = [n for n in needs.get(kind, ()) if given[n] is None]
    if missing:
        raise ValueError(f"a {kind} event needs {', '.join(missing)}")
    if load_seconds is not None:
        rec["load_seconds"] = round(float(load_seconds), 6)
    rec.update({k: v for k, v in optional.items() if v is not None})
    return rec


def file_sha256(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 (64 lower-case hex digits) of a model artifact, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def load_failure_reason(err: BaseException) -> str:
    """The contract's load-failure `reason` for an exception raised while loading a model:
    not_found, out_of_memory, timeout, corrupt (an archive or pickle that does not read
    back), or other."""
    text = str(err).lower()
    if isinstance(err, FileNotFoundError):
        return "not_found"
    if isinstance(err, MemoryError) or "out of memory" in text:
        return "out_of_memory"
    if isinstance(err, TimeoutError):
        return "timeout"
    if isinstance(err, EOFError | zipfile.BadZipFile | pickle.UnpicklingError):
        return "corrupt"
    return "other"


def encode_event(record: Mapping[str, Any]) -> bytes:
    """One NDJSON line (no trailing newline)."""
    return orjson.dumps(record, option=_OPTS)


def image_headers(request_id: str, model: str, version: str, ts: float,
                  content_type: str | None, segments: Mapping[str, str] | None = None
                  ) -> Headers:
    """Headers of an `images` record; `ts` in epoch seconds; each segment as a
    `segment.<key>` header."""
    headers: list[tuple[str, bytes | None]] = [
        ("request_id", request_id.encode()), ("model", model.encode()),
        ("version", version.encode()), ("ts", repr(float(ts)).encode())]
    if content_type:
        headers.append(("content-type", content_type.encode()))
    for key, value in (segments or {}).items():
        headers.append((f"{SEGMENT_HEADER_PREFIX}{key}", value.encode()))
    return tuple(headers)
