"""Orders: placed, fulfilled, delivered, cancelled (as the shop's systems report them)."""

from __future__ import annotations

from domain.commands import CancelOrder, DeliverOrder, FulfilOrder, Outcome, PlaceOrder
from domain.errors import AlreadyExists
from domain.handlers.scope import Handlers, Scope
from domain.order import Order, order_id_for


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
    return Outcome(aggregate_id=order.id, status="placed")


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
    return Outcome(aggregate_id=order.id, status="cancelled")


HANDLERS: Handlers = {
    PlaceOrder: place_order,
    FulfilOrder: fulfil_order,
    DeliverOrder: deliver_order,
    CancelOrder: cancel_order,
}
