"""Return lines and the pure helpers that build them: ids, requested lines, fees, packing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.errors import (
    InvalidCommand,
)
from domain.events import (
    ExchangeChoice,
    InspectedItem,
    LineDecision,
    ReturnLine,
)
from domain.order import Order
from domain.policy import PolicyBook, add_months, evaluate_line
from domain.returns.state import ReturnState
from domain.values import (
    Condition,
    Disposition,
    Money,
    ReasonCode,
    ReturnMethod,
)

RETURN_NAMESPACE = uuid5(NAMESPACE_URL, "urn:oms:return")


def blind_return_id_for(receipt_id: str) -> UUID:
    """A re-sent warehouse receipt maps to the same blind return, never to a second one."""
    return uuid5(RETURN_NAMESPACE, f"receipt:{receipt_id}")


def store_return_id_for(store_id: str, store_return_id: str) -> UUID:
    return uuid5(RETURN_NAMESPACE, f"store:{store_id}:{store_return_id}")


@dataclass(frozen=True)
class RequestedLine:
    """A line of a customer's request, before it is enriched from the order."""

    line_no: int
    quantity: int
    reason: ReasonCode
    serial: str | None = None
    comment: str = ""
    exchange: ExchangeChoice | None = None


@dataclass(frozen=True)
class CounterCheck:
    """What a store clerk sees of one returned line at the counter."""

    line_no: int
    quantity: int
    condition: Condition
    disposition: Disposition
    serial: str | None = None


def enrich_lines(order: Order, lines: tuple[RequestedLine, ...]) -> tuple[ReturnLine, ...]:
    if not lines:
        raise InvalidCommand("a return needs at least one line")
    seen: set[int] = set()
    enriched = []
    for requested in lines:
        if requested.line_no in seen:
            raise InvalidCommand(f"line {requested.line_no} appears twice")
        seen.add(requested.line_no)
        line = order.line(requested.line_no)
        if requested.quantity < 1:
            raise InvalidCommand(f"line {requested.line_no}: quantity must be positive")
        if requested.serial is not None and order.serial_line(requested.serial) != line.line_no:
            raise InvalidCommand(
                f"serial {requested.serial} was not sold on line {requested.line_no} "
                f"of order {order.state.order_number}"
            )
        if requested.exchange is not None:
            check_exchange_choice(order, requested.line_no, requested.exchange)
        enriched.append(
            ReturnLine(
                line_no=line.line_no,
                sku=line.sku,
                quantity=requested.quantity,
                reason=requested.reason,
                unit_price=line.unit_price,
                serial=requested.serial,
                supplier=line.supplier,
                category=line.category,
                comment=requested.comment,
                exchange=requested.exchange,
            )
        )
    return tuple(enriched)


def check_exchange_choice(order: Order, line_no: int, choice: ExchangeChoice) -> None:
    price = choice.unit_price
    if price.currency != order.state.currency or price.amount < 0:
        raise InvalidCommand(
            f"line {line_no}: the replacement's unit price is a non-negative "
            f"{order.state.currency} amount"
        )


def decide_lines(
    order: Order, lines: tuple[ReturnLine, ...], book: PolicyBook, at: datetime, *, blind: bool
) -> tuple[LineDecision, ...]:
    decisions = []
    for line in lines:
        order_line = order.line(line.line_no)
        policy = book.policy_for(order_line.category, order.state.channel)
        decisions.append(
            evaluate_line(
                line,
                policy=policy,
                line_returnable=order_line.returnable,
                warranty_months=order_line.warranty_months,
                reference_date=order.reference_date(),
                at=at,
                blind=blind,
            )
        )
    return tuple(decisions)


def rejection_message(
    decision: LineDecision,
    reference_date: datetime | None = None,
    line: ReturnLine | None = None,
    *,
    from_purchase: bool = False,
) -> str:
    """Why a line is refused, in the customer's words and with the dates that decided it.

    ``reference_date`` (delivery, or the sale at a store) dates the window and the warranty;
    ``line`` tells whether a warranty claim was made. Without them the message is undated.
    ``from_purchase``: a store sale, whose window starts when it is bought.
    """
    n = decision.line_no
    terms = decision.terms
    if decision.code == "non_returnable_item":
        return f"line {n} cannot be returned unless defective or the wrong item"
    if decision.code != "outside_return_window":
        return f"line {n} refused: {decision.code}"
    if reference_date is None:
        return (
            f"line {n} is past its {terms.window_days}-day return window and not a warranty claim"
        )
    closed_on = (reference_date + timedelta(days=terms.window_days)).date()
    start = "purchase" if from_purchase else "delivery"
    message = f"line {n}: returns close {terms.window_days} days after {start}: on {closed_on}"
    if line is not None and line.reason is ReasonCode.DEFECTIVE:
        if line.serial is None:
            message += "; a warranty claim needs the item's serial number"
        else:
            ended_on = add_months(reference_date, terms.warranty_months).date()
            message += f"; its {terms.warranty_months}-month warranty ended on {ended_on}"
    return message


def sum_fees(decisions: tuple[LineDecision, ...], currency: str) -> Money:
    total = Money.zero(currency)
    for decision in decisions:
        if decision.accepted:
            total = total + decision.restocking_fee
    return total


def shipping_refund_for(order: Order, lines: tuple[ReturnLine, ...]) -> Money:
    """Shipping comes back once per order, and only when the fault was ours."""
    zero = Money.zero(order.state.currency)
    if order.state.shipping is None or order.shipping_refunded():
        return zero
    if any(line.reason.is_fault_of_seller for line in lines):
        return order.state.shipping
    return zero


def packing_instructions(state: ReturnState, rma_number: str) -> str:
    items = "; ".join(f"{line.quantity} x {line.sku}" for line in state.lines.values())
    method = {
        ReturnMethod.CARRIER_DROP_OFF: "drop it at any carrier point",
        ReturnMethod.RELAY_POINT: "leave it at the relay point of your choice",
        ReturnMethod.STORE: "bring it to any of our stores",
        ReturnMethod.PICKUP: "a courier will collect it at your address",
        None: "send it back",
    }[state.method]
    return (
        f"Pack {items} in its original packaging with accessories, write {rma_number} on the "
        f"parcel, put the printed return note inside, and {method}."
    )


def assign_lines(state: ReturnState, items: tuple[InspectedItem, ...]) -> tuple[InspectedItem, ...]:
    """Tie each inspected item to the return line it belongs to, by serial first, then by SKU."""
    by_serial = {line.serial: line.line_no for line in state.lines.values() if line.serial}
    by_sku: dict[str, int] = {}
    for line in state.lines.values():
        by_sku.setdefault(line.sku, line.line_no)
    assigned = []
    for item in items:
        line_no = item.line_no
        if line_no is None and item.serial is not None:
            line_no = by_serial.get(item.serial)
        if line_no is None:
            line_no = by_sku.get(item.sku)
        if line_no is not None and line_no not in state.lines:
            raise InvalidCommand(f"return {state.rma_number} has no line {line_no}")
        assigned.append(item.model_copy(update={"line_no": line_no}))
    return tuple(assigned)


def quantities_of(lines: Mapping[int, ReturnLine]) -> dict[int, int]:
    return {line_no: line.quantity for line_no, line in lines.items()}
