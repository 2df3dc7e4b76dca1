"""What a checkpoint holds and whose it is: the format version with one migration per older
version, and the identity (Kafka cluster, consumer group, topics, models) a checkpoint must
share with the running daemon before its counts are restored.

A checkpoint restored into another group, topics or cluster would silently merge its counts
into the new ones, and one restored under another class list would count under the wrong
class names; both are refused, naming what differs and the flag to start fresh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from monitor.config import LoadedConfig

#: the checkpoint format this daemon writes; older ones are migrated when read
FORMAT_VERSION = 3
#: the command-line flag that moves an old checkpoint aside and starts fresh
RESET_FLAG = "--reset-state"


class CheckpointRefused(Exception):
    """The checkpoint belongs to another cluster, group, topics or class list, or to a newer
    visionmon: restoring it would merge or misplace counts."""


@dataclass(frozen=True, slots=True)
class StateIdentity:
    """Whose state a checkpoint holds. `cluster_id` is None until the broker told it."""

    cluster_id: str | None
    group_id: str
    topics: tuple[tuple[str, str], ...]            # (role, topic name)
    models: tuple[tuple[str, tuple[str, ...]], ...]  # (model, classes), by model name

    @property
    def models_sha256(self) -> str:
        """SHA-256 of the model section as resolved (model names and class lists)."""
        return hashlib.sha256(orjson.dumps([[m, list(c)] for m, c in self.models])).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"cluster_id": self.cluster_id, "group_id": self.group_id,
                "topics": dict(self.topics), "models_sha256": self.models_sha256,
                "models": {m: list(c) for m, c in self.models}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> StateIdentity:
        return cls(d["cluster_id"], d["group_id"], tuple(sorted(d["topics"].items())),
                   tuple(sorted((m, tuple(c)) for m, c in d["models"].items())))


def identity_of(loaded: LoadedConfig, cluster_id: str | None = None) -> StateIdentity:
    """The identity of the state a daemon with this config keeps."""
    kafka = loaded.config.kafka
    topics = kafka.topics
    roles = {"predictions": topics.predictions, "images": topics.images,
             "feedback": topics.feedback}
    if topics.lifecycle is not None:  # optional: a checkpoint without it stays valid
        roles["lifecycle"] = topics.lifecycle
    return StateIdentity(
        cluster_id, kafka.group_id,
        tuple(sorted(roles.items())),
        tuple(sorted((name, tuple(m.classes)) for name, m in loaded.models.items())))


@dataclass(frozen=True, slots=True)
class Difference:
    """One way a checkpoint's identity differs from the running daemon's."""

    what: str
    saved: str
    current: str


def differences(saved: StateIdentity, current: StateIdentity) -> list[Difference]:
    """What differs; a cluster id unknown on either side is not compared."""
    out: list[Difference] = []
    if saved.cluster_id is not None and current.cluster_id is not None \
            and saved.cluster_id != current.cluster_id:
        out.append(Difference("Kafka cluster id", saved.cluster_id, current.cluster_id))
    if saved.group_id != current.group_id:
        out.append(Difference("consumer group (kafka.group_id)", saved.group_id,
                              current.group_id))
    saved_topics, current_topics = _shared_roles(saved.topics, current.topics)
    if saved_topics != current_topics:
        out.append(Difference("topics (kafka.topics)", _topics(saved.topics),
                              _topics(current.topics)))
    if saved.models_sha256 != current.models_sha256:
        out.extend(_model_differences(dict(saved.models), dict(current.models)))
    return out


#: roles a checkpoint may lack or have more of: adding or removing one leaves the state of
#: the others whole
_OPTIONAL_ROLES = frozenset({"lifecycle"})


def _shared_roles(saved: tuple[tuple[str, str], ...], current: tuple[tuple[str, str], ...]
                  ) -> tuple[dict[str, str], dict[str, str]]:
    """Both sides' topics without an optional role that only one side has."""
    a, b = dict(saved), dict(current)
    for role in _OPTIONAL_ROLES - (a.keys() & b.keys()):
        a.pop(role, None)
        b.pop(role, None)
    return a, b


def _topics(topics: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{role}={name}" for role, name in topics)


def _classes(classes: tuple[str, ...], at: int | None = None) -> str:
    """A class list in a line: its size, its first names and the class at `at`."""
    shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    text = f"{len(classes)} classes [{shown}]"
    if at is not None and at < len(classes):
        text += f" with class {at} {classes[at]!r}"
    return text


def _model_differences(saved: dict[str, tuple[str, ...]], current: dict[str, tuple[str, ...]]
                       ) -> list[Difference]:
    """The models both sides have whose class lists differ: a model added to the config
    starts empty and one removed is dropped (`models_only_in`), the others keep their
    state."""
    out = []
    for name in sorted(saved.keys() & current.keys()):
        a, b = saved[name], current[name]
        what = f"classes of model {name!r} (models)"
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                      min(len(a), len(b)))
            out.append(Difference(what, _classes(a, at), _classes(b, at)))
    return out


def models_only_in(saved: StateIdentity, current: StateIdentity) -> tuple[list[str], list[str]]:
    """(models the checkpoint has that the config dropped, models the config added)."""
    a, b = dict(saved.models), dict(current.models)
    return sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())


