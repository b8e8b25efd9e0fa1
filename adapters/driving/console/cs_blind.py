"""Blind parcels for customer service: a parcel that came with no known RMA, where it may
belong (``GET /v1/blind-returns/{id}``'s suggestions, one "match" button per order), and a
form to match it to an order by hand. The match is the API's ``MatchBlindReturn``, at the
version the page showed, once per form."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from adapters.driving.api.auth import Role
from adapters.driving.api.context import api_of
from adapters.driving.api.routes_blind import blind_view
from adapters.driving.console.cs_forms import (
    FormRefused,
    posted_version,
    run_form_command,
    words,
)
from adapters.driving.console.cs_returns import REASONS, in_thread
from adapters.driving.console.once import new_form_id
from adapters.driving.console.sessions import Staff
from adapters.driving.console.web import StaffForm, StaffOnly, form_fields, render
from domain.commands import MatchBlindReturn
from domain.errors import NotFound
from domain.returns import RequestedLine, Return, ReturnStatus
from domain.values import ReasonCode

router = APIRouter(prefix="/console", include_in_schema=False)
Agent = Annotated[Staff, Depends(StaffOnly(Role.CUSTOMER_SERVICE))]
AgentForm = Annotated[Staff, Depends(StaffForm(Role.CUSTOMER_SERVICE))]

# How a suggestion found its order, as the match records it (the API's three ways).
MATCHED_BY = {"serial": "serial", "customer": "customer"}
MAX_LINES = 50


def grouped(suggestions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API's suggestions (one per order line) as one entry per order, best first."""
    orders: dict[str, dict[str, Any]] = {}
    for s in suggestions:
        entry = orders.setdefault(
            s["order_number"],
            {
                "order_number": s["order_number"],
                "by": s["by"],
                "matched_by": MATCHED_BY.get(s["by"], "order_id"),
                "whole": s["whole"],
                "customer_id": s["customer_id"],
                "delivered_at": s["delivered_at"],
                "lines": [],
            },
        )
        entry["lines"].append({k: s[k] for k in ("line_no", "sku", "quantity", "serial")})
    return list(orders.values())


def _blind(request: Request, return_id: str) -> Return | None:
    try:
        rma = api_of(request).service.get_return(UUID(return_id))
    except (ValueError, NotFound):
        return None
    return rma if rma.state.blind_receipt_id is not None else None


def _page(
    request: Request,
    staff: Staff,
    rma: Return,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    problem: str = "",
) -> HTMLResponse:
    view = blind_view(api_of(request).service, rma, wide=True)
    return render(
        request,
        staff,
        "cs_blind.html",
        status_code=status_code,
        errors=errors,
        values=values,
        parcel=view,
        waiting=rma.state.status is ReturnStatus.BLIND_UNMATCHED,
        suggestions=grouped(view["suggested_matches"]),
        reasons=REASONS,
        form_id=new_form_id(),
        problem=problem,
        words=words,
    )


def _missing(request: Request, staff: Staff, return_id: str) -> HTMLResponse:
    return render(
        request,
        staff,
        "error.html",
        status_code=404,
        title="Not found",
        message=f"There is no blind parcel {return_id!r}.",
    )


@router.get("/blind/{return_id}", response_class=HTMLResponse)
def blind_page(request: Request, staff: Agent, return_id: str) -> Response:
    rma = _blind(request, return_id)
    if rma is None:
        return _missing(request, staff, return_id)
    return _page(request, staff, rma)


def _lines(fields: dict[str, str]) -> tuple[list[RequestedLine], dict[str, str]]:
    """Lines posted as ``line_no-N``, ``quantity-N``, ``serial-N``; one ``reason``."""
    errors: dict[str, str] = {}
    reason = fields.get("reason", "")
    if reason not in {r.value for r in ReasonCode}:
        errors["reason"] = "choose why the customer sent it back (other if unknown)"
    lines = []
    for n in range(MAX_LINES):
        if f"line_no-{n}" not in fields:
            break
        line_no, quantity = fields[f"line_no-{n}"], fields.get(f"quantity-{n}", "")
        if not line_no.isdigit() or int(line_no) < 1:
            errors[f"line_no-{n}"] = "the order's line number, such as 1"
        if not quantity.isdigit() or int(quantity) < 1:
            errors[f"quantity-{n}"] = "how many items of that line, 1 or more"
        if errors or reason not in {r.value for r in ReasonCode}:
            continue
        serial = fields.get(f"serial-{n}") or None
        lines.append(RequestedLine(int(line_no), int(quantity), ReasonCode(reason), serial))
    return lines, errors


def _match(request: Request, staff: Staff, return_id: str, fields: dict[str, str]) -> Response:
    rma = _blind(request, return_id)
    if rma is None:
        return _missing(request, staff, return_id)
    order_number = fields.get("order_number", "")
    lines, errors = _lines(fields)
    if not order_number:
        errors["order_number"] = "the order the parcel belongs to"
    if not lines and not errors:
        errors["line_no-0"] = "at least one line of the order"
    matched_by = fields.get("matched_by", "order_id")
    if matched_by not in ("serial", "order_id", "customer"):
        matched_by = "order_id"
    if errors:
        return _page(request, staff, rma, status_code=422, errors=errors, values=fields)
    command = MatchBlindReturn(
        return_id=rma.id, order_number=order_number, lines=tuple(lines), matched_by=matched_by
    )
    try:
        version = posted_version(fields)
        run_form_command(
            api_of(request),
            staff,
            request,
            fields,
            "match_blind_return",
            command,
            rma=rma,
            version=version,
        )
    except FormRefused as refused:
        fresh = _blind(request, return_id) or rma
        return _page(
            request,
            staff,
            fresh,
            status_code=refused.status,
            values=fields,
            problem=refused.message,
        )
    return RedirectResponse(f"/console/returns/{rma.id}?done=matched", status_code=303)


@router.post("/blind/{return_id}/match")
async def match(request: Request, staff: AgentForm, return_id: str) -> Response:
    fields = await form_fields(request)
    return await in_thread(_match, request, staff, return_id, fields)
