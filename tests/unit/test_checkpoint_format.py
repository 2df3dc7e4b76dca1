"""What a checkpoint holds and whose it is: format migrations, the identity check, and the
bookkeeping of failed writes. Pure: no broker, no daemon."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from collectors.checkpoint import CheckpointHealth, decode, encode, failure_reason
from collectors.checkpoint_format import (
    FORMAT_VERSION,
    CheckpointRefused,
    OwnerCheck,
    StateIdentity,
    compose,
    differences,
    identity_of,
    migrate,
    models_only_in,
    parse,
    refusal,
    saved_identity,
)
from monitor.config import parse_config, resolve
from tests.conftest import CLASSES
from tests.unit.test_engine_checkpoint import _batches, _feed
from visionmon.app import build_statistics


def _loaded(**overrides: Any):
    cfg: dict[str, Any] = {
        "version": 1, "models": [{"name": "digits", "classes": CLASSES}],
        "kafka": {"group_id": "g1", "topics": {"predictions": "p", "images": "i",
                                               "feedback": "f"}},
        "windows": {"sizes": ["5m", "1h"], "slices": 30},
        "baseline": {"mode": "first_events", "events": 500},
        "quality": {"eval_slice": "1m", "min_labels": 5},
        "auc": {"enabled": False}}  # version 1 files are from a daemon without it
    for key, value in overrides.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    return resolve(parse_config(cfg))


# --- format versions ---------------------------------------------------------------
V1_NAMES = {"drift": "DriftMonitor", "labels": "LabelMonitor", "quality": "QualityEvaluator"}


def _as_version_1(state: dict[str, Any], with_committed: bool = True) -> dict[str, Any]:
    """A checkpoint as visionmon wrote it before `format_version`: extension state keyed by
    the class's name, no identity, and in the oldest files no `committed`."""
    engine = {**state["engine"], "extensions": {
        V1_NAMES[k]: v for k, v in state["engine"]["extensions"].items()}}
    old = {"engine": engine, "positions": [["p", 0, 17]], "saved_at": 1.0}
    if with_committed:
        old["committed"] = [["p", 0, 12]]
    return old


def test_a_version_1_checkpoint_restores_the_same_statistics():
    loaded = _loaded()
    first = build_statistics(loaded)
    _feed(first, loaded, _batches(3)[:30])
    old = _as_version_1({"engine": first.engine.state()})
    migrated = migrate(decode(encode(old)))
    assert migrated["format_version"] == FORMAT_VERSION
    assert set(migrated["engine"]["extensions"]) == {"drift", "labels", "quality"}
    restored = build_statistics(loaded)
    restored.engine.restore(parse(migrated).engine)
    a, b = first.engine.snapshot(), restored.engine.snapshot()
    assert "visionmon_drift_psi" in a and "visionmon_labels_total" in a
    assert a == b


MIGRATED = [
    ("a version 1 checkpoint keeps the offsets it saw committed",
     True, {("p", 0): 12}),
    ("the oldest checkpoint, without committed offsets, says they are unknown",
     False, None),
]


@pytest.mark.parametrize(("title", "with_committed", "committed"), MIGRATED,
                         ids=[c[0] for c in MIGRATED])
def test_version_1_positions_and_commits(title, with_committed, committed):
    loaded = _loaded()
    old = _as_version_1({"engine": build_statistics(loaded).engine.state()}, with_committed)
    restored = parse(migrate(old))
    assert restored.positions == {("p", 0): 17}
    assert restored.committed == committed
    assert saved_identity(migrate(old)) is None  # adopted: nothing recorded to compare


def test_a_version_2_checkpoint_restores_with_empty_acceptance_and_auc_state():
    loaded = _loaded(models=[{"name": "digits", "classes": CLASSES,
                              "accept": {"threshold": 0.5}}], auc={"enabled": True})
    first = build_statistics(loaded)
    _feed(first, loaded, _batches(3)[:30])
    engine = first.engine.state()
    extensions = {k: v for k, v in engine["extensions"].items() if k not in ("acceptance", "auc")}
    labels = extensions["labels"]
    waiting = [[k, ts, pred[:-1]] for k, ts, pred in labels["predictions"]["entries"]]
    assert waiting, "predictions wait for their labels"
    extensions["labels"] = {**labels, "predictions": {**labels["predictions"],
                                                      "entries": waiting}}
    old = {"format_version": 2, "engine": {**engine, "extensions": extensions},
           "positions": [], "committed": [], "identity": None}
    migrated = migrate(decode(encode(old)))
    assert migrated["format_version"] == FORMAT_VERSION == 3
    restored = build_statistics(loaded)
    restored.engine.restore(parse(migrated).engine)
    a, b = first.engine.snapshot(), restored.engine.snapshot()
    assert "visionmon_acceptance_decisions_total" in a and "visionmon_class_roc_auc" in a
    assert "visionmon_acceptance_decisions_total" not in b and "visionmon_class_roc_auc" not in b
    assert a["visionmon_labels_total"] == b["visionmon_labels_total"]
    _feed(restored, loaded, _batches(3)[30:])  # waiting predictions join their labels
    assert "visionmon_acceptance_decisions_total" in restored.engine.snapshot()


