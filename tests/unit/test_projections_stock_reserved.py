"""Stock reserved for an exchange's replacement: held where the return arrives from the
replacement's placement until it ships (only what shipped) or is cancelled."""

from __future__ import annotations

import random
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import FulfilledLine, OrderCancelled, OrderLinesFulfilled, OrderPlaced
from projections.core import Event, InMemoryReadModel, key_of
from projections.stock import StockLevels
from tests.unit.builders import Story, eur, uid
from tests.unit.builders import story_line as line

WAREHOUSE = "WH-RET"


def level(model: InMemoryReadModel, sku: str, location: str) -> dict[str, Any]:
    return model.tables["rm_stock_levels"].get(key_of({"sku": sku, "location_id": location}), {})


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


def replacement(
    story: Story,
    order: UUID,
    lines: tuple[tuple[str, int], ...] = (("TEE-GREY-L", 2), ("CAP-1", 1)),
    *,
    reservation_location: str | None = WAREHOUSE,
    channel: str = "web",
    store_id: str | None = None,
) -> None:
    story.add(
        OrderPlaced,
        order,
        order_number=f"WEB-{order.hex[:6]}-X1",
        customer_id="C-1",
        channel=channel,
        store_id=store_id,
        currency="EUR",
        lines=tuple(line(n, sku, qty, "0.00") for n, (sku, qty) in enumerate(lines, start=1)),
        payments=(),
        shipping=eur("0.00"),
        replacement_for=uid("original"),
        replacement_return_id=uid("rma"),
        reservation_location=reservation_location,
    )


def fulfilled(story: Story, order: UUID, *shipped: tuple[int, int], at: str = "WH-SHIP") -> None:
    story.add(
        OrderLinesFulfilled,
        order,
        location_id=at,
        lines=tuple(FulfilledLine(line_no=n, quantity=q) for n, q in shipped),
    )


def applied(story: Story) -> InMemoryReadModel:
    model = InMemoryReadModel(StockLevels())
    model.apply(story.events)
    return model


def moves(model: InMemoryReadModel, bucket: str) -> list[tuple[str, str, str, int]]:
    return sorted(
        (m["sku"], m["location_id"], m["kind"], m["delta"])
        for m in model.rows("rm_stock_movements")
        if m["bucket"] == bucket
    )


def test_a_replacement_reserves_its_lines_where_the_return_arrives() -> None:
    story = Story()
    order = uid("replacement")
    replacement(story, order)
    model = applied(story)
    assert level(model, "TEE-GREY-L", WAREHOUSE)["reserved"] == 2
    assert level(model, "CAP-1", WAREHOUSE)["reserved"] == 1
    assert "available" not in level(model, "TEE-GREY-L", WAREHOUSE)  # still on the shelf
    assert moves(model, "reserved") == [
        ("CAP-1", WAREHOUSE, "reserved", 1),
        ("TEE-GREY-L", WAREHOUSE, "reserved", 2),
    ]


def test_a_partial_fulfilment_releases_only_what_shipped_where_it_was_reserved() -> None:
    story = Story()
    order = uid("replacement")
    replacement(story, order)
    fulfilled(story, order, (1, 1))
    model = applied(story)
    assert level(model, "TEE-GREY-L", WAREHOUSE)["reserved"] == 1
    assert level(model, "CAP-1", WAREHOUSE)["reserved"] == 1
    assert level(model, "TEE-GREY-L", "WH-SHIP")["available"] == -1
    fulfilled(story, order, (1, 1), (2, 1))
    model = applied(story)
    assert level(model, "TEE-GREY-L", WAREHOUSE)["reserved"] == 0
    assert level(model, "CAP-1", WAREHOUSE)["reserved"] == 0
    assert level(model, "TEE-GREY-L", "WH-SHIP")["available"] == -2
    assert ("TEE-GREY-L", WAREHOUSE, "fulfilment", -1) in moves(model, "reserved")


