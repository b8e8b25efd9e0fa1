"""Store tablets: in-store returns of any order, store-method RMAs brought to the counter,
and their printable receipts."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse

from adapters.driving.api import documents
from adapters.driving.api.auth import Allow, Principal, Role
from adapters.driving.api.context import COMMAND, api_of, etag, load_return, run_command
from adapters.driving.api.models import CommandResult, InStoreReturn, RmaAtCounter
from adapters.driving.api.problems import Problem, problem_responses
from adapters.driving.api.sheets import line_names, receipt_sheet
from adapters.driving.api.views import return_view
from domain.commands import ReceiveRmaAtCounter, RecordInStoreReturn
from domain.errors import DomainError
from domain.handlers.counter import check_can_take_at_counter, still_to_bring
from domain.returns import Return, store_return_id_for

router = APIRouter(
    prefix="/v1/stores/{store_id}", tags=["stores"], responses=problem_responses(401, 403, 422)
)


@router.post(
    "/returns",
    status_code=201,
    response_model=CommandResult,
    responses=problem_responses(400, 404, 409),
    openapi_extra=COMMAND,
)
def record_in_store_return(
    principal: Annotated[Principal, Depends(Allow(Role.STORE))],
    store_id: str,
    body: InStoreReturn,
    request: Request,
    response: Response,
) -> CommandResult:
    """Record a counter return: inspected on the spot and refunded at once."""
    principal.check_store(store_id)
    api = api_of(request)
    outcome = run_command(
        api,
        principal,
        request,
        "record_in_store_return",
        RecordInStoreReturn(
            store_return_id=body.store_return_id,
            store_id=store_id,
            staff_id=body.staff_id,
            order_number=body.order_number,
            lines=tuple(line.requested() for line in body.lines),
            checks=tuple(line.check() for line in body.lines),
            refund_method=body.refund_method,
        ),
    )
    response.headers["Location"] = f"/v1/returns/{outcome.aggregate_id}"
    response.headers["ETag"] = etag(api.service.get_return(outcome.aggregate_id).version)
    return CommandResult.of(outcome)


@router.get(
    "/returns/{store_return_id}/receipt",
    response_class=HTMLResponse,
    responses={**problem_responses(404), **documents.DOCUMENT_RESPONSES},
)
def store_receipt(
    principal: Annotated[Principal, Depends(Allow(Role.STORE, Role.CUSTOMER_SERVICE))],
    store_id: str,
    store_return_id: str,
    request: Request,
    rma_number: Annotated[str | None, Query(max_length=40)] = None,
    format: Annotated[documents.DocumentFormat | None, Query()] = None,
) -> Response:
    """The printable receipt of a counter return, for the customer: what is settled and
    what is pending. ``rma_number`` for an RMA received at the counter (its receive answer
    links here with it); without it, the in-store return ``store_return_id``."""
    principal.check_store(store_id)
    api = api_of(request)
    if rma_number is None:
        rma = api.service.get_return(store_return_id_for(store_id, store_return_id))
    else:
        rma = load_return(api, rma_number)
        if not received_here(rma, store_id, store_return_id):
            raise Problem(
                404, "not_found", f"store {store_id} has no receipt {store_return_id} of it"
            )
    settled, pending = documents.settlement_lines(rma)
    sheet = receipt_sheet(
        rma, line_names(api.service, rma), store_id, store_return_id, settled, pending
    )
    return documents.printed(sheet, request, format)


def received_here(rma: Return, store_id: str, store_return_id: str) -> bool:
    inspected_here = any(i.location_id == store_id for i in rma.state.inspected_items)
    return store_return_id in rma.state.receipts and inspected_here


# ---------------------------------------------------------------- store-method RMAs
@router.get("/rmas/{rma_number}", responses=problem_responses(404))
def rma_at_counter(
    principal: Annotated[Principal, Depends(Allow(Role.STORE, Role.CUSTOMER_SERVICE))],
    store_id: str,
    rma_number: str,
    request: Request,
) -> dict[str, Any]:
    """What the tablet shows when it scans an RMA's QR code: the RMA, its order, the lines
    still to bring and whether this counter can take them (``refusal`` says why not)."""
    principal.check_store(store_id)
    api = api_of(request)
    rma = load_return(api, rma_number)
    refusal: dict[str, str] | None = None
    try:
        check_can_take_at_counter(rma)
    except DomainError as refused:
        refusal = {"code": refused.code, "message": refused.message}
    left = still_to_bring(rma)
    return {
        "rma": return_view(rma),
        "order": api.service.order_view(rma.state.order_number) if rma.state.order_number else None,
        "still_to_bring": [
            {"line_no": no, "sku": rma.state.lines[no].sku, "quantity": quantity}
            for no, quantity in sorted(left.items())
            if quantity > 0
        ],
        "receivable": refusal is None,
        "refusal": refusal,
    }


@router.post(
    "/rmas/{rma_number}/receive",
    response_model=CommandResult,
    responses=problem_responses(400, 404, 409),
    openapi_extra=COMMAND,
)
def receive_rma_at_counter(
    principal: Annotated[Principal, Depends(Allow(Role.STORE))],
    store_id: str,
    rma_number: str,
    body: RmaAtCounter,
    request: Request,
    response: Response,
) -> CommandResult:
    """Receive a store-method RMA at this counter: inspected on the spot and settled at once.
    A carrier RMA is refused (409 ``wrong_return_method``), as is one cancelled, expired or
    received in full (409 ``invalid_transition``); nothing is recorded then."""
    principal.check_store(store_id)
    api = api_of(request)
    rma = load_return(api, rma_number)
    outcome = run_command(
        api,
        principal,
        request,
        "receive_rma_at_counter",
        ReceiveRmaAtCounter(
            rma_number=rma.state.rma_number or rma_number,
            store_id=store_id,
            store_return_id=body.store_return_id,
            staff_id=body.staff_id,
            checks=tuple(line.check() for line in body.lines),
            refund_method=body.refund_method,
        ),
    )
    number = outcome.rma_number or rma_number
    # Quoted: ids are the client's text, and a header takes only ASCII.
    receipt = (
        f"/v1/stores/{quote(store_id, safe='')}/returns/{quote(body.store_return_id, safe='')}"
        f"/receipt?{urlencode({'rma_number': number})}"
    )
    response.headers["Location"] = f"/v1/returns/{outcome.aggregate_id}"
    response.headers["Link"] = f'<{receipt}>; rel="receipt"'
    response.headers["ETag"] = etag(api.service.get_return(outcome.aggregate_id).version)
    return CommandResult.of(outcome)
