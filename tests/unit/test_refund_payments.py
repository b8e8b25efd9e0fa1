"""Settlement payment by payment: a card plus PayPal refund is paid back in two parts, a
partial one leaves the rest outstanding, and a settlement that disagrees with the refund
instruction is recorded as a discrepancy instead of being dropped.
"""

from __future__ import annotations

import copy
from decimal import Decimal

from hypothesis import given as hypothesis_given
from hypothesis import settings
from hypothesis import strategies as st

from domain.events import (
    RefundAllocation,
    RefundDiscrepancy,
    RefundPaymentSettled,
    RefundSettled,
    ReturnClosed,
)
from domain.returns import Return, ReturnStatus
from domain.values import PaymentMethod
from tests.unit.builders import (
    CAUSE,
    day,
    eur,
    given,
    inspected_return,
    shop_order,
    snapshot,
    types,
    usd,
)

CARD = RefundAllocation(payment_id="PAY-CARD", method=PaymentMethod.CARD, amount=eur("25.00"))
PAYPAL = RefundAllocation(payment_id="PAY-PAYPAL", method=PaymentMethod.PAYPAL, amount=eur("15.00"))


def split_refund() -> Return:
    """A return with refund RF-1 of 40.00: 25.00 to the card, 15.00 to PayPal."""
    rma = inspected_return(shop_order())
    rma.request_refund(
        refund_id="RF-1",
        amount=eur("40.00"),
        allocations=(CARD, PAYPAL),
        at=day(16),
        cause=CAUSE,
    )
    return given(rma)


def settle(rma: Return, payment_id: str, amount: str, reference: str = "") -> bool:
    return rma.settle_refund_payment(
        "RF-1", payment_id, reference or f"PSP-{payment_id}", eur(amount), day(18), CAUSE
    )


def test_a_split_refund_is_settled_once_each_payment_is_paid_back() -> None:
    rma = split_refund()
    assert settle(rma, "PAY-CARD", "25.00") is False
    assert types(rma) == (RefundPaymentSettled,)
    assert rma.state.status is ReturnStatus.REFUND_PENDING
    assert rma.state.refunds["RF-1"].status == "requested"
    assert settle(rma, "PAY-PAYPAL", "15.00") is True
    assert types(rma) == (
        RefundPaymentSettled,
        RefundPaymentSettled,
        RefundSettled,
        ReturnClosed,
    )
    settled = rma.pending_events[2]
    assert isinstance(settled, RefundSettled) and settled.amount == eur("40.00")
    assert rma.state.refunds["RF-1"].settled_by_payment == {
        "PAY-CARD": eur("25.00"),
        "PAY-PAYPAL": eur("15.00"),
    }
    assert rma.state.status is ReturnStatus.CLOSED


def test_a_partial_settlement_leaves_the_rest_of_that_payment_outstanding() -> None:
    rma = split_refund()
    settle(rma, "PAY-PAYPAL", "15.00")
    settle(rma, "PAY-CARD", "10.00", "PSP-CARD-1")
    assert rma.state.refunds["RF-1"].status == "requested"
    assert rma.state.status is ReturnStatus.REFUND_PENDING
    assert rma.state.refunds["RF-1"].settled_by_payment["PAY-CARD"] == eur("10.00")
    assert settle(rma, "PAY-CARD", "15.00", "PSP-CARD-2") is True
    assert rma.state.status is ReturnStatus.CLOSED


def test_a_settlement_told_twice_is_recorded_once() -> None:
    rma = split_refund()
    settle(rma, "PAY-CARD", "25.00")
    rma.collect_events()
    before = snapshot(rma)
    assert settle(rma, "PAY-CARD", "25.00") is False
    assert rma.pending_events == []
    assert snapshot(rma) == before


