"""Event contract v1: typed events, and decoding of Kafka record bytes into events or
rejections with a reason.

Decoding is pure (the wall clock is passed in) and never raises on bad input: every
record becomes accepted events and/or `Rejection`s that keep the original bytes. The
fields' shapes and limits come from the contract's table (`monitor/contract.py`). Every
string of an accepted event is valid UTF-8: msgspec and orjson refuse lone UTF-16
surrogates while parsing, and the stdlib-json fallback's strings are checked (`_utf8`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple, TypeVar, Union, cast

import msgspec
import orjson

from monitor.contract import (
    CLASS_NAME,
    IMAGE_CONTENT_TYPE,
    IMAGE_HEADERS,
    LATENCY_MS,
    MAX_REQUEST_ID_CHARS,
    MODEL_NAME,
    PREDICTIONS,
    PROBABILITY,
    PROBS_TOLERANCE,
    REQUEST_ID,
    SEGMENT_HEADER_PREFIX,
    SEGMENT_KEY,
    SEGMENT_VALUE,
    SEGMENTS,
    VERSION,
    Choice,
    Integer,
    MapOf,
    Number,
    OneOf,
    RejectReason,
    Shape,
    Text,
)
from monitor.contract import CONTRACT_VERSION as CONTRACT_VERSION  # re-exported


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused record or batch element, with its original bytes for the dead-letter topic."""

    reason: RejectReason
    detail: str
    raw: bytes
    index: int | None = None  # position inside a batch message


class PredictionEvent(NamedTuple):
    """One served request. `pred` is a class index; confidence is NaN when the request failed.

    A NamedTuple rather than a frozen dataclass: it is built once per event on the hot
    path, and constructs about 3x faster while staying immutable."""

    request_id: str
    ts: float
    model: str
    version: str
    ok: bool
    pred: int
    confidence: float
    margin: float
    entropy: float
    latency_s: float
    top5: tuple[int, ...] = ()
    probs: tuple[float, ...] | None = None
    deployment: str | None = None
    #: the probabilities of the `top5` classes, in their order (from `probs` or `topk`;
    #: empty without either): what a large model's ROC-AUC is computed from
    top5_probs: tuple[float, ...] = ()
    #: segment key -> value as sent (`{"camera": "c12"}`); None when the event has none.
    #: Never mutated: events are shared by every statistics block
    segments: Mapping[str, str] | None = None


class FeedbackEvent(NamedTuple):
    """A ground-truth label; `label` is an index or a name, resolved against the model later."""

    request_id: str
    label: int | str
    ts: float
    source: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class ImageEvent:
    """A sampled input image: raw bytes plus the headers that tie it to its prediction."""

    request_id: str
    model: str
    version: str
    ts: float | None
    content_type: str | None
    data: bytes
    #: from the `segment.<key>` headers; None: the image has none (its prediction's apply)
    segments: Mapping[str, str] | None = None


@dataclass(slots=True)
class Decoded:
    """What one Kafka record decoded into."""

    events: list[Any] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class _Bad(Exception):
    """Internal: one element failed validation."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ModelClassIndex:
    """What decoding needs to know of one model: its classes and a name -> index map."""

    classes: tuple[str, ...]
    by_name: Mapping[str, int]

    @classmethod
    def of(cls, classes: Sequence[str]) -> ModelClassIndex:
        return cls(tuple(classes), {c: i for i, c in enumerate(classes)})


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_message_bytes: int = 1_048_576
    max_batch_events: int = 10_000
    max_future_skew_seconds: float = 300.0
    max_request_id_chars: int = MAX_REQUEST_ID_CHARS


def parse_json(raw: bytes) -> Any:
    """orjson first (fast); stdlib json as the fallback so NaN/Infinity literals reach
    validation and are refused as out of range rather than as bad JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError, UnicodeDecodeError) as err:
            raise _Bad(RejectReason.INVALID_JSON, f"not JSON: {str(err)[:120]}") from None


