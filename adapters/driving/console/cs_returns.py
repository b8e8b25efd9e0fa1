"""Customer service's RMA pages: the search (``GET /v1/returns``'s filters, its CSV), an
RMA's page (lines, money, documents, timeline with who did what) with the actions its state
allows (approve or refuse a held RMA, retry a failed refund or pay it as store credit), and
an RMA created for a caller. Every read and command goes through the same functions as the
JSON API, as the signed-in person."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from adapters.driven.refunds import RefundDispatches
from adapters.driving.api import routes_queues, routes_returns
from adapters.driving.api.auth import Role
from adapters.driving.api.context import api_of, visible_return
from adapters.driving.api.problems import Problem
from adapters.driving.api.views import return_view
from adapters.driving.console.cs_forms import (
    FormRefused,
    posted_version,
    run_form_command,
    timeline,
    words,
)
from adapters.driving.console.once import money, new_form_id
from adapters.driving.console.sessions import Staff
from adapters.driving.console.web import StaffForm, StaffOnly, add_navigation, form_fields, render
from domain.application import Ctx
from domain.commands import (
    ApproveReturn,
    CancelReturn,
    ChangeResolution,
    Command,
    RefuseReturn,
    RequestReturn,
    ResendRefund,
    RetryRefund,
)
from domain.errors import NotFound
from domain.returns import RequestedLine, Return, ReturnStatus
from domain.values import ReasonCode, RefundMethod, ReturnChannel, ReturnMethod

router = APIRouter(prefix="/console", include_in_schema=False)
Agent = Annotated[Staff, Depends(StaffOnly(Role.CUSTOMER_SERVICE))]
AgentForm = Annotated[Staff, Depends(StaffForm(Role.CUSTOMER_SERVICE))]
add_navigation(Role.CUSTOMER_SERVICE, "/console/returns", "Find returns")
add_navigation(Role.CUSTOMER_SERVICE, "/console/returns/new", "New return")

STATUSES = [("", "any status")] + [(s.value, words(s.value)) for s in ReturnStatus]
REASONS = [("", "choose a reason")] + [(r.value, words(r.value)) for r in ReasonCode]
METHODS = [(m.value, words(m.value)) for m in ReturnMethod]
REFUND_METHODS = [(m.value, words(m.value)) for m in RefundMethod]
TEXT_FILTERS = ("customer_id", "email", "order_number", "sku", "serial", "rma_number")
DATE_FILTERS = ("created_from", "created_to", "updated_from", "updated_to")
PROBLEM_FIELDS = (
    ("created_from is after", "created_to"),
    ("updated_from is after", "updated_to"),
    ("email", "email"),
    ("unknown status", "status"),
)
# What a finished action says on the RMA's page (the redirect names one of these keys, so
# nothing posted is ever echoed back from a URL).
DONE = {
    "approved": "Approved: the RMA is authorized and the customer is told.",
    "refused": "Refused: the customer is told why.",
    "retried": "The refund is sent to the payment provider again.",
    "credited": "The refund is paid as store credit.",
    "resent": "The pending refund is sent again under the same refund id.",
    "created": "The RMA is created.",
    "cancelled": "Cancelled: the customer is told.",
    "resolved": "The customer will be paid back the new way.",
    "matched": "The parcel is matched to its order.",
}


async def in_thread(function: Any, *args: Any, **kwargs: Any) -> Response:
    # Commands and reads are blocking (psycopg, the event store): off the event loop.
    response: Response = await run_in_threadpool(function, *args, **kwargs)
    return response


def _not_found(request: Request, staff: Staff, what: str) -> HTMLResponse:
    return render(request, staff, "error.html", status_code=404, title="Not found", message=what)


# ---------------------------------------------------------------- search
def _period_bound(value: str, end: bool) -> datetime:
    day = date.fromisoformat(value)
    return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)


def _search(request: Request, staff: Staff, fmt: str) -> tuple[Any, dict[str, str], str]:
    """(the API's answer or None, errors by field, a problem for no field)."""
    given = dict(request.query_params)
    errors: dict[str, str] = {}
    args: dict[str, Any] = {}
    for name in TEXT_FILTERS:
        value = given.get(name, "").strip()
        if value:
            args[name] = value
    for name in DATE_FILTERS:
        value = given.get(name, "").strip()
        if value:
            try:
                args[name] = _period_bound(value, end=name.endswith("_to"))
            except ValueError:
                errors[name] = "give a date such as 2026-11-21"
    if given.get("status"):
        args["status"] = [given["status"]]
    offset, limit = given.get("offset", "0"), given.get("limit", "")
    if errors:
        return None, errors, ""
    try:
        found = routes_queues.search_returns(
            staff.principal,
            request,
            format=fmt,  # type: ignore[arg-type]
            offset=int(offset) if offset.isdigit() else 0,
            limit=int(limit) if limit.isdigit() and len(limit) < 10 else None,
            **args,
        )
    except Problem as problem:
        # The API's refusals of a filter, beside the field they concern.
        for starts, field in PROBLEM_FIELDS:
            if problem.detail.startswith(starts):
                return None, {field: problem.detail}, ""
        return None, {}, problem.detail
    return found, {}, ""


@router.get("/returns", response_class=HTMLResponse)
def search_page(request: Request, staff: Agent) -> Response:
    found, errors, problem = _search(request, staff, "json")
    values = {k: v for k, v in request.query_params.items() if k != "offset"}
    asked = urlencode(values)
    status_code = 422 if errors or problem else 200
    return render(
        request,
        staff,
        "cs_search.html",
        status_code=status_code,
        errors=errors,
        values=values,
        found=found,
        problem=problem,
        statuses=STATUSES,
        csv_link="/console/returns.csv" + (f"?{asked}" if asked else ""),
        money=money,
        words=words,
    )


@router.get("/returns.csv")
def search_csv(request: Request, staff: Agent) -> Response:
    """The API's CSV of the same search (the browser holds a session, not an API key)."""
    found, errors, problem = _search(request, staff, "csv")
    if found is None:
        message = problem or "; ".join(f"{k}: {v}" for k, v in errors.items())
        return render(
            request, staff, "error.html", status_code=422, title="Cannot export", message=message
        )
    response: Response = found
    return response


# ---------------------------------------------------------------- an RMA for a caller
def _order(request: Request, number: str) -> dict[str, Any] | None:
    try:
        return api_of(request).service.order_view(number)
    except NotFound:
        return None


def _new_page(
    request: Request,
    staff: Staff,
    *,
    order: dict[str, Any] | None,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    problem: str = "",
    refused_ref: str = "",
) -> HTMLResponse:
    return render(
        request,
        staff,
        "cs_new.html",
        status_code=status_code,
        errors=errors,
        values=values,
        order=order,
        reasons=REASONS,
        methods=METHODS,
        refund_methods=REFUND_METHODS,
        form_id=new_form_id(),
        problem=problem,
        refused_ref=refused_ref,
        money=money,
    )


@router.get("/returns/new", response_class=HTMLResponse)
def new_return_page(request: Request, staff: Agent, order_number: str = "") -> Response:
    number = order_number.strip()
    values = {"order_number": number}
    if not number:
        return _new_page(request, staff, order=None, values=values)
    order = _order(request, number)
    if order is None:
        return _new_page(
            request,
            staff,
            order=None,
            status_code=404,
            values=values,
            errors={"order_number": f"no order {number}: check the number with the caller"},
        )
    return _new_page(request, staff, order=order, values=values)


def _requested_lines(
    order: dict[str, Any], fields: dict[str, str]
) -> tuple[list[RequestedLine], dict[str, str]]:
    lines: list[RequestedLine] = []
    errors: dict[str, str] = {}
    for line in order["lines"]:
        no = line["line_no"]
        qty_field, reason_field = f"quantity-{no}", f"reason-{no}"
        raw = fields.get(qty_field, "") or "0"
        if not raw.isdigit():
            errors[qty_field] = "a whole number of items, 0 to leave the line out"
            continue
        quantity = int(raw)
        if quantity == 0:
            continue
        if quantity > line["returnable_quantity"]:
            errors[qty_field] = f"at most {line['returnable_quantity']} can still be returned"
            continue
        reason = fields.get(reason_field, "")
        if reason not in {r.value for r in ReasonCode}:
            errors[reason_field] = "choose why the item comes back"
            continue
        lines.append(RequestedLine(no, quantity, ReasonCode(reason)))
    return lines, errors


def _create(request: Request, staff: Staff, fields: dict[str, str]) -> Response:
    api = api_of(request)
    number = fields.get("order_number", "")
    order = _order(request, number) if number else None
    if order is None:
        return _new_page(
            request,
            staff,
            order=None,
            status_code=422 if not number else 404,
            values=fields,
            errors={"order_number": "find the order first" if not number else f"no order {number}"},
        )
    lines, errors = _requested_lines(order, fields)
    if not lines and not errors:
        errors["lines"] = "give a quantity for at least one line"
    method, refund = fields.get("method", ""), fields.get("refund_method", "")
    if method not in {m.value for m in ReturnMethod}:
        errors["method"] = "choose how the parcel comes back"
    if refund not in {m.value for m in RefundMethod}:
        errors["refund_method"] = "choose how the customer is paid back"
    if len(fields.get("comment", "")) > 2000:
        errors["comment"] = "keep the note under 2000 characters"
    if errors:
        return _new_page(request, staff, order=order, status_code=422, errors=errors, values=fields)
    command = RequestReturn(
        order_number=number,
        lines=tuple(lines),
        channel=ReturnChannel.CUSTOMER_SERVICE,
        method=ReturnMethod(method),
        refund_method=RefundMethod(refund),
        comment=fields.get("comment", ""),
    )
    try:
        outcome = run_form_command(api, staff, request, fields, "request_return", command)
    except FormRefused as refused:
        return _new_page(
            request,
            staff,
            order=order,
            status_code=refused.status,
            values=fields,
            problem=refused.message,
        )
    if outcome.status == "rejected":
        # The refusal is recorded as an RMA; each refused line says why beside it.
        rma = api.service.get_return(outcome.aggregate_id)
        line_errors = {
            f"quantity-{d.line_no}": f"refused: {words(d.code)}"
            for d in rma.state.decisions.values()
            if not d.accepted
        }
        return _new_page(
            request,
            staff,
            order=order,
            status_code=422,
            values=fields,
            errors=line_errors,
            problem=outcome.message or f"refused by the policy: {words(outcome.code)}",
            refused_ref=str(outcome.aggregate_id),
        )
    ref = outcome.rma_number or str(outcome.aggregate_id)
    return RedirectResponse(f"/console/returns/{ref}?done=created", status_code=303)


@router.post("/returns/new")
async def create_return(request: Request, staff: AgentForm) -> Response:
    fields = await form_fields(request)
    return await in_thread(_create, request, staff, fields)


# ---------------------------------------------------------------- an RMA's page
def _rma_page(
    request: Request,
    staff: Staff,
    rma: Return,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    problem: str = "",
) -> HTMLResponse:
    api = api_of(request)
    done = DONE.get(request.query_params.get("done", ""), "")
    return render(
        request,
        staff,
        "cs_rma.html",
        status_code=status_code,
        errors=errors,
        values=values,
        rma=return_view(rma, legs=True),
        ref=rma.state.rma_number or str(rma.id),
        blind=rma.state.blind_receipt_id is not None,
        rejection_reason=rma.state.rejection_reason,
        events=timeline(api, rma),
        form_id=new_form_id(),
        done=done,
        problem=problem,
        money=money,
        words=words,
    )


@router.get("/returns/{ref}", response_class=HTMLResponse)
def rma_page(request: Request, staff: Agent, ref: str) -> Response:
    api = api_of(request)
    try:
        rma = visible_return(api, staff.principal, request, ref)
    except NotFound:
        return _not_found(request, staff, f"There is no RMA {ref!r}.")
    return _rma_page(request, staff, rma)


@router.get("/returns/{ref}/note")
def rma_note(request: Request, staff: Agent, ref: str, format: str = "html") -> Response:
    """The API's return note (HTML or PDF), for the session's person."""
    try:
        note = routes_returns.return_note(
            staff.principal,
            ref,
            request,
            "pdf" if format == "pdf" else "html",
        )
    except NotFound:
        return _not_found(request, staff, f"There is no RMA {ref!r}.")
    except Problem as problem:
        return render(
            request, staff, "error.html", status_code=409, title="No note", message=problem.detail
        )
    # The note is a standalone printable sheet with its own inline styles and QR image: it
    # runs no script, so it may keep its styles where the console's pages may not.
    note.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
    )
    return note


