"""Orders: placed, fulfilled, delivered, cancelled (as the shop's systems report them)."""

from __future__ import annotations

from domain.commands import CancelOrder, DeliverOrder, FulfilOrder, Outcome, PlaceOrder
from domain.errors import AlreadyExists
from domain.handlers.scope import Handlers, Scope
from domain.order import Order, order_id_for
from domain.store_credit import new_store_credit_code
from domain.values import Money, PaymentMethod


def place_order(c: PlaceOrder, s: Scope) -> Outcome:
    if not s.uow.is_new(Order, order_id_for(c.order_number)):
        raise AlreadyExists(f"order {c.order_number} already exists")
    order = Order.place(
        order_number=c.order_number,
        customer_id=c.customer_id,
        customer_email=c.customer_email,
        channel=c.channel,
        lines=tuple(c.lines),
        payments=tuple(c.payments),
        shipping=c.shipping,
        at=c.placed_at or s.at,
        cause=s.cause,
        store_id=c.store_id,
    )
    s.uow.add(order)
    for payer, credit in store_credit_paid(order, s).items():
        # Refused whole (the unit rolls the order back) when a balance is short.
        s.store_credit(payer).spend(credit, c.order_number, s.at, s.cause)
    return Outcome(aggregate_id=order.id, status="placed")


def store_credit_paid(order: Order, s: Scope) -> dict[str, Money]:
    """What the order's store-credit payments take from each account (by customer id)."""
    totals: dict[str, Money] = {}
    for payment_id, payment in order.state.payments.items():
        if payment.method is PaymentMethod.STORE_CREDIT and not payment.amount.is_zero:
            payer = s.store_credit_payer(order, payment_id)
            totals[payer] = totals.get(payer, Money.zero(order.state.currency)) + payment.amount
    return dict(sorted(totals.items()))


def fulfil_order(c: FulfilOrder, s: Scope) -> Outcome:
    order = s.order(c.order_number)
    before = order.version
    order.fulfil(c.location_id, tuple(c.lines), s.at, s.cause)
    # No event: a store sale's fulfilment that only repeats the sale.
    status = "fulfilled" if order.version > before else "already_fulfilled"
    return Outcome(aggregate_id=order.id, status=status)


def deliver_order(c: DeliverOrder, s: Scope) -> Outcome:
    order = s.order(c.order_number)
    before = order.version
    order.deliver(c.delivered_at or s.at, s.cause)
    status = "delivered" if order.version > before else "already_delivered"
    return Outcome(aggregate_id=order.id, status=status)


def cancel_order(c: CancelOrder, s: Scope) -> Outcome:
    order = s.order(c.order_number)
    order.cancel(c.reason, s.at, s.cause)
    for payer, credit in store_credit_paid(order, s).items():
        s.store_credit(payer).credit(
            credit, c.order_number, "order_cancelled", s.at, s.cause, new_store_credit_code()
        )
    return Outcome(aggregate_id=order.id, status="cancelled")


HANDLERS: Handlers = {
    PlaceOrder: place_order,
    FulfilOrder: fulfil_order,
    DeliverOrder: deliver_order,
    CancelOrder: cancel_order,
}
