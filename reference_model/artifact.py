"""Loading and validating the reference-model artifact.

Two formats: a TorchScript file (`torch.jit.save`, any extension but `.pt2`) and a
torch.export program (`torch.export.save`, extension `.pt2`). The file's SHA-256 is checked
against the model card *before* anything is deserialised, then the model is loaded onto
the chosen device and warmed up with a batch of two zero images to learn its output
shapes. Every failure is an `ArtifactError` that names the file and says what to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from monitor.reference_config import ReferenceConfig
from reference_model.checksum import ArtifactError, sha256_file, verify_sha256

#: sha256_file, verify_sha256 and ArtifactError live in the torch-free `checksum` module.
__all__ = ["ArtifactError", "LoadedReference", "artifact_format", "load_reference",
           "resolve_device", "sha256_file", "verify_sha256"]

log = logging.getLogger(__name__)

ArtifactFormat = Literal["torchscript", "export"]


@dataclass(frozen=True, slots=True)
class LoadedReference:
    """A loaded, warmed-up reference model.

    `module` maps a float32 (N, 3, S, S) batch to (logits (N, C), embedding (N, D)).
    `load_seconds` covers hashing, deserialising, moving to the device and the warm-up.
    """

    module: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    path: str
    sha256: str
    format: ArtifactFormat
    device: str
    num_classes: int
    embedding_dim: int
    load_seconds: float


def resolve_device(requested: Literal["auto", "cpu", "cuda"]) -> str:
    """'cuda' when requested or when auto and CUDA is available, else 'cpu'."""
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise ArtifactError("reference.device is 'cuda' but CUDA is not available "
                                "(set device: auto or cpu)")
        return "cuda"
    if requested == "auto" and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def artifact_format(path: str | Path) -> ArtifactFormat:
    return "export" if str(path).endswith(".pt2") else "torchscript"


def load_reference(config: ReferenceConfig, device: str | None = None) -> LoadedReference:
    """Verify, load and warm up the artifact named by the model card.

    `device` overrides `config.device` ('cpu' or 'cuda'). Raises ArtifactError.
    """
    start = time.perf_counter()
    path = Path(config.path)
    dev = device or resolve_device(config.device)
    verify_sha256(path, config.sha256)
    fmt = artifact_format(path)
    raw = _deserialise(path, fmt, dev)
    module = _with_embedding(raw, fmt, config.embedding, path)
    num_classes, dim = _warm_up(module, config, dev, path)
    if dev == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    log.info("reference model %s loaded: %s, sha256 %s, %s, %d classes, embedding %d, %.2f s",
             config.model, path, config.sha256[:12], dev, num_classes, dim, seconds)
    return LoadedReference(module, str(path), config.sha256, fmt, dev, num_classes, dim, seconds)


def _deserialise(path: Path, fmt: ArtifactFormat, device: str) -> Any:
    try:
        if fmt == "export":
            program = torch.export.load(str(path))
            return program.module().to(device)
        return torch.jit.load(str(path), map_location=device)
    except Exception as err:
        what = "a torch.export program (.pt2)" if fmt == "export" else "TorchScript"
        raise ArtifactError(
            f"reference model file {path} matches its SHA-256 but cannot be loaded as {what}: "
            f"{type(err).__name__}: {str(err)[:300]}. Re-export it with "
            f"{'torch.export.save' if fmt == 'export' else 'torch.jit.save'} using torch "
            f"{torch.__version__}, or rename it (.pt2 = torch.export, else TorchScript)"
        ) from None


def _with_embedding(module: Any, fmt: ArtifactFormat, embedding: str,
                    path: Path) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    if embedding == "second_output":
        if fmt == "torchscript":
            module.eval()  # exported programs are already in eval mode (and refuse .eval())
        return module  # type: ignore[no-any-return]
    if fmt == "torchscript":
        raise ArtifactError(
            f"reference.embedding names submodule {embedding!r}, but {path} is TorchScript, "
            "whose submodules cannot be hooked after scripting. Either make forward return "
            "(logits, embedding) and set embedding: second_output, or save a torch.export "
            "program (.pt2)")
    from reference_model.embedding_tap import tap_submodule_output

    try:
        return tap_submodule_output(module, embedding)
    except ValueError as err:
        raise ArtifactError(f"{path}: reference.embedding: {err}") from None


def _warm_up(module: Callable[[torch.Tensor], Any], config: ReferenceConfig, device: str,
             path: Path) -> tuple[int, int]:
    x = torch.zeros((2, 3, config.input_size, config.input_size), device=device)
    try:
        with torch.inference_mode():
            out = module(x)
    except Exception as err:
        raise ArtifactError(
            f"reference model {path} failed on a (2, 3, {config.input_size}, "
            f"{config.input_size}) float32 batch: {type(err).__name__}: {str(err)[:300]}. "
            "Check reference.input_size; a .pt2 must be exported with a dynamic batch "
            "dimension (torch.export.Dim('batch', min=1))") from None
    if not isinstance(out, tuple | list) or len(out) < 2:
        raise ArtifactError(
            f"reference model {path} returned {type(out).__name__}, expected a tuple "
            "(logits, embedding); set reference.embedding to a submodule name (.pt2) or "
            "change the model's forward")
    logits, emb = out[0], out[1]
    if not (isinstance(logits, torch.Tensor) and logits.ndim == 2 and logits.shape[0] == 2):
        raise ArtifactError(f"reference model {path}: logits must have shape (N, classes), "
                            f"got {getattr(logits, 'shape', type(logits).__name__)}")
    if not (isinstance(emb, torch.Tensor) and emb.ndim >= 2 and emb.shape[0] == 2):
        raise ArtifactError(f"reference model {path}: embedding must have shape (N, D, ...), "
                            f"got {getattr(emb, 'shape', type(emb).__name__)}")
    if config.classes is not None and logits.shape[1] != len(config.classes):
        raise ArtifactError(f"reference model {path} outputs {logits.shape[1]} classes but "
                            f"reference.classes lists {len(config.classes)}")
    return int(logits.shape[1]), int(emb[0].numel())