def _act(
    request: Request,
    staff: Staff,
    ref: str,
    fields: dict[str, str],
    name: str,
    build: Any,
    done: str,
    *,
    then: Any = None,
    field: str | None = None,
) -> Response:
    api = api_of(request)
    try:
        rma = visible_return(api, staff.principal, request, ref)
    except NotFound:
        return _not_found(request, staff, f"There is no RMA {ref!r}.")
    try:
        version = posted_version(fields)
        command = build(rma)
        outcome = run_form_command(
            api, staff, request, fields, name, command, rma=rma, version=version, then=then
        )
    except FormRefused as refused:
        fresh = visible_return(api, staff.principal, request, ref)
        errors = {field: refused.message} if field and refused.field == field else {}
        return _rma_page(
            request,
            staff,
            fresh,
            status_code=refused.status,
            errors=errors,
            values=fields,
            problem="" if errors else refused.message,
        )
    target = done(outcome) if callable(done) else done
    return RedirectResponse(f"/console/returns/{ref}?done={target}", status_code=303)


@router.post("/returns/{ref}/approve")
async def approve(request: Request, staff: AgentForm, ref: str) -> Response:
    fields = await form_fields(request)
    return await in_thread(
        _act,
        request,
        staff,
        ref,
        fields,
        "approve_return",
        lambda r: ApproveReturn(r.id),
        "approved",
    )


