"""Parcels received against an RMA, their inspection, and returns that arrive in parts.

Given a return's history, when a command, then events or an error. The order of most
tests is ``shop_order`` (tests/unit/builders.py).
"""

from __future__ import annotations

import pytest

from domain.errors import InvalidCommand, InvalidTransition
from domain.events import (
    ItemsInspected,
    RefundRequested,
    RefundSettled,
    ReturnClosed,
    ReturnParcelReceived,
    ReturnUnexpectedParcelReceived,
)
from domain.returns import ReturnStatus
from domain.values import Condition, ReasonCode
from tests.unit.builders import (
    BOOK,
    CAUSE,
    RETURN_ID,
    WAREHOUSE,
    authorized_return,
    day,
    decide,
    eur,
    given,
    inspect,
    inspected,
    inspected_return,
    last,
    receive,
    received,
    received_return,
    request_refund,
    requested_return,
    shop_order,
    snapshot,
    two_item_rma,
    types,
    wants,
)


# ---------------------------------------------------------------- parcels
def test_the_parcel_of_an_authorized_return_is_received() -> None:
    rma = authorized_return(shop_order())
    receive(rma, received("SKU-1", serial="SN-1"))
    assert rma.pending_events == [
        ReturnParcelReceived(
            originator_id=RETURN_ID,
            originator_version=3,
            timestamp=day(15),
            cause=CAUSE,
            receipt_id="RCPT-1",
            warehouse_id=WAREHOUSE,
            tracking_number="TRK-1",
            items=(received("SKU-1", serial="SN-1"),),
        )
    ]
    assert rma.state.status is ReturnStatus.RECEIVED


def test_the_same_receipt_twice_is_recorded_once() -> None:
    rma = received_return(shop_order())
    receive(rma)
    assert rma.pending_events == []


def test_a_parcel_with_no_items_is_refused() -> None:
    rma = authorized_return(shop_order())
    with pytest.raises(InvalidCommand):
        rma.receive_parcel(
            receipt_id="RCPT-1",
            warehouse_id=WAREHOUSE,
            tracking_number=None,
            items=(),
            at=day(15),
            cause=CAUSE,
        )


def test_a_parcel_for_a_cancelled_rma_is_recorded_as_unexpected() -> None:
    order = shop_order()
    rma = requested_return(order)
    decide(rma, order)
    rma.cancel("customer changed her mind", day(11), CAUSE)
    rma = given(rma)
    receive(rma)
    assert rma.pending_events == [
        ReturnUnexpectedParcelReceived(
            originator_id=RETURN_ID,
            originator_version=4,
            timestamp=day(15),
            cause=CAUSE,
            receipt_id="RCPT-1",
            warehouse_id=WAREHOUSE,
            tracking_number="TRK-1",
            items=(received(),),
            state_at_arrival="cancelled",
        )
    ]
    assert rma.state.status is ReturnStatus.CANCELLED
    assert rma.state.received_items == []


def test_a_parcel_for_an_expired_rma_is_recorded_as_unexpected() -> None:
    order = shop_order()
    rma = requested_return(order)
    decide(rma, order)
    assert rma.expire(BOOK, day(40), CAUSE)
    rma = given(rma)
    receive(rma, at=day(41))
    assert (type(last(rma)), last(rma).state_at_arrival) == (
        ReturnUnexpectedParcelReceived,
        "expired",
    )


def test_a_parcel_for_a_rejected_return_is_recorded_as_unexpected() -> None:
    order = shop_order()
    rma = requested_return(order, at=day(40))
    decide(rma, order, at=day(40))
    rma = given(rma)
    receive(rma, at=day(41))
    assert last(rma).state_at_arrival == "rejected"


def test_a_second_parcel_after_the_first_was_inspected_is_received() -> None:
    rma = inspected_return(shop_order(), lines=(wants(quantity=2),))
    assert rma.outstanding_quantity() == 1
    receive(rma, received(serial="SN-2"), receipt_id="RCPT-2", at=day(18))
    assert rma.pending_events == [
        ReturnParcelReceived(
            originator_id=RETURN_ID,
            originator_version=5,
            timestamp=day(18),
            cause=CAUSE,
            receipt_id="RCPT-2",
            warehouse_id=WAREHOUSE,
            tracking_number="TRK-1",
            items=(received(serial="SN-2"),),
        )
    ]
    assert (rma.state.status, rma.outstanding_quantity()) == (ReturnStatus.RECEIVED, 0)
    inspect(rma, receipt_id="RCPT-2", at=day(19))
    assert last(rma).refund_due == eur("40.00")
    assert rma.state.refund_due == eur("80.00")


