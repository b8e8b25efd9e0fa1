"""The embedded broker killed under load and restarted empty: the read models converge to
the event store by themselves, and later orders are projected.

A database and a Tansu of its own (the broker is restarted here), the relay in a thread,
the integrations and projections workers in their own processes, outside systems
publishing orders, fulfilments, deliveries, store returns and stock counts throughout, and
refunds requested before and after the restart.
Inbound messages the broker acknowledged but the workers had not stored yet are lost with
it (README, Operations): what must hold is that every read model equals a replay of the
event store, whatever it holds, with no manual step, and that every refund ends settled or
failed (none left pending: the integrations worker re-sends what the broker lost).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaProducer

from adapters.driven.embedded.tansu import EmbeddedKafka
from adapters.driven.eventstore import create_service
from adapters.driven.kafka.provisioning import provision_topics
from adapters.driven.kafka.topics import ORDERS, POS_RETURNS, WMS_RECEIPTS, topic_specs
from adapters.driven.readmodels.positions import projection_lag
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driven.relay import Relay, lag
from adapters.driving.demo.report import rebuild_check
from domain.application import ReturnsService
from projections import default_projections
from streams.worker import WorkerProcess
from tests.e2e.builders import eventually
from tests.integration import builders as m
from tests.integration.builders import (
    fresh_database,
    place_orders_in_batches,
    requested_refunds,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
# Tansu's count for the topics it auto-creates (and our default): outside publishers sending
# to the restarted broker before the relay provisioned it create the inbound topics.
PARTITIONS = 4
RELAY = "broker-loss"
BURST = 20_000


@dataclass
class Stack:
    database_url: str
    broker: EmbeddedKafka
    service: ReturnsService
    relay: Relay
    integrations: WorkerProcess
    projections: WorkerProcess


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    url = fresh_database(database_url, "broker_loss")
    broker = EmbeddedKafka(tmp_path / "tansu").start()
    provision_topics(broker.bootstrap, topic_specs(PARTITIONS))
    service = create_service(url, pool_size=2)
    relay = Relay(url, broker.bootstrap, topic_specs=topic_specs(PARTITIONS), name=RELAY)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    env = {
        **os.environ,
        "OMS_DATABASE_URL": url,
        "OMS_KAFKA_BOOTSTRAP": broker.bootstrap,
        "OMS_DATA_DIR": str(tmp_path / "data"),
        "OMS_TOPIC_PARTITIONS": str(PARTITIONS),
        # Short, so refunds whose request or settlement the broker lost are re-sent in time.
        "OMS_REFUND_RESEND_AFTER_S": "4",
        "OMS_SANDBOX_SETTLEMENT_DELAY_S": "0.5",
    }
    integrations = WorkerProcess(
        "streams.integrations:app_from_env", workdir=tmp_path / "integrations", env=env, cwd=ROOT
    ).start()
    projections = WorkerProcess(
        "streams.projectors:app_from_env", workdir=tmp_path / "projections", env=env, cwd=ROOT
    ).start()
    try:
        integrations.wait_ready(timeout=120)
        projections.wait_ready(timeout=120)
        yield Stack(url, broker, service, relay, integrations, projections)
    finally:
        projections.terminate()
        integrations.terminate()
        stop.set()
        thread.join(20)
        relay.close()
        service.close()
        broker.stop()


@dataclass
class Load:
    """Outside systems publishing until told to stop; a send the broker refused (it is
    down) is simply lost, as it would be for a publisher that does not retry."""

    bootstrap: str
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    refused: int = 0

    def run(self) -> None:
        round_ = 0
        while not self.stop.is_set():
            round_ += 1
            self.publish_round(round_)

    def publish_round(self, round_: int) -> None:
        records: list[tuple[str, bytes, bytes]] = []
        for index in range(10):
            order = f"LOSS-{round_}-{index}-{uuid.uuid4().hex[:6]}"
            key = order.encode()
            records += [
                (ORDERS, key, m.order_placed(order)),
                (ORDERS, key, m.order_fulfilled(order)),
                (ORDERS, key, m.order_delivered(order)),
            ]
            if index % 3 == 0:
                records.append((POS_RETURNS, b"STORE-3", m.store_return(order, f"SR-{order}")))
        records.append((WMS_RECEIPTS, b"count", stock_counted(round_)))
        try:
            producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                linger_ms=5,
                max_block_ms=3000,
                request_timeout_ms=5000,
                # Until the relay provisioned them again, the topics are missing: an
                # auto-created one would get Tansu's 4 partitions.
                allow_auto_create_topics=False,
            )
        except Exception:
            self.refused += len(records)
            self.stop.wait(0.5)
            return
        try:
            futures = [producer.send(t, key=k, value=v) for t, k, v in records]
            producer.flush(10)
            for future in futures:
                if future.succeeded():
                    self.sent += 1
                else:
                    self.refused += 1
        except Exception:
            self.refused += len(records)
        finally:
            producer.close(timeout=2)
        self.stop.wait(0.1)


def stock_counted(round_: int) -> bytes:
    return m.cloud_event(
        "stock.counted",
        {
            "sku": f"LOSS-SKU-{round_ % 60}",
            "location_id": "WH-1",
            "quantity": round_,
            "count_id": f"count-{round_}",
        },
        source="wms/WH-1",
    )


def caught_up(stack: Stack) -> bool:
    if lag(stack.database_url, RELAY)["lag"] > 0:
        return False
    with ReadModelStore(stack.database_url) as store:
        return all(
            projection_lag(store.connection, p)["events_behind"] == 0 for p in default_projections()
        )


def stored_orders(stack: Stack) -> int:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM oms_orders").fetchone()
    return int(row[0]) if row else 0


def bulk_orders(stack: Stack) -> int:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute("SELECT orders FROM rm_customers WHERE customer_id = 'bulk'").fetchone()
    return int(row[0]) if row else 0


def projected(stack: Stack, order: str) -> bool:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "SELECT orders FROM rm_customers WHERE customer_id = %s", [f"cust-{order}"]
        ).fetchone()
    return bool(row and row[0] == 1)


def refunds_pending(stack: Stack, refund_ids: list[str]) -> list[str]:
    """The refunds the event store still holds as requested (neither settled nor failed)."""
    pending = []
    for refund_id in refund_ids:
        return_id = stack.service.lookups.return_id_for_refund(refund_id)
        assert return_id is not None
        if stack.service.get_return(return_id).state.refunds[refund_id].status == "requested":
            pending.append(refund_id)
    return pending


def converged(stack: Stack) -> bool:
    # The cheap condition first: a replay is compared only once nothing is behind.
    return caught_up(stack) and rebuild_check(stack.database_url) == []


def test_a_broker_restarted_empty_under_load_leaves_read_models_equal_to_the_store(
    stack: Stack,
) -> None:
    load = Load(stack.broker.bootstrap)
    publisher = threading.Thread(target=load.run, daemon=True)
    publisher.start()
    try:
        # Several hundred messages in, and projected, before the broker goes.
        eventually(lambda: load.sent >= 400, timeout=180, what="400 inbound messages sent")
        eventually(lambda: stored_orders(stack) >= 100, timeout=180, what="100 orders stored")
        eventually(lambda: caught_up(stack), timeout=180, what="the projections to catch up")
        # Refunds on their way to the provider, or their settlements on their way back.
        refund_ids = requested_refunds(stack.service, 10)
        # A burst stored meanwhile keeps the projections worker busy: the broker goes while
        # batches are in flight, and their acks come after it.
        burst = threading.Thread(
            target=place_orders_in_batches,
            kwargs={"service": stack.service, "orders": BURST, "batch": 500},
            daemon=True,
        )
        burst.start()
        eventually(
            lambda: bulk_orders(stack) >= 2000, timeout=180, what="the burst being projected"
        )
        stack.broker.restart()  # memory storage: topics, records and group offsets are gone
        sent_at_restart, orders_at_restart = load.sent, stored_orders(stack)
        refund_ids += requested_refunds(stack.service, 10)
        eventually(
            lambda: load.sent >= sent_at_restart + 300,
            timeout=240,
            what="300 more inbound messages sent to the restarted broker",
        )
        burst.join(120)
    finally:
        load.stop.set()
        publisher.join(30)
    assert stack.integrations.is_running(), stack.integrations.log_tail()
    # The relay refilled the emptied broker, and orders sent after the restart were stored.
    eventually(lambda: len(stack.relay.stats.epochs) == 2, timeout=60, what="the refill")
    eventually(
        lambda: stored_orders(stack) >= orders_at_restart + 50,
        timeout=180,
        what="50 orders sent after the restart stored",
    )
    assert stack.projections.is_running(), stack.projections.log_tail()

    eventually(
        lambda: converged(stack),
        timeout=300,
        what="every read model to equal a replay of the event store",
    )

    # And what comes later is projected too: the worker was not left reading past its log.
    later = f"LATER-{uuid.uuid4().hex[:8]}"
    Load(stack.broker.bootstrap).publish_round(0)
    producer = KafkaProducer(
        bootstrap_servers=stack.broker.bootstrap, acks="all", allow_auto_create_topics=False
    )
    producer.send(ORDERS, key=later.encode(), value=m.order_placed(later))
    producer.flush(30)
    producer.close()
    eventually(lambda: projected(stack, later), timeout=120, what=f"{later} projected")
    eventually(lambda: converged(stack), timeout=300, what="the read models to converge again")
    # Every refund, requested before or after the restart, was answered by the provider.
    eventually(
        lambda: refunds_pending(stack, refund_ids) == [],
        timeout=240,
        what="every refund to be settled or failed",
    )
