"""Reconciling with the payment provider: the kinds of discrepancy, whom a refund's money
goes back through, and how one line of a provider's settlement file compares with a refund.

Pure functions of a refund's state: the aggregate records what they find
(``Settlement.reconcile_settlement``), the adapters parse files and query the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from domain.returns.state import RefundState
from domain.values import Money

# Why a settlement disagrees with the instruction (``rma.refund_discrepancy``'s ``kind``).
AMOUNT_MISMATCH = "amount_mismatch"  # more than outstanding, or another amount than asked
CURRENCY_MISMATCH = "currency_mismatch"
UNKNOWN_PAYMENT = "unknown_payment"  # a payment the refund does not name
SETTLED_AFTER_FAILURE = "settled_after_failure"  # money went out on a refund we failed
REVERSAL = "reversal"  # a refund (or payment) failed after it was settled
PARTIAL_DECLINE = "partial_decline"  # declined after part of it was settled
STATUS_MISMATCH = "status_mismatch"  # a settlement file says otherwise than the ledger
DISCREPANCY_KINDS = (
    AMOUNT_MISMATCH,
    CURRENCY_MISMATCH,
    UNKNOWN_PAYMENT,
    SETTLED_AFTER_FAILURE,
    REVERSAL,
    PARTIAL_DECLINE,
    STATUS_MISMATCH,
)

# What an import says of each line of a settlement file (and of refunds it lacks).
MATCHED = "matched"
UNKNOWN_REFUND = "unknown_refund"
MISSING_IN_FILE = "missing_in_file"
PENDING = "pending"  # the file settles a refund we still wait on: its webhook will tell us
FileStatus = Literal["settled", "failed"]


def provider_of(refund: RefundState, payment_id: str | None) -> str:
    """The provider a refund (or one of its payments) is paid back through: the payment
    method, as the ledger's ``cash:<method>`` accounts name it; a refund split over several
    methods and no payment named: the methods joined with ``+``."""
    if payment_id is not None:
        for allocation in refund.allocations:
            if allocation.payment_id == payment_id:
                return allocation.method.value
    methods = sorted({a.method.value for a in refund.allocations})
    return "+".join(methods) or "unknown"


def expected_for(refund: RefundState, provider: str, payment_id: str | None) -> Money | None:
    """What the provider should have paid back: the named payment's share, else the
    refund's shares paid through this provider (the whole refund when it names none).
    None: the payment is not part of the refund."""
    if payment_id is not None:
        for allocation in refund.allocations:
            if allocation.payment_id == payment_id:
                return allocation.amount
        return None
    through = [a.amount for a in refund.allocations if a.method.value == provider]
    if not through:
        return refund.amount
    total = Money.zero(refund.amount.currency)
    for amount in through:
        total = total + amount
    return total


@dataclass(frozen=True)
class Finding:
    """How one settlement-file line compares with the refund: a ``verdict`` and, when it
    is a discrepancy to record, its ``kind`` and ``reason``."""

    verdict: str
    """``matched``, ``pending`` or a discrepancy kind."""
    expected: Money | None
    reason: str = ""

    @property
    def is_discrepancy(self) -> bool:
        return self.verdict in DISCREPANCY_KINDS


def compare_line(
    refund: RefundState,
    *,
    provider: str,
    payment_id: str | None,
    amount: Money,
    status: FileStatus,
) -> Finding:
    """One line of ``provider``'s settlement file against the refund it names."""
    expected = expected_for(refund, provider, payment_id)
    if expected is None:
        return Finding(
            UNKNOWN_PAYMENT, None, f"settlement file: payment {payment_id} is not part of it"
        )
    if status == "failed":
        if refund.status == "settled" or (
            payment_id is not None and payment_id in refund.settled_by_payment
        ):
            return Finding(
                STATUS_MISMATCH, expected, "settlement file: failed, the refund is settled"
            )
        return Finding(MATCHED if refund.status == "failed" else PENDING, expected)
    if amount.currency != expected.currency:
        return Finding(
            CURRENCY_MISMATCH,
            expected,
            f"settlement file: {amount} settled, the refund is in {expected.currency}",
        )
    if amount != expected:
        return Finding(
            AMOUNT_MISMATCH, expected, f"settlement file: {amount} settled, {expected} expected"
        )
    if refund.status == "failed":
        return Finding(
            STATUS_MISMATCH, expected, "settlement file: settled, the refund failed here"
        )
    settled_here = refund.status == "settled" or (
        payment_id is not None and refund.settled_by_payment.get(payment_id) == expected
    )
    return Finding(MATCHED if settled_here else PENDING, expected)
