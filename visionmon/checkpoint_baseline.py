"""The baselines a daemon is using, read from its checkpoint the way the daemon itself
restores them: statistics built from the config (`build_statistics`, so `baseline.mode:
file` baselines come first, as in the daemon), then `Engine.restore` of the checkpoint's
engine state. `visionmon baseline export` writes one of them to a file and `visionmon
replay` installs them in its engine, so both see what the live daemon sees."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.baseline import Baseline
from monitor.config import LoadedConfig


class CheckpointBaselineError(Exception):
    """No baseline can be read from the checkpoint; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class CheckpointBaselines:
    """The baselines a checkpoint restores to, and the models still collecting one."""

    #: the checkpoint file read
    path: Path
    #: model -> the baseline the daemon uses (a `baseline.mode: file` one, else the
    #: checkpoint's)
    baselines: dict[str, Baseline]
    #: model -> predictions collected so far towards a `first_events` baseline
    collected: dict[str, int] = field(default_factory=dict)

    def missing(self, loaded: LoadedConfig, model: str) -> str:
        """Why `model` has no baseline here, in a sentence (for error messages)."""
        cfg = loaded.config.baseline
        if cfg.mode == "first_events":
            return (f"the daemon is still collecting the baseline of model {model!r} from its "
                    f"first events ({self.collected.get(model, 0):,} of {cfg.events:,} "
                    f"in the checkpoint {self.path})")
        return (f"the checkpoint {self.path} holds no baseline for model {model!r} "
                f"(baseline.mode is {cfg.mode!r}, so the daemon fits none)")


def _collected(engine_state: Mapping[str, Any]) -> dict[str, int]:
    """Predictions collected towards first-events baselines, per model: the drift block's
    `collect_count`, found by that key whatever name the engine files the block under
    (the restore does not bring the collected events back, only this count is kept)."""
    for ext in engine_state.get("extensions", {}).values():
        if isinstance(ext, Mapping) and isinstance(ext.get("collect_count"), Mapping):
            return {str(m): int(n) for m, n in ext["collect_count"].items()}
    return {}


def read_checkpoint_baselines(loaded: LoadedConfig) -> CheckpointBaselines:
    """The baselines the daemon running `loaded` uses, from its checkpoint.

    Raises CheckpointBaselineError when the config keeps no checkpoint, when there is none
    yet, or when it cannot be read."""
    from collectors.checkpoint import CheckpointCorrupt, CheckpointStore
    from visionmon.app import build_statistics

    state_cfg = loaded.config.state
    if not state_cfg.checkpoint_dir:
        raise CheckpointBaselineError(
            f"{loaded.path}: state.checkpoint_dir is not set, so the daemon keeps no "
            "checkpoint to read its baseline from")
    directory = Path(state_cfg.checkpoint_dir)
    if not directory.is_dir():
        raise CheckpointBaselineError(
            f"{loaded.path}: state.checkpoint_dir {directory} does not exist: has the daemon "
            "run with this config (and is the path seen from here the daemon's)?")
    store = CheckpointStore(directory)
    try:
        state = store.load()
    except CheckpointCorrupt as err:
        raise CheckpointBaselineError(f"cannot read the checkpoint: {err}") from None
    if state is None:
        raise CheckpointBaselineError(
            f"no checkpoint in {directory} yet: the daemon writes one every "
            f"{state_cfg.checkpoint_interval_seconds:g}s once it runs, and when it stops")
    try:
        engine_state = state["engine"]
        stats = build_statistics(loaded)
        stats.engine.restore(engine_state)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointBaselineError(
            f"{store.path} is not a checkpoint this visionmon can restore ({err!r})") from None
    return CheckpointBaselines(store.path, dict(stats.drift.baselines), _collected(engine_state))
