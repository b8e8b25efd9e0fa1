"""Per-payment settlement on the real event store: a partial settlement keeps the refund
pending (and in the dispatcher's re-sends, with each payment's share), the rest settles it."""

from __future__ import annotations

import pytest

from adapters.driven.refunds import RefundDispatches
from domain.application import ReturnsService
from domain.commands import SettleRefund
from domain.values import Money, PaymentMethod
from tests.integration.builders import (
    authorized_return,
    ctx,
    delivered_order,
    receive_and_inspect,
)

pytestmark = pytest.mark.integration


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def split_refund(service: ReturnsService) -> tuple[str, dict[str, Money]]:
    number = delivered_order(
        service, payments=((PaymentMethod.CARD, "60.00"), (PaymentMethod.PAYPAL, "45.00"))
    )
    rma = authorized_return(service, number)
    assert rma.rma_number is not None
    refund = receive_and_inspect(service, rma.rma_number)
    assert refund.refund_id is not None
    state = service.get_return_of_refund(refund.refund_id).refund(refund.refund_id)
    shares = {a.payment_id: a.amount for a in state.allocations if a.payment_id}
    assert set(shares) == {"pay-1", "pay-2"}
    return refund.refund_id, shares


def test_a_partial_settlement_leaves_the_rest_outstanding_until_it_is_paid(
    service: ReturnsService,
) -> None:
    refund_id, shares = split_refund(service)
    card, paypal = shares["pay-1"], shares["pay-2"]
    part = eur("1.00")
    for payment_id, amount, reference in (
        ("pay-2", paypal, "psp-paypal"),
        ("pay-1", part, "psp-card-1"),
        ("pay-1", part, "psp-card-1"),  # told twice
    ):
        service.run(ctx(), SettleRefund(refund_id, reference, amount, payment_id=payment_id))
    rma = service.get_return_of_refund(refund_id)
    assert rma.state.status.value == "refund_pending"
    assert rma.refund(refund_id).settled_by_payment == {"pay-2": paypal, "pay-1": part}
    dispatches = RefundDispatches(service)
    assert refund_id in [p.refund_id for p in dispatches.pending()]
    instruction = dispatches.instruction(refund_id)
    assert instruction is not None
    assert {(p.payment_id, p.method, p.amount) for p in instruction.payments} == {
        ("pay-1", "card", str(card.amount)),
        ("pay-2", "paypal", str(paypal.amount)),
    }

    service.run(ctx(), SettleRefund(refund_id, "psp-card-2", card - part, payment_id="pay-1"))
    rma = service.get_return_of_refund(refund_id)
    assert rma.state.status.value == "closed"
    assert rma.refund(refund_id).status == "settled"
    assert refund_id not in [p.refund_id for p in dispatches.pending()]
