"""Inventory: stock counted and adjusted at a location."""

from __future__ import annotations

from domain.commands import AdjustStock, CountStock, Outcome
from domain.handlers.scope import Handlers, Scope


def count_stock(c: CountStock, s: Scope) -> Outcome:
    inventory = s.inventory(c.sku, c.location_id)
    inventory.count(c.quantity, c.count_id, s.at, s.cause, counted_at=c.counted_at)
    return Outcome(aggregate_id=inventory.id, status="counted")


def adjust_stock(c: AdjustStock, s: Scope) -> Outcome:
    inventory = s.inventory(c.sku, c.location_id)
    inventory.adjust(c.delta, c.reason, c.adjustment_id, s.at, s.cause)
    return Outcome(aggregate_id=inventory.id, status="adjusted")


HANDLERS: Handlers = {CountStock: count_stock, AdjustStock: adjust_stock}
