"""Exchanges on the real event store: a cheaper replacement's difference is refunded, and
after the provider declines it, the retry pays the difference again and nothing more."""

from __future__ import annotations

from domain.application import ReturnsService
from domain.commands import FailRefund, RequestReturn, RetryRefund
from domain.events import ExchangeChoice
from domain.returns import RequestedLine
from domain.values import Money, ReasonCode, RefundMethod
from tests.integration.builders import ctx, delivered_order, receive_and_inspect


def test_a_declined_difference_is_retried_for_the_difference_only(
    service: ReturnsService,
) -> None:
    number = delivered_order(service)  # SHOE-RED-42 at 50.00, shipping 5.00
    choice = ExchangeChoice(sku="SHOE-RED-43", unit_price=Money.of("35.00", "EUR"))
    rma = service.run(
        ctx(),
        RequestReturn(
            order_number=number,
            # Defective: the order's shipping would be due on a refund, never on an exchange.
            lines=(RequestedLine(1, 1, ReasonCode.DEFECTIVE, exchange=choice),),
            refund_method=RefundMethod.EXCHANGE,
        ),
    )
    assert rma.rma_number is not None
    first = receive_and_inspect(service, rma.rma_number)
    assert first.refund_id is not None and first.amount == Money.of("15.00", "EUR")

    service.run(ctx(), FailRefund(refund_id=first.refund_id, reason="declined"))
    again = service.run(ctx(), RetryRefund(return_id=rma.aggregate_id))
    assert again.refund_id != first.refund_id
    assert again.amount == Money.of("15.00", "EUR")
    state = service.get_return(rma.aggregate_id).state
    assert state.exchange_refund_difference == Money.of("15.00", "EUR")
    assert len(service.order_view(f"{number}-X1")["lines"]) == 1
