"""What a handler works with: the unit of work, who and when, the policies, and loaders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.commands import Command, Outcome
from domain.errors import InvalidTransition, NotFound, UnknownStoreCreditCode
from domain.events import Cause, RefundAllocation
from domain.inventory import Inventory, inventory_id_for
from domain.lookups import Lookups
from domain.order import Order, order_id_for
from domain.policy import PolicyBook
from domain.returns import Return, ReturnStatus
from domain.store_credit import StoreCreditAccount, store_credit_id_for
from domain.unit_of_work import UnitOfWork
from domain.values import Money, PaymentMethod, RmaNumber


@dataclass(slots=True)
class Scope:
    """One command's run: built by the runner per command, read by its handler."""

    uow: UnitOfWork
    cause: Cause
    at: datetime
    book: PolicyBook
    warehouse: str
    """Where returned parcels go by default."""
    lookups: Lookups
    new_rma_number: Callable[[], str]

    def order(self, order_number: str) -> Order:
        order = self.uow.get(Order, order_id_for(order_number))
        if order is None:
            raise NotFound(f"order {order_number} is unknown")
        return order

    def return_(self, return_id: UUID) -> Return:
        found = self.uow.get(Return, return_id)
        if found is None:
            raise NotFound(f"return {return_id} is unknown")
        return found

    def return_by_rma(self, rma_number: str) -> Return:
        return_id = self.lookups.return_id_for_rma(RmaNumber(rma_number))
        if return_id is None:
            # It may have been authorized earlier in this very unit.
            for aggregate in self.uow.aggregates.values():
                if isinstance(aggregate, Return) and aggregate.state.rma_number == rma_number:
                    return aggregate
            raise NotFound(f"RMA {rma_number} is unknown")
        return self.return_(return_id)

    def order_of(self, rma: Return) -> Order:
        if rma.state.order_id is None:
            raise InvalidTransition("this return is not matched to an order yet")
        order = self.uow.get(Order, rma.state.order_id)
        if order is None:
            raise NotFound(f"order {rma.state.order_id} is unknown")
        return order

    def return_of_refund(self, refund_id: str) -> Return:
        return_id = self.lookups.return_id_for_refund(refund_id)
        if return_id is None:
            for aggregate in self.uow.aggregates.values():
                if isinstance(aggregate, Return) and refund_id in aggregate.state.refunds:
                    return aggregate
            raise NotFound(f"refund {refund_id} is unknown")
        return self.return_(return_id)

    def inventory(self, sku: str, location_id: str) -> Inventory:
        found = self.uow.get(Inventory, inventory_id_for(sku, location_id))
        if found is None:
            found = Inventory.start(sku, location_id)
            self.uow.add(found)
        return found

    def returns_of_customer_since(self, customer_id: str, since: datetime, *, besides: UUID) -> int:
        """How many returns the customer opened at ``since`` or later, other than
        ``besides``: the committed ones from the lookups, plus any opened earlier in this
        unit (a batch of requests from one customer counts each before the next)."""
        found = set(self.lookups.returns_of_customer_since(customer_id, since))
        for aggregate in self.uow.aggregates.values():
            if (
                isinstance(aggregate, Return)
                and aggregate.state.customer_id == customer_id
                and aggregate.created_on is not None
                and aggregate.created_on >= since
            ):
                found.add(aggregate.id)
        found.discard(besides)
        return len(found)

    def store_credit(self, customer_id: str) -> StoreCreditAccount:
        found = self.uow.get(StoreCreditAccount, store_credit_id_for(customer_id))
        if found is None:
            found = StoreCreditAccount.open(customer_id)
            self.uow.add(found)
        return found

    def store_credit_payer(self, order: Order, payment_id: str) -> str:
        """Whose account a store-credit payment spends: its code's, else the ordering
        customer's (the customer id is the account's key)."""
        code = order.state.payments[payment_id].store_credit_code
        if code is None:
            return order.state.customer_id
        customer_id = self.lookups.customer_of_store_credit_code(code)
        if customer_id is None:
            # Issued earlier in this very unit (a batch), not yet in the lookup table.
            for aggregate in self.uow.aggregates.values():
                if isinstance(aggregate, StoreCreditAccount) and code in aggregate.codes:
                    return aggregate.customer_id
            raise UnknownStoreCreditCode(f"store-credit code {code} is unknown")
        return customer_id


Handler = Callable[[Any, Scope], Outcome]
"""``handler(command, scope) -> Outcome``; raises a ``DomainError`` to refuse."""
Handlers = dict[type[Command], Handler]


# ---------------------------------------------------------------- pure helpers
def label_for(rma_number: str) -> str:
    return f"LBL-{rma_number.removeprefix('RMA-')}"


def store_credit_allocation(amount: Money) -> RefundAllocation:
    return RefundAllocation(payment_id=None, method=PaymentMethod.STORE_CREDIT, amount=amount)


def outcome_of(
    rma: Return, *, refund_id: str | None = None, amount: Money | None = None
) -> Outcome:
    s = rma.state
    message = None
    if s.status is ReturnStatus.REJECTED:
        decision = next((d for d in s.decisions.values() if not d.accepted), None)
        message = f"refused by policy: {s.rejection_code}" if decision is None else None
        # The customer reads why, with the dates that decided it (rejection_message).
        message = s.rejection_reason or message
    return Outcome(
        aggregate_id=rma.id,
        status=s.status.value,
        rma_number=s.rma_number,
        code=s.rejection_code,
        message=message,
        refund_id=refund_id,
        amount=amount,
    )
