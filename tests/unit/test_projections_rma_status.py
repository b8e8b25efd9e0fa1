"""RMA status and timeline: the status the Return aggregate itself would report."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

import pytest

from domain.events import (
    BlindReturnDetected,
    BlindReturnMatched,
    InspectedItem,
    ItemsInspected,
    KeepItemAccepted,
    KeepItemOffered,
    ReceivedItem,
    RefundFailed,
    RefundRequested,
    RefundSettled,
    ReturnAuthorized,
    ReturnClosed,
    ReturnEvent,
    ReturnExpired,
    ReturnHeldForReview,
    ReturnLabelIssued,
    ReturnParcelReceived,
    ReturnRequested,
    ReturnResolutionChanged,
    ReturnUnexpectedParcelReceived,
    StoreCreditIssued,
)
from domain.order import Order
from domain.returns import Return
from projections.core import InMemoryReadModel, key_of
from projections.rma_status import RmaStatus
from tests.unit.builders import (
    BOOK,
    CAUSE,
    T0,
    Story,
    blind_parcel,
    day,
    decide,
    decision,
    delivered_order,
    eur,
    inspect,
    issue_store_credit,
    line,
    receive,
    relayed,
    request_refund,
    requested_return,
    return_line,
    uid,
    wants,
    wire,
)

RMA, BLIND = uid("status-rma"), uid("status-blind")


def status_row(model: InMemoryReadModel, return_id: UUID) -> dict[str, Any]:
    return model.tables["rm_rma_status"][key_of({"return_id": str(return_id)})]


def requested(story: Story) -> None:
    story.add(
        ReturnRequested,
        RMA,
        order_id=uid("order"),
        order_number="WEB-1",
        customer_id="C-1",
        channel="portal",
        order_channel="web",
        method="relay_point",
        refund_method="original_payment",
        currency="EUR",
        lines=(return_line(1, "SKU-1", 2, price="40.00"),),
    )


def authorized(story: Story) -> None:
    story.add(
        ReturnAuthorized,
        RMA,
        rma_number="RMA-7K2Q-M4XD",
        destination_warehouse="WH-RET",
        label_reference="LBL-1",
        instructions="pack",
        expected_refund=eur("80.00"),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        decisions=(decision(1),),
    )


def full_life(story: Story) -> None:
    requested(story)
    story.add(ReturnHeldForReview, RMA, reason="big", decisions=(decision(1),))
    authorized(story)
    story.add(ReturnLabelIssued, RMA, label_reference="LBL-1-R3", carrier="dhl")
    story.add(
        ReturnParcelReceived,
        RMA,
        receipt_id="R1",
        warehouse_id="WH-RET",
        items=(ReceivedItem(sku="SKU-1", quantity=2),),
    )
    story.add(
        ItemsInspected,
        RMA,
        receipt_id="R1",
        items=(
            InspectedItem.model_validate(
                {
                    "sku": "SKU-1",
                    "quantity": 2,
                    "condition": "new",
                    "disposition": "restock",
                    "line_no": 1,
                    "location_id": "WH-RET",
                }
            ),
        ),
        refund_due=eur("80.00"),
    )
    for refund_id in ("RF-1", "RF-2"):
        story.add(
            RefundRequested,
            RMA,
            refund_id=refund_id,
            amount=eur("80.00"),
            restocking_fee=eur("0.00"),
            shipping_refund=eur("0.00"),
            allocations=({"payment_id": "P", "method": "card", "amount": wire("80.00")},),
        )
        if refund_id == "RF-1":
            story.add(RefundFailed, RMA, refund_id="RF-1", reason="expired card")
    story.add(RefundSettled, RMA, refund_id="RF-2", provider_reference="psp", amount=eur("80.00"))
    story.add(ReturnClosed, RMA, outcome="refunded")


def mirrors_the_aggregate(story: Story, return_id: UUID) -> InMemoryReadModel:
    """Applies the story event by event, checking the status against ``Return.apply``."""
    model = InMemoryReadModel(RmaStatus())
    aggregate_events = cast(list[ReturnEvent], story.domain_events)
    for n, event in enumerate(story.events, start=1):
        model.apply([event])
        expected = Return.replay(return_id, aggregate_events[:n]).state.status.value
        assert status_row(model, return_id)["status"] == expected, event.type
    return model


def test_the_status_follows_the_aggregate_through_a_whole_life() -> None:
    story = Story()
    full_life(story)
    model = mirrors_the_aggregate(story, RMA)
    row = status_row(model, RMA)
    assert row["rma_number"] == "RMA-7K2Q-M4XD" and row["label_reference"] == "LBL-1-R3"
    assert (row["refund_due"], row["refunded"]) == (Decimal("80.00"), Decimal("80.00"))
    assert row["closed_outcome"] == "refunded" and row["closed_at"] is not None
    assert row["version"] == len(story.events) and row["last_event"] == "rma.closed"
    timeline = sorted(model.rows("rm_rma_timeline"), key=lambda r: r["version"])
    assert [r["event_type"] for r in timeline] == [e.type for e in story.events]
    assert timeline[0]["actor"] == "agent-7" and timeline[-1]["status"] == "closed"


def test_a_blind_parcel_has_no_rma_number_until_it_is_matched() -> None:
    story = Story()
    story.add(
        BlindReturnDetected,
        BLIND,
        receipt_id="RB",
        warehouse_id="WH-RET",
        items=(ReceivedItem(sku="SKU-1", quantity=1),),
    )
    model = mirrors_the_aggregate(story, BLIND)
    row = status_row(model, BLIND)
    assert (row["status"], row["blind"], row["rma_number"]) == ("blind_unmatched", True, None)
    assert RmaStatus().message_key("rm_rma_status", row) == str(BLIND)
    story.add(
        BlindReturnMatched,
        BLIND,
        order_id=uid("order"),
        order_number="WEB-1",
        customer_id="C-1",
        order_channel="web",
        currency="EUR",
        matched_by="order",
        rma_number="RMA-AAAA-BBBB",
        lines=(return_line(),),
        decisions=(decision(1, "5.00"),),
        restocking_fee=eur("5.00"),
    )
    model.apply(story.events[-1:])
    row = status_row(model, BLIND)
    assert (row["status"], row["rma_number"], row["customer_id"]) == (
        "received",
        "RMA-AAAA-BBBB",
        "C-1",
    )
    assert row["restocking_fee"] == Decimal("5.00")


def test_keep_item_expiry_and_late_parcels_mirror_the_aggregate() -> None:
    story = Story()
    requested(story)
    authorized(story)
    story.add(KeepItemOffered, RMA, refund_amount=eur("20.00"), expires_at=T0)
    story.add(KeepItemAccepted, RMA)
    story.add(
        RefundRequested,
        RMA,
        refund_id="RF-K",
        amount=eur("20.00"),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        allocations=({"payment_id": "P", "method": "card", "amount": wire("20.00")},),
        keep_item=True,
    )
    story.add(RefundSettled, RMA, refund_id="RF-K", provider_reference="psp", amount=eur("20.00"))
    mirrors_the_aggregate(story, RMA)

    other = Story()
    requested(other)
    authorized(other)
    other.add(ReturnExpired, RMA, authorized_days=31)
    other.add(
        ReturnUnexpectedParcelReceived,
        RMA,
        receipt_id="R9",
        warehouse_id="WH-RET",
        items=(ReceivedItem(sku="SKU-1", quantity=1),),
        state_at_arrival="expired",
    )
    late = mirrors_the_aggregate(other, RMA)
    # The late parcel's goods open a blind return of their own; this RMA stays expired.
    assert status_row(late, RMA)["status"] == "expired"


def test_store_credit_paid_in_two_parts_adds_up() -> None:
    story = Story()
    requested(story)
    authorized(story)
    story.add(
        ReturnParcelReceived,
        RMA,
        receipt_id="R1",
        warehouse_id="WH-RET",
        items=(ReceivedItem(sku="SKU-1", quantity=1),),
    )
    for credit in ("SC-1", "SC-2"):
        story.add(
            StoreCreditIssued,
            RMA,
            credit_id=credit,
            amount=eur("40.00"),
            bonus=eur("4.00"),
            restocking_fee=eur("0.00"),
        )
    model = mirrors_the_aggregate(story, RMA)
    assert status_row(model, RMA)["store_credit"] == Decimal("88.00")


def test_a_duplicate_writes_nothing() -> None:
    story = Story()
    requested(story)
    model = InMemoryReadModel(RmaStatus())
    model.apply(story.events)
    assert len(model.apply(story.events)) == 0


def test_a_changed_resolution_is_the_refund_method_shown() -> None:
    story = Story()
    requested(story)
    authorized(story)
    story.add(
        ReturnResolutionChanged,
        RMA,
        from_refund_method="original_payment",
        to_refund_method="store_credit",
        reason="customer called",
    )
    model = mirrors_the_aggregate(story, RMA)
    row = status_row(model, RMA)
    assert (row["refund_method"], row["status"]) == ("store_credit", "authorized")
    assert row["last_event"] == "rma.resolution_changed"
    last = max(model.rows("rm_rma_timeline"), key=lambda r: r["version"])
    assert last["summary"] == {"to_refund_method": "store_credit", "reason": "customer called"}


# ---------------------------------------------------------------- histories the domain emits
def settled_life(rma: Return) -> None:
    """Inspected: two refunds in flight at once, one fails, its amount asked for again."""
    due = rma.items_due_unpaid().amount + rma.shipping_due_unpaid().amount
    half = (due / 2).quantize(Decimal("0.01"))
    request_refund(rma, str(half), "RF-1")
    request_refund(rma, str(due - half), "RF-2")
    rma.settle_refund("RF-1", "psp-1", eur(str(half)), day(17), CAUSE)
    rma.fail_refund("RF-2", "card expired", day(17), CAUSE)
    request_refund(rma, str(due - half), "RF-3")
    rma.settle_refund("RF-3", "psp-3", eur(str(due - half)), day(18), CAUSE)


def inspected_live(order: Order) -> Return:
    rma = requested_return(order)
    decide(rma, order)
    receive(rma)
    inspect(rma)
    return rma


def refunded(order: Order) -> Return:
    rma = inspected_live(order)
    settled_life(rma)
    return rma


def store_credit(order: Order) -> Return:
    rma = inspected_live(order)
    issue_store_credit(rma, str(rma.items_due_unpaid().amount), bonus="2.00")
    return rma


def kept(order: Order) -> Return:
    rma = requested_return(order)
    decide(rma, order)
    offer = rma.offer_keep_item(BOOK, day(20), day(11), CAUSE)
    rma.accept_keep_item(day(12), CAUSE)
    request_refund(rma, str(offer.amount), "RF-K", keep_item=True, at=day(12))
    rma.fail_refund("RF-K", "card expired", day(13), CAUSE)
    request_refund(rma, str(offer.amount), "RF-K2", keep_item=True, at=day(13))
    rma.settle_refund("RF-K2", "psp", offer, day(14), CAUSE)
    return rma


def cancelled(order: Order) -> Return:
    rma = requested_return(order)
    decide(rma, order)
    rma.cancel("changed my mind", day(11), CAUSE)
    return rma


def expired(order: Order) -> Return:
    rma = requested_return(order)
    decide(rma, order)
    rma.expire(BOOK, day(60), CAUSE)
    receive(rma, at=day(61))
    return rma


def blind(order: Order) -> Return:
    rma = blind_parcel()
    rma.match_blind(
        order=order,
        lines=(wants(),),
        matched_by="agent-7",
        rma_number="RMA-BLND-0001",
        book=BOOK,
        at=day(13),
        cause=CAUSE,
    )
    inspect(rma, receipt_id="RCPT-B1", at=day(14))
    settled_life(rma)
    return rma


@pytest.mark.parametrize(
    "life", [refunded, store_credit, kept, cancelled, expired, blind], ids=lambda f: f.__name__
)
def test_the_reducer_status_equals_the_aggregate_status_on_every_history_it_emits(
    life: Callable[[Order], Return],
) -> None:
    rma = life(delivered_order(line(quantity=2, price="12.00")))
    history = rma.pending_events
    model = InMemoryReadModel(RmaStatus())
    for n, event in enumerate(relayed(history), start=1):
        model.apply([event])
        expected = Return.replay(rma.id, history[:n]).state.status.value
        assert status_row(model, rma.id)["status"] == expected, event.type
    assert status_row(model, rma.id)["status"] == rma.state.status.value