@pytest.mark.parametrize("stage", ["refund_pending", "refund_failed", "partially_refunded"])
def test_a_second_parcel_is_received_while_the_first_is_being_paid(stage: str) -> None:
    rma = inspected_return(shop_order(), lines=(wants(quantity=2),))
    request_refund(rma, "40.00")
    if stage == "refund_failed":
        rma.fail_refund("RF-1", "card expired", day(17), CAUSE)
    if stage == "partially_refunded":
        rma.settle_refund("RF-1", "PSP-1", eur("40.00"), day(17), CAUSE)
    rma.collect_events()
    assert rma.state.status.value == stage
    receive(rma, receipt_id="RCPT-2", at=day(18))
    assert types(rma) == (ReturnParcelReceived,)
    assert rma.state.status is ReturnStatus.RECEIVED


def test_a_parcel_beyond_the_items_of_the_rma_is_unexpected() -> None:
    rma = inspected_return(shop_order())
    assert rma.outstanding_quantity() == 0
    receive(rma, receipt_id="RCPT-2", at=day(18))
    assert (type(last(rma)), last(rma).state_at_arrival) == (
        ReturnUnexpectedParcelReceived,
        "inspected",
    )
    assert rma.state.status is ReturnStatus.INSPECTED
    assert rma.outstanding_quantity() == 0


def test_a_refund_in_flight_settles_after_an_unexpected_parcel_as_if_none_came() -> None:
    surprised, calm = inspected_return(shop_order()), inspected_return(shop_order())
    for rma in (surprised, calm):
        request_refund(rma, "40.00", at=day(17))
    receive(surprised, receipt_id="RCPT-2", at=day(18))
    for rma in (surprised, calm):
        rma.collect_events()
        rma.settle_refund("RF-1", "PSP-1", eur("40.00"), day(19), CAUSE)
    assert surprised.state.status is calm.state.status is ReturnStatus.CLOSED
    assert surprised.paid_out() == calm.paid_out() == eur("40.00")


def test_an_unexpected_receipt_is_not_inspected_under_the_rma_it_came_for() -> None:
    rma = inspected_return(shop_order())
    receive(rma, receipt_id="RCPT-2", at=day(18))
    rma.collect_events()
    with pytest.raises(InvalidCommand, match="blind return"):
        inspect(rma, inspected("SKU-1"), receipt_id="RCPT-2")
    assert rma.pending_events == []


# ---------------------------------------------------------------- inspection
def test_inspecting_a_received_parcel_sets_the_refund_due() -> None:
    rma = received_return(shop_order())
    inspect(rma, inspected("SKU-1", serial="SN-1"))
    assert rma.pending_events == [
        ItemsInspected(
            originator_id=RETURN_ID,
            originator_version=4,
            timestamp=day(16),
            cause=CAUSE,
            receipt_id="RCPT-1",
            items=(inspected("SKU-1", serial="SN-1", line_no=1),),
            refund_due=eur("40.00"),
        )
    ]
    assert (rma.state.status, rma.state.refund_due) == (ReturnStatus.INSPECTED, eur("40.00"))


@pytest.mark.parametrize(
    ("condition", "due"),
    [
        (Condition.NEW, "40.00"),
        (Condition.RESELLABLE, "40.00"),
        (Condition.DEFECTIVE, "40.00"),
        (Condition.DAMAGED, "20.00"),
        (Condition.MISSING_PARTS, "20.00"),
        (Condition.WRONG_ITEM, "0.00"),
    ],
)
def test_a_customer_at_fault_is_refunded_by_the_condition_found(
    condition: Condition, due: str
) -> None:
    rma = received_return(shop_order(), wants(reason=ReasonCode.SIZE_TOO_LARGE))
    inspect(rma, inspected(condition=condition))
    assert last(rma).refund_due == eur(due)


@pytest.mark.parametrize("condition", [Condition.DAMAGED, Condition.MISSING_PARTS])
def test_a_seller_fault_is_refunded_in_full_whatever_the_condition_and_owes_shipping(
    condition: Condition,
) -> None:
    rma = received_return(shop_order(), wants(reason=ReasonCode.DAMAGED_IN_TRANSIT))
    assert rma.shipping_due_unpaid() == eur("0.00")  # nothing inspected yet
    inspect(rma, inspected(condition=condition))
    assert last(rma).refund_due == eur("40.00")  # the items only
    assert (rma.items_due_unpaid(), rma.shipping_due_unpaid()) == (eur("40.00"), eur("5.00"))


