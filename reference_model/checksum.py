"""Checking a reference-model file against its model card's SHA-256, without torch.

`visionmon check-config` and `run` verify the file before anything heavy is imported;
`artifact.load_reference` verifies it again right before deserialising.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


class ArtifactError(Exception):
    """The reference model cannot be used; the message names the file and the remedy."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Refuse a missing, empty or altered file before it is deserialised."""
    if not path.exists():
        raise ArtifactError(f"reference model file {path} does not exist; check reference.path "
                            "(a relative path is resolved from the config file's folder)")
    if not path.is_file():
        raise ArtifactError(f"reference model path {path} is not a regular file")
    try:
        size = path.stat().st_size
        actual = sha256_file(path)
    except OSError as err:
        raise ArtifactError(f"reference model file {path} cannot be read: {err.strerror}; "
                            "check its permissions") from None
    if size == 0:
        raise ArtifactError(f"reference model file {path} is empty (0 bytes); the copy was "
                            "probably interrupted: copy the artifact again")
    if actual != expected.lower():
        raise ArtifactError(
            f"reference model file {path} has SHA-256 {actual}, but reference.sha256 expects "
            f"{expected} ({size} bytes on disk). The file is truncated, corrupt or a "
            "different version: copy the right artifact, or update reference.sha256 if this "
            f"file is the intended one (sha256sum {path})")
