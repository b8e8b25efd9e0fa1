"""Poison inbound messages never stop a topic (issue 9).

Each test runs the integrations worker as operators do (``python -m streams.worker``) on a
broker and a database of its own: some of these tests stop or break the worker on purpose,
which must not disturb the session-wide system the other end-to-end tests share.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from psycopg import sql

from adapters.driven.embedded.tansu import EmbeddedKafka
from adapters.driven.eventstore import create_service
from adapters.driven.kafka.provisioning import provision_topics
from adapters.driven.kafka.topics import ORDERS, dlq, topic_specs
from domain.application import ReturnsService
from streams.worker import WorkerProcess
from tests.e2e.builders import eventually
from tests.integration import builders as m
from tests.integration.builders import fresh_database

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2
BIG_REQUESTS = 16 * 1024 * 1024  # the test producer's limit: Tansu takes at least 8 MiB


@dataclass
class Stack:
    bootstrap: str
    database_url: str
    service: ReturnsService
    workdir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def worker(self, **env: str) -> WorkerProcess:
        environ = {
            **os.environ,
            "OMS_DATABASE_URL": self.database_url,
            "OMS_KAFKA_BOOTSTRAP": self.bootstrap,
            "OMS_DATA_DIR": str(self.workdir / "data"),
            "OMS_TOPIC_PARTITIONS": str(PARTITIONS),
            **env,
        }
        worker = WorkerProcess(
            "streams.integrations:app_from_env",
            workdir=self.workdir / f"worker-{len(self.workers)}",
            env=environ,
            cwd=ROOT,
        )
        self.workers.append(worker)
        return worker.start()


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    with EmbeddedKafka(tmp_path / "tansu") as broker:
        provision_topics(broker.bootstrap, topic_specs(PARTITIONS))
        url = fresh_database(database_url, "poison")
        service = create_service(url, pool_size=2)
        stack = Stack(broker.bootstrap, url, service, tmp_path)
        try:
            yield stack
        finally:
            for worker in stack.workers:
                if worker.is_running():
                    worker.kill()
            service.close()


def publish(bootstrap: str, values: list[bytes], key: bytes) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=BIG_REQUESTS
    )
    try:
        for value in values:
            producer.send(ORDERS, key=key, value=value)
        producer.flush(30)
    finally:
        producer.close()


def dead_letters(bootstrap: str) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=1500,
        fetch_max_wait_ms=50,
    )
    try:
        assigned = [TopicPartition(dlq(ORDERS), p) for p in range(PARTITIONS)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        return list(consumer)
    finally:
        consumer.close()


def placed(service: ReturnsService, order_id: str) -> bool:
    try:
        service.order_view(order_id)
        return True
    except Exception:
        return False


def health(worker: WorkerProcess) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads((worker.workdir / "worker.health").read_text())
        return document
    except FileNotFoundError:
        return {}


def test_an_oversized_message_goes_to_the_dlq_truncated_and_the_topic_goes_on(
    stack: Stack,
) -> None:
    worker = stack.worker()
    worker.wait_ready(90)
    run = uuid.uuid4().hex[:6]
    first, after = f"BIG-A-{run}", f"BIG-B-{run}"
    # 1.5 MiB: more than the worker's producer takes (1 MB), less than Tansu refuses.
    huge = m.cloud_event(
        "order.placed", {"order_id": f"BIG-{run}", "pad": "x" * 1_572_864}, source="commerce/web"
    )
    # One key: one partition, so the order after it proves the partition moved on.
    publish(stack.bootstrap, [m.order_placed(first), huge, m.order_placed(after)], key=b"big")

    eventually(lambda: placed(stack.service, after), 90, "the order after the oversized one")
    assert placed(stack.service, first)
    [letter] = eventually(lambda: dead_letters(stack.bootstrap), 30, "the dead letter")
    headers = dict(letter.headers)
    assert headers["x-dlq-error-code"] == b"oversized"
    assert headers["x-dlq-truncated"] == b"true"
    assert headers["x-dlq-original-size"] == str(len(huge)).encode()
    assert headers["x-dlq-original-sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert letter.value == huge[: 64 * 1024]
    assert letter.key == b"big"
    assert worker.terminate(timeout=30) == 0


def test_a_dead_letter_the_producer_refuses_fails_the_worker_loudly_and_acks_nothing(
    stack: Stack,
) -> None:
    worker = stack.worker(OMS_DLQ_PUBLISH_ATTEMPTS="3")
    worker.wait_ready(90)
    # Written when the first rebalance completes, which may come just after "ready".
    eventually(lambda: health(worker).get("status") == "ok", 60, "the health file to say ok")
    # Invalid JSON under a key too big for any producer: its dead letter cannot be published.
    publish(stack.bootstrap, [b"{not json"], key=b"k" * 1_100_000)

    eventually(lambda: not worker.is_running(), 120, "the worker to give up and exit")
    assert worker.terminate() != 0
    state = health(worker)
    assert state["status"] == "failed"
    assert "dead letter" in state["reason"]
    assert "CRITICAL" in worker.log_tail(100_000)
    assert dead_letters(stack.bootstrap) == []

    # Never acked: a restarted worker meets the same message, and fails the same way.
    again = stack.worker(OMS_DLQ_PUBLISH_ATTEMPTS="1")
    eventually(lambda: not again.is_running(), 120, "the restarted worker to give up too")
    assert health(again)["status"] == "failed"


def test_a_worker_retrying_its_dead_letters_stops_on_sigterm(stack: Stack) -> None:
    worker = stack.worker(OMS_DLQ_PUBLISH_ATTEMPTS="1000")
    worker.wait_ready(90)
    publish(stack.bootstrap, [b"{not json"], key=b"k" * 1_100_000)
    eventually(lambda: "could not publish" in worker.log_tail(100_000), 60, "a failed publication")
    started = time.monotonic()
    worker.terminate(timeout=30)  # raises if SIGTERM was ignored for 30 s
    assert time.monotonic() - started < 30


def test_values_no_store_can_hold_are_dead_lettered_alone_and_their_batch_is_applied(
    stack: Stack,
) -> None:
    worker = stack.worker()
    worker.wait_ready(90)
    run = uuid.uuid4().hex[:6]
    orders = [f"OK-{run}-{n}" for n in range(60)]

    def placed_with(**changes: Any) -> bytes:
        document = orjson.loads(m.order_placed(f"BAD-{uuid.uuid4().hex[:8]}"))
        envelope_time = changes.pop("time", None)
        if envelope_time:
            document["time"] = envelope_time
        document["data"] |= changes
        return orjson.dumps(document)

    line = orjson.loads(m.order_placed("x"))["data"]["lines"][0]
    poisons = {
        # PostgreSQL text cannot hold NUL: let through, it failed the whole batch's commit.
        m.order_placed(f"NUL-{run}\u0000"): b"invalid_data",
        placed_with(lines=[{**line, "line_no": 10**19}]): b"invalid_data",
        placed_with(placed_at="9999-12-31T00:00:00Z"): b"invalid_data",
        placed_with(time="0001-01-01T00:00:00+05:00"): b"invalid_envelope",
    }
    values = [m.order_placed(o) for o in orders[:20]] + list(poisons)[:2]
    values += [m.order_placed(o) for o in orders[20:40]] + list(poisons)[2:]
    values += [m.order_placed(o) for o in orders[40:]]
    publish(stack.bootstrap, values, key=b"one-partition")

    for order_id in orders:
        eventually(lambda o=order_id: placed(stack.service, o), 90, order_id)
    letters = eventually(
        lambda: (found := dead_letters(stack.bootstrap)) and len(found) >= len(poisons) and found,
        30,
        "the dead letters",
    )
    assert {letter.value: dict(letter.headers)["x-dlq-error-code"] for letter in letters} == (
        poisons
    )
    assert len(letters) == len(poisons)
    for order_id in orders:  # applied exactly once
        assert stack.service.get_order(order_id).version == 1
    assert worker.terminate(timeout=30) == 0


def test_an_unreachable_database_dead_letters_nothing_and_the_batch_waits_for_it(
    stack: Stack, database_url: str
) -> None:
    worker = stack.worker()
    worker.wait_ready(90)
    name = stack.database_url.rsplit("/", 1)[1]
    run = uuid.uuid4().hex[:6]
    orders = [f"WAIT-{run}-{n}" for n in range(20)]
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        try:
            publish(stack.bootstrap, [m.order_placed(o) for o in orders], key=b"waiting")
            # Before the fix, three failed attempts (1.5 s) dead-lettered the whole batch:
            # a fourth failure with nothing dead-lettered shows the batch waits. (Each
            # attempt after the third waits about 30 s for a connection: more cost minutes.)
            eventually(
                lambda: (
                    dead_letters(stack.bootstrap)
                    or worker.log_tail(200_000).count("handler failed") >= 4
                ),
                90,
                "the worker to meet the unreachable database a few times",
            )
            assert dead_letters(stack.bootstrap) == []
        finally:
            admin.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name))
            )
    checker = create_service(stack.database_url, pool_size=2)  # the old pool was cut off
    try:
        for order_id in orders:
            eventually(lambda o=order_id: placed(checker, o), 120, order_id)
            assert checker.get_order(order_id).version == 1
    finally:
        checker.close()
    assert dead_letters(stack.bootstrap) == []
    assert worker.terminate(timeout=30) == 0


def test_a_worker_waiting_for_the_database_stops_on_sigterm(
    stack: Stack, database_url: str
) -> None:
    # A guard for the endless retry above: an outage must not make the worker deaf.
    worker = stack.worker()
    worker.wait_ready(90)
    name = stack.database_url.rsplit("/", 1)[1]
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        try:
            publish(stack.bootstrap, [m.order_placed(f"STOP-{uuid.uuid4().hex[:6]}")], b"stop")
            eventually(
                lambda: "retrying until it is back" in worker.log_tail(200_000),
                90,
                "the worker to retry the unreachable database",
            )
            started = time.monotonic()
            worker.terminate(timeout=30)  # raises if SIGTERM was ignored for 30 s
            assert time.monotonic() - started < 30
        finally:
            admin.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name))
            )
    assert dead_letters(stack.bootstrap) == []
