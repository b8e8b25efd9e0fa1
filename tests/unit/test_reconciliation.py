"""Reconciling with the provider in the domain: each discrepancy says its kind, what was
expected and the provider; a failure after settlement is a reversal; a settlement file's
line is matched or recorded as a discrepancy once, however often it is imported.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given as hypothesis_given
from hypothesis import settings
from hypothesis import strategies as st

from domain.events import RefundAllocation, RefundDiscrepancy
from domain.returns import Return
from domain.returns.reconciliation import compare_line, expected_for, provider_of
from domain.values import PaymentMethod
from tests.unit.builders import CAUSE, day, eur, given, inspected_return, shop_order, types, usd

CARD = RefundAllocation(payment_id="PAY-CARD", method=PaymentMethod.CARD, amount=eur("25.00"))
PAYPAL = RefundAllocation(payment_id="PAY-PAYPAL", method=PaymentMethod.PAYPAL, amount=eur("15.00"))


def split_refund() -> Return:
    """Refund RF-1 of 40.00: 25.00 to the card, 15.00 to PayPal."""
    rma = inspected_return(shop_order())
    rma.request_refund(
        refund_id="RF-1", amount=eur("40.00"), allocations=(CARD, PAYPAL), at=day(16), cause=CAUSE
    )
    return given(rma)


def reconcile(rma: Return, provider: str, payment_id: str | None, amount: str, **kw: str) -> str:
    finding = rma.reconcile_settlement(
        "RF-1",
        provider=provider,
        payment_id=payment_id,
        provider_reference=kw.get("reference", "PSP-FILE-1"),
        amount=eur(amount),
        status="failed" if kw.get("status") == "failed" else "settled",
        at=day(20),
        cause=CAUSE,
    )
    return finding.verdict


def test_a_settlement_above_what_is_outstanding_names_its_kind_expected_amount_and_provider() -> (
    None
):
    rma = split_refund()
    rma.settle_refund_payment("RF-1", "PAY-CARD", "PSP-1", eur("100.00"), day(18), CAUSE)
    [event] = rma.pending_events
    assert isinstance(event, RefundDiscrepancy)
    assert (event.kind, event.expected, event.provider) == (
        "amount_mismatch",
        eur("25.00"),
        "card",
    )


def test_a_refund_failed_after_it_was_settled_is_a_reversal_recorded_once() -> None:
    rma = split_refund()
    rma.settle_refund_payment("RF-1", "PAY-CARD", "PSP-1", eur("25.00"), day(18), CAUSE)
    rma.settle_refund_payment("RF-1", "PAY-PAYPAL", "PSP-2", eur("15.00"), day(18), CAUSE)
    rma.collect_events()
    assert rma.fail_refund("RF-1", "chargeback", day(19), CAUSE, payment_id="PAY-PAYPAL") is False
    [event] = rma.pending_events
    assert isinstance(event, RefundDiscrepancy)
    assert (event.kind, event.payment_id, event.provider) == ("reversal", "PAY-PAYPAL", "paypal")
    assert event.expected == eur("15.00")
    assert rma.state.refunds["RF-1"].status == "settled", "the money moved: a person decides"
    rma.collect_events()
    assert rma.fail_refund("RF-1", "chargeback", day(20), CAUSE, payment_id="PAY-PAYPAL") is False
    assert rma.pending_events == [], "the same reversal told twice is recorded once"


def test_a_whole_refund_failed_after_settlement_is_a_reversal_not_an_error() -> None:
    rma = inspected_return(shop_order())
    rma.request_refund(
        refund_id="RF-1", amount=eur("40.00"), allocations=(CARD,), at=day(16), cause=CAUSE
    )
    rma.settle_refund("RF-1", "PSP-1", eur("40.00"), day(18), CAUSE)
    rma.collect_events()
    assert rma.fail_refund("RF-1", "late failure", day(19), CAUSE) is False
    assert types(rma) == (RefundDiscrepancy,)
    assert rma.pending_events[0].kind == "reversal"


def test_a_matching_file_line_records_nothing() -> None:
    rma = split_refund()
    rma.settle_refund_payment("RF-1", "PAY-CARD", "PSP-1", eur("25.00"), day(18), CAUSE)
    rma.collect_events()
    assert reconcile(rma, "card", "PAY-CARD", "25.00") == "matched"
    assert reconcile(rma, "paypal", "PAY-PAYPAL", "15.00") == "pending"
    assert rma.pending_events == []


def test_a_file_line_of_another_amount_is_recorded_once_however_often_imported() -> None:
    rma = split_refund()
    assert reconcile(rma, "card", "PAY-CARD", "26.00") == "amount_mismatch"
    [event] = rma.pending_events
    assert isinstance(event, RefundDiscrepancy)
    assert (event.expected, event.amount, event.provider) == (eur("25.00"), eur("26.00"), "card")
    assert "settlement file" in event.reason
    rma.collect_events()
    assert reconcile(rma, "card", "PAY-CARD", "26.00") == "amount_mismatch"
    assert rma.pending_events == []


def test_a_file_line_saying_failed_for_a_settled_refund_is_a_status_mismatch() -> None:
    rma = split_refund()
    rma.settle_refund_payment("RF-1", "PAY-CARD", "PSP-1", eur("25.00"), day(18), CAUSE)
    rma.collect_events()
    assert reconcile(rma, "card", "PAY-CARD", "25.00", status="failed") == "status_mismatch"
    assert types(rma) == (RefundDiscrepancy,)


def test_without_a_payment_id_the_line_is_compared_with_the_providers_share() -> None:
    refund = split_refund().state.refunds["RF-1"]
    assert provider_of(refund, None) == "card+paypal"
    assert provider_of(refund, "PAY-PAYPAL") == "paypal"
    assert expected_for(refund, "paypal", None) == eur("15.00")
    assert expected_for(refund, "gift_card", None) == eur("40.00")
    assert expected_for(refund, "card", "PAY-NONE") is None
    finding = compare_line(
        refund, provider="card", payment_id=None, amount=usd("25.00"), status="settled"
    )
    assert finding.verdict == "currency_mismatch"


@settings(max_examples=60, deadline=None)
@hypothesis_given(st.integers(min_value=1, max_value=10_000_00))
def test_a_file_line_matches_exactly_when_it_is_the_payments_share(cents: int) -> None:
    refund = split_refund().state.refunds["RF-1"]
    amount = eur(str(Decimal(cents) / 100))
    finding = compare_line(
        refund, provider="card", payment_id="PAY-CARD", amount=amount, status="settled"
    )
    assert (finding.verdict == "amount_mismatch") is (amount != eur("25.00"))
    assert finding.expected == eur("25.00")


def test_a_payment_reversed_after_a_whole_settlement_expects_that_payments_share() -> None:
    rma = split_refund()
    rma.settle_refund("RF-1", "PSP-1", eur("40.00"), day(18), CAUSE)
    rma.collect_events()
    rma.fail_refund("RF-1", "chargeback", day(19), CAUSE, payment_id="PAY-PAYPAL")
    [event] = rma.pending_events
    assert isinstance(event, RefundDiscrepancy)
    assert (event.kind, event.expected, event.provider) == ("reversal", eur("15.00"), "paypal")
