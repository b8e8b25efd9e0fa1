"""Settlement with the customer and refunds: pay back, credit or exchange; the provider's
answers; retries and re-sends; the offer to keep the item."""

from __future__ import annotations

from datetime import timedelta

from domain.commands import (
    AcceptKeepItem,
    FailRefund,
    OfferKeepItem,
    Outcome,
    ResendRefund,
    RetryRefund,
    SettleRefund,
)
from domain.errors import InvalidCommand, InvalidTransition
from domain.handlers.instant_exchange import place_replacement
from domain.handlers.scope import Handlers, Scope, outcome_of, store_credit_allocation
from domain.order import Order
from domain.policy import allocate_proportionally
from domain.returns import Return, ReturnStatus
from domain.store_credit import new_store_credit_code
from domain.values import Money, PaymentMethod, RefundMethod


def settle_with_customer(
    s: Scope, rma: Return, *, method: RefundMethod | None = None, bonus: bool = True
) -> Outcome:
    """After inspection, pay the customer the way they chose; never wait on repair legs.

    ``bonus=False``: the store credit is customer service's way to pay a refund the
    provider declined, not the customer's choice, so the policy's bonus does not apply.
    """
    order = s.order_of(rma)
    method = method or rma.state.refund_method
    zero = Money.zero(rma.state.currency)
    items = rma.items_due_unpaid()
    shipping = rma.shipping_due_unpaid()
    if not shipping.is_zero and order.shipping_refunded():
        shipping = zero  # another return of this order already paid the shipping back
    if rma.state.replacement_order_id is not None:
        shipping = zero  # an exchange never pays shipping back, nor does its retry
    amount = items + shipping
    if amount.amount <= 0:
        rma.close_if_settled(s.at, s.cause)
        return outcome_of(rma)
    if method is RefundMethod.STORE_CREDIT:
        credit_id = f"SC-{rma.state.rma_number}-{rma.version}"
        rate = rma.policy(s.book).store_credit_bonus_rate if bonus else 0
        extra = items.times(rate)
        order.allocate_refund(
            refund_id=credit_id,
            return_id=rma.id,
            allocations=(store_credit_allocation(amount),),
            shipping_refunded=shipping,
            at=s.at,
            cause=s.cause,
        )
        code = new_store_credit_code()
        rma.issue_store_credit(
            credit_id=credit_id,
            amount=amount,
            bonus=extra,
            shipping=shipping,
            at=s.at,
            cause=s.cause,
            code=code,
        )
        s.store_credit(order.state.customer_id).credit(
            amount + extra, credit_id, "return", s.at, s.cause, code=code
        )
        return outcome_of(rma, amount=amount)
    if method is RefundMethod.EXCHANGE and rma.state.replacement_order_id is None:
        return exchange(s, rma, order)
    return refund(s, rma, order, amount, shipping=shipping)


def refund(
    s: Scope,
    rma: Return,
    order: Order,
    amount: Money,
    *,
    shipping: Money | None = None,
    keep_item: bool = False,
) -> Outcome:
    refund_id = f"RF-{rma.state.rma_number}-{len(rma.state.refunds) + 1}"
    shipping = shipping or Money.zero(rma.state.currency)
    try:
        allocations = allocate_proportionally(amount, order.refund_capacities())
    except ValueError as error:
        raise InvalidCommand(str(error)) from error
    order.allocate_refund(
        refund_id=refund_id,
        return_id=rma.id,
        allocations=allocations,
        shipping_refunded=shipping,
        at=s.at,
        cause=s.cause,
    )
    rma.request_refund(
        refund_id=refund_id,
        amount=amount,
        allocations=allocations,
        shipping=shipping,
        at=s.at,
        cause=s.cause,
        keep_item=keep_item,
    )
    return outcome_of(rma, refund_id=refund_id, amount=amount)


def exchange(s: Scope, rma: Return, order: Order) -> Outcome:
    number, replacement, plan = place_replacement(s, rma, order, rma.items_due_unpaid())
    rma.order_exchange(
        replacement_order_id=replacement.id,
        replacement_order_number=number,
        lines=plan.lines,
        at=s.at,
        cause=s.cause,
        refund_difference=plan.refund_difference,
        amount_due=plan.amount_due,
    )
    if plan.refund_difference is not None:
        # A cheaper replacement: the difference goes back like any refund.
        return refund(s, rma, order, plan.refund_difference)
    return outcome_of(rma)