def test_an_item_found_to_be_the_wrong_item_earns_nothing_but_shipping_is_still_owed() -> None:
    rma = received_return(shop_order(), wants(reason=ReasonCode.WRONG_ITEM))
    inspect(rma, inspected(condition=Condition.WRONG_ITEM))
    assert last(rma).refund_due == eur("0.00")
    assert (rma.items_due_unpaid(), rma.shipping_due_unpaid()) == (eur("0.00"), eur("5.00"))


def test_the_restocking_fee_is_taken_off_at_inspection() -> None:
    order = shop_order()
    rma = requested_return(order, wants(quantity=2), at=day(20))
    decide(rma, order, at=day(20))
    receive(rma, received(quantity=2), at=day(22))
    rma = given(rma)
    inspect(rma, inspected(quantity=2), at=day(23))
    assert last(rma).refund_due == eur("72.00")


def test_shipping_is_owed_once_however_many_parcels_are_inspected() -> None:
    order = shop_order()
    rma = requested_return(order, wants(quantity=2, reason=ReasonCode.DEFECTIVE))
    decide(rma, order)
    receive(rma, receipt_id="RCPT-1")
    receive(rma, receipt_id="RCPT-2")
    rma = given(rma)
    inspect(rma, receipt_id="RCPT-1")
    assert rma.shipping_due_unpaid() == eur("5.00")
    inspect(rma, receipt_id="RCPT-2")
    assert [e.refund_due for e in rma.pending_events] == [  # type: ignore[attr-defined]
        eur("40.00"),
        eur("40.00"),
    ]
    assert rma.state.refund_due == eur("80.00")
    assert (rma.items_due_unpaid(), rma.shipping_due_unpaid()) == (eur("80.00"), eur("5.00"))


def test_items_are_tied_to_their_return_line_by_serial_first_then_by_sku() -> None:
    order = shop_order()
    rma = requested_return(order, wants(1, serial="SN-2"), wants(2))
    decide(rma, order)
    receive(rma, received("SKU-1", serial="SN-2"), received("SKU-2"))
    rma = given(rma)
    inspect(rma, inspected("OTHER-SKU", serial="SN-2"), inspected("SKU-2"), inspected("UNKNOWN"))
    assert [item.line_no for item in last(rma).items] == [1, 2, None]
    assert last(rma).refund_due == eur("50.00")


def test_more_items_than_the_line_are_refunded_only_up_to_the_line() -> None:
    rma = received_return(shop_order())
    inspect(rma, inspected(quantity=3))
    assert last(rma).refund_due == eur("40.00")


def test_an_item_assigned_to_a_line_outside_the_return_is_refused() -> None:
    rma = received_return(shop_order())
    with pytest.raises(InvalidCommand, match=r"has no line 2"):
        inspect(rma, inspected(line_no=2))


def test_nothing_is_inspected_before_a_parcel_arrives() -> None:
    rma = authorized_return(shop_order())
    with pytest.raises(InvalidTransition):
        inspect(rma, receipt_id=None)


def test_a_receipt_never_received_cannot_be_inspected() -> None:
    rma = received_return(shop_order())
    with pytest.raises(InvalidCommand, match=r"RCPT-9 was not received"):
        inspect(rma, receipt_id="RCPT-9")


def test_a_receipt_is_inspected_only_once() -> None:
    rma = inspected_return(shop_order())
    before = snapshot(rma)
    with pytest.raises(InvalidTransition, match=r"already inspected"):
        inspect(rma)
    assert snapshot(rma) == before


def test_an_inspection_lists_at_least_one_item() -> None:
    rma = received_return(shop_order())
    with pytest.raises(InvalidCommand):
        rma.inspect(receipt_id="RCPT-1", items=(), book=BOOK, at=day(16), cause=CAUSE)


