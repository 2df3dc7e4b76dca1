"""The daemon's HTTP endpoints: /metrics, /healthz, /readyz and (when on) /gallery,
optionally with TLS and basic auth. A small WSGI app on wsgiref's threaded server,
stoppable on shutdown."""

from __future__ import annotations

import base64
import hmac
import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import CollectorRegistry

from collectors.bodies import BodyFormat
from collectors.gallery_page import GALLERY_HEADERS
from collectors.snapshot_cache import SnapshotCache

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a failed TLS handshake or a client that went away: not worth a traceback
        log.debug("http: connection from %s failed", client_address, exc_info=True)


class _QuietHandler(WSGIRequestHandler):
    #: seconds a client may stall (TLS handshake, request line, headers) before its
    #: connection and thread are dropped
    timeout = 10.0

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            # in this connection's own thread: a client that never completes the
            # handshake cannot block the accept loop and with it every scrape
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def snapshot_metrics_app(snapshots: SnapshotCache, registry: CollectorRegistry) -> WsgiApp:
    """/metrics from the snapshot cache: each format's bytes (and their gzip) are written
    once per snapshot and served to every scrape of it. Content negotiation and methods as
    prometheus_client's WSGI app; a `name[]` filter goes to that app over `registry`."""
    filtered = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if method != "GET" or "name[]" in parse_qs(environ.get("QUERY_STRING", "")):
            return filtered(environ, start_response)  # type: ignore[no-any-return]
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT"))  # type: ignore[arg-type]
        zipped = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING"))  # type: ignore[arg-type]
        headers = [("Content-Type", content_type)]
        if zipped:
            headers.append(("Content-Encoding", "gzip"))
        reader = f"{environ.get('REMOTE_ADDR', '')} {environ.get('HTTP_USER_AGENT', '')}"
        body = snapshots.latest(reader).body(BodyFormat(content_type, encoder, zipped))
        start_response("200 OK", headers)
        return [body]

    return app


class HttpEndpoints:
    """Routes /metrics, /healthz, /readyz and /gallery; health and readiness come from
    callables. With `snapshots`, /metrics serves the snapshot cache's bytes; else it
    collects `registry` on every scrape. `gallery` renders the failure gallery's page;
    without it /gallery is 404. Basic auth, when set, guards every path."""

    def __init__(self, registry: CollectorRegistry, healthy: Callable[[], bool],
                 ready: Callable[[], tuple[bool, str]],
                 basic_auth: tuple[str, str] | None = None,
                 snapshots: SnapshotCache | None = None,
                 gallery: Callable[[], bytes] | None = None) -> None:
        self._metrics = (make_wsgi_app(registry) if snapshots is None
                         else snapshot_metrics_app(snapshots, registry))
        self._healthy = healthy
        self._ready = ready
        self._gallery = gallery
        self._auth = None
        if basic_auth is not None:
            token = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
            self._auth = f"Basic {token}"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        if self._auth is not None:
            given = environ.get("HTTP_AUTHORIZATION", "")
            if not hmac.compare_digest(given.encode(), self._auth.encode()):
                start_response("401 Unauthorized",
                               [("WWW-Authenticate", 'Basic realm="visionmon"'),
                                ("Content-Type", "text/plain")])
                return [b"unauthorized\n"]
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            ok = self._healthy()
            return _text(start_response, 200 if ok else 503, "ok" if ok else "loop stalled")
        if path == "/readyz":
            ok, why = self._ready()
            return _text(start_response, 200 if ok else 503, why)
        if path == "/gallery" and self._gallery is not None:
            # a copy: wsgiref adds Content-Length to the list it is given
            start_response("200 OK", list(GALLERY_HEADERS))
            return [self._gallery()]
        return _text(start_response, 404, "not found; try /metrics, /healthz or /readyz"
                     + (" or /gallery" if self._gallery is not None else ""))


def _text(start_response: StartResponse, code: int, body: str) -> list[bytes]:
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[code]
    start_response(f"{code} {reason}", [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode() + b"\n"]


class HttpServer:
    """Serves an app in a background thread; `port` is the bound port (0 picks one)."""

    def __init__(self, app: Any, bind: str, port: int, certfile: str | None = None,
                 keyfile: str | None = None) -> None:
        self._server = make_server(bind, port, app, server_class=_ThreadingServer,
                                   handler_class=_QuietHandler)
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(certfile, keyfile)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True,
                                                  do_handshake_on_connect=False)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="visionmon-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
