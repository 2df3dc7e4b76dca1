"""Security settings: Kafka SSL/SASL from the YAML with secrets from the environment only,
/metrics over TLS with basic auth, loopback by default, hashed request ids, a private
checkpoint directory, and no raw image bytes written anywhere by default.

No SASL- or SSL-enabled broker is available to the tests (the embedded Tansu broker speaks
PLAINTEXT only), so the Kafka side is tested up to the settings each client library is
handed, and those settings are checked to be accepted by the libraries themselves."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import stat
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from collectors.checkpoint import CheckpointStore, encode
from collectors.kafka.client import security_settings
from monitor.config import ConfigError, HttpConfig, KafkaConfig, parse_config, resolve
from tests.conftest import CLASSES, base_config, metric_sum, parse_metrics, scrape, wait_for
from tests.faults.harness import FastProducer, http_get, produce_stream
from visionmon.broker import EmbeddedBroker

pytestmark = pytest.mark.slow  # left out of `make test-fast`

SASL_YAML: dict[str, Any] = {
    "bootstrap_servers": ["kafka-1.internal:9093"],
    "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username_env": "VM_TEST_KAFKA_USER", "sasl_password_env": "VM_TEST_KAFKA_PASS",
    "ssl_key_password_env": "VM_TEST_KEY_PASS",
}


def _kafka(**fields: Any) -> KafkaConfig:
    cfg = parse_config({"version": 1, "kafka": fields,
                        "models": [{"name": "digits", "classes": CLASSES}]})
    return cfg.kafka


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"VM_TEST_KAFKA_USER": "svc-visionmon", "VM_TEST_KAFKA_PASS": "s3cr3t-pa55",
              "VM_TEST_KEY_PASS": "key-pa55"}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


# --- Kafka security settings ----------------------------------------------------------
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_settings_come_from_the_environment(secrets: dict[str, str], protocol: str,
                                                 mechanism: str) -> None:
    cfg = _kafka(**{**SASL_YAML, "security_protocol": protocol, "sasl_mechanism": mechanism})
    out = security_settings(cfg)
    assert out["security_protocol"] == protocol
    assert out["sasl_mechanism"] == mechanism
    assert out["sasl_username"] == secrets["VM_TEST_KAFKA_USER"]
    assert out["sasl_password"] == secrets["VM_TEST_KAFKA_PASS"]
    assert ("ssl_password" in out) == (protocol == "SASL_SSL")


def test_each_backend_is_handed_settings_its_library_accepts(secrets: dict[str, str],
                                                             tls_files: tuple[Path, Path]
                                                             ) -> None:
    from kafka import KafkaConsumer

    from collectors.kafka import confluent_backend, kafka_python_backend

    cert, key = tls_files
    cfg = _kafka(**SASL_YAML, ssl_cafile=str(cert), ssl_certfile=str(cert),
                 ssl_keyfile=str(key))
    kp = kafka_python_backend._common(cfg)
    assert set(kp) <= set(KafkaConsumer.DEFAULT_CONFIG), set(kp) - set(
        KafkaConsumer.DEFAULT_CONFIG)
    assert kp["sasl_plain_username"] == "svc-visionmon"
    assert kp["sasl_plain_password"] == "s3cr3t-pa55"
    assert kp["ssl_cafile"] == str(cert) and kp["ssl_password"] == "key-pa55"
    ck_conf = confluent_backend._common(cfg)
    assert ck_conf["security.protocol"] == "SASL_SSL"
    assert ck_conf["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert ck_conf["sasl.username"] == "svc-visionmon"
    assert ck_conf["sasl.password"] == "s3cr3t-pa55"
    assert ck_conf["ssl.ca.location"] == str(cert)
    assert ck_conf["ssl.key.password"] == "key-pa55"
    # librdkafka validates the whole configuration (mechanism, files, key) when a client
    # is created; no connection is attempted before the first poll
    import confluent_kafka as ck

    consumer = ck.Consumer({**ck_conf, "group.id": "t", "client.id": "security-test"})
    consumer.close()


@pytest.mark.parametrize("literal", ["sasl_password", "sasl_username", "ssl_password",
                                     "password"])
def test_literal_secrets_in_the_file_are_refused_with_what_to_do(literal: str) -> None:
    with pytest.raises(ConfigError) as err:
        _kafka(**SASL_YAML, **{literal: "hunter2"})
    text = str(err.value)
    assert f"literal secret {literal!r} is not allowed" in text
    assert "_env" in text and "environment variable" in text
    assert "hunter2" not in text


def test_a_missing_secret_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VM_TEST_KAFKA_PASS", raising=False)
    monkeypatch.setenv("VM_TEST_KAFKA_USER", "u")
    monkeypatch.setenv("VM_TEST_KEY_PASS", "k")
    with pytest.raises(ConfigError, match="environment variable VM_TEST_KAFKA_PASS is not set"):
        security_settings(_kafka(**SASL_YAML))


def test_sasl_without_mechanism_or_credentials_is_refused() -> None:
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        _kafka(security_protocol="SASL_SSL", sasl_username_env="U", sasl_password_env="P")
    with pytest.raises(ConfigError, match="sasl_username_env and sasl_password_env"):
        _kafka(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN")


def test_secret_variable_names_must_be_names_not_values() -> None:
    with pytest.raises(ConfigError, match="sasl_password_env"):
        _kafka(**{**SASL_YAML, "sasl_password_env": "pa55 word!"})


# --- /metrics over TLS and basic auth --------------------------------------------------
def _get(url: str, ctx: ssl.SSLContext | None, auth: tuple[str, str] | None = None
         ) -> tuple[int, str]:
    headers = {}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return http_get(url, headers=headers, context=ctx)


def test_metrics_over_tls_with_basic_auth(broker: EmbeddedBroker,
                                          topics: Callable[..., dict[str, str]],
                                          start_daemon: Callable[..., Any],
                                          tls_files: tuple[Path, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = tls_files
    monkeypatch.setenv("VM_TEST_HTTP_USER", "prometheus")
    monkeypatch.setenv("VM_TEST_HTTP_PASS", "scrape-pa55")
    names = topics(partitions=1, dead_letter=False)
    cfg = base_config(broker.bootstrap, names,
                      http={"tls_certfile": str(cert), "tls_keyfile": str(key),
                            "basic_auth_user_env": "VM_TEST_HTTP_USER",
                            "basic_auth_password_env": "VM_TEST_HTTP_PASS"},
                      state={"checkpoint_dir": str(tmp_path / "ck")})
    d = start_daemon(cfg)
    url = f"https://127.0.0.1:{d.app.http.port}"
    trusted = ssl.create_default_context(cafile=str(cert))
    ok = ("prometheus", "scrape-pa55")

    status, body = _get(f"{url}/metrics", trusted, ok)
    assert status == 200 and "visionmon_up 1.0" in body
    for path in ("/metrics", "/healthz", "/readyz"):
        assert _get(f"{url}{path}", trusted)[0] == 401
        assert _get(f"{url}{path}", trusted, ("prometheus", "wrong"))[0] == 401
        assert _get(f"{url}{path}", trusted, ("prometheus ", "scrape-pa55"))[0] == 401
    assert _get(f"{url}/readyz", trusted, ok)[0] == 200
    # clients that connect and never finish the TLS handshake do not block scrapes
    idle = [socket.create_connection(("127.0.0.1", d.app.http.port)) for _ in range(3)]
    t0 = time.monotonic()
    assert _get(f"{url}/metrics", trusted, ok)[0] == 200
    assert time.monotonic() - t0 < 2.0
    for s in idle:
        s.close()
    # an untrusted certificate is refused by the client; plain HTTP gets no answer
    with pytest.raises(OSError):
        _get(f"{url}/metrics", ssl.create_default_context(), ok)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{d.app.http.port}/metrics", timeout=5)
    # the daemon created its checkpoint directory private
    assert stat.S_IMODE((tmp_path / "ck").stat().st_mode) == 0o700


# --- bind address -----------------------------------------------------------------------
def _listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on `port`, from /proc/net/tcp{,6}."""
    out: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # LISTEN
                out.add(addr)
    return out


