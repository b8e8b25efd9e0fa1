"""Pricing an exchange: what the replacement order ships and what money moves beside it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from domain.events import OrderLine, ReturnLine
from domain.values import Money

if TYPE_CHECKING:
    from collections.abc import Iterable

    from domain.order import Order


@dataclass(frozen=True)
class ExchangePlan:
    lines: tuple[OrderLine, ...]
    refund_difference: Money | None
    amount_due: Money | None


def plan_exchange(order: Order, returned: Iterable[ReturnLine], items_due: Money) -> ExchangePlan:
    """Ship what the customer named per line (the same SKU when nothing was named) at 0.00.

    Lines are compared at their unit prices: a cheaper replacement refunds the difference,
    at most what inspection left due (``items_due``: a damaged item or a restocking fee
    lowers it); a dearer one is owed by the customer, recorded only, as no payment is
    captured here. An even exchange moves no money.
    """
    zero = Money.zero(order.state.currency)
    returned_value = zero
    replacement_value = zero
    lines = []
    for index, line in enumerate(returned, start=1):
        choice = line.exchange
        unit_price = line.unit_price if choice is None else choice.unit_price
        returned_value = returned_value + line.unit_price.times(line.quantity)
        replacement_value = replacement_value + unit_price.times(line.quantity)
        lines.append(
            OrderLine(
                line_no=index,
                sku=line.sku if choice is None else choice.sku,
                name="" if choice is None else choice.name,
                quantity=line.quantity,
                unit_price=zero,
                supplier=line.supplier,
                category=line.category,
                warranty_months=order.line(line.line_no).warranty_months,
                returnable=order.line(line.line_no).returnable,
            )
        )
    difference = returned_value - replacement_value
    refund_difference = None
    amount_due = None
    if difference.amount > 0:
        capped = difference if difference <= items_due else items_due
        refund_difference = None if capped.is_zero else capped
    elif difference.amount < 0:
        amount_due = zero - difference
    return ExchangePlan(tuple(lines), refund_difference, amount_due)
