"""Which baselines a replay measures drift against: the live daemon's, never one fitted
anew from the replayed range unless asked.

A config with `baseline.mode: first_events` makes a fresh engine fit its baseline from
the first events it sees; in a replay those are the range's first events, not the ones
the live daemon fitted on, so every drift figure would differ from the live ones. The
replay therefore takes, per model: a file named with `--baseline`, else what the daemon
itself takes: the config's `baseline.mode: file` baseline, else the one in its checkpoint
(`--baseline-from-checkpoint`, read by default when the config has `state.checkpoint_dir`).
A model left to fit from the range is refused, naming the choices, unless `--fit-baseline`
asks for exactly that (the "what would a fresh baseline have shown" question).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from monitor import baseline as baseline_mod
from monitor.baseline import Baseline, BaselineError
from monitor.config import LoadedConfig
from visionmon.postmortem.read import ReplayError


@dataclass(frozen=True, slots=True)
class BaselineChoice:
    """Where the replay's baselines come from (the replay options)."""

    #: baseline files (`--baseline`), each for the model it names
    files: tuple[str, ...] = ()
    #: read the daemon's checkpoint; None: when the config has `state.checkpoint_dir`
    #: and the range is not to be fitted
    from_checkpoint: bool | None = None
    #: let models without a baseline fit one from the range (`--fit-baseline`)
    fit: bool = False


def _named_files(loaded: LoadedConfig, files: Sequence[str]) -> dict[str, Baseline]:
    out: dict[str, Baseline] = {}
    for path in files:
        try:
            b = baseline_mod.load(path)
            if b.model not in loaded.models:
                raise BaselineError(f"{path}: baseline of model {b.model!r}, which the config "
                                    f"does not have (models: {sorted(loaded.models)})")
            baseline_mod.load(path, b.model, loaded.models[b.model].classes)
        except BaselineError as err:
            raise ReplayError(f"--baseline: {err}") from None
        if b.model in out:
            raise ReplayError(f"--baseline: two files for model {b.model!r}")
        out[b.model] = b
    return out


@dataclass(frozen=True, slots=True)
class ReplayBaselines:
    """The baselines to install in the replay's engine, and where each model's comes from."""

    #: model -> baseline replacing what the config gives it (models absent keep that)
    install: dict[str, Baseline]
    #: model -> where its baseline comes from, in words (for the replay's summary)
    sources: dict[str, str]


def _described(b: Baseline, where: str) -> str:
    return f"{where} (sha256 {b.sha256[:16]}, {b.events:,} events)"


def replay_baselines(loaded: LoadedConfig, choice: BaselineChoice) -> ReplayBaselines:
    """The replay's baselines per model. Raises ReplayError when a model would fit a new
    baseline from the replayed range and `choice.fit` is not set."""
    from visionmon.app import load_baselines
    from visionmon.checkpoint_baseline import CheckpointBaselineError, read_checkpoint_baselines

    if choice.fit and choice.from_checkpoint:
        raise ReplayError("--fit-baseline and --baseline-from-checkpoint exclude each other")
    chosen = _named_files(loaded, choice.files)
    sources = {m: _described(b, "--baseline file") for m, b in chosen.items()}
    configured = load_baselines(loaded)   # the daemon's first choice, as build_statistics's
    for m, b in configured.items():
        sources.setdefault(m, _described(b, "the config's baseline.path"))
    needed = [m for m in loaded.models if m not in chosen and m not in configured]
    use_checkpoint = choice.from_checkpoint
    if use_checkpoint is None:
        use_checkpoint = bool(loaded.config.state.checkpoint_dir) and not choice.fit
    why_not = "not read (--no-baseline-from-checkpoint)" if choice.from_checkpoint is False \
        else "not read (the config has no state.checkpoint_dir)"
    if use_checkpoint and (needed or choice.from_checkpoint):
        try:
            found = read_checkpoint_baselines(loaded)
        except CheckpointBaselineError as err:
            if choice.from_checkpoint:
                raise ReplayError(f"--baseline-from-checkpoint: {err}") from None
            why_not = str(err)
        else:
            for model in needed:
                if model in found.baselines:
                    chosen[model] = found.baselines[model]
                    sources[model] = _described(chosen[model], f"the checkpoint {found.path}")
                else:
                    why_not = found.missing(loaded, model)
    unfit = [m for m in needed if m not in chosen]
    first_events = loaded.config.baseline.mode == "first_events"
    if unfit and first_events and not choice.fit:
        raise ReplayError(
            f"replay would fit a new baseline for {', '.join(map(repr, unfit))} from the "
            f"first {loaded.config.baseline.events:,} events of the replayed range "
            "(baseline.mode: first_events), so its drift figures would not be the live "
            "daemon's. Choose the baseline: --baseline FILE (e.g. written by `visionmon "
            "baseline export`), --baseline-from-checkpoint (the daemon's checkpoint: "
            f"{why_not}), or --fit-baseline to fit one from the range anyway")
    for m in unfit:
        sources[m] = (f"fitted from the range's first {loaded.config.baseline.events:,} "
                      "events (--fit-baseline)" if first_events else "none: no drift figures")
    return ReplayBaselines(chosen, {m: sources[m] for m in loaded.models})
