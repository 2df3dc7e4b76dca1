"""Composition root: wires config, engine, statistics extensions, the consumer loop,
the HTTP endpoints and the optional OpenTelemetry export into one running daemon."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from collectors.daemon import Daemon
from collectors.exporter import build_registry
from collectors.http_server import HttpEndpoints, HttpServer
from monitor.config import LoadedConfig, read_secret
from monitor.engine import Engine
from monitor.snapshot import Series, SnapshotBuilder
from visionmon import __version__

log = logging.getLogger(__name__)


def build_engine(loaded: LoadedConfig) -> Engine:
    cfg = loaded.config
    engine = Engine({n: m.classes for n, m in loaded.models.items()},
                    cfg.limits.max_versions_per_model)
    return engine


@dataclass
class RunningDaemon:
    """A daemon with its HTTP server, running in a background thread (tests, demo)."""

    daemon: Daemon
    http: HttpServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"

    def stop(self, timeout_s: float = 15.0) -> None:
        self.daemon.stop()
        self.thread.join(timeout_s)
        self.http.stop()


class App:
    """Everything `visionmon run` starts."""

    def __init__(self, loaded: LoadedConfig, port: int | None = None) -> None:
        self.loaded = loaded
        cfg = loaded.config
        self.engine = build_engine(loaded)
        self.daemon = Daemon(loaded, self.engine)
        self.registry = build_registry(self.snapshot)
        auth = None
        if cfg.http.basic_auth_user_env:
            user = read_secret(cfg.http.basic_auth_user_env, "http.basic_auth_user_env")
            pw = read_secret(cfg.http.basic_auth_password_env, "http.basic_auth_password_env")
            auth = (user or "", pw or "")
        endpoints = HttpEndpoints(self.registry, self.daemon.healthy, self.daemon.ready, auth)
        self.http = HttpServer(endpoints, cfg.http.bind, cfg.http.port if port is None else port,
                               cfg.http.tls_certfile, cfg.http.tls_keyfile)
        self.otel = None
        if cfg.otel.endpoint:
            from collectors.otel_bridge import OtelBridge
            self.otel = OtelBridge.for_endpoint(self.snapshot, cfg.otel)

    def snapshot(self) -> dict[str, Series]:
        b = SnapshotBuilder()
        b.merge(self.daemon.snapshot())
        b.set("visionmon_build_info", (__version__,), 1.0)
        b.set("visionmon_config_info", (self.loaded.sha256[:16], "1"), 1.0)
        return b.build()

    def run(self) -> None:
        """Blocking: serve HTTP and consume until stopped; the HTTP server stops last."""
        self.http.start()
        log.info("config loaded from %s; serving /metrics on %s:%d", self.loaded.path,
                 self.loaded.config.http.bind, self.http.port)
        try:
            self.daemon.run()
        finally:
            if self.otel is not None:
                self.otel.shutdown()
            self.http.stop()

    def start_background(self) -> RunningDaemon:
        self.http.start()
        thread = threading.Thread(target=self.daemon.run, name="visionmon-loop", daemon=True)
        thread.start()
        return RunningDaemon(self.daemon, self.http, thread)


def wait_ready(daemon: Daemon, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ok, _ = daemon.ready()
        if ok:
            return
        time.sleep(0.1)
    raise TimeoutError(f"daemon not ready after {timeout_s}s: {daemon.ready()[1]}")
