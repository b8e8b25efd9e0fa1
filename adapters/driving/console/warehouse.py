"""The warehouse dock: receive a parcel by scanning (or typing) its RMA number or receipt id,
record the receipt and the inspection line by line, and move the open repair and vendor
legs.

Receiving and inspecting run ``ReceiveParcel`` and ``InspectItems``, the very commands the
``wms.receipts.v1`` handler runs for the WMS's messages, with the signed-in person as actor;
leg moves run ``MoveLeg`` as ``/v1/legs`` does. A warehouse key with a ``warehouse_id``
works for its warehouse only (RMAs heading to another are refused, as ``/v1/queues``
scopes them); an admin or a key with no warehouse says which warehouse receives.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from adapters.driving.api import routes_legs
from adapters.driving.api.auth import Principal, Role
from adapters.driving.api.context import api_of, load_return
from adapters.driving.api.problems import Problem
from adapters.driving.console.floor import (
    CONDITIONS,
    DISPOSITIONS,
    already_done,
    choice_of,
    failure_page,
    quantity_of,
    refusal_of,
)
from adapters.driving.console.once import money, new_form_id
from adapters.driving.console.sessions import Staff
from adapters.driving.console.web import StaffForm, StaffOnly, add_navigation, form_fields, render
from domain.commands import InspectItems, LegAction, MoveLeg, ReceiveParcel
from domain.errors import DomainError, NotFound
from domain.events import InspectedItem, ReceivedItem
from domain.returns import Return, blind_return_id_for
from domain.values import Condition, Disposition, Money

router = APIRouter(prefix="/console/warehouse", include_in_schema=False)

DockStaff = Annotated[Staff, Depends(StaffOnly(Role.WAREHOUSE))]
DockPost = Annotated[Staff, Depends(StaffForm(Role.WAREHOUSE))]
add_navigation(Role.WAREHOUSE, "/console/warehouse", "Receive parcels")
add_navigation(Role.WAREHOUSE, "/console/warehouse/legs", "Repair and vendor legs")

# Where a parcel can no longer be taken in under its RMA: the domain refuses it anyway,
# the page just does not offer the form.
CLOSED = {
    "requested",
    "pending_review",
    "rejected",
    "cancelled",
    "expired",
    "closed",
    "blind_unmatched",
}


def check_warehouse(principal: Principal, rma: Return) -> None:
    own = principal.warehouse_id
    if principal.role is Role.WAREHOUSE and rma.state.destination_warehouse not in (None, own):
        raise Problem(403, "forbidden", "this RMA is on its way to another warehouse")


def warehouse_of(principal: Principal, given: str) -> str | None:
    if principal.role is Role.WAREHOUSE and principal.warehouse_id is not None:
        return principal.warehouse_id
    return given or None


def rma_link(ref: str) -> str:
    return f"/console/warehouse/rmas/{quote(ref, safe='')}"


# ---------------------------------------------------------------- scanning
def return_of_receipt(request: Request, receipt_id: str) -> Return | None:
    """The RMA a receipt id was recorded under (the read model's timeline), or the blind
    return the parcel opened."""
    api = api_of(request)
    rows = api.rows(
        "SELECT return_id FROM rm_rma_timeline WHERE summary->>'receipt_id' = %(r)s"
        " ORDER BY position LIMIT 1",
        {"r": receipt_id},
    )
    try:
        if rows:
            return api.service.get_return(UUID(rows[0]["return_id"]))
        return api.service.get_return(blind_return_id_for(receipt_id))
    except NotFound:
        return None


@router.get("", response_class=HTMLResponse)
def scan_page(request: Request, staff: DockStaff, scan: str | None = None) -> Response:
    values = {"scan": (scan or "").strip()}
    if scan is None:
        return render(request, staff, "warehouse_scan.html", values=values)
    code = values["scan"]
    errors: dict[str, str] = {}
    if not code:
        errors["scan"] = "scan or type the RMA number or the receipt id"
    elif len(code) > 100:
        errors["scan"] = "at most 100 characters"
    else:
        found: Return | None
        try:
            found = load_return(api_of(request), code)
        except NotFound:
            found = return_of_receipt(request, code)
        if found is not None:
            return RedirectResponse(rma_link(found.state.rma_number or str(found.id)), 303)
        errors["scan"] = f"no RMA or receipt {code}: check the label, or ask customer service"
    return render(
        request,
        staff,
        "warehouse_scan.html",
        status_code=422 if not code else 404,
        errors=errors,
        values=values,
    )


# ---------------------------------------------------------------- one RMA at the dock
def rma_context(request: Request, staff: Staff, ref: str) -> dict[str, Any]:
    rma = load_return(api_of(request), ref)
    check_warehouse(staff.principal, rma)
    s = rma.state
    received = Counter[str]()
    for item in s.received_items:
        received[item.sku] += item.quantity
    inspected = Counter[int]()
    for checked in s.inspected_items:
        if checked.line_no is not None:
            inspected[checked.line_no] += checked.quantity
    lines: list[dict[str, Any]] = []
    for no, line in sorted(s.lines.items()):
        got = min(received[line.sku], line.quantity)
        received[line.sku] -= got
        lines.append(
            {
                "line_no": no,
                "sku": line.sku,
                "expected": line.quantity,
                "received": got,
                "inspected": inspected[no],
                "to_inspect": max(0, got - inspected[no]),
            }
        )
    pending = [r for r in s.receipts if r not in s.inspected_receipts]
    return {
        "rma": rma,
        "s": s,
        "lines": lines,
        # A blind parcel waits for customer service to match it to an order: nothing for
        # the dock to do on it until then (its inspection needs the matched lines).
        "blind": s.status.value == "blind_unmatched",
        "can_receive": s.status.value not in CLOSED
        and any(ln["received"] < ln["expected"] for ln in lines),
        "pending_receipt": pending[0] if pending and s.rma_number and lines else None,
        "conditions": CONDITIONS,
        "dispositions": DISPOSITIONS,
        "money": money,
        "legs": [(leg_id, leg) for leg_id, leg in s.legs.items()],
    }


def default_values(context: dict[str, Any], staff: Staff) -> dict[str, Any]:
    s = context["s"]
    values: dict[str, Any] = {
        "form_id": new_form_id(),
        "warehouse": staff.principal.warehouse_id or s.destination_warehouse or "",
    }
    values["receipt_id"] = "R" + values["form_id"][:10].upper()
    for line in context["lines"]:
        no = line["line_no"]
        values[f"qty-{no}"] = line["expected"] - line["received"]
        values[f"inspect-{no}"] = line["to_inspect"]
        values[f"condition-{no}"] = Condition.RESELLABLE.value
        values[f"disposition-{no}"] = Disposition.RESTOCK.value
    return values


@router.get("/rmas/{ref}", response_class=HTMLResponse)
def rma_page(request: Request, staff: DockStaff, ref: str) -> Response:
    try:
        context = rma_context(request, staff, ref)
    except (Problem, DomainError) as refused:
        return failure_page(request, staff, refused)
    return render(
        request, staff, "warehouse_rma.html", values=default_values(context, staff), **context
    )


@router.post("/rmas/{ref}/receive", response_class=HTMLResponse)
async def receive(request: Request, staff: DockPost, ref: str) -> Response:
    fields = await form_fields(request)

    def work() -> Response:
        try:
            context = rma_context(request, staff, ref)
            if already_done(request, staff, "receive_parcel", fields) is not None:
                return RedirectResponse(rma_link(context["s"].rma_number or ref), 303)
        except (Problem, DomainError) as refused:
            return failure_page(request, staff, refused)
        errors: dict[str, str] = {}
        warehouse = warehouse_of(staff.principal, fields.get("warehouse", ""))
        if warehouse is None:
            errors["warehouse"] = "enter the warehouse receiving the parcel"
        receipt_id = fields.get("receipt_id", "")
        if not receipt_id:
            errors["receipt_id"] = "scan or type the receipt id"
        elif len(receipt_id) > 100:
            errors["receipt_id"] = "at most 100 characters"
        items: list[ReceivedItem] = []
        for line in context["lines"]:
            no = line["line_no"]
            quantity = quantity_of(fields, f"qty-{no}", line["expected"], errors)
            serial = fields.get(f"serial-{no}") or None
            if quantity:
                items.append(ReceivedItem(sku=line["sku"], quantity=quantity, serial=serial))
        s = context["s"]
        return finish(
            request,
            staff,
            context,
            fields,
            errors,
            "receive_parcel",
            "nothing received: give a quantity for at least one item" if not items else None,
            lambda: ReceiveParcel(
                receipt_id=receipt_id,
                warehouse_id=warehouse or "",
                rma_number=s.rma_number,
                tracking_number=fields.get("tracking") or None,
                items=tuple(items),
            ),
        )

    return await run_in_threadpool(work)


@router.post("/rmas/{ref}/inspect", response_class=HTMLResponse)
async def inspect(request: Request, staff: DockPost, ref: str) -> Response:
    fields = await form_fields(request)

    def work() -> Response:
        try:
            context = rma_context(request, staff, ref)
            if already_done(request, staff, "inspect_items", fields) is not None:
                return RedirectResponse(rma_link(context["s"].rma_number or ref), 303)
        except (Problem, DomainError) as refused:
            return failure_page(request, staff, refused)
        errors: dict[str, str] = {}
        warehouse = warehouse_of(staff.principal, fields.get("warehouse", ""))
        if warehouse is None:
            errors["warehouse"] = "enter the warehouse where the items are inspected"
        items: list[InspectedItem] = []
        for line in context["lines"]:
            no = line["line_no"]
            quantity = quantity_of(fields, f"inspect-{no}", line["received"], errors)
            if not quantity:
                continue
            condition = choice_of(fields, f"condition-{no}", CONDITIONS, errors, "condition")
            disposition = choice_of(
                fields, f"disposition-{no}", DISPOSITIONS, errors, "disposition"
            )
            if errors:
                continue
            items.append(
                InspectedItem(
                    sku=line["sku"],
                    quantity=quantity,
                    serial=fields.get(f"serial-{no}") or None,
                    condition=Condition(condition),
                    disposition=Disposition(disposition),
                    line_no=no,
                    location_id=warehouse or "",
                )
            )
        s = context["s"]
        return finish(
            request,
            staff,
            context,
            fields,
            errors,
            "inspect_items",
            "nothing inspected: give a quantity for at least one item" if not items else None,
            lambda: InspectItems(
                rma_number=s.rma_number or ref,
                receipt_id=fields.get("receipt_id") or context["pending_receipt"],
                items=tuple(items),
            ),
        )

    return await run_in_threadpool(work)


def finish(
    request: Request,
    staff: Staff,
    context: dict[str, Any],
    fields: dict[str, str],
    errors: dict[str, str],
    name: str,
    problem: str | None,
    command: Any,
) -> Response:
    """Run the form's command unless the form is wrong; back to the RMA's page either way."""
    if not errors and problem is None:
        problem = refusal_of(request, staff, name, command(), fields)
        if problem is None:
            ref = context["s"].rma_number or str(context["rma"].id)
            return RedirectResponse(rma_link(ref), 303)
    values = {**default_values(context, staff), **fields}
    if problem is not None and not errors:
        values["form_id"] = new_form_id()  # the refused id must not answer the next try
    return render(
        request,
        staff,
        "warehouse_rma.html",
        status_code=422,
        errors=errors,
        values=values,
        problem=problem,
        failed=name,
        **context,
    )


# ---------------------------------------------------------------- repair and vendor legs
STEPS: dict[tuple[str, str], tuple[str, ...]] = {
    ("repair", "awaiting_dispatch"): ("repair-sent",),
    ("repair", "at_repair"): ("repair-completed",),
    ("repair", "repaired"): ("restocked",),
    ("return_to_vendor", "awaiting_dispatch"): ("vendor-shipped",),
    ("return_to_vendor", "at_vendor"): ("vendor-credited",),
    ("return_to_vendor", "returned_by_vendor"): ("restocked",),
}
STEP_BODIES: dict[str, type[BaseModel]] = {
    "repair-sent": routes_legs.RepairSentIn,
    "repair-completed": routes_legs.RepairCompletedIn,
    "restocked": routes_legs.RestockedIn,
    "vendor-shipped": routes_legs.VendorShippedIn,
    "vendor-credited": routes_legs.VendorCreditedIn,
}
OUTCOMES = [
    ("repaired", "Repaired"),
    ("replaced", "Replaced by a new unit"),
    ("unrepairable", "Unrepairable (scrap)"),
]


@router.get("/legs", response_class=HTMLResponse)
def legs_page(request: Request, staff: DockStaff, offset: int = 0) -> Response:
    page = routes_legs.legs(staff.principal, request, limit=None, offset=max(0, offset))
    return render(request, staff, "warehouse_legs.html", page=page)


def leg_context(request: Request, staff: Staff, ref: str, leg_id: str) -> dict[str, Any]:
    rma = load_return(api_of(request), ref)
    check_warehouse(staff.principal, rma)
    leg = rma.state.legs.get(leg_id)
    if leg is None:
        raise NotFound(f"RMA {ref} has no leg {leg_id}")
    steps = STEPS.get((leg.kind.value, leg.status), ())
    return {
        "rma": rma,
        "leg_id": leg_id,
        "leg": leg,
        "steps": steps,
        "outcomes": OUTCOMES,
        "money": money,
        "currency": rma.state.currency,
    }


@router.get("/legs/{ref}/{leg_id}", response_class=HTMLResponse)
def leg_page(request: Request, staff: DockStaff, ref: str, leg_id: str) -> Response:
    try:
        context = leg_context(request, staff, ref, leg_id)
    except (Problem, DomainError) as refused:
        return failure_page(request, staff, refused)
    values = {"form_id": new_form_id(), "outcome": "repaired"}
    return render(request, staff, "warehouse_leg.html", values=values, **context)


@router.post("/legs/{ref}/{leg_id}/{step}", response_class=HTMLResponse)
async def move_leg(request: Request, staff: DockPost, ref: str, leg_id: str, step: str) -> Response:
    fields = await form_fields(request)

    def work() -> Response:
        try:
            context = leg_context(request, staff, ref, leg_id)
        except (Problem, DomainError) as refused:
            return failure_page(request, staff, refused)
        body_type = STEP_BODIES.get(step)
        if body_type is None:
            return failure_page(request, staff, NotFound(f"no leg step {step!r}"))
        leg_path = f"/console/warehouse/legs/{quote(ref, safe='')}/{quote(leg_id, safe='')}"
        try:
            if already_done(request, staff, f"leg_{step}", fields) is not None:
                return RedirectResponse(leg_path, 303)
        except DomainError as refused:
            return failure_page(request, staff, refused)
        posted: dict[str, Any] = {
            k: v for k, v in fields.items() if k not in ("csrf", "form_id") and v != ""
        }
        if step == "vendor-credited":
            posted["amount"] = {"amount": posted.get("amount", ""), "currency": context["currency"]}
        errors: dict[str, str] = {}
        problem = None
        try:
            body = body_type.model_validate(posted)
        except ValidationError as invalid:
            for error in invalid.errors():
                name = str(error["loc"][0]) if error["loc"] else ""
                errors.setdefault(name or "step", plain(error["msg"]))
        if not errors:
            rma = context["rma"]
            values = body.model_dump()
            action = {
                "repair-sent": LegAction.SENT_TO_REPAIR,
                "restocked": LegAction.RESTOCKED,
                "vendor-shipped": LegAction.SHIPPED_TO_VENDOR,
                "vendor-credited": LegAction.CREDITED,
            }.get(step) or LegAction(values.pop("outcome"))
            if step == "vendor-credited":
                credit = body.amount  # type: ignore[attr-defined]
                values["amount"] = Money.of(credit.amount, credit.currency)
            problem = refusal_of(
                request,
                staff,
                f"leg_{step}",
                MoveLeg(
                    rma_number=rma.state.rma_number,
                    return_id=rma.id,
                    action=action,
                    leg_id=leg_id,
                    **values,
                ),
                fields,
            )
            if problem is None:
                return RedirectResponse(leg_path, 303)
        values_back = {**fields, "form_id": new_form_id() if problem else fields.get("form_id")}
        return render(
            request,
            staff,
            "warehouse_leg.html",
            status_code=422,
            errors=errors,
            values=values_back,
            problem=problem,
            **context,
        )

    return await run_in_threadpool(work)


def plain(message: str) -> str:
    """Pydantic's message as a person reads it ("Field required" → "required")."""
    return {"Field required": "required"}.get(message, message)