def parse_timestamp(value: Any, now: float, skew: float) -> float:
    """Epoch seconds (number) or RFC 3339 string with offset -> epoch seconds."""
    if isinstance(value, bool):
        raise _Bad(RejectReason.WRONG_TYPE, "ts must be a number or an RFC 3339 string")
    if isinstance(value, int | float):
        try:
            ts = float(value)
        except OverflowError:  # an integer beyond the float range
            raise _Bad(RejectReason.INVALID_TIMESTAMP, "ts is out of range") from None
    elif isinstance(value, str):
        _utf8(value, "ts")
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise _Bad(RejectReason.INVALID_TIMESTAMP, "ts is not RFC 3339") from None
        if dt.tzinfo is None:
            raise _Bad(RejectReason.INVALID_TIMESTAMP, "ts has no UTC offset")
        ts = dt.timestamp()
    else:
        raise _Bad(RejectReason.WRONG_TYPE, "ts must be a number or an RFC 3339 string")
    if not math.isfinite(ts) or ts < 0:
        raise _Bad(RejectReason.INVALID_TIMESTAMP, "ts must be finite and >= 0")
    if ts > now + skew:
        raise _Bad(RejectReason.TIMESTAMP_IN_FUTURE, f"ts is {ts - now:.0f} s in the future")
    return ts


def _utf8(value: str, what: str) -> str:
    """`value` when it can be written as UTF-8; a lone UTF-16 surrogate (which stdlib json
    decodes from `"\\ud800"`, or from its bytes) is refused: no checkpoint could hold it."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise _Bad(RejectReason.INVALID_UTF8,
                       f"{what} holds a lone UTF-16 surrogate: not valid UTF-8") from None
    return value


def _text(obj: Mapping[str, Any], key: str, rule: Text) -> str:
    """A required string field within `rule`'s length."""
    value = _typed_str(obj, key)
    if not _fits(value, rule):
        raise _Bad(RejectReason.OUT_OF_RANGE, f"{key} must have {_chars(rule)} characters")
    return value


def _fits(value: str, rule: Text) -> bool:
    most = rule.max_chars
    return rule.min_chars <= len(value) and (most is None or len(value) <= most)


def _chars(rule: Text) -> str:
    return f"{rule.min_chars}..{rule.max_chars}"


def _char_bounds(rule: Text) -> tuple[int, int]:
    """(fewest, most) characters of a bounded text shape."""
    if rule.max_chars is None:
        raise ValueError(f"{rule} has no upper bound")
    return rule.min_chars, rule.max_chars


def _closed(rule: Number) -> tuple[float, float]:
    """(lowest, highest) value of a number shape with both bounds inclusive, as floats:
    comparing a float with an int is slower than with a float (hot loop over `probs`)."""
    if rule.minimum is None or rule.maximum is None:
        raise ValueError(f"{rule} is not a closed range")
    return float(rule.minimum), float(rule.maximum)


def _half_open(rule: Number) -> tuple[float, float]:
    """(lowest, bound) of a number shape `lowest <= x < bound`."""
    if rule.minimum is None or rule.below is None:
        raise ValueError(f"{rule} is not a half-open range")
    return float(rule.minimum), float(rule.below)


# the limits the checks compare with, read once from the contract's table
_MODEL_FEWEST, _MODEL_MOST = _char_bounds(MODEL_NAME)
_VERSION_FEWEST, _VERSION_MOST = _char_bounds(VERSION)
_P_LOWEST, _P_HIGHEST = _closed(PROBABILITY)
_LATENCY_LOWEST, _LATENCY_BELOW = _half_open(LATENCY_MS)


def _class_index(value: Any, model: ModelClassIndex, what: str) -> int:
    if type(value) is int:
        if 0 <= value < len(model.classes):
            return value
        raise _Bad(RejectReason.UNKNOWN_CLASS,
                   f"{what} index {value} outside 0..{len(model.classes) - 1}")
    if type(value) is str:
        idx = model.by_name.get(value)
        if idx is None:
            raise _Bad(RejectReason.UNKNOWN_CLASS, f"{what} {value[:64]!r} is not a known class")
        return idx
    raise _Bad(RejectReason.WRONG_TYPE, f"{what} must be a class index or name")


def _entropy(probs: Sequence[float]) -> float:
    return -sum(p * math.log(p) for p in probs if p > 0.0)


class WirePrediction(msgspec.Struct, gc=False):
    """One prediction as typed on the wire (contract v1): field presence and JSON types
    only. What needs the model's class list or the clock is checked by `_checked`.

    `gc=False`: no field can hold a reference cycle, so the collector need not track it."""

    request_id: str
    ts: float | str
    model: str
    version: str
    pred: int | str | None = None
    confidence: float | None = None
    probs: list[float] | None = None
    topk: list[tuple[int | str, float]] | None = None
    latency_ms: float | None = None
    status: str = "ok"
    deployment: str | None = None
    segments: dict[str, str] | None = None


