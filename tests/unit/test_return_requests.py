"""Return requests: the request, the decision against the policy, the hold for review,
and the label.

Given a return's history, when a command, then events or an error. The order of most
tests is ``shop_order`` (tests/unit/builders.py).
"""

from __future__ import annotations

import pytest

from domain.errors import InvalidCommand, InvalidTransition
from domain.events import (
    ReturnAuthorized,
    ReturnHeldForReview,
    ReturnLabelIssued,
    ReturnLine,
    ReturnRejected,
    ReturnRequested,
)
from domain.returns import RequestedLine, Return, ReturnStatus
from domain.values import Channel, ReasonCode, RefundMethod, ReturnChannel, ReturnMethod
from tests.unit.builders import (
    BOOK,
    CAUSE,
    LABEL,
    ORDER_ID,
    RETURN_ID,
    RMA,
    WAREHOUSE,
    OrderHistory,
    allocation,
    authorized_return,
    day,
    decide,
    eur,
    expensive_order,
    given,
    last,
    line,
    requested_return,
    shop_history,
    shop_order,
    store_sale,
    wants,
)


# ---------------------------------------------------------------- request
def test_requesting_a_return_records_the_lines_enriched_from_the_order() -> None:
    rma = requested_return(
        shop_order(), wants(1, 1, ReasonCode.SIZE_TOO_SMALL, serial="SN-2"), at=day(9)
    )
    assert rma.pending_events == [
        ReturnRequested(
            originator_id=RETURN_ID,
            originator_version=1,
            timestamp=day(9),
            cause=CAUSE,
            order_id=ORDER_ID,
            order_number="WEB-1001",
            customer_id="CUST-1",
            channel=ReturnChannel.PORTAL,
            order_channel=Channel.WEB,
            method=ReturnMethod.CARRIER_DROP_OFF,
            refund_method=RefundMethod.ORIGINAL_PAYMENT,
            currency="EUR",
            lines=(
                ReturnLine(
                    line_no=1,
                    sku="SKU-1",
                    quantity=1,
                    reason=ReasonCode.SIZE_TOO_SMALL,
                    unit_price=eur("40.00"),
                    serial="SN-2",
                    supplier="ACME",
                    category="general",
                ),
            ),
        )
    ]
    assert rma.state.status is ReturnStatus.REQUESTED


def test_a_return_of_a_cancelled_order_is_refused() -> None:
    order = OrderHistory().placed(line(1)).cancelled().order()
    with pytest.raises(InvalidTransition, match=r"is cancelled"):
        requested_return(order)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((), "at least one line"),
        ((wants(7),), "has no line 7"),
        ((wants(1), wants(1)), "appears twice"),
        ((wants(1, quantity=0),), "quantity must be positive"),
        ((wants(2, serial="SN-1"),), "serial SN-1 was not sold on line 2"),
        ((wants(1, serial="SN-404"),), "serial SN-404"),
    ],
)
def test_a_return_request_with_bad_lines_is_refused(
    lines: tuple[RequestedLine, ...], message: str
) -> None:
    with pytest.raises(InvalidCommand, match=message):
        Return.request(
            RETURN_ID,
            order=shop_order(),
            lines=lines,
            channel=ReturnChannel.PORTAL,
            method=ReturnMethod.CARRIER_DROP_OFF,
            refund_method=RefundMethod.ORIGINAL_PAYMENT,
            comment="",
            at=day(10),
            cause=CAUSE,
        )


# ---------------------------------------------------------------- decide
def test_a_return_inside_the_window_is_authorized_with_its_rma_number_and_label() -> None:
    order = shop_order()
    rma = given(requested_return(order))
    decide(rma, order)
    event = last(rma)
    assert isinstance(event, ReturnAuthorized)
    assert (event.rma_number, event.destination_warehouse, event.label_reference) == (
        RMA,
        WAREHOUSE,
        LABEL,
    )
    assert (event.expected_refund, event.restocking_fee, event.shipping_refund) == (
        eur("40.00"),
        eur("0.00"),
        eur("0.00"),
    )
    assert [(d.line_no, d.accepted, d.code) for d in event.decisions] == [(1, True, "accepted")]
    assert RMA in event.instructions and "1 x SKU-1" in event.instructions
    assert not event.keep_item_eligible
    assert rma.state.status is ReturnStatus.AUTHORIZED
    assert rma.state.authorized_at == day(10)


