"""A projections worker resumes from the offsets stored with its rows, when they still hold.

Each test has its own database (on the session's PostgreSQL) and its own Tansu, so it can
restart the broker and own every offset without disturbing the session's system.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faust
import psycopg
import pytest

from adapters.driven.embedded.tansu import EmbeddedKafka
from adapters.driven.eventstore import create_service
from adapters.driven.kafka.provisioning import provision_topics
from adapters.driven.kafka.topics import ORDER_EVENTS, topic_specs
from adapters.driven.readmodels.positions import ResumePoint, projection_lag, resume_points
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driven.relay import Relay, lag
from adapters.settings import Settings
from domain.application import ReturnsService
from domain.commands import CountStock, RequestReturn
from domain.returns import RequestedLine
from domain.values import ReasonCode, RefundMethod
from projections import default_projections
from streams.worker import WorkerProcess
from tests.e2e.builders import eventually
from tests.integration.builders import (
    ctx,
    delivered_order,
    fresh_database,
    place_orders_in_batches,
    receive_and_inspect,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2
GROUP_ENV = "OMS_TEST_PROJECTIONS_GROUP"


def app_in_group() -> faust.App:
    """The projections worker under the consumer group named in ``OMS_TEST_PROJECTIONS_GROUP``:
    a group with no committed offsets, as after a reset or a renamed deployment."""
    from streams import projectors

    settings = Settings.from_env()
    assert settings.database_url is not None and settings.kafka_bootstrap is not None
    projections = default_projections()
    store = ReadModelStore(settings.database_url, projections)
    projector = projectors.Projector(store, projections, None)
    return projectors.create_projections_app(settings, projector, app_id=os.environ[GROUP_ENV])


@dataclass
class Stack:
    database_url: str
    broker: EmbeddedKafka
    service: ReturnsService
    relay: Relay
    workdir: Path

    def worker(
        self, tag: str, spec: str = "streams.projectors:app_from_env", **env: str
    ) -> WorkerProcess:
        workdir = self.workdir / tag
        return WorkerProcess(
            spec,
            workdir=workdir,
            env={
                **os.environ,
                "OMS_DATABASE_URL": self.database_url,
                "OMS_KAFKA_BOOTSTRAP": self.broker.bootstrap,
                "OMS_DATA_DIR": str(workdir),
                "OMS_TOPIC_PARTITIONS": str(PARTITIONS),
                **env,
            },
            cwd=ROOT,
        )


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    url = fresh_database(database_url, "resume")
    broker = EmbeddedKafka(tmp_path / "tansu").start()
    provision_topics(broker.bootstrap, topic_specs(PARTITIONS))
    service = create_service(url, pool_size=2)
    relay = Relay(
        url, broker.bootstrap, topic_specs=topic_specs(PARTITIONS), name="resume", epoch_check_s=0.2
    )
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield Stack(url, broker, service, relay, tmp_path)
    finally:
        stop.set()
        thread.join(20)
        relay.close()
        service.close()
        broker.stop()


def some_of_everything(service: ReturnsService, orders: int) -> None:
    """Bulk orders, and returns and stock counts, so every partition of every relayed topic
    gets events (the relay's refill point is the lowest over all of them)."""
    place_orders_in_batches(service, orders=orders, batch=50)
    for index in range(8):
        number = delivered_order(service)
        service.run(
            ctx(),
            RequestReturn(
                order_number=number,
                lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_SMALL),),
            ),
        )
        c = ctx()
        service.run(
            c,
            CountStock(sku=f"SKU-{index}", location_id="WH-1", quantity=5, count_id=f"c-{index}"),
        )
    # Store-credit accounts (the ledger reads their topic too): sixteen, so both partitions
    # get some whatever the keys hash to (all on one: a chance of 2 in 65,536).
    for _ in range(16):
        number = delivered_order(service)
        credited = service.run(
            ctx(),
            RequestReturn(
                order_number=number,
                lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_SMALL),),
                refund_method=RefundMethod.STORE_CREDIT,
            ),
        )
        assert credited.rma_number
        receive_and_inspect(service, credited.rma_number)


def bulk_orders(stack: Stack) -> int:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute("SELECT orders FROM rm_customers WHERE customer_id = 'bulk'").fetchone()
    return int(row[0]) if row else 0