def _constrained(shape: Shape) -> Any:
    """The msgspec type that checks a scalar shape's limits while parsing; None for list
    shapes (their elements are checked after parsing, by `_checked`)."""
    if isinstance(shape, Text):
        meta: dict[str, Any] = {k: v for k, v in (("min_length", shape.min_chars or None),
                                                  ("max_length", shape.max_chars))
                                if v is not None}
        return Annotated[str, msgspec.Meta(**meta)] if meta else str
    if isinstance(shape, Number):
        meta = {k: v for k, v in (("ge", shape.minimum), ("le", shape.maximum),
                                  ("lt", shape.below)) if v is not None}
        return Annotated[float, msgspec.Meta(**meta)] if meta else float
    if isinstance(shape, Integer):
        return int if shape.minimum is None else Annotated[int, msgspec.Meta(ge=shape.minimum)]
    if isinstance(shape, Choice):
        return Literal[shape.values]
    if isinstance(shape, OneOf):
        options = [_constrained(o) for o in shape.options]
        return None if None in options else Union[tuple(options)]  # noqa: UP007
    if isinstance(shape, MapOf):
        return Annotated[dict[_constrained(shape.key), _constrained(shape.value)],  # type: ignore[misc]
                         msgspec.Meta(max_length=shape.max_items)]
    return None


def constrained_wire_type(models: Sequence[str], limits: DecodeLimits
                          ) -> type[WirePrediction]:
    """`WirePrediction` with the contract table's limits as msgspec constraints, so the
    parser checks them in C: string lengths (`request_id` up to the configured limit), the
    configured model names, status, and the ranges of ts, pred, confidence and latency. A
    message it refuses goes to the slow path."""
    # a configured name longer than the contract allows is refused, as the slow path does
    names = tuple(m for m in models if _fits(m, MODEL_NAME))
    fields: list[tuple[Any, ...]] = []
    for rule in PREDICTIONS.fields:
        shape = rule.shape
        if rule.name == "request_id":
            shape = _replace(REQUEST_ID, max_chars=limits.max_request_id_chars)
        kind = (Literal[names] if rule.name == "model" and names
                else _constrained(shape))
        if kind is None:
            continue  # keeps WirePrediction's type
        if rule.required:
            fields.append((rule.name, kind))
        elif rule.default is not None:
            fields.append((rule.name, kind, rule.default))
        else:
            fields.append((rule.name, kind | None, None))
    return cast(type[WirePrediction], msgspec.defstruct(
        "ConstrainedWirePrediction", fields, bases=(WirePrediction,), gc=False))


_new_tuple = tuple.__new__
_NAN = math.nan


def _typed_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        raise _Bad(RejectReason.MISSING_FIELD, f"{key} is required")
    if type(value) is not str:
        raise _Bad(RejectReason.WRONG_TYPE, f"{key} must be a string")
    return _utf8(value, key)


def _optional_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not str:
        raise _Bad(RejectReason.WRONG_TYPE, f"{key} must be a string")
    return _utf8(value, key)


def _typed_number(value: Any, what: str, overflow: RejectReason) -> float:
    if type(value) is not float and type(value) is not int:
        raise _Bad(RejectReason.WRONG_TYPE, f"{what} must be a number")
    try:
        return float(value)
    except OverflowError:  # an integer beyond the float range
        raise _Bad(overflow, f"{what} is out of range") from None


def _typed_class(value: Any, what: str) -> int | str:
    if type(value) is str:
        return _utf8(value, what)
    if type(value) is not int:
        raise _Bad(RejectReason.WRONG_TYPE, f"{what} must be a class index or name")
    return value


