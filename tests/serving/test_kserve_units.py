"""The KServe bridge's pure parts: the CloudEvents HTTP binding, V1/V2 payloads, the
pairing store, and the bridge's policies on a fake clock."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest

from collectors.emitter import EmitterSettings, PredictionLogger, sampled
from collectors.kserve.bridge import BridgeSettings, KServeBridge, request_id
from collectors.kserve.cloudevents import REQUEST_TYPE, RESPONSE_TYPE, Malformed, parse_http
from collectors.kserve.pairing import DuplicateHalf, PairingStore
from collectors.kserve.payloads import Prediction, parse_request, parse_response
from tests.serving.fakes import RecordingProducer, decode_images, decode_predictions, png

ATTRS = {"ce-specversion": "1.0", "ce-id": "abc", "ce-source": "http://localhost:9081/",
         "ce-type": REQUEST_TYPE}


# ----------------------------------------------------------------- CloudEvents binding


def test_binary_mode_reads_ce_headers_case_insensitively_and_percent_decodes() -> None:
    headers = {"Ce-Specversion": "1.0", "Ce-Id": "a%20b", "Ce-Source": "s", "Ce-Type": "t",
               "Ce-Time": "2021-04-10T00:23:26.0789529Z", "Content-Type": "application/json",
               "Ce-Inferenceservicename": "sklearn-iris", "Ce-Component": "predictor"}
    (ev,) = parse_http(headers, b'{"instances": []}')
    assert (ev.id, ev.type, ev.datacontenttype) == ("a b", "t", "application/json")
    assert ev.extensions["inferenceservicename"] == "sklearn-iris"
    assert ev.timestamp() == pytest.approx(1618014206.0789529, abs=1e-6)
    assert ev.data == b'{"instances": []}'


def test_structured_mode_carries_json_data_text_data_or_base64() -> None:
    base = {"specversion": "1.0", "id": "x", "source": "s", "type": RESPONSE_TYPE,
            "inferenceservicename": "m"}
    ct = {"Content-Type": "application/cloudevents+json; charset=utf-8"}
    (ev,) = parse_http(ct, orjson.dumps({**base, "datacontenttype": "application/json",
                                         "data": {"predictions": [1]}}))
    assert orjson.loads(ev.data) == {"predictions": [1]}
    assert ev.extensions["inferenceservicename"] == "m"
    (ev,) = parse_http(ct, orjson.dumps({**base, "data_base64":
                                         base64.b64encode(b'{"predictions": [2]}').decode()}))
    assert orjson.loads(ev.data) == {"predictions": [2]}
    (ev,) = parse_http(ct, orjson.dumps({**base, "datacontenttype": "text/plain",
                                         "data": '{"predictions": [3]}'}))
    assert orjson.loads(ev.data) == {"predictions": [3]}
    batch = parse_http({"content-type": "application/cloudevents-batch+json"},
                       orjson.dumps([{**base, "id": "1"}, {**base, "id": "2"}]))
    assert [e.id for e in batch] == ["1", "2"]


@pytest.mark.parametrize(("what", "headers", "body", "reason"), [
    ("binary without ce-type", {k: v for k, v in ATTRS.items() if k != "ce-type"}, b"{}",
     "not_cloudevent"),
    ("binary of another spec version", {**ATTRS, "ce-specversion": "0.3"}, b"{}",
     "not_cloudevent"),
    ("structured body that is not JSON", {"content-type": "application/cloudevents+json"},
     b"{oops", "invalid_json"),
    ("structured without id", {"content-type": "application/cloudevents+json"},
     b'{"specversion": "1.0", "source": "s", "type": "t"}', "not_cloudevent"),
    ("batch that is not an array", {"content-type": "application/cloudevents-batch+json"},
     b"{}", "not_cloudevent"),
])
def test_malformed_http_messages_name_their_reason(what: str, headers: dict[str, str],
                                                   body: bytes, reason: str) -> None:
    with pytest.raises(Malformed) as err:
        parse_http(headers, body)
    assert err.value.reason == reason, what


# ----------------------------------------------------------------- payloads


@pytest.mark.parametrize(("what", "doc", "expected"), [
    ("V1 class indices (sklearn)", {"predictions": [1, 1]},
     [Prediction(pred=1), Prediction(pred=1)]),
    ("V1 integral floats", {"predictions": [2.0]}, [Prediction(pred=2)]),
    ("V1 class names", {"predictions": ["seven"]}, [Prediction(pred="seven")]),
    ("V1 distributions", {"predictions": [[0.25, 0.75]]}, [Prediction(probs=(0.25, 0.75))]),
    ("V1 TorchServe top-k objects", {"predictions": [{"tabby": 0.2, "tiger": 0.7}]},
     [Prediction(topk=(("tiger", 0.7), ("tabby", 0.2)))]),
    ("V2 INT64 [N]", {"model_name": "mnist", "model_version": "1.0", "outputs": [
        {"name": "predict", "shape": [2], "datatype": "INT64", "data": [1, 8]}]},
     [Prediction(pred=1), Prediction(pred=8)]),
    ("V2 FP32 [N, C], flat", {"outputs": [
        {"name": "p", "shape": [2, 2], "datatype": "FP32", "data": [0.5, 0.5, 0.1, 0.9]}]},
     [Prediction(probs=(0.5, 0.5)), Prediction(probs=(0.1, 0.9))]),
    ("V2 FP32 [N, C], nested; preferred over a class output", {"outputs": [
        {"name": "c", "shape": [1], "datatype": "INT64", "data": [0]},
        {"name": "p", "shape": [1, 2], "datatype": "FP32", "data": [[0.3, 0.7]]}]},
     [Prediction(probs=(0.3, 0.7))]),
    ("V2 BYTES class names [N, 1]", {"outputs": [
        {"name": "label", "shape": [1, 1], "datatype": "BYTES", "data": ["cat"]}]},
     [Prediction(pred="cat")]),
])
def test_responses_become_one_prediction_per_instance(what: str, doc: dict[str, Any],
                                                      expected: list[Prediction]) -> None:
    assert list(parse_response(doc).predictions) == expected, what


def test_v2_model_name_and_version_and_named_outputs_and_logits() -> None:
    doc = {"model_name": "mnist", "model_version": "1.0", "outputs": [
        {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [0.0, 0.0]},
        {"name": "b", "shape": [1], "datatype": "INT32", "data": [1]}]}
    summary = parse_response(doc, output_name="b")
    assert (summary.model_name, summary.model_version) == ("mnist", "1.0")
    assert summary.predictions == (Prediction(pred=1),)
    assert parse_response(doc, scores="logits").predictions == (Prediction(probs=(0.5, 0.5)),)


@pytest.mark.parametrize(("what", "doc"), [
    ("neither V1 nor V2", {"result": 1}),
    ("V1 boolean", {"predictions": [True]}),
    ("V1 object of text", {"predictions": [{"label": "cat"}]}),
    ("V1 non-finite score", {"predictions": [[0.5, float("nan")]]}),
    ("V2 wrong element count", {"outputs": [
        {"name": "p", "shape": [2, 2], "datatype": "FP32", "data": [0.5, 0.5]}]}),
    ("V2 no usable output", {"outputs": [
        {"name": "e", "shape": [1, 28, 28], "datatype": "FP64", "data": [0.0] * 784}]}),
    ("V2 output name not present", {"outputs": []}),
])
def test_unusable_responses_are_malformed(what: str, doc: dict[str, Any]) -> None:
    with pytest.raises(Malformed) as err:
        parse_response(doc, output_name="zzz" if "name not" in what else None)
    assert err.value.reason == "unsupported_payload", what


def test_images_are_found_in_v1_and_v2_requests_and_nothing_else_is_an_image() -> None:
    image = png()
    b64 = base64.b64encode(image).decode()
    v1 = parse_request({"instances": [{"data": b64}, {"image_bytes": {"b64": b64}}, b64,
                                      {"data": "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ="}, [1.0]]})
    assert v1.count == 5
    assert [v1.image(i) for i in range(5)] == [(image, "image/png")] * 3 + [None, None]
    v2 = parse_request({"inputs": [{"name": "x", "shape": -1, "datatype": "BYTES",
                                    "data": b64}]})
    assert v2.count == 1 and v2.image(0) == (image, "image/png")
    tensor = parse_request({"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32",
                                        "data": [0.0] * 12}]})
    assert tensor.count == 3 and tensor.image(0) is None


# ----------------------------------------------------------------- pairing store


def test_pairs_form_in_either_order_and_halves_expire_after_the_ttl() -> None:
    store: PairingStore[str, str] = PairingStore(ttl_s=10, max_entries=100, max_bytes=10_000)
    assert store.add_request(("a", ""), "req-a", 10, now=0) == (None, [])
    assert store.add_response(("a", ""), "resp-a", 10, now=1) == (("req-a", "resp-a"), [])
    assert store.add_response(("b", ""), "resp-b", 10, now=2) == (None, [])
    assert store.add_request(("b", ""), "req-b", 10, now=3) == (("req-b", "resp-b"), [])
    store.add_request(("c", ""), "req-c", 10, now=4)
    store.add_response(("d", ""), "resp-d", 10, now=6)
    assert store.expire(now=13.9) == []
    (c,) = store.expire(now=14)
    assert (c.half, c.request, c.reason) == ("request", "req-c", "ttl")
    (d,) = store.drain()
    assert (d.half, d.response) == ("response", "resp-d")
    assert len(store) == 0 and store.bytes == 0


def test_the_store_evicts_the_oldest_beyond_its_count_or_byte_bound() -> None:
    store: PairingStore[str, str] = PairingStore(ttl_s=10, max_entries=2, max_bytes=100)
    store.add_request(("a", ""), "a", 10, now=0)
    store.add_request(("b", ""), "b", 10, now=0)
    _, evicted = store.add_request(("c", ""), "c", 10, now=0)
    assert [(e.key, e.reason) for e in evicted] == [(("a", ""), "capacity")]
    _, evicted = store.add_request(("d", ""), "d", 95, now=0)
    assert [e.key[0] for e in evicted] == ["b", "c"]
    with pytest.raises(DuplicateHalf):
        store.add_request(("d", ""), "d", 1, now=0)


# ----------------------------------------------------------------- bridge policies


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _bridge(producer: RecordingProducer, **settings: Any) -> tuple[KServeBridge, Clock]:
    clock = Clock()
    logger = PredictionLogger(producer, EmitterSettings(image_sample_rate=1.0),
                              close_at_exit=False)
    return KServeBridge(logger, BridgeSettings(**settings), monotonic=clock), clock


def _event(ce_type: str, ce_id: str, body: dict[str, Any], isvc: str = "torchserve-mnist",
           time: str = "2024-05-02T10:00:00Z") -> Any:
    headers = {**ATTRS, "ce-type": ce_type, "ce-id": ce_id, "ce-time": time,
               "ce-inferenceservicename": isvc, "content-type": "application/json"}
    (ev,) = parse_http(headers, json.dumps(body).encode())
    return ev


def test_a_pair_becomes_contract_events_with_latency_and_images() -> None:
    producer = RecordingProducer()
    bridge, _ = _bridge(producer, model_map={"torchserve-mnist": "digits"})
    b64 = base64.b64encode(png()).decode()
    bridge.handle(_event(REQUEST_TYPE, "r1", {"instances": [{"data": b64}, {"data": b64}]},
                         time="2024-05-02T10:00:00.000Z"))
    bridge.handle(_event(RESPONSE_TYPE, "r1", {"predictions": [3, 4]},
                         time="2024-05-02T10:00:00.250Z"))
    bridge.logger.close()
    events = decode_predictions(producer.on("predictions"))
    assert [(e.request_id, e.model, e.version, e.pred) for e in events] == [
        ("r1/0", "digits", "default", 3), ("r1/1", "digits", "default", 4)]
    assert all(e.latency_s == pytest.approx(0.25) for e in events)
    assert [i.request_id for i in decode_images(producer.on("images"))] == ["r1/0", "r1/1"]
    assert bridge.stats().pairs == 1


def test_unpaired_halves_follow_the_policies_after_the_ttl() -> None:
    producer = RecordingProducer()
    bridge, clock = _bridge(producer, pair_ttl_s=5, unpaired_requests_as_errors=True,
                            model_map={"torchserve-mnist": "digits"})
    bridge.handle(_event(REQUEST_TYPE, "lonely-request", {"instances": [[0.0], [1.0]]}))
    bridge.handle(_event(RESPONSE_TYPE, "lonely-response", {"predictions": [9]}))
    clock.now = 4.9
    bridge.sweep()
    assert bridge.stats().pending == 2
    clock.now = 5.0
    bridge.sweep()
    stats = bridge.stats()
    assert stats.unpaired == {("request", "ttl"): 1, ("response", "ttl"): 1}
    bridge.logger.close()
    events = {e.request_id: e for e in decode_predictions(producer.on("predictions"))}
    assert sorted(events) == ["lonely-request/0", "lonely-request/1", "lonely-response"]
    assert not events["lonely-request/0"].ok and events["lonely-response"].pred == 9
    assert events["lonely-response"].latency_s != events["lonely-response"].latency_s  # NaN


def test_mismatched_counts_keep_predictions_but_drop_images() -> None:
    producer = RecordingProducer()
    bridge, _ = _bridge(producer, model_map={"torchserve-mnist": "digits"})
    b64 = base64.b64encode(png()).decode()
    bridge.handle(_event(REQUEST_TYPE, "m", {"instances": [{"data": b64}]}))
    bridge.handle(_event(RESPONSE_TYPE, "m", {"predictions": [1, 2]}))
    bridge.logger.close()
    assert len(decode_predictions(producer.on("predictions"))) == 2
    assert producer.on("images") == []
    assert bridge.stats().malformed == {"count_mismatch": 1}


def test_duplicates_and_foreign_types_are_counted() -> None:
    bridge, _ = _bridge(RecordingProducer())
    bridge.handle(_event(REQUEST_TYPE, "d", {"instances": [[1.0]]}))
    with pytest.raises(Malformed):
        bridge.handle(_event(REQUEST_TYPE, "d", {"instances": [[1.0]]}))
    with pytest.raises(Malformed):
        bridge.handle(_event("org.kubeflow.serving.inference.explain", "e", {}))
    assert bridge.stats().malformed == {"duplicate": 1, "unsupported_type": 1}
    assert bridge.stats().received == {"request": 2, "response": 0, "other": 1}
    bridge.close()
    bridge.logger.close()


def test_request_ids_follow_the_ce_id() -> None:
    assert request_id("abc", 0, 1) == "abc"
    assert [request_id("abc", i, 3) for i in range(3)] == ["abc/0", "abc/1", "abc/2"]
    assert sampled("abc", 1.0)
