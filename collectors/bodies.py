"""The bodies /metrics serves for one snapshot: a format prometheus_client's content
negotiation chose, gzipped or not. Pure data and one function, so that the render worker
process (collectors/render_worker.py) writes them as the daemon's own thread would."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client.registry import Collector

from collectors.exporter import build_registry
from collectors.exposition import ExpositionWriter
from monitor.snapshot import Snapshot

#: gzip level of /metrics bodies: on the scrape benchmark's 9.6 MB body level 9
#: (prometheus_client's) took 0.36 s of CPU for 406 kB, level 6 0.11 s for 466 kB
GZIP_LEVEL = 6


@dataclass(frozen=True, slots=True)
class BodyFormat:
    """One body of a snapshot: its content type, prometheus_client's encoder for it (used
    when the fast writer does not cover the type; a module function or a partial of one,
    so it pickles), and whether it is gzipped. Equal by content type and gzip."""

    content_type: str
    encoder: Callable[[Collector], bytes] = field(compare=False, hash=False)
    gzipped: bool = False

    def plain(self) -> BodyFormat:
        """The same format without gzip (a gzip body is written from it)."""
        return BodyFormat(self.content_type, self.encoder, False)


def write_plain(snapshot: Snapshot, fmt: BodyFormat, writer: ExpositionWriter) -> bytes:
    """The uncompressed body: the fast writer's bytes, or prometheus_client's encoder over a
    registry of the same snapshot for the formats the fast writer leaves to it."""
    write = writer.writer_for(fmt.content_type)
    if write is not None:
        return write(snapshot)
    return fmt.encoder(build_registry(lambda: snapshot))


def gzipped(plain: bytes) -> bytes:
    """A body compressed as /metrics sends it (`GZIP_LEVEL`)."""
    return gzip.compress(plain, compresslevel=GZIP_LEVEL)
