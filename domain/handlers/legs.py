"""Repair and return-to-vendor legs: send, complete, restock, ship, credit."""

from __future__ import annotations

from domain.commands import (
    CompleteRepair,
    Outcome,
    ReceiveSupplierCredit,
    RestockRepaired,
    SendToRepair,
    ShipToVendor,
)
from domain.handlers.scope import Handlers, Scope, outcome_of


def send_to_repair(c: SendToRepair, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    rma.send_to_repair(c.leg_id, c.repair_center, s.at, s.cause)
    return outcome_of(rma)


def complete_repair(c: CompleteRepair, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    rma.complete_repair(c.leg_id, c.outcome, s.at, s.cause)
    return outcome_of(rma)


def restock_repaired(c: RestockRepaired, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    rma.restock_repaired(c.leg_id, c.location_id, s.at, s.cause)
    return outcome_of(rma)


def ship_to_vendor(c: ShipToVendor, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    rma.ship_to_vendor(c.leg_id, c.vendor_rma, s.at, s.cause)
    return outcome_of(rma)


def receive_supplier_credit(c: ReceiveSupplierCredit, s: Scope) -> Outcome:
    rma = s.return_(c.return_id)
    rma.receive_supplier_credit(c.leg_id, c.amount, s.at, s.cause)
    return outcome_of(rma)


HANDLERS: Handlers = {
    SendToRepair: send_to_repair,
    CompleteRepair: complete_repair,
    RestockRepaired: restock_repaired,
    ShipToVendor: ship_to_vendor,
    ReceiveSupplierCredit: receive_supplier_credit,
}
