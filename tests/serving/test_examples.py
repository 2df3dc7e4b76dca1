"""The serving examples run: the FastAPI app through its TestClient, the TorchServe mixin
through plain calls with stand-ins for TorchServe's handler and context."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from collectors.emitter import EmitterSettings, PredictionLogger, sampled
from tests.serving.fakes import (
    RecordingProducer,
    decode_images,
    decode_lifecycle,
    decode_predictions,
    png,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"visionmon_example_{name}",
                                                  EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _logger(producer: RecordingProducer, rate: float) -> PredictionLogger:
    return PredictionLogger(producer, EmitterSettings(image_sample_rate=rate, linger_ms=5),
                            close_at_exit=False)


# ----------------------------------------------------------------- FastAPI


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_fastapi_app_logs_predictions_errors_and_sampled_images() -> None:
    pytest.importorskip("fastapi", reason="pip install 'visionmon[test]' (fastapi, httpx)")
    pytest.importorskip("httpx", reason="pip install 'visionmon[test]' (fastapi, httpx)")
    from fastapi.testclient import TestClient

    example = load_example("fastapi_app")
    producer = RecordingProducer()
    logger = _logger(producer, rate=0.5)
    model = example.DigitModel()
    app = example.create_app(logger, model)
    images = [png(v) for v in range(0, 250, 10)]
    with TestClient(app, raise_server_exceptions=False) as client:
        answers = [client.post("/v1/models/digits:predict", content=img,
                               headers={"content-type": "image/png",
                                        "x-request-id": f"fa-{i}"})
                   for i, img in enumerate(images)]
        assert all(a.status_code == 200 for a in answers)
        assert [a.headers["x-request-id"] for a in answers] == [f"fa-{i}" for i in
                                                               range(len(images))]
        assert client.post("/v1/models/digits:predict", content=b"not an image").status_code \
            == 415, "a client error is not a prediction"
        model.ready = False
        down = client.post("/v1/models/digits:predict", content=images[0],
                           headers={"x-request-id": "fa-down"})
        assert down.status_code == 503
        model.ready = True
        model.predict = lambda _: 1 / 0  # the model crashes: 500, logged as an error
        assert client.post("/v1/models/digits:predict", content=images[0],
                           headers={"x-request-id": "fa-crash"}).status_code == 500
        metrics = client.get("/metrics").text
    assert "visionmon_emitter_events_total" in metrics
    assert producer.closed is False and producer.flushed >= 1, "closed with the app"
    events = {e.request_id: e for e in decode_predictions(producer.on("predictions"))}
    assert len(events) == len(images) + 2
    for i, answer in enumerate(answers):
        event = events[f"fa-{i}"]
        assert event.ok and event.latency_s > 0
        assert example.CLASSES[event.pred] == answer.json()["class"]
    assert not events["fa-down"].ok and not events["fa-crash"].ok
    got = sorted(i.request_id for i in decode_images(producer.on("images")))
    assert got == sorted(f"fa-{i}" for i in range(len(images)) if sampled(f"fa-{i}", 0.5))


# ----------------------------------------------------------------- TorchServe


class FakeContext:
    """The parts of TorchServe's `ts.context.Context` the mixin reads."""

    def __init__(self, request_ids: dict[int, str], headers: dict[int, dict[str, str]]) -> None:
        self.model_name = "digits"
        self.manifest = {"model": {"modelName": "digits", "modelVersion": "2.1"}}
        self.request_ids = request_ids
        self._headers = headers

    def get_request_id(self, idx: int = 0) -> str | None:
        return self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self._headers.get(idx, {}).get(key)


class FakeImageClassifier:
    """Stands in for TorchServe's ImageClassifier: a {class: prob} top-k per request."""

    initialized = False
    fail = False

    def initialize(self, context: Any) -> None:
        self.initialized = True

    def handle(self, data: list[Any], context: Any) -> list[Any]:
        if self.fail:
            raise RuntimeError("CUDA out of memory")
        return [{"seven": 0.7, "one": 0.2} if i % 2 else [0.1] * 10
                for i in range(len(data))]


