"""Replacement orders of exchanges, and the instant exchange: the replacement ordered at
authorization when the policy says so, before the returned items arrive."""

from __future__ import annotations

from domain.handlers.scope import Scope
from domain.order import Order
from domain.returns import Return, ReturnStatus
from domain.returns.exchange import ExchangePlan, plan_exchange
from domain.values import Channel, Money, RefundMethod


def place_replacement(
    s: Scope, rma: Return, order: Order, items_due: Money
) -> tuple[str, Order, ExchangePlan]:
    """The replacement order (at 0.00: the returned items pay for it), linked to the order."""
    number = f"{order.state.order_number}-X{len(order.state.replacements) + 1}"
    plan = plan_exchange(order, rma.state.lines.values(), items_due)
    replacement = Order.place(
        order_number=number,
        customer_id=order.state.customer_id,
        customer_email=order.state.customer_email,
        channel=order.state.channel,
        lines=plan.lines,
        payments=(),
        shipping=Money.zero(order.state.currency),
        at=s.at,
        cause=s.cause,
        store_id=order.state.store_id,
        replacement_for=order.id,
        replacement_return_id=rma.id,
        reservation_location=replacement_reservation_location(rma, order),
    )
    s.uow.add(replacement)
    order.record_replacement(replacement.id, rma.id, s.at, s.cause)
    return number, replacement, plan


def replacement_reservation_location(rma: Return, order: Order) -> str | None:
    """Where a replacement's stock is held until it ships: the return's destination
    warehouse (set at authorization, so an instant exchange has it too). None for a store
    order: handed over at the counter as it is placed."""
    if order.state.channel is Channel.STORE and order.state.store_id:
        return None
    return rma.state.destination_warehouse


def ship_instant_exchange(s: Scope, rma: Return, order: Order) -> None:
    """At authorization: an exchange under a policy with ``instant_exchange`` orders its
    replacement now (its stock reserved now, moved at its fulfilment, as for any order).
    A cheaper replacement's difference is planned against the returned lines' full value
    and refunded after inspection, as for any exchange."""
    s_ = rma.state
    if (
        s_.status is not ReturnStatus.AUTHORIZED
        or s_.refund_method is not RefundMethod.EXCHANGE
        or s_.replacement_order_id is not None
        or not rma.policy(s.book).instant_exchange
    ):
        return
    value = Money.zero(s_.currency)
    for line in s_.lines.values():
        value = value + line.unit_price.times(line.quantity)
    number, replacement, plan = place_replacement(s, rma, order, value)
    rma.order_instant_exchange(
        replacement_order_id=replacement.id,
        replacement_order_number=number,
        lines=plan.lines,
        at=s.at,
        cause=s.cause,
        refund_difference=plan.refund_difference,
        amount_due=plan.amount_due,
    )
