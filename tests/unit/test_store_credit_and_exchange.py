"""Store credit, exchanges, and returns that settle with nothing due.

Given a return's history, when a command, then events or an error. The order of most
tests is ``shop_order`` (tests/unit/builders.py).
"""

from __future__ import annotations

import re

import pytest

from domain.errors import InvalidTransition, RefundLimitExceeded
from domain.events import ExchangeOrdered, RefundSettled, ReturnClosed, StoreCreditIssued
from domain.order import order_id_for
from domain.returns import Return, ReturnStatus
from domain.values import Condition, ReasonCode
from tests.unit.builders import (
    CAUSE,
    ORDER_ID,
    RETURN_ID,
    authorized_return,
    blind_parcel,
    day,
    eur,
    given,
    inspect,
    inspected,
    inspected_return,
    issue_store_credit,
    line,
    match,
    receive,
    received_return,
    record_in_store,
    request_refund,
    shop_order,
    two_item_rma,
    types,
    wants,
)


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
