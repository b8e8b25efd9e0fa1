"""Parking on the real PostgreSQL: an in-store return before its order waits, applies once
its order came, goes to the DLQ with the reason when it waited too long; two retrying
workers never take one message."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from adapters.driven.eventstore import create_service
from adapters.driven.kafka.topics import ORDERS, POS_RETURNS
from adapters.driven.parking import ParkedMessages
from adapters.settings import Settings
from domain.application import ReturnsService
from domain.returns import store_return_id_for
from streams.inbound import process_batch
from streams.integrations import inbound_handler, retry_parked
from streams.parking import retry_round
from streams.records import DeadLetter, InboundRecord
from tests.integration import builders as m

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def own_service(database_url: str) -> Iterator[ReturnsService]:
    # A database of its own: a retry round takes every parked message due in the table.
    service = create_service(m.fresh_database(database_url, "parking"), pool_size=4)
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def parking(own_service: ReturnsService) -> ParkedMessages:
    lot = ParkedMessages(own_service)
    lot.release([p.message_id for p in lot.listing(10_000)])
    return lot


def record(topic: str, value: bytes, offset: int = 7) -> InboundRecord:
    return InboundRecord(topic, 0, offset, b"STORE-3", value, (("traceparent", b"00-ab"),), 1)


def handle(service: ReturnsService, parking: ParkedMessages, *records: InboundRecord) -> list[str]:
    settings = Settings(park_for_s=600, park_retry_s=0.001)
    with ThreadPoolExecutor(1) as executor:
        handler = inbound_handler(service, records[0].topic, executor, parking, settings)

        async def run() -> Sequence[DeadLetter]:
            return await handler(list(records))

        letters = asyncio.run(run())
    return [letter.error_code for letter in letters]


def place(service: ReturnsService, order_id: str) -> None:
    messages = [m.order_placed(order_id), m.order_fulfilled(order_id), m.order_delivered(order_id)]
    assert process_batch(service, ORDERS, messages) == [None, None, None]


def test_an_in_store_return_before_its_order_is_parked_then_applied_once(
    own_service: ReturnsService, parking: ParkedMessages
) -> None:
    order_id = f"EARLY-{uuid.uuid4().hex[:8]}"
    value = m.store_return(order_id, f"SR-{order_id}")
    broken = b"{not json"

    # Delivered twice: one row. A broken message beside it still goes to the DLQ at once.
    dead = handle(own_service, parking, record(POS_RETURNS, value), record(POS_RETURNS, broken))
    assert dead == ["invalid_json"]
    handle(own_service, parking, record(POS_RETURNS, value, offset=8))
    (row,) = parking.listing()
    assert (row.topic, row.key, row.value, row.offset) == (POS_RETURNS, b"STORE-3", value, 7)
    assert row.headers == (("traceparent", b"00-ab"),) and row.code == "not_found"
    assert order_id in row.reason and row.parked_at is not None

    assert retry_round(own_service, parking, park_for_s=600, retry_s=0.001) == []
    (still,) = parking.listing()
    assert still.attempts == 1 and still.parked_at == row.parked_at

    place(own_service, order_id)
    assert retry_round(own_service, parking, park_for_s=600, retry_s=0.001) == []
    assert parking.listing() == []
    rma = own_service.get_return(store_return_id_for("STORE-3", f"SR-{order_id}"))
    version = rma.version
    assert len(rma.state.refunds) == 1

    # A replay from the DLQ or Kafka after it applied: accepted, nothing changes twice.
    assert handle(own_service, parking, record(POS_RETURNS, value)) == []
    assert parking.listing() == []
    assert own_service.get_return(rma.id).version == version


def test_a_parked_message_whose_order_never_comes_is_dead_lettered_with_the_reason(
    own_service: ReturnsService, parking: ParkedMessages
) -> None:
    order_id = f"NEVER-{uuid.uuid4().hex[:8]}"
    value = m.store_return(order_id, "SR-N")
    handle(own_service, parking, record(POS_RETURNS, value))

    (expired,) = retry_round(own_service, parking, park_for_s=0, retry_s=0.001)

    letter = expired.letter
    assert letter.error_code == "not_found"
    assert (
        letter.reason.startswith("parked for ") and f"order {order_id} is unknown" in letter.reason
    )
    assert letter.record.value == value
    assert (letter.record.topic, letter.record.key, letter.record.offset) == (
        POS_RETURNS,
        b"STORE-3",
        7,
    )
    # Still parked until the caller published the dead letter and released it.
    assert [p.message_id for p in parking.listing()] == [expired.message_id]
    parking.release([expired.message_id])
    assert parking.summary()["count"] == 0


def test_two_retrying_workers_never_take_one_message(
    own_service: ReturnsService, parking: ParkedMessages
) -> None:
    values = [m.store_return(f"TWO-{uuid.uuid4().hex[:8]}", f"SR-{i}") for i in range(40)]
    handle(own_service, parking, *[record(POS_RETURNS, v, offset=i) for i, v in enumerate(values)])
    assert parking.summary()["count"] == 40

    start = threading.Barrier(2)
    lots = [ParkedMessages(own_service), ParkedMessages(own_service)]

    def claim(lot: ParkedMessages) -> list[str]:
        start.wait()
        taken: list[str] = []
        while batch := lot.claim_due(retry_s=600, limit=3):
            taken += [p.message_id for p in batch]
        return taken

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(claim, lots)

    assert not set(first) & set(second)
    assert len(first) + len(second) == 40
    # Claimed and not due again: nobody takes them until a retry period passed.
    assert parking.claim_due(retry_s=600) == []


def test_new_orders_wake_parked_messages_but_not_one_being_retried(
    own_service: ReturnsService, parking: ParkedMessages
) -> None:
    handle(own_service, parking, record(POS_RETURNS, m.store_return("WAKE-1", "SR-W1")))
    handle(own_service, parking, record(POS_RETURNS, m.store_return("WAKE-2", "SR-W2")))
    (claimed,) = parking.claim_due(retry_s=600, limit=1)
    parking.still_parked(claimed.message_id, "not_found", "order WAKE-x is unknown")
    (other,) = parking.claim_due(retry_s=600, limit=5)
    assert parking.claim_due(retry_s=600) == []  # both due in 10 minutes only

    parking.wake()  # other is still being retried (its claim holds); claimed is not

    (woken,) = parking.claim_due(retry_s=600)
    assert woken.message_id == claimed.message_id != other.message_id


def test_the_timer_releases_an_expired_message_only_once_its_dead_letter_is_published(
    own_service: ReturnsService, parking: ParkedMessages
) -> None:
    value = m.store_return(f"GONE-{uuid.uuid4().hex[:8]}", "SR-G")
    handle(own_service, parking, record(POS_RETURNS, value))
    settings = Settings(park_for_s=0.001, park_retry_s=0.001)
    published: list[tuple[str, list[DeadLetter]]] = []

    async def broker_down(topic: str, letters: Sequence[DeadLetter]) -> None:
        raise ConnectionError("broker away")

    async def broker_up(topic: str, letters: Sequence[DeadLetter]) -> None:
        published.append((topic, list(letters)))

    with pytest.raises(ConnectionError):
        asyncio.run(retry_parked(own_service, parking, settings, broker_down))
    assert [p.value for p in parking.listing()] == [value]  # nothing lost

    assert asyncio.run(retry_parked(own_service, parking, settings, broker_up)) == 1
    ((topic, (letter,)),) = published
    assert topic == POS_RETURNS and letter.record.value == value
    assert letter.reason.startswith("parked for ")
    assert parking.listing() == []

    # Replayed from the DLQ while its order is still missing: it parks again, afresh.
    handle(own_service, parking, record(POS_RETURNS, value))
    (again,) = parking.listing()
    assert again.attempts == 0 and again.value == value
