"""A store-method RMA received at a store counter, on the real PostgreSQL event store."""

from __future__ import annotations

import pytest

from adapters.driven.kafka.topics import POS_RETURNS
from domain.application import Outcome, ReturnsService
from domain.commands import CancelReturn, ReceiveRmaAtCounter
from domain.errors import InvalidTransition, NotFound, QuantityExceeded, WrongReturnMethod
from domain.returns import CounterCheck, ReturnStatus
from domain.values import (
    Condition,
    Disposition,
    RefundMethod,
    ReturnMethod,
    RmaNumber,
)
from streams.inbound import process_batch
from tests.integration.builders import (
    authorized_return,
    cloud_event,
    ctx,
    delivered_order,
    receive_and_inspect,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def rma_of(service: ReturnsService, number: str, method: ReturnMethod, quantity: int = 2) -> str:
    outcome = authorized_return(service, number, quantity=quantity, method=method)
    assert outcome.rma_number
    return outcome.rma_number


def at_counter(
    rma_number: str,
    store_return_id: str = "SR-1",
    quantity: int = 2,
    refund_method: RefundMethod | None = None,
) -> ReceiveRmaAtCounter:
    return ReceiveRmaAtCounter(
        rma_number=rma_number,
        store_id="STORE-7",
        store_return_id=store_return_id,
        staff_id="clerk-1",
        checks=(
            CounterCheck(
                line_no=1,
                quantity=quantity,
                condition=Condition.RESELLABLE,
                disposition=Disposition.RESTOCK,
            ),
        ),
        refund_method=refund_method,
    )


def test_a_store_rma_is_received_inspected_and_refunded_at_the_counter_once(
    service: ReturnsService,
) -> None:
    number = delivered_order(service)
    rma_number = rma_of(service, number, ReturnMethod.STORE)

    first: Outcome = service.run(ctx("counter-1"), at_counter(rma_number))
    again = service.run(ctx("counter-1"), at_counter(rma_number))
    # A second delivery under another key (a clerk's double tap) changes nothing either.
    other_key = service.run(ctx("counter-2"), at_counter(rma_number))

    assert first.status == ReturnStatus.REFUND_PENDING.value
    assert again == first
    rma = service.get_return_by_rma(rma_number)
    assert other_key.aggregate_id == rma.id
    assert rma.state.receipts == ["SR-1"] and rma.state.inspected_receipts == ["SR-1"]
    assert [i.location_id for i in rma.state.inspected_items] == ["STORE-7"]
    assert len(rma.state.refunds) == 1
    assert next(iter(rma.state.refunds.values())).amount == first.amount
    # The RMA's own reservation is what came back: the order has nothing more to return.
    assert service.order_view(number)["lines"][0]["returnable_quantity"] == 0


def test_the_counter_can_pay_in_store_credit_instead(service: ReturnsService) -> None:
    number = delivered_order(service)
    rma_number = rma_of(service, number, ReturnMethod.STORE, quantity=1)
    outcome = service.run(
        ctx(), at_counter(rma_number, quantity=1, refund_method=RefundMethod.STORE_CREDIT)
    )
    rma = service.get_return_by_rma(rma_number)
    assert outcome.status == ReturnStatus.CLOSED.value
    assert rma.state.closed_outcome == "store_credit" and not rma.state.refunds


def test_a_carrier_rma_at_a_counter_is_refused_and_nothing_recorded(
    service: ReturnsService,
) -> None:
    number = delivered_order(service)
    rma_number = rma_of(service, number, ReturnMethod.CARRIER_DROP_OFF)
    before = service.get_return_by_rma(rma_number).version
    with pytest.raises(WrongReturnMethod, match="carrier_drop_off"):
        service.run(ctx(), at_counter(rma_number))
    assert service.get_return_by_rma(rma_number).version == before


def test_a_cancelled_or_fully_received_rma_takes_nothing_at_the_counter(
    service: ReturnsService,
) -> None:
    number = delivered_order(service)
    cancelled = rma_of(service, number, ReturnMethod.STORE)
    service.run(ctx(), CancelReturn(service.get_return_by_rma(cancelled).id, "changed mind"))
    with pytest.raises(InvalidTransition, match="cancelled"):
        service.run(ctx(), at_counter(cancelled))

    received = rma_of(service, number, ReturnMethod.STORE)
    receive_and_inspect(service, received, quantity=2)
    with pytest.raises(InvalidTransition, match="already received"):
        service.run(ctx(), at_counter(received, "SR-2"))


def test_more_than_the_rma_holds_is_refused(service: ReturnsService) -> None:
    number = delivered_order(service)
    rma_number = rma_of(service, number, ReturnMethod.STORE, quantity=1)
    with pytest.raises(QuantityExceeded, match="1 still to bring"):
        service.run(ctx(), at_counter(rma_number, quantity=2))


def test_an_unknown_rma_is_not_found(service: ReturnsService) -> None:
    with pytest.raises(NotFound):
        service.run(ctx(), at_counter(RmaNumber.generate()))


def counter_message(order_number: str, rma_number: str, store_return_id: str) -> bytes:
    return cloud_event(
        "return.recorded",
        {
            "store_return_id": store_return_id,
            "store_id": "STORE-3",
            "staff_id": "clerk-9",
            "order_id": order_number,
            "rma_number": rma_number.lower(),  # typed by a clerk
            "items": [
                {"line": 1, "quantity": 2, "reason_code": "size_too_small", "condition": "new"}
            ],
        },
        source="pos/STORE-3",
    )


def test_a_counter_message_naming_an_rma_receives_it_instead_of_opening_a_return(
    service: ReturnsService,
) -> None:
    number = delivered_order(service)
    rma_number = rma_of(service, number, ReturnMethod.STORE)
    message = counter_message(number, rma_number, "SR-9")

    first = process_batch(service, POS_RETURNS, [message])
    replay = process_batch(service, POS_RETURNS, [message])

    assert first == [None] and replay == [None]
    rma = service.get_return_by_rma(rma_number)
    assert rma.state.receipts == ["SR-9"] and len(rma.state.refunds) == 1
    # The RMA kept its refund method: the message named none.
    assert rma.state.refund_method is RefundMethod.ORIGINAL_PAYMENT


def test_a_counter_message_naming_a_carrier_rma_or_another_order_is_dead_lettered(
    service: ReturnsService,
) -> None:
    number = delivered_order(service)
    carrier = rma_of(service, number, ReturnMethod.CARRIER_DROP_OFF, quantity=1)
    other = delivered_order(service)
    store = rma_of(service, other, ReturnMethod.STORE)

    results = process_batch(
        service,
        POS_RETURNS,
        [counter_message(number, carrier, "SR-10"), counter_message(number, store, "SR-11")],
    )

    assert [r.code if r else None for r in results] == ["wrong_return_method", "invalid_command"]
