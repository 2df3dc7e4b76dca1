"""Batched inference with the reference model.

Input: a batch of (S, S, 3) uint8 RGB images from intake. Normalisation (pixel / 255,
channel order, mean/std) happens on the inference device, so only uint8 crosses the bus
(4x less than float32).

* CUDA: uint8 batch written into a pinned host buffer, copied with `non_blocking=True`,
  permuted to NCHW in `channels_last` layout, normalised in float32, run under bf16
  autocast with `torch.inference_mode()`; batches are padded to a power-of-two size so
  cuDNN autotuning sees a bounded set of shapes (with `torch.compile`, always to
  batch_size: one shape, compiled once at start).
  With `cuda_graphs` (the default, not with `compile`), the copy-to-probabilities path of
  each padded size is captured once as a CUDA graph and replayed: one launch per batch
  instead of hundreds. Eager launches need the GIL for each kernel, and the daemon's other
  threads hold it too: on an H200 the eager ResNet-50-sized forward ran at 10,221 images/s
  alone but the end-to-end pipeline at 2,471, with the GPU busy 22 % of the time.
* CPU: `torch.inference_mode()`, `torch.set_num_threads(config.cpu_threads)`; float32, or
  with `cpu_bf16` (by default where the CPU has bf16 instructions) `channels_last` under
  CPU bf16 autocast (2.1-4.8x the float32 images/s; docs/reference-model.md).

Outputs: softmax probabilities (float32, N x C) and embeddings (float32, N x D, the
embedding tensor flattened per image).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import torch

from monitor.reference_config import ReferenceConfig
from reference_model.artifact import ArtifactError, LoadedReference, load_reference
from reference_model.cpu_features import cpu_has_bf16

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScorerInfo:
    """What the metrics say about the model: file hash, device, load time in seconds."""

    sha256: str
    device: str
    batch_size: int
    num_classes: int
    embedding_dim: int
    load_seconds: float
    #: what the model computes in: `float32`, or `bf16` (autocast on CUDA, `cpu_bf16`)
    precision: str = "float32"


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """probs: (N, C) float32 softmax; embeddings: (N, D) float32; energy: (N,) float32
    -logsumexp(logits) (the energy at T = 1, in logit units; oracle: tests/oracles/unusual.py),
    None from scorers that do not compute it."""

    probs: np.ndarray
    embeddings: np.ndarray
    energy: np.ndarray | None = None


class BatchScorer(Protocol):
    """What ShadowScorer needs from a scorer (tests substitute fakes)."""

    @property
    def info(self) -> ScorerInfo: ...

    def score(self, images: Sequence[np.ndarray]) -> ScoreResult: ...


def is_out_of_memory(err: BaseException) -> bool:
    """True for CUDA (or other device) out-of-memory errors."""
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err))


@dataclass(frozen=True, slots=True)
class _CapturedBatch:
    """A CUDA graph of one padded batch size: write `u8`, replay, read `probs`/`embs`/
    `energy`."""

    graph: Any
    u8: torch.Tensor
    probs: torch.Tensor
    embs: torch.Tensor
    energy: torch.Tensor


def bucket_size(n: int, batch_size: int) -> int:
    """The padded batch size for n images: the next power of two, at most batch_size
    (and never below n)."""
    p = 1
    while p < n:
        p *= 2
    return max(n, min(p, batch_size))


def padded_batch(n: int, batch_size: int, *, one_shape: bool) -> int:
    """Rows the model sees for n images: `bucket_size`, or with `one_shape` (a compiled
    model, which recompiles for every new shape) always batch_size (n when larger)."""
    return max(n, batch_size) if one_shape else bucket_size(n, batch_size)


class Scorer:
    """Runs a loaded reference model on batches of intake pixels. One thread at a time."""

    def __init__(self, loaded: LoadedReference, config: ReferenceConfig) -> None:
        self._loaded = loaded
        config = config.resolved(loaded.device, cpu_has_bf16())
        self._config = config
        self._device = torch.device(loaded.device)
        self._cuda = self._device.type == "cuda"
        self._size = config.input_size
        mean = torch.tensor(config.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(config.std, dtype=torch.float32).view(1, 3, 1, 1)
        # (x / 255 - mean) / std  ==  x * scale + shift
        self._scale = (1.0 / (255.0 * std)).to(self._device)
        self._shift = (-mean / std).to(self._device)
        self._bgr = config.channel_order == "BGR"
        self._pinned: torch.Tensor | None = None
        self._autocast = self._cuda
        self._one_shape = False  # set below when the model is compiled
        self._graphs: dict[int, _CapturedBatch] | None = None  # set after the checks
        self._graph_pool: Any = None
        module: Any = loaded.module
        if self._cuda:
            torch.backends.cudnn.benchmark = True
            try:
                module = module.to(memory_format=torch.channels_last)
            except Exception as err:  # some scripted modules refuse; NCHW still works
                log.warning("channels_last not applied to %s: %s", loaded.path, err)
            if config.compile:
                if loaded.format == "export":
                    module = torch.compile(module, dynamic=False)
                    self._one_shape = True
                else:
                    log.warning("reference.compile ignored: %s is TorchScript", loaded.path)
        else:
            torch.set_num_threads(config.cpu_threads)
            if config.cpu_bf16:
                try:
                    module = module.to(memory_format=torch.channels_last)
                except Exception as err:  # some scripted modules refuse; NCHW still works
                    log.warning("channels_last not applied to %s: %s", loaded.path, err)
        self._cpu_bf16 = not self._cuda and bool(config.cpu_bf16)
        self._module = module
        self._info = ScorerInfo(loaded.sha256, loaded.device, config.batch,
                                loaded.num_classes, loaded.embedding_dim, loaded.load_seconds)
        if self._cuda or self._cpu_bf16:
            self._check_autocast()  # eager, so a model that refuses bf16 keeps its graphs
        self._info = replace(self._info, precision=(
            "bf16" if self._autocast or self._cpu_bf16 else "float32"))
        if self._cuda and config.cuda_graphs and not self._one_shape:
            self._graphs = {}

    @classmethod
    def from_config(cls, config: ReferenceConfig, device: str | None = None) -> Scorer:
        """Load (verify hash, deserialise, warm up) and wrap; on CUDA every padded batch
        size is run once here, so autotuning and graph capture happen at start, not under
        traffic. Raises ArtifactError."""
        scorer = cls(load_reference(config, device), config)
        if scorer._cuda:
            try:
                seconds = scorer.warm_up()
            except Exception as err:
                raise ArtifactError(
                    f"reference model {config.path} loaded, but running it at the padded batch "
                    f"sizes {scorer.padded_sizes()} on CUDA failed: {type(err).__name__}: "
                    f"{str(err)[:300]}. Out of memory: lower reference.batch_size. Otherwise "
                    "export the batch dimension with a range from 1 to at least batch_size, "
                    "or set reference.cuda_graphs: false") from None
            log.info("reference model %s warmed up on CUDA: %d batch sizes, %d CUDA graphs, "
                     "%.1f s", config.model, len(scorer.padded_sizes()), scorer.graphs, seconds)
        return scorer

    @property
    def info(self) -> ScorerInfo:
        return self._info

    def score(self, images: Sequence[np.ndarray]) -> ScoreResult:
        """Score (S, S, 3) uint8 RGB images (a sequence or an (N, S, S, 3) array)."""
        n = len(images)
        if n == 0:
            c, d = self._info.num_classes, self._info.embedding_dim
            return ScoreResult(np.zeros((0, c), np.float32), np.zeros((0, d), np.float32),
                               np.zeros(0, np.float32))
        with torch.inference_mode():
            if self._graphs is not None and n <= self._config.batch:  # bounded set
                captured = self._captured(self._rows(n))
                if captured is not None:
                    captured.u8.copy_(self._stage(images, len(captured.u8)), non_blocking=True)
                    captured.graph.replay()
                    return ScoreResult(captured.probs[:n].cpu().numpy(),
                                       captured.embs[:n].cpu().numpy(),
                                       captured.energy[:n].cpu().numpy())
            x = self._to_device(images)
            try:
                if self._autocast or self._cpu_bf16:
                    with torch.autocast(self._device.type, dtype=torch.bfloat16):
                        logits, emb = self._forward(x)
                else:
                    logits, emb = self._forward(x)
            except Exception as err:
                if self._one_shape and is_out_of_memory(err):
                    # the caller retries in halves: pad those to powers of two, not back up
                    log.warning("out of memory at batch %d: padding to powers of two from "
                                "now on (each new size compiles once)", len(x))
                    self._one_shape = False
                raise
            probs = torch.softmax(logits[:n].float(), dim=1)
            embs = emb[:n].float().flatten(1)
            energy = -torch.logsumexp(logits[:n].float(), dim=1)
            return ScoreResult(probs.cpu().numpy(), embs.cpu().numpy(), energy.cpu().numpy())

    @property
    def graphs(self) -> int:
        """How many padded batch sizes run as captured CUDA graphs (0: eager)."""
        return len(self._graphs) if self._graphs is not None else 0

    def _captured(self, rows: int) -> _CapturedBatch | None:
        """The graph for `rows` images, captured on first use; None (and eager from then
        on) when capture fails."""
        assert self._graphs is not None
        if rows in self._graphs:
            return self._graphs[rows]
        s = self._size
        u8 = torch.zeros((rows, s, s, 3), dtype=torch.uint8, device=self._device)

        def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            # autocast's weight cache would keep tensors made during capture: off
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self._autocast,
                                cache_enabled=False):
                logits, emb = self._forward(self._normalise(u8))
            z = logits.float()
            return torch.softmax(z, dim=1), emb.float().flatten(1), -torch.logsumexp(z, dim=1)

        try:
            side = torch.cuda.Stream(self._device)
            side.wait_stream(torch.cuda.current_stream(self._device))
            with torch.cuda.stream(side):
                for _ in range(2):  # cuDNN autotuning and lazy init happen outside capture
                    run()
            torch.cuda.current_stream(self._device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._graph_pool):
                probs, embs, energy = run()
        except Exception as err:
            if is_out_of_memory(err):
                raise
            log.warning("CUDA graph capture failed for %s at batch %d (%s: %s); running eager",
                        self._loaded.path, rows, type(err).__name__, str(err)[:200])
            self._graphs = None
            return None
        if self._graph_pool is None:
            self._graph_pool = graph.pool()  # all sizes share one memory pool
        captured = _CapturedBatch(graph, u8, probs, embs, energy)
        self._graphs[rows] = captured
        return captured

    def warm_up(self, sizes: Sequence[int] = ()) -> float:
        """Run zero batches of the given sizes (default: every padded size up to the
        configured batch size on CUDA, the batch size on the CPU) so that real batches do
        not pay for autotuning, compilation or graph capture; returns seconds."""
        start = time.perf_counter()
        blank = np.zeros((self._size, self._size, 3), np.uint8)
        for s in sizes or self.padded_sizes():
            self.score([blank] * s)
        return time.perf_counter() - start

    def padded_sizes(self) -> list[int]:
        """The batch sizes the model sees for batches of up to batch_size images on CUDA
        (powers of two and batch_size, or batch_size alone when compiled); on the CPU,
        batches are not padded and batch_size stands for them."""
        top = self._config.batch
        if not self._cuda:
            return [top]
        return sorted({self._rows(n) for n in range(1, top + 1)})

    def _rows(self, n: int) -> int:
        return padded_batch(n, self._config.batch, one_shape=self._one_shape)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._module(x)
        return out[0], out[1]

    def _stage(self, images: Sequence[np.ndarray], rows: int) -> torch.Tensor:
        """The images in the pinned host buffer, zero-padded to `rows` (CUDA only)."""
        n = len(images)
        s = self._size
        if self._pinned is None or self._pinned.shape[0] < rows:
            self._pinned = torch.empty((max(rows, self._config.batch), s, s, 3),
                                       dtype=torch.uint8).pin_memory()
        host = self._pinned[:rows]
        view = host.numpy()
        for i, img in enumerate(images):
            view[i] = img
        if rows > n:
            view[n:rows] = 0
        return host

    def _to_device(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        if self._cuda:
            u8 = self._stage(images, self._rows(len(images))).to(self._device,
                                                                  non_blocking=True)
        else:
            arr = images if isinstance(images, np.ndarray) else np.stack(list(images))
            u8 = torch.from_numpy(np.ascontiguousarray(arr))
        return self._normalise(u8)

    def _normalise(self, u8: torch.Tensor) -> torch.Tensor:
        """(N, S, S, 3) uint8 -> normalised float32 NCHW (channels_last memory on CUDA)."""
        x = u8.permute(0, 3, 1, 2).float()  # NCHW shape; channels_last memory from NHWC
        if self._bgr:
            x = x.flip(1)
        x = x * self._scale + self._shift
        if self._cuda or self._cpu_bf16:
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()

    def _check_autocast(self) -> None:
        blank = np.zeros((self._size, self._size, 3), np.uint8)
        try:
            self.score([blank, blank])
        except Exception as err:
            if is_out_of_memory(err):
                raise
            log.warning("bf16 autocast failed for %s (%s); running in float32",
                        self._loaded.path, err)
            self._autocast = False
            self._cpu_bf16 = False
