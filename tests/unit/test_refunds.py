"""Refunds of a return: requests, settlement and failure, payout limits, and the
restocking fee.

Given a return's history, when a command, then events or an error. The order of most
tests is ``shop_order`` (tests/unit/builders.py).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from domain.errors import InvalidCommand, InvalidTransition, RefundLimitExceeded
from domain.events import (
    InspectedItem,
    RefundFailed,
    RefundRequested,
    RefundSettled,
    ReturnClosed,
    StoreCreditIssued,
)
from domain.returns import Return, ReturnStatus
from domain.values import ReasonCode
from tests.unit.builders import (
    CAUSE,
    OTHER_RETURN_ID,
    RETURN_ID,
    allocation,
    authorized_return,
    day,
    decide,
    eur,
    given,
    inspect,
    inspected,
    inspected_return,
    issue_store_credit,
    last,
    receive,
    received,
    received_return,
    request_refund,
    requested_return,
    shop_history,
    shop_order,
    snapshot,
    types,
    usd,
    wants,
)


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


def test_a_failed_refund_cannot_be_settled() -> None:
    failed = inspected_return(shop_order())
    request_refund(failed, "40.00")
    failed.fail_refund("RF-1", "card expired", day(18), CAUSE)
    with pytest.raises(InvalidTransition, match=r"already failed"):
        failed.settle_refund("RF-1", "PSP-1", eur("40.00"), day(19), CAUSE)


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
