"""Producers behind one port: send a batch, return only when the broker acknowledged all.

kafka-python spends ~80 µs of CPU per message here, which caps the relay near 10k events/s
on one core; librdkafka (confluent-kafka) does the same work in C. Both are idempotent
(acks=all) and both partition keys with murmur2, the Java client's hash, so switching
clients never moves a key to another partition (per-key order survives a switch).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from kafka import KafkaProducer

Client = Literal["confluent", "kafka-python"]


class PublishError(RuntimeError):
    """Some record was not acknowledged: nothing of the batch may count as published."""


class Record(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def key(self) -> bytes: ...

    @property
    def value(self) -> bytes: ...


class Publisher(Protocol):
    def publish(self, records: Sequence[Record]) -> None: ...

    def close(self) -> None: ...


def default_producer(bootstrap: str) -> KafkaProducer:
    """kafka-python with the relay's settings (also the benchmarks' raw baseline)."""
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        batch_size=512 * 1024,
        max_request_size=8 * 1024 * 1024,
        request_timeout_ms=15000,
        retry_backoff_ms=100,
        # Topics are provisioned with their partition counts; an auto-created one (Tansu
        # gives it 4) would also hide from the relay that the broker lost its memory.
        allow_auto_create_topics=False,
        reconnect_backoff_max_ms=1000,
    )


class KafkaPythonPublisher:
    def __init__(self, bootstrap: str) -> None:
        self._producer = default_producer(bootstrap)

    def publish(self, records: Sequence[Record]) -> None:
        futures = [self._producer.send(r.topic, key=r.key, value=r.value) for r in records]
        self._producer.flush(timeout=30)
        for future in futures:
            if not future.is_done:
                raise PublishError("a send did not complete within the flush timeout")
            if future.failed():
                raise PublishError(str(future.exception)) from future.exception

    def close(self) -> None:
        self._producer.close(timeout=2)


class ConfluentPublisher:
    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "partitioner": "murmur2_random",
                "queue.buffering.max.messages": 1_000_000,
                "message.max.bytes": 8 * 1024 * 1024,
                # See default_producer: provisioned topics only.
                "allow.auto.create.topics": False,
                # librdkafka backs off up to 10 s between reconnections by default: after
                # a broker restart the first publish waited that long, then its flush.
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
                "socket.connection.setup.timeout.ms": 10000,
                "topic.metadata.refresh.interval.ms": 5000,
                "error_cb": self._failed,
            }
        )
        self._errors: list[str] = []
        self._fatal: str | None = None

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self._errors.append(str(error))

    def _failed(self, error: Any) -> None:
        # An idempotent producer whose broker lost its state fails for good (a fatal
        # error): flushing on would only wait out the timeout. Reported at once instead.
        if error.fatal():
            self._fatal = str(error)

    def publish(self, records: Sequence[Record]) -> None:
        self._errors = []
        for record in records:
            while True:
                try:
                    self._producer.produce(
                        record.topic,
                        value=record.value,
                        key=record.key,
                        on_delivery=self._delivered,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)  # the local queue is full: let it drain
        deadline = time.monotonic() + 30
        remaining = self._producer.flush(0.2)
        while remaining and self._fatal is None and time.monotonic() < deadline:
            remaining = self._producer.flush(0.2)
        if self._fatal is not None:
            raise PublishError(f"the producer failed for good: {self._fatal}")
        if remaining:
            raise PublishError(f"{remaining} records not acknowledged within 30 s")
        if self._errors:
            raise PublishError(f"{len(self._errors)} records failed: {self._errors[0]}")

    def close(self) -> None:
        self._producer.flush(2)


def publisher_for(client: Client, bootstrap: str) -> Publisher:
    if client == "confluent":
        return ConfluentPublisher(bootstrap)
    return KafkaPythonPublisher(bootstrap)
