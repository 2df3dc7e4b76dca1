"""kafka-python backend (pure Python; the default)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.subscription_state import ConsumerRebalanceListener

try:  # kafka-python >= 3 runs rebalance listeners on its IO thread
    from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
except ImportError:  # pragma: no cover - kafka-python 2.x calls them inside poll()
    AsyncConsumerRebalanceListener = None
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KTP

from collectors.kafka.client import (
    AssignCallback,
    Headers,
    KafkaUnavailable,
    Record,
    TopicPartition,
    security_settings,
)
from monitor.config import KafkaConfig

log = logging.getLogger(__name__)

#: a blocking call (commit, committed, end offsets, close) waits at most this long, so a
#: broker that vanishes mid-call cannot stall the consumer loop for the client's 30 s
#: request timeout
REQUEST_TIMEOUT_MS = 5000
_END_OFFSETS_TIMEOUT = "timeout_ms" in inspect.signature(KafkaConsumer.end_offsets).parameters


def _common(cfg: KafkaConfig) -> dict[str, Any]:
    sec = security_settings(cfg)
    out: dict[str, Any] = {"bootstrap_servers": list(cfg.bootstrap_servers),
                           "security_protocol": sec["security_protocol"]}
    if "sasl_mechanism" in sec:
        out.update(sasl_mechanism=sec["sasl_mechanism"],
                   sasl_plain_username=sec["sasl_username"],
                   sasl_plain_password=sec["sasl_password"])
    if "ssl_cafile" in sec:
        out.update(ssl_cafile=sec["ssl_cafile"], ssl_certfile=sec["ssl_certfile"],
                   ssl_keyfile=sec["ssl_keyfile"], ssl_password=sec["ssl_password"])
    return out


def _tps(parts: Any) -> list[TopicPartition]:
    return [(tp.topic, tp.partition) for tp in parts]


class _Listener(ConsumerRebalanceListener):
    """kafka-python 2.x: callbacks run inside poll() on the caller's thread."""

    def __init__(self, owner: KafkaPythonConsumer, on_assign: AssignCallback,
                 on_revoke: AssignCallback) -> None:
        self._on_assign = on_assign
        self._on_revoke = on_revoke

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._on_revoke(_tps(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._on_assign(_tps(assigned))


if AsyncConsumerRebalanceListener is not None:

    class _AsyncListener(AsyncConsumerRebalanceListener):  # type: ignore[misc,valid-type]
        """kafka-python 3.x: callbacks run on the client's IO thread, where a blocking
        commit fails ("Cannot block on net.run() from the IO thread"). Commits the revoke
        callback asks for are sent asynchronously and awaited here, so the offsets are
        stored before the group hands the partitions to another member."""

        def __init__(self, owner: KafkaPythonConsumer, on_assign: AssignCallback,
                     on_revoke: AssignCallback) -> None:
            self._owner = owner
            self._on_assign = on_assign
            self._on_revoke = on_revoke

        async def on_partitions_revoked(self, revoked: Any) -> None:
            self._owner._deferred = []
            try:
                self._on_revoke(_tps(revoked))
            finally:
                pending, self._owner._deferred = self._owner._deferred, None
            for future in pending:
                try:
                    await future
                except Exception as err:
                    log.warning("offset commit on partition revocation failed: %s", err)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            self._on_assign(_tps(assigned))


class KafkaPythonConsumer:
    def __init__(self, cfg: KafkaConfig, max_message_bytes: int) -> None:
        self._c = KafkaConsumer(
            group_id=cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset=cfg.auto_offset_reset,
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=cfg.heartbeat_interval_ms,
            max_poll_interval_ms=cfg.max_poll_interval_ms,
            max_partition_fetch_bytes=max(1_048_576, max_message_bytes * 2),
            client_id="visionmon",
            reconnect_backoff_max_ms=5000,
            **_common(cfg),
        )
        #: commits requested from inside an IO-thread revoke callback (kafka-python 3.x)
        self._deferred: list[Any] | None = None

    def subscribe(self, topics: Sequence[str], on_assign: AssignCallback,
                  on_revoke: AssignCallback) -> None:
        cls = _Listener if AsyncConsumerRebalanceListener is None else _AsyncListener
        self._c.subscribe(list(topics), listener=cls(self, on_assign, on_revoke))

    def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        try:
            batch = self._c.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as err:
            raise KafkaUnavailable(str(err)) from err
        out: list[Record] = []
        for tp, msgs in batch.items():
            for m in msgs:
                out.append(Record(tp.topic, tp.partition, m.offset, m.value,
                                  tuple(m.headers or ()), m.timestamp))
        return out

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        points = {KTP(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
        if self._deferred is not None:  # inside a revoke callback on the IO thread
            self._deferred.append(self._c.commit_async(points))
            return
        try:
            self._c.commit(points, timeout_ms=REQUEST_TIMEOUT_MS)
        except KafkaError as err:
            raise KafkaUnavailable(str(err)) from err

    def committed(self, tp: TopicPartition) -> int | None:
        try:
            value = self._c.committed(KTP(*tp), timeout_ms=REQUEST_TIMEOUT_MS)
        except KafkaError as err:
            raise KafkaUnavailable(str(err)) from err
        return None if value is None else int(value)

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        try:
            parts = [KTP(*tp) for tp in tps]
            ends = (self._c.end_offsets(parts, timeout_ms=REQUEST_TIMEOUT_MS)
                    if _END_OFFSETS_TIMEOUT else self._c.end_offsets(parts))
        except KafkaError as err:
            raise KafkaUnavailable(str(err)) from err
        return {(tp.topic, tp.partition): int(o) for tp, o in ends.items()}

    def assignment(self) -> list[TopicPartition]:
        return [(tp.topic, tp.partition) for tp in self._c.assignment()]

    def connected(self) -> bool:
        return bool(self._c.bootstrap_connected()) or bool(self._c.assignment())

    def cluster_id(self) -> str | None:
        # kafka-python keeps the id of the last Metadata response; it has no public accessor
        cluster = getattr(getattr(self._c, "_client", None), "cluster", None)
        value = getattr(cluster, "cluster_id", None)
        return str(value) if value else None

    def close(self) -> None:
        try:
            # bounded: with the broker gone, leaving the group would wait 30 s
            self._c.close(autocommit=False, timeout_ms=REQUEST_TIMEOUT_MS)
        except Exception as err:  # closing must never mask the shutdown path
            log.warning("kafka consumer close failed: %s", err)


class KafkaPythonProducer:
    def __init__(self, cfg: KafkaConfig, client_id: str) -> None:
        self._p = KafkaProducer(client_id=client_id, linger_ms=5,
                                max_request_size=16 * 1024 * 1024, **_common(cfg))

    def send(self, topic: str, value: bytes, headers: Headers = (),
             key: bytes | None = None, partition: int | None = None) -> None:
        self._p.send(topic, value=value, key=key, partition=partition,
                     headers=[(k, v if v is not None else b"") for k, v in headers])

    def flush(self, timeout_s: float = 10.0) -> None:
        self._p.flush(timeout=timeout_s)

    def close(self) -> None:
        self._p.close(timeout=5)
