"""Store credit as a balance on the real event store: credited by a return paid as store
credit, spent by orders paid with it, refused past the balance, given back by refunds."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from domain.application import Outcome, ReturnsService
from domain.commands import (
    CancelOrder,
    DeliverOrder,
    FailRefund,
    FulfilOrder,
    PlaceOrder,
    RequestReturn,
    RetryRefund,
    SettleRefund,
)
from domain.errors import DomainError, InsufficientStoreCredit
from domain.events import FulfilledLine, OrderLine, Payment, StoreCreditIssued
from domain.order import order_id_for
from domain.returns import RequestedLine
from domain.values import Channel, PaymentMethod, ReasonCode, RefundMethod
from tests.integration.builders import ctx, delivered_order, receive_and_inspect
from tests.unit.builders import eur

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def customer_of(number: str) -> str:
    return f"cust-{number}"  # as tests.integration.builders.delivered_order names them


def credit_order(
    service: ReturnsService,
    customer_id: str,
    credit: str,
    card: str = "0.00",
    key: str = "",
    number: str = "",
) -> str:
    number = number or f"SC-{uuid.uuid4().hex[:10]}"
    payments = [Payment(payment_id="pay-sc", method=PaymentMethod.STORE_CREDIT, amount=eur(credit))]
    if eur(card).amount > 0:
        payments.append(Payment(payment_id="pay-card", method=PaymentMethod.CARD, amount=eur(card)))
    total = eur(credit) + eur(card)
    service.run(
        ctx(key or None),
        PlaceOrder(
            order_number=number,
            customer_id=customer_id,
            customer_email=None,
            channel=Channel.WEB,
            lines=(OrderLine(line_no=1, sku="SHOE-RED-42", quantity=1, unit_price=total),),
            payments=tuple(payments),
            shipping=eur("0.00"),
        ),
    )
    return number


def returned_as_store_credit(service: ReturnsService) -> tuple[str, StoreCreditIssued]:
    """A 100.00 order, one 50.00 item returned with store credit chosen: 50.00 + bonus."""
    number = delivered_order(service, quantity=2, unit_price="50.00", shipping="0.00")
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=number,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_SMALL),),
            refund_method=RefundMethod.STORE_CREDIT,
        ),
    )
    assert rma.rma_number
    receive_and_inspect(service, rma.rma_number)
    issued = service.stored_events(rma.aggregate_id)[-2]
    assert isinstance(issued, StoreCreditIssued)
    return customer_of(number), issued


def test_a_return_paid_as_store_credit_credits_the_balance_with_the_bonus(
    service: ReturnsService,
) -> None:
    customer, issued = returned_as_store_credit(service)
    assert issued.bonus == eur("5.00")  # the customer chose store credit: the policy's 10 %
    account = service.get_store_credit(customer)
    assert account.balance("EUR") == eur("55.00")
    assert [(m.reference, m.amount) for m in account.movements] == [
        (issued.credit_id, eur("55.00"))
    ]


def test_an_order_spends_credit_up_to_the_balance_and_is_refused_past_it(
    service: ReturnsService,
) -> None:
    customer, _ = returned_as_store_credit(service)
    number = credit_order(service, customer, "40.00", card="20.00")
    assert service.get_order(number).state.customer_id == customer
    assert service.get_store_credit(customer).balance("EUR") == eur("15.00")

    with pytest.raises(InsufficientStoreCredit, match=r"has 15\.00 EUR"):
        credit_order(service, customer, "500.00")
    assert service.get_store_credit(customer).balance("EUR") == eur("15.00")
    assert service.get_store_credit(customer).version == 2


def test_a_stranger_with_no_credit_cannot_pay_with_it_and_no_order_is_recorded(
    service: ReturnsService,
) -> None:
    stranger, number = f"nobody-{uuid.uuid4().hex[:6]}", f"SC-{uuid.uuid4().hex[:10]}"
    with pytest.raises(InsufficientStoreCredit):
        credit_order(service, stranger, "10.00", number=number)
    assert service.stored_events(order_id_for(number)) == []
    assert service.get_store_credit(stranger).version == 0


def test_an_order_placed_again_under_its_key_spends_once(service: ReturnsService) -> None:
    customer, _ = returned_as_store_credit(service)
    key = f"order-{uuid.uuid4()}"
    number = credit_order(service, customer, "30.00", key=key)
    outcome = service.run(
        ctx(key),
        PlaceOrder(
            order_number=number,
            customer_id=customer,
            customer_email=None,
            channel=Channel.WEB,
            lines=(OrderLine(line_no=1, sku="SHOE-RED-42", quantity=1, unit_price=eur("30.00")),),
            payments=(
                Payment(
                    payment_id="pay-sc", method=PaymentMethod.STORE_CREDIT, amount=eur("30.00")
                ),
            ),
            shipping=eur("0.00"),
        ),
    )
    assert outcome.status == "placed"
    assert service.get_store_credit(customer).balance("EUR") == eur("25.00")


def test_a_cancelled_order_gives_its_store_credit_back(service: ReturnsService) -> None:
    customer, _ = returned_as_store_credit(service)
    number = credit_order(service, customer, "55.00")
    assert service.get_store_credit(customer).balance("EUR") == eur("0.00")
    service.run(ctx(), CancelOrder(order_number=number, reason="customer changed their mind"))
    assert service.get_store_credit(customer).balance("EUR") == eur("55.00")


def test_a_declined_refund_paid_as_store_credit_by_customer_service_has_no_bonus(
    service: ReturnsService,
) -> None:
    number = delivered_order(service, quantity=1, unit_price="80.00", shipping="0.00")
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=number,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_SMALL),),
        ),
    )
    assert rma.rma_number
    inspected = receive_and_inspect(service, rma.rma_number)
    assert inspected.refund_id
    service.run(ctx(), FailRefund(refund_id=inspected.refund_id, reason="card expired"))
    service.run(ctx(), RetryRefund(return_id=rma.aggregate_id, as_store_credit=True))
    issued = [
        e for e in service.stored_events(rma.aggregate_id) if isinstance(e, StoreCreditIssued)
    ]
    assert [(e.amount, e.bonus) for e in issued] == [(eur("80.00"), eur("0.00"))]
    assert service.get_store_credit(customer_of(number)).balance("EUR") == eur("80.00")


def test_a_settled_refund_of_an_order_paid_with_store_credit_gives_that_part_back(
    service: ReturnsService,
) -> None:
    customer, _ = returned_as_store_credit(service)  # 55.00
    number = credit_order(service, customer, "50.00", card="50.00")  # balance 5.00
    service.run(
        ctx(),
        FulfilOrder(
            order_number=number, location_id="WH-1", lines=(FulfilledLine(line_no=1, quantity=1),)
        ),
    )
    service.run(ctx(), DeliverOrder(order_number=number))
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=number,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_SMALL),),
        ),
    )
    assert rma.rma_number
    inspected = receive_and_inspect(service, rma.rma_number)
    assert inspected.refund_id and inspected.amount == eur("100.00")
    assert service.get_store_credit(customer).balance("EUR") == eur("5.00")  # not yet settled
    settle = SettleRefund(
        refund_id=inspected.refund_id, provider_reference="PSP-1", amount=eur("100.00")
    )
    service.run(ctx(), settle)
    assert service.get_store_credit(customer).balance("EUR") == eur("55.00")
    moves = service.get_store_credit(customer).movements
    assert (moves[-1].reference, moves[-1].amount) == (inspected.refund_id, eur("50.00"))


def spend_command(customer_id: str, credit: str) -> PlaceOrder:
    return PlaceOrder(
        order_number=f"SC-{uuid.uuid4().hex[:10]}",
        customer_id=customer_id,
        customer_email=None,
        channel=Channel.WEB,
        lines=(OrderLine(line_no=1, sku="SHOE-RED-42", quantity=1, unit_price=eur(credit)),),
        payments=(
            Payment(payment_id="pay-sc", method=PaymentMethod.STORE_CREDIT, amount=eur(credit)),
        ),
        shipping=eur("0.00"),
    )


def test_orders_racing_for_one_balance_never_spend_more_than_it_holds(
    service: ReturnsService,
) -> None:
    customer, _ = returned_as_store_credit(service)  # 55.00
    barrier = threading.Barrier(8)

    def attempt() -> Outcome | DomainError:
        barrier.wait()
        try:
            return service.run(ctx(), spend_command(customer, "20.00"))
        except DomainError as refused:
            return refused

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: attempt(), range(8)))
    placed = [r for r in results if isinstance(r, Outcome)]
    refused = [r for r in results if isinstance(r, InsufficientStoreCredit)]
    assert (len(placed), len(refused)) == (2, 6), results
    assert service.get_store_credit(customer).balance("EUR") == eur("15.00")


def test_a_batch_of_orders_spends_in_turn_and_refuses_only_the_one_past_the_balance(
    service: ReturnsService,
) -> None:
    customer, _ = returned_as_store_credit(service)  # 55.00
    commands = [spend_command(customer, amount) for amount in ("30.00", "30.00", "25.00")]
    results = service.run_batch([(ctx(), c) for c in commands])
    assert [type(r).__name__ for r in results] == ["Outcome", "InsufficientStoreCredit", "Outcome"]
    assert service.stored_events(order_id_for(commands[1].order_number)) == []
    assert service.get_store_credit(customer).balance("EUR") == eur("0.00")