def test_a_return_outside_the_window_is_rejected_with_the_policy_reason() -> None:
    order = shop_order()
    rma = given(requested_return(order, at=day(33)))
    decide(rma, order, at=day(33))
    event = last(rma)
    assert isinstance(event, ReturnRejected)
    assert event.code == "outside_return_window"
    # Delivered on day 2 (2025-03-05): the window closed 30 days later.
    assert "returns close 30 days after delivery: on 2025-04-04" in event.reason
    assert rma.state.status is ReturnStatus.REJECTED
    assert rma.state.rejection_code == "outside_return_window"


def test_one_refused_line_rejects_the_whole_return() -> None:
    order = (
        OrderHistory()
        .placed(line(1, price="40.00"), line(2, price="10.00", category="hygiene"))
        .fulfilled()
        .delivered()
        .order()
    )
    rma = given(requested_return(order, wants(1), wants(2)))
    decide(rma, order)
    assert isinstance(last(rma), ReturnRejected)
    assert last(rma).code == "non_returnable_item"
    assert [d.accepted for d in last(rma).decisions] == [True, False]


@pytest.mark.parametrize("category", ["software", "hygiene"])
def test_a_non_returnable_category_is_rejected_unless_defective_or_wrong_item(
    category: str,
) -> None:
    order = OrderHistory().placed(line(1, category=category)).fulfilled().delivered().order()
    for reason, expected in [
        (ReasonCode.CHANGED_MIND, ReturnStatus.REJECTED),
        (ReasonCode.DEFECTIVE, ReturnStatus.AUTHORIZED),
        (ReasonCode.WRONG_ITEM, ReturnStatus.AUTHORIZED),
    ]:
        rma = requested_return(order, wants(reason=reason))
        decide(rma, order)
        assert rma.state.status is expected, reason


def test_a_return_is_decided_only_once() -> None:
    order = shop_order()
    rma = authorized_return(order)
    with pytest.raises(InvalidTransition, match=r"is authorized; this needs requested"):
        decide(rma, order)
    assert rma.pending_events == []


def test_the_window_starts_at_delivery_not_at_the_order() -> None:
    order = OrderHistory().placed(line(1)).fulfilled().delivered(day(20)).order()
    rma = given(requested_return(order, at=day(45)))
    decide(rma, order, at=day(45))
    assert isinstance(last(rma), ReturnAuthorized)


def test_the_window_of_a_store_sale_starts_at_the_purchase() -> None:
    order = store_sale(line(1))
    rma = given(requested_return(order, at=day(31)))
    decide(rma, order, at=day(31))
    assert (type(last(rma)), last(rma).code) == (ReturnRejected, "outside_return_window")
    # Sold on 2025-03-03: the window is said from the purchase.
    assert last(rma).reason == "line 1: returns close 30 days after purchase: on 2025-04-02"


def test_a_defective_item_outside_the_window_is_a_warranty_claim_by_its_serial() -> None:
    order = shop_order()
    rma = given(
        requested_return(order, wants(reason=ReasonCode.DEFECTIVE, serial="SN-1"), at=day(200))
    )
    decide(rma, order, at=day(200))
    event = last(rma)
    assert isinstance(event, ReturnAuthorized)
    assert [d.code for d in event.decisions] == ["warranty_claim"]
    assert event.restocking_fee == eur("0.00")


def test_a_defective_item_outside_the_window_without_its_serial_is_rejected() -> None:
    order = shop_order()
    rma = given(requested_return(order, wants(reason=ReasonCode.DEFECTIVE), at=day(200)))
    decide(rma, order, at=day(200))
    assert last(rma).code == "outside_return_window"


def test_a_late_change_of_mind_is_authorized_less_the_restocking_fee() -> None:
    order = shop_order()
    rma = given(requested_return(order, wants(quantity=2), at=day(20)))
    decide(rma, order, at=day(20))
    event = last(rma)
    assert (event.restocking_fee, event.expected_refund) == (eur("8.00"), eur("72.00"))


@pytest.mark.parametrize(
    "reason", [ReasonCode.DEFECTIVE, ReasonCode.DAMAGED_IN_TRANSIT, ReasonCode.WRONG_ITEM]
)
def test_a_seller_fault_gets_the_shipping_back_and_no_fee(reason: ReasonCode) -> None:
    order = shop_order()
    rma = given(requested_return(order, wants(reason=reason), at=day(20)))
    decide(rma, order, at=day(20))
    event = last(rma)
    assert (event.shipping_refund, event.restocking_fee, event.expected_refund) == (
        eur("5.00"),
        eur("0.00"),
        eur("45.00"),
    )


