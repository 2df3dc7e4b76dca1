"""Image decoding in worker processes, for when threads stop scaling.

Decoding threads share the GIL. Each image alternates short GIL-free Pillow calls with Python
work, so past two threads they mostly wait for one another. On a 16-core H200 machine, 14
decode threads did 640 images/s: less than one thread. Worker processes scale with cores.
The parent sends encoded bytes in chunks and gets back the same `DecodedImage` /
`IntakeRejection` values that `ImageIntake.decode` returns. Pixels come back through shared
memory, not the result pipe: a fixed set of slots of input_size² x 3 bytes, `workers` x
`DECODE_CHUNK` of them, so memory is bounded by the configuration. Pickled through the pipe,
pixels capped the pool at about 2,900 images/s on this 2-core machine, with the pipe
carrying 0.45 GB/s.

Workers are started with `spawn`, never `fork`: the daemon has threads and may hold CUDA
state, and neither survives a fork. Each worker imports only Pillow, numpy and the intake
module (about 50 MB resident). Workers ignore SIGINT, because the parent decides when to stop.
They run at the configured nice value.

A worker that dies (a Pillow crash on hostile input, the OOM killer) breaks the pool. The
pool is then replaced, and each image of the failed chunks is retried alone. An image that
kills a fresh worker on its own is refused as `decode_error`, so one bad image costs only
itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal

import numpy as np

from monitor.reference_config import ImagesConfig
from reference_model.intake import DecodedImage, ImageIntake, IntakeReason, IntakeRejection

log = logging.getLogger(__name__)

Decoded = DecodedImage | IntakeRejection
#: What a worker sends back per image: the features (pixels are in the slot) or the refusal.
_WorkerResult = tuple[float, ...] | IntakeRejection

#: Most images in one chunk handed to a worker.
DECODE_CHUNK = 8
#: How many times an image is retried alone after the pool broke under it.
_SINGLE_RETRIES = 2

_worker_intake: ImageIntake | None = None  # per worker process
_worker_slots: np.ndarray | None = None  # per worker process: the shared pixel slots


def _slot_view(raw: Any, input_size: int) -> np.ndarray:
    """(slots, S, S, 3) uint8 view of the shared buffer."""
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, input_size, input_size, 3)


def _init_worker(limits: ImagesConfig, input_size: int,
                 resize: Literal["stretch", "center_crop"], nice: int, raw: Any) -> None:
    global _worker_intake, _worker_slots
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice > 0 and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError as err:  # pragma: no cover - depends on the platform
            log.debug("decode worker cannot lower its priority: %s", err)
    _worker_intake = ImageIntake(limits, input_size, resize)
    _worker_slots = _slot_view(raw, input_size)


def _decode_chunk(chunk: list[bytes], slots: list[int]) -> list[_WorkerResult]:
    """Decode into the given slots; the features for an accepted image, else its refusal."""
    assert _worker_intake is not None and _worker_slots is not None, "worker not initialised"
    out: list[_WorkerResult] = []
    for data, slot in zip(chunk, slots, strict=True):
        result = _worker_intake.decode(data)
        if isinstance(result, IntakeRejection):
            out.append(result)
        else:
            _worker_slots[slot] = result.pixels
            out.append(result.features)
    return out


class ProcessDecoder:
    """A pool of `workers` decoding processes. `decode` may be called from many threads
    at once; each call blocks (without the GIL) until its chunk is decoded."""

    def __init__(self, limits: ImagesConfig, input_size: int, workers: int, *,
                 resize: Literal["stretch", "center_crop"] = "stretch", nice: int = 0) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._context = multiprocessing.get_context("spawn")
        n_slots = workers * DECODE_CHUNK
        self._raw = self._context.RawArray("B", n_slots * input_size * input_size * 3)
        self._slots = _slot_view(self._raw, input_size)
        self._free = list(range(n_slots))
        self._args = (limits, input_size, resize, nice, self._raw)
        self._workers = workers
        self._lock = threading.Lock()
        self._slot_free = threading.Condition(self._lock)
        self._closed = False
        self._restarts = 0
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self._workers, mp_context=self._context,
                                   initializer=_init_worker, initargs=self._args)

    @property
    def restarts(self) -> int:
        """How many times a broken pool was replaced."""
        with self._lock:
            return self._restarts

    def decode(self, chunk: Sequence[bytes]) -> list[Decoded]:
        """One result per encoded image, in order; never raises for bad images. Chunks
        longer than DECODE_CHUNK are split. Raises RuntimeError once closed."""
        out: list[Decoded] = []
        for i in range(0, len(chunk), DECODE_CHUNK):
            part = list(chunk[i:i + DECODE_CHUNK])
            try:
                out += self._submit(part)
            except BrokenProcessPool:
                out += [self._decode_alone(data) for data in part]
        return out

    def _decode_alone(self, data: bytes) -> Decoded:
        for _ in range(_SINGLE_RETRIES):
            try:
                return self._submit([data])[0]
            except BrokenProcessPool:
                continue
        return IntakeRejection(IntakeReason.DECODE_ERROR, "the decoder process died on this image")

    def _submit(self, chunk: list[bytes]) -> list[Decoded]:
        with self._lock:
            while not self._closed and len(self._free) < len(chunk):
                self._slot_free.wait(0.5)
            if self._closed:
                raise RuntimeError("ProcessDecoder is closed")
            pool = self._pool
            slots = [self._free.pop() for _ in chunk]
        try:
            results = pool.submit(_decode_chunk, chunk, slots).result()
            return [r if isinstance(r, IntakeRejection)
                    else DecodedImage(self._slots[slot].copy(), r)
                    for r, slot in zip(results, slots, strict=True)]
        except BrokenProcessPool:
            self._replace(pool)
            raise
        finally:
            with self._lock:
                self._free += slots
                self._slot_free.notify_all()

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._closed or self._pool is not broken:
                return  # closed, or another thread already replaced it
            log.warning("an image decoder process died; starting a new pool of %d",
                        self._workers)
            self._restarts += 1
            self._pool = self._new_pool()
        # its workers are already being killed; wait so none still writes to a slot
        broken.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers (queued chunks are cancelled); waits for running chunks."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._slot_free.notify_all()
            pool = self._pool
        pool.shutdown(wait=True, cancel_futures=True)
