"""Decoding lifecycle events: tables of good and bad inputs, and agreement with the shipped
JSON Schema (the decoder never accepts what the schema refuses)."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.contract import LIFECYCLE, RejectReason
from monitor.events import DecodeLimits, ModelClassIndex
from monitor.lifecycle_events import LifecycleDecoder, LifecycleEvent

MODELS = {"m": ModelClassIndex.of(["cat", "dog"])}
NOW = 1_700_000_000.0
SHA = "ab" * 32
DEC = LifecycleDecoder(MODELS, DecodeLimits(max_message_bytes=4000, max_batch_events=10))
SCHEMA = jsonschema.Draft202012Validator(json.loads(
    (resources.files("monitor") / "schemas" / LIFECYCLE.schema_file).read_text()))


def loaded(**kw):
    return {"kind": "loaded", "ts": NOW - 5, "model": "m", "version": "v1", "host": "pod-a",
            "sha256": SHA, "load_seconds": 3.5, **kw}


GOOD = [
    ("a load", loaded(),
     LifecycleEvent("loaded", NOW - 5, "m", "v1", "pod-a", SHA, 3.5)),
    ("a failed load", {"kind": "load_failed", "ts": NOW, "model": "m", "version": "v2",
                       "host": "pod-b", "reason": "corrupt", "detail": "bad zip"},
     LifecycleEvent("load_failed", NOW, "m", "v2", "pod-b", reason="corrupt")),
    ("a rollout with its predecessor", {"kind": "rolled_out", "ts": "2023-11-14T22:13:00Z",
                                        "model": "m", "version": "v2", "from_version": "v1"},
     LifecycleEvent("rolled_out", 1699999980.0, "m", "v2", from_version="v1")),
    ("a rollback without a host", {"kind": "rolled_back", "ts": NOW, "model": "m",
                                   "version": "v1"},
     LifecycleEvent("rolled_back", NOW, "m", "v1")),
    ("unknown fields are ignored", loaded(extra={"x": 1}),
     LifecycleEvent("loaded", NOW - 5, "m", "v1", "pod-a", SHA, 3.5)),
]


@pytest.mark.parametrize(("title", "obj", "event"), GOOD, ids=[g[0] for g in GOOD])
def test_a_good_lifecycle_event_is_accepted(title, obj, event):
    d = DEC.decode(orjson.dumps(obj), NOW)
    assert d.events == [event] and not d.rejections
    assert SCHEMA.is_valid(obj)


BAD = [
    ("no kind", {k: v for k, v in loaded().items() if k != "kind"},
     RejectReason.MISSING_FIELD),
    ("an unknown kind", loaded(kind="unloaded"), RejectReason.INVALID_CHOICE),
    ("an unknown failure reason", {"kind": "load_failed", "ts": NOW, "model": "m",
                                   "version": "v1", "host": "h", "reason": "cosmic_ray"},
     RejectReason.INVALID_CHOICE),
    ("a load without its hash", {k: v for k, v in loaded().items() if k != "sha256"},
     RejectReason.MISSING_FIELD),
    ("a load without its host", loaded(host=None), RejectReason.MISSING_FIELD),
    ("a load without its time", {k: v for k, v in loaded().items() if k != "load_seconds"},
     RejectReason.MISSING_FIELD),
    ("a failed load without a reason", {"kind": "load_failed", "ts": NOW, "model": "m",
                                        "version": "v1", "host": "h"},
     RejectReason.MISSING_FIELD),
    ("an upper-case hash", loaded(sha256=SHA.upper()), RejectReason.OUT_OF_RANGE),
    ("a short hash", loaded(sha256="ab" * 31), RejectReason.OUT_OF_RANGE),
    ("a negative load time", loaded(load_seconds=-1), RejectReason.OUT_OF_RANGE),
    ("a day-long load", loaded(load_seconds=86_400), RejectReason.OUT_OF_RANGE),
    ("a boolean load time", loaded(load_seconds=True), RejectReason.WRONG_TYPE),
    ("an unknown model", loaded(model="other"), RejectReason.UNKNOWN_MODEL),
    ("a version too long", loaded(version="v" * 129), RejectReason.OUT_OF_RANGE),
    ("a time in the future", loaded(ts=NOW + 3600), RejectReason.TIMESTAMP_IN_FUTURE),
    ("not an object", [1], RejectReason.NOT_OBJECT),
]


@pytest.mark.parametrize(("title", "obj", "reason"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_lifecycle_event_is_refused_with_its_reason(title, obj, reason):
    d = DEC.decode(orjson.dumps(obj), NOW)
    assert not d.events
    assert [r.reason for r in d.rejections] == [reason]


def test_an_ndjson_batch_keeps_the_good_elements_and_refuses_the_bad_one_alone():
    lines = [orjson.dumps(loaded(host=f"pod-{i}")) for i in range(3)]
    lines[1] = orjson.dumps(loaded(kind="exploded"))
    d = DEC.decode(b"\n".join(lines), NOW)
    assert [e.host for e in d.events] == ["pod-0", "pod-2"]
    assert [(r.reason, r.index, r.raw) for r in d.rejections] == [
        (RejectReason.INVALID_CHOICE, 1, lines[1])]


def test_empty_and_oversized_messages_are_refused_whole():
    assert [r.reason for r in DEC.decode(b"", NOW).rejections] == [RejectReason.EMPTY]
    big = orjson.dumps(loaded(detail="x" * 5000))
    assert [r.reason for r in DEC.decode(big, NOW).rejections] == [RejectReason.TOO_LARGE]


lifecycle_fields = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(["loaded", "load_failed", "rolled_out", "rolled_back", "x", 1]),
    "ts": st.sampled_from([NOW - 1, "2023-11-14T22:13:19+00:00", "x", -1, NOW + 10_000]),
    "model": st.sampled_from(["m", "other", "", 1]),
    "version": st.sampled_from(["v1", "", "v" * 129, None]),
    "host": st.sampled_from(["pod-a", "", None, 3]),
    "sha256": st.sampled_from([SHA, SHA.upper(), "ab", None]),
    "load_seconds": st.sampled_from([0, 2.5, -1, 86_400, None, "3"]),
    "reason": st.sampled_from(["corrupt", "other", "nope", None]),
    "from_version": st.sampled_from(["v0", "", None]),
    "detail": st.sampled_from(["text", 5, None])})


@settings(max_examples=400, deadline=None)
@given(lifecycle_fields)
def test_the_decoder_never_accepts_what_the_schema_refuses(obj):
    d = DEC.decode(orjson.dumps(obj), NOW)
    if d.events:
        assert SCHEMA.is_valid(obj), obj
