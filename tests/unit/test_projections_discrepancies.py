"""The discrepancy queue on the read side: one row per discrepancy with its provider, kind
and what was expected; a redelivery adds nothing; older events without a kind still show."""

from __future__ import annotations

from typing import Any

from domain.events import RefundAllocation, RefundDiscrepancy, RefundRequested, ReturnAuthorized
from domain.values import PaymentMethod
from projections import RefundDiscrepancies
from projections.core import InMemoryReadModel
from tests.unit.builders import Story, assert_folds_like_reduce, decision, eur, uid

RMA = uid("rma")
CARD = RefundAllocation(payment_id="PAY-CARD", method=PaymentMethod.CARD, amount=eur("25.00"))
PAYPAL = RefundAllocation(payment_id="PAY-PAYPAL", method=PaymentMethod.PAYPAL, amount=eur("15.00"))


def refund_story() -> Story:
    story = Story()
    story.add(
        ReturnAuthorized,
        RMA,
        rma_number="RMA-7K2Q-M4XD",
        destination_warehouse="WH-RET",
        label_reference="LBL",
        instructions="pack it",
        expected_refund=eur("40.00"),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        decisions=(decision(1),),
    )
    story.add(
        RefundRequested,
        RMA,
        refund_id="RF-1",
        amount=eur("40.00"),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        allocations=(CARD, PAYPAL),
    )
    return story


def rows(story: Story) -> list[dict[str, Any]]:
    model = InMemoryReadModel(RefundDiscrepancies())
    model.apply(story.events)
    model.apply(story.events[-2:])  # redelivered: nothing twice
    return model.rows("rm_refund_discrepancies")


def test_a_discrepancy_is_a_row_with_its_provider_kind_and_expected_amount() -> None:
    story = refund_story()
    story.add(
        RefundDiscrepancy,
        RMA,
        refund_id="RF-1",
        payment_id="PAY-CARD",
        provider_reference="PSP-9",
        amount=eur("100.00"),
        reason="settled 100.00 EUR, only 25.00 EUR was outstanding",
        kind="amount_mismatch",
        expected=eur("25.00"),
        provider="card",
    )
    [row] = rows(story)
    assert {k: str(v) for k, v in row.items() if k in ("amount", "expected")} == {
        "amount": "100.00",
        "expected": "25.00",
    }
    assert (row["provider"], row["kind"], row["rma_number"], row["currency"]) == (
        "card",
        "amount_mismatch",
        "RMA-7K2Q-M4XD",
        "EUR",
    )
    assert row["return_id"] == str(RMA) and row["day"] == row["at"].date()


def test_an_older_discrepancy_without_kind_or_provider_takes_its_payments_method() -> None:
    story = refund_story()
    story.add(
        RefundDiscrepancy,
        RMA,
        refund_id="RF-1",
        payment_id="PAY-PAYPAL",
        provider_reference="PSP-9",
        amount=eur("99.00"),
        reason="settled 99.00 EUR, only 15.00 EUR was outstanding",
    )
    story.add(
        RefundDiscrepancy,
        RMA,
        refund_id="RF-1",
        provider_reference="",
        amount=eur("0.00"),
        reason="declined after part of it was settled: no",
    )
    by_payment = {r["payment_id"]: r for r in rows(story)}
    assert by_payment["PAY-PAYPAL"]["provider"] == "paypal"
    assert by_payment[None]["provider"] == "card+paypal"
    assert {r["kind"] for r in by_payment.values()} == {"unspecified"}
    assert by_payment["PAY-PAYPAL"]["expected"] is None


def test_the_reducer_folds_like_it_reduces() -> None:
    story = refund_story()
    story.add(
        RefundDiscrepancy,
        RMA,
        refund_id="RF-1",
        payment_id="PAY-CARD",
        provider_reference="PSP-9",
        amount=eur("1.00"),
        reason="x",
        kind="amount_mismatch",
        expected=eur("25.00"),
        provider="card",
    )
    assert_folds_like_reduce(RefundDiscrepancies(), story.events)