def test_a_settlement_above_what_is_outstanding_is_a_discrepancy() -> None:
    rma = split_refund()
    settle(rma, "PAY-CARD", "100.00")
    event = rma.pending_events[-1]
    assert isinstance(event, RefundDiscrepancy)
    assert event.payment_id == "PAY-CARD" and event.amount == eur("100.00")
    assert "only 25.00 EUR was outstanding" in event.reason
    assert rma.state.refunds["RF-1"].settled_by_payment == {}
    assert [d.amount for d in rma.state.refunds["RF-1"].discrepancies] == [eur("100.00")]
    assert rma.state.status is ReturnStatus.REFUND_PENDING
    rma.collect_events()
    settle(rma, "PAY-CARD", "100.00")
    assert rma.pending_events == [], "the same discrepancy told twice is recorded once"


def test_an_unknown_payment_or_another_currency_is_a_discrepancy() -> None:
    rma = split_refund()
    settle(rma, "PAY-GIFT", "5.00")
    rma.settle_refund_payment("RF-1", "PAY-CARD", "PSP-X", usd("25.00"), day(18), CAUSE)
    reasons = [event.reason for event in rma.pending_events]
    assert types(rma) == (RefundDiscrepancy, RefundDiscrepancy)
    assert "payment PAY-GIFT is not part of refund RF-1" in reasons[0]
    assert "settled in USD" in reasons[1]
    assert rma.state.refunds["RF-1"].settled_by_payment == {}


def test_a_second_whole_settlement_of_another_amount_is_a_discrepancy() -> None:
    rma = inspected_return(shop_order())
    rma.request_refund(
        refund_id="RF-1", amount=eur("40.00"), allocations=(CARD,), at=day(16), cause=CAUSE
    )
    rma.settle_refund("RF-1", "PSP-1", eur("40.00"), day(18), CAUSE)
    rma.collect_events()
    rma.settle_refund("RF-1", "PSP-2", eur("100.00"), day(19), CAUSE)
    assert types(rma) == (RefundDiscrepancy,)
    assert rma.state.refunds["RF-1"].status == "settled"


def test_per_payment_settlements_replay_to_the_same_state() -> None:
    rma = split_refund()
    before = copy.deepcopy(rma)
    settle(rma, "PAY-CARD", "10.00", "PSP-A")
    settle(rma, "PAY-CARD", "99.00", "PSP-B")
    settle(rma, "PAY-PAYPAL", "15.00", "PSP-C")
    for event in rma.collect_events():
        before._mutate(event)  # what loading the stored events does
    assert snapshot(before) == snapshot(rma)
    assert before.state.refunds["RF-1"].settled_by_payment == {
        "PAY-CARD": eur("10.00"),
        "PAY-PAYPAL": eur("15.00"),
    }


@settings(max_examples=60, deadline=None)
@hypothesis_given(st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=6))
def test_what_is_settled_per_payment_never_exceeds_its_share(cents: list[int]) -> None:
    rma = split_refund()
    for index, amount in enumerate(cents):
        payment_id = "PAY-CARD" if index % 2 == 0 else "PAY-PAYPAL"
        settle(rma, payment_id, str(Decimal(amount) / 100), f"PSP-{index}")
    refund = rma.state.refunds["RF-1"]
    shares = {"PAY-CARD": eur("25.00"), "PAY-PAYPAL": eur("15.00")}
    for payment_id, paid in refund.settled_by_payment.items():
        assert paid.amount <= shares[payment_id].amount
    fully = refund.settled_by_payment == shares
    assert (refund.status == "settled") is fully


def test_a_refund_declined_after_a_payment_was_settled_stays_pending_as_a_discrepancy() -> None:
    rma = split_refund()
    settle(rma, "PAY-CARD", "25.00")
    rma.collect_events()
    assert rma.fail_refund("RF-1", "issuer said no", day(19), CAUSE) is False
    assert types(rma) == (RefundDiscrepancy,)
    assert "declined after part of it was settled" in rma.pending_events[0].reason
    assert rma.state.refunds["RF-1"].status == "requested"
    assert rma.state.status is ReturnStatus.REFUND_PENDING
    rma.collect_events()
    assert rma.fail_refund("RF-1", "issuer said no", day(20), CAUSE) is False
    assert rma.pending_events == []
