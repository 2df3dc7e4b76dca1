"""Every check a config must pass before `run`, `alerts generate` or `dashboards generate`
acts on it, in one table that all three commands and `check-config` read.

`load_config` already refused what one section can tell (types, ranges, unknown keys)
and references across sections (models, classes). The checks here need the disk or the
generators: the reference model's file and SHA-256, the baseline files, TLS and SSL
files, the data an objective needs, and the alert rules and dashboards themselves. Each
check names the commands it guards: `check-config` runs them all, each command the ones
that guard it, so no command can accept a config that `check-config` refused or refuse
one that it accepted. Nothing here imports torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from monitor.config import ConfigError, LoadedConfig

Command = Literal["run", "alerts", "dashboards"]
COMMANDS: tuple[Command, ...] = ("run", "alerts", "dashboards")
RUN: tuple[Command, ...] = ("run",)


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: the key path, what is wrong and what would be valid. A warning does
    not stop a command (the daemon runs with a feature off)."""

    key: str
    message: str
    warning: bool = False


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the table: which commands it guards and how it finds problems."""

    name: str
    guards: frozenset[Command]
    find: Callable[[LoadedConfig], Iterable[Problem]]


@dataclass(frozen=True, slots=True)
class Preflight:
    """The problems found in one config file."""

    path: str
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if not p.warning)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.warning)

    def line(self, p: Problem) -> str:
        """`FILE: KEY: MESSAGE` (the key is left out when the message already names it)."""
        where = f"{self.path}: {p.key}: " if p.key else f"{self.path}: "
        return where + p.message

    def raise_errors(self) -> None:
        """Raise one ConfigError listing every error, if there is any."""
        if self.errors:
            raise ConfigError("\n".join(self.line(p) for p in self.errors))


# ---------------------------------------------------------------------------------------
# The checks


def _reference_file(loaded: LoadedConfig) -> Iterator[Problem]:
    """The reference model's file exists and matches `reference.sha256` (hashed without
    loading torch). Not required: the daemon runs without shadow scoring, so a warning."""
    from reference_model.checksum import ArtifactError, verify_sha256

    ref = loaded.config.reference
    if ref is None:
        return
    try:
        verify_sha256(Path(ref.path), ref.sha256)
    except ArtifactError as err:
        if ref.required:
            yield Problem("reference.path", f"{err} (or set reference.required: false to run "
                                            "without shadow scoring)")
        else:
            yield Problem("reference.path", f"{err}; reference.required is false, so the "
                                            "daemon runs without shadow scoring", warning=True)


def _reference_precision(loaded: LoadedConfig) -> Iterator[Problem]:
    """`reference.cpu_bf16: true` on a CPU without bf16 instructions runs, slower than
    float32: a warning (check-config runs where the daemon will, or says so)."""
    from reference_model.cpu_features import BF16_FLAGS, cpu_has_bf16

    ref = loaded.config.reference
    if ref is None or ref.cpu_bf16 is not True or ref.device == "cuda" or cpu_has_bf16():
        return
    yield Problem("reference.cpu_bf16",
                  f"true, but this CPU has no bf16 instructions ({' or '.join(sorted(BF16_FLAGS))}"
                  " in /proc/cpuinfo): where the model runs on this CPU, bf16 autocast runs "
                  "slower than float32; set cpu_bf16: auto (on only where the CPU has them) "
                  "or false", warning=True)


def _baseline(loaded: LoadedConfig) -> Iterator[Problem]:
    """`baseline.mode: file` loads (hash, model, classes); `none` turns drift off."""
    from visionmon.app import load_baselines

    cfg = loaded.config.baseline
    if cfg.mode == "none":
        yield Problem("baseline.mode", "none: drift detection is off (no PSI, no drift "
                                       "alerts); valid modes: file (a baseline built with "
                                       "`visionmon baseline build`), first_events (profile "
                                       "the first baseline.events predictions)", warning=True)
        return
    try:
        baselines = load_baselines(loaded)
    except ConfigError as err:
        yield Problem("", str(err).removeprefix(f"{loaded.path}: "))
        return
    if cfg.mode == "file":
        for name in sorted(set(loaded.models) - set(baselines)):
            yield Problem("baseline.path", f"{cfg.path} is for model "
                                           f"{', '.join(sorted(baselines))}: model {name} has "
                                           "no baseline, so its drift detection is off (put "
                                           "{model} in the path for one file per model)",
                          warning=True)


_SSL_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


def _tls_and_ssl_files(loaded: LoadedConfig) -> Iterator[Problem]:
    """Certificate and key files the HTTP server and the Kafka client will open."""
    cfg = loaded.config
    files = [(f"http.{k}", getattr(cfg.http, k)) for k in ("tls_certfile", "tls_keyfile")]
    if cfg.kafka.security_protocol.endswith("SSL"):
        files += [(f"kafka.{k}", getattr(cfg.kafka, k)) for k in _SSL_FILES]
    for key, value in files:
        if value and not Path(value).is_file():
            yield Problem(key, f"no such file {value} (a relative path is resolved from the "
                               "config file's folder)")
    if cfg.http.tls_keyfile and not cfg.http.tls_certfile:
        yield Problem("http.tls_keyfile", "needs http.tls_certfile (the server certificate)")


def _objective_data(loaded: LoadedConfig) -> Iterator[Problem]:
    """An objective whose SLI can never have data: shadow agreement on a model without a
    reference model, drift windows without a baseline."""
    cfg = loaded.config
    if cfg.slos is None:
        return
    referenced = cfg.reference.model if cfg.reference is not None else None
    for j, obj in enumerate(cfg.slos.objectives):
        key = f"slos.objectives.{j}.quality_objective"
        if obj.quality_objective == "shadow_agreement" and obj.model != referenced:
            yield Problem(key, f"shadow_agreement needs a reference model for model "
                               f"{obj.model!r} (reference.model is {referenced!r}); add a "
                               "`reference:` section for it or choose accuracy, ece or drift")
        if obj.quality_objective == "drift" and cfg.baseline.mode == "none":
            yield Problem(key, "drift needs a baseline, but baseline.mode is none; set "
                               "baseline.mode to file or first_events, or choose accuracy, "
                               "ece or shadow_agreement")


class _Warnings(logging.Handler):
    """The warnings a generator logs, kept to be reported as warnings of the check."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _alert_rules(loaded: LoadedConfig) -> Iterator[Problem]:
    """Everything `alerts generate` builds (spec, rules, promtool tests), written nowhere;
    what the generator adjusts (a tier dropped or lowered) is reported as a warning."""
    from alerts.generate import generate

    logger = logging.getLogger("alerts")
    caught = _Warnings()
    logger.addHandler(caught)
    propagate, logger.propagate = logger.propagate, False
    try:
        generate(loaded)
    except ConfigError as err:
        yield Problem("", str(err).removeprefix(f"{loaded.path}: "))
    finally:
        logger.removeHandler(caught)
        logger.propagate = propagate
    for message in caught.messages:
        where, _, what = message.partition(": ")     # "slos.objectives.3 (kind, model): ..."
        key, _, about = where.partition(" ")
        yield Problem(key, f"{about} {what}".strip() if what else where, warning=True)