def wire_from_object(obj: Any) -> WirePrediction:
    """A parsed JSON value -> WirePrediction, refusing a missing field or a wrong type with
    its reason (the slow path: the fast one lets msgspec check the same shape)."""
    if type(obj) is not dict:
        raise _Bad(RejectReason.NOT_OBJECT, "an event must be a JSON object")
    request_id = _typed_str(obj, "request_id")
    model = _typed_str(obj, "model")
    version = _typed_str(obj, "version")
    ts = obj.get("ts")
    if ts is None:
        raise _Bad(RejectReason.MISSING_FIELD, "ts is required")
    if type(ts) is str:
        _utf8(ts, "ts")
    else:
        ts = _typed_number(ts, "ts", RejectReason.INVALID_TIMESTAMP)
    status = obj.get("status", "ok")
    if type(status) is not str:
        raise _Bad(RejectReason.WRONG_TYPE, "status must be 'ok' or 'error'")
    _utf8(status, "status")
    latency = obj.get("latency_ms")
    if latency is not None:
        latency = _typed_number(latency, "latency_ms", RejectReason.OUT_OF_RANGE)
    deployment = _optional_str(obj, "deployment")
    segments = _segments(obj.get("segments"))
    probs = obj.get("probs")
    if probs is not None:
        if type(probs) is not list:
            raise _Bad(RejectReason.WRONG_TYPE, "probs must be a list of numbers")
        probs = [_typed_number(p, "probs", RejectReason.OUT_OF_RANGE) for p in probs]
    topk = obj.get("topk")
    if topk is not None:
        if type(topk) is not list:
            raise _Bad(RejectReason.WRONG_TYPE, "topk must be a non-empty list of [class, prob]")
        entries: list[tuple[int | str, float]] = []
        for entry in topk:
            if type(entry) is not list or len(entry) != 2:
                raise _Bad(RejectReason.WRONG_TYPE, "topk entries must be [class, prob]")
            entries.append((_typed_class(entry[0], "topk class"),
                            _typed_number(entry[1], "topk prob", RejectReason.OUT_OF_RANGE)))
        topk = entries
    confidence = obj.get("confidence")
    if confidence is not None:
        confidence = _typed_number(confidence, "confidence", RejectReason.OUT_OF_RANGE)
    pred = obj.get("pred")
    if pred is not None:
        pred = _typed_class(pred, "pred")
    return WirePrediction(request_id, ts, model, version, pred, confidence, probs, topk,
                          latency, status, deployment, segments)


_SEGMENT_KEY_CHARS = _char_bounds(SEGMENT_KEY)
_SEGMENT_VALUE_CHARS = _char_bounds(SEGMENT_VALUE)


def _segments(value: Any) -> dict[str, str] | None:
    """The `segments` object of the slow path: string keys and values within their
    lengths, at most `SEGMENTS.max_items` entries (the fast path's msgspec type checks
    the same)."""
    if value is None:
        return None
    if type(value) is not dict:
        raise _Bad(RejectReason.WRONG_TYPE, "segments must be an object of strings")
    if len(value) > SEGMENTS.max_items:
        raise _Bad(RejectReason.OUT_OF_RANGE,
                   f"segments has more than {SEGMENTS.max_items} entries")
    kmin, kmax = _SEGMENT_KEY_CHARS
    vmin, vmax = _SEGMENT_VALUE_CHARS
    for k, v in value.items():
        if type(v) is not str:
            raise _Bad(RejectReason.WRONG_TYPE, "segments values must be strings")
        _utf8(k, "segments key")
        _utf8(v, "segments value")
        if not kmin <= len(k) <= kmax or not vmin <= len(v) <= vmax:
            raise _Bad(RejectReason.OUT_OF_RANGE,
                       f"segments keys must have {_chars(SEGMENT_KEY)} characters and values "
                       f"{_chars(SEGMENT_VALUE)}")
    return value


E = TypeVar("E")


def decode_elements(raw: bytes, max_events: int, check: Callable[[Any], E],
                    events: list[E], rejections: list[Rejection]) -> None:
    """Decode one message holding one JSON object, a JSON array of them or NDJSON: each
    element is `check`ed on its own, so a bad one is refused (with its original bytes and
    its index) and the others kept. A message that is not JSON, an empty batch or one of
    more than `max_events` elements is refused whole."""
    try:
        items, pieces = split_batch(raw, max_events)
    except _Bad as bad:
        rejections.append(Rejection(bad.reason, bad.detail, raw))
        return
    if not items:
        rejections.append(Rejection(RejectReason.EMPTY, "empty batch", raw))
        return
    if len(items) > max_events:
        rejections.append(Rejection(RejectReason.BATCH_TOO_LARGE,
                                    f"{len(items)} events > limit {max_events}", raw))
        return
    single = len(items) == 1 and pieces is None
    for i, item in enumerate(items):
        try:
            if type(item) is _Bad:
                raise item
            events.append(check(item))
        except _Bad as bad:
            piece = raw if single else _piece(items, pieces, i)
            rejections.append(Rejection(bad.reason, bad.detail, piece, None if single else i))


def decode_message(raw: bytes | None, limits: DecodeLimits, check: Callable[[Any], Any]
                   ) -> Decoded:
    """A whole message of JSON events (feedback, lifecycle): an empty one or one over
    `limits.max_message_bytes` is refused whole, else each element is `check`ed on its own
    (`decode_elements`)."""
    out = Decoded()
    if not raw:
        out.rejections.append(Rejection(RejectReason.EMPTY, "empty message", raw or b""))
    elif len(raw) > limits.max_message_bytes:
        out.rejections.append(Rejection(
            RejectReason.TOO_LARGE, f"{len(raw)} bytes > limit {limits.max_message_bytes}",
            raw))
    else:
        decode_elements(raw, limits.max_batch_events, check, out.events, out.rejections)
    return out


