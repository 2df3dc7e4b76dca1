"""KServe payload-logger bridge: CloudEvents in, contract v1 events out (via the emitter).

KServe's agent posts two events per served request to the logger URL, `...inference.request`
and, when the model answered HTTP 200, `...inference.response`, both with the same `ce-id`
(the request's `Ce-Id` header, or a generated UUID). The bridge pairs them by (`ce-id`,
`component` extension), reads the payloads (V1 or V2, `payloads.py`) and logs one
prediction per instance through a `PredictionLogger`, with the request's image when it
carries one and sampling keeps it. Request ids are the `ce-id`, suffixed `/i` for
instance i when a request holds more than one instance.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from collectors.emitter import PredictionLogger
from collectors.emitter.metrics import family
from collectors.kserve.cloudevents import REQUEST_TYPE, RESPONSE_TYPE, CloudEvent, Malformed
from collectors.kserve.pairing import DuplicateHalf, Key, PairingStore, Unpaired
from collectors.kserve.payloads import ResponseSummary, Scores, parse_request, parse_response
from monitor.catalog import PREFIX

log = logging.getLogger(__name__)

MALFORMED_REASONS = ("not_cloudevent", "invalid_json", "invalid_data", "unsupported_type",
                     "unsupported_payload", "no_model", "count_mismatch", "duplicate",
                     "too_large", "no_length")


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """How events are read and paired. Times in seconds, sizes in bytes."""

    #: KServe name (V2 `model_name`, else the `inferenceservicename` extension) ->
    #: visionmon model name; names not listed are used as they are.
    model_map: Mapping[str, str] = field(default_factory=dict)
    #: Version when the response does not carry `model_version` (V1 never does).
    default_version: str = "default"
    #: Whether score vectors are probabilities or logits (softmax applied).
    scores: Scores = "probs"
    #: V2 output tensor to read; None picks the first usable one.
    output_name: str | None = None
    pair_ttl_s: float = 30.0
    max_pending: int = 10_000
    max_pending_bytes: int = 256 * 1024 * 1024
    max_body_bytes: int = 16 * 1024 * 1024
    #: A response whose request never came is still logged (no image, no latency).
    emit_unpaired_responses: bool = True
    #: A request whose response never came (KServe logs no response for a non-200
    #: answer) is logged as `status: error` for each of its instances.
    unpaired_requests_as_errors: bool = False
    #: Latency = response `time` - request `time`: the agent stamps both when it sends
    #: the events, so this approximates the served latency.
    latency: bool = True


@dataclass(frozen=True, slots=True)
class _Request:
    ce_id: str
    count: int
    images: Mapping[int, tuple[bytes, str]]
    ts: float | None
    isvc: str | None


@dataclass(frozen=True, slots=True)
class _Response:
    ce_id: str
    summary: ResponseSummary
    ts: float | None
    isvc: str | None


@dataclass(frozen=True, slots=True)
class BridgeStats:
    """Counters of the bridge (events are CloudEvents; predictions are instances)."""

    received: Mapping[str, int]
    malformed: Mapping[str, int]
    pairs: int
    unpaired: Mapping[tuple[str, str], int]
    predictions: int
    images: int
    pending: int
    pending_bytes: int


def request_id(ce_id: str, index: int, count: int) -> str:
    """The contract request id of instance `index` of a request of `count` instances."""
    return ce_id if count == 1 else f"{ce_id}/{index}"


class KServeBridge:
    """Thread-safe: `handle()` is called from the HTTP server's threads."""

    def __init__(self, logger: PredictionLogger, settings: BridgeSettings | None = None, *,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings or BridgeSettings()
        self.logger = logger
        self._monotonic = monotonic
        self._wall = wall
        s = self.settings
        self._store: PairingStore[_Request, _Response] = PairingStore(
            s.pair_ttl_s, s.max_pending, s.max_pending_bytes)
        self._lock = threading.Lock()
        self._received: dict[str, int] = {"request": 0, "response": 0, "other": 0}
        self._malformed: dict[str, int] = {}
        self._unpaired: dict[tuple[str, str], int] = {}
        self._pairs = 0
        self._predictions = 0
        self._images = 0
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # ------------------------------------------------------------------ events

    def count_malformed(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._malformed[reason] = self._malformed.get(reason, 0) + n

    def handle(self, event: CloudEvent) -> None:
        """Take one event; raises `Malformed` (already counted) when it cannot be used."""
        kind = ("request" if event.type == REQUEST_TYPE
                else "response" if event.type == RESPONSE_TYPE else "other")
        with self._lock:
            self._received[kind] += 1
        try:
            if kind == "other":
                raise Malformed("unsupported_type", f"event type {event.type[:80]!r}")
            self._take(kind, event)
        except Malformed as bad:
            self.count_malformed(bad.reason)
            raise

    def _take(self, kind: str, event: CloudEvent) -> None:
        try:
            doc = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise Malformed("invalid_json", f"{kind} payload is not JSON") from None
        key: Key = (event.id, event.extensions.get("component", ""))
        isvc = event.extensions.get("inferenceservicename") or None
        now = self._monotonic()
        if kind == "request":
            req = self._request(event, doc, isvc)
            size = 256 + sum(len(b) for b, _ in req.images.values())
            pair, evicted = self._add(lambda: self._store.add_request(key, req, size, now))
        else:
            summary = parse_response(doc, self.settings.scores, self.settings.output_name)
            resp = _Response(event.id, summary, event.timestamp(), isvc)
            pair, evicted = self._add(
                lambda: self._store.add_response(key, resp, 256 + len(event.data), now))
        self._settle(evicted)
        if pair is not None:
            with self._lock:
                self._pairs += 1
            self._emit(pair[0], pair[1])

    def _add(self, add: Callable[[], tuple[tuple[_Request, _Response] | None,
                                           list[Unpaired[_Request, _Response]]]]
             ) -> tuple[tuple[_Request, _Response] | None, list[Unpaired[_Request, _Response]]]:
        self.sweep()
        with self._lock:
            try:
                return add()
            except DuplicateHalf as dup:
                raise Malformed("duplicate", str(dup)) from None

    def _request(self, event: CloudEvent, doc: Any, isvc: str | None) -> _Request:
        summary = parse_request(doc)
        images: dict[int, tuple[bytes, str]] = {}
        for i in range(summary.count):
            if self.logger.wants_image(request_id(event.id, i, summary.count)):
                found = summary.image(i)
                if found is not None:
                    images[i] = found
        return _Request(event.id, summary.count, images, event.timestamp(), isvc)

    # ------------------------------------------------------------------ output

    def _model(self, name: str | None) -> str:
        if not name:
            raise Malformed("no_model", "no model_name in the response and no "
                                        "inferenceservicename extension")
        return self.settings.model_map.get(name, name)

    def _emit(self, req: _Request | None, resp: _Response) -> None:
        summary = resp.summary
        try:
            model = self._model(summary.model_name or resp.isvc or (req.isvc if req else None))
        except Malformed as bad:
            self.count_malformed(bad.reason)
            log.debug("bridge: %s", bad)
            return
        version = summary.model_version or self.settings.default_version
        n = len(summary.predictions)
        images: Mapping[int, tuple[bytes, str]] = {}
        if req is not None:
            if req.count == n:
                images = req.images
            else:
                self.count_malformed("count_mismatch")
        ts = resp.ts or (req.ts if req else None) or self._wall()
        latency_ms = None
        if self.settings.latency and req is not None and req.ts is not None and resp.ts:
            latency_ms = max(0.0, (resp.ts - req.ts) * 1000.0)
        for i, p in enumerate(summary.predictions):
            image = images.get(i)
            self.logger.log(request_id(resp.ce_id, i, n), model, version, pred=p.pred,
                            probs=p.probs, topk=p.topk, latency_ms=latency_ms, ts=ts,
                            image_bytes=image[0] if image else None,
                            image_content_type=image[1] if image else None)
        with self._lock:
            self._predictions += n
            self._images += len(images)

    def _emit_error(self, req: _Request) -> None:
        try:
            model = self._model(req.isvc)
        except Malformed as bad:
            self.count_malformed(bad.reason)
            return
        ts = req.ts or self._wall()
        for i in range(req.count):
            self.logger.log(request_id(req.ce_id, i, req.count), model,
                            self.settings.default_version, status="error", ts=ts)
        with self._lock:
            self._predictions += req.count

    def _settle(self, gone: list[Unpaired[_Request, _Response]]) -> None:
        """Count halves that left without a partner and log what the settings ask for."""
        if not gone:
            return
        with self._lock:
            for u in gone:
                key = (u.half, u.reason)
                self._unpaired[key] = self._unpaired.get(key, 0) + 1
        for u in gone:
            if u.response is not None and self.settings.emit_unpaired_responses:
                self._emit(None, u.response)
            elif u.request is not None and self.settings.unpaired_requests_as_errors:
                self._emit_error(u.request)

    # ------------------------------------------------------------------ lifecycle

    def sweep(self) -> None:
        """Expire halves that waited longer than `pair_ttl_s` (the sweeper calls this)."""
        with self._lock:
            gone = self._store.expire(self._monotonic())
        self._settle(gone)

    def start(self) -> None:
        """Start the sweeper thread (every min(1 s, ttl / 4))."""
        every = min(1.0, self.settings.pair_ttl_s / 4)

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.sweep()
                except Exception:
                    log.exception("bridge: sweep failed")

        self._sweeper = threading.Thread(target=loop, name="visionmon-bridge-sweeper",
                                         daemon=True)
        self._sweeper.start()

    def close(self) -> None:
        """Stop the sweeper and settle every waiting half as unpaired."""
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(5)
        with self._lock:
            gone = self._store.drain()
        self._settle(gone)

    def stats(self) -> BridgeStats:
        with self._lock:
            return BridgeStats(dict(self._received), dict(self._malformed), self._pairs,
                               dict(self._unpaired), self._predictions, self._images,
                               len(self._store), self._store.bytes)


class BridgeCollector(Collector):
    """`visionmon_bridge_*` families from a `BridgeStats` source, on every scrape."""

    def __init__(self, stats: Callable[[], BridgeStats]) -> None:
        self._stats = stats

    def describe(self) -> Iterable[Metric]:
        return list(self._families(BridgeStats({}, {}, 0, {}, 0, 0, 0, 0)))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self._stats()))

    @staticmethod
    def _families(s: BridgeStats) -> Iterable[Metric]:
        received = family(f"{PREFIX}bridge_cloudevents_received_total")
        for kind in ("request", "response", "other"):
            received.add_metric([kind], s.received.get(kind, 0))
        malformed = family(f"{PREFIX}bridge_cloudevents_malformed_total")
        for reason in MALFORMED_REASONS:
            malformed.add_metric([reason], s.malformed.get(reason, 0))
        unpaired = family(f"{PREFIX}bridge_unpaired_total")
        for half in ("request", "response"):
            for reason in ("ttl", "capacity"):
                unpaired.add_metric([half, reason], s.unpaired.get((half, reason), 0))
        yield received
        yield malformed
        yield unpaired
        yield family(f"{PREFIX}bridge_pairs_total", s.pairs)
        yield family(f"{PREFIX}bridge_predictions_total", s.predictions)
        yield family(f"{PREFIX}bridge_images_total", s.images)
        yield family(f"{PREFIX}bridge_pending", s.pending)
        yield family(f"{PREFIX}bridge_pending_bytes", s.pending_bytes)
