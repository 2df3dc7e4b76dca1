"""Decoding the event contract: tables of good and bad inputs, and agreement with the
shipped JSON Schemas."""

from __future__ import annotations

import json
import math
from importlib import resources

import jsonschema
import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from monitor.events import (
    DecodeLimits,
    FeedbackDecoder,
    ImageDecoder,
    ModelClassIndex,
    PredictionDecoder,
    RejectReason,
)

CLASSES = ["cat", "dog", "bird"]
MODELS = {"m": ModelClassIndex.of(CLASSES)}
NOW = 1_700_000_000.0
DEC = PredictionDecoder(MODELS, DecodeLimits(max_message_bytes=2000, max_batch_events=50))


def ev(**kw):
    base = {"request_id": "r1", "ts": NOW - 5, "model": "m", "version": "v1"}
    base.update(kw)
    return base


def decode(obj) -> tuple[list, list]:
    raw = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    d = DEC.decode(raw, NOW)
    return d.events, [r.reason for r in d.rejections]


GOOD = [
    ("class index", ev(pred=1, confidence=0.7), 1, 0.7),
    ("class name", ev(pred="bird", confidence=0.4), 2, 0.4),
    ("confidence derived from probs", ev(probs=[0.1, 0.7, 0.2]), 1, 0.7),
    ("confidence derived from topk", ev(topk=[["dog", 0.6], [0, 0.3]]), 1, 0.6),
    ("rfc3339 timestamp", ev(pred=0, confidence=0.5, ts="2023-11-14T22:13:00Z"), 0, 0.5),
    ("probs within tolerance", ev(probs=[0.3333, 0.3333, 0.3333]), 0, 0.3333),
]


@pytest.mark.parametrize(("title", "obj", "pred", "conf"), GOOD, ids=[g[0] for g in GOOD])
def test_good_prediction_is_accepted(title, obj, pred, conf):
    events, rejects = decode(obj)
    assert rejects == []
    assert events[0].pred == pred
    assert math.isclose(events[0].confidence, conf)


def test_margin_and_entropy_come_from_probs():
    (e,), _ = decode(ev(probs=[0.1, 0.7, 0.2]))
    assert math.isclose(e.margin, 0.5)
    assert math.isclose(e.entropy, -sum(p * math.log(p) for p in (0.1, 0.7, 0.2)))
    assert e.top5 == (1, 2, 0)


def test_error_status_needs_no_pred():
    (e,), rejects = decode(ev(status="error", latency_ms=30))
    assert rejects == [] and not e.ok and e.latency_s == 0.03


BAD = [
    ("not json", b"{nope", RejectReason.INVALID_JSON),
    ("empty JSON array", b"[]", RejectReason.EMPTY),
    ("empty message", b"", RejectReason.EMPTY),
    ("NaN literal", b'{"request_id":"r","ts":1,"model":"m","version":"v","pred":0,'
     b'"confidence":NaN}', RejectReason.OUT_OF_RANGE),
    ("Infinity latency", b'{"request_id":"r","ts":1,"model":"m","version":"v","pred":0,'
     b'"latency_ms":Infinity}', RejectReason.OUT_OF_RANGE),
    ("missing request_id", {"ts": 1, "model": "m", "version": "v", "pred": 0},
     RejectReason.MISSING_FIELD),
    ("missing pred on ok", ev(confidence=0.5), RejectReason.MISSING_FIELD),
    ("bool as pred", ev(pred=True), RejectReason.WRONG_TYPE),
    ("negative latency", ev(pred=0, latency_ms=-1), RejectReason.OUT_OF_RANGE),
    ("probs wrong length", ev(probs=[0.5, 0.5]), RejectReason.PROBS_LENGTH),
    ("probs not summing to one", ev(probs=[0.5, 0.5, 0.5]), RejectReason.PROBS_SUM),
    ("topk ascending", ev(topk=[[0, 0.2], [1, 0.7]]), RejectReason.TOPK_INVALID),
    ("unknown class name", ev(pred="fish"), RejectReason.UNKNOWN_CLASS),
    ("class index out of range", ev(pred=3), RejectReason.UNKNOWN_CLASS),
    ("unknown model", ev(model="x", pred=0), RejectReason.UNKNOWN_MODEL),
    ("timestamp far in the future", ev(pred=0, ts=NOW + 86400), RejectReason.TIMESTAMP_IN_FUTURE),
    ("timestamp without offset", ev(pred=0, ts="2023-11-14T22:13:00"),
     RejectReason.INVALID_TIMESTAMP),
    ("negative timestamp", ev(pred=0, ts=-5), RejectReason.INVALID_TIMESTAMP),
    ("over the size limit", ev(pred=0, pad="x" * 3000), RejectReason.TOO_LARGE),
    ("status unknown", ev(pred=0, status="meh"), RejectReason.INVALID_STATUS),
    ("huge number", b'{"request_id":"r","ts":1e400,"model":"m","version":"v","pred":0}',
     RejectReason.INVALID_TIMESTAMP),
    ("nested arrays", b"[" * 900 + b"]" * 900, RejectReason.NOT_OBJECT),
]