def _piece(items: list[Any], pieces: list[bytes] | None, i: int) -> bytes:
    """The bytes of element `i` for the dead-letter topic: its NDJSON line as sent, or the
    array element re-serialised."""
    if pieces is not None:
        return pieces[i]
    try:
        return orjson.dumps(items[i])
    except TypeError:
        return json.dumps(items[i]).encode()


def split_batch(raw: bytes, max_events: int) -> tuple[list[Any], list[bytes] | None]:
    """-> (elements, original byte pieces for NDJSON or None). An NDJSON line that is not
    JSON becomes a `_Bad` element, refused alone; more than `max_events` lines are
    returned unparsed (the caller refuses the message whole)."""
    body = raw.strip()
    if body[:1] == b"{" and b"\n" in body:
        pieces = [ln for ln in body.split(b"\n") if ln.strip()]
        if len(pieces) > max_events:
            return pieces, None  # refused whole by the caller
        try:  # one parser call for the whole batch when every line is valid
            joined = orjson.loads(b"[" + b",".join(pieces) + b"]")
            if len(joined) == len(pieces) and all(type(x) is dict for x in joined):
                return joined, pieces
        except orjson.JSONDecodeError:
            pass  # some line is bad: parse line by line to refuse only that one
        items: list[Any] = []
        for ln in pieces:
            try:
                items.append(parse_json(ln))
            except _Bad as bad:
                items.append(bad)
        if type(items[0]) is dict:
            return items, pieces
        # not NDJSON after all (e.g. one pretty-printed object): parse it whole
    doc = parse_json(raw)
    if type(doc) is list:
        return doc, None
    return [doc], None


