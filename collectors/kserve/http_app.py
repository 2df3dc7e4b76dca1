"""The bridge's HTTP endpoints (WSGI): POST any path: CloudEvents; GET /metrics, /healthz,
/readyz. Served by the daemon's threaded server (`collectors.http_server.HttpServer`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from collectors.http_server import StartResponse
from collectors.kserve.bridge import KServeBridge
from collectors.kserve.cloudevents import Malformed, parse_http

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 413: "Content Too Large", 503: "Service Unavailable"}


class BridgeApp:
    """WSGI app around a `KServeBridge`. KServe's agent logs any answer but 200 as an error,
    so accepted events get 200 and unusable ones 4xx with the reason in the body."""

    def __init__(self, bridge: KServeBridge, registry: CollectorRegistry) -> None:
        self._bridge = bridge
        self._metrics = make_wsgi_app(registry)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if method == "GET":
            if path == "/metrics":
                return self._metrics(environ, start_response)  # type: ignore[no-any-return]
            logger = self._bridge.logger
            if path == "/healthz":
                ok = logger.alive()
                return _text(start_response, 200 if ok else 503, "ok" if ok else "sender stopped")
            if path == "/readyz":
                ok = logger.has_room()
                return _text(start_response, 200 if ok else 503,
                             "ready" if ok else "emitter buffer full or closed")
            return _text(start_response, 404, "not found; POST CloudEvents to any path")
        if method != "POST":
            return _text(start_response, 405, "POST CloudEvents here")
        length_text = environ.get("CONTENT_LENGTH") or ""
        if not length_text.isdigit():
            self._bridge.count_malformed("no_length")
            return _text(start_response, 411, "Content-Length required")
        length = int(length_text)
        if length > self._bridge.settings.max_body_bytes:
            self._bridge.count_malformed("too_large")
            return _text(start_response, 413, f"body over {self._bridge.settings.max_body_bytes}"
                                              " bytes")
        body = environ["wsgi.input"].read(length)
        headers = {key[5:].replace("_", "-").lower(): value
                   for key, value in environ.items() if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        try:
            events = parse_http(headers, body)
        except Malformed as bad:
            self._bridge.count_malformed(bad.reason)
            return _text(start_response, 400, str(bad))
        problems = []
        for event in events:
            try:
                self._bridge.handle(event)
            except Malformed as bad:
                problems.append(str(bad))
        if problems:
            return _text(start_response, 400, "; ".join(problems)[:1000])
        return _text(start_response, 200, "ok")


def _text(start_response: StartResponse, code: int, body: str) -> list[bytes]:
    start_response(f"{code} {_REASONS[code]}", [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode() + b"\n"]