def test_a_cancelled_replacement_releases_what_is_still_held() -> None:
    story = Story()
    order = uid("replacement")
    replacement(story, order)
    story.add(OrderCancelled, order, reason="customer changed their mind")
    model = applied(story)
    assert level(model, "TEE-GREY-L", WAREHOUSE)["reserved"] == 0
    assert level(model, "CAP-1", WAREHOUSE)["reserved"] == 0
    assert ("TEE-GREY-L", WAREHOUSE, "cancelled", -2) in moves(model, "reserved")


def test_orders_without_a_reservation_location_reserve_nothing() -> None:
    story = Story()
    web, counter = uid("web"), uid("counter")
    replacement(story, web, reservation_location=None)  # placed before reservations existed
    replacement(story, counter, channel="store", store_id="ST-1", reservation_location="ST-1")
    fulfilled(story, web, (1, 2))
    model = applied(story)
    assert moves(model, "reserved") == []
    assert level(model, "TEE-GREY-L", "WH-SHIP")["available"] == -2
    assert level(model, "TEE-GREY-L", "ST-1")["available"] == -2  # handed over at the counter


def test_a_redelivered_fulfilment_releases_nothing_twice() -> None:
    story = Story()
    order = uid("replacement")
    replacement(story, order)
    fulfilled(story, order, (1, 1))
    model = applied(story)
    model.apply(story.events)  # the whole history again, as after a lost offset commit
    assert level(model, "TEE-GREY-L", WAREHOUSE)["reserved"] == 1
    assert len(moves(model, "reserved")) == 3


# ---------------------------------------------------------------- property
Plan = list[tuple[tuple[int, ...], list[tuple[int, int]], bool]]


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """Replacement orders: their quantities per line, fulfilments (never beyond what is
    ordered, as the domain refuses) and whether what is left is then cancelled or shipped."""
    plan: Plan = []
    for _ in range(draw(st.integers(1, 4))):
        quantities = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
        left = list(quantities)
        shipments: list[tuple[int, int]] = []
        for _ in range(draw(st.integers(0, 3))):
            n = draw(st.integers(1, len(quantities)))
            if left[n - 1]:
                q = draw(st.integers(1, left[n - 1]))
                left[n - 1] -= q
                shipments.append((n, q))
        plan.append((quantities, shipments, draw(st.booleans()) and not shipments))
    return plan


def history(plan: Plan) -> list[Event]:
    story = Story()
    for index, (quantities, shipments, cancel) in enumerate(plan):
        order = uid(f"replacement-{index}")
        # Several orders share SKUs, so their reservations add up on one row.
        replacement(story, order, tuple((f"SKU-{n % 2}", q) for n, q in enumerate(quantities)))
        for shipment in shipments:
            fulfilled(story, order, shipment)
        if cancel:
            story.add(OrderCancelled, order, reason="changed their mind")
        else:
            shipped = {n: sum(q for m, q in shipments if m == n) for n in range(1, 5)}
            rest = [(n, q - shipped[n]) for n, q in enumerate(quantities, 1) if q > shipped[n]]
            if rest:
                fulfilled(story, order, *rest)
    return story.events


def reserved(model: InMemoryReadModel) -> list[int]:
    return [int(row.get("reserved", 0)) for row in model.rows("rm_stock_levels")]


@settings(max_examples=80, deadline=None)
@given(plans(), st.integers(0, 10_000), st.integers(1, 4))
def test_reserved_never_goes_negative_and_is_zero_once_every_replacement_is_done(
    plan: Plan, seed: int, batch: int
) -> None:
    events = interleavings(history(plan), seed)
    model = InMemoryReadModel(StockLevels())
    for start in range(0, len(events), batch):
        model.apply(events[start : start + batch])
        assert all(value >= 0 for value in reserved(model))
        model.apply(events[: start + batch])  # redelivered: changes nothing twice
        assert all(value >= 0 for value in reserved(model))
    assert reserved(model) and set(reserved(model)) == {0}
    ordered = sum(sum(quantities) for quantities, _, _ in plan)
    assert sum(m["delta"] for m in model.rows("rm_stock_movements") if m["kind"] == "reserved") == (
        ordered
    )


def test_the_levels_table_derives_available_to_promise() -> None:
    column = StockLevels().tables[0].column("available_to_promise")
    assert column.generated == '"available" - "reserved"'