def _reason_error(reason: str, required: str) -> str:
    if not reason and required:
        return required
    if len(reason) > 500:
        return "keep the reason under 500 characters"
    return ""


def _field_error(
    request: Request, staff: Staff, ref: str, fields: dict[str, str], field: str, error: str
) -> Response:
    try:
        rma = visible_return(api_of(request), staff.principal, request, ref)
    except NotFound:
        return _not_found(request, staff, f"There is no RMA {ref!r}.")
    return _rma_page(request, staff, rma, status_code=422, errors={field: error}, values=fields)


@router.post("/returns/{ref}/refuse")
async def refuse(request: Request, staff: AgentForm, ref: str) -> Response:
    fields = await form_fields(request)
    reason = fields.get("reason", "")
    error = _reason_error(reason, "say why the RMA is refused: the customer is told")
    if error:
        return await in_thread(_field_error, request, staff, ref, fields, "reason", error)
    return await in_thread(
        _act,
        request,
        staff,
        ref,
        fields,
        "refuse_return",
        lambda r: RefuseReturn(r.id, reason),
        "refused",
    )


@router.post("/returns/{ref}/cancel")
async def cancel(request: Request, staff: AgentForm, ref: str) -> Response:
    """As ``POST /v1/returns/{ref}/cancel``: the caller no longer sends the parcel."""
    fields = await form_fields(request)
    reason = fields.get("cancel_reason", "")
    error = _reason_error(reason, "say why the RMA is cancelled: the customer is told")
    if error:
        return await in_thread(_field_error, request, staff, ref, fields, "cancel_reason", error)
    return await in_thread(
        _act,
        request,
        staff,
        ref,
        fields,
        "cancel_return",
        lambda r: CancelReturn(r.id, reason),
        "cancelled",
    )


