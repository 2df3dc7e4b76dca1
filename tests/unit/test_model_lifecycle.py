"""The production model's lifecycle state: which artifacts replicas serve, load times,
failures and rollouts, its bound, its checkpoint round trip, and a daemon without a
lifecycle topic keeping none of it."""

from __future__ import annotations

import orjson
import pytest

from collectors.kafka.client import Record
from collectors.records import RecordDecoders, TopicNames, apply_decoded, decode_records
from monitor.config import parse_config, resolve
from monitor.lifecycle import REPLICA_STORE, ArtifactSeen, ModelLifecycle, artifacts
from monitor.lifecycle_events import LifecycleEvent
from visionmon.app import build_statistics

A, B = "a" * 64, "b" * 64
NOW = 1_700_000_000.0


def load(host: str, sha: str, ts: float, version: str = "v1", seconds: float = 2.0
         ) -> LifecycleEvent:
    return LifecycleEvent("loaded", ts, "digits", version, host, sha, seconds)


def _identity(model: str, version: str) -> str:
    return version


TABLE = [
    ("three replicas on one artifact: one series, three replicas",
     [load("h1", A, 1), load("h2", A, 2), load("h3", A, 3)],
     {("digits", "v1", A): ArtifactSeen(3, 1, 3)}),
    ("one replica on another artifact: two series for the version",
     [load("h1", A, 1), load("h2", B, 2)],
     {("digits", "v1", A): ArtifactSeen(1, 1, 1), ("digits", "v1", B): ArtifactSeen(1, 2, 2)}),
    ("a replica reloading the right artifact ends the mismatch",
     [load("h1", A, 1), load("h2", B, 2), load("h2", A, 5)],
     {("digits", "v1", A): ArtifactSeen(2, 1, 5)}),
    ("an older load delivered late does not replace the replica's latest",
     [load("h1", A, 5), load("h1", B, 1)],
     {("digits", "v1", A): ArtifactSeen(1, 5, 5)}),
    ("two versions on different artifacts are no mismatch",
     [load("h1", A, 1), load("h2", B, 2, version="v2")],
     {("digits", "v1", A): ArtifactSeen(1, 1, 1), ("digits", "v2", B): ArtifactSeen(1, 2, 2)}),
]


@pytest.mark.parametrize(("title", "events", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_the_artifacts_replicas_serve(title, events, expected):
    lc = ModelLifecycle(_identity, max_replicas=100)
    lc.apply_lifecycle(events)
    assert artifacts(lc.replicas, lc.first_load) == expected


def test_beyond_its_bound_the_oldest_load_is_forgotten_and_counted():
    lc = ModelLifecycle(_identity, max_replicas=2)
    lc.apply_lifecycle([load("h1", A, 1), load("h2", A, 2), load("h3", B, 3)])
    assert set(lc.replicas) == {("digits", "v1", "h2"), ("digits", "v1", "h3")}
    assert lc.evicted == 1
    assert ("digits", "v1", A) in lc.first_load  # still held by h2


def _loaded(topics: dict[str, str]):
    return resolve(parse_config({
        "version": 1, "models": [{"name": "digits", "classes": ["zero", "one"]}],
        "kafka": {"topics": topics}}))


TOPICS = {"predictions": "p", "images": "i", "feedback": "f", "lifecycle": "lc"}


def _record(offset: int, value: dict) -> Record:
    return Record("lc", 0, offset, orjson.dumps(value), int(NOW * 1000), ())


EVENTS = [
    {"kind": "loaded", "ts": NOW - 60, "model": "digits", "version": "v1", "host": "h1",
     "sha256": A, "load_seconds": 0.7},
    {"kind": "loaded", "ts": NOW - 50, "model": "digits", "version": "v1", "host": "h2",
     "sha256": B, "load_seconds": 42.0},
    {"kind": "load_failed", "ts": NOW - 40, "model": "digits", "version": "v2", "host": "h3",
     "reason": "out_of_memory"},
    {"kind": "rolled_out", "ts": NOW - 30, "model": "digits", "version": "v2",
     "from_version": "v1"},
    {"kind": "rolled_back", "ts": NOW - 20, "model": "digits", "version": "v1",
     "from_version": "v2"},
    {"kind": "loaded", "ts": NOW, "model": "nope", "version": "v1", "host": "h1",
     "sha256": A, "load_seconds": 1},
]


def _feed(stats, loaded) -> None:
    topics = TopicNames.of(loaded)
    decoded = decode_records([_record(i, e) for i, e in enumerate(EVENTS)], topics,
                             RecordDecoders.of(loaded), NOW)
    apply_decoded(stats.engine, decoded, topics, stats.labels, stats.lifecycle)


def test_lifecycle_records_are_counted_exported_and_survive_a_checkpoint():
    loaded = _loaded(TOPICS)
    stats = build_statistics(loaded)
    _feed(stats, loaded)
    snap = stats.engine.snapshot()
    assert snap["visionmon_records_consumed_total"][("lc",)] == 6
    assert snap["visionmon_events_accepted_total"][("lc",)] == 5
    assert snap["visionmon_records_rejected_total"][("lc", "unknown_model")] == 1
    assert snap["visionmon_model_info"] == {("digits", "v1", A): 1.0, ("digits", "v1", B): 1.0}
    assert snap["visionmon_model_replicas"][("digits", "v1", B)] == 1.0
    assert snap["visionmon_model_first_load_timestamp_seconds"][("digits", "v1", A)] == NOW - 60
    hist = snap["visionmon_model_load_seconds"][("digits", "v1")]
    assert hist.count == 2 and hist.sum == pytest.approx(42.7)
    assert snap["visionmon_model_load_failures_total"] == {
        ("digits", "v2", "out_of_memory"): 1.0}
    assert snap["visionmon_model_rollouts_total"] == {("digits", "v2", "rolled_out"): 1.0,
                                                      ("digits", "v1", "rolled_back"): 1.0}
    assert "visionmon_join_evicted_total" not in snap or \
        (REPLICA_STORE, "capacity") not in snap["visionmon_join_evicted_total"]

    restored = build_statistics(loaded)
    restored.engine.restore(orjson.loads(orjson.dumps(stats.engine.state())))
    assert restored.engine.snapshot() == snap


def test_without_a_lifecycle_topic_nothing_is_subscribed_kept_or_exported():
    loaded = _loaded({k: v for k, v in TOPICS.items() if k != "lifecycle"})
    stats = build_statistics(loaded)
    assert stats.lifecycle is None
    assert TopicNames.of(loaded).all() == ("p", "i", "f")
    assert "lifecycle" not in stats.engine.state()["extensions"]
    assert not any(name.startswith("visionmon_model_") for name in stats.engine.snapshot())


def test_adding_or_removing_the_lifecycle_topic_keeps_the_checkpoint_but_renaming_it_does_not():
    from collectors.checkpoint_format import differences, identity_of

    without = identity_of(_loaded({k: v for k, v in TOPICS.items() if k != "lifecycle"}))
    with_it = identity_of(_loaded(TOPICS))
    renamed = identity_of(_loaded({**TOPICS, "lifecycle": "other"}))
    assert differences(without, with_it) == [] and differences(with_it, without) == []
    assert [d.what for d in differences(with_it, renamed)] == ["topics (kafka.topics)"]


def test_a_lifecycle_topic_shared_with_another_role_is_refused_naming_both():
    from monitor.config import ConfigError

    with pytest.raises(ConfigError, match=r"kafka\.topics.*'p' is also the predictions topic"):
        _loaded({**TOPICS, "lifecycle": "p"})
