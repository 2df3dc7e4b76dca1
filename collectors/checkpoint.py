"""State checkpoints on disk: JSON body behind a header carrying its SHA-256.

Written atomically (temp file, fsync, rename) in a 0700 directory; a file whose hash
does not match is set aside as `*.corrupt-<time>` and reported, never loaded.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from monitor.atomic_write import write_bytes_atomically

log = logging.getLogger(__name__)

MAGIC = b"visionmon-checkpoint v1 sha256="
FILENAME = "state.ckpt"


class CheckpointCorrupt(Exception):
    """The checkpoint's content does not match its recorded hash, or cannot be parsed."""


def _default(obj: Any) -> Any:
    tolist = getattr(obj, "tolist", None)
    if tolist is not None:
        return tolist()
    raise TypeError(f"cannot checkpoint {type(obj).__name__}")


def encode_parts(state: Any) -> tuple[bytes, bytes]:
    """(header, body): kept apart so that writing does not copy a large body once more."""
    body = orjson.dumps(state, default=_default,
                        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n", body


def encode(state: Any) -> bytes:
    head, body = encode_parts(state)
    return head + body


def decode(data: bytes) -> Any:
    head, sep, body = data.partition(b"\n")
    if not sep or not head.startswith(MAGIC):
        raise CheckpointCorrupt("missing or unknown header")
    if hashlib.sha256(body).hexdigest().encode() != head[len(MAGIC):]:
        raise CheckpointCorrupt("content does not match its SHA-256 (truncated or edited)")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise CheckpointCorrupt(f"body is not valid JSON: {err}") from None


#: why a checkpoint write failed (the `reason` label of visionmon_checkpoint_failures_total):
#: `encode`, the state could not be serialised; `io`, the file could not be written
#: (disk full, permissions, a read-only file system); `other`, anything else
FAILURE_REASONS = ("encode", "io", "other")


def failure_reason(err: BaseException) -> str:
    """The `reason` label of a failed write."""
    if isinstance(err, OSError):
        return "io"
    if isinstance(err, (TypeError, ValueError)):  # orjson.JSONEncodeError is a TypeError
        return "encode"
    return "other"


@dataclass(slots=True)
class CheckpointHealth:
    """Failed checkpoint writes: counted by reason, logged at most once per `log_every_s`,
    and how long (seconds) writes have been failing without a success in between."""

    log_every_s: float = 60.0
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_REASONS, 0))
    failing_since: float | None = None
    last_reason: str | None = None
    _logged_at: float = -math.inf

    def failed(self, reason: str, now: float) -> bool:
        """Count a failure; True when it should be logged (the first in `log_every_s`)."""
        self.failures[reason] = self.failures.get(reason, 0) + 1
        self.last_reason = reason
        if self.failing_since is None:
            self.failing_since = now
        if now - self._logged_at >= self.log_every_s:
            self._logged_at = now
            return True
        return False

    def succeeded(self) -> None:
        self.failing_since = None

    def failing_for(self, now: float) -> float:
        """Seconds since the first failure after the last success (0 while writes succeed)."""
        return 0.0 if self.failing_since is None else max(0.0, now - self.failing_since)


class CheckpointStore:
    """One checkpoint file in a private directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        self.path = self.dir / FILENAME
        for stale in self.dir.glob(f"{self.path.stem}.tmp-*"):  # left by a killed writer
            log.info("removing unfinished checkpoint %s", stale)
            stale.unlink(missing_ok=True)

    def save(self, state: Any) -> None:
        self.write(encode_parts(state))

    def write(self, parts: tuple[bytes, bytes]) -> None:
        """Write an encoded state (`encode_parts`): the daemon encodes under its lock, so
        that the state cannot change while it is serialised, and writes outside it."""
        write_bytes_atomically(self.path, parts, mode=0o600, durable=True,
                               prefix=f"{self.path.stem}.tmp-")

    #: checkpoints set aside for the same reason that are kept (the oldest are removed)
    KEEP_ASIDE = 3

    def set_aside(self, why: str) -> Path | None:
        """Move the checkpoint to `state.ckpt.<why>-<unix time in ns>` (kept for inspection,
        never loaded; the newest KEEP_ASIDE of each reason); the path it was moved to, None
        when there was none."""
        if not self.path.exists():
            return None
        aside = self.path.with_name(f"{FILENAME}.{why}-{time.time_ns()}")
        while aside.exists():  # never over an earlier one
            aside = self.path.with_name(f"{FILENAME}.{why}-{time.time_ns()}")
        os.replace(self.path, aside)
        older = sorted(self.dir.glob(f"{FILENAME}.{why}-*"), key=lambda p: p.stat().st_mtime)
        for old in older[:-self.KEEP_ASIDE]:
            log.info("removing the old set-aside checkpoint %s", old)
            old.unlink(missing_ok=True)
        return aside

    def load(self) -> Any | None:
        """The saved state, None when there is none. Raises CheckpointCorrupt after moving
        a bad file aside (so the next start is clean)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return decode(data)
        except CheckpointCorrupt as err:
            aside = self.path.with_name(f"{FILENAME}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            raise CheckpointCorrupt(f"{self.path}: {err}; moved to {aside}") from None
