"""A store-method RMA at a store counter: who may take it, what is still to bring, and what
the receipt says is settled and pending. Given an RMA's history, when the counter checks."""

from __future__ import annotations

import pytest

from adapters.driving.api.documents import settlement_lines
from domain.errors import InvalidCommand, InvalidTransition, QuantityExceeded, WrongReturnMethod
from domain.handlers.counter import check_can_take_at_counter, still_to_bring
from domain.returns import CounterCheck, Return
from domain.values import Condition, Disposition, RefundMethod, ReturnChannel, ReturnMethod
from tests.unit.builders import (
    CAUSE,
    ORDER_NUMBER,
    RETURN_ID,
    authorized_return,
    day,
    decide,
    eur,
    given,
    inspect,
    inspected,
    receive,
    received,
    request_refund,
    shop_order,
    wants,
)


def store_rma(quantity: int = 2) -> Return:
    """Authorized on day 10 for ``quantity`` of line 1 (SKU-1 at 40.00), to bring to a store."""
    order = shop_order()
    rma = Return.request(
        RETURN_ID,
        order=order,
        lines=(wants(quantity=quantity),),
        channel=ReturnChannel.PORTAL,
        method=ReturnMethod.STORE,
        refund_method=RefundMethod.ORIGINAL_PAYMENT,
        comment="",
        at=day(10),
        cause=CAUSE,
    )
    decide(rma, order)
    return given(rma)


def brought(quantity: int, line_no: int = 1) -> tuple[CounterCheck, ...]:
    return (CounterCheck(line_no, quantity, Condition.NEW, Disposition.RESTOCK),)


def test_a_store_rma_can_be_taken_at_any_counter_for_what_it_still_holds() -> None:
    rma = store_rma()
    check_can_take_at_counter(rma, order_number=ORDER_NUMBER, checks=brought(2))
    assert still_to_bring(rma) == {1: 2}


def test_what_was_received_is_no_longer_to_bring_and_not_taken_twice() -> None:
    rma = store_rma()
    receive(rma, received("SKU-1", 1))
    assert still_to_bring(rma) == {1: 1}
    check_can_take_at_counter(rma, checks=brought(1))
    with pytest.raises(QuantityExceeded, match="2 brought, 1 still to bring"):
        check_can_take_at_counter(rma, checks=brought(2))


def test_a_carrier_rma_is_refused_at_a_counter_with_the_way_out() -> None:
    rma = authorized_return(shop_order())
    with pytest.raises(WrongReturnMethod, match="carrier_drop_off, not at a store"):
        check_can_take_at_counter(rma)


def test_an_rma_of_another_order_is_refused() -> None:
    with pytest.raises(InvalidCommand, match="not WEB-9"):
        check_can_take_at_counter(store_rma(), order_number="WEB-9")


def test_a_cancelled_rma_and_one_received_in_full_take_nothing() -> None:
    cancelled = store_rma()
    cancelled.cancel("changed mind", day(11), CAUSE)
    with pytest.raises(InvalidTransition, match="cancelled: it takes no goods"):
        check_can_take_at_counter(cancelled)
    full = store_rma(quantity=1)
    receive(full, received("SKU-1", 1))
    with pytest.raises(InvalidTransition, match="already received in full"):
        check_can_take_at_counter(full)


def test_the_receipt_lists_a_requested_refund_as_pending_and_what_is_still_to_bring() -> None:
    rma = store_rma()
    receive(rma, received("SKU-1", 1))
    inspect(rma, inspected("SKU-1", 1, line_no=1))
    request_refund(rma, "40.00")
    settled, pending = settlement_lines(rma)
    assert settled == []
    assert pending == ["RF-1: 40.00 EUR to card (requested)", "line 1 SKU-1: 1 to bring"]


def test_the_receipt_lists_a_settled_refund_as_settled() -> None:
    rma = store_rma(quantity=1)
    receive(rma, received("SKU-1", 1))
    inspect(rma, inspected("SKU-1", 1, line_no=1))
    request_refund(rma, "40.00")
    rma.settle_refund("RF-1", "PSP-1", eur("40.00"), day(17), CAUSE)
    assert settlement_lines(rma) == (["RF-1: 40.00 EUR to card (settled)"], [])
