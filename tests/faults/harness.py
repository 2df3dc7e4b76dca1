"""Fault-injection helpers shared by the tests in tests/faults and the benchmarks that run
their long versions: fast producers, the daemon as a subprocess that can be SIGKILLed, a
TCP proxy that can cut the network, and reading the exported metrics. A private broker is
`visionmon.broker.EmbeddedBroker` on its own port (its `restart()` keeps the port)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import yaml

from visionmon.broker import free_port

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- events ---------------------------------------------------------------------------
def prediction(i: int, ts: float, prefix: str = "r") -> bytes:
    """One valid prediction event for the `digits` model; request id `{prefix}{i}`."""
    return orjson.dumps({"request_id": f"{prefix}{i}", "ts": ts, "model": "digits",
                         "version": "v1", "pred": i % 10,
                         "confidence": round(0.5 + (i % 50) / 100, 2), "latency_ms": 8.0})


def label(i: int, ts: float, prefix: str = "r") -> bytes:
    """The ground-truth label of prediction `i` (right for 3 of 4 requests)."""
    return orjson.dumps({"request_id": f"{prefix}{i}", "label": i % 10 if i % 4 else (i + 1) % 10,
                         "ts": ts, "model": "digits"})


class FastProducer:
    """confluent-kafka producer with explicit partitions (round-robin by index)."""

    def __init__(self, bootstrap: str) -> None:
        import confluent_kafka as ck

        self._p = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 10,
                               "queue.buffering.max.messages": 500_000,
                               "message.timeout.ms": 60_000})
        self.failed = 0

    def _report(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed += 1

    def send(self, topic: str, value: bytes, partition: int) -> None:
        while True:
            try:
                self._p.produce(topic, value, partition=partition, on_delivery=self._report)
                break
            except BufferError:
                self._p.poll(0.05)
        self._p.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        left = self._p.flush(timeout_s)
        if left or self.failed:
            raise RuntimeError(f"{left} messages not delivered, {self.failed} failed")


def produce_stream(bootstrap: str, names: dict[str, str], start: int, n: int,
                   partitions: int, label_every: int = 0, t0: float | None = None,
                   pace_s: float = 0.0) -> None:
    """Predictions `start..start+n-1` (and a label for every `label_every`-th one), one
    event per message; `pace_s` sleeps between chunks of 1,000 to spread them in time."""
    p = FastProducer(bootstrap)
    t0 = time.time() - 600 if t0 is None else t0
    for i in range(start, start + n):
        ts = t0 + i * 1e-3
        p.send(names["predictions"], prediction(i, ts), i % partitions)
        if label_every and i % label_every == 0:
            p.send(names["feedback"], label(i, ts + 5), i % partitions)
        if pace_s and i % 1000 == 999:
            p.flush()
            time.sleep(pace_s)
    p.flush()


class TcpProxy:
    """Forwards a local port to the broker. `cut()` drops every connection and refuses
    new ones (a network partition, or a durable broker restarting); `restore()` listens
    again on the same port. The broker keeps its logs and group state throughout."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.port = port or free_port()
        self._target = target_port
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> TcpProxy:
        self._stop.clear()
        lst = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        lst.settimeout(0.2)
        self._listener = lst
        self._thread = threading.Thread(target=self._accept, args=(lst,), daemon=True,
                                        name="tcp-proxy")
        self._thread.start()
        return self

    def _accept(self, lst: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = lst.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        if self._thread is not None:
            self._thread.join(2)

    def restore(self) -> None:
        self.start()


# --- the daemon as a subprocess -------------------------------------------------------
def daemon_config(bootstrap: str, names: dict[str, str], port: int, group: str,
                  client: str = "kafka-python", checkpoint_dir: Path | None = None,
                  checkpoint_interval_s: float = 0.5, **sections: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "version": 1,
        "kafka": {"bootstrap_servers": [bootstrap], "group_id": group, "client": client,
                  "topics": {k: names[k] for k in ("predictions", "images", "feedback")},
                  "poll_timeout_ms": 200, "commit_interval_seconds": 0.2,
                  "lag_interval_seconds": 1.0},
        "models": [{"name": "digits", "classes": CLASSES}],
        # every scrape renders: the fault tests add up counts read just before a kill, which a
        # snapshot up to a second old would under-state (the default interval is 1 s)
        "http": {"bind": "127.0.0.1", "port": port, "snapshot_interval_seconds": 0},
        "windows": {"sizes": ["5m", "1h"], "slices": 30},
    }
    if checkpoint_dir is not None:
        cfg["state"] = {"checkpoint_dir": str(checkpoint_dir),
                        "checkpoint_interval_seconds": checkpoint_interval_s}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


class DaemonProcess:
    """`visionmon run` in a subprocess, with its log in a file."""

    def __init__(self, cfg: dict[str, Any], workdir: Path, name: str = "daemon",
                 env: dict[str, str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.cfg_path = workdir / f"{name}.yaml"
        self.cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.log_path = workdir / f"{name}.log"
        self.url = f"http://127.0.0.1:{cfg['http']['port']}"
        self._env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "visionmon", "run", "--config", str(self.cfg_path)],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=self._env)
        return self

    def kill(self) -> None:
        """SIGKILL: no final checkpoint, no commit, no goodbye to the group."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout_s: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def metrics(self) -> Metrics | None:
        """Parsed /metrics, or None while the endpoint does not answer."""
        try:
            return parse_metrics(http_get(f"{self.url}/metrics")[1])
        except OSError:
            return None

    def get(self, path: str) -> tuple[int, str]:
        return http_get(f"{self.url}{path}")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        wait_for(lambda: self._ready(), timeout_s, what=f"{self.cfg_path.name} ready",
                 on_timeout=self.log_tail)

    def _ready(self) -> bool:
        if not self.alive():
            raise AssertionError(f"daemon exited early:\n{self.log_tail()}")
        try:
            return self.get("/readyz")[0] == 200
        except OSError:
            return False


def http_get(url: str, timeout_s: float = 10.0, **kwargs: Any) -> tuple[int, str]:
    """(status, body); HTTP error statuses are returned, connection errors raise OSError."""
    req = urllib.request.Request(url, headers=kwargs.pop("headers", {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout_s, **kwargs) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


def parse_metrics(text: str) -> Metrics:
    from prometheus_client.parser import text_string_to_metric_families

    out: Metrics = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(metrics: Metrics | None, name: str, **labels: str) -> float:
    """Sum of a sample over the series matching `labels`; -1 when there are no metrics."""
    if metrics is None:
        return -1.0
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= set(ls))


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0, every: float = 0.1,
             what: str = "condition", on_timeout: Callable[[], str] | None = None) -> float:
    """Polls until `predicate()`; returns the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if predicate():
            return time.monotonic() - t0
        time.sleep(every)
    extra = f"\n{on_timeout()}" if on_timeout is not None else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{extra}")


@contextlib.contextmanager
def daemons(*procs: DaemonProcess) -> Iterator[tuple[DaemonProcess, ...]]:
    """Terminates every daemon on the way out, whatever happened."""
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate(10)
