"""The store tablet: find the original order (order id, customer, e-mail, serial or RMA
number), see its type, lines and the customer's other orders and returns, record a counter
return, receive a store-method RMA, and print the receipt.

It runs the API's own functions with the signed-in principal: the order finder of
``/v1/order-search``, the counter commands of ``/v1/stores/{s}/...`` and the receipt
document those routes render. A store key works at its own store's counter only; an admin
says which counter. RMAs bound to another store (returned or received there) are refused,
as ``GET /v1/returns/{rma}`` refuses them to a store key; RMAs bound to no store (web and
portal RMAs, which any counter may take) are shown.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from adapters.driving.api import documents, routes_orders, routes_stores
from adapters.driving.api.auth import Principal, Role
from adapters.driving.api.context import api_of, load_return
from adapters.driving.api.problems import Problem
from adapters.driving.api.views import return_view
from adapters.driving.console.floor import (
    CONDITIONS,
    DISPOSITIONS,
    REASONS,
    already_done,
    choice_of,
    failure_page,
    quantity_of,
    refusal_of,
)
from adapters.driving.console.once import money, new_form_id
from adapters.driving.console.sessions import Staff
from adapters.driving.console.web import StaffForm, StaffOnly, add_navigation, form_fields, render
from domain.commands import ReceiveRmaAtCounter, RecordInStoreReturn
from domain.errors import DomainError, NotFound
from domain.handlers.counter import still_to_bring
from domain.returns import CounterCheck, RequestedLine, Return, store_return_id_for
from domain.values import Condition, Disposition, ReasonCode, RefundMethod

router = APIRouter(prefix="/console/store", include_in_schema=False)

StoreStaff = Annotated[Staff, Depends(StaffOnly(Role.STORE))]
StorePost = Annotated[Staff, Depends(StaffForm(Role.STORE))]
add_navigation(Role.STORE, "/console/store", "Store counter")

ORDER_TYPES = {
    "web": "Web order",
    "click_and_collect": "Click and collect",
    "e_reservation": "E-reservation",
    "store": "Store sale",
}
FIND_BY = [
    ("order_number", "Order id"),
    ("email", "E-mail"),
    ("customer_id", "Customer id"),
    ("serial", "Serial number"),
    ("rma_number", "RMA number"),
]
REFUND_METHODS = [
    (RefundMethod.ORIGINAL_PAYMENT.value, "Original payment"),
    (RefundMethod.STORE_CREDIT.value, "Store credit"),
]
RMA_REFUND_METHODS = [("", "As the RMA was authorized"), *REFUND_METHODS]
OTHER_ORDERS = 20
PRINTED_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none';"
    " base-uri 'none'; form-action 'none'"
)


def counter_of(principal: Principal, given: str | None) -> str | None:
    """The store whose counter this is: a store key's own (another is refused), or the one
    an admin names."""
    if principal.role is Role.STORE:
        principal.check_store(given or principal.store_id)
        return principal.store_id
    return given or None


def check_rma_visible(principal: Principal, rma: Return) -> None:
    if principal.role is Role.STORE and rma.state.store_id not in (None, principal.store_id):
        raise Problem(403, "forbidden", "this RMA belongs to another store")


# ---------------------------------------------------------------- finding the order
@router.get("", response_class=HTMLResponse)
def find_page(
    request: Request,
    staff: StoreStaff,
    by: str = "order_number",
    q: str = "",
    store: str = "",
) -> Response:
    values = {"by": by, "q": q.strip(), "store": store.strip()}
    context: dict[str, Any] = {"find_by": FIND_BY, "orders": None}
    if "q" not in request.query_params:
        return render(request, staff, "store_find.html", values=values, **context)
    errors: dict[str, str] = {}
    query = values["q"]
    if by not in dict(FIND_BY):
        errors["by"] = "choose what you are searching by"
    elif not query:
        errors["q"] = f"enter the {dict(FIND_BY)[by].lower()}"
    elif len(query) > 200:
        errors["q"] = "at most 200 characters"
    if errors:
        return render(
            request,
            staff,
            "store_find.html",
            status_code=422,
            errors=errors,
            values=values,
            **context,
        )
    if by == "rma_number":
        target = f"/console/store/rmas/{quote(query, safe='')}"
        if values["store"]:
            target += "?" + urlencode({"store": values["store"]})
        return RedirectResponse(target, status_code=303)
    found = routes_orders.find_orders(staff.principal, request, limit=None, offset=0, **{by: query})
    orders = found["items"]
    if len(orders) == 1:
        return RedirectResponse(order_link(orders[0]["order_number"], values["store"]), 303)
    if not orders:
        errors["q"] = f"no order found with this {dict(FIND_BY)[by].lower()}"
        return render(
            request,
            staff,
            "store_find.html",
            status_code=404,
            errors=errors,
            values=values,
            **context,
        )
    return render(
        request,
        staff,
        "store_find.html",
        values=values,
        **{**context, "orders": orders},
        order_types=ORDER_TYPES,
        store=values["store"],
        order_link=order_link,
    )


def order_link(order_number: str, store: str = "") -> str:
    link = f"/console/store/orders/{quote(order_number, safe='')}"
    return link + ("?" + urlencode({"store": store}) if store else "")


# ---------------------------------------------------------------- the order page
def order_page_context(request: Request, staff: Staff, order_number: str) -> dict[str, Any]:
    api = api_of(request)
    view = api.service.order_view(order_number)
    order = api.service.get_order(order_number)
    others: list[dict[str, Any]] = []
    if view["customer_id"]:
        for order_id in api.service.lookups.orders_of_customer(view["customer_id"], OTHER_ORDERS):
            number = api.service.order_number_of(order_id)
            if number and number != order_number:
                try:
                    others.append(api.service.order_view(number))
                except NotFound:
                    continue
    returns: list[dict[str, Any]] = []
    for shown in (view, *others):
        for return_id in shown["returns"]:
            try:
                rma = api.service.get_return(UUID(return_id))
            except NotFound:
                continue
            if staff.principal.role is Role.STORE and rma.state.store_id not in (
                None,
                staff.principal.store_id,
            ):
                continue  # another store's: not this key's to see
            returns.append(
                {
                    "rma_number": rma.state.rma_number,
                    "order_number": rma.state.order_number,
                    "status": rma.state.status.value,
                    "store_id": rma.state.store_id,
                    "requested_at": rma.state.requested_at,
                    "store_method": rma.state.method is not None
                    and rma.state.method.value == "store",
                }
            )
    return {
        "order": view,
        "order_type": ORDER_TYPES.get(view["channel"], view["channel"]),
        "order_store": order.state.store_id,
        "others": others,
        "returns": returns,
        "reasons": REASONS,
        "conditions": CONDITIONS,
        "dispositions": DISPOSITIONS,
        "refund_methods": REFUND_METHODS,
        "order_types": ORDER_TYPES,
        "money": money,
        "order_link": order_link,
    }


@router.get("/orders/{order_number}", response_class=HTMLResponse)
def order_page(request: Request, staff: StoreStaff, order_number: str, store: str = "") -> Response:
    try:
        counter_of(staff.principal, store or None)
        context = order_page_context(request, staff, order_number)
    except (Problem, DomainError) as refused:
        return failure_page(request, staff, refused)
    values: dict[str, Any] = {"form_id": new_form_id(), "store": store}
    for line in context["order"]["lines"]:
        values[f"condition-{line['line_no']}"] = Condition.RESELLABLE.value
        values[f"disposition-{line['line_no']}"] = Disposition.RESTOCK.value
    return render(request, staff, "store_order.html", values=values, **context)


@router.post("/orders/{order_number}/return", response_class=HTMLResponse)
async def record_return(request: Request, staff: StorePost, order_number: str) -> Response:
    fields = await form_fields(request)
    return await _record_return(request, staff, order_number, fields)


async def _record_return(
    request: Request, staff: Staff, order_number: str, fields: dict[str, str]
) -> Response:
    def work() -> Response:
        try:
            store_id = counter_of(staff.principal, fields.get("store") or None)
            if already_done(request, staff, "record_in_store_return", fields) is not None:
                return RedirectResponse(receipt_link(store_id or "", receipt_no_of(fields)), 303)
            context = order_page_context(request, staff, order_number)
        except (Problem, DomainError) as refused:
            return failure_page(request, staff, refused)
        errors: dict[str, str] = {}
        if store_id is None:
            errors["store"] = "enter the store whose counter this is"
        whole = fields.get("whole") == "1"
        lines: list[RequestedLine] = []
        checks: list[CounterCheck] = []
        for line in context["order"]["lines"]:
            no = line["line_no"]
            most = line["returnable_quantity"]
            quantity = most if whole else quantity_of(fields, f"qty-{no}", most, errors)
            if quantity == 0:
                continue
            reason = choice_of(fields, f"reason-{no}", REASONS, errors, "reason")
            condition = choice_of(fields, f"condition-{no}", CONDITIONS, errors, "condition")
            disposition = choice_of(
                fields, f"disposition-{no}", DISPOSITIONS, errors, "disposition"
            )
            if errors:
                continue
            lines.append(RequestedLine(no, quantity, ReasonCode(reason)))
            checks.append(
                CounterCheck(no, quantity, Condition(condition), Disposition(disposition))
            )
        refund = choice_of(fields, "refund_method", REFUND_METHODS, errors, "refund method")
        problem = None
        if not errors and not lines:
            problem = "nothing to return: give a quantity for at least one item"
        if errors or problem:
            return render(
                request,
                staff,
                "store_order.html",
                status_code=422,
                errors=errors,
                values=fields,
                problem=problem,
                **context,
            )
        receipt_no = receipt_no_of(fields)
        problem = refusal_of(
            request,
            staff,
            "record_in_store_return",
            RecordInStoreReturn(
                store_return_id=receipt_no,
                store_id=store_id or "",
                staff_id=staff.principal.name,
                order_number=order_number,
                lines=tuple(lines),
                checks=tuple(checks),
                refund_method=RefundMethod(refund),
            ),
            fields,
        )
        if problem:
            # A new form id: the refused one must not answer the corrected form.
            return render(
                request,
                staff,
                "store_order.html",
                status_code=422,
                values={**fields, "form_id": new_form_id()},
                problem=problem,
                **context,
            )
        return RedirectResponse(receipt_link(store_id or "", receipt_no), status_code=303)

    return await run_in_threadpool(work)


def receipt_no_of(fields: dict[str, str]) -> str:
    """The store's receipt number of a counter form: from its one-time id, so a second
    submit names the same receipt (and the same return)."""
    return "T" + fields.get("form_id", "")[:10].upper()


def receipt_link(store_id: str, receipt_no: str, rma_number: str | None = None) -> str:
    link = f"/console/store/receipts/{quote(store_id, safe='')}/{quote(receipt_no, safe='')}"
    return link + ("?" + urlencode({"rma": rma_number}) if rma_number else "")


# ---------------------------------------------------------------- store-method RMAs
def rma_page_context(request: Request, staff: Staff, rma_number: str, store: str) -> dict[str, Any]:
    api = api_of(request)
    store_id = counter_of(staff.principal, store or None)
    rma = load_return(api, rma_number)
    check_rma_visible(staff.principal, rma)
    at_counter = routes_stores.rma_at_counter(
        staff.principal, store_id or "", rma.state.rma_number or rma_number, request
    )
    names = {no: line.sku for no, line in rma.state.lines.items()}
    if at_counter["order"]:
        for ordered in at_counter["order"]["lines"]:
            names[ordered["line_no"]] = ordered["name"] or ordered["sku"]
    return {
        "rma": return_view(rma),
        "at_counter": at_counter,
        "left": still_to_bring(rma),
        "names": names,
        "conditions": CONDITIONS,
        "dispositions": DISPOSITIONS,
        "refund_methods": RMA_REFUND_METHODS,
        "order_link": order_link,
        "store": store,
    }


@router.get("/rmas/{rma_number}", response_class=HTMLResponse)
def rma_page(request: Request, staff: StoreStaff, rma_number: str, store: str = "") -> Response:
    try:
        context = rma_page_context(request, staff, rma_number, store)
    except (Problem, DomainError) as refused:
        return failure_page(request, staff, refused)
    values: dict[str, Any] = {"form_id": new_form_id(), "store": store, "refund_method": ""}
    for line in context["at_counter"]["still_to_bring"]:
        values[f"qty-{line['line_no']}"] = line["quantity"]
        values[f"condition-{line['line_no']}"] = Condition.RESELLABLE.value
        values[f"disposition-{line['line_no']}"] = Disposition.RESTOCK.value
    return render(request, staff, "store_rma.html", values=values, **context)


@router.post("/rmas/{rma_number}/receive", response_class=HTMLResponse)
async def receive_rma(request: Request, staff: StorePost, rma_number: str) -> Response:
    fields = await form_fields(request)

    def work() -> Response:
        try:
            store_id = counter_of(staff.principal, fields.get("store") or None)
            earlier = already_done(request, staff, "receive_rma_at_counter", fields)
            if earlier is not None:
                link = receipt_link(store_id or "", receipt_no_of(fields), earlier.rma_number)
                return RedirectResponse(link, 303)
            context = rma_page_context(request, staff, rma_number, fields.get("store", ""))
        except (Problem, DomainError) as refused:
            return failure_page(request, staff, refused)
        errors: dict[str, str] = {}
        if store_id is None:
            errors["store"] = "enter the store whose counter this is"
        checks: list[CounterCheck] = []
        for line in context["at_counter"]["still_to_bring"]:
            no = line["line_no"]
            quantity = quantity_of(fields, f"qty-{no}", line["quantity"], errors)
            if quantity == 0:
                continue
            condition = choice_of(fields, f"condition-{no}", CONDITIONS, errors, "condition")
            disposition = choice_of(
                fields, f"disposition-{no}", DISPOSITIONS, errors, "disposition"
            )
            if not errors:
                checks.append(
                    CounterCheck(no, quantity, Condition(condition), Disposition(disposition))
                )
        refund = choice_of(fields, "refund_method", RMA_REFUND_METHODS, errors, "refund method")
        problem = None
        if not errors and not checks:
            problem = "nothing received: give a quantity for at least one item"
        if errors or problem:
            return render(
                request,
                staff,
                "store_rma.html",
                status_code=422,
                errors=errors,
                values=fields,
                problem=problem,
                **context,
            )
        receipt_no = receipt_no_of(fields)
        number = context["rma"]["rma_number"] or rma_number
        problem = refusal_of(
            request,
            staff,
            "receive_rma_at_counter",
            ReceiveRmaAtCounter(
                rma_number=number,
                store_id=store_id or "",
                store_return_id=receipt_no,
                staff_id=staff.principal.name,
                checks=tuple(checks),
                refund_method=RefundMethod(refund) if refund else None,
            ),
            fields,
        )
        if problem:
            return render(
                request,
                staff,
                "store_rma.html",
                status_code=422,
                values={**fields, "form_id": new_form_id()},
                problem=problem,
                **context,
            )
        return RedirectResponse(receipt_link(store_id or "", receipt_no, number), 303)

    return await run_in_threadpool(work)


# ---------------------------------------------------------------- the receipt
def receipt_return(request: Request, store_id: str, receipt_no: str, rma: str | None) -> Return:
    api = api_of(request)
    if rma is None:
        return api.service.get_return(store_return_id_for(store_id, receipt_no))
    found = load_return(api, rma)
    if not routes_stores.received_here(found, store_id, receipt_no):
        raise Problem(404, "not_found", f"store {store_id} has no receipt {receipt_no} of it")
    return found


@router.get("/receipts/{store_id}/{receipt_no}", response_class=HTMLResponse)
def receipt_page(
    request: Request, staff: StoreStaff, store_id: str, receipt_no: str, rma: str | None = None
) -> Response:
    try:
        counter_of(staff.principal, store_id)
        found = receipt_return(request, store_id, receipt_no, rma)
    except (Problem, DomainError) as refused:
        return failure_page(request, staff, refused)
    settled, pending = documents.settlement_lines(found)
    base = receipt_link(store_id, receipt_no) + "/print?"
    query = urlencode({"rma": rma}) + "&" if rma else ""
    return render(
        request,
        staff,
        "store_receipt.html",
        rma=return_view(found),
        receipt_no=receipt_no,
        store_id=store_id,
        settled=settled,
        pending=pending,
        pdf_link=f"{base}{query}format=pdf",
        html_link=f"{base}{query}format=html",
        money=money,
    )


@router.get("/receipts/{store_id}/{receipt_no}/print")
def print_receipt(
    request: Request,
    staff: StoreStaff,
    store_id: str,
    receipt_no: str,
    rma: str | None = None,
    format: documents.DocumentFormat | None = None,
) -> Response:
    """The receipt document the API renders (``/v1/stores/{s}/returns/{r}/receipt``)."""
    try:
        counter_of(staff.principal, store_id)
        printed = routes_stores.store_receipt(
            staff.principal, store_id, receipt_no, request, rma_number=rma, format=format
        )
    except (Problem, DomainError) as refused:
        return failure_page(request, staff, refused)
    # The document carries its own <style> and an inline SVG code: allow those, and still
    # no script (the console's own policy would leave the printed page unstyled).
    printed.headers["Content-Security-Policy"] = PRINTED_CSP
    return printed
