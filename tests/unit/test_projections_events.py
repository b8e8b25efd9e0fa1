"""The read-model framework, and the story builder the reducer tests share.

Stories are told with the real event catalogue (domain/events.py) and turned into what
projectors consume exactly as the relay does (``cloud_event_for``), so a renamed field
breaks these tests rather than production.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

import orjson
import pytest

from adapters.relay import cloud_event_for
from domain.events import Cause, DomainEvent, OrderLine, Payment, ReturnLine, ReturnRequested
from domain.serialization import event_to_json
from domain.values import Money
from projections import default_projections
from projections.core import (
    Append,
    Event,
    Increment,
    InMemoryReadModel,
    Projection,
    Rebase,
    State,
    Upsert,
    merge,
    reduce_all,
    split_pro_rata,
)
from projections.ledger import RefundLedger

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
CAUSE = Cause(actor="agent-7", source="unit-tests", correlation_id="corr-1")
_NS = UUID("6f1c4a52-0000-4000-8000-000000000000")


def uid(name: str) -> UUID:
    return uuid5(_NS, name)


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def wire(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "EUR"}


class Story:
    """Events of several aggregates in event-store order, numbered like the real store."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.domain_events: list[DomainEvent] = []
        self._versions: dict[UUID, int] = {}
        self._clock = itertools.count()

    def add(
        self, cls: type[DomainEvent], aggregate: UUID, at: datetime | None = None, **fields: Any
    ) -> Event:
        version = self._versions.get(aggregate, 0) + 1
        self._versions[aggregate] = version
        moment = at or T0 + timedelta(minutes=next(self._clock))
        event = cls(
            originator_id=aggregate,
            originator_version=version,
            timestamp=moment,
            cause=CAUSE,
            **fields,
        )
        self.domain_events.append(event)
        position = len(self.events) + 1
        row = (position, aggregate, version, cls.type_name, orjson.dumps(event_to_json(event)))
        relayed = Event.from_cloud_event(cloud_event_for(row))
        self.events.append(relayed)
        return relayed


def line(
    line_no: int = 1,
    sku: str = "SKU-1",
    quantity: int = 1,
    price: str = "50.00",
    supplier: str = "Acme",
    category: str = "shoes",
) -> OrderLine:
    return OrderLine(
        line_no=line_no,
        sku=sku,
        quantity=quantity,
        unit_price=eur(price),
        supplier=supplier,
        category=category,
    )


def payment(amount: str, method: str = "card", payment_id: str = "PAY-1") -> Payment:
    return Payment.model_validate(
        {"payment_id": payment_id, "method": method, "amount": wire(amount)}
    )


def return_line(
    line_no: int = 1,
    sku: str = "SKU-1",
    quantity: int = 1,
    reason: str = "size_too_small",
    price: str = "50.00",
    supplier: str = "Acme",
    category: str = "shoes",
) -> ReturnLine:
    return ReturnLine.model_validate(
        {
            "line_no": line_no,
            "sku": sku,
            "quantity": quantity,
            "reason": reason,
            "unit_price": wire(price),
            "supplier": supplier,
            "category": category,
        }
    )


def return_requested(
    story: Story, return_id: UUID, order_id: UUID, lines: tuple[ReturnLine, ...], **overrides: Any
) -> Event:
    """A portal request of order WEB-1 by customer C-1, refunded to the original payment."""
    fields: dict[str, Any] = {
        "order_id": order_id,
        "order_number": "WEB-1",
        "customer_id": "C-1",
        "channel": "portal",
        "order_channel": "web",
        "method": "carrier_drop_off",
        "refund_method": "original_payment",
        "currency": "EUR",
        "lines": lines,
    }
    return story.add(ReturnRequested, return_id, **{**fields, **overrides})


def decision(line_no: int = 1, fee: str = "0.00", accepted: bool = True) -> dict[str, Any]:
    return {
        "line_no": line_no,
        "accepted": accepted,
        "code": "accepted" if accepted else "outside_return_window",
        "within_window": accepted,
        "under_warranty": False,
        "restocking_fee": wire(fee),
        "terms": {
            "window_days": 30,
            "warranty_months": 24,
            "restocking_fee_rate": "0.10",
            "late_change_of_mind_days": 14,
            "returnable": True,
        },
    }


# ---------------------------------------------------------------- the tests
def test_an_event_is_read_from_the_relayed_cloud_event() -> None:
    from domain.events import StockAdjusted

    story = Story()
    inventory = uid("inv")
    event = story.add(
        StockAdjusted,
        inventory,
        sku="SKU-1",
        location_id="WH-1",
        delta=-2,
        reason="x",
        adjustment_id="A",
    )
    assert event.id == f"{inventory}:1"
    assert (event.type, event.kind, event.version, event.position) == (
        "inventory.adjusted",
        "inventory",
        1,
        1,
    )
    assert event.time == T0 and event.data["delta"] == -2


def test_a_message_that_is_not_a_relayed_event_is_refused() -> None:
    with pytest.raises(ValueError, match="not a relayed domain event"):
        Event.from_cloud_event({"id": "x", "type": "rma.closed", "data": {}})