@router.post("/returns/{ref}/resolution")
async def change_resolution(request: Request, staff: AgentForm, ref: str) -> Response:
    """As ``POST /v1/returns/{ref}/resolution``: paid back another way, until the first
    payment (an exchange needs a replacement item per line: the API takes it)."""
    fields = await form_fields(request)
    method = fields.get("refund_method", "")
    reason = fields.get("resolution_reason", "")
    if method not in (RefundMethod.ORIGINAL_PAYMENT, RefundMethod.STORE_CREDIT):
        error, field = "choose how the customer is paid back", "refund_method"
    else:
        error, field = _reason_error(reason, ""), "resolution_reason"
    if error:
        return await in_thread(_field_error, request, staff, ref, fields, field, error)
    return await in_thread(
        _act,
        request,
        staff,
        ref,
        fields,
        "change_resolution",
        lambda r: ChangeResolution(r.id, RefundMethod(method), reason),
        "resolved",
    )


@router.post("/returns/{ref}/refund-retry")
async def retry_refund(request: Request, staff: AgentForm, ref: str) -> Response:
    """As ``POST /v1/returns/{ref}/refund-retry``: a failed refund paid again or as store
    credit; a refund still pending sent again under its id."""
    fields = await form_fields(request)
    as_credit = fields.get("as_store_credit") == "true"
    service = api_of(request).service

    def build(rma: Return) -> Command:
        if rma.state.status is ReturnStatus.REFUND_PENDING:
            return ResendRefund(rma.id, as_credit)
        return RetryRefund(rma.id, as_credit)

    def then(ctx: Ctx, command: Command) -> None:
        if isinstance(command, ResendRefund):
            RefundDispatches(service).request_resend_of_return(
                command.return_id, by=ctx.cause.actor
            )

    def done(outcome: Any) -> str:
        return "credited" if as_credit else "retried"

    return await in_thread(
        _act, request, staff, ref, fields, "retry_refund", build, done, then=then
    )