@pytest.mark.parametrize(("title", "obj", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_prediction_is_refused_with_its_reason(title, obj, reason):
    events, rejects = decode(obj)
    assert events == []
    assert rejects == [reason]


def test_batch_keeps_good_elements_and_refuses_bad_ones_individually():
    lines = [orjson.dumps(ev(request_id=f"r{i}", pred=i % 3)) for i in range(5)]
    lines[2] = b"{broken"
    d = DEC.decode(b"\n".join(lines), NOW)
    assert len(d.events) == 4
    assert [(r.reason, r.index, r.raw) for r in d.rejections] == [
        (RejectReason.INVALID_JSON, 2, b"{broken")]
    arr = [ev(request_id="a", pred=0), ev(request_id="b", pred="fish")]
    d = DEC.decode(orjson.dumps(arr), NOW)
    assert len(d.events) == 1 and d.rejections[0].index == 1
    assert orjson.loads(d.rejections[0].raw)["request_id"] == "b"


def test_json_nested_deeper_than_the_parsers_allow_is_invalid_json():
    dec = PredictionDecoder(MODELS, DecodeLimits(max_message_bytes=1_000_000))
    d = dec.decode(b"[" * 200_000 + b"]" * 200_000, NOW)
    assert [r.reason for r in d.rejections] == [RejectReason.INVALID_JSON]


def test_batch_over_the_event_limit_is_refused_whole():
    dec = PredictionDecoder(MODELS, DecodeLimits(max_message_bytes=100_000, max_batch_events=50))
    d = dec.decode(orjson.dumps([ev(request_id=f"r{i}", pred=0) for i in range(51)]), NOW)
    assert d.events == [] and d.rejections[0].reason == RejectReason.BATCH_TOO_LARGE


def test_feedback_label_checked_when_model_given():
    fb = FeedbackDecoder(MODELS, DecodeLimits())
    ok = fb.decode(orjson.dumps({"request_id": "r", "label": "dog", "ts": NOW, "model": "m"}), NOW)
    assert ok.events[0].label == 1
    bad = fb.decode(orjson.dumps({"request_id": "r", "label": "fish", "ts": NOW, "model": "m"}),
                    NOW)
    assert bad.rejections[0].reason == RejectReason.UNKNOWN_CLASS
    late = fb.decode(orjson.dumps({"request_id": "r", "label": "fish", "ts": NOW}), NOW)
    assert late.events[0].label == "fish"  # resolved at join time against the prediction


def test_image_headers_are_required():
    dec = ImageDecoder(MODELS, 1000, DecodeLimits())
    good = dec.decode(b"\xff\xd8jpeg", [("request_id", b"r"), ("model", b"m"),
                                        ("version", b"v"), ("content-type", b"image/jpeg")], NOW)
    assert good.events[0].request_id == "r"
    missing = dec.decode(b"\xff\xd8", [("model", b"m")], NOW)
    assert missing.rejections[0].reason == RejectReason.MISSING_HEADER
    big = dec.decode(b"x" * 2000, [("request_id", b"r"), ("model", b"m"), ("version", b"v")],
                     NOW)
    assert big.rejections[0].reason == RejectReason.TOO_LARGE


def _schema(name: str) -> dict:
    text = resources.files("monitor").joinpath(f"schemas/{name}").read_text()
    return json.loads(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-0.5, 1.5, allow_nan=False)
    | st.sampled_from(["cat", "dog", "fish", "ok", "error", "m", "v"]),
    lambda children: st.lists(children, max_size=4), max_leaves=8)
fields = st.fixed_dictionaries({}, optional={
    "request_id": st.sampled_from(["r1", "", 5]), "ts": st.sampled_from([NOW - 1, "x", -1]),
    "model": st.just("m"), "version": st.sampled_from(["v1", 3]),
    "pred": json_values, "confidence": json_values, "status": json_values,
    "latency_ms": json_values})


@settings(max_examples=400, deadline=None)
@given(fields)
def test_decoder_never_accepts_what_the_schema_refuses(obj):
    """The schema is the structural contract; the decoder may refuse more (class names,
    probs sum, future timestamps) but never accepts a schema-invalid event."""
    schema = _schema("predictions.schema.json")
    valid = jsonschema.Draft202012Validator(schema).is_valid(obj)
    events, _ = decode(obj)
    if events:
        assert valid, obj


wide_fields = st.fixed_dictionaries({}, optional={
    "request_id": st.sampled_from(["r1", "", 5, None, "r" * 256, "r" * 257]),
    "ts": st.sampled_from([NOW - 1, int(NOW) - 1, "2023-11-14T22:13:19+00:00", "x", -1, True,
                           NOW + 10_000, 10**400]),
    "model": st.sampled_from(["m", "other", 1]),
    "version": st.sampled_from(["v1", 3, "", "v" * 128, "v" * 129]),
    "pred": json_values, "confidence": json_values, "status": json_values,
    "latency_ms": json_values | st.sampled_from([999_999_999.0, 1e9, 10**12]),
    "deployment": json_values,
    "probs": st.one_of(json_values, st.lists(st.floats(0, 1), min_size=3, max_size=3)),
    "topk": st.one_of(json_values, st.lists(
        st.tuples(st.sampled_from([0, 1, 2, "cat", "dog", 7, True]),
                  st.floats(-0.1, 1.1)).map(list), max_size=3)),
    "extra": json_values})


def _slow_only(raw: bytes) -> tuple[list, list]:
    events: list = []
    rejections: list = []
    DEC._slow(raw, NOW, events, rejections)
    return events, [(r.reason, r.index) for r in rejections]


@settings(max_examples=600, deadline=None)
@given(st.lists(wide_fields, min_size=1, max_size=4), st.sampled_from(["one", "array", "ndjson"]))
def test_fast_path_decodes_exactly_as_the_slow_path(objs, framing):
    """The msgspec fast path is an optimisation only: every message decodes to the same
    events and the same refusals as element-by-element decoding."""
    if framing == "one":
        raw = json.dumps(objs[0]).encode()
    elif framing == "array":
        raw = json.dumps(objs).encode()
    else:
        raw = b"\n".join(json.dumps(o).encode() for o in objs)
    assume(len(raw) <= 2000)  # larger ones are refused whole, before either path
    d = DEC.decode(raw, NOW)
    fast = (d.events, [(r.reason, r.index) for r in d.rejections])
    slow = _slow_only(raw)
    assert len(fast[0]) == len(slow[0])
    for a, b in zip(fast[0], slow[0], strict=True):  # NaN != NaN: compare as JSON text
        assert orjson.dumps(tuple(a)) == orjson.dumps(tuple(b))
    assert fast[1] == slow[1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(wide_fields, st.sampled_from(["one", "one", "one", "array", "pair"])),
                min_size=1, max_size=6))