class PredictionDecoder:
    """Decodes `predictions` records: one object, a JSON array, or newline-delimited objects.

    Fast path: msgspec parses and type-checks the whole message into `WirePrediction`s in
    one call, with the fixed ranges checked by the parser (`constrained_wire_type`). Any
    message it refuses, or with any element that fails a check, is decoded again on the
    slow path, element by element, so each refusal gets its exact reason and the good
    elements of a batch are kept."""

    def __init__(self, models: Mapping[str, ModelClassIndex], limits: DecodeLimits) -> None:
        self._models = models
        self._limits = limits
        self._n_classes = {name: len(m.classes) for name, m in models.items()}
        self._request_id_chars = (REQUEST_ID.min_chars, limits.max_request_id_chars)
        wire: Any = constrained_wire_type(list(models), limits)
        self._one = msgspec.json.Decoder(wire)
        self._many = msgspec.json.Decoder(list[wire])

    def decode(self, raw: bytes | None, now: float) -> Decoded:
        out = Decoded()
        self.decode_into(raw, now, out.events, out.rejections)
        return out

    def decode_into(self, raw: bytes | None, now: float, events: list[PredictionEvent],
                    rejections: list[Rejection]) -> None:
        """Hot path: append accepted events and rejections to the caller's lists."""
        if not raw:
            rejections.append(Rejection(RejectReason.EMPTY, "empty message", raw or b""))
            return
        if len(raw) > self._limits.max_message_bytes:
            rejections.append(Rejection(
                RejectReason.TOO_LARGE,
                f"{len(raw)} bytes > limit {self._limits.max_message_bytes}", raw))
            return
        if self._fast(raw, now, events):
            return
        self._slow(raw, now, events, rejections)

    def _fast(self, raw: bytes, now: float, events: list[PredictionEvent]) -> bool:
        """Decode a message whose every element is valid; False (nothing appended) else."""
        try:
            if raw[:1] == b"{":
                if b"\n" in raw:
                    body = raw.strip()
                    wires = self._many.decode(b"[" + body.replace(b"\n", b",") + b"]")
                else:
                    wires = [self._one.decode(raw)]
            else:
                wires = self._many.decode(raw)
        except (msgspec.MsgspecError, RecursionError):
            return False
        if not wires or len(wires) > self._limits.max_batch_events:
            return False
        common = self._common
        limit = now + self._limits.max_future_skew_seconds
        try:
            out = [common(w, now, limit) for w in wires]
        except _Bad:
            return False
        events.extend(out)
        return True

    def decode_singles(self, raws: Sequence[bytes | None], now: float
                       ) -> list[PredictionEvent] | None:
        """Many one-event messages in one parser call (their values joined into one JSON
        array): one event per message, in order. None when any message is not one valid
        event; the caller then decodes each on its own, with its reasons."""
        if (not raws or None in raws  # after this check, raws holds bytes only
                or max(map(len, cast(Sequence[bytes], raws))) > self._limits.max_message_bytes):
            return None
        try:
            wires = self._many.decode(b"[" + b",".join(raws) + b"]")  # type: ignore[arg-type]
        except (msgspec.MsgspecError, RecursionError):
            return None
        if len(wires) != len(raws):  # e.g. a message holding two comma-separated objects
            return None
        common = self._common
        limit = now + self._limits.max_future_skew_seconds
        try:
            return [common(w, now, limit) for w in wires]
        except _Bad:
            return None

    def _slow(self, raw: bytes, now: float, events: list[PredictionEvent],
              rejections: list[Rejection]) -> None:
        checked = self._checked
        decode_elements(raw, self._limits.max_batch_events,
                        lambda item: checked(wire_from_object(item), now), events, rejections)

    def _common(self, w: WirePrediction, now: float, limit: float) -> PredictionEvent:
        """`_checked` for a wire the constrained parser accepted (fast path only): the
        common event, a class index with confidence and no probs or topk, in a few
        comparisons; anything else goes to `_checked`. `limit` = now + allowed skew."""
        ts = w.ts
        pred = w.pred
        if (type(ts) is not float or ts > limit or type(pred) is not int
                or w.probs is not None or w.topk is not None
                or pred >= self._n_classes.get(w.model, 0)):
            return self._checked(w, now)
        conf = w.confidence
        lat = w.latency_ms
        return _new_tuple(PredictionEvent, (
            w.request_id, ts, w.model, w.version, w.status == "ok", pred,
            _NAN if conf is None else conf, _NAN, _NAN,
            _NAN if lat is None else lat / 1000.0, (), None, w.deployment, (),
            w.segments or None))

    def _checked(self, w: WirePrediction, now: float) -> PredictionEvent:
        """The checks that need the model's class list, the clock or the limits, for any
        wire (the slow path's, and the fast path's events that `_common` does not take)."""
        lim = self._limits
        request_id = w.request_id
        fewest, most = self._request_id_chars
        if not fewest <= len(request_id) <= most:
            raise _Bad(RejectReason.OUT_OF_RANGE,
                       f"request_id must have {fewest}..{most} characters")
        model_name = w.model
        if not _MODEL_FEWEST <= len(model_name) <= _MODEL_MOST:
            raise _Bad(RejectReason.OUT_OF_RANGE,
                       f"model must have {_chars(MODEL_NAME)} characters")
        version = w.version
        if not _VERSION_FEWEST <= len(version) <= _VERSION_MOST:
            raise _Bad(RejectReason.OUT_OF_RANGE,
                       f"version must have {_chars(VERSION)} characters")
        ts = w.ts
        if type(ts) is not float or not 0 <= ts <= now + lim.max_future_skew_seconds:
            ts = parse_timestamp(ts, now, lim.max_future_skew_seconds)
        model = self._models.get(model_name)
        if model is None:
            raise _Bad(RejectReason.UNKNOWN_MODEL, f"model {model_name[:64]!r} is not configured")
        status = w.status
        if status == "ok":
            ok = True
        elif status == "error":
            ok = False
        else:
            raise _Bad(RejectReason.INVALID_STATUS, "status must be 'ok' or 'error'")
        latency = w.latency_ms
        if latency is None:
            latency_s = math.nan
        elif not _LATENCY_LOWEST <= latency < _LATENCY_BELOW:
            raise _Bad(RejectReason.OUT_OF_RANGE,
                       f"latency_ms must be >= {_LATENCY_LOWEST:g} and < {_LATENCY_BELOW:g}")
        else:
            latency_s = latency / 1000.0

        n_classes = len(model.classes)
        probs_t: tuple[float, ...] | None = None
        top5: tuple[int, ...] = ()
        top5_probs: tuple[float, ...] = ()
        p1 = p2 = margin = entropy = math.nan
        argmax = -1
        probs = w.probs
        if probs is not None:
            if len(probs) != n_classes:
                raise _Bad(RejectReason.PROBS_LENGTH,
                           f"probs has {len(probs)} values, model has {n_classes} classes")
            lo, hi = _P_LOWEST, _P_HIGHEST
            for p in probs:
                if not lo <= p <= hi:  # NaN fails both comparisons
                    raise _Bad(RejectReason.OUT_OF_RANGE, "probs values must be in [0, 1]")
            total = math.fsum(probs)
            if abs(total - 1.0) > PROBS_TOLERANCE:
                raise _Bad(RejectReason.PROBS_SUM, f"probs sum to {total:.6g}, not 1 +- 1e-3")
            probs_t = tuple(probs)
            order = sorted(range(n_classes), key=probs_t.__getitem__, reverse=True)[:5]
            top5 = tuple(order)
            top5_probs = tuple(probs_t[i] for i in order)
            argmax = order[0]
            p1 = probs_t[order[0]]
            p2 = probs_t[order[1]] if n_classes > 1 else math.nan
            entropy = _entropy(probs_t)
            margin = p1 - p2
        if w.topk is not None:
            top_from_k, probs_from_k, k2 = self._topk(w.topk, model)
            if probs_t is None:
                top5, top5_probs = top_from_k, probs_from_k
                p1, p2 = probs_from_k[0], k2
                argmax = top5[0]
                margin = p1 - p2
        conf = w.confidence
        if conf is None:
            confidence = p1
        elif _P_LOWEST <= conf <= _P_HIGHEST:
            confidence = conf
        else:
            raise _Bad(RejectReason.OUT_OF_RANGE, "confidence must be in [0, 1]")

        pred = w.pred
        if type(pred) is not int or not 0 <= pred < n_classes:
            if pred is None:
                if ok and argmax < 0:
                    raise _Bad(RejectReason.MISSING_FIELD, "pred is required when status is ok")
                pred = argmax
            else:
                pred = _class_index(pred, model, "pred")
        if not ok and conf is None:
            confidence = math.nan
        return PredictionEvent(request_id, ts, model_name, version, ok, pred, confidence,
                               margin, entropy, latency_s, top5, probs_t, w.deployment,
                               top5_probs, w.segments or None)

    @staticmethod
    def _topk(topk: Sequence[tuple[int | str, float]], model: ModelClassIndex
              ) -> tuple[tuple[int, ...], tuple[float, ...], float]:
        """The first five classes of a `topk` list, their probabilities and the second
        probability (NaN for a list of one)."""
        if not topk:
            raise _Bad(RejectReason.WRONG_TYPE, "topk must be a non-empty list of [class, prob]")
        classes = [_class_index(c, model, "topk class") for c, _ in topk]
        probs = [p for _, p in topk]
        lo, hi = _P_LOWEST, _P_HIGHEST
        for p in probs:
            if not lo <= p <= hi:
                raise _Bad(RejectReason.OUT_OF_RANGE, "topk prob must be in [0, 1]")
        if any(a < b for a, b in itertools.pairwise(probs)):
            raise _Bad(RejectReason.TOPK_INVALID, "topk must be in descending probability")
        if len(set(classes)) != len(classes):
            raise _Bad(RejectReason.TOPK_INVALID, "topk repeats a class")
        if sum(probs) > 1.0 + PROBS_TOLERANCE:
            raise _Bad(RejectReason.TOPK_INVALID, "topk probabilities sum to more than 1")
        p2 = probs[1] if len(probs) > 1 else math.nan
        return tuple(classes[:5]), tuple(probs[:5]), p2


