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
from adapters.driving.api.models import BlindLink, BlindMatch, CommandResult, PageOut
from adapters.driving.api.problems import problem_responses
from adapters.driving.api.views import return_view
from domain.application import ReturnsService
from domain.commands import LinkBlindReturn, MatchBlindReturn
from domain.errors import NotFound
from domain.returns import Return, ReturnStatus

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
    service = api_of(request).service
    found = service.open_blind_returns(page.limit + 1, page.offset)
    items = [blind_view(service, rma, wide=False) for rma in found]
    return paged(request, page, items)


@router.get("/{return_id}", responses=problem_responses(404))
def get_blind_return(
    principal: Annotated[Principal, Depends(Allow(Role.CUSTOMER_SERVICE, Role.WAREHOUSE))],
    return_id: UUID,
    request: Request,
    response: Response,
) -> dict[str, Any]:
    """One blind return: its parcel, its inspection, how it was matched (or why it ended),
    its age and, while it waits, where it may belong."""
    api = api_of(request)
    rma = api.service.get_return(return_id)
    if rma.state.blind_receipt_id is None:
        raise NotFound(f"return {return_id} is no blind return")
    set_etag(api, response, rma.id)
    return blind_view(api.service, rma, wide=True)


def blind_view(service: ReturnsService, rma: Return, *, wide: bool) -> dict[str, Any]:
    view = return_view(rma)
    s = rma.state
    waiting = s.status is ReturnStatus.BLIND_UNMATCHED
    view.update(
        receipt_id=s.blind_receipt_id,
        warehouse_id=s.blind_warehouse_id,
        claimed_rma=s.blind_claimed_rma,
        order_hint=s.blind_order_hint,
        received_items=[i.model_dump(mode="json") for i in s.received_items],
        inspected_items=[i.model_dump(mode="json") for i in s.inspected_items],
        matched_by=s.matched_by,
        linked_return_id=str(s.linked_return_id) if s.linked_return_id else None,
        age_days=(service.clock() - s.requested_at).days if s.requested_at else None,
        # Only while it waits. A list shows what each parcel itself shows; one parcel's
        # view adds the guesses (the customer's and the SKU's recent orders): dozens of reads.
        suggested_matches=service.blind_suggestions(rma, wide=wide) if waiting else [],
    )
    return view


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


@router.post(
    "/{return_id}/link",
    response_model=CommandResult,
    responses=problem_responses(400, 404, 409, 412, 428),
    openapi_extra={"parameters": [*COMMAND["parameters"], IF_MATCH]},
)
def link_blind_return(
    principal: Annotated[Principal, Depends(Allow(Role.CUSTOMER_SERVICE))],
    return_id: UUID,
    body: BlindLink,
    request: Request,
    response: Response,
) -> CommandResult:
    """End a blind return as the same goods another return already records (a store
    counter return, an RMA's own parcel): no refund from it, its goods counted once."""
    api = api_of(request)
    rma = api.service.get_return(return_id)
    outcome = run_command(
        api,
        principal,
        request,
        "link_blind_return",
        LinkBlindReturn(return_id=return_id, linked=body.linked, reason=body.reason),
        rma=rma,
    )
    set_etag(api, response, outcome.aggregate_id)
    return CommandResult.of(outcome)