def test_one_parser_call_for_many_messages_decodes_as_each_alone(messages):
    """`decode_singles` joins one-event messages into one parser call: it returns exactly
    the events of decoding each message alone, or None when any message is not one valid
    event (a refusal, a batch, or two objects in one message)."""
    raws = []
    for obj, framing in messages:
        if framing == "one":
            raws.append(json.dumps(obj).encode())
        elif framing == "array":
            raws.append(json.dumps([obj]).encode())
        else:
            raws.append(json.dumps(obj).encode() + b"," + json.dumps(obj).encode())
    joined = DEC.decode_singles(raws, NOW)
    alone = [DEC.decode(r, NOW) for r in raws]
    all_single = all(len(d.events) == 1 and not d.rejections for d in alone) and all(
        f == "one" for _, f in messages)
    if not all_single:
        assert joined is None
        return
    assert joined is not None
    want = [d.events[0] for d in alone]
    assert [orjson.dumps(tuple(e)) for e in joined] == [orjson.dumps(tuple(e)) for e in want]


def test_one_parser_call_for_many_valid_messages():
    raws = [orjson.dumps(ev(request_id=f"r{i}", pred=i % 3, confidence=0.5 + i / 10,
                            latency_ms=i)) for i in range(4)]
    joined = DEC.decode_singles(raws, NOW)
    assert joined is not None
    assert joined == [DEC.decode(r, NOW).events[0] for r in raws]
    assert DEC.decode_singles([*raws, orjson.dumps(ev(pred="fish"))], NOW) is None