def settle_refund(c: SettleRefund, s: Scope) -> Outcome:
    rma = s.return_of_refund(c.refund_id)
    if c.payment_id is not None:
        return settle_refund_payment(c, c.payment_id, rma, s)
    rma.settle_refund(c.refund_id, c.provider_reference, c.amount, s.at, s.cause)
    # The part of the refund going back to a store-credit payment returns to the balance,
    # once settled (a failed refund is paid again under another id).
    credit_settled_store_credit(rma, c.refund_id, s)
    return outcome_of(rma, refund_id=c.refund_id, amount=c.amount)


def credit_settled_store_credit(rma: Return, refund_id: str, s: Scope) -> None:
    order = s.order_of(rma)
    # Back to the account each payment spent: a payment by code spent the code's account.
    to_credit: dict[str, Money] = {}
    for allocation in rma.refund(refund_id).allocations:
        if allocation.method is PaymentMethod.STORE_CREDIT and allocation.payment_id is not None:
            customer_id = s.store_credit_payer(order, allocation.payment_id)
            to_credit[customer_id] = (
                to_credit.get(customer_id, Money.zero(rma.state.currency)) + allocation.amount
            )
    for customer_id, amount in sorted(to_credit.items()):
        if not amount.is_zero:
            s.store_credit(customer_id).credit(
                amount, refund_id, "refund", s.at, s.cause, code=new_store_credit_code()
            )


def settle_refund_payment(c: SettleRefund, payment_id: str, rma: Return, s: Scope) -> Outcome:
    """The provider settles payment by payment: the refund is settled (and its store-credit
    part credited) only with the last one."""
    if rma.settle_refund_payment(
        c.refund_id, payment_id, c.provider_reference, c.amount, s.at, s.cause
    ):
        credit_settled_store_credit(rma, c.refund_id, s)
    return outcome_of(rma, refund_id=c.refund_id, amount=c.amount)


def fail_refund(c: FailRefund, s: Scope) -> Outcome:
    rma = s.return_of_refund(c.refund_id)
    if rma.fail_refund(c.refund_id, c.reason, s.at, s.cause, payment_id=c.payment_id):
        s.order_of(rma).release_refund(c.refund_id, c.reason, s.at, s.cause)
    return outcome_of(rma, refund_id=c.refund_id)


def retry_refund(c: RetryRefund, s: Scope) -> Outcome:
    """After a failed refund: pay again to the original payments, or as store credit."""
    rma = s.return_(c.return_id)
    rma.check_status(ReturnStatus.REFUND_FAILED)
    if rma.state.keep_item_accepted:
        offer = rma.state.keep_item_offer or Money.zero(rma.state.currency)
        remaining = offer - rma.paid_out()
        return refund(s, rma, s.order_of(rma), remaining, keep_item=True)
    if c.as_store_credit:
        return settle_with_customer(s, rma, method=RefundMethod.STORE_CREDIT, bonus=False)
    return settle_with_customer(s, rma)


def resend_refund(c: ResendRefund, s: Scope) -> Outcome:
    """While a refund waits for the provider: check there is one to send again.

    Nothing is recorded here. A re-send repeats the same instruction under the same
    refund id, which the provider deduplicates: no money moves and the RMA's state does
    not change, so it is no business fact for the event store (the audit trail of money
    is requested, settled, failed). The attempts and who asked for them are delivery
    bookkeeping, kept by the dispatcher beside the lookups (``oms_refund_dispatches``).
    """
    rma = s.return_(c.return_id)
    pending = rma.check_refund_pending()
    if c.as_store_credit:
        raise InvalidTransition(
            f"refund {pending[0]} is still with the payment provider: store credit "
            "only once it failed"
        )
    return outcome_of(rma, refund_id=pending[0], amount=rma.refund(pending[0]).amount)


def offer_keep_item(c: OfferKeepItem, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    offer = rma.offer_keep_item(s.book, s.at + timedelta(days=c.valid_days), s.at, s.cause)
    return outcome_of(rma, amount=offer)


def accept_keep_item(c: AcceptKeepItem, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    order = s.order_of(rma)
    offer = rma.accept_keep_item(s.at, s.cause)
    return refund(s, rma, order, offer, keep_item=True)


HANDLERS: Handlers = {
    SettleRefund: settle_refund,
    FailRefund: fail_refund,
    RetryRefund: retry_refund,
    ResendRefund: resend_refund,
    OfferKeepItem: offer_keep_item,
    AcceptKeepItem: accept_keep_item,
}
