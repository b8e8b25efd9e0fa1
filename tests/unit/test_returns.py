"""The Return aggregate (the RMA): given its history, when a command, then events or error.

The order of every test (``shop_order``) is delivered on day 2: line 1 is two of SKU-1 at
40.00 with serials SN-1 and SN-2, line 2 one SKU-2 at 10.00; shipping 5.00, paid by card.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from typing import Any

import pytest

from domain.errors import (
    InvalidCommand,
    InvalidTransition,
    PolicyViolation,
    RefundLimitExceeded,
)
from domain.events import (
    BlindReturnDetected,
    BlindReturnMatched,
    ExchangeOrdered,
    InspectedItem,
    InStoreReturnRecorded,
    ItemsInspected,
    KeepItemAccepted,
    KeepItemOffered,
    OrderLine,
    RefundFailed,
    RefundRequested,
    RefundSettled,
    RepairCompleted,
    RepairedItemRestocked,
    RepairSent,
    ReturnAuthorized,
    ReturnCancelled,
    ReturnClosed,
    ReturnExpired,
    ReturnHeldForReview,
    ReturnLabelIssued,
    ReturnLine,
    ReturnParcelReceived,
    ReturnRejected,
    ReturnRequested,
    ReturnUnexpectedParcelReceived,
    StoreCreditIssued,
    SupplierCreditReceived,
    VendorReturnShipped,
)
from domain.order import Order, order_id_for
from domain.policy import PolicyBook
from domain.returns import (
    RequestedLine,
    Return,
    ReturnStatus,
    blind_return_id_for,
    store_return_id_for,
)
from domain.values import (
    Channel,
    Condition,
    Disposition,
    ReasonCode,
    RefundMethod,
    ReturnChannel,
    ReturnMethod,
)
from tests.unit.builders import (
    BOOK,
    CAUSE,
    LABEL,
    ORDER_ID,
    OTHER_RETURN_ID,
    RETURN_ID,
    RMA,
    WAREHOUSE,
    OrderHistory,
    allocation,
    authorized_return,
    blind_parcel,
    day,
    decide,
    eur,
    given,
    inspect,
    inspected,
    inspected_return,
    issue_store_credit,
    line,
    receive,
    received,
    received_return,
    request_refund,
    requested_return,
    store_sale,
    usd,
    wants,
)


def shop_lines() -> tuple[OrderLine, ...]:
    return (
        line(1, quantity=2, price="40.00", serials=("SN-1", "SN-2")),
        line(2, price="10.00"),
    )


def shop_history() -> OrderHistory:
    return OrderHistory().placed(*shop_lines(), shipping="5.00").fulfilled().delivered(day(2))


def shop_order() -> Order:
    return shop_history().order()


def last(rma: Return) -> Any:
    return rma.pending_events[-1]


def types(rma: Return) -> tuple[type[Any], ...]:
    return tuple(type(event) for event in rma.pending_events)


def snapshot(rma: Return) -> tuple[int, dict[str, Any]]:
    return rma.version, dataclasses.asdict(rma.state)


def record_in_store(
    order: Order, *lines: RequestedLine, at: datetime, book: PolicyBook = BOOK
) -> Return:
    return Return.record_in_store(
        store_return_id="SR-1",
        store_id="STORE-PARIS-1",
        staff_id="STAFF-9",
        order=order,
        lines=lines or (wants(),),
        refund_method=RefundMethod.ORIGINAL_PAYMENT,
        rma_number=RMA,
        book=book,
        at=at,
        cause=CAUSE,
    )


def match(rma: Return, order: Order, *lines: RequestedLine, at: datetime | None = None) -> None:
    rma.match_blind(
        order=order,
        lines=lines or (wants(),),
        matched_by="serial",
        rma_number=RMA,
        book=BOOK,
        at=at or day(13),
        cause=CAUSE,
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
    assert "30-day return window" in event.reason
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
def expensive_order() -> Order:
    return (
        OrderHistory()
        .placed(line(1, quantity=2, price="600.00"), shipping="0.00")
        .fulfilled()
        .delivered()
        .order()
    )


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


# ---------------------------------------------------------------- keep the item
def test_a_low_value_return_may_be_kept_by_the_customer() -> None:
    assert authorized_return(shop_order(), wants(2)).state.keep_item_eligible


def test_a_wrong_item_is_never_left_with_the_customer() -> None:
    rma = authorized_return(shop_order(), wants(2, reason=ReasonCode.WRONG_ITEM))
    assert not rma.state.keep_item_eligible


def test_offering_to_keep_the_item_for_half_its_price() -> None:
    rma = authorized_return(shop_order(), wants(2))
    offer = rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    assert offer == eur("5.00")
    assert rma.pending_events == [
        KeepItemOffered(
            originator_id=RETURN_ID,
            originator_version=3,
            timestamp=day(10),
            cause=CAUSE,
            refund_amount=eur("5.00"),
            expires_at=day(17),
        )
    ]
    assert rma.state.status is ReturnStatus.KEEP_ITEM_OFFERED


def test_keeping_an_item_worth_too_much_is_refused_by_policy() -> None:
    rma = authorized_return(shop_order())
    with pytest.raises(PolicyViolation) as error:
        rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    assert error.value.code == "keep_item_not_eligible"
    assert rma.pending_events == []


def test_accepting_the_offer_refunds_what_was_offered() -> None:
    rma = authorized_return(shop_order(), wants(2))
    rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    rma.collect_events()
    assert rma.accept_keep_item(day(12), CAUSE) == eur("5.00")
    assert types(rma) == (KeepItemAccepted,)
    request_refund(rma, "5.00", keep_item=True, at=day(12))
    event = last(rma)
    assert isinstance(event, RefundRequested)
    assert (event.keep_item, event.amount) == (True, eur("5.00"))
    assert rma.state.status is ReturnStatus.REFUND_PENDING


def test_there_is_no_offer_to_accept_before_one_is_made() -> None:
    rma = authorized_return(shop_order(), wants(2))
    with pytest.raises(InvalidTransition):
        rma.accept_keep_item(day(12), CAUSE)


def test_an_expired_keep_item_offer_cannot_be_accepted() -> None:
    rma = authorized_return(shop_order(), wants(2))
    rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    rma.collect_events()
    before = snapshot(rma)
    with pytest.raises(InvalidTransition, match=f"offer of {RMA} expired at 2025-03-20"):
        rma.accept_keep_item(day(17.01), CAUSE)
    assert rma.pending_events == []
    assert snapshot(rma) == before
    assert rma.state.keep_item_expires_at == day(17)
    assert not rma.state.keep_item_accepted


def test_a_keep_item_offer_can_be_accepted_up_to_its_expiry() -> None:
    rma = authorized_return(shop_order(), wants(2))
    rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    rma.collect_events()
    assert rma.accept_keep_item(day(17), CAUSE) == eur("5.00")
    assert rma.pending_events == [
        KeepItemAccepted(
            originator_id=RETURN_ID,
            originator_version=4,
            timestamp=day(17),
            cause=CAUSE,
        )
    ]
    assert rma.state.keep_item_accepted
    assert rma.outstanding_quantity() == 0


def test_settling_a_keep_item_refund_closes_the_return() -> None:
    rma = authorized_return(shop_order(), wants(2))
    rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    rma.accept_keep_item(day(12), CAUSE)
    request_refund(rma, "5.00", keep_item=True, at=day(12))
    rma.collect_events()
    rma.settle_refund("RF-1", "PSP-1", eur("5.00"), day(13), CAUSE)
    assert types(rma) == (RefundSettled, ReturnClosed)
    assert (last(rma).outcome, rma.state.status) == ("refunded", ReturnStatus.CLOSED)


def test_a_keep_item_refund_above_the_offer_is_refused() -> None:
    rma = authorized_return(shop_order(), wants(2))
    rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    rma.accept_keep_item(day(12), CAUSE)
    rma.collect_events()
    with pytest.raises(RefundLimitExceeded, match=re.escape("can pay out 5.00 EUR more")):
        request_refund(rma, "5.01", keep_item=True, at=day(12))
    assert rma.pending_events == []


def test_a_parcel_after_the_keep_item_offer_was_accepted_is_unexpected() -> None:
    rma = authorized_return(shop_order(), wants(2))
    rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    rma.accept_keep_item(day(12), CAUSE)
    request_refund(rma, "5.00", keep_item=True, at=day(12))
    rma.collect_events()
    receive(rma, received("SKU-2"), at=day(14))
    assert (type(last(rma)), last(rma).state_at_arrival) == (
        ReturnUnexpectedParcelReceived,
        "refund_pending",
    )


def test_a_failed_keep_item_refund_can_be_retried() -> None:
    rma = authorized_return(shop_order(), wants(2))
    rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    rma.accept_keep_item(day(12), CAUSE)
    request_refund(rma, "5.00", keep_item=True, at=day(12))
    rma.fail_refund("RF-1", "card expired", day(13), CAUSE)
    rma.collect_events()
    try:
        request_refund(rma, "5.00", "RF-2", keep_item=True, at=day(14))
    except InvalidTransition:
        request_refund(rma, "5.00", "RF-2", at=day(14))
    assert (type(last(rma)), last(rma).amount) == (RefundRequested, eur("5.00"))


def test_a_parcel_may_still_come_after_the_keep_item_offer() -> None:
    rma = authorized_return(shop_order(), wants(2))
    rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    receive(rma, received("SKU-2"))
    assert isinstance(last(rma), ReturnParcelReceived)
    assert rma.state.status is ReturnStatus.RECEIVED


# ---------------------------------------------------------------- blind returns
def test_a_parcel_without_an_rma_is_detected_as_a_blind_return() -> None:
    rma = blind_parcel("RCPT-B1", received("SKU-1", serial="SN-1"))
    assert rma.id == blind_return_id_for("RCPT-B1")
    assert rma.pending_events == [
        BlindReturnDetected(
            originator_id=rma.id,
            originator_version=1,
            timestamp=day(12),
            cause=CAUSE,
            receipt_id="RCPT-B1",
            warehouse_id=WAREHOUSE,
            tracking_number="TRK-9",
            claimed_rma_number=None,
            order_number_hint="WEB-1001",
            items=(received("SKU-1", serial="SN-1"),),
        )
    ]
    assert (rma.state.status, rma.state.channel) == (
        ReturnStatus.BLIND_UNMATCHED,
        ReturnChannel.BLIND,
    )


def test_an_empty_blind_parcel_is_refused() -> None:
    with pytest.raises(InvalidCommand, match=r"lists no items"):
        Return.detect_blind(
            receipt_id="RCPT-B1",
            warehouse_id=WAREHOUSE,
            tracking_number=None,
            claimed_rma_number=None,
            order_number_hint=None,
            items=(),
            at=day(12),
            cause=CAUSE,
        )


def test_a_blind_return_matched_to_its_order_bears_the_restocking_fee() -> None:
    order = shop_order()
    rma = given(blind_parcel())
    match(rma, order, wants(1, serial="SN-1"))
    event = last(rma)
    assert isinstance(event, BlindReturnMatched)
    assert (event.order_id, event.rma_number, event.matched_by) == (ORDER_ID, RMA, "serial")
    assert event.restocking_fee == eur("4.00")
    assert rma.state.status is ReturnStatus.RECEIVED
    assert rma.state.shipping_refund == eur("0.00")
    inspect(rma, receipt_id="RCPT-B1")
    assert last(rma).refund_due == eur("36.00")


def test_a_defective_blind_return_bears_no_fee() -> None:
    rma = given(blind_parcel())
    match(rma, shop_order(), wants(1, reason=ReasonCode.DEFECTIVE))
    assert last(rma).restocking_fee == eur("0.00")


def test_the_items_of_a_blind_return_past_its_window_earn_nothing() -> None:
    rma = given(blind_parcel())
    match(rma, shop_order(), wants(1), at=day(90))
    assert [d.code for d in last(rma).decisions] == ["outside_return_window"]
    inspect(rma, receipt_id="RCPT-B1", at=day(91))
    assert last(rma).refund_due == eur("0.00")


def test_a_blind_return_is_matched_only_once() -> None:
    order = shop_order()
    rma = given(blind_parcel())
    match(rma, order)
    with pytest.raises(InvalidTransition, match=r"this needs blind_unmatched"):
        match(rma, order)


def test_a_blind_return_cannot_be_matched_to_a_cancelled_order() -> None:
    order = OrderHistory().placed(line(1)).cancelled().order()
    rma = given(blind_parcel())
    with pytest.raises(InvalidTransition):
        match(rma, order)
    assert rma.pending_events == []


# ---------------------------------------------------------------- in-store returns
def test_a_web_order_brought_back_to_a_store_is_recorded_as_received() -> None:
    rma = record_in_store(shop_order(), wants(1, serial="SN-2"), at=day(12))
    assert rma.id == store_return_id_for("STORE-PARIS-1", "SR-1")
    assert types(rma) == (InStoreReturnRecorded,)
    event = last(rma)
    assert (event.store_id, event.staff_id, event.rma_number) == ("STORE-PARIS-1", "STAFF-9", RMA)
    assert event.restocking_fee == eur("0.00")
    assert (rma.state.status, rma.state.channel, rma.state.method) == (
        ReturnStatus.RECEIVED,
        ReturnChannel.STORE,
        ReturnMethod.STORE,
    )
    assert rma.state.receipts == ["SR-1"]


@pytest.mark.parametrize(
    ("order", "at", "code"),
    [
        (shop_order(), day(40), "outside_return_window"),
        (store_sale(line(1)), day(31), "outside_return_window"),
        (
            OrderHistory().placed(line(1, category="software")).fulfilled().delivered().order(),
            day(5),
            "non_returnable_item",
        ),
    ],
    ids=["web-order-late", "store-sale-late", "software"],
)
def test_an_in_store_return_refused_by_policy_raises_policy_violation_with_its_code(
    order: Order, at: datetime, code: str
) -> None:
    with pytest.raises(PolicyViolation) as error:
        record_in_store(order, at=at)
    assert error.value.code == code


def test_a_store_sale_is_returnable_at_the_counter_within_30_days_of_purchase() -> None:
    rma = record_in_store(store_sale(line(1)), at=day(30))
    assert last(rma).order_channel is Channel.STORE


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


# ---------------------------------------------------------------- refunds
def test_requesting_the_refund_of_an_inspected_return() -> None:
    rma = inspected_return(shop_order())
    request_refund(rma, "40.00")
    assert rma.pending_events == [
        RefundRequested(
            originator_id=RETURN_ID,
            originator_version=5,
            timestamp=day(16),
            cause=CAUSE,
            refund_id="RF-1",
            amount=eur("40.00"),
            restocking_fee=eur("0.00"),
            shipping_refund=eur("0.00"),
            allocations=(allocation("40.00"),),
        )
    ]
    assert rma.state.status is ReturnStatus.REFUND_PENDING
    assert (rma.paid_out(), rma.items_due_unpaid()) == (eur("40.00"), eur("0.00"))


def test_the_refund_of_a_seller_fault_pays_the_items_and_the_shipping_apart() -> None:
    rma = inspected_return(shop_order(), lines=(wants(reason=ReasonCode.DEFECTIVE),))
    assert rma.state.refund_due == eur("40.00")
    request_refund(rma, "45.00", shipping="5.00")
    assert rma.pending_events == [
        RefundRequested(
            originator_id=RETURN_ID,
            originator_version=5,
            timestamp=day(16),
            cause=CAUSE,
            refund_id="RF-1",
            amount=eur("45.00"),
            restocking_fee=eur("0.00"),
            shipping_refund=eur("5.00"),
            allocations=(allocation("45.00"),),
        )
    ]
    assert (rma.items_due_unpaid(), rma.shipping_due_unpaid()) == (eur("0.00"), eur("0.00"))
    assert (rma.paid_out(), rma.shipping_paid()) == (eur("45.00"), eur("5.00"))


@pytest.mark.parametrize("stage", ["received", "authorized"])
def test_no_refund_before_inspection(stage: str) -> None:
    rma = received_return(shop_order()) if stage == "received" else authorized_return(shop_order())
    expected: type[Exception] = RefundLimitExceeded if stage == "received" else InvalidTransition
    with pytest.raises(expected):
        request_refund(rma, "40.00")
    assert rma.pending_events == []


def test_the_refund_of_a_received_return_is_capped_at_nothing_before_inspection() -> None:
    rma = received_return(shop_order(), wants(reason=ReasonCode.DEFECTIVE))
    assert (rma.items_due_unpaid(), rma.shipping_due_unpaid()) == (eur("0.00"), eur("0.00"))
    with pytest.raises(RefundLimitExceeded, match=r"more than the .* owed"):
        request_refund(rma, "5.00", shipping="5.00")
    with pytest.raises(RefundLimitExceeded, match=re.escape("can pay out 0.00 EUR more")):
        request_refund(rma, "0.01")
    assert rma.pending_events == []


def test_settling_the_refund_closes_the_return() -> None:
    rma = inspected_return(shop_order())
    request_refund(rma, "40.00")
    rma.collect_events()
    rma.settle_refund("RF-1", "PSP-123", eur("40.00"), day(18), CAUSE)
    assert rma.pending_events == [
        RefundSettled(
            originator_id=RETURN_ID,
            originator_version=6,
            timestamp=day(18),
            cause=CAUSE,
            refund_id="RF-1",
            provider_reference="PSP-123",
            amount=eur("40.00"),
        ),
        ReturnClosed(
            originator_id=RETURN_ID,
            originator_version=7,
            timestamp=day(18),
            cause=CAUSE,
            outcome="refunded",
        ),
    ]
    assert rma.state.status is ReturnStatus.CLOSED


def test_settling_a_refund_twice_is_a_no_op() -> None:
    rma = inspected_return(shop_order())
    request_refund(rma, "40.00")
    rma.settle_refund("RF-1", "PSP-123", eur("40.00"), day(18), CAUSE)
    rma.collect_events()
    before = snapshot(rma)
    rma.settle_refund("RF-1", "PSP-123", eur("40.00"), day(19), CAUSE)
    assert rma.pending_events == []
    assert snapshot(rma) == before


def test_a_settlement_of_another_amount_is_refused() -> None:
    rma = inspected_return(shop_order())
    request_refund(rma, "40.00")
    rma.collect_events()
    with pytest.raises(InvalidCommand, match=re.escape("was 40.00 EUR, settled 39.99 EUR")):
        rma.settle_refund("RF-1", "PSP-123", eur("39.99"), day(18), CAUSE)
    assert rma.pending_events == []


def test_a_settlement_of_an_unknown_refund_is_refused() -> None:
    rma = inspected_return(shop_order())
    with pytest.raises(InvalidCommand, match=r"has no refund RF-404"):
        rma.settle_refund("RF-404", "PSP-123", eur("40.00"), day(18), CAUSE)


def test_a_failed_refund_is_recorded_once() -> None:
    rma = inspected_return(shop_order())
    request_refund(rma, "40.00")
    rma.collect_events()
    assert rma.fail_refund("RF-1", "card expired", day(18), CAUSE) is True
    assert rma.pending_events == [
        RefundFailed(
            originator_id=RETURN_ID,
            originator_version=6,
            timestamp=day(18),
            cause=CAUSE,
            refund_id="RF-1",
            reason="card expired",
        )
    ]
    assert rma.state.status is ReturnStatus.REFUND_FAILED
    assert (rma.paid_out(), rma.items_due_unpaid()) == (eur("0.00"), eur("40.00"))
    assert rma.fail_refund("RF-1", "card expired", day(18), CAUSE) is False
    assert len(rma.pending_events) == 1


def test_a_failed_refund_cannot_be_settled_nor_a_settled_one_fail() -> None:
    failed = inspected_return(shop_order())
    request_refund(failed, "40.00")
    failed.fail_refund("RF-1", "card expired", day(18), CAUSE)
    with pytest.raises(InvalidTransition, match=r"already failed"):
        failed.settle_refund("RF-1", "PSP-1", eur("40.00"), day(19), CAUSE)
    settled = inspected_return(shop_order())
    request_refund(settled, "40.00")
    settled.settle_refund("RF-1", "PSP-1", eur("40.00"), day(18), CAUSE)
    with pytest.raises(InvalidTransition, match=r"already settled"):
        settled.fail_refund("RF-1", "late failure", day(19), CAUSE)


def test_a_failed_refund_releases_its_money_on_the_order_and_may_be_retried() -> None:
    order = shop_order()
    rma = inspected_return(order)
    order.allocate_refund(
        refund_id="RF-1",
        return_id=rma.id,
        allocations=(allocation("40.00"),),
        shipping_refunded=eur("0.00"),
        at=day(16),
        cause=CAUSE,
    )
    request_refund(rma, "40.00")
    if rma.fail_refund("RF-1", "card expired", day(18), CAUSE):
        order.release_refund("RF-1", "card expired", day(18), CAUSE)
    assert order.total_refunded() == eur("0.00")
    with pytest.raises(InvalidTransition, match=r"RF-1 already exists"):
        request_refund(rma, "40.00", "RF-1")
    order.allocate_refund(
        refund_id="RF-2",
        return_id=rma.id,
        allocations=(allocation("40.00"),),
        shipping_refunded=eur("0.00"),
        at=day(19),
        cause=CAUSE,
    )
    request_refund(rma, "40.00", "RF-2", at=day(19))
    assert rma.state.status is ReturnStatus.REFUND_PENDING
    assert rma.paid_out() == eur("40.00")


def test_settling_the_retry_of_a_failed_refund_closes_the_return() -> None:
    rma = inspected_return(shop_order())
    request_refund(rma, "40.00", "RF-1")
    rma.fail_refund("RF-1", "card expired", day(18), CAUSE)
    request_refund(rma, "40.00", "RF-2", at=day(19))
    rma.collect_events()
    rma.settle_refund("RF-2", "PSP-2", eur("40.00"), day(20), CAUSE)
    assert types(rma) == (RefundSettled, ReturnClosed)
    assert last(rma).outcome == "refunded"
    assert rma.state.status is ReturnStatus.CLOSED


def test_a_failed_shipping_refund_owes_the_shipping_again() -> None:
    rma = inspected_return(shop_order(), lines=(wants(reason=ReasonCode.DEFECTIVE),))
    request_refund(rma, "45.00", shipping="5.00")
    rma.fail_refund("RF-1", "card expired", day(18), CAUSE)
    assert (rma.items_due_unpaid(), rma.shipping_due_unpaid()) == (eur("40.00"), eur("5.00"))
    request_refund(rma, "45.00", "RF-2", shipping="5.00", at=day(19))
    rma.collect_events()
    rma.settle_refund("RF-2", "PSP-2", eur("45.00"), day(20), CAUSE)
    assert types(rma) == (RefundSettled, ReturnClosed)


# ---------------------------------------------------------------- payout limits
@pytest.mark.parametrize("amount", ["40.01", "400.00"])
def test_a_refund_above_the_items_due_is_refused(amount: str) -> None:
    rma = inspected_return(shop_order())
    with pytest.raises(
        RefundLimitExceeded, match=re.escape(f"can pay out 40.00 EUR more, not {amount} EUR")
    ):
        request_refund(rma, amount)
    assert rma.pending_events == []


# Both guards compare the shipping part (0.00 EUR by default) with the amount before they
# check the amount itself, so a negative or foreign amount gets the wrong error.
BAD_PAYOUTS = [
    pytest.param(eur("0.00"), id="zero"),
    pytest.param(eur("-1.00"), id="negative", marks=()),
    pytest.param(usd("40.00"), id="usd", marks=()),
]


@pytest.mark.parametrize("amount", BAD_PAYOUTS)
def test_a_refund_is_a_positive_amount_in_the_return_currency(amount: Any) -> None:
    rma = inspected_return(shop_order())
    with pytest.raises(InvalidCommand, match=r"a payout is a positive EUR amount"):
        rma.request_refund(refund_id="RF-1", amount=amount, allocations=(), at=day(16), cause=CAUSE)
    assert rma.pending_events == []


@pytest.mark.parametrize("amount", BAD_PAYOUTS)
def test_store_credit_is_a_positive_amount_in_the_return_currency(amount: Any) -> None:
    rma = inspected_return(shop_order())
    with pytest.raises(InvalidCommand, match=r"a payout is a positive EUR amount"):
        rma.issue_store_credit(
            credit_id="SC-1", amount=amount, bonus=eur("0.00"), at=day(17), cause=CAUSE
        )
    assert rma.pending_events == []


@pytest.mark.parametrize("bonus", [eur("-0.01"), usd("4.00")])
def test_a_store_credit_bonus_is_a_non_negative_amount_in_the_return_currency(
    bonus: Any,
) -> None:
    rma = inspected_return(shop_order())
    with pytest.raises(InvalidCommand, match=r"bonus is a non-negative EUR"):
        rma.issue_store_credit(
            credit_id="SC-1", amount=eur("40.00"), bonus=bonus, at=day(17), cause=CAUSE
        )
    assert rma.pending_events == []


def test_a_refund_may_pay_the_items_due_in_parts() -> None:
    rma = inspected_return(shop_order())
    request_refund(rma, "15.00", "RF-1")
    assert rma.items_due_unpaid() == eur("25.00")
    with pytest.raises(RefundLimitExceeded, match=re.escape("can pay out 25.00 EUR more")):
        request_refund(rma, "25.01", "RF-2")
    request_refund(rma, "25.00", "RF-2")
    assert rma.items_due_unpaid() == eur("0.00")
    with pytest.raises(RefundLimitExceeded, match=re.escape("can pay out 0.00 EUR more")):
        request_refund(rma, "0.01", "RF-3")


def test_store_credit_and_refunds_share_one_limit() -> None:
    rma = inspected_return(shop_order())
    issue_store_credit(rma, "30.00", bonus="3.00")
    with pytest.raises(RefundLimitExceeded, match=re.escape("can pay out 10.00 EUR more")):
        request_refund(rma, "10.01")
    request_refund(rma, "10.00")
    assert rma.paid_out() == eur("40.00")  # the bonus is not paid out of the return's due


def test_shipping_is_paid_only_when_the_rma_owes_it() -> None:
    rma = inspected_return(shop_order())  # a change of mind: no shipping back
    assert rma.shipping_due_unpaid() == eur("0.00")
    with pytest.raises(RefundLimitExceeded, match=r"more than the .* owed"):
        request_refund(rma, "45.00", shipping="5.00")
    with pytest.raises(RefundLimitExceeded, match=r"more than the .* owed"):
        issue_store_credit(rma, "45.00", shipping="5.00")
    assert rma.pending_events == []


def test_the_shipping_part_cannot_exceed_the_amount_nor_the_shipping_owed() -> None:
    rma = inspected_return(shop_order(), lines=(wants(reason=ReasonCode.DEFECTIVE),))
    with pytest.raises(RefundLimitExceeded, match=r"more than the .* owed"):
        request_refund(rma, "45.01", shipping="5.01")
    with pytest.raises(RefundLimitExceeded, match=r"more than the .* owed"):
        request_refund(rma, "4.00", shipping="5.00")
    with pytest.raises(RefundLimitExceeded, match=re.escape("can pay out 45.00 EUR more")):
        request_refund(rma, "45.01", shipping="5.00")
    assert rma.pending_events == []


def test_without_its_shipping_part_a_refund_is_capped_at_the_items() -> None:
    rma = inspected_return(shop_order(), lines=(wants(reason=ReasonCode.DEFECTIVE),))
    with pytest.raises(RefundLimitExceeded, match=re.escape("can pay out 40.00 EUR more")):
        request_refund(rma, "45.00")
    assert rma.pending_events == []


def test_shipping_is_paid_once_per_return() -> None:
    rma = inspected_return(shop_order(), lines=(wants(quantity=2, reason=ReasonCode.DEFECTIVE),))
    request_refund(rma, "45.00", "RF-1", shipping="5.00")
    assert rma.shipping_due_unpaid() == eur("0.00")
    receive(rma, receipt_id="RCPT-2", at=day(18))
    inspect(rma, receipt_id="RCPT-2", at=day(19))
    assert (rma.items_due_unpaid(), rma.shipping_due_unpaid()) == (eur("40.00"), eur("0.00"))
    rma.collect_events()
    with pytest.raises(RefundLimitExceeded, match=r"more than the .* owed"):
        request_refund(rma, "45.00", "RF-2", shipping="5.00", at=day(19))
    request_refund(rma, "40.00", "RF-2", at=day(19))
    assert last(rma).shipping_refund == eur("0.00")


def test_a_second_return_of_an_order_whose_shipping_was_refunded_owes_no_shipping() -> None:
    first = inspected_return(shop_order(), lines=(wants(1, reason=ReasonCode.DEFECTIVE),))
    assert first.shipping_due_unpaid() == eur("5.00")
    order = (
        shop_history()
        .return_reserved(RETURN_ID, {1: 1})
        .refund_allocated("RF-1", allocation("45.00"), shipping="5.00")
        .order()
    )
    second = inspected_return(
        order, inspected("SKU-2"), lines=(wants(2, reason=ReasonCode.DEFECTIVE),)
    )
    assert second.state.shipping_refund == eur("0.00")
    assert (second.items_due_unpaid(), second.shipping_due_unpaid()) == (
        eur("10.00"),
        eur("0.00"),
    )
    with pytest.raises(RefundLimitExceeded, match=r"more than the .* owed"):
        request_refund(second, "15.00", shipping="5.00")
    request_refund(second, "10.00")
    assert (last(second).amount, last(second).shipping_refund) == (eur("10.00"), eur("0.00"))


def test_two_returns_authorized_before_either_was_paid_each_owe_shipping_alone() -> None:
    """Each RMA owes the shipping by itself; paying it only once per order is the job of
    the application (it asks ``Order.shipping_refunded``) and of ``Order.allocate_refund``,
    which refuses a second shipping refund."""
    order = shop_order()
    first = inspected_return(order, lines=(wants(1, reason=ReasonCode.DEFECTIVE),))
    second = inspected_return(
        order, inspected("SKU-2"), lines=(wants(2, reason=ReasonCode.DEFECTIVE),)
    )
    assert first.shipping_due_unpaid() == second.shipping_due_unpaid() == eur("5.00")
    request_refund(first, "45.00", shipping="5.00")
    assert (first.shipping_due_unpaid(), second.shipping_due_unpaid()) == (
        eur("0.00"),
        eur("5.00"),
    )
    order.allocate_refund(
        refund_id="RF-1",
        return_id=RETURN_ID,
        allocations=(allocation("45.00"),),
        shipping_refunded=eur("5.00"),
        at=day(16),
        cause=CAUSE,
    )
    with pytest.raises(RefundLimitExceeded, match=r"shipping was already refunded"):
        order.allocate_refund(
            refund_id="RF-2",
            return_id=OTHER_RETURN_ID,
            allocations=(allocation("15.00"),),
            shipping_refunded=eur("5.00"),
            at=day(16),
            cause=CAUSE,
        )
    request_refund(second, "10.00")
    assert last(second).shipping_refund == eur("0.00")


def test_a_negative_shipping_part_is_refused() -> None:
    rma = inspected_return(shop_order(), lines=(wants(reason=ReasonCode.DEFECTIVE),))
    with pytest.raises(InvalidCommand):
        request_refund(rma, "35.00", shipping="-5.00")
    assert rma.pending_events == []
    assert rma.shipping_due_unpaid() == eur("5.00")


# ---------------------------------------------------------------- restocking fee
def late_return_of_two(*items: InspectedItem) -> Return:
    """Two SKU-1 returned on day 20 (a restocking fee of 8.00), received and inspected."""
    order = shop_order()
    rma = requested_return(order, wants(quantity=2), at=day(20))
    decide(rma, order, at=day(20))
    receive(rma, received(quantity=2), at=day(22))
    inspect(rma, *(items or (inspected(quantity=2),)), at=day(23))
    return given(rma)


def test_the_restocking_fee_is_recorded_with_the_first_refund_only() -> None:
    rma = late_return_of_two()
    assert (rma.state.refund_due, rma.unbilled_fee()) == (eur("72.00"), eur("8.00"))
    request_refund(rma, "30.00", "RF-1", at=day(23))
    request_refund(rma, "42.00", "RF-2", at=day(24))
    assert [e.restocking_fee for e in rma.pending_events] == [  # type: ignore[attr-defined]
        eur("8.00"),
        eur("0.00"),
    ]
    assert rma.unbilled_fee() == eur("0.00")


def test_the_restocking_fee_goes_with_the_retry_of_a_failed_first_refund() -> None:
    rma = late_return_of_two()
    request_refund(rma, "72.00", "RF-1", at=day(23))
    rma.fail_refund("RF-1", "card expired", day(24), CAUSE)
    assert rma.unbilled_fee() == eur("8.00")
    rma.collect_events()
    request_refund(rma, "72.00", "RF-2", at=day(25))
    assert last(rma).restocking_fee == eur("8.00")


def test_the_restocking_fee_is_recorded_with_the_first_store_credit_only() -> None:
    rma = late_return_of_two()
    issue_store_credit(rma, "30.00", "SC-1", at=day(23))
    request_refund(rma, "42.00", "RF-1", at=day(24))
    credit, refund = rma.pending_events[0], rma.pending_events[1]
    assert isinstance(credit, StoreCreditIssued) and isinstance(refund, RefundRequested)
    assert (credit.restocking_fee, refund.restocking_fee) == (eur("8.00"), eur("0.00"))


# ---------------------------------------------------------------- partial parcels
def two_item_rma(reason: ReasonCode = ReasonCode.CHANGED_MIND) -> Return:
    """Two SKU-1 (SN-1, SN-2) authorized on day 10; nothing received yet."""
    return authorized_return(shop_order(), wants(1, quantity=2, reason=reason))


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


# ---------------------------------------------------------------- store credit
def test_issuing_store_credit_closes_the_return() -> None:
    rma = inspected_return(shop_order())
    issue_store_credit(rma, "40.00", bonus="4.00")
    assert rma.pending_events == [
        StoreCreditIssued(
            originator_id=RETURN_ID,
            originator_version=5,
            timestamp=day(17),
            cause=CAUSE,
            credit_id="SC-1",
            amount=eur("40.00"),
            bonus=eur("4.00"),
            restocking_fee=eur("0.00"),
            shipping=eur("0.00"),
        ),
        ReturnClosed(
            originator_id=RETURN_ID,
            originator_version=6,
            timestamp=day(17),
            cause=CAUSE,
            outcome="store_credit",
        ),
    ]
    assert rma.state.store_credit == eur("44.00")


def test_store_credit_records_the_shipping_it_pays_back() -> None:
    rma = inspected_return(shop_order(), lines=(wants(reason=ReasonCode.DEFECTIVE),))
    issue_store_credit(rma, "45.00", shipping="5.00")
    credit = rma.pending_events[0]
    assert isinstance(credit, StoreCreditIssued)
    assert (credit.amount, credit.shipping) == (eur("45.00"), eur("5.00"))
    assert (rma.shipping_due_unpaid(), rma.state.status) == (eur("0.00"), ReturnStatus.CLOSED)


def test_store_credit_for_part_of_the_items_leaves_the_return_partly_refunded() -> None:
    rma = inspected_return(shop_order())
    issue_store_credit(rma, "25.00", "SC-1", bonus="2.50")
    assert types(rma) == (StoreCreditIssued,)
    assert rma.state.status is ReturnStatus.PARTIALLY_REFUNDED
    issue_store_credit(rma, "15.00", "SC-2", bonus="1.50", at=day(18))
    assert types(rma) == (StoreCreditIssued, StoreCreditIssued, ReturnClosed)
    assert rma.state.store_credit == eur("44.00")


def test_store_credits_for_two_parcels_accumulate_and_close_after_the_second() -> None:
    rma = two_item_rma()
    receive(rma, receipt_id="RCPT-1", at=day(15))
    inspect(rma, receipt_id="RCPT-1", at=day(16))
    issue_store_credit(rma, "40.00", "SC-1", bonus="4.00", at=day(16))
    assert rma.state.status is ReturnStatus.PARTIALLY_REFUNDED
    receive(rma, receipt_id="RCPT-2", at=day(20))
    inspect(rma, receipt_id="RCPT-2", at=day(21))
    rma.collect_events()
    issue_store_credit(rma, "40.00", "SC-2", bonus="4.00", at=day(21))
    assert types(rma) == (StoreCreditIssued, ReturnClosed)
    assert rma.state.store_credit == eur("88.00")
    assert rma.paid_out() == eur("80.00")


def test_store_credit_waits_for_a_refund_still_requested() -> None:
    rma = inspected_return(shop_order())
    request_refund(rma, "20.00")
    rma.collect_events()
    issue_store_credit(rma, "20.00")
    assert types(rma) == (StoreCreditIssued,)
    rma.settle_refund("RF-1", "PSP-1", eur("20.00"), day(18), CAUSE)
    assert types(rma) == (StoreCreditIssued, RefundSettled, ReturnClosed)


def test_store_credit_may_replace_a_failed_refund() -> None:
    rma = inspected_return(shop_order())
    request_refund(rma, "40.00")
    rma.fail_refund("RF-1", "card expired", day(18), CAUSE)
    issue_store_credit(rma, "40.00", at=day(19))
    assert rma.state.status is ReturnStatus.CLOSED


def test_no_store_credit_before_inspection() -> None:
    rma = received_return(shop_order())
    with pytest.raises(RefundLimitExceeded, match=re.escape("can pay out 0.00 EUR more")):
        issue_store_credit(rma, "40.00")
    with pytest.raises(InvalidTransition):
        issue_store_credit(authorized_return(shop_order()), "40.00")


@pytest.mark.parametrize("amount", ["40.01", "400.00"])
def test_store_credit_above_the_items_due_is_refused(amount: str) -> None:
    rma = inspected_return(shop_order())
    with pytest.raises(RefundLimitExceeded, match=re.escape("can pay out 40.00 EUR more")):
        issue_store_credit(rma, amount)
    assert rma.pending_events == []


# ---------------------------------------------------------------- exchange and nothing due
def test_ordering_an_exchange_closes_the_return() -> None:
    rma = inspected_return(shop_order())
    replacement = order_id_for("WEB-1001-X1")
    lines = (line(1, price="0.00"),)
    rma.order_exchange(
        replacement_order_id=replacement,
        replacement_order_number="WEB-1001-X1",
        lines=lines,
        at=day(17),
        cause=CAUSE,
    )
    assert rma.pending_events == [
        ExchangeOrdered(
            originator_id=RETURN_ID,
            originator_version=5,
            timestamp=day(17),
            cause=CAUSE,
            replacement_order_id=replacement,
            replacement_order_number="WEB-1001-X1",
            lines=lines,
        ),
        ReturnClosed(
            originator_id=RETURN_ID,
            originator_version=6,
            timestamp=day(17),
            cause=CAUSE,
            outcome="exchanged",
        ),
    ]
    assert rma.state.replacement_order_id == replacement


def exchange(rma: Return, at: float = 17) -> None:
    rma.order_exchange(
        replacement_order_id=order_id_for("WEB-1001-X1"),
        replacement_order_number="WEB-1001-X1",
        lines=(line(1, quantity=2, price="0.00"),),
        at=day(at),
        cause=CAUSE,
    )


def test_an_exchange_with_items_still_on_their_way_waits_for_them() -> None:
    rma = inspected_return(shop_order(), lines=(wants(quantity=2),))
    exchange(rma)
    assert types(rma) == (ExchangeOrdered,)
    assert rma.state.status is ReturnStatus.INSPECTED


def test_an_exchange_is_ordered_only_once() -> None:
    rma = inspected_return(shop_order(), lines=(wants(quantity=2),))
    exchange(rma)
    rma.collect_events()
    with pytest.raises(InvalidTransition, match=r"already ordered"):
        exchange(rma, at=18)
    assert rma.pending_events == []


def test_items_covered_by_an_exchange_are_not_refunded_too() -> None:
    rma = inspected_return(shop_order(), lines=(wants(quantity=2),))
    exchange(rma)
    receive(rma, receipt_id="RCPT-2", at=day(18))
    inspect(rma, receipt_id="RCPT-2", at=day(19))
    assert rma.items_due_unpaid() == eur("0.00")


def test_no_exchange_before_inspection() -> None:
    rma = received_return(shop_order())
    with pytest.raises(InvalidTransition):
        rma.order_exchange(
            replacement_order_id=ORDER_ID,
            replacement_order_number="X",
            lines=(),
            at=day(17),
            cause=CAUSE,
        )


def test_an_inspection_with_nothing_due_closes_with_nothing_due() -> None:
    rma = received_return(shop_order(), wants(reason=ReasonCode.SIZE_TOO_LARGE))
    inspect(rma, inspected(condition=Condition.WRONG_ITEM))
    rma.collect_events()
    rma.close_if_settled(day(17), CAUSE)
    assert rma.pending_events == [
        ReturnClosed(
            originator_id=RETURN_ID,
            originator_version=5,
            timestamp=day(17),
            cause=CAUSE,
            outcome="nothing_due",
        )
    ]


def test_nothing_due_on_the_first_parcel_waits_for_the_items_still_on_their_way() -> None:
    rma = inspected_return(
        shop_order(), inspected(condition=Condition.WRONG_ITEM), lines=(wants(quantity=2),)
    )
    rma.close_if_settled(day(17), CAUSE)
    assert rma.pending_events == []
    assert rma.state.status is ReturnStatus.INSPECTED


def test_blind_and_counter_returns_have_no_items_on_their_way() -> None:
    blind = given(blind_parcel())
    match(blind, shop_order(), wants(1, quantity=2))
    counter = record_in_store(shop_order(), wants(1, quantity=2), at=day(12))
    assert blind.outstanding_quantity() == counter.outstanding_quantity() == 0


def test_a_counter_return_refunded_in_full_closes() -> None:
    rma = record_in_store(shop_order(), wants(1, quantity=2), at=day(12))
    inspect(rma, inspected(quantity=2), receipt_id="SR-1", at=day(12))
    request_refund(rma, "80.00", at=day(12))
    rma.collect_events()
    rma.settle_refund("RF-1", "PSP-1", eur("80.00"), day(13), CAUSE)
    assert types(rma) == (RefundSettled, ReturnClosed)


# ---------------------------------------------------------------- cancel and expire
@pytest.mark.parametrize("stage", ["requested", "pending_review", "authorized", "keep_offered"])
def test_a_return_not_shipped_yet_can_be_cancelled(stage: str) -> None:
    order = expensive_order() if stage == "pending_review" else shop_order()
    rma = requested_return(order, wants(quantity=2) if stage == "pending_review" else wants(2))
    if stage != "requested":
        decide(rma, order)
    if stage == "keep_offered":
        rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    rma = given(rma)
    assert rma.state.status.value == stage.replace("keep_offered", "keep_item_offered")
    rma.cancel("no longer needed", day(12), CAUSE)
    assert rma.pending_events == [
        ReturnCancelled(
            originator_id=RETURN_ID,
            originator_version=rma.version,
            timestamp=day(12),
            cause=CAUSE,
            reason="no longer needed",
        )
    ]
    assert rma.state.status is ReturnStatus.CANCELLED


def test_a_return_whose_parcel_arrived_cannot_be_cancelled() -> None:
    rma = received_return(shop_order())
    with pytest.raises(InvalidTransition):
        rma.cancel("too late", day(16), CAUSE)
    assert rma.pending_events == []


def test_an_authorized_return_never_shipped_expires_after_30_days() -> None:
    rma = authorized_return(shop_order())
    assert rma.expire(BOOK, day(40), CAUSE) is True
    assert rma.pending_events == [
        ReturnExpired(
            originator_id=RETURN_ID,
            originator_version=3,
            timestamp=day(40),
            cause=CAUSE,
            authorized_days=30,
        )
    ]
    assert rma.state.status is ReturnStatus.EXPIRED


def test_an_authorized_return_does_not_expire_before_30_days() -> None:
    rma = authorized_return(shop_order())
    assert rma.expire(BOOK, day(39.9), CAUSE) is False
    assert rma.pending_events == []


def test_a_return_whose_parcel_arrived_never_expires() -> None:
    rma = received_return(shop_order())
    assert rma.expire(BOOK, day(400), CAUSE) is False
    assert rma.pending_events == []


def test_the_expiry_follows_the_policy_of_the_category() -> None:
    book = PolicyBook(by_category={"general": {"expiry_days": 7}})
    rma = authorized_return(shop_order(), book=book)
    assert rma.expire(BOOK, day(17), CAUSE) is False
    assert rma.expire(book, day(17), CAUSE) is True


# ---------------------------------------------------------------- repair and vendor legs
def with_leg(disposition: Disposition) -> Return:
    return inspected_return(
        shop_order(),
        inspected(condition=Condition.DEFECTIVE, disposition=disposition),
        lines=(wants(reason=ReasonCode.DEFECTIVE),),
    )


def test_an_item_sent_for_repair_opens_a_leg_apart_from_the_customer() -> None:
    rma = with_leg(Disposition.REPAIR)
    leg = rma.state.legs["L1"]
    assert (leg.kind, leg.sku, leg.quantity, leg.supplier, leg.status) == (
        Disposition.REPAIR,
        "SKU-1",
        1,
        "ACME",
        "awaiting_dispatch",
    )
    request_refund(rma, "45.00", shipping="5.00")
    assert rma.state.status is ReturnStatus.REFUND_PENDING


def test_the_repair_leg_goes_out_comes_back_and_is_restocked() -> None:
    rma = with_leg(Disposition.REPAIR)
    rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE)
    rma.complete_repair("L1", "repaired", day(30), CAUSE)
    rma.restock_repaired("L1", "WH-1", day(31), CAUSE)
    assert types(rma) == (RepairSent, RepairCompleted, RepairedItemRestocked)
    assert last(rma) == RepairedItemRestocked(
        originator_id=RETURN_ID,
        originator_version=7,
        timestamp=day(31),
        cause=CAUSE,
        leg_id="L1",
        location_id="WH-1",
    )
    assert (rma.state.legs["L1"].status, rma.state.legs["L1"].outcome) == (
        "restocked",
        "repaired",
    )
    assert rma.state.status is ReturnStatus.INSPECTED


def test_an_item_beyond_repair_is_not_restocked() -> None:
    rma = with_leg(Disposition.REPAIR)
    rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE)
    rma.complete_repair("L1", "beyond_repair", day(30), CAUSE)
    with pytest.raises(InvalidTransition, match=r"beyond repair"):
        rma.restock_repaired("L1", "WH-1", day(31), CAUSE)


def test_a_repair_ends_with_a_known_outcome() -> None:
    rma = with_leg(Disposition.REPAIR)
    rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE)
    with pytest.raises(InvalidCommand, match=r"unknown repair outcome"):
        rma.complete_repair("L1", "lost", day(30), CAUSE)


def test_a_repair_leg_moves_only_forward() -> None:
    rma = with_leg(Disposition.REPAIR)
    with pytest.raises(InvalidTransition, match=r"L1 is awaiting_dispatch; this needs at_repair"):
        rma.complete_repair("L1", "repaired", day(30), CAUSE)
    rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE)
    with pytest.raises(InvalidTransition):
        rma.send_to_repair("L1", "REPAIR-LYON", day(18), CAUSE)


def test_the_vendor_leg_ships_to_the_supplier_and_is_credited() -> None:
    rma = with_leg(Disposition.RETURN_TO_VENDOR)
    rma.ship_to_vendor("L1", "V-RMA-1", day(17), CAUSE)
    rma.receive_supplier_credit("L1", eur("30.00"), day(40), CAUSE)
    assert rma.pending_events == [
        VendorReturnShipped(
            originator_id=RETURN_ID,
            originator_version=5,
            timestamp=day(17),
            cause=CAUSE,
            leg_id="L1",
            supplier="ACME",
            vendor_rma="V-RMA-1",
        ),
        SupplierCreditReceived(
            originator_id=RETURN_ID,
            originator_version=6,
            timestamp=day(40),
            cause=CAUSE,
            leg_id="L1",
            amount=eur("30.00"),
        ),
    ]
    assert (rma.state.legs["L1"].status, rma.state.legs["L1"].credit) == (
        "credited",
        eur("30.00"),
    )


@pytest.mark.parametrize("amount", [eur("-1.00"), usd("30.00")])
def test_a_supplier_credit_is_a_non_negative_amount_in_the_return_currency(amount: Any) -> None:
    rma = with_leg(Disposition.RETURN_TO_VENDOR)
    rma.ship_to_vendor("L1", "V-RMA-1", day(17), CAUSE)
    with pytest.raises(InvalidCommand):
        rma.receive_supplier_credit("L1", amount, day(40), CAUSE)


def test_a_leg_command_for_the_wrong_kind_or_an_unknown_leg_is_refused() -> None:
    rma = with_leg(Disposition.RETURN_TO_VENDOR)
    with pytest.raises(InvalidCommand, match=r"has no repair leg L1"):
        rma.send_to_repair("L1", "REPAIR-LYON", day(17), CAUSE)
    with pytest.raises(InvalidCommand, match=r"no return_to_vendor leg L2"):
        rma.ship_to_vendor("L2", "V-RMA-1", day(17), CAUSE)
    assert rma.pending_events == []


def test_an_item_restocked_at_inspection_opens_no_leg() -> None:
    assert inspected_return(shop_order()).state.legs == {}


# ---------------------------------------------------------------- replay
def test_replaying_a_whole_return_gives_the_live_state() -> None:
    order = shop_order()
    rma = requested_return(order, wants(1, 2, ReasonCode.DEFECTIVE, serial="SN-1"))
    decide(rma, order)
    rma.issue_label("LBL-2", "colissimo", day(11), CAUSE)
    receive(rma, received(quantity=2))
    inspect(
        rma, inspected(quantity=2, condition=Condition.DEFECTIVE, disposition=Disposition.REPAIR)
    )
    request_refund(rma, "85.00", shipping="5.00")
    rma.fail_refund("RF-1", "card expired", day(17), CAUSE)
    request_refund(rma, "85.00", "RF-2", shipping="5.00", at=day(18))
    rma.send_to_repair("L1", "REPAIR-LYON", day(18), CAUSE)
    replayed = Return.replay(rma.id, rma.pending_events)
    assert dataclasses.asdict(replayed.state) == dataclasses.asdict(rma.state)
    assert replayed.version == rma.version == 9
    assert (replayed.paid_out(), replayed.shipping_paid()) == (eur("85.00"), eur("5.00"))


def test_replaying_a_return_paid_over_two_parcels_gives_the_live_state() -> None:
    order = shop_order()
    rma = requested_return(order, wants(1, quantity=2, reason=ReasonCode.DEFECTIVE))
    decide(rma, order)
    receive(rma, receipt_id="RCPT-1", at=day(15))
    inspect(rma, receipt_id="RCPT-1", at=day(16))
    request_refund(rma, "45.00", "RF-1", shipping="5.00", at=day(16))
    rma.settle_refund("RF-1", "PSP-1", eur("45.00"), day(17), CAUSE)
    receive(rma, receipt_id="RCPT-2", at=day(18))
    inspect(
        rma,
        inspected(condition=Condition.DEFECTIVE, disposition=Disposition.REPAIR),
        receipt_id="RCPT-2",
        at=day(19),
    )
    issue_store_credit(rma, "20.00", "SC-1", bonus="2.00", at=day(19))
    issue_store_credit(rma, "20.00", "SC-2", bonus="2.00", at=day(20))
    assert rma.state.status is ReturnStatus.CLOSED
    replayed = Return.replay(rma.id, rma.pending_events)
    assert dataclasses.asdict(replayed.state) == dataclasses.asdict(rma.state)
    assert replayed.version == rma.version
    assert (replayed.state.store_credit, replayed.paid_out(), replayed.items_due_unpaid()) == (
        eur("44.00"),
        eur("85.00"),
        eur("0.00"),
    )


def test_replaying_an_accepted_keep_item_offer_keeps_its_expiry_and_acceptance() -> None:
    rma = requested_return(shop_order(), wants(2))
    decide(rma, shop_order())
    rma.offer_keep_item(BOOK, day(17), day(10), CAUSE)
    rma.accept_keep_item(day(12), CAUSE)
    replayed = Return.replay(rma.id, rma.pending_events)
    assert dataclasses.asdict(replayed.state) == dataclasses.asdict(rma.state)
    assert (replayed.state.keep_item_expires_at, replayed.state.keep_item_accepted) == (
        day(17),
        True,
    )
