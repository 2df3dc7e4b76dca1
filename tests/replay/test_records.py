"""The record -> events step shared by the daemon and replay, on worked examples."""

from __future__ import annotations

import orjson
import pytest

from collectors.kafka.client import Record
from collectors.records import (
    DecodedRecords,
    RecordDecoders,
    TopicNames,
    apply_decoded,
    decode_records,
)
from monitor.config import LoadedConfig, load_config
from tests.conftest import CLASSES, base_config, write_config

TOPICS = TopicNames("p", "i", "f")


@pytest.fixture
def loaded(tmp_path) -> LoadedConfig:
    cfg = base_config("127.0.0.1:1", {"predictions": "p", "images": "i", "feedback": "f"},
                      models=[{"name": "digits", "classes": CLASSES}])
    return load_config(write_config(tmp_path, cfg))


def rec(topic: str, value: bytes, ts: float = 1000.0, headers: tuple = ()) -> Record:
    return Record(topic, 0, 0, value, headers, int(ts * 1000))


def pred(rid: str, ts: float) -> bytes:
    return orjson.dumps({"request_id": rid, "ts": ts, "model": "digits", "version": "v1",
                         "pred": "one", "confidence": 0.9})


def test_each_topic_decodes_into_its_list_and_other_topics_are_ignored(loaded) -> None:
    d = decode_records([
        rec("p", pred("a", 990.0) + b"\n" + pred("b", 991.0)),
        rec("f", orjson.dumps({"request_id": "a", "label": "one", "ts": 995.0})),
        rec("i", b"\x89PNG...", headers=(("request_id", b"a"), ("model", b"digits"),
                                         ("version", b"v1"))),
        rec("elsewhere", b"{}"),
        rec("p", b"{broken"),
    ], TOPICS, RecordDecoders.of(loaded))
    assert [e.request_id for e in d.predictions] == ["a", "b"]
    assert [f.request_id for f in d.feedback] == ["a"]
    assert [i.request_id for i in d.images] == ["a"]
    assert [(r.topic, rej.reason.value) for r, rej in d.rejections] == [("p", "invalid_json")]
    assert dict(d.consumed) == {"p": 2, "f": 1, "i": 1}


@pytest.mark.parametrize(("now", "accepted"), [
    (None, False),      # the record's own time: 2 h before the event, beyond the skew
    (8000.0, True),     # a clock that is later than the event
])
def test_the_future_skew_check_uses_the_record_time_unless_told(loaded, now, accepted) -> None:
    d = decode_records([rec("p", pred("a", 1000.0 + 7200.0))], TOPICS,
                       RecordDecoders.of(loaded), now=now)
    assert (len(d.predictions) == 1) is accepted
    assert [rej.reason.value for _, rej in d.rejections] == \
        ([] if accepted else ["timestamp_in_future"])


def test_a_decoder_failure_refuses_the_record_instead_of_raising(loaded, monkeypatch) -> None:
    decoders = RecordDecoders.of(loaded)

    def boom(*_a: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(decoders.feedback, "decode", boom)
    d = decode_records([rec("f", b"{}"), rec("p", pred("a", 990.0))], TOPICS, decoders)
    assert len(d.predictions) == 1
    assert [(r.topic, rej.detail) for r, rej in d.rejections] == \
        [("f", "decoder failed: RuntimeError: bug")]
    assert dict(d.consumed) == {"f": 1, "p": 1}


def test_apply_counts_like_the_daemon(loaded) -> None:
    from visionmon.app import build_statistics

    stats = build_statistics(loaded)
    d = decode_records([rec("p", pred("a", 990.0)), rec("p", b""),
                        rec("f", orjson.dumps({"request_id": "a", "label": "two", "ts": 999.0}))],
                       TOPICS, RecordDecoders.of(loaded))
    apply_decoded(stats.engine, d, TOPICS, stats.labels)
    apply_decoded(stats.engine, DecodedRecords(), TOPICS, stats.labels)  # nothing: no change
    snap = stats.engine.snapshot()
    assert snap["visionmon_records_consumed_total"] == {("p",): 2.0, ("f",): 1.0}
    assert snap["visionmon_events_accepted_total"] == {("p",): 1.0, ("f",): 1.0}
    assert snap["visionmon_records_rejected_total"] == {("p", "empty"): 1.0}
    assert snap["visionmon_labels_total"][("digits", "v1", "two", "incorrect")] == 1.0


@pytest.mark.parametrize("others", [False, True])
def test_runs_of_one_event_messages_decode_as_each_message_alone(loaded, others) -> None:
    """With a clock, one-event prediction records are decoded in runs of one parser call;
    the result must be that of decoding each record alone, whatever else the poll holds
    (the same events; a run with a refused record comes after the others)."""
    records = [rec("p", pred(f"r{i}", 990.0 + i)) for i in range(600)]
    records[300] = rec("p", b"{broken")
    if others:
        records[10:10] = [rec("f", orjson.dumps({"request_id": "r1", "label": "one",
                                                "ts": 995.0})), rec("elsewhere", b"{}")]
    decoders = RecordDecoders.of(loaded)
    runs = decode_records(records, TOPICS, decoders, now=2000.0)
    alone = DecodedRecords()
    for r in records:
        decode_records([r], TOPICS, decoders, now=2000.0, into=alone)
    assert sorted(runs.predictions) == sorted(alone.predictions)
    assert len(runs.predictions) == 599
    assert [rej.reason for _, rej in runs.rejections] == ["invalid_json"]
    assert dict(runs.consumed) == dict(alone.consumed)
    assert len(runs.feedback) == (1 if others else 0)