class FeedbackDecoder:
    """Decodes `feedback` records: `{request_id, label, ts, source?, model?}` objects, one
    per message or batched as predictions are (a JSON array, or NDJSON), each element
    accepted or refused on its own."""

    def __init__(self, models: Mapping[str, ModelClassIndex], limits: DecodeLimits) -> None:
        self._models = models
        self._limits = limits
        self._request_id = _replace(REQUEST_ID, max_chars=limits.max_request_id_chars)

    def decode(self, raw: bytes | None, now: float) -> Decoded:
        return decode_message(raw, self._limits, lambda item: self._event(item, now))

    def _event(self, obj: Any, now: float) -> FeedbackEvent:
        if type(obj) is not dict:
            raise _Bad(RejectReason.NOT_OBJECT, "feedback must be a JSON object")
        request_id = _text(obj, "request_id", self._request_id)
        if "label" not in obj or obj["label"] is None:
            raise _Bad(RejectReason.MISSING_FIELD, "label is required")
        label = obj["label"]
        if type(label) is int:
            if label < 0:
                raise _Bad(RejectReason.UNKNOWN_CLASS, "label index must be >= 0")
        elif type(label) is str:
            _utf8(label, "label")
            if not _fits(label, CLASS_NAME):
                raise _Bad(RejectReason.OUT_OF_RANGE,
                           f"label must have {_chars(CLASS_NAME)} characters")
        else:
            raise _Bad(RejectReason.WRONG_TYPE, "label must be a class index or name")
        if "ts" not in obj:
            raise _Bad(RejectReason.MISSING_FIELD, "ts is required")
        ts = parse_timestamp(obj["ts"], now, self._limits.max_future_skew_seconds)
        source = _optional_str(obj, "source")
        model_name = _optional_str(obj, "model")
        if model_name is not None:
            if not _fits(model_name, MODEL_NAME):
                raise _Bad(RejectReason.OUT_OF_RANGE,
                           f"model must have {_chars(MODEL_NAME)} characters")
            model = self._models.get(model_name)
            if model is None:
                raise _Bad(RejectReason.UNKNOWN_MODEL,
                           f"model {model_name[:64]!r} is not configured")
            label = _class_index(label, model, "label")
        return FeedbackEvent(request_id, label, ts, source, model_name)


