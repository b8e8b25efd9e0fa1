"""Instant exchange on the real event store: with the policy on for a category, asking an
exchange orders the replacement at authorization, in the same transaction; the parcel
clears what is owed and the return closes as exchanged (a cheaper replacement's difference
refunded after inspection); an RMA expiring unreturned charges the customer once."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from adapters.driven.eventstore import create_service
from domain.application import Outcome, ReturnsService
from domain.commands import ExpireReturn, RequestReturn
from domain.events import ExchangeChoice, ExchangeOrdered, InstantExchangeCharged
from domain.policy import PolicyBook
from domain.returns import RequestedLine, ReturnStatus
from domain.values import Money, ReasonCode, RefundMethod
from tests.integration.builders import ctx, delivered_order, receive_and_inspect
from tests.unit.builders import eur

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CATEGORY = "instant-shoes"


@pytest.fixture(scope="module")
def instant(database_url: str) -> Iterator[ReturnsService]:
    book = PolicyBook(by_category={CATEGORY: {"instant_exchange": True}})
    service = create_service(database_url, policy_book=book, pool_size=3)
    try:
        yield service
    finally:
        service.close()


def ask_exchange(service: ReturnsService, price: str = "50.00") -> tuple[str, Outcome]:
    number = delivered_order(service, category=CATEGORY)  # SHOE-RED-42 at 50.00
    choice = ExchangeChoice(sku="SHOE-RED-43", unit_price=Money.of(price, "EUR"))
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=number,
            lines=(RequestedLine(1, 1, ReasonCode.SIZE_TOO_SMALL, exchange=choice),),
            refund_method=RefundMethod.EXCHANGE,
        ),
    )
    return number, rma


def test_the_replacement_is_ordered_at_authorization_and_the_parcel_clears_the_debt(
    instant: ReturnsService,
) -> None:
    number, rma = ask_exchange(instant)
    assert rma.status == "authorized" and rma.rma_number
    return_id = rma.aggregate_id
    ordered = [e for e in instant.stored_events(return_id) if isinstance(e, ExchangeOrdered)]
    assert [(e.instant, e.amount_outstanding) for e in ordered] == [(True, eur("50.00"))]
    replacement = instant.order_view(f"{number}-X1")
    assert [(ln["sku"], ln["quantity"]) for ln in replacement["lines"]] == [("SHOE-RED-43", 1)]
    assert instant.get_return(return_id).amount_outstanding() == eur("50.00")

    receive_and_inspect(instant, rma.rma_number)
    done = instant.get_return(return_id)
    assert done.amount_outstanding() == eur("0.00")
    assert (done.state.status, done.state.closed_outcome) == (ReturnStatus.CLOSED, "exchanged")
    assert not done.state.refunds  # an even exchange: no money moves


def test_a_cheaper_instant_replacement_refunds_its_difference_after_inspection(
    instant: ReturnsService,
) -> None:
    _, rma = ask_exchange(instant, price="35.00")
    assert rma.rma_number
    outcome = receive_and_inspect(instant, rma.rma_number)
    assert outcome.amount == eur("15.00") and outcome.refund_id


def test_an_instant_exchange_never_returned_is_charged_once_at_expiry(
    instant: ReturnsService,
) -> None:
    number, rma = ask_exchange(instant)
    return_id = rma.aggregate_id
    later = dataclasses.replace(ctx(), at=datetime.now(UTC) + timedelta(days=31))
    instant.run(later, ExpireReturn(return_id=return_id))
    instant.run(later, ExpireReturn(return_id=return_id))  # the sweep again: nothing more
    charged = [e for e in instant.stored_events(return_id) if isinstance(e, InstantExchangeCharged)]
    assert [(e.replacement_order_number, e.amount) for e in charged] == [
        (f"{number}-X1", eur("50.00"))
    ]
    assert instant.get_return(return_id).state.status is ReturnStatus.EXPIRED


def test_without_the_policy_an_exchange_waits_for_the_parcel(service: ReturnsService) -> None:
    _, rma = ask_exchange(service)
    return_id = rma.aggregate_id
    assert not [e for e in service.stored_events(return_id) if isinstance(e, ExchangeOrdered)]
    assert service.get_return(return_id).amount_outstanding() is None
