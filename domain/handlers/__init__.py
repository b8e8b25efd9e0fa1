"""Command handlers, one module per feature, and the registry the runner dispatches on.

A handler is ``handler(command, scope) -> Outcome``: it loads what it needs through the
scope, lets the aggregates decide, and returns the outcome (or raises a ``DomainError``).
A new command adds its class to domain/commands.py and one entry to its feature's
``HANDLERS``.
"""

from __future__ import annotations

from domain.handlers import (
    blind,
    blind_returns,
    counter,
    expiry,
    inventory,
    legs,
    orders,
    reconciliation,
    requests,
    settlement,
    warehouse,
)
from domain.handlers.scope import Handler, Handlers, Scope


def _merged(*tables: Handlers) -> Handlers:
    merged: Handlers = {}
    for table in tables:
        for command, handler in table.items():
            if command in merged:
                raise TypeError(f"{command.__name__} has two handlers")
            merged[command] = handler
    return merged


HANDLERS: Handlers = _merged(
    orders.HANDLERS,
    requests.HANDLERS,
    blind.HANDLERS,
    warehouse.HANDLERS,
    settlement.HANDLERS,
    counter.HANDLERS,
    inventory.HANDLERS,
    legs.HANDLERS,
    expiry.HANDLERS,
    blind_returns.HANDLERS,
    reconciliation.HANDLERS,
)

__all__ = ["HANDLERS", "Handler", "Scope"]
