"""Blind returns: parcels received with no known RMA, matched later by customer service."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response

from adapters.driving.api.auth import Allow, Principal, Role
from adapters.driving.api.context import (
    COMMAND,
    IF_MATCH,
    Limit,
    Offset,
    api_of,
    page_of,
    paged,
    run_command,
    set_etag,
)
from adapters.driving.api.models import BlindMatch, CommandResult, PageOut
from adapters.driving.api.problems import problem_responses
from adapters.driving.api.views import return_view
from domain.commands import MatchBlindReturn

router = APIRouter(
    prefix="/v1/blind-returns", tags=["blind returns"], responses=problem_responses(401, 403, 422)
)


@router.get("", response_model=PageOut)
def list_blind_returns(
    principal: Annotated[Principal, Depends(Allow(Role.CUSTOMER_SERVICE, Role.WAREHOUSE))],
    request: Request,
    limit: Limit = None,
    offset: Offset = 0,
) -> dict[str, Any]:
    page = page_of(request, limit, offset)
    found = api_of(request).service.open_blind_returns(page.limit + 1, page.offset)
    items = []
    for rma in found:
        view = return_view(rma)
        s = rma.state
        view.update(
            receipt_id=s.blind_receipt_id,
            warehouse_id=s.blind_warehouse_id,
            claimed_rma=s.blind_claimed_rma,
            order_hint=s.blind_order_hint,
            received_items=[i.model_dump(mode="json") for i in s.received_items],
        )
        items.append(view)
    return paged(request, page, items)


@router.post(
    "/{return_id}/match",
    response_model=CommandResult,
    responses=problem_responses(400, 404, 409, 412, 428),
    openapi_extra={"parameters": [*COMMAND["parameters"], IF_MATCH]},
)
def match_blind_return(
    principal: Annotated[Principal, Depends(Allow(Role.CUSTOMER_SERVICE))],
    return_id: UUID,
    body: BlindMatch,
    request: Request,
    response: Response,
) -> CommandResult:
    """Tie a blind return to its order; it is then handled as an RMA."""
    api = api_of(request)
    rma = api.service.get_return(return_id)
    outcome = run_command(
        api,
        principal,
        request,
        "match_blind_return",
        MatchBlindReturn(
            return_id=return_id,
            order_number=body.order_number,
            lines=tuple(line.requested() for line in body.lines),
            matched_by=body.matched_by,
        ),
        rma=rma,
    )
    set_etag(api, response, outcome.aggregate_id)
    return CommandResult.of(outcome)
