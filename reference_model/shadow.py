"""Shadow scoring: sampled images in, `ScoredImage`s out, never blocking the consumer.

Pipeline (all bounded):

    submit() --> raw queue (<= queue_size images and <= queue_max_bytes; drop-oldest)
             --> decode workers (decode_workers threads, Pillow under images: limits;
                 with decode_mode "processes" each thread hands chunks to a worker process)
             --> decoded queue (<= 2 x batch_size; decoders wait when it is full)
             --> one inference thread (batches of up to batch_size, linger_ms)
             --> on_scored(list[ScoredImage])

`submit` only appends to a deque under a lock, so it returns in microseconds; when the
model falls behind, the raw queue overflows and the *oldest* images are dropped and
counted in `visionmon_images_dropped_total{reason="queue_full"}`. Memory is bounded by
`queue_max_bytes` of encoded images plus 2 x batch_size + decode_workers decoded images
(x DECODE_CHUNK in flight with worker processes, plus their fixed shared pixel slots).

A failing batch is counted in `visionmon_reference_errors_total{reason}` and never stops
the thread. Out of memory (`reason="oom"`) retries the same images in halves; the batch
limit stays halved and doubles back after `_GROW_AFTER` clean batches.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from monitor.catalog import CATALOG, PREFIX
from monitor.events import ImageEvent
from monitor.reference_config import ImagesConfig, ReferenceConfig
from monitor.scored import ScoredImage
from monitor.snapshot import SnapshotBuilder, histogram_value
from reference_model.artifact import ArtifactError
from reference_model.cpu_features import cpu_has_bf16
from reference_model.decode_pool import DECODE_CHUNK, Decoded, ProcessDecoder
from reference_model.duplicates import DuplicateWindow
from reference_model.gpu import GpuMonitor, reference_gpu
from reference_model.intake import DecodedImage, ImageIntake, IntakeReason, IntakeRejection
from reference_model.scorer import BatchScorer, Scorer, is_out_of_memory

log = logging.getLogger(__name__)

#: reference_errors_total reasons.
ERROR_REASONS = ("oom", "inference_error", "output_error", "callback_error", "decoder_died")
#: images_dropped_total reasons.
DROP_REASONS = ("queue_full", "oom", "inference_error", "reference_unavailable",
                "other_model", "shutdown")
_GROW_AFTER = 50
_BATCH_SECONDS = f"{PREFIX}reference_batch_seconds"


@dataclass(frozen=True, slots=True)
class _Decoded:
    event: ImageEvent
    image: DecodedImage


def class_index_map(reference_classes: Sequence[str] | None,
                    production_classes: Sequence[str]) -> np.ndarray | None:
    """For each production class, the reference output column holding it; None when the
    reference model uses the production classes in the same order. Raises ValueError
    when a production class is missing from the reference classes."""
    if reference_classes is None or list(reference_classes) == list(production_classes):
        return None
    where = {c: i for i, c in enumerate(reference_classes)}
    missing = [c for c in production_classes if c not in where]
    if missing:
        raise ValueError(f"reference.classes lacks production classes {missing[:10]}")
    return np.array([where[c] for c in production_classes], dtype=np.int64)


class ShadowScorer:
    """Decodes and scores sampled images in background threads (see module docstring).

    `classes`: the production model's class names (ScoredImage.ref_pred indexes these).
    `scorer`: a ready scorer; None loads `config` now, synchronously (ArtifactError when
    it cannot be loaded and `config.required`; otherwise shadow scoring is disabled and
    says why in `ready()` and `visionmon_reference_model_up 0`). ArtifactError also when
    the reference classes cannot be matched to `classes`. `clock` gives ScoredImage.ts
    (epoch seconds) for images whose event has no ts. `on_scored` runs on the inference
    thread. `gpu` reads the model's GPU for `visionmon_reference_gpu_*` (`reference_model.gpu`):
    "auto" opens it through NVML when the model runs on CUDA; None exports none.
    """

    def __init__(self, config: ReferenceConfig, images_config: ImagesConfig,
                 classes: Sequence[str], on_scored: Callable[[list[ScoredImage]], None], *,
                 scorer: BatchScorer | None = None,
                 clock: Callable[[], float] = time.time,
                 gpu: GpuMonitor | Literal["auto"] | None = "auto") -> None:
        self._config = config
        self._images = images_config
        self._on_scored = on_scored
        self._clock = clock
        self._model = config.model
        self._classes = tuple(classes)
        self._unavailable: str | None = None
        if scorer is None:
            try:
                scorer = Scorer.from_config(config)
            except ArtifactError as err:
                if config.required:
                    raise
                self._unavailable = str(err)
                log.error("shadow scoring disabled (reference.required is false): %s", err)
        self._scorer = scorer
        # the `auto` settings as the scorer decided them (or for the CPU without one)
        config = self._config = config.resolved(
            scorer.info.device if scorer is not None else "cpu", cpu_has_bf16())
        self._map: np.ndarray | None = None
        if scorer is not None:
            try:
                self._map = class_index_map(config.classes, self._classes)
            except ValueError as err:
                raise ArtifactError(f"reference model {config.path}: {err} (model "
                                    f"{config.model!r}); fix reference.classes") from None
            n_out = scorer.info.num_classes
            if self._map is None and n_out != len(self._classes):
                raise ArtifactError(
                    f"reference model {config.path} outputs {n_out} classes but model "
                    f"{config.model!r} has {len(self._classes)}; list the reference model's "
                    "classes in reference.classes so they can be matched by name")
        if gpu == "auto":
            gpu = reference_gpu(scorer.info.device) if scorer is not None else None
        self._gpu: GpuMonitor | None = gpu
        self._intake = ImageIntake.for_reference(images_config, config)
        #: the `duplicate` feature's recent hashes (the inference thread alone uses it)
        self._duplicates = DuplicateWindow(images_config.duplicates)

        self._lock = threading.Lock()
        self._raw_cv = threading.Condition(self._lock)
        self._decoded_cv = threading.Condition(self._lock)
        self._raw: deque[ImageEvent] = deque()
        self._raw_bytes = 0
        self._decoded: deque[_Decoded] = deque()
        self._decoded_cap = 2 * config.batch
        self._decoding = 0
        self._stopping = False
        self._batch_limit = config.batch
        self._clean_batches = 0
        # counters (guarded by _lock)
        self._scored = 0
        self._errors = dict.fromkeys(ERROR_REASONS, 0)
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._rejected = dict.fromkeys((r.value for r in IntakeReason), 0)
        self._bounds = np.asarray(CATALOG[_BATCH_SECONDS].buckets, dtype=np.float64)
        self._hist = np.zeros(len(self._bounds) + 1, dtype=np.int64)
        self._hist_sum = 0.0
        self._thread_error: str | None = None

        self._processes: ProcessDecoder | None = None
        self._threads: list[threading.Thread] = []
        if self._scorer is not None:
            if decode_in_processes(config, self._scorer.info.device):
                self._processes = ProcessDecoder(
                    images_config, self._intake.preprocess, config.decode_workers,
                    nice=config.thread_nice)
            for i in range(config.decode_workers):
                self._threads.append(threading.Thread(
                    target=self._decode_loop, name=f"visionmon-decode-{i}", daemon=True))
            self._threads.append(threading.Thread(
                target=self._inference_loop, name="visionmon-inference", daemon=True))
            for t in self._threads:
                t.start()
            log.info("shadow scoring started for model %s: reference model on %s, %d decode "
                     "workers (%s), batches of up to %d, in %s", self._model,
                     self._scorer.info.device, config.decode_workers,
                     "processes" if self._processes is not None else "threads",
                     config.batch, self._scorer.info.precision)

    # ------------------------------------------------------------------ intake side

    def submit(self, events: Sequence[ImageEvent]) -> None:
        """Queue images for scoring; O(len(events)) deque appends, never waits for work."""
        cfg = self._config
        with self._lock:
            if self._scorer is None or self._stopping:
                key = "reference_unavailable" if self._scorer is None else "shutdown"
                self._dropped[key] += len(events)
                return
            for ev in events:
                size = len(ev.data)
                if ev.model != self._model:
                    self._dropped["other_model"] += 1
                    continue
                if size == 0:
                    self._rejected[IntakeReason.EMPTY] += 1
                    continue
                if size > self._images.max_bytes:
                    self._rejected[IntakeReason.TOO_LARGE] += 1
                    continue
                while self._raw and (len(self._raw) >= cfg.queue_size
                                     or self._raw_bytes + size > cfg.queue_max_bytes):
                    old = self._raw.popleft()
                    self._raw_bytes -= len(old.data)
                    self._dropped["queue_full"] += 1
                self._raw.append(ev)
                self._raw_bytes += size
            self._raw_cv.notify(min(len(self._raw), self._config.decode_workers))

    def _lower_priority(self) -> None:
        """Best effort: raise this thread's nice value (Linux applies it per thread)."""
        nice = self._config.thread_nice
        if nice <= 0 or not hasattr(os, "setpriority"):
            return
        try:
            tid = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, max(current, nice))
        except OSError as err:
            log.debug("cannot lower the priority of %s: %s", threading.current_thread().name, err)

    def _decode_loop(self) -> None:
        self._lower_priority()
        workers = self._config.decode_workers
        while True:
            with self._lock:
                while not self._raw and not self._stopping:
                    self._raw_cv.wait(0.5)
                if self._stopping:
                    return
                take = 1
                if self._processes is not None:  # share the backlog among the workers
                    take = min(DECODE_CHUNK, -(-len(self._raw) // workers))
                chunk = [self._raw.popleft() for _ in range(take)]
                self._raw_bytes -= sum(len(ev.data) for ev in chunk)
                self._decoding += take
            try:
                results = self._decode([ev.data for ev in chunk])
            except Exception as err:  # the pool closed at shutdown, or could not start
                with self._lock:
                    self._decoding -= take
                    if self._stopping:
                        self._dropped["shutdown"] += take
                        return
                    self._rejected[IntakeReason.DECODE_ERROR] += take
                log.warning("decoding %d images failed (%s: %s); refused as decode_error",
                            take, type(err).__name__, err)
                time.sleep(1.0)  # whatever broke, do not spin on it
                continue
            if not self._deliver(chunk, results):
                return

    def _decode(self, chunk: list[bytes]) -> list[Decoded]:
        if self._processes is not None:
            return self._processes.decode(chunk)
        return [self._intake.decode(data) for data in chunk]

    def _deliver(self, chunk: list[ImageEvent],
                 results: list[Decoded]) -> bool:
        """Count refusals, queue decoded images (waiting for room); False when stopping."""
        added = False  # one wake-up per chunk, not per image: waking every waiter per
        with self._lock:  # image costs the inference thread the GIL on a many-core host
            for i, (ev, result) in enumerate(zip(chunk, results, strict=True)):
                if isinstance(result, IntakeRejection):
                    self._decoding -= 1
                    self._rejected[result.reason] += 1
                    continue
                while len(self._decoded) >= self._decoded_cap and not self._stopping:
                    if added:
                        self._decoded_cv.notify_all()
                        added = False
                    self._decoded_cv.wait(0.5)
                if self._stopping:
                    left = len(chunk) - i
                    self._decoding -= left
                    self._dropped["shutdown"] += left
                    return False
                self._decoding -= 1
                self._decoded.append(_Decoded(ev, result))
                added = True
            if added:
                self._decoded_cv.notify_all()
        return True

    # ------------------------------------------------------------------ inference side

    def _next_batch(self) -> list[_Decoded] | None:
        linger = self._config.linger_ms / 1000.0
        with self._lock:
            while not self._decoded and not self._stopping:
                self._decoded_cv.wait(0.5)
            if self._stopping:
                return None
            deadline = time.monotonic() + linger
            while len(self._decoded) < self._batch_limit and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._decoded_cv.wait(left)
            n = min(len(self._decoded), self._batch_limit)
            batch = [self._decoded.popleft() for _ in range(n)]
            self._decoded_cv.notify_all()  # decoders waiting for room
            return batch

    def _inference_loop(self) -> None:
        self._lower_priority()
        try:
            while (batch := self._next_batch()) is not None:
                self._run(batch)
        except BaseException as err:  # keep the daemon alive; ready() reports it
            log.exception("reference inference thread stopped")
            with self._lock:
                self._thread_error = f"{type(err).__name__}: {err}"

    def _run(self, batch: list[_Decoded]) -> None:
        pending = [batch]
        while pending:
            chunk = pending.pop(0)
            start = time.perf_counter()
            try:
                assert self._scorer is not None
                result = self._scorer.score([d.image.pixels for d in chunk])
            except Exception as err:
                pending[:0] = self._failed(chunk, err)
                continue
            self._observe(time.perf_counter() - start, len(chunk))
            try:
                scored = self._to_scored(chunk, result.probs, result.embeddings, result.energy)
            except Exception as err:
                log.warning("reference model output unusable: %s", err)
                with self._lock:
                    self._errors["output_error"] += 1
                    self._dropped["inference_error"] += len(chunk)
                continue
            try:
                self._on_scored(scored)
            except Exception:
                log.exception("on_scored callback failed for %d images", len(scored))
                with self._lock:
                    self._errors["callback_error"] += 1

    def _failed(self, chunk: list[_Decoded], err: Exception) -> list[list[_Decoded]]:
        """Count a failed batch; for OOM return the halves to retry."""
        oom = is_out_of_memory(err)
        with self._lock:
            self._errors["oom" if oom else "inference_error"] += 1
            self._clean_batches = 0
            if not oom or len(chunk) == 1:
                self._dropped["oom" if oom else "inference_error"] += len(chunk)
                log.warning("reference batch of %d failed (%s: %s); images dropped",
                            len(chunk), type(err).__name__, str(err)[:200])
                return []
            half = max(1, len(chunk) // 2)
            self._batch_limit = min(self._batch_limit, half)
        log.warning("reference batch of %d ran out of memory; retrying in batches of %d",
                    len(chunk), half)
        _free_device_cache()
        return [chunk[i:i + half] for i in range(0, len(chunk), half)]

    def _observe(self, seconds: float, n: int) -> None:
        with self._lock:
            self._hist[int(np.searchsorted(self._bounds, seconds, side="left"))] += 1
            self._hist_sum += seconds
            self._scored += n
            self._clean_batches += 1
            if self._batch_limit < self._config.batch and \
                    self._clean_batches >= _GROW_AFTER:
                self._batch_limit = min(self._config.batch, self._batch_limit * 2)
                self._clean_batches = 0
                log.info("reference batch limit raised to %d after %d clean batches",
                         self._batch_limit, _GROW_AFTER)

    def _to_scored(self, chunk: list[_Decoded], probs: np.ndarray,
                   embeddings: np.ndarray, energy: np.ndarray | None = None
                   ) -> list[ScoredImage]:
        if probs.shape[0] != len(chunk) or embeddings.shape[0] != len(chunk):
            raise ValueError(f"{probs.shape[0]} outputs for {len(chunk)} images")
        mapped = probs if self._map is None else probs[:, self._map]
        preds = mapped.argmax(axis=1)
        confs = mapped[np.arange(len(chunk)), preds]
        now = self._clock()
        energies = np.full(len(chunk), np.nan) if energy is None else energy
        out = []
        for i, item in enumerate(chunk):
            ev = item.event
            out.append(ScoredImage(
                request_id=ev.request_id, model=ev.model, version=ev.version,
                ts=ev.ts if ev.ts is not None else now, ref_pred=int(preds[i]),
                ref_confidence=float(confs[i]),
                embedding=np.array(embeddings[i], dtype=np.float32),
                features=self._duplicates.features(ev.model, item.image.features,
                                                   item.image.dhash),
                thumbnail=item.image.thumbnail, segments=ev.segments,
                energy=float(energies[i])))
        return out

    # ------------------------------------------------------------------ status

    @property
    def device(self) -> str:
        """'cuda' or 'cpu' where the model runs; 'none' when shadow scoring is disabled."""
        return self._scorer.info.device if self._scorer is not None else "none"

    @property
    def queue_depth(self) -> int:
        """Images waiting to be scored (raw + decoding + decoded); the batch in inference
        is not counted."""
        with self._lock:
            return len(self._raw) + self._decoding + len(self._decoded)

    @property
    def batch_limit(self) -> int:
        """Current largest batch (config.batch, or less after an OOM)."""
        with self._lock:
            return self._batch_limit

    def ready(self) -> tuple[bool, str]:
        """(ready, why) for the daemon's readiness endpoint."""
        with self._lock:
            if self._scorer is None:
                return True, f"shadow scoring disabled (reference.required false): " \
                             f"{self._unavailable}"
            if self._stopping:
                return False, "shadow scorer closed"
            if self._thread_error is not None:
                return False, f"reference inference thread stopped: {self._thread_error}"
            if not all(t.is_alive() for t in self._threads):
                return False, "a shadow scoring thread is not running"
            return True, f"reference model {self._model} scoring on {self._scorer.info.device}"

    def up(self) -> bool:
        """True while images are being scored (model loaded, threads alive)."""
        ok, _ = self.ready()
        return ok and self._scorer is not None

    def snapshot(self, builder: SnapshotBuilder) -> None:
        """Add every reference-model metric to the snapshot (the GPU's, read through NVML
        outside the lock, only where the model runs on a GPU that NVML reads)."""
        m = (self._model,)
        up = self.up()
        if self._gpu is not None:
            self._gpu.snapshot(builder, self._model)
        with self._lock:
            builder.set(f"{PREFIX}reference_model_up", m, 1.0 if up else 0.0)
            if self._scorer is not None:
                info = self._scorer.info
                builder.set(f"{PREFIX}reference_model_info",
                            (self._model, info.sha256, info.device, str(self._config.batch),
                             info.precision), 1.0)
                builder.set(f"{PREFIX}reference_model_load_seconds", m, info.load_seconds)
            builder.set(_BATCH_SECONDS, m, histogram_value(self._hist, self._hist_sum))
            builder.set(f"{PREFIX}reference_queue_depth", m,
                        float(len(self._raw) + self._decoding + len(self._decoded)))
            builder.set(f"{PREFIX}reference_images_scored_total", m, float(self._scored))
            for reason, n in self._error_counts().items():
                builder.set(f"{PREFIX}reference_errors_total", (self._model, reason), float(n))
            for reason, n in self._rejected.items():
                builder.set(f"{PREFIX}images_rejected_total", (reason,), float(n))
            for reason, n in self._dropped.items():
                builder.set(f"{PREFIX}images_dropped_total", (reason,), float(n))

    def _error_counts(self) -> dict[str, int]:
        """Errors by reason; `decoder_died` is read from the decode pool, not kept here."""
        errors = dict(self._errors)
        errors["decoder_died"] = self._processes.restarts if self._processes is not None else 0
        return errors

    def counts(self) -> dict[str, dict[str, int]]:
        """Counter values by family ('scored', 'errors', 'rejected', 'dropped')."""
        with self._lock:
            return {"scored": {"": self._scored}, "errors": self._error_counts(),
                    "rejected": dict(self._rejected), "dropped": dict(self._dropped)}

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the threads; queued images are dropped (reason "shutdown")."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            queued = len(self._raw) + len(self._decoded)
            self._dropped["shutdown"] += queued
            self._raw.clear()
            self._raw_bytes = 0
            self._decoded.clear()
            self._raw_cv.notify_all()
            self._decoded_cv.notify_all()
        deadline = time.monotonic() + timeout_s
        if self._processes is not None:
            self._processes.close(timeout_s)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        log.info("shadow scoring stopped for model %s (%d queued images dropped)", self._model,
                 queued)


def decode_in_processes(config: ReferenceConfig, device: str) -> bool:
    """Whether images are decoded in worker processes: `decode_mode` processes, or auto
    with the model on CUDA (where decoding, not the model, limits the throughput)."""
    if config.decode_mode == "auto":
        return device == "cuda"
    return config.decode_mode == "processes"


def _free_device_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
