"""What a return owes and has paid out, and the guards every command of it shares."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from domain.aggregate import Aggregate
from domain.errors import (
    InvalidCommand,
    InvalidTransition,
    RefundLimitExceeded,
)
from domain.events import (
    Cause,
    InspectedItem,
    ReturnClosed,
    ReturnEvent,
)
from domain.policy import PolicyBook, ReturnPolicy, refund_rate
from domain.returns.lines import CounterCheck
from domain.returns.state import (
    Leg,
    RefundState,
    ReturnState,
    ReturnStatus,
    evolve,
)
from domain.values import (
    Channel,
    Disposition,
    Money,
    ReturnChannel,
)


def max_zero(amount: Money) -> Money:
    return amount if amount.amount > 0 else Money.zero(amount.currency)


class Payouts(Aggregate[ReturnEvent]):
    """The Return's state, its guards, and the money it owes: the base of ``Return``."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.state = ReturnState()

    def apply(self, event: ReturnEvent) -> None:
        evolve(self.state, event)

    def check_status(self, *allowed: ReturnStatus) -> None:
        if self.state.status not in allowed:
            names = ", ".join(s.value for s in allowed)
            raise InvalidTransition(
                f"return {self.state.rma_number or self.id} is {self.state.status.value}; "
                f"this needs {names}"
            )

    def check_leg(self, leg_id: str, kind: Disposition, status: str) -> Leg:
        leg = self.state.legs.get(leg_id)
        if leg is None or leg.kind is not kind:
            raise InvalidCommand(f"return {self.state.rma_number} has no {kind.value} leg {leg_id}")
        if leg.status != status:
            raise InvalidTransition(f"leg {leg_id} is {leg.status}; this needs {status}")
        return leg

    def _close_if_done(self, outcome: str, at: datetime, cause: Cause) -> None:
        """Close once every item is in and inspected, and every payment went through."""
        if self.outstanding_quantity() > 0:
            return
        if set(self.state.receipts) - set(self.state.inspected_receipts):
            return  # a parcel still waits for inspection
        if any(r.status == "requested" for r in self.state.refunds.values()):
            return
        if self.items_due_unpaid().amount > 0:
            return  # with an exchange: the cheaper replacement's difference is still unpaid
        self._trigger(ReturnClosed, cause, at, outcome=outcome)

    def check_payout(self, amount: Money, limit: Money) -> None:
        self.check_positive(amount)
        if amount > limit:
            raise RefundLimitExceeded(
                f"return {self.state.rma_number} can pay out {limit} more, not {amount}"
            )

    def check_positive(self, amount: Money) -> None:
        if amount.currency != self.state.currency or amount.amount <= 0:
            raise InvalidCommand(f"a payout is a positive {self.state.currency} amount")

    def checked_shipping(self, amount: Money, shipping: Money | None) -> Money:
        """The shipping part of a payout: within the payout and within what shipping is owed."""
        self.check_positive(amount)
        if shipping is None:
            return Money.zero(self.state.currency)
        if shipping.currency != self.state.currency or shipping.amount < 0:
            raise InvalidCommand(f"the shipping part is a non-negative {self.state.currency}")
        if shipping > amount or shipping > self.shipping_due_unpaid():
            raise RefundLimitExceeded(
                f"shipping part {shipping} is more than the {self.shipping_due_unpaid()} owed"
            )
        return shipping

    def outstanding_quantity(self) -> int:
        """Items of an RMA still on their way back (blind and counter returns have none)."""
        if self.state.channel in (ReturnChannel.BLIND, ReturnChannel.STORE):
            return 0
        if self.state.keep_item_accepted:
            return 0
        expected = sum(line.quantity for line in self.state.lines.values())
        received = sum(item.quantity for item in self.state.received_items)
        return max(0, expected - received)

    def amount_outstanding(self) -> Money | None:
        """An instant exchange: what its returned lines not received yet are worth, owed by
        the customer until they arrive (zero once all have); None for any other return."""
        s = self.state
        if not s.instant_exchange:
            return None
        received: dict[str, int] = {}
        for item in s.received_items:
            received[item.sku] = received.get(item.sku, 0) + item.quantity
        owed = Money.zero(s.currency)
        for line in s.lines.values():
            got = min(line.quantity, received.get(line.sku, 0))
            received[line.sku] = received.get(line.sku, 0) - got
            owed = owed + line.unit_price.times(line.quantity - got)
        return owed

    def paid_out(self) -> Money:
        """Money already on its way to the customer: live refunds and store credit (no bonus)."""
        total = Money.zero(self.state.currency)
        for refund in self.state.refunds.values():
            if refund.status != "failed":
                total = total + refund.amount
        return total + (self.state.store_credit_paid or Money.zero(self.state.currency))

    def shipping_paid(self) -> Money:
        total = Money.zero(self.state.currency)
        for refund in self.state.refunds.values():
            if refund.status != "failed" and refund.shipping is not None:
                total = total + refund.shipping
        return total + (self.state.store_credit_shipping or Money.zero(self.state.currency))

    def shipping_due_unpaid(self) -> Money:
        """The original shipping, owed once the first items are inspected, if not yet paid."""
        zero = Money.zero(self.state.currency)
        if not self.state.inspected_items:
            return zero
        return max_zero((self.state.shipping_refund or zero) - self.shipping_paid())

    def items_due_unpaid(self) -> Money:
        items_paid = self.paid_out() - self.shipping_paid()
        if self.state.replacement_order_id is not None:
            # The replacement settles the items; a cheaper one leaves its difference due.
            difference = self.state.exchange_refund_difference
            if difference is None:
                return Money.zero(self.state.currency)
            return max_zero(difference - items_paid)
        return max_zero((self.state.refund_due or Money.zero(self.state.currency)) - items_paid)

    def unbilled_fee(self) -> Money:
        """The restocking fee is recorded with the first payout, never twice."""
        if any(r.status != "failed" for r in self.state.refunds.values()):
            return Money.zero(self.state.currency)
        if self.state.store_credit_paid is not None:
            return Money.zero(self.state.currency)
        return self.state.restocking_fee or Money.zero(self.state.currency)

    def pending_refunds(self) -> list[str]:
        """Refunds handed to the provider that it has not answered yet."""
        return [rid for rid, refund in self.state.refunds.items() if refund.status == "requested"]

    def check_refund_pending(self) -> list[str]:
        pending = self.pending_refunds()
        if not pending:
            raise InvalidTransition(f"return {self.state.rma_number} has no refund pending")
        return pending

    def refund(self, refund_id: str) -> RefundState:
        try:
            return self.state.refunds[refund_id]
        except KeyError:
            raise InvalidCommand(
                f"return {self.state.rma_number} has no refund {refund_id}"
            ) from None

    def counter_inspection(
        self, checks: tuple[CounterCheck, ...], location_id: str
    ) -> tuple[InspectedItem, ...]:
        items = []
        for check in checks:
            line = self.state.lines.get(check.line_no)
            if line is None:
                raise InvalidCommand(f"the counter checked line {check.line_no}, not returned")
            items.append(
                InspectedItem(
                    sku=line.sku,
                    quantity=check.quantity,
                    serial=check.serial,
                    condition=check.condition,
                    disposition=check.disposition,
                    line_no=check.line_no,
                    location_id=location_id,
                )
            )
        return tuple(items)

    def lines_value(self) -> Money:
        total = Money.zero(self.state.currency)
        for line in self.state.lines.values():
            total = total + line.unit_price.times(line.quantity)
        return total

    def policy(self, book: PolicyBook) -> ReturnPolicy:
        line = next(iter(self.state.lines.values()), None)
        category = line.category if line else "general"
        return book.policy_for(category, self.state.order_channel or Channel.WEB)

    def refund_for(self, items: tuple[InspectedItem, ...], book: PolicyBook) -> Money:
        """What the inspected items earn back: price by condition, less restocking fees.

        Shipping is owed apart (``shipping_due_unpaid``), once, whatever the parcels."""
        total = Money.zero(self.state.currency)
        taken: dict[int, int] = {}
        fee_charged = Money.zero(self.state.currency)
        for item in items:
            if item.line_no is None:
                continue
            line = self.state.lines[item.line_no]
            decision = self.state.decisions.get(item.line_no)
            if decision is not None and not decision.accepted:
                continue
            already = taken.get(item.line_no, 0) + self.inspected_quantity(item.line_no)
            quantity = min(item.quantity, line.quantity - already)
            if quantity <= 0:
                continue
            taken[item.line_no] = taken.get(item.line_no, 0) + quantity
            policy = book.policy_for(line.category, self.state.order_channel or Channel.WEB)
            rate = refund_rate(policy, line.reason, item.condition)
            total = total + line.unit_price.times(quantity).times(rate)
            if decision is not None and not decision.restocking_fee.is_zero:
                per_unit = decision.restocking_fee.amount / line.quantity
                fee_charged = fee_charged + Money.rounded(per_unit * quantity, self.state.currency)
        return max_zero(total - fee_charged)

    def inspected_quantity(self, line_no: int) -> int:
        return sum(i.quantity for i in self.state.inspected_items if i.line_no == line_no)
