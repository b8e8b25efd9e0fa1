"""Store tablets: in-store returns of any order, and their printable receipts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse

from adapters.driving.api import documents
from adapters.driving.api.auth import Allow, Principal, Role
from adapters.driving.api.context import COMMAND, api_of, etag, run_command
from adapters.driving.api.models import CommandResult, InStoreReturn
from adapters.driving.api.problems import problem_responses
from domain.commands import RecordInStoreReturn
from domain.returns import store_return_id_for

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
    responses=problem_responses(404),
)
def store_receipt(
    principal: Annotated[Principal, Depends(Allow(Role.STORE, Role.CUSTOMER_SERVICE))],
    store_id: str,
    store_return_id: str,
    request: Request,
) -> HTMLResponse:
    """The printable receipt of an in-store return, for the customer."""
    principal.check_store(store_id)
    rma = api_of(request).service.get_return(store_return_id_for(store_id, store_return_id))
    return HTMLResponse(documents.store_receipt(rma))