def _dashboards(loaded: LoadedConfig) -> Iterator[Problem]:
    """Every dashboard `dashboards generate` renders, written nowhere."""
    from dashboards.generate import render_all

    try:
        render_all(loaded)
    except ConfigError as err:
        yield Problem("", str(err).removeprefix(f"{loaded.path}: "))


CHECKS: tuple[Check, ...] = (
    Check("reference model file and SHA-256", frozenset({"run"}), _reference_file),
    Check("reference model precision on this CPU", frozenset({"run"}), _reference_precision),
    Check("baseline files, or drift off", frozenset({"run"}), _baseline),
    Check("TLS and SSL files", frozenset({"run"}), _tls_and_ssl_files),
    Check("data each objective needs", frozenset({"alerts"}), _objective_data),
    Check("alert rules and their tests", frozenset({"alerts"}), _alert_rules),
    Check("dashboards", frozenset({"dashboards"}), _dashboards),
)


def preflight(loaded: LoadedConfig, commands: Collection[Command] = COMMANDS) -> Preflight:
    """Run the checks that guard any of `commands` (all of them for `check-config`)."""
    wanted = frozenset(commands)
    problems = [p for check in CHECKS if check.guards & wanted for p in check.find(loaded)]
    return Preflight(loaded.path, tuple(problems))