def test_the_http_endpoints_bind_to_loopback_by_default(tmp_path: Path) -> None:
    from visionmon.app import App

    assert HttpConfig().bind == "127.0.0.1"
    loaded = resolve(parse_config({"version": 1, "kafka": {"bootstrap_servers": ["127.0.0.1:9"]},
                                   "models": [{"name": "digits", "classes": CLASSES}],
                                   "http": {"port": 0}}))
    app = App(loaded)
    app.http.start()
    try:
        port = app.http.port
        if not os.path.exists("/proc/net/tcp"):
            pytest.skip("needs /proc/net/tcp to read the listening address")
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing else
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        app.http.stop()


# --- request ids and what reaches the disk -------------------------------------------
def _statistics_with_ids(hash_ids: bool) -> tuple[Any, list[str]]:
    from monitor.events import DecodeLimits, ModelClassIndex, PredictionDecoder
    from visionmon.app import build_statistics

    loaded = resolve(parse_config({"version": 1, "state": {"hash_request_ids": hash_ids},
                                   "models": [{"name": "digits", "classes": CLASSES}]}))
    stats = build_statistics(loaded)
    dec = PredictionDecoder({"digits": ModelClassIndex.of(CLASSES)}, DecodeLimits())
    now = time.time()
    ids = [f"user-4711-order-{i:05d}" for i in range(50)]
    events = [dec.decode(orjson.dumps({"request_id": r, "ts": now - 5, "model": "digits",
                                       "version": "v1", "pred": 1, "confidence": 0.9}),
                         now).events[0] for r in ids]
    stats.engine.apply_predictions(events)
    return stats, ids


