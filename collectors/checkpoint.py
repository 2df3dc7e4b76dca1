"""State checkpoints on disk: JSON body behind a header carrying its SHA-256.

Written atomically (temp file, fsync, rename) in a 0700 directory; a file whose hash
does not match is set aside as `*.corrupt-<time>` and reported, never loaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
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


def _encode_parts(state: Any) -> tuple[bytes, bytes]:
    """(header, body): kept apart so that writing does not copy a large body once more."""
    body = orjson.dumps(state, default=_default,
                        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n", body


def encode(state: Any) -> bytes:
    head, body = _encode_parts(state)
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
        head, body = _encode_parts(state)
        write_bytes_atomically(self.path, (head, body), mode=0o600, durable=True,
                               prefix=f"{self.path.stem}.tmp-")

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
