"""Keep the item: the offer of a refund without the parcel, and its acceptance.

Given a return's history, when a command, then events or an error. The order of most
tests is ``shop_order`` (tests/unit/builders.py).
"""

from __future__ import annotations

import re

import pytest

from domain.errors import InvalidTransition, PolicyViolation, RefundLimitExceeded
from domain.events import (
    KeepItemAccepted,
    KeepItemOffered,
    RefundRequested,
    RefundSettled,
    ReturnClosed,
    ReturnParcelReceived,
    ReturnUnexpectedParcelReceived,
)
from domain.returns import ReturnStatus
from domain.values import ReasonCode
from tests.unit.builders import (
    BOOK,
    CAUSE,
    RETURN_ID,
    RMA,
    authorized_return,
    day,
    eur,
    last,
    receive,
    received,
    request_refund,
    shop_order,
    snapshot,
    types,
    wants,
)


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