IMAGE_CONTENT_TYPES = frozenset(IMAGE_CONTENT_TYPE.values)
#: the headers an image record must carry, non-empty
_IMAGE_REQUIRED = tuple(f.name for f in IMAGE_HEADERS.fields if f.required)


class ImageDecoder:
    """Checks the headers of `images` records; pixel decoding happens in reference_model."""

    def __init__(self, models: Mapping[str, ModelClassIndex], max_bytes: int,
                 limits: DecodeLimits) -> None:
        self._models = models
        self._max_bytes = max_bytes
        self._limits = limits

    def decode(self, raw: bytes | None, headers: Sequence[tuple[str, bytes | None]],
               now: float) -> Decoded:
        out = Decoded()
        try:
            out.events.append(self._event(raw, headers, now))
        except _Bad as bad:
            out.rejections.append(Rejection(bad.reason, bad.detail, raw or b""))
        return out

    def _event(self, raw: bytes | None, headers: Sequence[tuple[str, bytes | None]],
               now: float) -> ImageEvent:
        if not raw:
            raise _Bad(RejectReason.EMPTY, "empty image")
        if len(raw) > self._max_bytes:
            raise _Bad(RejectReason.TOO_LARGE, f"{len(raw)} bytes > limit {self._max_bytes}")
        h: dict[str, str] = {}
        for key, value in headers:
            if value is None:
                continue
            try:
                h[key.lower()] = value.decode("utf-8")
            except UnicodeDecodeError:  # strict: lone surrogates' bytes are refused too
                raise _Bad(RejectReason.INVALID_UTF8, f"header {key} is not UTF-8") from None
        for key in _IMAGE_REQUIRED:
            if not h.get(key):
                raise _Bad(RejectReason.MISSING_HEADER, f"header {key} is required")
        if len(h["request_id"]) > self._limits.max_request_id_chars:
            raise _Bad(RejectReason.OUT_OF_RANGE, "request_id header too long")
        if not _fits(h["model"], MODEL_NAME):
            raise _Bad(RejectReason.OUT_OF_RANGE, "model header too long")
        if h["model"] not in self._models:
            raise _Bad(RejectReason.UNKNOWN_MODEL, f"model {h['model'][:64]!r} is not configured")
        if len(h["version"]) > _VERSION_MOST:
            raise _Bad(RejectReason.OUT_OF_RANGE,
                       f"version header must have 1..{_VERSION_MOST} characters")
        ctype = h.get("content-type")
        if ctype is not None and ctype.split(";")[0].strip().lower() not in IMAGE_CONTENT_TYPES:
            raise _Bad(RejectReason.UNSUPPORTED_CONTENT_TYPE,
                       f"content-type {ctype[:64]!r}; expected one of "
                       f"{sorted(IMAGE_CONTENT_TYPES)}")
        ts: float | None = None
        if "ts" in h:
            raw_ts: Any = h["ts"]
            with contextlib.suppress(ValueError):
                raw_ts = float(raw_ts)
            ts = parse_timestamp(raw_ts, now, self._limits.max_future_skew_seconds)
        return ImageEvent(h["request_id"], h["model"], h["version"], ts,
                          ctype, raw, _header_segments(h))


_SEGMENT_HEADER = re.compile(r"segment\.([a-z_][a-z0-9_]*)")


def _header_segments(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The `segment.<key>` headers (names already lower-cased) as {key: value}; a header
    whose name is no segment key is ignored, a value of the wrong length refused."""
    out: dict[str, str] = {}
    vmin, vmax = _SEGMENT_VALUE_CHARS
    for name, value in headers.items():
        if not name.startswith(SEGMENT_HEADER_PREFIX):
            continue
        m = _SEGMENT_HEADER.fullmatch(name)
        if m is None:
            continue
        if not vmin <= len(value) <= vmax:
            raise _Bad(RejectReason.OUT_OF_RANGE,
                       f"header {name} must have {_chars(SEGMENT_VALUE)} characters")
        out[m[1]] = value
    return out or None