def refusal(path: object, diffs: list[Difference], config: object = "FILE") -> str:
    """The message that refuses to restore a checkpoint: what differs, old and new, and
    how to start fresh."""
    lines = [f"{path}: this checkpoint was written for other Kafka data or another model, so "
             "restoring it would merge its counts into the wrong ones:"]
    lines += [f"  {d.what}: checkpoint has {d.saved}; this daemon has {d.current}"
              for d in diffs]
    lines.append(f"To start with empty state, run `visionmon run --config {config} {RESET_FLAG}` "
                 "(the old checkpoint is moved aside, not deleted), or point "
                 "state.checkpoint_dir elsewhere.")
    return "\n".join(lines)


def _from_v1(state: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (no `format_version`): extension state keyed by its class's name, no
    identity, and, in the oldest files, no `committed` offsets (kept as None: unknown)."""
    names = {"DriftMonitor": "drift", "LabelMonitor": "labels",
             "QualityEvaluator": "quality", "ShadowMonitor": "shadow"}
    engine = dict(state["engine"])
    engine["extensions"] = {names.get(k, k): v
                            for k, v in engine.get("extensions", {}).items()}
    return {**state, "format_version": 2, "engine": engine,
            "committed": state.get("committed"), "identity": None}


def _from_v2(state: dict[str, Any]) -> dict[str, Any]:
    """Version 2: no `acceptance` and `auc` extension state (they start empty), and
    predictions waiting for their labels without `top5_probs` (read back as empty: their
    labels count everywhere but in the AUC, unless they kept `probs`). Nothing to rewrite;
    the version says that a visionmon reading format 2 must not read these files (its
    predictions would not decode)."""
    return {**state, "format_version": 3}


#: per older format version, the function that lifts it one version up
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_v1, 2: _from_v2}


def migrate(state: dict[str, Any], path: object = "checkpoint") -> dict[str, Any]:
    """The checkpoint in the current format; a newer one is refused."""
    version = int(state.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise CheckpointRefused(
            f"{path}: checkpoint format {version} was written by a newer visionmon; this one "
            f"reads formats up to {FORMAT_VERSION}. Run the newer version, or start with "
            f"empty state with `visionmon run --config FILE {RESET_FLAG}`.")
    while version < FORMAT_VERSION:
        state = MIGRATIONS[version](state)
        version = int(state["format_version"])
    return state


def saved_identity(state: Mapping[str, Any]) -> StateIdentity | None:
    """The identity a (migrated) checkpoint records; None in one migrated from version 1."""
    ident = state.get("identity")
    return None if ident is None else StateIdentity.from_json(ident)


class OwnerCheck:
    """Whose state a restored checkpoint is, checked in two steps: the config's part (group,
    topics, models) when it is loaded, the Kafka cluster once the broker tells its id."""

    def __init__(self, current: StateIdentity) -> None:
        self._current = current
        self._saved_cluster: str | None = None
        self._cluster_pending = True

    def loaded(self, saved: StateIdentity | None) -> list[Difference]:
        """What differs between a loaded checkpoint's identity (None: not recorded, an
        older format, which is adopted) and this config's, cluster aside."""
        if saved is None:
            return []
        self._saved_cluster = saved.cluster_id
        return differences(replace(saved, cluster_id=None), self._current)

    @property
    def cluster_pending(self) -> bool:
        return self._cluster_pending

    def cluster(self, cluster_id: str | None, final: bool) -> list[Difference]:
        """The broker's cluster id (None: not told yet). Checked once, when known, or given up
        at the `final` chance (before the first batch): a broker that never tells is trusted."""
        if not self._cluster_pending or (cluster_id is None and not final):
            return []
        self._cluster_pending = False
        if cluster_id is None:
            return []
        self._current = replace(self._current, cluster_id=cluster_id)
        if self._saved_cluster is None:
            return []
        return differences(replace(self._current, cluster_id=self._saved_cluster),
                           self._current)

    @property
    def unverified_cluster(self) -> str | None:
        """The checkpoint's cluster id when the broker's was never known to compare."""
        if self._current.cluster_id is None and not self._cluster_pending:
            return self._saved_cluster
        return None

    def recorded(self) -> StateIdentity:
        """The identity a checkpoint written now records: the broker's cluster id, or the
        restored one while the broker has not told it."""
        if self._current.cluster_id is None:
            return replace(self._current, cluster_id=self._saved_cluster)
        return self._current


@dataclass(frozen=True, slots=True)
class Restored:
    """A checkpoint's content as the daemon restores it."""

    engine: Mapping[str, Any]
    #: per partition, the offset below which every record is in `engine`
    positions: dict[tuple[str, int], int]
    #: offsets the group was seen to commit; None when not recorded (the oldest format)
    committed: dict[tuple[str, int], int] | None


def _partition_offsets(rows: list[list[Any]]) -> dict[tuple[str, int], int]:
    return {(str(t), int(p)): int(o) for t, p, o in rows}


def parse(state: Mapping[str, Any]) -> Restored:
    """A migrated checkpoint's content."""
    committed = state["committed"]
    return Restored(state["engine"], _partition_offsets(state.get("positions", [])),
                    None if committed is None else _partition_offsets(committed))


def compose(identity: StateIdentity, engine: Any, covered: Mapping[tuple[str, int], int],
            committed: Mapping[tuple[str, int], int], saved_at: float) -> dict[str, Any]:
    """A checkpoint in the current format."""
    return {"format_version": FORMAT_VERSION, "identity": identity.to_json(), "engine": engine,
            "positions": [[t, p, o] for (t, p), o in covered.items()],
            "committed": [[t, p, o] for (t, p), o in committed.items()],
            "saved_at": saved_at}
