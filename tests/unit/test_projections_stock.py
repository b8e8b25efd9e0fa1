"""Stock levels: every movement, and a count that holds whatever order events arrive in."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import (
    FulfilledLine,
    InspectedItem,
    ItemsInspected,
    OrderLinesFulfilled,
    OrderPlaced,
    ReceivedItem,
    RepairCompleted,
    RepairedItemRestocked,
    ReturnAuthorized,
    ReturnCancelled,
    ReturnParcelReceived,
    StockAdjusted,
    StockCounted,
)
from projections.core import Event, InMemoryReadModel, key_of
from projections.stock import StockLevels
from tests.unit.builders import (
    Story,
    assert_folds_like_reduce,
    decision,
    eur,
    return_line,
    return_requested,
    uid,
)
from tests.unit.builders import story_line as line
from tests.unit.builders import story_payment as payment

ORDER, RMA, INVENTORY = uid("order"), uid("rma"), uid("inventory")


def level(model: InMemoryReadModel, sku: str, location: str) -> dict[str, Any]:
    return model.tables["rm_stock_levels"].get(key_of({"sku": sku, "location_id": location}), {})


def placed(
    story: Story, *, channel: str = "web", store_id: str | None = None, qty: int = 3
) -> None:
    story.add(
        OrderPlaced,
        ORDER,
        order_number="WEB-1",
        customer_id="C-1",
        channel=channel,
        store_id=store_id,
        currency="EUR",
        lines=(line(1, "SKU-1", qty), line(2, "SKU-2", 1)),
        payments=(payment(str(50 * qty + 50) + ".00"),),
        shipping=eur("0.00"),
    )


def authorized(story: Story, quantity: int = 2) -> None:
    return_requested(story, RMA, ORDER, (return_line(1, "SKU-1", quantity),))
    story.add(
        ReturnAuthorized,
        RMA,
        rma_number="RMA-7K2Q-M4XD",
        destination_warehouse="WH-RET",
        label_reference="LBL",
        instructions="pack it",
        expected_refund=eur("100.00"),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        decisions=(decision(1),),
    )


def item(disposition: str, location: str = "WH-RET", quantity: int = 1) -> InspectedItem:
    return InspectedItem.model_validate(
        {
            "sku": "SKU-1",
            "quantity": quantity,
            "condition": "damaged",
            "disposition": disposition,
            "line_no": 1,
            "location_id": location,
        }
    )


def test_a_fulfilment_takes_the_skus_of_the_order_lines_from_the_fulfilling_location() -> None:
    story = Story()
    placed(story)
    story.add(
        OrderLinesFulfilled,
        ORDER,
        location_id="WH-1",
        lines=(FulfilledLine(line_no=1, quantity=2), FulfilledLine(line_no=2, quantity=1)),
    )
    model = InMemoryReadModel(StockLevels())
    model.apply(story.events)
    assert level(model, "SKU-1", "WH-1")["available"] == -2
    assert level(model, "SKU-2", "WH-1")["available"] == -1
    moves = model.rows("rm_stock_movements")
    assert {(m["sku"], m["kind"], m["delta"]) for m in moves} == {
        ("SKU-1", "fulfilment", -2),
        ("SKU-2", "fulfilment", -1),
    }
    assert {m["id"] for m in moves} == {f"{ORDER}:2:1", f"{ORDER}:2:2"}


def test_a_store_sale_leaves_the_store_at_once() -> None:
    story = Story()
    placed(story, channel="store", store_id="ST-9", qty=1)
    model = InMemoryReadModel(StockLevels())
    model.apply(story.events)
    assert level(model, "SKU-1", "ST-9")["available"] == -1


def test_an_authorized_return_is_expected_until_its_parcel_arrives() -> None:
    story = Story()
    placed(story)
    authorized(story, quantity=2)
    model = InMemoryReadModel(StockLevels())
    model.apply(story.events)
    assert level(model, "SKU-1", "WH-RET")["expected_returns"] == 2
    story.add(
        ReturnParcelReceived,
        RMA,
        receipt_id="R1",
        warehouse_id="WH-RET",
        items=(ReceivedItem(sku="SKU-1", quantity=1), ReceivedItem(sku="SKU-X", quantity=1)),
    )
    model.apply(story.events[-1:])
    assert level(model, "SKU-1", "WH-RET")["expected_returns"] == 1
    story.add(ReturnCancelled, RMA, reason="customer changed plans")
    model.apply(story.events[-1:])
    assert level(model, "SKU-1", "WH-RET")["expected_returns"] == 0


def test_dispositions_fill_their_buckets_at_the_inspected_location() -> None:
    story = Story()
    placed(story, qty=5)
    authorized(story, quantity=5)
    story.add(
        ItemsInspected,
        RMA,
        receipt_id=None,
        items=(
            item("restock", "WH-A"),
            item("quarantine"),
            item("repair"),
            item("return_to_vendor"),
            item("scrap"),
        ),
        refund_due=eur("0.00"),
    )
    model = InMemoryReadModel(StockLevels())
    model.apply(story.events)
    assert level(model, "SKU-1", "WH-A")["available"] == 1
    at_returns = level(model, "SKU-1", "WH-RET")
    assert {
        b: at_returns[b] for b in ("quarantined", "in_repair", "returned_to_vendor", "scrapped")
    } == {
        "quarantined": 1,
        "in_repair": 1,
        "returned_to_vendor": 1,
        "scrapped": 1,
    }


def test_a_repaired_item_moves_from_repair_to_where_it_is_restocked_or_to_scrap() -> None:
    story = Story()
    placed(story)
    authorized(story)
    story.add(
        ItemsInspected,
        RMA,
        receipt_id=None,
        items=(item("repair"), item("repair")),
        refund_due=eur("0.00"),
    )
    story.add(RepairCompleted, RMA, leg_id="L1", outcome="repaired")
    story.add(RepairedItemRestocked, RMA, leg_id="L1", location_id="WH-B")
    story.add(RepairCompleted, RMA, leg_id="L2", outcome="beyond_repair")
    model = InMemoryReadModel(StockLevels())
    model.apply(story.events)
    assert level(model, "SKU-1", "WH-RET")["in_repair"] == 0
    assert level(model, "SKU-1", "WH-RET")["scrapped"] == 1
    assert level(model, "SKU-1", "WH-B")["available"] == 1


def count_story() -> Story:
    """A count of 10 between two fulfilments and an adjustment, in event-store order."""
    story = Story()
    placed(story, qty=3)
    story.add(
        OrderLinesFulfilled,
        ORDER,
        location_id="WH-1",
        lines=(FulfilledLine(line_no=1, quantity=1),),
    )
    story.add(StockCounted, INVENTORY, sku="SKU-1", location_id="WH-1", quantity=10, count_id="C1")
    story.add(
        OrderLinesFulfilled,
        ORDER,
        location_id="WH-1",
        lines=(FulfilledLine(line_no=1, quantity=2),),
    )
    story.add(
        StockAdjusted,
        INVENTORY,
        sku="SKU-1",
        location_id="WH-1",
        delta=-1,
        reason="torn",
        adjustment_id="A1",
    )
    return story


def test_a_count_sets_available_and_later_movements_move_it() -> None:
    model = InMemoryReadModel(StockLevels())
    model.apply(count_story().events)
    row = level(model, "SKU-1", "WH-1")
    assert row["counted"] == 10 and row["available"] == 10 - 2 - 1


def test_a_movement_ordered_before_a_count_but_arriving_after_it_is_absorbed_by_the_count() -> None:
    events = count_story().events
    placed_event, early, count, late, adjusted = events
    model = InMemoryReadModel(StockLevels())
    # The inventory partition runs ahead of the order partition.
    model.apply([count, adjusted])
    assert level(model, "SKU-1", "WH-1")["available"] == 9
    model.apply([placed_event, early])
    assert level(model, "SKU-1", "WH-1")["available"] == 9
    model.apply([late])
    assert level(model, "SKU-1", "WH-1")["available"] == 7


def interleavings(events: list[Event], seed: int) -> list[Event]:
    """Per-aggregate order kept (one partition each), aggregates interleaved at random."""
    queues: dict[str, list[Event]] = {}
    for event in events:
        queues.setdefault(event.aggregate_id, []).append(event)
    rng = random.Random(seed)
    merged: list[Event] = []
    while queues:
        aggregate = rng.choice(sorted(queues))
        merged.append(queues[aggregate].pop(0))
        if not queues[aggregate]:
            del queues[aggregate]
    return merged


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 5))
def test_levels_do_not_depend_on_how_partitions_interleave_or_are_batched(
    seed: int, batch: int
) -> None:
    events = count_story().events
    reference = InMemoryReadModel(StockLevels())
    reference.apply(events)
    shuffled = interleavings(events, seed)
    model = InMemoryReadModel(StockLevels())
    for start in range(0, len(shuffled), batch):
        model.apply(shuffled[start : start + batch])
    model.apply(shuffled[: batch + 1])  # a redelivery
    assert model.tables["rm_stock_levels"] == reference.tables["rm_stock_levels"]
    assert model.tables["rm_stock_movements"] == reference.tables["rm_stock_movements"]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_folding_a_batch_in_place_equals_reducing_it_event_by_event(seed: int) -> None:
    assert_folds_like_reduce(StockLevels(), interleavings(count_story().events, seed))
