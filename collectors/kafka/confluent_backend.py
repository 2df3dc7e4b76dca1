"""confluent-kafka backend (librdkafka; optional extra `visionmon[confluent]`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from collectors.kafka.client import (
    AssignCallback,
    Headers,
    KafkaUnavailable,
    Record,
    TopicPartition,
    security_settings,
)
from monitor.config import KafkaConfig

ck: Any
try:
    import confluent_kafka as ck
except ImportError:  # pragma: no cover - exercised only without the extra
    ck = None

log = logging.getLogger(__name__)


def _require() -> Any:
    if ck is None:
        raise ImportError("kafka.client 'confluent-kafka' needs the extra: "
                          "pip install 'visionmon[confluent]'")
    return ck


def _common(cfg: KafkaConfig) -> dict[str, Any]:
    sec = security_settings(cfg)
    out: dict[str, Any] = {"bootstrap.servers": ",".join(cfg.bootstrap_servers),
                           "security.protocol": sec["security_protocol"]}
    if "sasl_mechanism" in sec:
        out.update({"sasl.mechanisms": sec["sasl_mechanism"],
                    "sasl.username": sec["sasl_username"],
                    "sasl.password": sec["sasl_password"]})
    if "ssl_cafile" in sec:
        for key, value in (("ssl.ca.location", sec["ssl_cafile"]),
                           ("ssl.certificate.location", sec["ssl_certfile"]),
                           ("ssl.key.location", sec["ssl_keyfile"]),
                           ("ssl.key.password", sec["ssl_password"])):
            if value:
                out[key] = value
    return out


class ConfluentConsumer:
    def __init__(self, cfg: KafkaConfig, max_message_bytes: int) -> None:
        lib = _require()
        self._connected = False
        conf = {
            **_common(cfg),
            "group.id": cfg.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": cfg.auto_offset_reset,
            "session.timeout.ms": cfg.session_timeout_ms,
            "heartbeat.interval.ms": cfg.heartbeat_interval_ms,
            "max.poll.interval.ms": max(cfg.max_poll_interval_ms, cfg.session_timeout_ms),
            "max.partition.fetch.bytes": max(1_048_576, max_message_bytes * 2),
            "client.id": "visionmon",
            "error_cb": self._on_error,
            "logger": log,
        }
        self._c = lib.Consumer(conf)
        self._assigned: set[TopicPartition] = set()
        self._cluster_id: str | None = None

    def _on_error(self, err: Any) -> None:
        if err.code() in (ck.KafkaError._ALL_BROKERS_DOWN, ck.KafkaError._TRANSPORT):
            self._connected = False
        log.debug("librdkafka: %s", err)

    def subscribe(self, topics: Sequence[str], on_assign: AssignCallback,
                  on_revoke: AssignCallback) -> None:
        def assign(consumer: Any, parts: list[Any]) -> None:
            tps = [(p.topic, p.partition) for p in parts]
            self._assigned |= set(tps)
            on_assign(tps)

        def revoke(consumer: Any, parts: list[Any]) -> None:
            tps = [(p.topic, p.partition) for p in parts]
            on_revoke(tps)
            self._assigned -= set(tps)

        self._c.subscribe(list(topics), on_assign=assign, on_revoke=revoke, on_lost=revoke)

    def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        # librdkafka's consume(n, timeout) waits until n messages are in or the timeout
        # passes: with a backlog smaller than n, every poll would wait out the timeout. So
        # take what is queued without waiting; only when nothing is, wait for one message
        # and then take whatever came with it.
        msgs = self._c.consume(num_messages=max_records, timeout=0)
        if not msgs:
            first = self._c.poll(timeout_s)
            if first is None:
                return []
            msgs = [first]
            if max_records > 1:
                msgs.extend(self._c.consume(num_messages=max_records - 1, timeout=0))
        out: list[Record] = []
        append = out.append
        new = tuple.__new__  # a Record without NamedTuple's Python-level __new__
        for m in msgs:  # hot loop: ~2 µs per message, most of it in the client's accessors
            err = m.error()
            if err is not None:
                if err.code() == ck.KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise KafkaUnavailable(str(err))
                log.debug("consume error: %s", err)
                continue
            append(new(Record, (m.topic(), m.partition(), m.offset(), m.value(),
                                m.headers() or (), m.timestamp()[1])))
        if out:
            self._connected = True
        return out

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            self._c.commit(offsets=[ck.TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                           asynchronous=False)
        except ck.KafkaException as err:
            raise KafkaUnavailable(str(err)) from err

    def committed(self, tp: TopicPartition) -> int | None:
        try:
            (res,) = self._c.committed([ck.TopicPartition(*tp)], timeout=5)
        except ck.KafkaException as err:
            raise KafkaUnavailable(str(err)) from err
        return None if res.offset < 0 else int(res.offset)

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for t, p in tps:
            try:
                _, high = self._c.get_watermark_offsets(ck.TopicPartition(t, p), timeout=2,
                                                        cached=False)
            except ck.KafkaException as err:
                raise KafkaUnavailable(str(err)) from err
            out[(t, p)] = int(high)
        return out

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._assigned)

    def connected(self) -> bool:
        return self._connected

    def cluster_id(self) -> str | None:
        if self._cluster_id is None:  # one Metadata request, then remembered
            try:
                self._cluster_id = self._c.list_topics(timeout=2).cluster_id or None
            except ck.KafkaException as err:
                log.debug("cluster id unknown: %s", err)
        return self._cluster_id

    def close(self) -> None:
        try:
            self._c.close()
        except Exception as err:
            log.warning("kafka consumer close failed: %s", err)


class ConfluentProducer:
    def __init__(self, cfg: KafkaConfig, client_id: str) -> None:
        lib = _require()
        self._p = lib.Producer({**_common(cfg), "client.id": client_id, "linger.ms": 5,
                                "message.max.bytes": 16 * 1024 * 1024, "logger": log})

    def send(self, topic: str, value: bytes, headers: Headers = (),
             key: bytes | None = None, partition: int | None = None) -> None:
        kwargs: dict[str, Any] = {"value": value, "key": key,
                                  "headers": [(k, v or b"") for k, v in headers]}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._p.produce(topic, **kwargs)
                break
            except BufferError:
                self._p.poll(0.1)  # local queue full: serve delivery reports, then retry
        self._p.poll(0)

    def flush(self, timeout_s: float = 10.0) -> None:
        self._p.flush(timeout_s)

    def close(self) -> None:
        self._p.flush(5)