def test_a_checkpoint_of_a_newer_format_is_refused():
    with pytest.raises(CheckpointRefused, match=r"newer visionmon.*--reset-state"):
        migrate({"format_version": FORMAT_VERSION + 1, "engine": {}}, "/s/state.ckpt")


def test_a_checkpoint_round_trips_its_identity_and_positions():
    ident = identity_of(_loaded(), "cluster-a")
    state = decode(encode(compose(ident, {"x": 1}, {("p", 0): 5}, {("p", 0): 3}, 2.0)))
    assert saved_identity(migrate(state)) == ident
    restored = parse(migrate(state))
    assert (restored.engine, restored.positions, restored.committed) == (
        {"x": 1}, {("p", 0): 5}, {("p", 0): 3})


def test_extension_state_is_keyed_by_explicit_names():
    engine = build_statistics(_loaded()).engine
    assert set(engine.state()["extensions"]) == {"drift", "labels", "quality"}
    engine.extensions.append(engine.extensions[0])
    with pytest.raises(ValueError, match="share a name"):
        engine.state()


# --- whose state -------------------------------------------------------------------
BASE = identity_of(_loaded(), "cluster-a")
RENAMED = [*CLASSES[:3], "tres", *CLASSES[4:]]

IDENTITIES = [
    ("the same group, topics, models and cluster are accepted", BASE, []),
    ("another consumer group is refused",
     identity_of(_loaded(kafka={"group_id": "g2"}), "cluster-a"),
     ["consumer group (kafka.group_id): checkpoint has g1; this daemon has g2"]),
    ("other topics are refused",
     identity_of(_loaded(kafka={"topics": {"predictions": "p2", "images": "i",
                                           "feedback": "f"}}), "cluster-a"),
     ["topics (kafka.topics): checkpoint has feedback=f, images=i, predictions=p; "
      "this daemon has feedback=f, images=i, predictions=p2"]),
    ("another Kafka cluster is refused", replace(BASE, cluster_id="cluster-b"),
     ["Kafka cluster id: checkpoint has cluster-a; this daemon has cluster-b"]),
    ("an unknown cluster id is not compared", replace(BASE, cluster_id=None), []),
    ("a renamed class is refused, naming the class",
     identity_of(_loaded(models=[{"name": "digits", "classes": RENAMED}]), "cluster-a"),
     ["classes of model 'digits' (models): checkpoint has 10 classes [zero, one, two, three, "
      "four, ...] with class 3 'three'; this daemon has 10 classes [zero, one, two, tres, "
      "four, ...] with class 3 'tres'"]),
    ("an added class is refused",
     identity_of(_loaded(models=[{"name": "digits", "classes": [*CLASSES, "ten"]}]),
                 "cluster-a"),
     ["classes of model 'digits' (models): checkpoint has 10 classes [zero, one, two, three, "
      "four, ...]; this daemon has 11 classes [zero, one, two, three, four, ...] with class "
      "10 'ten'"]),
    ("a model added to the config starts empty; the others keep their state",
     identity_of(_loaded(models=[{"name": "digits", "classes": CLASSES},
                                 {"name": "cats", "classes": ["a", "b"]}]), "cluster-a"),
     []),
    ("a model the config dropped is left out; the others keep their state",
     identity_of(_loaded(models=[{"name": "cats", "classes": ["a", "b"]}]), "cluster-a"),
     []),
]


def test_the_models_only_one_side_has_are_named():
    added = identity_of(_loaded(models=[{"name": "digits", "classes": CLASSES},
                                        {"name": "cats", "classes": ["a", "b"]}]))
    assert models_only_in(BASE, added) == ([], ["cats"])
    assert models_only_in(added, BASE) == (["cats"], [])


@pytest.mark.parametrize(("title", "current", "lines"), IDENTITIES,
                         ids=[c[0] for c in IDENTITIES])
def test_whose_state(title, current, lines):
    diffs = differences(BASE, current)
    assert [f"{d.what}: checkpoint has {d.saved}; this daemon has {d.current}"
            for d in diffs] == lines
    if lines:
        message = refusal("/var/lib/visionmon/state.ckpt", diffs)
        assert message.startswith("/var/lib/visionmon/state.ckpt: ")
        assert all(line in message for line in lines)
        assert "visionmon run --config FILE --reset-state" in message