def caught_up(stack: Stack) -> bool:
    if lag(stack.database_url, "resume")["lag"] > 0:
        return False
    with ReadModelStore(stack.database_url) as store:
        return all(
            projection_lag(store.connection, p)["events_behind"] == 0 for p in default_projections()
        )


def stored_points(stack: Stack) -> dict[tuple[str, int], ResumePoint]:
    with ReadModelStore(stack.database_url, default_projections()) as store:
        points = resume_points(store.connection, default_projections())
    return {pair: point for pair, point in points.items() if pair[0] == ORDER_EVENTS}


def first_offsets(worker: WorkerProcess) -> dict[tuple[str, int], int]:
    found = re.findall(
        r"first record from ([\w.\-]+):(\d+) at offset (\d+)", worker.log_tail(10**7)
    )
    return {(topic, int(partition)): int(offset) for topic, partition, offset in found}


def test_a_worker_whose_group_offsets_are_gone_resumes_at_the_stored_offsets(
    stack: Stack,
) -> None:
    some_of_everything(stack.service, orders=200)
    with stack.worker("first") as first:
        first.wait_ready(timeout=90)
        eventually(lambda: bulk_orders(stack) == 200, timeout=120, what="200 orders projected")
        eventually(lambda: caught_up(stack), timeout=120, what="projections to catch up")
    stored = stored_points(stack)
    assert sorted(stored) == [(ORDER_EVENTS, p) for p in range(PARTITIONS)]
    assert all(point.next_offset > 0 for point in stored.values())

    group = f"oms-projections-{uuid.uuid4().hex[:6]}"
    spec = "tests.e2e.test_projections_resume:app_in_group"
    with stack.worker("new-group", spec, **{GROUP_ENV: group}) as second:
        second.wait_ready(timeout=90)
        place_orders_in_batches(stack.service, orders=100, batch=50)
        eventually(lambda: bulk_orders(stack) == 300, timeout=120, what="300 orders projected")
        log = second.log_tail(10**7)
        started = first_offsets(second)

    for (topic, partition), point in stored.items():
        assert f"resuming {topic}:{partition} at its stored offset {point.next_offset}" in log
    # Without the stored offsets a new group starts at the earliest record (offset 0) and
    # re-reads all that the first worker applied; resumed, it re-reads none of it.
    reread = {pair: point.next_offset - started[pair] for pair, point in stored.items()}
    assert reread == {pair: 0 for pair in stored}


def test_after_the_broker_lost_its_data_the_stale_offsets_are_refused_and_all_converges(
    stack: Stack,
) -> None:
    some_of_everything(stack.service, orders=200)
    with stack.worker("before") as before:
        before.wait_ready(timeout=90)
        eventually(lambda: bulk_orders(stack) == 200, timeout=120, what="200 orders projected")
        eventually(lambda: caught_up(stack), timeout=120, what="projections to catch up")
    stored = stored_points(stack)
    assert all(point.next_offset > 0 for point in stored.values())

    stack.broker.restart()  # memory storage: topics, records and group offsets are gone
    eventually(
        lambda: (
            len(stack.relay.stats.epochs) == 2 and lag(stack.database_url, "resume")["lag"] == 0
        ),
        timeout=60,
        what="the relay to refill the emptied broker",
    )
    # Enough that the refilled log reaches past the stored offsets again, records in place.
    place_orders_in_batches(stack.service, orders=400, batch=100)
    eventually(lambda: lag(stack.database_url, "resume")["lag"] == 0, timeout=60, what="relay")
    with stack.worker("after") as after:
        after.wait_ready(timeout=90)
        eventually(lambda: bulk_orders(stack) == 600, timeout=120, what="600 orders projected")
        eventually(lambda: caught_up(stack), timeout=120, what="projections to catch up")
        log = after.log_tail(10**7)

    # The refill started after the events every projection had applied, so the same
    # offsets now name other records: resuming there would skip events.
    for (topic, partition), point in stored.items():
        refused = re.search(
            rf"not resuming {re.escape(topic)}:{partition} at its stored offset "
            rf"{point.next_offset}: the record at offset {point.next_offset - 1} carries "
            rf"position (\d+), stored: {point.position}",
            log,
        )
        assert refused is not None, log[-3000:]
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "SELECT orders, items_bought FROM rm_customers WHERE customer_id = 'bulk'"
        ).fetchone()
    assert row == (600, 600)
