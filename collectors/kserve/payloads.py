"""Inference payloads in the two protocols KServe serves, reduced to what visionmon needs.

V1 (KServe's v1 / TF-Serving style): the request is `{"instances": [...]}`, the response
`{"predictions": [...]}`, one entry per instance. A prediction entry is read as
- an integer: the predicted class index (sklearn, TorchServe's MNIST example),
- a string: the predicted class name,
- a list of numbers: the class distribution (or logits, see `scores`),
- an object of {class name: probability}: a top-k (TorchServe's image classifier).

V2 (Open Inference Protocol): tensors `{"name", "shape", "datatype", "data"}` in the
request's `inputs` and the response's `outputs`, `data` flattened in row-major order (a
nested list is flattened here). A response output is read as
- FP16/FP32/FP64 with shape [N, C]: N class distributions,
- an integer type with shape [N] or [N, 1]: N class indices,
- BYTES with shape [N]: N class names.
`output_name` picks one output; otherwise the first distribution, else the first class
output, is used.

Images: a V1 instance that is a base64 string, or an object holding one (directly, as
TorchServe's `{"data": ...}`, or TF-Serving's `{"b64": ...}`), and a V2 BYTES input whose
elements are base64 strings, are images when the decoded bytes start with a JPEG, PNG or
WebP signature. Anything else is not an image (and not an error).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from collectors.emitter.records import sniff_image_type
from collectors.kserve.cloudevents import Malformed

Scores = Literal["probs", "logits"]
_FLOAT_TYPES = {"FP16", "FP32", "FP64"}
_INT_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


@dataclass(frozen=True, slots=True)
class Prediction:
    """One instance's output; at least one field is set."""

    pred: int | str | None = None
    probs: tuple[float, ...] | None = None
    topk: tuple[tuple[str, float], ...] | None = None


@dataclass(frozen=True, slots=True)
class ResponseSummary:
    """What a response says: the model (V2 only) and one prediction per instance."""

    predictions: tuple[Prediction, ...]
    model_name: str | None = None
    model_version: str | None = None


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """What a request says: its instance count and how to pull instance i's image."""

    count: int
    image: Callable[[int], tuple[bytes, str] | None]


def _no_image(_: int) -> None:
    return None


def _number(x: Any) -> bool:
    return (type(x) is float or type(x) is int) and math.isfinite(x)


def _softmax(xs: list[float]) -> tuple[float, ...]:
    top = max(xs)
    exps = [math.exp(x - top) for x in xs]
    total = math.fsum(exps)
    return tuple(e / total for e in exps)


def _distribution(values: list[Any], scores: Scores) -> tuple[float, ...]:
    if not values or not all(_number(v) for v in values):
        raise Malformed("unsupported_payload", "a score vector must hold finite numbers")
    floats = [float(v) for v in values]
    return _softmax(floats) if scores == "logits" else tuple(floats)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(x, list) for x in data):
        return data
    out: list[Any] = []
    for x in data:
        out.extend(_flatten(x))
    return out


# --------------------------------------------------------------------- responses


def parse_response(doc: Any, scores: Scores = "probs",
                   output_name: str | None = None) -> ResponseSummary:
    """Predictions of a V1 or V2 response body (already parsed JSON)."""
    if isinstance(doc, dict) and isinstance(doc.get("predictions"), list):
        return ResponseSummary(tuple(_v1_prediction(p, scores) for p in doc["predictions"]))
    if isinstance(doc, dict) and isinstance(doc.get("outputs"), list):
        name = doc.get("model_name")
        version = doc.get("model_version")
        return ResponseSummary(_v2_predictions(doc["outputs"], scores, output_name),
                               name if isinstance(name, str) and name else None,
                               version if isinstance(version, str) and version else None)
    raise Malformed("unsupported_payload",
                    "response has neither 'predictions' (V1) nor 'outputs' (V2)")


def _v1_prediction(p: Any, scores: Scores) -> Prediction:
    if type(p) is int:
        return Prediction(pred=p)
    if type(p) is float and p.is_integer():
        return Prediction(pred=int(p))
    if type(p) is str and p:
        return Prediction(pred=p)
    if isinstance(p, list):
        return Prediction(probs=_distribution(p, scores))
    if isinstance(p, dict) and p and all(_number(v) for v in p.values()):
        pairs = sorted(((str(k), float(v)) for k, v in p.items()), key=lambda kv: -kv[1])
        return Prediction(topk=tuple(pairs))
    raise Malformed("unsupported_payload", f"cannot read a prediction from {str(p)[:60]}")