# ---------------------------------------------------------------- partial parcels
def test_two_parcels_each_inspected_and_refunded_close_the_return_after_the_second() -> None:
    rma = two_item_rma()
    receive(rma, received(serial="SN-1"), receipt_id="RCPT-1", at=day(15))
    inspect(rma, inspected(serial="SN-1"), receipt_id="RCPT-1", at=day(16))
    request_refund(rma, "40.00", "RF-1", at=day(16))
    rma.settle_refund("RF-1", "PSP-1", eur("40.00"), day(17), CAUSE)
    assert (rma.state.status, rma.outstanding_quantity()) == (
        ReturnStatus.PARTIALLY_REFUNDED,
        1,
    )
    receive(rma, received(serial="SN-2"), receipt_id="RCPT-2", at=day(20))
    inspect(rma, inspected(serial="SN-2"), receipt_id="RCPT-2", at=day(21))
    request_refund(rma, "40.00", "RF-2", at=day(21))
    rma.settle_refund("RF-2", "PSP-2", eur("40.00"), day(22), CAUSE)
    assert [(type(e), e.originator_version) for e in rma.pending_events] == [
        (ReturnParcelReceived, 3),
        (ItemsInspected, 4),
        (RefundRequested, 5),
        (RefundSettled, 6),
        (ReturnParcelReceived, 7),
        (ItemsInspected, 8),
        (RefundRequested, 9),
        (RefundSettled, 10),
        (ReturnClosed, 11),
    ]
    dues = [e.refund_due for e in rma.pending_events if isinstance(e, ItemsInspected)]
    assert dues == [eur("40.00"), eur("40.00")]
    assert last(rma) == ReturnClosed(
        originator_id=RETURN_ID,
        originator_version=11,
        timestamp=day(22),
        cause=CAUSE,
        outcome="refunded",
    )
    assert (rma.state.refund_due, rma.paid_out()) == (eur("80.00"), eur("80.00"))


def test_the_second_parcel_may_be_inspected_while_the_first_refund_is_pending() -> None:
    rma = two_item_rma(ReasonCode.DEFECTIVE)
    receive(rma, receipt_id="RCPT-1", at=day(15))
    inspect(rma, receipt_id="RCPT-1", at=day(16))
    request_refund(rma, "45.00", "RF-1", shipping="5.00", at=day(16))
    receive(rma, receipt_id="RCPT-2", at=day(17))
    inspect(rma, receipt_id="RCPT-2", at=day(18))
    request_refund(rma, "40.00", "RF-2", at=day(18))
    rma.collect_events()
    rma.settle_refund("RF-2", "PSP-2", eur("40.00"), day(19), CAUSE)
    assert types(rma) == (RefundSettled,)  # RF-1 still requested
    assert rma.state.status is ReturnStatus.REFUND_PENDING
    rma.settle_refund("RF-1", "PSP-1", eur("45.00"), day(20), CAUSE)
    assert types(rma) == (RefundSettled, RefundSettled, ReturnClosed)
    assert (rma.paid_out(), rma.shipping_paid()) == (eur("85.00"), eur("5.00"))


def test_a_refund_settled_while_items_are_still_on_their_way_leaves_it_partly_refunded() -> None:
    rma = inspected_return(shop_order(), lines=(wants(quantity=2),))
    request_refund(rma, "40.00")
    rma.collect_events()
    rma.settle_refund("RF-1", "PSP-1", eur("40.00"), day(18), CAUSE)
    assert types(rma) == (RefundSettled,)
    assert rma.state.status is ReturnStatus.PARTIALLY_REFUNDED


def test_a_refund_of_part_of_the_items_due_leaves_the_return_partly_refunded() -> None:
    rma = inspected_return(shop_order())
    request_refund(rma, "25.00", "RF-1")
    rma.settle_refund("RF-1", "PSP-1", eur("25.00"), day(17), CAUSE)
    assert rma.state.status is ReturnStatus.PARTIALLY_REFUNDED
    request_refund(rma, "15.00", "RF-2", at=day(18))
    rma.collect_events()
    rma.settle_refund("RF-2", "PSP-2", eur("15.00"), day(19), CAUSE)
    assert types(rma) == (RefundSettled, ReturnClosed)


def test_shipping_left_unpaid_does_not_keep_the_return_open() -> None:
    rma = inspected_return(shop_order(), lines=(wants(reason=ReasonCode.DEFECTIVE),))
    request_refund(rma, "40.00")
    rma.collect_events()
    rma.settle_refund("RF-1", "PSP-1", eur("40.00"), day(18), CAUSE)
    assert types(rma) == (RefundSettled, ReturnClosed)
    assert rma.shipping_due_unpaid() == eur("5.00")  # the order may have paid it elsewhere


def test_a_received_parcel_not_yet_inspected_keeps_the_return_open() -> None:
    rma = two_item_rma()
    receive(rma, receipt_id="RCPT-1", at=day(15))
    inspect(rma, receipt_id="RCPT-1", at=day(16))
    request_refund(rma, "40.00", "RF-1", at=day(16))
    receive(rma, receipt_id="RCPT-2", at=day(17))
    rma.collect_events()
    rma.settle_refund("RF-1", "PSP-1", eur("40.00"), day(18), CAUSE)
    assert types(rma) == (RefundSettled,)
    assert rma.state.status is not ReturnStatus.CLOSED
    inspect(rma, receipt_id="RCPT-2", at=day(19))
    assert rma.items_due_unpaid() == eur("40.00")