def test_hashed_request_ids_are_the_join_store_keys() -> None:
    from monitor.joins import hashed_key

    stats, ids = _statistics_with_ids(hash_ids=True)
    keys = [k for k, _ts, _v in stats.labels.predictions.items()]
    assert keys == [hashed_key(r) for r in ids]
    assert not set(keys) & set(ids)


def test_hashed_request_ids_never_reach_the_checkpoint() -> None:
    stats, ids = _statistics_with_ids(hash_ids=True)
    data = encode({"engine": stats.engine.state()})
    assert not [r for r in ids if r.encode() in data]


def test_without_hashing_the_checkpoint_holds_raw_ids_as_documented() -> None:
    stats, ids = _statistics_with_ids(hash_ids=False)
    assert ids[0].encode() in encode({"engine": stats.engine.state()})


def test_no_raw_image_bytes_are_written_anywhere_by_default(
        broker: EmbeddedBroker, topics: Callable[..., dict[str, str]],
        start_daemon: Callable[..., Any], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    assert KafkaConfig().dead_letter_topic is None  # refused records go nowhere by default
    names = topics(partitions=1, dead_letter=False)
    state_dir = tmp_path / "state"
    cfg = base_config(broker.bootstrap, names, state={"checkpoint_dir": str(state_dir),
                                                      "checkpoint_interval_seconds": 0.2})
    marker = b"PIXELS-" + os.urandom(12).hex().encode()
    image = b"\x89PNG\r\n\x1a\n" + marker * 20
    d = start_daemon(cfg)
    p = FastProducer(broker.bootstrap)
    headers = [("request_id", b"r1"), ("model", b"digits"), ("version", b"v1"),
               ("content-type", b"image/png")]
    import confluent_kafka as ck

    raw_producer = ck.Producer({"bootstrap.servers": broker.bootstrap})
    raw_producer.produce(names["images"], image, headers=headers)                 # accepted
    raw_producer.produce(names["images"], image, headers=headers[:1])             # refused
    raw_producer.produce(names["images"], image,
                         headers=[*headers[:3], ("content-type", b"text/html")])  # refused
    raw_producer.flush(10)
    p.flush()
    produce_stream(broker.bootstrap, names, 0, 10, 1)
    wait_for(lambda: metric_sum(parse_metrics(scrape(d.url)), "visionmon_records_consumed_total",
                                topic=names["images"]) >= 3, 30)
    before = metric_sum(parse_metrics(scrape(d.url)), "visionmon_checkpoint_writes_total")
    wait_for(lambda: metric_sum(parse_metrics(scrape(d.url)),
                                "visionmon_checkpoint_writes_total") > before + 1, 10)
    d.stop()
    written = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert any(f.parent == state_dir for f in written)
    assert not [f for f in written if marker in f.read_bytes()]
    assert not [r for r in caplog.records if marker.decode() in r.getMessage()]
    assert CheckpointStore(state_dir).load() is not None