def test_torchserve_mixin_logs_each_request_of_a_batch() -> None:
    example = load_example("torchserve_handler")

    class Handler(example.VisionmonLoggingMixin, FakeImageClassifier):
        pass

    producer = RecordingProducer()
    handler = Handler()
    handler.visionmon_logger = _logger(producer, rate=1.0)
    context = FakeContext({0: "ts-0", 1: "ts-1", 2: "ts-2"}, {1: {"x-request-id": "client-1"}})
    handler.initialize(context)
    assert handler.initialized
    image = png()
    batch = [{"data": image}, {"body": bytearray(image)},
             {"data": base64.b64encode(image).decode()}]
    outputs = handler.handle(batch, context)
    assert outputs[1] == {"seven": 0.7, "one": 0.2}, "outputs pass through unchanged"
    handler.fail = True
    with pytest.raises(RuntimeError):
        handler.handle(batch[:1], FakeContext({0: "ts-9"}, {}))
    handler.visionmon_logger.close()
    events = {e.request_id: e for e in decode_predictions(producer.on("predictions"))}
    assert sorted(events) == ["client-1", "ts-0", "ts-2", "ts-9"]
    assert events["client-1"].pred == 7 and events["client-1"].top5 == (7, 1)
    assert events["ts-0"].probs is not None and events["ts-0"].latency_s >= 0
    assert not events["ts-9"].ok
    assert {e.version for e in events.values()} == {"2.1"}
    images = decode_images(producer.on("images"))
    assert sorted(i.request_id for i in images) == ["client-1", "ts-0", "ts-2", "ts-9"]


def test_torchserve_mixin_without_configuration_logs_nothing(monkeypatch) -> None:
    example = load_example("torchserve_handler")
    monkeypatch.delenv("VISIONMON_BOOTSTRAP", raising=False)

    class Handler(example.VisionmonLoggingMixin, FakeImageClassifier):
        pass

    handler = Handler()
    context = FakeContext({0: "a"}, {})
    handler.initialize(context)
    assert handler.visionmon_logger is None
    assert handler.handle([{"data": b""}], context) == [[0.1] * 10]


def test_the_fastapi_example_reports_its_model_load_and_a_failed_one() -> None:
    pytest.importorskip("fastapi", reason="pip install 'visionmon[test]' (fastapi, httpx)")
    example = load_example("fastapi_app")
    producer = RecordingProducer()
    logger = _logger(producer, rate=0.0)
    model = example.load_model(logger, lambda: example.DigitModel(b"weights of v3"))
    with pytest.raises(FileNotFoundError):
        example.load_model(logger, lambda: example.DigitModel.from_file("/nonexistent/v3.pt"))
    logger.close()
    loaded, failed = decode_lifecycle(producer.on("lifecycle"))
    assert (loaded.kind, loaded.model, loaded.version, loaded.sha256) == (
        "loaded", "digits", example.VERSION, model.sha256)
    assert loaded.load_seconds >= 0 and loaded.host
    assert (failed.kind, failed.reason) == ("load_failed", "not_found")


def test_the_torchserve_mixin_reports_the_archive_hash_and_a_failed_load(tmp_path) -> None:
    example = load_example("torchserve_handler")

    class Handler(example.VisionmonLoggingMixin, FakeImageClassifier):
        pass

    (tmp_path / "model.pt").write_bytes(b"serialized weights")
    context = FakeContext({0: "a"}, {})
    context.manifest["model"]["serializedFile"] = "model.pt"
    context.system_properties = {"model_dir": str(tmp_path)}
    producer = RecordingProducer()
    handler = Handler()
    handler.visionmon_logger = _logger(producer, rate=0.0)
    handler.initialize(context)

    class BrokenClassifier(FakeImageClassifier):
        def initialize(self, context: Any) -> None:
            raise RuntimeError("CUDA out of memory")

    class Failing(example.VisionmonLoggingMixin, BrokenClassifier):
        pass

    failing = Failing()
    failing.visionmon_logger = handler.visionmon_logger
    with pytest.raises(RuntimeError):
        failing.initialize(context)
    handler.visionmon_logger.close()
    loaded, failed = decode_lifecycle(producer.on("lifecycle"))
    assert (loaded.kind, loaded.version) == ("loaded", "2.1")
    assert loaded.sha256 == hashlib.sha256(b"serialized weights").hexdigest()
    assert (failed.kind, failed.reason, failed.version) == ("load_failed", "out_of_memory", "2.1")
