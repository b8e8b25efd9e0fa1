"""Inventory per SKU and location: counts are absolute, adjustments are deltas."""

from __future__ import annotations

import pytest

from domain.errors import InvalidCommand
from domain.events import InventoryEvent, StockAdjusted, StockCounted
from domain.inventory import Inventory, inventory_id_for
from tests.unit.builders import CAUSE, day

SKU, LOCATION = "SKU-1", "WH-1"
STOCK_ID = inventory_id_for(SKU, LOCATION)


def counted(quantity: int, count_id: str = "CNT-1", version: int = 1) -> StockCounted:
    return StockCounted(
        originator_id=STOCK_ID,
        originator_version=version,
        timestamp=day(version),
        cause=CAUSE,
        sku=SKU,
        location_id=LOCATION,
        quantity=quantity,
        count_id=count_id,
    )


def adjusted(delta: int, adjustment_id: str = "ADJ-1", version: int = 2) -> StockAdjusted:
    return StockAdjusted(
        originator_id=STOCK_ID,
        originator_version=version,
        timestamp=day(version),
        cause=CAUSE,
        sku=SKU,
        location_id=LOCATION,
        delta=delta,
        reason="damaged in aisle 4",
        adjustment_id=adjustment_id,
    )


def given(*events: InventoryEvent) -> Inventory:
    return Inventory.replay(STOCK_ID, events)


def test_the_stock_of_a_sku_at_a_location_has_one_id_derived_from_both() -> None:
    assert Inventory.start(SKU, LOCATION).id == STOCK_ID
    assert inventory_id_for(SKU, "WH-2") != STOCK_ID


def test_a_count_sets_the_quantity_on_hand() -> None:
    stock = Inventory.start(SKU, LOCATION)
    stock.count(12, "CNT-1", day(1), CAUSE)
    assert stock.pending_events == [counted(12)]
    assert stock.on_hand == 12


def test_a_later_count_replaces_what_was_on_hand() -> None:
    stock = given(counted(12), adjusted(-2))
    stock.count(7, "CNT-2", day(3), CAUSE)
    assert stock.pending_events == [counted(7, "CNT-2", version=3)]
    assert stock.on_hand == 7


def test_a_negative_count_is_refused() -> None:
    stock = Inventory.start(SKU, LOCATION)
    with pytest.raises(InvalidCommand, match="cannot be negative"):
        stock.count(-1, "CNT-1", day(1), CAUSE)
    assert stock.pending_events == []


def test_the_same_count_twice_is_applied_once() -> None:
    stock = given(counted(12), adjusted(-2))
    stock.count(12, "CNT-1", day(3), CAUSE)
    assert stock.pending_events == []
    assert stock.on_hand == 10


def test_an_adjustment_moves_the_quantity_on_hand_by_its_delta() -> None:
    stock = given(counted(12))
    stock.adjust(-2, "damaged in aisle 4", "ADJ-1", day(2), CAUSE)
    assert stock.pending_events == [adjusted(-2)]
    assert stock.on_hand == 10


def test_the_same_adjustment_twice_is_applied_once() -> None:
    stock = given(counted(12), adjusted(-2))
    stock.adjust(-2, "damaged in aisle 4", "ADJ-1", day(3), CAUSE)
    assert stock.pending_events == []
    assert stock.on_hand == 10


def test_an_adjustment_of_zero_is_refused() -> None:
    stock = given(counted(12))
    with pytest.raises(InvalidCommand, match="changes nothing"):
        stock.adjust(0, "nothing", "ADJ-1", day(2), CAUSE)


def test_an_adjustment_without_a_reason_is_refused() -> None:
    stock = given(counted(12))
    with pytest.raises(InvalidCommand, match="needs a reason"):
        stock.adjust(3, "   ", "ADJ-1", day(2), CAUSE)
    assert stock.pending_events == []


def test_replaying_the_history_rebuilds_the_sku_location_and_quantity() -> None:
    stock = given(counted(12), adjusted(-2), adjusted(5, "ADJ-2", version=3))
    assert (stock.sku, stock.location_id, stock.on_hand, stock.version) == (
        SKU,
        LOCATION,
        15,
        3,
    )
    assert stock.applied == {"CNT-1", "ADJ-1", "ADJ-2"}
