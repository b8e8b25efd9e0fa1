"""Builders for end-to-end tests: the running system, publishing as outside systems do,
reading what we publish, and waiting on conditions with generous deadlines."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from adapters.driven.kafka.topics import ORDERS, RMA_EVENTS
from domain.application import ReturnsService
from streams.worker import WorkerProcess
from tests.integration import builders as m


@dataclass
class System:
    database_url: str
    bootstrap: str
    service: ReturnsService
    worker: WorkerProcess
    projections: WorkerProcess


def publish(bootstrap: str, topic: str, values: list[bytes], key: bytes | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for value in values:
            producer.send(topic, key=key, value=value)
        producer.flush(30)
    finally:
        producer.close()


def eventually(check: Callable[[], Any], timeout: float = 150, what: str = "") -> Any:
    # Generous by default: on a loaded 2-core machine a message crosses the relay, Kafka and
    # two workers, and each stage waits for CPU; a condition met early returns at once.
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Everything on a topic, read by assigning partitions (no group join to wait for)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=1500,
        fetch_max_wait_ms=50,
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        return list(consumer)
    finally:
        consumer.close()


def rma_events(system: System, return_id: uuid.UUID) -> list[str]:
    records = [orjson.loads(r.value) for r in read_topic(system.bootstrap, RMA_EVENTS)]
    mine = [r for r in records if r["data"]["aggregate_id"] == str(return_id)]
    seen: dict[str, str] = {}
    for record in mine:
        seen.setdefault(record["id"], record["type"])
    return list(seen.values())


def delivered_web_order(system: System, customer_id: str | None = None) -> str:
    order_id = f"WEB-{uuid.uuid4().hex[:8]}"
    publish(
        system.bootstrap,
        ORDERS,
        [
            m.order_placed(order_id, customer_id=customer_id),
            m.order_fulfilled(order_id),
            m.order_delivered(order_id),
        ],
        key=order_id.encode(),
    )
    eventually(lambda: _delivered(system, order_id), what=f"{order_id} delivered")
    return order_id


def _delivered(system: System, order_id: str) -> bool:
    try:
        return system.service.order_view(order_id)["delivered_at"] is not None
    except Exception:
        return False


def rma_events_eventually(system: System, return_id: uuid.UUID) -> list[str]:
    result: list[str] = eventually(lambda: rma_events(system, return_id), what="relayed events")
    return result