def test_the_models_hash_covers_names_and_class_order():
    swapped = identity_of(_loaded(models=[{"name": "digits",
                                           "classes": [CLASSES[1], CLASSES[0], *CLASSES[2:]]}]))
    assert swapped.models_sha256 != BASE.models_sha256
    assert identity_of(_loaded()).models_sha256 == BASE.models_sha256
    assert BASE.to_json()["models_sha256"] == BASE.models_sha256
    assert StateIdentity.from_json(orjson.loads(orjson.dumps(BASE.to_json()))) == BASE


CLUSTER_CHECKS = [
    ("the broker's id known at start is compared at once",
     "cluster-a", [("cluster-b", False)], ["Kafka cluster id"], "cluster-b"),
    ("an id unknown at start is compared before the first batch",
     "cluster-a", [(None, False), ("cluster-b", True)], ["Kafka cluster id"], "cluster-b"),
    ("the same cluster passes",
     "cluster-a", [(None, False), ("cluster-a", True)], [], "cluster-a"),
    ("a broker that never tells is trusted, and the old id is kept",
     "cluster-a", [(None, False), (None, True)], [], "cluster-a"),
    ("a checkpoint without a cluster id adopts the broker's",
     None, [("cluster-b", False)], [], "cluster-b"),
    ("the id is compared once: a later answer changes nothing",
     "cluster-a", [("cluster-a", False), ("cluster-b", True)], [], "cluster-a"),
]


@pytest.mark.parametrize(("title", "saved", "answers", "refused", "recorded"), CLUSTER_CHECKS,
                         ids=[c[0] for c in CLUSTER_CHECKS])
def test_the_cluster_is_checked_once_it_is_known(title, saved, answers, refused, recorded):
    check = OwnerCheck(identity_of(_loaded()))
    assert check.loaded(replace(BASE, cluster_id=saved)) == []
    diffs = [d.what for cluster, final in answers for d in check.cluster(cluster, final)]
    assert diffs == refused
    assert check.recorded().cluster_id == recorded


def test_an_unverified_cluster_is_named_for_the_warning():
    check = OwnerCheck(identity_of(_loaded()))
    check.loaded(BASE)
    check.cluster(None, final=False)
    assert check.unverified_cluster is None  # still pending
    check.cluster(None, final=True)
    assert check.unverified_cluster == "cluster-a"


# --- failed writes ---------------------------------------------------------------------
def _encode_error() -> Exception:
    try:
        orjson.dumps("\ud800")
    except TypeError as err:
        return err
    raise AssertionError("orjson encoded a lone surrogate")


REASONS = [
    ("an unencodable value is an encode failure", _encode_error(), "encode"),
    ("an object the checkpoint cannot serialise is an encode failure",
     TypeError("cannot checkpoint set"), "encode"),
    ("a full disk is an io failure", OSError(28, "No space left on device"), "io"),
    ("a directory in the file's place is an io failure", IsADirectoryError(21, "dir"), "io"),
    ("anything else is other", RuntimeError("?"), "other"),
]


@pytest.mark.parametrize(("title", "err", "reason"), REASONS, ids=[c[0] for c in REASONS])
def test_failure_reason(title, err, reason):
    assert failure_reason(err) == reason


def test_failures_are_logged_at_most_once_a_minute_and_counted_each():
    health = CheckpointHealth()
    logged = [health.failed("io", t) for t in (100.0, 110.0, 159.0, 160.0, 170.0)]
    assert logged == [True, False, False, True, False]
    assert health.failures == {"encode": 0, "io": 5, "other": 0}


FAILING = [
    ("healthy writes are not failing", [], 500.0, 0.0),
    ("failing time runs from the first failure", [("fail", 100.0), ("fail", 110.0)], 130.0,
     30.0),
    ("a success ends it", [("fail", 100.0), ("ok", 110.0)], 130.0, 0.0),
    ("a failure after a success starts afresh",
     [("fail", 100.0), ("ok", 110.0), ("fail", 120.0)], 130.0, 10.0),
]


@pytest.mark.parametrize(("title", "events", "now", "seconds"), FAILING,
                         ids=[c[0] for c in FAILING])
def test_how_long_writes_have_failed(title, events, now, seconds):
    health = CheckpointHealth()
    for outcome, t in events:
        if outcome == "fail":
            health.failed("io", t)
        else:
            health.succeeded()
    assert health.failing_for(now) == seconds


def test_resets_in_the_same_second_keep_each_checkpoint_and_only_the_newest_three(tmp_path):
    from collectors.checkpoint import CheckpointStore

    store = CheckpointStore(tmp_path)
    asides = []
    for i in range(5):
        store.save({"n": i})
        asides.append(store.set_aside("reset"))
    assert len(set(asides)) == 5                   # never one over another
    kept = sorted(p.name for p in tmp_path.glob("state.ckpt.reset-*"))
    assert kept == sorted(p.name for p in asides[-3:])
    assert not store.path.exists()
