"""Repair and return-to-vendor legs: send, complete, restock, ship, credit."""

from __future__ import annotations

from pydantic import TypeAdapter

from domain.commands import (
    CompleteRepair,
    LegAction,
    MoveLeg,
    Outcome,
    ReceiveSupplierCredit,
    RestockRepaired,
    SendToRepair,
    ShipToVendor,
)
from domain.errors import InvalidCommand, InvalidValue
from domain.handlers.scope import Handlers, Scope, outcome_of
from domain.values import Disposition, LocationId

REPAIR, VENDOR = Disposition.REPAIR, Disposition.RETURN_TO_VENDOR
# The leg kinds each action applies to, and the leg status it needs there.
TAKES = {
    LegAction.SENT_TO_REPAIR: {REPAIR: "awaiting_dispatch"},
    LegAction.REPAIRED: {REPAIR: "at_repair"},
    LegAction.REPLACED: {REPAIR: "at_repair"},
    LegAction.UNREPAIRABLE: {REPAIR: "at_repair"},
    LegAction.RESTOCKED: {REPAIR: "repaired", VENDOR: "at_vendor"},
    LegAction.SHIPPED_TO_VENDOR: {VENDOR: "awaiting_dispatch"},
    LegAction.CREDITED: {VENDOR: "at_vendor"},
}
STEP = {
    LegAction.SENT_TO_REPAIR: "sent",
    LegAction.REPAIRED: "completed",
    LegAction.REPLACED: "completed",
    LegAction.UNREPAIRABLE: "completed",
    LegAction.RESTOCKED: "restocked",
    LegAction.SHIPPED_TO_VENDOR: "shipped",
    LegAction.CREDITED: "credited",
}
OUTCOME = {
    LegAction.REPAIRED: "repaired",
    LegAction.REPLACED: "replaced",
    LegAction.UNREPAIRABLE: "beyond_repair",
}


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


def move_leg(c: MoveLeg, s: Scope) -> Outcome:
    if c.return_id is not None:
        rma = s.return_(c.return_id)
    elif c.rma_number is not None:
        rma = s.return_by_rma(c.rma_number)
    else:
        raise InvalidCommand("name the return of the leg by its RMA number")
    leg_id = rma.find_leg(
        TAKES[c.action], leg_id=c.leg_id, serial=c.serial, sku=c.sku, step=STEP[c.action]
    )
    match c.action:
        case LegAction.SENT_TO_REPAIR:
            rma.send_to_repair(
                leg_id, required(c.repair_center, "repair_center"), s.at, s.cause, c.reference
            )
        case LegAction.REPAIRED | LegAction.REPLACED | LegAction.UNREPAIRABLE:
            rma.complete_repair(leg_id, OUTCOME[c.action], s.at, s.cause, c.replacement_serial)
        case LegAction.RESTOCKED:
            location = location_of(required(c.location_id, "location_id"))
            if rma.state.legs[leg_id].kind is VENDOR:
                rma.take_back_from_vendor(leg_id, location, s.at, s.cause)
            else:
                rma.restock_repaired(leg_id, location, s.at, s.cause)
        case LegAction.SHIPPED_TO_VENDOR:
            rma.ship_to_vendor(leg_id, required(c.reference, "reference"), s.at, s.cause)
        case LegAction.CREDITED:
            if c.amount is None:
                raise InvalidCommand("a supplier credit needs its amount")
            rma.receive_supplier_credit(leg_id, c.amount, s.at, s.cause, c.reference)
    return outcome_of(rma).model_copy(update={"leg_id": leg_id})


_LOCATION: TypeAdapter[str] = TypeAdapter(LocationId)


def location_of(value: str) -> str:
    """Checked here, as a refusal: an invalid id reaching the event would fail its batch."""
    try:
        return _LOCATION.validate_python(value)
    except ValueError:
        raise InvalidValue(f"invalid location id: {value!r}") from None


def required(value: str | None, name: str) -> str:
    if not value:
        raise InvalidCommand(f"this leg step needs {name}")
    return value


HANDLERS: Handlers = {
    MoveLeg: move_leg,
    SendToRepair: send_to_repair,
    CompleteRepair: complete_repair,
    RestockRepaired: restock_repaired,
    ShipToVendor: ship_to_vendor,
    ReceiveSupplierCredit: receive_supplier_credit,
}
