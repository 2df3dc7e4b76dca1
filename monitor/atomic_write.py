"""Writing a file atomically: a temporary file beside it, then a rename.

Readers (Prometheus, Grafana's file provider, a restarting daemon) never see a
half-written file, and a failed write leaves the previous file in place and no temporary
file behind. The one helper for every file visionmon writes whole (generated files,
baselines, checkpoints, replays, reports, model artifacts).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync_path(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | os.PathLike[str], *, mode: int = 0o644, durable: bool = False,
              prefix: str | None = None, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path` for the caller to write; when the block ends,
    rename it over `path` (file mode `mode`); when the block raises, delete it.

    `durable`: fsync the file before the rename and the folder after it, so the new file
    survives a power cut (checkpoints). `prefix`/`suffix`: the temporary file's name
    (default `.<name>.XXXX`; a suffix for writers that choose a format by extension).
    Parent folders are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=prefix if prefix is not None else f".{target.name}.",
                                suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            _fsync_path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_path(target.parent)


def write_bytes_atomically(path: str | os.PathLike[str], data: bytes | Iterable[bytes], *,
                           mode: int = 0o644, durable: bool = False,
                           prefix: str | None = None) -> Path:
    """Write `data` (bytes, or chunks written in turn without joining them) to `path` via
    `replacing`; returns the path."""
    chunks = (data,) if isinstance(data, bytes) else data
    with replacing(path, mode=mode, durable=durable, prefix=prefix) as tmp, \
            open(tmp, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
    return Path(path)


def write_text_atomically(path: str | os.PathLike[str], text: str, *,
                          mode: int = 0o644) -> Path:
    """Write `text` (UTF-8) to `path` via `replacing`; returns the path."""
    return write_bytes_atomically(path, text.encode("utf-8"), mode=mode)
