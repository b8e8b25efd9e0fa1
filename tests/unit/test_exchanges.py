"""Exchanges for another size or SKU: even, cheaper (the difference refunded), dearer
(the difference owed). The order is ``shop_order``: line 1 is SKU-1 at 40.00."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given as for_all
from hypothesis import strategies as st

from domain.errors import InvalidCommand, RefundLimitExceeded
from domain.events import ExchangeChoice, ExchangeOrdered, RefundRequested, ReturnClosed
from domain.order import order_id_for
from domain.returns import RequestedLine, Return, ReturnStatus
from domain.returns.exchange import plan_exchange
from domain.values import Money, ReasonCode
from tests.unit.builders import (
    CAUSE,
    day,
    eur,
    inspected_return,
    request_refund,
    requested_return,
    shop_order,
    types,
)


def wants_instead(sku: str, price: str, currency: str = "EUR") -> RequestedLine:
    choice = ExchangeChoice(sku=sku, unit_price=Money.of(price, currency), name=f"{sku} tee")
    return RequestedLine(1, 1, ReasonCode.SIZE_TOO_SMALL, exchange=choice)


def exchanged(sku: str, price: str) -> tuple[Return, ExchangeOrdered]:
    """Inspected on day 16, the exchange ordered on day 17 as the handler plans it."""
    order = shop_order()
    rma = inspected_return(order, lines=(wants_instead(sku, price),))
    plan = plan_exchange(order, rma.state.lines.values(), rma.items_due_unpaid())
    rma.order_exchange(
        replacement_order_id=order_id_for("WEB-1001-X1"),
        replacement_order_number="WEB-1001-X1",
        lines=plan.lines,
        at=day(17),
        cause=CAUSE,
        refund_difference=plan.refund_difference,
        amount_due=plan.amount_due,
    )
    event = rma.pending_events[0]
    assert isinstance(event, ExchangeOrdered)
    return rma, event


def test_an_even_exchange_ships_the_named_sku_and_moves_no_money() -> None:
    rma, event = exchanged("SKU-1-L", "40.00")
    assert [(line.sku, line.name, line.quantity, line.unit_price) for line in event.lines] == [
        ("SKU-1-L", "SKU-1-L tee", 1, eur("0.00"))
    ]
    assert (event.refund_difference, event.amount_due) == (None, None)
    assert types(rma) == (ExchangeOrdered, ReturnClosed)
    assert rma.state.closed_outcome == "exchanged"


def test_without_a_named_sku_the_same_sku_is_shipped_again() -> None:
    order = shop_order()
    rma = inspected_return(order)
    plan = plan_exchange(order, rma.state.lines.values(), rma.items_due_unpaid())
    assert [line.sku for line in plan.lines] == ["SKU-1"]
    assert (plan.refund_difference, plan.amount_due) == (None, None)


def test_a_cheaper_replacement_leaves_the_difference_to_refund_before_closing() -> None:
    rma, event = exchanged("SKU-9", "25.50")
    assert event.refund_difference == eur("14.50")
    assert event.amount_due is None
    assert types(rma) == (ExchangeOrdered,)  # open until the difference is paid
    assert rma.items_due_unpaid() == eur("14.50")
    rma.collect_events()
    with pytest.raises(RefundLimitExceeded, match=r"can pay out 14.50 EUR more"):
        request_refund(rma, "40.00")
    request_refund(rma, "14.50")
    assert types(rma) == (RefundRequested,)
    assert rma.state.status is ReturnStatus.REFUND_PENDING
    rma.collect_events()
    rma.settle_refund("RF-1", "PSP-1", eur("14.50"), day(18), CAUSE)
    assert rma.state.status is ReturnStatus.CLOSED
    assert rma.state.closed_outcome == "exchanged"
    rma.collect_events()
    rma.settle_refund("RF-1", "PSP-1", eur("14.50"), day(19), CAUSE)  # the provider, twice
    assert rma.pending_events == []


def test_a_difference_settled_payment_by_payment_closes_as_exchanged_too() -> None:
    rma, _ = exchanged("SKU-9", "25.50")
    request_refund(rma, "14.50")
    assert rma.settle_refund_payment("RF-1", "PAY-CARD", "PSP-1", eur("14.50"), day(18), CAUSE)
    assert rma.state.status is ReturnStatus.CLOSED
    assert rma.state.closed_outcome == "exchanged"


def test_a_declined_difference_is_due_again_and_nothing_more() -> None:
    rma, _ = exchanged("SKU-9", "25.50")
    request_refund(rma, "14.50")
    rma.collect_events()
    assert rma.fail_refund("RF-1", "declined", day(18), CAUSE) is True
    assert rma.fail_refund("RF-1", "declined", day(18), CAUSE) is False
    assert rma.state.status is ReturnStatus.REFUND_FAILED
    assert rma.items_due_unpaid() == eur("14.50")


def test_a_dearer_replacement_records_what_the_customer_owes() -> None:
    rma, event = exchanged("SKU-7", "55.25")
    assert event.amount_due == eur("15.25")
    assert event.refund_difference is None
    assert rma.state.exchange_amount_due == eur("15.25")
    assert rma.state.closed_outcome == "exchanged"
    assert rma.state.refunds == {}


def test_the_refunded_difference_is_at_most_what_inspection_left_due() -> None:
    order = shop_order()
    rma = inspected_return(order, lines=(wants_instead("SKU-9", "10.00"),))
    plan = plan_exchange(order, rma.state.lines.values(), eur("12.00"))
    assert plan.refund_difference == eur("12.00")


def test_a_replacement_priced_in_another_currency_is_refused() -> None:
    with pytest.raises(InvalidCommand, match=r"non-negative EUR"):
        requested_return(shop_order(), wants_instead("SKU-9", "10.00", "USD"))


@for_all(
    price=st.decimals(min_value=0, max_value=200, places=2),
    due=st.decimals(min_value=0, max_value=40, places=2),
)
def test_exchange_money_never_both_refunds_and_charges_nor_exceeds_what_is_due(
    price: Decimal, due: Decimal
) -> None:
    order = shop_order()
    rma = inspected_return(order, lines=(wants_instead("SKU-9", str(price)),))
    plan = plan_exchange(order, rma.state.lines.values(), eur(str(due)))
    refunded = plan.refund_difference.amount if plan.refund_difference else Decimal(0)
    owed = plan.amount_due.amount if plan.amount_due else Decimal(0)
    assert refunded == 0 or owed == 0
    assert 0 <= refunded <= due
    assert owed == max(price - Decimal("40.00"), Decimal(0))
    if refunded < due:
        assert refunded - owed == Decimal("40.00") - price