def _tensor(t: Any) -> tuple[str, list[int], str, list[Any]]:
    if not isinstance(t, dict):
        raise Malformed("unsupported_payload", "a V2 tensor must be an object")
    name, shape, dtype = t.get("name"), t.get("shape"), t.get("datatype")
    if isinstance(shape, int):
        shape = [shape]
    if (not isinstance(name, str) or not isinstance(dtype, str) or not isinstance(shape, list)
            or not all(type(d) is int for d in shape)):
        raise Malformed("unsupported_payload", "a V2 tensor needs name, shape and datatype")
    return name, shape, dtype.upper(), _flatten(t.get("data"))


def _v2_predictions(outputs: list[Any], scores: Scores,
                    output_name: str | None) -> tuple[Prediction, ...]:
    tensors = [_tensor(t) for t in outputs]
    if output_name is not None:
        tensors = [t for t in tensors if t[0] == output_name]
        if not tensors:
            raise Malformed("unsupported_payload", f"no output named {output_name!r}")
    for _, shape, dtype, data in tensors:
        if dtype in _FLOAT_TYPES and len(shape) == 2 and shape[0] >= 0 and shape[1] > 0:
            n, c = shape
            if len(data) != n * c:
                raise Malformed("unsupported_payload", f"{len(data)} values for shape {shape}")
            return tuple(Prediction(probs=_distribution(data[i * c:(i + 1) * c], scores))
                         for i in range(n))
    for _, shape, dtype, data in tensors:
        if (dtype in _INT_TYPES or dtype == "BYTES") and (
                len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            if len(data) != shape[0]:
                raise Malformed("unsupported_payload", f"{len(data)} values for shape {shape}")
            if dtype == "BYTES":
                if not all(isinstance(x, str) and x for x in data):
                    raise Malformed("unsupported_payload", "class names must be strings")
                return tuple(Prediction(pred=x) for x in data)
            if not all(type(x) is int for x in data):
                raise Malformed("unsupported_payload", "class indices must be integers")
            return tuple(Prediction(pred=x) for x in data)
    raise Malformed("unsupported_payload", "no output is a class distribution or a class")


# --------------------------------------------------------------------- requests


def parse_request(doc: Any) -> RequestSummary:
    """Instance count and image access of a V1 or V2 request body (parsed JSON)."""
    if isinstance(doc, dict) and isinstance(doc.get("instances"), list):
        instances = doc["instances"]
        return RequestSummary(len(instances), lambda i: _v1_image(instances[i]))
    if isinstance(doc, dict) and isinstance(doc.get("inputs"), list):
        tensors = [t for t in doc["inputs"] if isinstance(t, dict)]
        if not tensors:
            raise Malformed("unsupported_payload", "V2 request without input tensors")
        count = _v2_count(tensors[0])
        images = [t for t in tensors if str(t.get("datatype", "")).upper() == "BYTES"]
        if not images:
            return RequestSummary(count, _no_image)
        data = _flatten(images[0].get("data"))
        return RequestSummary(count, lambda i: _b64_image(data[i]) if i < len(data) else None)
    raise Malformed("unsupported_payload",
                    "request has neither 'instances' (V1) nor 'inputs' (V2)")


def _v2_count(tensor: dict[str, Any]) -> int:
    shape = tensor.get("shape")
    first = shape[0] if isinstance(shape, list) and shape else shape
    if type(first) is int and first >= 0:
        return first
    data = tensor.get("data")  # shape -1: a batch of as many elements as there are
    return len(data) if isinstance(data, list) else 1


def _v1_image(instance: Any) -> tuple[bytes, str] | None:
    if isinstance(instance, str):
        return _b64_image(instance)
    if isinstance(instance, dict):
        for value in instance.values():
            if isinstance(value, dict) and isinstance(value.get("b64"), str):
                found = _b64_image(value["b64"])
            else:
                found = _b64_image(value)
            if found is not None:
                return found
    return None


def _b64_image(value: Any) -> tuple[bytes, str] | None:
    """(bytes, content type) when `value` is a base64 string of a JPEG, PNG or WebP."""
    if not isinstance(value, str) or len(value) < 16:
        return None
    try:
        head = base64.b64decode(value[:16], validate=True)
    except (binascii.Error, ValueError):
        return None
    if sniff_image_type(head) is None:  # 16 base64 characters: the first 12 bytes
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    ctype = sniff_image_type(raw)
    return (raw, ctype) if ctype else None
