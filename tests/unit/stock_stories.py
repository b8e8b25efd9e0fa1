"""Random stock histories of one SKU at one location, and the level they must give.

Shared by the unit tests (reducers in memory) and the integration tests (the real
read-model store and ``stock_at``). Every restock and sale is its own aggregate (its own
partition: it may arrive at any moment); counts and adjustments are the inventory
aggregate's (one partition, in order). Counts are recorded late on purpose: the event's
time is long after the moment they were taken (``counted_at``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from hypothesis import strategies as st

from domain.events import (
    InspectedItem,
    ItemsInspected,
    OrderPlaced,
    StockAdjusted,
    StockCounted,
)
from domain.inventory import inventory_id_for
from projections.core import Event
from tests.unit.builders import T0, Story, eur
from tests.unit.builders import story_line as line
from tests.unit.builders import story_payment as payment

REPORTED = T0 + timedelta(hours=10)
"""When every count reaches the event store: after everything it describes."""


@dataclass(frozen=True)
class Move:
    """A restock (delta > 0, an inspection) or a store sale (delta < 0) at ``minute``."""

    minute: int
    delta: int


@dataclass(frozen=True)
class Adjust:
    minute: int
    delta: int


@dataclass(frozen=True)
class Count:
    """``quantity`` on the shelf at ``minute``, reported at REPORTED."""

    minute: int
    quantity: int


Op = Move | Adjust | Count


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


ops_strategy = st.lists(
    st.one_of(
        st.builds(Move, st.integers(0, 20), st.integers(-3, 3).filter(bool)),
        st.builds(Adjust, st.integers(0, 20), st.integers(-3, 3).filter(bool)),
        st.builds(Count, st.integers(0, 20), st.integers(0, 30)),
    ),
    min_size=1,
    max_size=10,
)


def stock_story(ops: list[Op], sku: str, location: str) -> list[Event]:
    """One event per op, in the event store's order (positions 1, 2, ...)."""
    story = Story()
    inventory = inventory_id_for(sku, location)
    for index, op in enumerate(ops):
        match op:
            case Count():
                story.add(
                    StockCounted,
                    inventory,
                    at=REPORTED + timedelta(seconds=index),
                    sku=sku,
                    location_id=location,
                    quantity=op.quantity,
                    count_id=f"C{index}",
                    counted_at=at(op.minute),
                )
            case Adjust():
                story.add(
                    StockAdjusted,
                    inventory,
                    at=at(op.minute),
                    sku=sku,
                    location_id=location,
                    delta=op.delta,
                    reason="found",
                    adjustment_id=f"A{index}",
                )
            case Move() if op.delta > 0:
                story.add(
                    ItemsInspected,
                    fresh(),
                    at=at(op.minute),
                    receipt_id=f"R{index}",
                    items=(
                        InspectedItem(
                            sku=sku,
                            quantity=op.delta,
                            condition="resellable",
                            disposition="restock",
                            location_id=location,
                        ),
                    ),
                    refund_due=eur("0.00"),
                )
            case Move():
                story.add(
                    OrderPlaced,
                    fresh(),
                    at=at(op.minute),
                    order_number=f"POS-{index}",
                    customer_id="C-1",
                    channel="store",
                    store_id=location,
                    currency="EUR",
                    lines=(line(1, sku, -op.delta),),
                    payments=(payment(f"{-op.delta * 50}.00"),),
                    shipping=eur("0.00"),
                )
    return story.events


def fresh() -> UUID:
    return uuid4()


def expected_available(ops: list[Op], until: datetime | None = None) -> int:
    """The definition, by brute force: the latest count taken by ``until`` (ties: the later
    in the event store) plus every movement by ``until`` after it in (time, position) order."""
    counts = [
        (at(op.minute), position, op.quantity)
        for position, op in enumerate(ops, start=1)
        if isinstance(op, Count) and (until is None or at(op.minute) <= until)
    ]
    moves = [
        (at(op.minute), position, op.delta)
        for position, op in enumerate(ops, start=1)
        if isinstance(op, Move | Adjust) and (until is None or at(op.minute) <= until)
    ]
    if not counts:
        return sum(delta for _, _, delta in moves)
    taken, position, quantity = max(counts)
    return quantity + sum(delta for t, p, delta in moves if (t, p) > (taken, position))


def arrivals(events: list[Event], seed: int, batch: int) -> list[list[Event]]:
    """Per-aggregate order kept (one partition each), aggregates interleaved at random,
    cut into batches of ``batch``."""
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
    return [merged[start : start + batch] for start in range(0, len(merged), batch)]
