"""Changing how the customer is settled (refund, store credit, exchange) on an open RMA."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import InvalidTransition, ResolutionLocked
from domain.events import ReturnResolutionChanged
from domain.order import Order
from domain.returns import Return
from domain.values import RefundMethod
from tests.unit.builders import (
    CAUSE,
    RETURN_ID,
    authorized_return,
    day,
    decide,
    delivered_order,
    inspected_return,
    issue_store_credit,
    line,
    received_return,
    request_refund,
    requested_return,
    wants,
)


def order() -> Order:
    return delivered_order(line(1, quantity=2, price="40.00"))


def change(rma: Return, to: RefundMethod, reason: str = "customer called") -> bool:
    return rma.change_resolution(to, reason, day(12), CAUSE)


def test_an_authorized_return_changes_to_store_credit() -> None:
    rma = authorized_return(order())
    assert change(rma, RefundMethod.STORE_CREDIT) is True
    assert rma.pending_events == [
        ReturnResolutionChanged(
            originator_id=RETURN_ID,
            originator_version=3,
            timestamp=day(12),
            cause=CAUSE,
            from_refund_method=RefundMethod.ORIGINAL_PAYMENT,
            to_refund_method=RefundMethod.STORE_CREDIT,
            reason="customer called",
        )
    ]
    assert rma.state.refund_method is RefundMethod.STORE_CREDIT


def test_the_changed_resolution_survives_a_replay() -> None:
    rma = requested_return(order(), refund_method=RefundMethod.EXCHANGE)
    decide(rma, order())
    change(rma, RefundMethod.ORIGINAL_PAYMENT)
    replayed = Return.replay(RETURN_ID, rma.collect_events())  # its whole history
    assert replayed.state == rma.state
    assert replayed.state.refund_method is RefundMethod.ORIGINAL_PAYMENT


def test_a_received_parcel_awaiting_inspection_may_still_change_to_an_exchange() -> None:
    rma = received_return(order())
    assert change(rma, RefundMethod.EXCHANGE) is True
    assert rma.state.refund_method is RefundMethod.EXCHANGE


def test_a_return_held_for_review_may_change_its_resolution() -> None:
    big = delivered_order(line(1, quantity=1, price="900.00"))
    rma = requested_return(big)
    decide(rma, big)
    rma.collect_events()
    assert change(rma, RefundMethod.STORE_CREDIT) is True


def test_choosing_the_method_already_chosen_records_nothing() -> None:
    rma = authorized_return(order(), refund_method=RefundMethod.STORE_CREDIT)
    assert change(rma, RefundMethod.STORE_CREDIT) is False
    assert rma.pending_events == []


def half_inspected() -> Return:
    """Two items asked back, one received and inspected: the RMA stays open."""
    return inspected_return(order(), lines=(wants(1, 2),))


def refunded() -> Return:
    rma = half_inspected()
    request_refund(rma, "40.00")
    return rma


def credited() -> Return:
    rma = half_inspected()
    issue_store_credit(rma, "40.00")
    return rma


def closed() -> Return:
    rma = inspected_return(order())
    issue_store_credit(rma, "40.00")  # all that was due: the return closes
    return rma


@pytest.mark.parametrize(
    ("given", "why"),
    [
        (refunded, "has paid the customer already"),
        (credited, "has paid the customer already"),
        (closed, "is closed"),
    ],
    ids=["refund requested", "store credit issued", "closed"],
)
def test_after_the_customer_was_paid_the_resolution_is_locked(given: Any, why: str) -> None:
    rma: Return = given()
    rma.collect_events()
    with pytest.raises(ResolutionLocked, match=why) as refused:
        change(rma, RefundMethod.EXCHANGE)
    assert refused.value.code == "resolution_locked"
    assert isinstance(refused.value, InvalidTransition)  # an HTTP 409, like other transitions
    assert rma.pending_events == []


def test_after_an_exchange_was_ordered_the_resolution_is_locked() -> None:
    rma = half_inspected()  # the exchange leaves it open: one item is still on its way
    rma.order_exchange(
        replacement_order_id=RETURN_ID,
        replacement_order_number="WEB-1001-X1",
        lines=(line(1, price="0.00"),),
        at=day(16),
        cause=CAUSE,
    )
    rma.collect_events()
    with pytest.raises(ResolutionLocked, match="has ordered an exchange"):
        change(rma, RefundMethod.ORIGINAL_PAYMENT)


def test_a_cancelled_return_cannot_change_its_resolution() -> None:
    rma = authorized_return(order())
    rma.cancel("changed my mind", day(11), CAUSE)
    rma.collect_events()
    with pytest.raises(ResolutionLocked, match="is cancelled"):
        change(rma, RefundMethod.STORE_CREDIT)
    assert rma.pending_events == []
