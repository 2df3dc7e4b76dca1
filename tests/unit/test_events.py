"""Decoding the event contract: tables of good and bad inputs, agreement with the shipped
JSON Schemas, and the contract's table as the one source of the limits."""

from __future__ import annotations

import json
import math
from importlib import resources

import jsonschema
import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from monitor import contract_files
from monitor.config import LimitsConfig
from monitor.contract import (
    FEEDBACK,
    IMAGE_HEADERS,
    MAX_REQUEST_ID_CHARS,
    PREDICTIONS,
    REASONS,
    TOPICS,
    Text,
)
from monitor.events import (
    DecodeLimits,
    FeedbackDecoder,
    ImageDecoder,
    ModelClassIndex,
    PredictionDecoder,
    RejectReason,
    WirePrediction,
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


def _label(rid: str, label: object = 1) -> dict[str, object]:
    return {"request_id": rid, "label": label, "ts": NOW - 5}


_L1, _L2, _L3 = (orjson.dumps(_label(r)) for r in ("a", "b", "c"))


@pytest.mark.parametrize(("message", "accepted", "refused"), [
    pytest.param(_L1, ["a"], [], id="one object, as before"),
    pytest.param(orjson.dumps([_label("a"), _label("b", "dog")]), ["a", "b"], [],
                 id="a JSON array of labels"),
    pytest.param(b"\n".join((_L1, _L2, _L3)) + b"\n", ["a", "b", "c"], [],
                 id="NDJSON, trailing newline"),
    pytest.param(b"\n".join((_L1, b'{"request_id": "x", "ts": 1}', _L3)), ["a", "c"],
                 [(RejectReason.MISSING_FIELD, 1, b'{"request_id": "x", "ts": 1}')],
                 id="an NDJSON line without a label is refused alone, with its own bytes"),
    pytest.param(b"\n".join((_L1, b"{not json", _L3)), ["a", "c"],
                 [(RejectReason.INVALID_JSON, 1, b"{not json")],
                 id="an NDJSON line that is not JSON is refused alone"),
    pytest.param(b"\n".join((_L1, b'{"request_id": "s", "label": "\\ud800", "ts": 1}')),
                 ["a"], [(RejectReason.INVALID_UTF8, 1,
                          b'{"request_id": "s", "label": "\\ud800", "ts": 1}')],
                 id="an NDJSON line with a lone surrogate is refused alone"),
    pytest.param(orjson.dumps([_label("a"), 7]), ["a"], [(RejectReason.NOT_OBJECT, 1, b"7")],
                 id="an array element that is not an object is refused alone, re-serialised"),
    pytest.param(b"[]", [], [(RejectReason.EMPTY, None, b"[]")], id="an empty array"),
    pytest.param(orjson.dumps([_label(f"r{i}") for i in range(51)]), [],
                 [(RejectReason.BATCH_TOO_LARGE, None, None)],
                 id="more labels than max_batch_events: refused whole"),
])
def test_feedback_accepts_the_batch_forms_of_predictions(message, accepted, refused):
    fb = FeedbackDecoder(MODELS, DecodeLimits(max_message_bytes=100_000, max_batch_events=50))
    d = fb.decode(message, NOW)
    assert [e.request_id for e in d.events] == accepted
    # (reason, index in the batch, bytes for the dead-letter topic: None = the message)
    assert [(r.reason, r.index, r.raw) for r in d.rejections] == \
        [(reason, i, message if raw is None else raw) for reason, i, raw in refused]


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
segment_values = st.one_of(
    json_values, st.dictionaries(st.sampled_from(["camera", "site", "", "k" * 65]),
                                 st.sampled_from(["c1", "", "v" * 128, "v" * 129, 3, None]),
                                 max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=3), st.just("x"), min_size=17, max_size=17))
