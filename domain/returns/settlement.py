"""Paying the customer back: refunds, store credit, exchange, keep-the-item, and closing."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from domain.errors import (
    InvalidCommand,
    InvalidTransition,
    OfferLapsed,
    PolicyViolation,
    ResolutionLocked,
)
from domain.events import (
    Cause,
    ExchangeOrdered,
    KeepItemAccepted,
    KeepItemLapsed,
    KeepItemOffered,
    OrderLine,
    RefundAllocation,
    RefundDiscrepancy,
    RefundFailed,
    RefundPaymentSettled,
    RefundRequested,
    RefundSettled,
    ReturnResolutionChanged,
    StoreCreditIssued,
)
from domain.policy import PolicyBook, keep_item_limit_text
from domain.returns.payouts import Payouts, max_zero
from domain.returns.reconciliation import (
    AMOUNT_MISMATCH,
    CURRENCY_MISMATCH,
    PARTIAL_DECLINE,
    REVERSAL,
    SETTLED_AFTER_FAILURE,
    UNKNOWN_PAYMENT,
    FileStatus,
    Finding,
    compare_line,
    expected_for,
    provider_of,
)
from domain.returns.state import (
    ENDED,
    SETTLING,
    ReturnStatus,
)
from domain.values import (
    Money,
    RefundMethod,
)


class Settlement(Payouts):
    """The commands that pay the customer back or close the return; a base of ``Return``."""

    def request_refund(
        self,
        *,
        refund_id: str,
        amount: Money,
        allocations: tuple[RefundAllocation, ...],
        at: datetime,
        cause: Cause,
        shipping: Money | None = None,
        keep_item: bool = False,
    ) -> None:
        zero = Money.zero(self.state.currency)
        if keep_item:
            if not self.state.keep_item_accepted:
                raise InvalidTransition("the keep-the-item offer was not accepted")
            self.check_status(ReturnStatus.KEEP_ITEM_OFFERED, ReturnStatus.REFUND_FAILED)
            shipping = zero
            limit = max_zero((self.state.keep_item_offer or zero) - self.paid_out())
        else:
            self.check_status(*SETTLING)
            shipping = self.checked_shipping(amount, shipping)
            limit = self.items_due_unpaid() + shipping
        if refund_id in self.state.refunds:
            raise InvalidTransition(f"refund {refund_id} already exists")
        self.check_payout(amount, limit)
        self._trigger(
            RefundRequested,
            cause,
            at,
            refund_id=refund_id,
            amount=amount,
            restocking_fee=zero if keep_item else self.unbilled_fee(),
            shipping_refund=shipping,
            allocations=allocations,
            keep_item=keep_item,
        )

    def settle_refund(
        self, refund_id: str, provider_reference: str, amount: Money, at: datetime, cause: Cause
    ) -> None:
        refund = self.refund(refund_id)
        if refund.status == "settled" and amount != refund.amount:
            # Not a repeat but another claim on a refund already paid: kept, not dropped.
            self._trigger(
                RefundDiscrepancy,
                cause,
                at,
                refund_id=refund_id,
                provider_reference=provider_reference,
                amount=amount,
                reason=f"settled {amount} after the refund of {refund.amount} was settled",
                kind=AMOUNT_MISMATCH,
                expected=refund.amount,
                provider=provider_of(refund, None),
            )
            return
        if refund.status == "settled":
            return  # the provider told us twice
        if refund.status == "failed":
            raise InvalidTransition(f"refund {refund_id} already failed")
        if amount != refund.amount:
            raise InvalidCommand(f"refund {refund_id} was {refund.amount}, settled {amount}")
        self._trigger(
            RefundSettled,
            cause,
            at,
            refund_id=refund_id,
            provider_reference=provider_reference,
            amount=amount,
        )
        self._close_once_settled(at, cause)

    def _close_once_settled(self, at: datetime, cause: Cause) -> None:
        """Close if nothing more is due, as ``exchanged`` when a replacement was ordered."""
        exchanged = self.state.replacement_order_id is not None
        self._close_if_done("exchanged" if exchanged else "refunded", at, cause)

    def settle_refund_payment(
        self,
        refund_id: str,
        payment_id: str,
        provider_reference: str,
        amount: Money,
        at: datetime,
        cause: Cause,
    ) -> bool:
        """Record what the provider paid back to one payment of a refund; less than that
        payment's share leaves the rest outstanding. The refund is settled once every
        payment is paid back in full. A settlement that disagrees with the instruction is
        recorded as a discrepancy and changes nothing else. Returns whether the refund
        became settled, so the caller acts on it once."""
        refund = self.refund(refund_id)
        if f"{payment_id}:{provider_reference}" in refund.settlements:
            return False  # the provider told us twice
        shares = {a.payment_id: a.amount for a in refund.allocations if a.payment_id}
        if any(
            d.payment_id == payment_id
            and d.provider_reference == provider_reference
            and d.amount == amount
            for d in refund.discrepancies
        ):
            return False  # the same disagreement, told twice: recorded once
        if amount.amount <= 0:
            raise InvalidCommand(f"refund {refund_id}: a settlement is a positive amount")
        reason = None
        kind, expected = AMOUNT_MISMATCH, shares.get(payment_id)
        if payment_id not in shares:
            reason = f"payment {payment_id} is not part of refund {refund_id}"
            kind = UNKNOWN_PAYMENT
        elif amount.currency != refund.amount.currency:
            reason = f"settled in {amount.currency}, the refund is in {refund.amount.currency}"
            kind = CURRENCY_MISMATCH
        elif refund.status != "requested":
            reason = f"settled {amount} after the refund {refund.status}"
            if refund.status == "failed":
                kind = SETTLED_AFTER_FAILURE
        else:
            outstanding = shares[payment_id] - refund.settled_by_payment.get(
                payment_id, Money.zero(refund.amount.currency)
            )
            if amount.amount > outstanding.amount:
                reason = f"settled {amount}, only {outstanding} was outstanding"
                expected = outstanding
        if reason is not None:
            self._trigger(
                RefundDiscrepancy,
                cause,
                at,
                refund_id=refund_id,
                payment_id=payment_id,
                provider_reference=provider_reference,
                amount=amount,
                reason=reason,
                kind=kind,
                expected=expected,
                provider=provider_of(refund, payment_id),
            )
            return False
        self._trigger(
            RefundPaymentSettled,
            cause,
            at,
            refund_id=refund_id,
            payment_id=payment_id,
            provider_reference=provider_reference,
            amount=amount,
        )
        if any(refund.settled_by_payment.get(p) != share for p, share in shares.items()):
            return False  # the refund stays in flight for what is outstanding
        self._trigger(
            RefundSettled,
            cause,
            at,
            refund_id=refund_id,
            provider_reference=provider_reference,
            amount=refund.amount,
        )
        self._close_once_settled(at, cause)
        return True

    def fail_refund(
        self,
        refund_id: str,
        reason: str,
        at: datetime,
        cause: Cause,
        payment_id: str | None = None,
    ) -> bool:
        """Returns whether the refund failed, so the caller releases the money only once.

        A failure of a refund (or of the named payment) already settled is a reversal: the
        money came back to us after it was paid out. Recorded once as a discrepancy for
        finance; the refund stays settled, since what to do (pay again, ask the customer)
        is a person's call."""
        refund = self.refund(refund_id)
        if refund.status == "failed":
            return False
        reversed_payment = payment_id is not None and payment_id in refund.settled_by_payment
        if refund.status == "settled" or reversed_payment:
            reversal = f"failed after it was settled: {reason}"
            if not any(
                d.reason == reversal and d.payment_id == payment_id for d in refund.discrepancies
            ):
                self._trigger(
                    RefundDiscrepancy,
                    cause,
                    at,
                    refund_id=refund_id,
                    payment_id=payment_id,
                    provider_reference=refund.provider_reference or "",
                    amount=Money.zero(refund.amount.currency),
                    reason=reversal,
                    kind=REVERSAL,
                    expected=refund.settled_by_payment.get(payment_id or "")
                    or expected_for(refund, provider_of(refund, payment_id), payment_id)
                    or refund.amount,
                    provider=provider_of(refund, payment_id),
                )
            return False
        if refund.settled_by_payment:
            # Part of it was paid back: failing it would release (and a retry pay again)
            # that part too. Kept for finance; the refund stays pending.
            declined = f"declined after part of it was settled: {reason}"
            if all(d.reason != declined for d in refund.discrepancies):
                self._trigger(
                    RefundDiscrepancy,
                    cause,
                    at,
                    refund_id=refund_id,
                    provider_reference="",
                    amount=Money.zero(refund.amount.currency),
                    reason=declined,
                    kind=PARTIAL_DECLINE,
                    expected=refund.amount,
                    provider=provider_of(refund, payment_id),
                )
            return False
        self._trigger(RefundFailed, cause, at, refund_id=refund_id, reason=reason)
        return True

    def reconcile_settlement(
        self,
        refund_id: str,
        *,
        provider: str,
        payment_id: str | None,
        provider_reference: str,
        amount: Money,
        status: FileStatus,
        at: datetime,
        cause: Cause,
    ) -> Finding:
        """Compare one line of ``provider``'s settlement file with the refund and record a
        disagreement as a discrepancy, once: the same line imported again records nothing.
        Nothing else changes: the file is evidence for finance, not a settlement."""
        refund = self.refund(refund_id)
        finding = compare_line(
            refund, provider=provider, payment_id=payment_id, amount=amount, status=status
        )
        if not finding.is_discrepancy:
            return finding
        if any(
            d.kind == finding.verdict
            and d.payment_id == payment_id
            and d.provider_reference == provider_reference
            and d.amount == amount
            for d in refund.discrepancies
        ):
            return finding
        self._trigger(
            RefundDiscrepancy,
            cause,
            at,
            refund_id=refund_id,
            payment_id=payment_id,
            provider_reference=provider_reference,
            amount=amount,
            reason=finding.reason,
            kind=finding.verdict,
            expected=finding.expected,
            provider=provider,
        )
        return finding

    def issue_store_credit(
        self,
        *,
        credit_id: str,
        amount: Money,
        bonus: Money,
        at: datetime,
        cause: Cause,
        shipping: Money | None = None,
        code: str | None = None,
    ) -> None:
        self.check_status(*SETTLING)
        shipping = self.checked_shipping(amount, shipping)
        self.check_payout(amount, self.items_due_unpaid() + shipping)
        if bonus.currency != self.state.currency or bonus.amount < 0:
            raise InvalidCommand(f"a store credit bonus is a non-negative {self.state.currency}")
        self._trigger(
            StoreCreditIssued,
            cause,
            at,
            credit_id=credit_id,
            amount=amount,
            bonus=bonus,
            restocking_fee=self.unbilled_fee(),
            shipping=shipping,
            code=code,
        )
        self._close_if_done("store_credit", at, cause)

    def close_if_settled(self, at: datetime, cause: Cause) -> None:
        """Nothing more to pay for what was inspected: close, if nothing else is pending."""
        self.check_status(*SETTLING)
        if self.state.replacement_order_id is not None:
            outcome = "exchanged"
        elif self.paid_out().is_zero:
            outcome = "nothing_due"  # wrong item, non-returnable, condition worth nothing
        elif self.state.refunds:
            outcome = "refunded"
        else:
            outcome = "store_credit"
        self._close_if_done(outcome, at, cause)

    def order_exchange(
        self,
        *,
        replacement_order_id: UUID,
        replacement_order_number: str,
        lines: tuple[OrderLine, ...],
        at: datetime,
        cause: Cause,
        refund_difference: Money | None = None,
        amount_due: Money | None = None,
    ) -> None:
        self.check_status(ReturnStatus.INSPECTED)
        if self.state.replacement_order_id is not None:
            raise InvalidTransition("an exchange was already ordered for this return")
        self._trigger(
            ExchangeOrdered,
            cause,
            at,
            replacement_order_id=replacement_order_id,
            replacement_order_number=replacement_order_number,
            lines=lines,
            refund_difference=refund_difference,
            amount_due=amount_due,
        )
        self._close_if_done("exchanged", at, cause)

    def order_instant_exchange(
        self,
        *,
        replacement_order_id: UUID,
        replacement_order_number: str,
        lines: tuple[OrderLine, ...],
        at: datetime,
        cause: Cause,
        refund_difference: Money | None = None,
        amount_due: Money | None = None,
    ) -> None:
        """The replacement ships at authorization (the policy's ``instant_exchange``); the
        returned lines are owed until they arrive. A cheaper replacement's difference is
        refunded after inspection, as for any exchange; nothing closes here."""
        self.check_status(ReturnStatus.AUTHORIZED)
        if self.state.refund_method is not RefundMethod.EXCHANGE:
            raise InvalidTransition("only a return settled by exchange ships its replacement")
        if self.state.replacement_order_id is not None:
            raise InvalidTransition("an exchange was already ordered for this return")
        value = Money.zero(self.state.currency)
        for line in self.state.lines.values():
            value = value + line.unit_price.times(line.quantity)
        self._trigger(
            ExchangeOrdered,
            cause,
            at,
            replacement_order_id=replacement_order_id,
            replacement_order_number=replacement_order_number,
            lines=lines,
            refund_difference=refund_difference,
            amount_due=amount_due,
            instant=True,
            amount_outstanding=value,
        )

    def change_resolution(
        self, refund_method: RefundMethod, reason: str, at: datetime, cause: Cause
    ) -> bool:
        """Settle the customer another way (refund, store credit, exchange) than first chosen.

        Only until the first payment or exchange: after that the money or goods have moved
        and a change would need undoing them. Returns whether anything changed (asking for
        the method already chosen records nothing).
        """
        s = self.state
        if s.status in ENDED or s.status is ReturnStatus.EXCEPTION:
            raise ResolutionLocked(
                f"return {s.rma_number or self.id} is {s.status.value}: "
                "its resolution can no longer change"
            )
        if s.refunds or s.store_credit_paid is not None or s.keep_item_accepted:
            raise ResolutionLocked(
                f"return {s.rma_number or self.id} has paid the customer already "
                f"({s.refund_method.value})"
            )
        if s.replacement_order_id is not None:
            raise ResolutionLocked(f"return {s.rma_number or self.id} has ordered an exchange")
        if refund_method is s.refund_method:
            return False
        self._trigger(
            ReturnResolutionChanged,
            cause,
            at,
            from_refund_method=s.refund_method,
            to_refund_method=refund_method,
            reason=reason,
        )
        return True

    def offer_keep_item(
        self, book: PolicyBook, expires_at: datetime, at: datetime, cause: Cause
    ) -> Money:
        self.check_status(ReturnStatus.AUTHORIZED)
        if not self.state.keep_item_eligible:
            raise PolicyViolation(
                "keep_item_not_eligible",
                f"return {self.state.rma_number} is worth too much to let the customer keep it"
                f" ({keep_item_limit_text(self.policy(book), self.state.currency)})",
            )
        rate = self.policy(book).keep_item_refund_rate
        offer = self.lines_value().times(rate)
        self._trigger(KeepItemOffered, cause, at, refund_amount=offer, expires_at=expires_at)
        return offer

    def accept_keep_item(self, at: datetime, cause: Cause) -> Money:
        lapsed = self.state.keep_item_lapsed_at
        if self.state.status is ReturnStatus.AUTHORIZED and lapsed is not None:
            raise OfferLapsed(
                f"the keep-the-item offer of {self.state.rma_number} lapsed at"
                f" {lapsed:%Y-%m-%d %H:%M} UTC: the item is to be shipped back"
            )
        self.check_status(ReturnStatus.KEEP_ITEM_OFFERED)
        offer = self.state.keep_item_offer
        if offer is None:
            raise InvalidTransition("no keep-the-item offer to accept")
        expires_at = self.state.keep_item_expires_at
        if expires_at is not None and at > expires_at:
            raise OfferLapsed(
                f"the keep-the-item offer of {self.state.rma_number} "
                f"expired at {expires_at:%Y-%m-%d}"
            )
        self._trigger(KeepItemAccepted, cause, at)
        return offer

    def lapse_keep_item(self, at: datetime, cause: Cause) -> bool:
        """Let an unaccepted offer that ran out lapse; False (nothing recorded) when there is
        none, it still runs, or it lapsed already: a second sweep changes nothing."""
        expires_at = self.state.keep_item_expires_at
        if self.state.status is not ReturnStatus.KEEP_ITEM_OFFERED or expires_at is None:
            return False
        if self.state.keep_item_accepted:
            return False  # accepted in time: the refund follows, not the parcel
        if at <= expires_at:
            return False
        self._trigger(KeepItemLapsed, cause, at, expired_at=expires_at)
        return True
