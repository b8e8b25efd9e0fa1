"""A serial's life on the real read-model store: its timeline, where it is now, and the
sales flagged because it was in repair, at a vendor or with another customer."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest

from adapters.driven.readmodels.serials import flagged_sales, serial_life
from adapters.driven.readmodels.store import ReadModelStore
from projections.serials import SerialLives
from tests.unit.serial_stories import serial_life as story
from tests.unit.stock_stories import arrivals

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def store(database_url: str) -> Iterator[ReadModelStore]:
    with ReadModelStore(database_url) as opened:
        opened.connection.autocommit = True
        yield opened


def test_a_serial_sold_while_in_repair_is_flagged_and_its_life_reads_in_time_order(
    store: ReadModelStore,
) -> None:
    serial = f"SN-{uuid.uuid4().hex[:10]}"
    events = story(serial, sold_while_in_repair=True)
    for delivery in arrivals(events, seed=7, batch=3):
        store.apply(SerialLives(), delivery)
    life = serial_life(store.connection, serial)
    assert life is not None
    kinds = [entry["kind"] for entry in life["timeline"]]
    assert kinds == [
        "shipped",
        "return_requested",
        "rma_authorized",
        "received",
        "inspected",
        "repair_sent",
        "sold",
        "repair_completed",
        "restocked",
        "sold",
        "shipped",
    ]
    assert life["current"]["state"] == "with_customer"
    assert life["current"]["customer_id"] == "C-3"
    (flag,) = life["flags"]
    assert (flag["order_number"], flag["customer_id"], flag["state_before"]) == (
        f"S2-{serial}",
        "C-2",
        "in_repair",
    )
    assert flag["reason"] == "sold while in repair"
    assert any(f["serial"] == serial for f in flagged_sales(store.connection))
    # Everything again: nothing changes.
    for delivery in arrivals(events, seed=8, batch=4):
        assert store.apply(SerialLives(), delivery) == []
    assert serial_life(store.connection, serial) == life


def test_a_serial_resold_after_its_return_is_not_flagged(store: ReadModelStore) -> None:
    serial = f"SN-{uuid.uuid4().hex[:10]}"
    store.apply(SerialLives(), story(serial))
    life = serial_life(store.connection, serial)
    assert life is not None and life["flags"] == []
    assert flagged_sales(store.connection, serial) == []


def test_a_serial_sold_to_another_customer_before_it_came_back_is_flagged(
    store: ReadModelStore,
) -> None:
    serial = f"SN-{uuid.uuid4().hex[:10]}"
    events = story(serial)
    # The resale (W3, C-3) moved before the parcel came back: the serial was with C-1.
    shipped, requested, authorized, received, *rest = events
    early = [e for e in rest if e.data.get("order_number") == f"W3-{serial}"]
    assert early
    moved = [dataclasses.replace(e, time=requested.time) for e in early]
    store.apply(SerialLives(), [shipped, requested, authorized, received, *moved])
    flags = flagged_sales(store.connection, serial)
    assert [(f["kind"], f["customer_before"], f["reason"]) for f in flags] == [
        ("sold", "C-1", "sold while with customer C-1 and not returned")
    ]