fields = st.fixed_dictionaries({}, optional={
    "request_id": st.sampled_from(["r1", "", 5]), "ts": st.sampled_from([NOW - 1, "x", -1]),
    "model": st.just("m"), "version": st.sampled_from(["v1", 3]),
    "pred": json_values, "confidence": json_values, "status": json_values,
    "latency_ms": json_values, "segments": segment_values})


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
    "request_id": st.sampled_from(["r1", "", 5, None, "r" * 256, "r" * 257, "\ud800",
                                   "a\udc00b", "\ud83d\ude00"]),
    "ts": st.sampled_from([NOW - 1, int(NOW) - 1, "2023-11-14T22:13:19+00:00", "x", -1, True,
                           NOW + 10_000, 10**400]),
    "model": st.sampled_from(["m", "other", 1]),
    "version": st.sampled_from(["v1", 3, "", "v" * 128, "v" * 129, "v\udfff"]),
    "pred": json_values, "confidence": json_values, "status": json_values,
    "latency_ms": json_values | st.sampled_from([999_999_999.0, 1e9, 10**12]),
    "deployment": json_values | st.sampled_from(["d\ud800", "ü"]),
    "segments": segment_values | st.just({"camera": "c\ud800"}),
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


def _raw_utf8(obj) -> bytes:
    """JSON text with its strings unescaped, lone surrogates written as their (invalid)
    UTF-8-style bytes: what a careless producer may send."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


@settings(max_examples=600, deadline=None)
@given(st.lists(wide_fields, min_size=1, max_size=4),
       st.sampled_from(["one", "array", "ndjson", "raw-utf8"]))
@pytest.mark.slow  # a simulation or exhaustive comparison
def test_fast_path_decodes_exactly_as_the_slow_path(objs, framing):
    """The msgspec fast path is an optimisation only: every message decodes to the same
    events and the same refusals as element-by-element decoding."""
    if framing == "one":
        raw = json.dumps(objs[0]).encode()
    elif framing == "raw-utf8":
        raw = _raw_utf8(objs[0])
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
        assert orjson.dumps(tuple(a)) == orjson.dumps(tuple(b))  # raises on a bad string
    assert fast[1] == slow[1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(wide_fields, st.sampled_from(["one", "one", "one", "array", "pair"])),
                min_size=1, max_size=6))
@pytest.mark.slow  # a simulation or exhaustive comparison
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


# --- strings that no UTF-8 text can hold ------------------------------------------------
SURROGATE = b"\\ud800"  # a JSON escape of a lone UTF-16 surrogate
RAW_SURROGATE = b"\xed\xa0\x80"  # the same surrogate as UTF-8-style bytes


def _pred_bytes(field: str, value: bytes) -> bytes:
    base = {"request_id": b'"r1"', "ts": str(NOW - 5).encode(), "model": b'"m"',
            "version": b'"v1"', "pred": b"1"}
    base[field] = value
    return b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in base.items()) + b"}"


SURROGATE_PREDICTIONS = [
    ("escaped high surrogate in request_id", _pred_bytes("request_id", b'"' + SURROGATE + b'"')),
    ("escaped low surrogate in version", _pred_bytes("version", b'"v\\udc00"')),
    ("reversed surrogate pair in model", _pred_bytes("model", b'"\\udc00\\ud800"')),
    ("escaped surrogate in deployment", _pred_bytes("deployment", b'"' + SURROGATE + b'"')),
    ("surrogate bytes in request_id", _pred_bytes("request_id", b'"' + RAW_SURROGATE + b'"')),
    ("surrogate as a class name", _pred_bytes("pred", b'"' + SURROGATE + b'"')),
    ("surrogate in an RFC 3339 timestamp", _pred_bytes("ts", b'"2023-11-14' + SURROGATE + b'"')),
    ("surrogate beside a NaN literal", _pred_bytes("request_id", b'"' + SURROGATE + b'"')
     .replace(b'"pred":1', b'"pred":1,"confidence":NaN')),
]


@pytest.mark.parametrize(("title", "raw"), SURROGATE_PREDICTIONS,
                         ids=[c[0] for c in SURROGATE_PREDICTIONS])
def test_a_string_with_a_lone_surrogate_is_refused_as_invalid_utf8(title, raw):
    d = DEC.decode(raw, NOW)
    assert d.events == []
    assert [(r.reason, r.raw) for r in d.rejections] == [(RejectReason.INVALID_UTF8, raw)]


def test_a_surrogate_pair_is_one_valid_character():
    (e,), rejects = decode(_pred_bytes("request_id", b'"\\ud83d\\ude00"'))
    assert rejects == [] and e.request_id == "\U0001f600"


def test_a_batch_refuses_only_its_elements_with_a_lone_surrogate():
    good = _pred_bytes("request_id", b'"ok"')
    bad = _pred_bytes("request_id", b'"' + SURROGATE + b'"')
    nd = DEC.decode(b"\n".join([good, bad, good]), NOW)
    assert [e.request_id for e in nd.events] == ["ok", "ok"]
    assert [(r.reason, r.index, r.raw) for r in nd.rejections] == [
        (RejectReason.INVALID_UTF8, 1, bad)]
    arr = DEC.decode(b"[" + b",".join([good, bad]) + b"]", NOW)
    assert [e.request_id for e in arr.events] == ["ok"]
    (rej,) = arr.rejections
    assert (rej.reason, rej.index) == (RejectReason.INVALID_UTF8, 1)
    assert json.loads(rej.raw)["request_id"] == "\ud800"  # re-serialised, escaped


SURROGATE_FEEDBACK = [
    ("request_id", b'{"request_id":"\\ud800","label":1,"ts":%d}'),
    ("label name", b'{"request_id":"r","label":"\\udc00","ts":%d}'),
    ("source", b'{"request_id":"r","label":1,"ts":%d,"source":"\\ud800"}'),
    ("model", b'{"request_id":"r","label":1,"ts":%d,"model":"\\ud800"}'),
    ("raw bytes in the label", b'{"request_id":"r","label":"\xed\xa0\x80","ts":%d}'),
]


@pytest.mark.parametrize(("field", "raw"), SURROGATE_FEEDBACK,
                         ids=[c[0] for c in SURROGATE_FEEDBACK])
def test_feedback_with_a_lone_surrogate_is_refused_as_invalid_utf8(field, raw):
    raw = raw % int(NOW)
    d = FeedbackDecoder(MODELS, DecodeLimits()).decode(raw, NOW)
    assert d.events == []
    assert [(r.reason, r.raw) for r in d.rejections] == [(RejectReason.INVALID_UTF8, raw)]


def test_an_image_header_that_is_not_utf8_is_refused_as_invalid_utf8():
    dec = ImageDecoder(MODELS, 1000, DecodeLimits())
    for value in (RAW_SURROGATE, b"\xff"):
        d = dec.decode(b"\xff\xd8jpeg", [("request_id", value), ("model", b"m"),
                                         ("version", b"v")], NOW)
        assert [(r.reason, r.raw) for r in d.rejections] == [
            (RejectReason.INVALID_UTF8, b"\xff\xd8jpeg")]


# --- one table: decoders, schemas and docs follow monitor/contract.py -------------------
def test_committed_schemas_and_doc_tables_are_the_generated_ones():
    """Regenerate with `python -m monitor.contract_files` after changing the table."""
    for path, text in contract_files.generated_files().items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale"


def test_every_reject_reason_is_explained_and_documented():
    assert set(REASONS) == set(RejectReason)
    doc = contract_files.DOC.read_text(encoding="utf-8")
    for reason in RejectReason:
        assert f"| `{reason.value}` |" in doc


def test_the_wire_struct_and_the_config_default_follow_the_table():
    assert WirePrediction.__struct_fields__ == PREDICTIONS.names()
    assert DecodeLimits().max_request_id_chars == MAX_REQUEST_ID_CHARS
    assert LimitsConfig().max_request_id_chars == MAX_REQUEST_ID_CHARS


def _bounded_texts(topic):
    return [(topic.topic, f.name, f.shape) for f in topic.fields
            if isinstance(f.shape, Text) and f.shape.max_chars is not None]


BOUNDED = _bounded_texts(PREDICTIONS) + _bounded_texts(FEEDBACK) + _bounded_texts(IMAGE_HEADERS)


@pytest.mark.parametrize(("topic", "name", "shape"), BOUNDED,
                         ids=[f"{t} {n}" for t, n, _ in BOUNDED])
def test_a_string_at_its_tables_limit_is_accepted_and_one_longer_refused(topic, name, shape):
    """Moving a limit in the table moves the fast path, the slow path and the schema."""
    models = {"m" * (shape.max_chars + 1): MODELS["m"], "m" * shape.max_chars: MODELS["m"],
              **MODELS}
    pdec = PredictionDecoder(models, DecodeLimits())
    fdec = FeedbackDecoder(models, DecodeLimits())
    idec = ImageDecoder(models, 1000, DecodeLimits())
    base = {"predictions": ev(pred=1), "feedback": {"request_id": "r", "label": 1, "ts": NOW},
            "images": {"request_id": "r", "model": "m", "version": "v"}}[topic]
    schema = jsonschema.Draft202012Validator(_schema(
        next(t.schema_file for t in TOPICS if t.topic == topic)))
    for length, accepted in ((shape.max_chars, True), (shape.max_chars + 1, False)):
        field = name.replace("<key>", "camera")  # a field family: one of its names
        obj = {**base, field: ("m" if name == "model" else "x") * length}
        raw = orjson.dumps(obj)
        if topic == "predictions":
            slow_events: list = []
            pdec._slow(raw, NOW, slow_events, [])
            got = [bool(pdec.decode(raw, NOW).events), bool(slow_events)]
        elif topic == "feedback":
            got = [bool(fdec.decode(raw, NOW).events)]
        else:
            headers = [(k, v.encode()) for k, v in obj.items()]
            got = [bool(idec.decode(b"\xff\xd8", headers, NOW).events)]
        assert got == [accepted] * len(got), (name, length)
        assert schema.is_valid(obj) is accepted, (name, length)


feedback_fields = st.fixed_dictionaries({}, optional={
    "request_id": st.sampled_from(["r1", "", 5, None, "r" * 256, "r" * 257]),
    "label": st.sampled_from([0, 2, 3, -1, "cat", "fish", "", "x" * 257, True, 1.5, None]),
    "ts": st.sampled_from([NOW - 1, "2023-11-14T22:13:19+00:00", "x", -1, True, NOW + 10_000]),
    "source": st.sampled_from(["review", "", 5, None]),
    "model": st.sampled_from(["m", "other", 1, None]),
    "extra": json_values})


@settings(max_examples=300, deadline=None)
@given(feedback_fields)
def test_feedback_decoder_never_accepts_what_the_schema_refuses(obj):
    schema = jsonschema.Draft202012Validator(_schema(FEEDBACK.schema_file))
    d = FeedbackDecoder(MODELS, DecodeLimits()).decode(orjson.dumps(obj), NOW)
    if d.events:
        assert schema.is_valid(obj), obj


header_values = st.fixed_dictionaries({}, optional={
    "request_id": st.sampled_from(["r1", "", "r" * 256, "r" * 257]),
    "model": st.sampled_from(["m", "", "other"]),
    "version": st.sampled_from(["v1", "", "v" * 300]),
    "content-type": st.sampled_from(["image/jpeg", "image/png", "image/webp", "text/plain"]),
    "ts": st.sampled_from([str(NOW - 1), "2023-11-14T22:13:19+00:00", "x"]),
    "x-other": st.text(max_size=5)})


@settings(max_examples=300, deadline=None)
@given(header_values)
def test_image_decoder_never_accepts_headers_the_schema_refuses(headers):
    schema = jsonschema.Draft202012Validator(_schema(IMAGE_HEADERS.schema_file))
    d = ImageDecoder(MODELS, 1000, DecodeLimits()).decode(
        b"\xff\xd8jpeg", [(k, v.encode()) for k, v in headers.items()], NOW)
    if d.events:
        assert schema.is_valid(headers), headers
