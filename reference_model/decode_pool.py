"""Image decoding in worker processes, for when threads stop scaling.

Decoding threads share the GIL. Each image alternates short GIL-free Pillow calls with Python
work, so past two threads they mostly wait for one another. On a 16-core H200 machine,
14 decode threads did 640 to 852 images/s and 14 worker processes 7,718. On the 2-core
development machine, 1 / 2 / 14 threads did 1,583 / 1,757 / 1,027 images/s
(`benchmarks/reference.py --decode-sweep`).

The parent sends encoded bytes in chunks and gets back the same `DecodedImage` /
`IntakeRejection` values that `ImageIntake.decode` returns. Pixels come back through shared
memory, not the result pipe: a fixed set of slots of input_size² x 3 bytes, `workers` x
`DECODE_CHUNK` of them, so memory is bounded by the configuration. Pickled through the pipe,
pixels capped the pool at about 2,900 images/s on this 2-core machine, with the pipe
carrying 0.45 GB/s.

Workers are started with `spawn`, never `fork`: the daemon has threads and may hold CUDA
state, and neither survives a fork. Each worker imports the intake module (Pillow, numpy,
pydantic) and, as spawn does, the parent's main module: 53 MB resident measured with a
light main module (the `visionmon` command is one). Workers ignore SIGINT, because the
parent decides when to stop. They run at the configured nice value.

A worker that dies (a Pillow crash on hostile input, the OOM killer) breaks the pool: every
chunk in flight fails. The pool is replaced (at most once a second), and each image of the
failed chunks is decoded again alone, in a one-worker quarantine pool, one image at a time.
An image whose quarantine worker dies is refused as `decode_error`. Every other image of
those chunks is still decoded.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from monitor.reference_config import ImagesConfig
from reference_model.intake import DecodedImage, ImageIntake, IntakeReason, IntakeRejection
from reference_model.preprocess import Preprocess, ResizeMode

log = logging.getLogger(__name__)

Decoded = DecodedImage | IntakeRejection
#: What a worker sends back per image: the decoded image without its pixels (they are in the
#: slot) or the refusal.
_WorkerResult = DecodedImage | IntakeRejection
_NO_PIXELS = np.zeros((0, 0, 3), dtype=np.uint8)

#: Most images in one chunk handed to a worker.
DECODE_CHUNK = 8
#: Least time between two starts of the main pool after a worker died, seconds.
_RESTART_INTERVAL_S = 1.0

_worker_intake: ImageIntake | None = None  # per worker process
_worker_slots: np.ndarray | None = None  # per worker process: the shared pixel slots


def _slot_view(raw: Any, input_size: int) -> np.ndarray:
    """(slots, S, S, 3) uint8 view of the shared buffer."""
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, input_size, input_size, 3)


def _init_worker(limits: ImagesConfig, preprocess: Preprocess, nice: int, raw: Any) -> None:
    global _worker_intake, _worker_slots
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice > 0 and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError as err:  # pragma: no cover - depends on the platform
            log.debug("decode worker cannot lower its priority: %s", err)
    _worker_intake = ImageIntake(limits, preprocess)
    _worker_slots = _slot_view(raw, preprocess.input_size)


def _decode_chunk(chunk: list[bytes], slots: list[int]) -> list[_WorkerResult]:
    """Decode into the given slots; an accepted image without its pixels, else its
    refusal."""
    assert _worker_intake is not None and _worker_slots is not None, "worker not initialised"
    out: list[_WorkerResult] = []
    for data, slot in zip(chunk, slots, strict=True):
        result = _worker_intake.decode(data)
        if isinstance(result, IntakeRejection):
            out.append(result)
        else:
            _worker_slots[slot] = result.pixels
            out.append(dataclasses.replace(result, pixels=_NO_PIXELS))
    return out


class ProcessDecoder:
    """A pool of `workers` decoding processes. `decode` may be called from many threads
    at once; each call blocks (without the GIL) until its chunk is decoded."""

    def __init__(self, limits: ImagesConfig, input_size: int | Preprocess, workers: int, *,
                 resize: ResizeMode = "stretch", nice: int = 0,
                 decode_chunk: Callable[[list[bytes], list[int]], list[_WorkerResult]]
                 = _decode_chunk) -> None:
        """`input_size`: the square side (with `resize`), or the card's whole pipeline as a
        `Preprocess`. `decode_chunk`: what a worker runs (a module-level function; tests
        inject faults through it)."""
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        preprocess = (input_size if isinstance(input_size, Preprocess)
                      else Preprocess(input_size, resize))
        side = preprocess.input_size
        self._context = multiprocessing.get_context("spawn")
        n_slots = workers * DECODE_CHUNK
        self._raw = self._context.RawArray("B", n_slots * side * side * 3)
        self._slots = _slot_view(self._raw, side)
        self._free = list(range(n_slots))
        self._args = (limits, preprocess, nice, self._raw)
        self._workers = workers
        self._lock = threading.Lock()
        self._slot_free = threading.Condition(self._lock)
        self._retire_lock = threading.Lock()  # shutdown() of a broken pool, one at a time
        self._quarantine_lock = threading.Lock()  # one image at a time in quarantine
        self._quarantine: ProcessPoolExecutor | None = None
        self._closed = False
        self._restarts = 0
        self._last_restart = -_RESTART_INTERVAL_S
        self._last_quarantine = -_RESTART_INTERVAL_S
        self._decode_chunk = decode_chunk
        self._pool = self._new_pool(workers)

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=self._context,
                                   initializer=_init_worker, initargs=self._args)

    @property
    def restarts(self) -> int:
        """How many times a worker died and its pool was replaced (quarantine included)."""
        with self._lock:
            return self._restarts

    def decode(self, chunk: Sequence[bytes]) -> list[Decoded]:
        """One result per encoded image, in order; never raises for bad images. Chunks
        longer than DECODE_CHUNK are split. Raises RuntimeError once closed."""
        out: list[Decoded] = []
        for i in range(0, len(chunk), DECODE_CHUNK):
            part = list(chunk[i:i + DECODE_CHUNK])
            with self._lock:
                pool = self._pool
            try:
                out += self._run(pool, part)
            except BrokenProcessPool:
                self._replace(pool)
                out += [self._decode_alone(data) for data in part]
        return out

    def _decode_alone(self, data: bytes) -> Decoded:
        """Decode one image in the one-worker quarantine pool: when that worker dies, this
        image alone was in it, so it is refused; no other image shares its fate."""
        with self._quarantine_lock:
            if self._quarantine is None:
                wait = self._last_quarantine + _RESTART_INTERVAL_S - time.monotonic()
                if wait > 0:  # a worker that dies at start must not spin the CPU
                    time.sleep(wait)
                self._last_quarantine = time.monotonic()
                self._quarantine = self._new_pool(1)
            pool = self._quarantine
            try:
                return self._run(pool, [data])[0]
            except BrokenProcessPool:
                self._quarantine = None
                with self._lock:
                    self._restarts += 1
                log.warning("an image decoder process died on one image; it is refused")
                return IntakeRejection(IntakeReason.DECODE_ERROR,
                                       "the decoder process died on this image")

    def _run(self, pool: ProcessPoolExecutor, chunk: list[bytes]) -> list[Decoded]:
        """Decode `chunk` in `pool` through free slots. On BrokenProcessPool the slots are
        given back only once every worker of that pool has exited: a worker still alive
        could otherwise write into a slot that is already another chunk's."""
        with self._lock:
            while not self._closed and len(self._free) < len(chunk):
                self._slot_free.wait(0.5)
            if self._closed:
                raise RuntimeError("ProcessDecoder is closed")
            slots = [self._free.pop() for _ in chunk]
        try:
            results = pool.submit(self._decode_chunk, chunk, slots).result()
            return [r if isinstance(r, IntakeRejection)
                    else dataclasses.replace(r, pixels=self._slots[slot].copy())
                    for r, slot in zip(results, slots, strict=True)]
        except BrokenProcessPool:
            with self._retire_lock:
                pool.shutdown(wait=True, cancel_futures=True)  # joins its workers
            raise
        finally:
            with self._lock:
                self._free += slots
                self._slot_free.notify_all()

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Start a new main pool unless another thread already did; at most one start per
        _RESTART_INTERVAL_S, so a worker that dies at start cannot spin the CPU."""
        with self._lock:
            if self._closed or self._pool is not broken:
                return
            wait = self._last_restart + _RESTART_INTERVAL_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        with self._lock:
            if self._closed or self._pool is not broken:
                return
            log.warning("an image decoder process died; starting a new pool of %d",
                        self._workers)
            self._restarts += 1
            self._last_restart = time.monotonic()
            self._pool = self._new_pool(self._workers)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the workers: queued chunks are cancelled, running ones get `timeout_s`
        seconds to finish before their processes are killed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._slot_free.notify_all()
            pools = [self._pool]
        with self._quarantine_lock:  # waits for a quarantined image in progress
            if self._quarantine is not None:
                pools.append(self._quarantine)
        deadline = time.monotonic() + timeout_s
        for pool in pools:
            # private, but the only handles on the workers and on the thread that joins them
            processes = list((getattr(pool, "_processes", None) or {}).values())
            manager = getattr(pool, "_executor_manager_thread", None)
            pool.shutdown(wait=False, cancel_futures=True)
            if manager is not None:  # it sends the workers their sentinels and joins them
                manager.join(max(0.0, deadline - time.monotonic()))
            for proc in processes:
                if not _running(proc):
                    continue
                log.warning("decode worker %s did not stop in %.1f s; killing it",
                            proc.pid, timeout_s)
                proc.kill()
                proc.join(5.0)


def _running(proc: multiprocessing.process.BaseProcess) -> bool:
    """Whether a worker still runs. Its exit code is set by whichever thread reaped it;
    when another waiter reaped it first, Process.is_alive() can stay True although the
    process is gone, so on Linux /proc decides."""
    if proc.exitcode is not None:
        return False
    if os.path.isdir("/proc/self"):
        return os.path.exists(f"/proc/{proc.pid}")
    return proc.is_alive()