def test_merging_sums_increments_dedupes_appends_and_keeps_the_earliest_rebase() -> None:
    key = {"sku": "A", "location_id": "L"}
    merged = merge(
        [
            Increment("levels", key, {"available": 2}),
            Increment(
                "levels", dict(reversed(list(key.items()))), {"available": -5, "scrapped": 1}
            ),
            Append("moves", "e:1", {"delta": 2}),
            Append("moves", "e:1", {"delta": 99}),
            Rebase("levels", key, 7),
            Rebase("levels", key, 3),
            Upsert("levels", key, {"counted": 4}),
            Upsert("levels", key, {"counted": 6, "counted_position": 3}),
        ]
    )
    (row,) = merged.increments["levels"].values()
    assert row == {"sku": "A", "location_id": "L", "available": -3, "scrapped": 1}
    assert list(merged.appends["moves"].values()) == [{"id": "e:1", "delta": 2}]
    assert list(merged.rebases["levels"].values()) == [3]
    (upserted,) = merged.upserts["levels"].values()
    assert upserted["counted"] == 6 and upserted["counted_position"] == 3


def test_a_column_both_set_and_incremented_in_one_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="both set and incremented"):
        merge([Upsert("t", {"k": 1}, {"n": 5}), Increment("t", {"k": 1}, {"n": 1})])


@pytest.mark.parametrize(
    ("total", "weights"),
    [
        ("100.00", ["1", "1", "1"]),
        ("0.05", ["3", "1"]),
        ("-10.01", ["2", "5", "0"]),
        ("7.00", ["0", "0"]),
    ],
)
def test_a_split_adds_up_to_the_cent(total: str, weights: list[str]) -> None:
    parts = split_pro_rata(Decimal(total), [Decimal(w) for w in weights])
    assert sum(parts, Decimal(0)) == Decimal(total)
    assert all(p == p.quantize(Decimal("0.01")) for p in parts)


def test_a_redelivered_event_changes_nothing_and_the_given_state_is_never_mutated() -> None:
    from domain.events import RefundRequested

    story = Story()
    rma = uid("rma")
    event = story.add(
        RefundRequested,
        rma,
        refund_id="RF-1",
        amount=eur("10.00"),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        allocations=({"payment_id": "P", "method": "card", "amount": wire("10.00")},),
    )
    ledger = RefundLedger()
    state, changes = ledger.reduce(None, event)
    assert state is not None and state["version"] == 1 and changes
    frozen = orjson.dumps(state)
    again, nothing = ledger.reduce(state, event)
    assert again is state and nothing == []
    assert orjson.dumps(state) == frozen


def test_the_in_memory_model_applies_a_batch_once_however_often_it_is_given() -> None:
    from domain.events import RefundRequested, RefundSettled

    story = Story()
    rma = uid("rma-twice")
    story.add(
        RefundRequested,
        rma,
        refund_id="RF-1",
        amount=eur("10.00"),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        allocations=({"payment_id": "P", "method": "card", "amount": wire("10.00")},),
    )
    story.add(RefundSettled, rma, refund_id="RF-1", provider_reference="psp", amount=eur("10.00"))
    once = InMemoryReadModel(RefundLedger())
    once.apply(story.events)
    twice = InMemoryReadModel(RefundLedger())
    twice.apply(story.events)
    twice.apply(story.events)
    twice.apply(story.events[:1])
    assert twice.tables == once.tables and twice.states == once.states


def assert_folds_like_reduce(projection: Projection, events: Sequence[Event]) -> None:
    """``reduce_all`` (what the store and a rebuild run) against ``reduce`` event by event
    (the pure definition): same states, same changes, and the events left untouched
    (several projections read the same events of a batch one after another)."""
    before = [orjson.dumps(event.data) for event in events]
    states: dict[str, State] = {}
    expected: list[Any] = []
    for event in [*events, *events[:3]]:  # the tail again: a redelivery
        new, produced = projection.reduce(states.get(event.aggregate_id), event)
        if new is not None:
            states[event.aggregate_id] = new
        expected += produced
    folded: dict[str, State] = {}
    got = reduce_all(projection, folded, events)
    got += reduce_all(projection, folded, events[:3])
    assert orjson.dumps(folded, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        states, option=orjson.OPT_SORT_KEYS
    )
    assert got == expected
    assert [orjson.dumps(event.data) for event in events] == before


def test_folding_in_place_equals_reducing_event_by_event_for_every_projection() -> None:
    from domain.events import RefundRequested, RefundSettled

    story = Story()
    rma = uid("rma-fold")
    return_requested(story, rma, uid("order-fold"), (return_line(1, "SKU-1", 2),))
    story.add(
        RefundRequested,
        rma,
        refund_id="RF-1",
        amount=eur("10.00"),
        restocking_fee=eur("1.00"),
        shipping_refund=eur("0.00"),
        allocations=({"payment_id": "P", "method": "card", "amount": wire("10.00")},),
    )
    story.add(RefundSettled, rma, refund_id="RF-1", provider_reference="psp", amount=eur("10.00"))
    for projection in default_projections():
        assert_folds_like_reduce(projection, story.events)
