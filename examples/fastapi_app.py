"""A FastAPI image classifier that feeds visionmon through the emitter library.

The pattern: a middleware owns the request id (the client's `X-Request-ID`, else a new
one, echoed back so the client can send feedback later), the latency and the status; the
endpoint fills a `PredictionRecord` (obtained as a dependency) with what the model said.
When the response is done, the middleware hands both to `PredictionLogger.log()`, which
returns at once. Server errors (5xx, exceptions) are logged as `status: error`; client
errors (4xx) are not predictions and are not logged. Loading the model reports its
artifact hash and load time (or why it failed) with `model_loaded()` /
`model_load_failed()`, to the lifecycle topic.

Run it against a broker (uvicorn is not a visionmon dependency):

    VISIONMON_BOOTSTRAP=127.0.0.1:9092 uvicorn --factory examples.fastapi_app:app_from_env
    curl -H 'Content-Type: image/png' --data-binary @digit.png \
        localhost:8000/v1/models/digits:predict
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from collectors.emitter import EmitterSettings, PredictionLogger, load_failure_reason
from collectors.emitter.records import sniff_image_type
from monitor.config import KafkaConfig

MODEL = "digits"
VERSION = "v3"
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class DigitModel:
    """Stand-in for a real classifier (no torch needed): a softmax over scores derived
    from a hash of its weights and the image bytes, so the same image always gets the same
    answer. `sha256` identifies its artifact, as a real model's file hash would."""

    def __init__(self, weights: bytes = b"digits stand-in weights") -> None:
        self.weights = weights
        self.sha256 = hashlib.sha256(weights).hexdigest()
        self.ready = True

    @classmethod
    def from_file(cls, path: str) -> DigitModel:
        """The model whose artifact (weights file) is at `path`."""
        with open(path, "rb") as f:
            return cls(f.read())

    def predict(self, image: bytes) -> list[float]:
        digest = hashlib.sha256(self.weights + image).digest()
        scores = [digest[i] / 32.0 for i in range(len(CLASSES))]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = math.fsum(exps)
        return [e / total for e in exps]


@dataclass
class PredictionRecord:
    """What the endpoint tells the logging middleware about one request."""

    request_id: str
    probs: list[float] | None = None
    image: bytes | None = None


def prediction_record(request: Request) -> PredictionRecord:
    """Dependency: the record of this request, which the middleware logs afterwards."""
    record = PredictionRecord(request.state.request_id)
    request.state.prediction = record
    return record


Recorded = Annotated[PredictionRecord, Depends(prediction_record)]


def load_model(logger: PredictionLogger, load: Callable[[], DigitModel]) -> DigitModel:
    """Load the model and tell visionmon: its artifact hash and load time, or why it failed
    (then re-raise: a replica without its model must not serve)."""
    started = time.perf_counter()
    try:
        model = load()
    except Exception as err:
        logger.model_load_failed(MODEL, VERSION, load_failure_reason(err), detail=str(err)[:500])
        raise
    logger.model_loaded(MODEL, VERSION, sha256=model.sha256,
                        load_seconds=time.perf_counter() - started)
    return model


def create_app(logger: PredictionLogger, model: DigitModel | None = None) -> FastAPI:
    """The app; closing the logger (drain + flush) is part of the app's shutdown. Without
    `model`, the model is loaded here (from VISIONMON_MODEL_ARTIFACT when set) and the load
    reported to visionmon's lifecycle topic."""
    artifact = os.environ.get("VISIONMON_MODEL_ARTIFACT")
    classifier = model or load_model(
        logger, (lambda: DigitModel.from_file(artifact)) if artifact else DigitModel)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        logger.close()

    app = FastAPI(title="digits classifier", lifespan=lifespan)

    @app.middleware("http")
    async def log_predictions(request: Request,
                              call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.prediction = None
        started = time.perf_counter()
        status = "error"  # unless a response comes back below
        try:
            response = await call_next(request)
            status = "error" if response.status_code >= 500 else "ok"
            response.headers["x-request-id"] = request.state.request_id
            return response
        finally:
            record: PredictionRecord | None = request.state.prediction
            if record is not None and (record.probs is not None or status == "error"):
                logger.log(record.request_id, MODEL, VERSION,
                           probs=record.probs if status == "ok" else None,
                           latency_s=time.perf_counter() - started, status=status,
                           image_bytes=record.image)

    @app.post("/v1/models/digits:predict")
    async def predict(request: Request, record: Recorded) -> dict[str, Any]:
        if not classifier.ready:
            raise HTTPException(503, "model not loaded")
        image = await request.body()
        if sniff_image_type(image) is None:
            raise HTTPException(415, "send a JPEG, PNG or WebP image")
        probs = classifier.predict(image)
        record.probs = probs
        if logger.wants_image(record.request_id):  # copy the bytes only when sampled
            record.image = image
        best = max(range(len(probs)), key=probs.__getitem__)
        return {"request_id": record.request_id, "class": CLASSES[best],
                "confidence": probs[best]}

    @app.get("/metrics")
    def metrics() -> Response:
        """The emitter's own counters (logged, dropped by reason, sent), for Prometheus."""
        return Response(generate_latest(logger.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def app_from_env() -> FastAPI:
    """`uvicorn --factory` entry: VISIONMON_BOOTSTRAP (host:port, comma-separated) and
    VISIONMON_IMAGE_SAMPLE_RATE (fraction, default 0.05)."""
    kafka = KafkaConfig(bootstrap_servers=os.environ.get(
        "VISIONMON_BOOTSTRAP", "127.0.0.1:9092").split(","))
    rate = float(os.environ.get("VISIONMON_IMAGE_SAMPLE_RATE", "0.05"))
    return create_app(PredictionLogger(kafka, EmitterSettings(image_sample_rate=rate)))
