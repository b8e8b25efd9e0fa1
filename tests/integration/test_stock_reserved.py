"""Stock reserved for an exchange's replacement on the real event store and PostgreSQL: the
replacement is held at the return's destination warehouse, released by its fulfilment (only
what shipped) or its cancellation, and a rebuild from the log gives the same rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from adapters.driven.eventstore import create_service
from adapters.driven.readmodels.queries import stock_at
from adapters.driven.readmodels.rebuild import rebuild
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driven.relay import cloud_event_for
from domain.application import ReturnsService
from domain.commands import CancelOrder, FulfilOrder, RequestReturn
from domain.events import ExchangeChoice, FulfilledLine
from domain.order import order_id_for
from domain.policy import PolicyBook
from domain.returns import RequestedLine
from domain.values import Money, ReasonCode, RefundMethod
from projections.core import Event
from projections.stock import StockLevels
from tests.integration.builders import ctx, delivered_order, receive_and_inspect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def store(database_url: str) -> Iterator[ReadModelStore]:
    with ReadModelStore(database_url) as opened:
        opened.connection.autocommit = True
        yield opened


def exchanged(service: ReturnsService, quantity: int) -> tuple[str, str, str]:
    """An exchange of ``quantity`` shoes for a SKU of its own; (replacement number, SKU,
    the return's destination warehouse)."""
    number = delivered_order(service, quantity=quantity)
    sku = f"SHOE-{uuid.uuid4().hex[:10]}"
    choice = ExchangeChoice(sku=sku, unit_price=Money.of("50.00", "EUR"))
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=number,
            lines=(RequestedLine(1, quantity, ReasonCode.SIZE_TOO_SMALL, exchange=choice),),
            refund_method=RefundMethod.EXCHANGE,
        ),
    )
    assert rma.rma_number is not None
    receive_and_inspect(service, rma.rma_number, quantity=quantity)
    destination = service.get_return(rma.aggregate_id).state.destination_warehouse
    assert destination is not None
    return f"{number}-X1", sku, destination


def project(store: ReadModelStore, database_url: str, *order_numbers: str) -> None:
    """The replacements' events through the stock projection, twice (a redelivery)."""
    ids = [order_id_for(n) for n in order_numbers]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM oms_events WHERE originator_id = ANY(%s) ORDER BY notification_id",
            [ids],
        ).fetchall()
    events = [Event.from_cloud_event(cloud_event_for(row)) for row in rows]
    store.apply(StockLevels(), events)
    store.apply(StockLevels(), events)


def level(store: ReadModelStore, sku: str, location: str, suffix: str = "") -> dict[str, Any]:
    with store.connection.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT * FROM rm_stock_levels{suffix} WHERE sku = %s AND location_id = %s".encode(),
            (sku, location),
        )
        found = cur.fetchone()
        assert found is not None, (sku, location, suffix)
        return found


def figures(row: dict[str, Any]) -> tuple[int, int, int]:
    return row["available"], row["reserved"], row["available_to_promise"]


def test_a_replacement_is_reserved_until_shipped_or_cancelled_and_a_rebuild_agrees(
    service: ReturnsService, store: ReadModelStore, database_url: str
) -> None:
    shipped, shipped_sku, warehouse = exchanged(service, quantity=2)
    cancelled, cancelled_sku, _ = exchanged(service, quantity=1)
    project(store, database_url, shipped, cancelled)
    assert figures(level(store, shipped_sku, warehouse)) == (0, 2, -2)
    assert figures(level(store, cancelled_sku, warehouse)) == (0, 1, -1)

    lines = (FulfilledLine(line_no=1, quantity=1),)
    service.run(ctx(), FulfilOrder(order_number=shipped, location_id="WH-OUT", lines=lines))
    service.run(ctx(), CancelOrder(order_number=cancelled, reason="customer changed their mind"))
    project(store, database_url, shipped, cancelled)
    assert figures(level(store, shipped_sku, warehouse)) == (0, 1, -1)  # one still to ship
    assert figures(level(store, shipped_sku, "WH-OUT")) == (-1, 0, -1)
    assert figures(level(store, cancelled_sku, warehouse)) == (0, 0, 0)
    assert stock_at(store.connection, shipped_sku, warehouse, level_time(store, shipped_sku)) == {
        **dict.fromkeys(("quarantined", "in_repair", "returned_to_vendor", "scrapped"), 0),
        "expected_returns": 0,
        "available": 0,
        "reserved": 1,
        "available_to_promise": -1,
    }

    service.run(ctx(), FulfilOrder(order_number=shipped, location_id="WH-OUT", lines=lines))
    project(store, database_url, shipped)
    assert figures(level(store, shipped_sku, warehouse)) == (0, 0, 0)
    assert figures(level(store, shipped_sku, "WH-OUT")) == (-2, 0, -2)

    rebuild(StockLevels(), database_url, switch=False)
    for sku, location in (
        (shipped_sku, warehouse),
        (shipped_sku, "WH-OUT"),
        (cancelled_sku, warehouse),
    ):
        assert level(store, sku, location, "_rebuild") == level(store, sku, location)


def level_time(store: ReadModelStore, sku: str) -> Any:
    found = store.connection.execute(
        "SELECT max(at) FROM rm_stock_movements WHERE sku = %s", [sku]
    ).fetchone()
    assert found is not None
    return found[0]


INSTANT = "instant-reserved"


@pytest.fixture(scope="module")
def instant(database_url: str) -> Iterator[ReturnsService]:
    book = PolicyBook(by_category={INSTANT: {"instant_exchange": True}})
    service = create_service(database_url, policy_book=book, pool_size=3)
    try:
        yield service
    finally:
        service.close()


def test_an_instant_exchange_reserves_its_replacement_at_authorization(
    instant: ReturnsService, store: ReadModelStore, database_url: str
) -> None:
    number = delivered_order(instant, category=INSTANT)
    sku = f"SHOE-{uuid.uuid4().hex[:10]}"
    choice = ExchangeChoice(sku=sku, unit_price=Money.of("50.00", "EUR"))
    rma = instant.run(
        ctx(),
        RequestReturn(
            order_number=number,
            lines=(RequestedLine(1, 1, ReasonCode.SIZE_TOO_SMALL, exchange=choice),),
            refund_method=RefundMethod.EXCHANGE,
        ),
    )
    assert rma.status == "authorized"  # nothing received yet: the replacement is ordered
    warehouse = instant.get_return(rma.aggregate_id).state.destination_warehouse
    assert warehouse is not None
    replacement = f"{number}-X1"
    project(store, database_url, replacement)
    assert figures(level(store, sku, warehouse)) == (0, 1, -1)

    lines = (FulfilledLine(line_no=1, quantity=1),)
    instant.run(ctx(), FulfilOrder(order_number=replacement, location_id=warehouse, lines=lines))
    project(store, database_url, replacement)
    assert figures(level(store, sku, warehouse)) == (-1, 0, -1)
