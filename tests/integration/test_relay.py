"""The relay on the real broker: order, no loss across SIGKILL and an emptied broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer

from adapters.driven.embedded.tansu import EmbeddedKafka
from adapters.driven.kafka.publishers import Client
from adapters.driven.kafka.topics import (
    EVENT_TOPIC_BY_KIND,
    NOTIFICATIONS,
    RELAY_EPOCH,
    topic_specs,
)
from adapters.driven.relay import Relay, lag
from domain.application import ReturnsService
from domain.commands import RequestReturn
from domain.returns import RequestedLine
from domain.values import ReasonCode
from tests.integration.builders import ctx, delivered_order, place_orders_in_batches

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
# Every aggregate kind's topic: what the relay publishes is what this test reads back.
EVENT_TOPICS = sorted(set(EVENT_TOPIC_BY_KIND.values()))


def read_all(bootstrap: str, topics: list[str], expected: int, timeout: float = 60) -> list[dict]:
    """Every record of the topics from the beginning, until ``expected`` distinct ids arrive."""
    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        consumer_timeout_ms=2000,
    )
    records: list[dict] = []
    ids: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(ids) < expected and time.monotonic() < deadline:
            for message in consumer:
                record = orjson.loads(message.value)
                records.append(record)
                ids.add(record["id"])
    finally:
        consumer.close()
    return records


def stored_ids(database_url: str, after: int = 0) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version FROM oms_events WHERE notification_id > %s",
            [after],
        ).fetchall()
    return {f"{aggregate}:{version}" for aggregate, version in rows}


def lowest_consumer_position(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT min(notification_id) FROM oms_consumer_positions").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def assert_in_order_per_aggregate(records: list[dict]) -> None:
    seen: set[str] = set()
    last: dict[str, int] = defaultdict(int)
    for record in records:
        if record["id"] in seen:
            continue  # a redelivered tail: consumers dedupe on id
        seen.add(record["id"])
        aggregate, version = record["data"]["aggregate_id"], record["data"]["version"]
        assert version == last[aggregate] + 1, f"{aggregate} jumped to {version}"
        last[aggregate] = version


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    broker = EmbeddedKafka(tmp_path / "tansu").start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_every_stored_event_reaches_its_topic_in_order_with_notifications(
    service: ReturnsService, database_url: str, fresh_broker: EmbeddedKafka, client: Client
) -> None:
    number = delivered_order(service)
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=number,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_SMALL),),
        ),
    )
    relay = Relay(
        database_url,
        fresh_broker.bootstrap,
        topic_specs=topic_specs(2),
        name=f"relay-{uuid.uuid4().hex[:6]}",
        client=client,
    )
    try:
        while relay.run_once():
            pass
    finally:
        relay.close()
    expected = stored_ids(database_url)
    records = read_all(fresh_broker.bootstrap, EVENT_TOPICS, len(expected))
    assert {r["id"] for r in records} == expected
    assert_in_order_per_aggregate(records)
    authorized = [
        r
        for r in records
        if r["type"] == "rma.authorized" and r["data"]["aggregate_id"] == str(rma.aggregate_id)
    ]
    assert authorized[0]["data"]["rma_number"] == rma.rma_number
    assert authorized[0]["source"] == "oms/return" and authorized[0]["specversion"] == "1.0"
    notices = read_all(fresh_broker.bootstrap, [NOTIFICATIONS], 1, timeout=10)
    assert any(
        n["data"].get("rma_number") == rma.rma_number
        and n["type"] == "notification.return_authorized"
        for n in notices
    )


def test_a_relay_killed_mid_batch_and_restarted_leaves_no_gap(
    service: ReturnsService, database_url: str, fresh_broker: EmbeddedKafka, tmp_path: Path
) -> None:
    place_orders_in_batches(service, orders=3000, batch=500)
    name = f"relay-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "OMS_DATABASE_URL": database_url,
        "OMS_KAFKA_BOOTSTRAP": fresh_broker.bootstrap,
        "OMS_DATA_DIR": str(tmp_path),
        "OMS_TOPIC_PARTITIONS": "2",
        "OMS_RELAY_NAME": name,
    }
    command = [
        sys.executable,
        "-m",
        "adapters.driving.cli",
        "relay",
        "--batch-size",
        "200",
        "--name",
        name,
    ]
    first = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 60
        while lag(database_url, name)["relayed"] < 1000 and time.monotonic() < deadline:
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)  # mid-stream: batches of 200 go out every few ms
        first.wait(10)
        killed_at = lag(database_url, name)
        assert 0 < killed_at["relayed"] < killed_at["head"], killed_at
    finally:
        if first.poll() is None:
            first.kill()
    second = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 90
        while lag(database_url, name)["lag"] > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lag(database_url, name)["lag"] == 0
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    assert second.returncode == 0
    expected = stored_ids(database_url)
    records = read_all(fresh_broker.bootstrap, EVENT_TOPICS, len(expected))
    assert {r["id"] for r in records} >= expected
    assert_in_order_per_aggregate(records)


@contextmanager
def relay_in_a_thread(
    database_url: str, bootstrap: str, *, epoch_check_s: float
) -> Iterator[Relay]:
    relay = Relay(
        database_url,
        bootstrap,
        topic_specs=topic_specs(2),
        name=f"relay-{uuid.uuid4().hex[:6]}",
        epoch_check_s=epoch_check_s,
    )
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        stop.set()
        thread.join(20)
        relay.close()


def wait_relayed(database_url: str, relay: Relay, *, epochs: int, timeout: float) -> None:
    """Until the relay has published everything stored, in its ``epochs``-th broker epoch."""
    deadline = time.monotonic() + timeout
    while (lag(database_url, relay.name)["lag"] > 0 or len(relay.stats.epochs) < epochs) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)


def test_a_broker_that_comes_back_empty_is_refilled(
    service: ReturnsService, database_url: str, fresh_broker: EmbeddedKafka
) -> None:
    with relay_in_a_thread(database_url, fresh_broker.bootstrap, epoch_check_s=0.2) as relay:
        delivered_order(service)
        wait_relayed(database_url, relay, epochs=1, timeout=30)
        low = lowest_consumer_position(database_url)
        fresh_broker.restart()  # memory storage: every topic and offset is gone
        number = delivered_order(service)
        wait_relayed(database_url, relay, epochs=2, timeout=60)
        assert len(relay.stats.epochs) == 2
    # Everything after the lowest position a consumer recorded was republished (the whole
    # log if none had): exactly what the emptied broker now holds.
    expected = stored_ids(database_url, after=low)
    records = read_all(fresh_broker.bootstrap, EVENT_TOPICS, len(expected))
    assert {r["id"] for r in records} == expected
    assert any(r["data"].get("order_number") == number for r in records)


@pytest.mark.timeout(240)
def test_a_broker_restart_is_caught_before_the_next_batch_though_the_marker_topic_reappears(
    service: ReturnsService, database_url: str, fresh_broker: EmbeddedKafka
) -> None:
    # Idle checks never come due here: only the check before each batch can see it.
    with relay_in_a_thread(database_url, fresh_broker.bootstrap, epoch_check_s=3600) as relay:
        delivered_order(service)
        wait_relayed(database_url, relay, epochs=1, timeout=60)
        low = lowest_consumer_position(database_url)
        fresh_broker.restart()
        # A client's metadata request auto-creates the marker topic on the new broker, empty
        # and with Tansu's 4 partitions, before the relay looks again (as its own producer
        # did when it could auto-create topics).
        probe = KafkaProducer(bootstrap_servers=fresh_broker.bootstrap)
        assert probe.partitions_for(RELAY_EPOCH)
        probe.close()
        restarted = time.monotonic()
        number = delivered_order(service)
        wait_relayed(database_url, relay, epochs=2, timeout=90)
        recovered_after = time.monotonic() - restarted
        assert len(relay.stats.epochs) == 2
        # Promptly: no client waits out a long timeout or backoff on the dead connection.
        assert recovered_after < 15, recovered_after
    expected = stored_ids(database_url, after=low)
    records = read_all(fresh_broker.bootstrap, EVENT_TOPICS, len(expected))
    assert {r["id"] for r in records} == expected
    assert any(r["data"].get("order_number") == number for r in records)