def test_a_change_of_mind_does_not_get_the_shipping_back() -> None:
    rma = authorized_return(shop_order())
    assert rma.state.shipping_refund == eur("0.00")


def test_shipping_already_refunded_on_the_order_is_not_expected_again() -> None:
    order = shop_history().refund_allocated("RF-0", allocation("15.00"), shipping="5.00").order()
    rma = authorized_return(order, wants(reason=ReasonCode.DEFECTIVE))
    assert rma.state.shipping_refund == eur("0.00")
    assert rma.state.expected_refund == eur("40.00")


# ---------------------------------------------------------------- held for review
def test_an_expected_refund_above_the_threshold_is_held_for_review() -> None:
    order = expensive_order()
    rma = given(requested_return(order, wants(quantity=2)))
    decide(rma, order)
    event = last(rma)
    assert isinstance(event, ReturnHeldForReview)
    assert "1200.00 EUR is above the review threshold 1000.00" in event.reason
    assert rma.state.status is ReturnStatus.PENDING_REVIEW
    assert rma.state.rma_number is None


def test_an_expected_refund_at_the_threshold_is_authorized_at_once() -> None:
    order = (
        OrderHistory()
        .placed(line(1, quantity=2, price="500.00"), shipping="0.00")
        .fulfilled()
        .delivered()
        .order()
    )
    rma = authorized_return(order, wants(quantity=2))
    assert rma.state.status is ReturnStatus.AUTHORIZED


def test_a_return_held_for_review_can_be_approved() -> None:
    order = expensive_order()
    rma = requested_return(order, wants(quantity=2))
    decide(rma, order)
    rma = given(rma)
    rma.approve(
        order=order,
        book=BOOK,
        rma_number=RMA,
        destination_warehouse=WAREHOUSE,
        label_reference=LABEL,
        at=day(11),
        cause=CAUSE,
    )
    event = last(rma)
    assert isinstance(event, ReturnAuthorized)
    assert (event.rma_number, event.expected_refund) == (RMA, eur("1200.00"))
    assert rma.state.status is ReturnStatus.AUTHORIZED


def test_a_return_held_for_review_can_be_refused() -> None:
    order = expensive_order()
    rma = requested_return(order, wants(quantity=2))
    decide(rma, order)
    rma = given(rma)
    rma.refuse("serial numbers do not match our records", day(11), CAUSE)
    assert rma.pending_events == [
        ReturnRejected(
            originator_id=RETURN_ID,
            originator_version=3,
            timestamp=day(11),
            cause=CAUSE,
            code="refused_by_review",
            reason="serial numbers do not match our records",
        )
    ]
    assert rma.state.status is ReturnStatus.REJECTED


def test_only_a_return_held_for_review_can_be_approved() -> None:
    order = shop_order()
    rma = authorized_return(order)
    with pytest.raises(InvalidTransition, match=r"this needs pending_review"):
        rma.approve(
            order=order,
            book=BOOK,
            rma_number=RMA,
            destination_warehouse=WAREHOUSE,
            label_reference=LABEL,
            at=day(11),
            cause=CAUSE,
        )


def test_an_authorized_return_cannot_be_refused() -> None:
    rma = authorized_return(shop_order())
    with pytest.raises(InvalidTransition):
        rma.refuse("changed our mind", day(11), CAUSE)


# ---------------------------------------------------------------- label
def test_a_label_is_issued_for_an_authorized_return() -> None:
    rma = authorized_return(shop_order())
    rma.issue_label("LBL-7K2Q-M4XD-R2", "colissimo", day(11), CAUSE)
    assert last(rma) == ReturnLabelIssued(
        originator_id=RETURN_ID,
        originator_version=3,
        timestamp=day(11),
        cause=CAUSE,
        label_reference="LBL-7K2Q-M4XD-R2",
        carrier="colissimo",
    )
    assert rma.state.label_reference == "LBL-7K2Q-M4XD-R2"


def test_no_label_before_the_return_is_authorized() -> None:
    rma = given(requested_return(shop_order()))
    with pytest.raises(InvalidTransition):
        rma.issue_label("LBL", "colissimo", day(11), CAUSE)
