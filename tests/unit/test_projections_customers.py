"""Customer history: counts, money per currency, the timeline and the serial-returner flag."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from domain.events import (
    BlindReturnDetected,
    BlindReturnMatched,
    InStoreReturnRecorded,
    OrderCancelled,
    OrderDelivered,
    OrderPlaced,
    OrderReturnReserved,
    ReceivedItem,
    RefundRequested,
    RefundSettled,
    ReturnAuthorized,
    ReturnParcelReceived,
    ReturnRejected,
    StoreCreditIssued,
)
from projections.core import InMemoryReadModel, key_of
from projections.customers import CustomerHistory
from tests.unit.builders import (
    T0,
    Story,
    decision,
    eur,
    return_line,
    return_requested,
    uid,
    wire,
)
from tests.unit.builders import story_line as line
from tests.unit.builders import story_payment as payment

ORDER, OTHER_ORDER, RMA, BLIND, STORE_RMA = (
    uid("o1"),
    uid("o2"),
    uid("r1"),
    uid("blind"),
    uid("store"),
)


def customer(model: InMemoryReadModel, customer_id: str = "C-1") -> dict[str, Any]:
    return model.tables["rm_customers"][key_of({"customer_id": customer_id})]


def money_of(model: InMemoryReadModel, customer_id: str = "C-1") -> dict[str, Any]:
    return model.tables["rm_customer_money"][
        key_of({"customer_id": customer_id, "currency": "EUR"})
    ]


def order(story: Story, aggregate: Any, number: str, quantity: int, *payments: Any) -> None:
    story.add(
        OrderPlaced,
        aggregate,
        order_number=number,
        customer_id="C-1",
        channel="web",
        currency="EUR",
        lines=(line(1, "SKU-1", quantity, "20.00"),),
        payments=payments,
        shipping=eur("0.00"),
    )


def requested(story: Story, quantity: int = 1) -> None:
    return_requested(story, RMA, ORDER, (return_line(1, "SKU-1", quantity, price="20.00"),))


def test_orders_count_what_was_bought_and_a_cancellation_takes_it_back() -> None:
    story = Story()
    order(story, ORDER, "WEB-1", 3, payment("40.00"), payment("20.00", "store_credit", "P2"))
    story.add(OrderDelivered, ORDER, delivered_at=T0)
    story.add(OrderReturnReserved, ORDER, return_id=RMA, quantities={1: 1})
    order(story, OTHER_ORDER, "WEB-2", 2, payment("40.00"))
    story.add(OrderCancelled, OTHER_ORDER, reason="out of stock")
    model = InMemoryReadModel(CustomerHistory())
    model.apply(story.events)
    counts = customer(model)
    assert (counts["orders"], counts["cancelled_orders"], counts["items_bought"]) == (2, 1, 3)
    money = money_of(model)
    assert money["spent"] == Decimal("60.00") and money["store_credit_spent"] == Decimal("20.00")
    kinds = [row["event_type"] for row in model.rows("rm_customer_timeline")]
    assert sorted(kinds) == sorted(
        ["order.placed", "order.delivered", "order.placed", "order.cancelled"]
    )


def test_returned_items_are_counted_when_they_come_back_and_refunds_when_they_are_paid() -> None:
    story = Story()
    order(story, ORDER, "WEB-1", 2, payment("30.00"), payment("10.00", "store_credit", "P2"))
    requested(story, 2)
    story.add(
        ReturnParcelReceived,
        RMA,
        receipt_id="R1",
        warehouse_id="WH-1",
        items=(ReceivedItem(sku="SKU-1", quantity=2),),
    )
    story.add(
        RefundRequested,
        RMA,
        refund_id="RF-1",
        amount=eur("40.00"),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        allocations=(
            {"payment_id": "P1", "method": "card", "amount": wire("30.00")},
            {"payment_id": "P2", "method": "store_credit", "amount": wire("10.00")},
        ),
    )
    model = InMemoryReadModel(CustomerHistory())
    model.apply(story.events)
    assert money_of(model).get("refunded", 0) == 0  # paid when settled, not when asked
    story.add(RefundSettled, RMA, refund_id="RF-1", provider_reference="psp", amount=eur("40.00"))
    model.apply(story.events[-1:])
    counts, money = customer(model), money_of(model)
    assert (counts["returns"], counts["items_returned"]) == (1, 2)
    assert money["refunded"] == Decimal("40.00")
    assert money["store_credit_refunded"] == Decimal("10.00")


def test_a_rejected_request_is_counted_apart() -> None:
    story = Story()
    order(story, ORDER, "WEB-1", 1, payment("20.00"))
    requested(story)
    story.add(
        ReturnRejected,
        RMA,
        code="outside_return_window",
        reason="late",
        decisions=(decision(1, accepted=False),),
    )
    model = InMemoryReadModel(CustomerHistory())
    model.apply(story.events)
    assert (customer(model)["returns"], customer(model)["rejected_returns"]) == (1, 1)


def test_a_blind_parcel_is_attributed_when_matched_and_a_store_return_at_once() -> None:
    story = Story()
    order(story, ORDER, "WEB-1", 3, payment("60.00"))
    story.add(
        BlindReturnDetected,
        BLIND,
        receipt_id="RB",
        warehouse_id="WH-1",
        items=(ReceivedItem(sku="SKU-1", quantity=1),),
    )
    model = InMemoryReadModel(CustomerHistory())
    model.apply(story.events)
    assert model.rows("rm_customer_timeline")[-1]["event_type"] == "order.placed"
    story.add(
        BlindReturnMatched,
        BLIND,
        order_id=ORDER,
        order_number="WEB-1",
        customer_id="C-1",
        order_channel="web",
        currency="EUR",
        matched_by="serial",
        rma_number="RMA-AAAA-BBBB",
        lines=(return_line(1, "SKU-1", 1, price="20.00"),),
        decisions=(decision(1, fee="2.00"),),
        restocking_fee=eur("2.00"),
    )
    story.add(
        InStoreReturnRecorded,
        STORE_RMA,
        store_return_id="S1",
        store_id="ST-1",
        staff_id="clerk",
        order_id=ORDER,
        order_number="WEB-1",
        customer_id="C-1",
        order_channel="web",
        rma_number="RMA-CCCC-DDDD",
        currency="EUR",
        refund_method="store_credit",
        lines=(return_line(1, "SKU-1", 1, price="20.00"),),
        decisions=(decision(1),),
        restocking_fee=eur("0.00"),
    )
    story.add(
        StoreCreditIssued,
        STORE_RMA,
        credit_id="SC-1",
        amount=eur("20.00"),
        bonus=eur("2.00"),
        restocking_fee=eur("0.00"),
        code="SC-ABCDEFGHJKMN",
    )
    model.apply(story.events[-3:])
    counts = customer(model)
    assert counts["returns"] == 2 and counts["blind_returns"] == 1
    assert counts["in_store_returns"] == 1 and counts["items_returned"] == 2
    assert money_of(model)["store_credit_issued"] == Decimal("22.00")
    timeline = model.rows("rm_customer_timeline")
    assert {row["id"] for row in timeline} == {
        e.id for e in story.events if e.aggregate_id != str(BLIND) or e.version > 1
    }
    issued = next(r for r in timeline if r["event_type"] == "rma.store_credit_issued")
    assert issued["summary"]["amount"] == wire("20.00")
    # The code spends the credit: the timeline (read by analytics too) never copies it.
    assert "code" not in issued["summary"]


def test_the_serial_returner_thresholds_are_part_of_the_schema() -> None:
    strict = CustomerHistory(min_returns=5, min_return_rate="0.75")
    (customers, *_) = strict.tables
    flag = customers.column("serial_returner").generated or ""
    assert ">= 5" in flag and ">= 0.75" in flag
    with pytest.raises(ValueError):
        CustomerHistory(min_returns=-1)


def test_an_authorization_is_only_a_timeline_entry() -> None:
    story = Story()
    requested(story)
    story.add(
        ReturnAuthorized,
        RMA,
        rma_number="RMA-7K2Q-M4XD",
        destination_warehouse="WH-1",
        label_reference="L",
        instructions="i",
        expected_refund=eur("20.00"),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        decisions=(decision(1),),
    )
    model = InMemoryReadModel(CustomerHistory())
    merged = model.apply(story.events)
    assert [r["event_type"] for r in model.rows("rm_customer_timeline")].count(
        "rma.authorized"
    ) == 1
    assert len(merged.increments["rm_customers"]) == 1
