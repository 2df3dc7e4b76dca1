"""A TorchServe custom-handler mixin that logs every prediction to visionmon.

Ship this file with the model archive (`torch-model-archiver --extra-files
torchserve_handler.py`, visionmon installed in the worker's environment) and put the mixin
first in the bases of your handler; nothing else changes:

    from ts.torch_handler.image_classifier import ImageClassifier
    from torchserve_handler import VisionmonLoggingMixin

    class Handler(VisionmonLoggingMixin, ImageClassifier):
        pass

`handle(data, context)` is wrapped: the handler's own `handle` runs, then each request of
the batch is logged with TorchServe's request id (or the client's `X-Request-ID` header),
the model name and version from the context and manifest, the batch's latency, and the
request's image when sampling keeps it. TorchServe's classifier output (a {class: prob}
top-k per request) is sent as `topk`; a list of numbers as `probs`; an integer or a string
as `pred`. If `handle` raises, every request of the batch is logged as `status: error` and
the exception propagates. `initialize(context)` is wrapped too: the model's load is
reported with the SHA-256 of the archive's serialized file and the time it took
(`model_loaded`), or its failure with a reason (`model_load_failed`), to the lifecycle
topic. The module imports neither torch nor TorchServe.

Configuration (environment of the TorchServe worker): VISIONMON_BOOTSTRAP (host:port,
comma-separated; unset disables logging), VISIONMON_IMAGE_SAMPLE_RATE (default 0.05).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from collectors.emitter import (
    EmitterSettings,
    PredictionLogger,
    file_sha256,
    load_failure_reason,
)
from monitor.config import KafkaConfig

log = logging.getLogger(__name__)


def prediction_fields(output: Any) -> dict[str, Any]:
    """`PredictionLogger.log` keyword arguments for one request's handler output."""
    if isinstance(output, Mapping) and output and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in output.values()):
        return {"topk": {str(k): float(v) for k, v in output.items()}}
    if isinstance(output, Sequence) and not isinstance(output, str | bytes) and output:
        return {"probs": [float(v) for v in output]}
    if isinstance(output, int | str) and not isinstance(output, bool):
        return {"pred": output}
    raise ValueError(f"cannot read a prediction from {type(output).__name__}")


def _image_bytes(item: Any) -> bytes | None:
    body = item.get("data", item.get("body")) if isinstance(item, Mapping) else None
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):  # KServe envelope: base64 text
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


class VisionmonLoggingMixin:
    """Wraps `initialize` (opens the logger) and `handle` (logs each request)."""

    visionmon_logger: PredictionLogger | None = None

    def initialize(self, context: Any) -> None:
        """Load the model (the handler's own `initialize`) and report the load, with the
        artifact's hash and the time it took, or its failure."""
        if self.visionmon_logger is None:
            self.visionmon_logger = self.make_visionmon_logger(context)
        logger = self.visionmon_logger
        model, version = _model_and_version(context)
        started = time.perf_counter()
        try:
            super().initialize(context)  # type: ignore[misc]
        except Exception as err:
            if logger is not None:
                logger.model_load_failed(model, version, load_failure_reason(err),
                                         detail=str(err)[:500])
            raise
        seconds = time.perf_counter() - started
        artifact = _artifact_path(context)
        if logger is not None and artifact is not None:
            logger.model_loaded(model, version, sha256=file_sha256(artifact),
                                load_seconds=seconds)

    def make_visionmon_logger(self, context: Any) -> PredictionLogger | None:
        """The logger of this worker; override to configure it otherwise."""
        bootstrap = os.environ.get("VISIONMON_BOOTSTRAP")
        if not bootstrap:
            log.warning("VISIONMON_BOOTSTRAP is not set: predictions are not logged")
            return None
        rate = float(os.environ.get("VISIONMON_IMAGE_SAMPLE_RATE", "0.05"))
        return PredictionLogger(KafkaConfig(bootstrap_servers=bootstrap.split(",")),
                                EmitterSettings(image_sample_rate=rate))

    def handle(self, data: list[Any], context: Any) -> list[Any]:
        started = time.perf_counter()
        try:
            outputs: list[Any] = super().handle(data, context)  # type: ignore[misc]
        except Exception:
            self._log_batch(data, context, None, time.perf_counter() - started)
            raise
        self._log_batch(data, context, outputs, time.perf_counter() - started)
        return outputs

    def _log_batch(self, data: list[Any], context: Any, outputs: list[Any] | None,
                   latency_s: float) -> None:
        logger = self.visionmon_logger
        if logger is None:
            return
        model, version = _model_and_version(context)
        for i, item in enumerate(data):
            request_id = _request_id(context, i)
            fields: dict[str, Any] = {"status": "error"}
            if outputs is not None:
                try:
                    fields = prediction_fields(outputs[i])
                except (ValueError, IndexError) as err:
                    log.debug("visionmon: request %s not logged: %s", request_id, err)
                    continue
            image = _image_bytes(item) if logger.wants_image(request_id) else None
            logger.log(request_id, model, version, latency_s=latency_s, image_bytes=image,
                       **fields)


def _model_and_version(context: Any) -> tuple[str, str]:
    return (str(context.model_name),
            str(context.manifest.get("model", {}).get("modelVersion", "unknown")))


def _artifact_path(context: Any) -> str | None:
    """The model archive's serialized file (`serializedFile` of the manifest, in the
    worker's `model_dir`), when there is one to hash."""
    name = context.manifest.get("model", {}).get("serializedFile")
    folder = (getattr(context, "system_properties", None) or {}).get("model_dir")
    if not name or not folder:
        return None
    path = os.path.join(folder, name)
    return path if os.path.isfile(path) else None


def _request_id(context: Any, index: int) -> str:
    try:
        given = context.get_request_header(index, "x-request-id")
    except (AttributeError, IndexError, KeyError, TypeError):
        given = None
    return str(given or context.get_request_id(index) or uuid.uuid4().hex)
