"""Instant exchange: under a policy with ``instant_exchange`` the replacement is ordered at
authorization; the returned lines' value is owed until they arrive, cleared by the parcel,
and charged when the RMA expires without it. The order is ``shop_order``: line 1 is SKU-1
at 40.00."""

from __future__ import annotations

import pytest

from domain.errors import InvalidTransition
from domain.events import (
    ExchangeChoice,
    InstantExchangeCharged,
    ReturnCancelled,
    ReturnExpired,
)
from domain.order import order_id_for
from domain.policy import PolicyBook
from domain.policy_file import parse_policy
from domain.returns import RequestedLine, Return
from domain.returns.exchange import plan_exchange
from domain.values import Channel, Money, ReasonCode, RefundMethod
from projections.core import InMemoryReadModel
from projections.customers import CustomerHistory
from tests.unit.builders import (
    BOOK,
    CAUSE,
    Story,
    authorized_return,
    day,
    decide,
    eur,
    given,
    receive,
    received,
    requested_return,
    return_line,
    return_requested,
    shop_order,
    types,
    uid,
)

INSTANT = PolicyBook(by_category={"general": {"instant_exchange": True}})


def wants_instead(sku: str = "SKU-1-L", price: str = "40.00") -> RequestedLine:
    choice = ExchangeChoice(sku=sku, unit_price=Money.of(price, "EUR"), name="tee")
    return RequestedLine(1, 1, ReasonCode.SIZE_TOO_SMALL, exchange=choice)


def shipped_at_authorization(price: str = "40.00", *, rebuilt: bool = True) -> Return:
    """Authorized on day 10 and, as ``ship_instant_exchange`` does, the replacement ordered;
    ``rebuilt``: replayed from its whole history, the test's ``pending_events`` empty."""
    order = shop_order()
    rma = requested_return(order, wants_instead(price=price), refund_method=RefundMethod.EXCHANGE)
    decide(rma, order, book=INSTANT)
    plan = plan_exchange(order, rma.state.lines.values(), eur("40.00"))
    rma.order_instant_exchange(
        replacement_order_id=order_id_for("WEB-1001-X1"),
        replacement_order_number="WEB-1001-X1",
        lines=plan.lines,
        at=day(10),
        cause=CAUSE,
        refund_difference=plan.refund_difference,
        amount_due=plan.amount_due,
    )
    return given(rma) if rebuilt else rma


def test_the_policy_file_turns_instant_exchange_on_per_category_and_it_is_off_by_default() -> None:
    book = parse_policy("[category.tees]\ninstant_exchange = true\n")
    assert book.policy_for("tees", Channel.WEB).instant_exchange is True
    assert book.policy_for("shoes", Channel.WEB).instant_exchange is False
    assert BOOK.policy_for("general", Channel.WEB).instant_exchange is False


def test_the_replacement_ships_at_authorization_and_the_returned_value_is_owed() -> None:
    live = shipped_at_authorization(rebuilt=False)
    event = live.pending_events[-1]
    assert (event.instant, event.amount_outstanding) == (True, eur("40.00"))
    assert [(line.sku, line.unit_price) for line in event.lines] == [("SKU-1-L", eur("0.00"))]
    rma = given(live)
    assert rma.amount_outstanding() == eur("40.00")
    assert rma.state.status.value == "authorized"  # still waits for the parcel


def test_the_parcel_received_clears_what_is_owed() -> None:
    rma = shipped_at_authorization()
    receive(rma, received("SKU-1"))
    assert rma.amount_outstanding() == eur("0.00")


def test_an_rma_expiring_unreturned_charges_the_customer_once() -> None:
    rma = shipped_at_authorization()
    assert rma.expire(INSTANT, day(41), CAUSE)
    assert types(rma) == (ReturnExpired, InstantExchangeCharged)
    charged = rma.pending_events[-1]
    assert isinstance(charged, InstantExchangeCharged)
    assert (charged.replacement_order_number, charged.amount) == ("WEB-1001-X1", eur("40.00"))
    assert rma.state.instant_exchange_charged == eur("40.00")


def test_cancelling_an_instant_exchange_after_its_replacement_shipped_charges_what_is_owed() -> (
    None
):
    rma = shipped_at_authorization()
    rma.cancel("the customer keeps both after all", day(12), CAUSE)
    assert types(rma) == (ReturnCancelled, InstantExchangeCharged)
    assert rma.state.instant_exchange_charged == eur("40.00")


def test_an_ordinary_exchange_owes_nothing_and_expires_without_a_charge() -> None:
    rma = authorized_return(shop_order(), wants_instead(), refund_method=RefundMethod.EXCHANGE)
    assert rma.amount_outstanding() is None
    assert rma.expire(BOOK, day(41), CAUSE)
    assert types(rma) == (ReturnExpired,)


def test_only_an_authorized_exchange_ships_instantly_and_only_once() -> None:
    refund = authorized_return(shop_order(), wants_instead(), book=INSTANT)
    with pytest.raises(InvalidTransition, match="settled by exchange"):
        refund.order_instant_exchange(
            replacement_order_id=order_id_for("X"),
            replacement_order_number="X",
            lines=(),
            at=day(10),
            cause=CAUSE,
        )
    rma = shipped_at_authorization()
    with pytest.raises(InvalidTransition, match="already ordered"):
        rma.order_instant_exchange(
            replacement_order_id=order_id_for("X"),
            replacement_order_number="X",
            lines=(),
            at=day(10),
            cause=CAUSE,
        )


def test_the_charge_is_on_the_customers_timeline_with_what_is_owed() -> None:
    story = Story()
    rma = uid("instant-rma")
    return_requested(story, rma, uid("instant-order"), (return_line(),))
    story.add(InstantExchangeCharged, rma, replacement_order_number="WEB-1-X1", amount=eur("40.00"))
    model = InMemoryReadModel(CustomerHistory())
    model.apply(story.events)
    [charged] = [
        row
        for row in model.rows("rm_customer_timeline")
        if row["event_type"] == "rma.instant_exchange_charged"
    ]
    assert charged["customer_id"] == "C-1"
    assert "WEB-1-X1" in str(charged["summary"]) and "40.00" in str(charged["summary"])
