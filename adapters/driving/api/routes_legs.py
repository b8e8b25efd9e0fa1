"""Repair and return-to-vendor legs: the queue of open legs and the warehouse's moves.

The queue is the ``legs`` read model (``rm_legs``), so it trails the event store by the
lag; a move runs ``MoveLeg`` on the RMA, the same command the warehouse's messages on
``wms.receipts.v1`` run, so both refuse alike (409 a leg not ready for the step, 422 a step
it cannot take, 404 an unknown RMA) and a repeat changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from adapters.contracts import Amount
from adapters.driving.api.auth import Allow, Principal, Role
from adapters.driving.api.context import (
    COMMAND,
    Limit,
    Offset,
    api_of,
    load_return,
    page_of,
    paged,
    run_command,
    set_etag,
)
from adapters.driving.api.models import CommandResult, PageOut
from adapters.driving.api.problems import problem_responses
from adapters.validation import SafeStr
from domain.commands import LegAction, MoveLeg
from domain.values import Money

router = APIRouter(prefix="/v1/legs", tags=["legs"], responses=problem_responses(401, 403, 422))
Readers = Annotated[Principal, Depends(Allow(Role.WAREHOUSE, Role.CUSTOMER_SERVICE))]
Warehouse = Annotated[Principal, Depends(Allow(Role.WAREHOUSE))]
Ref = Annotated[str, Path(description="The RMA number (or the return id)")]
LegId = Annotated[str, Path(pattern=r"^L[1-9][0-9]{0,5}$")]
Text = Annotated[SafeStr, Field(min_length=1, max_length=200)]
LegStatus = Literal[
    "awaiting_dispatch",
    "at_repair",
    "repaired",
    "restocked",
    "scrapped",
    "at_vendor",
    "credited",
    "returned_by_vendor",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepairSentIn(_Body):
    repair_center: Text
    reference: Text | None = None


class RepairCompletedIn(_Body):
    outcome: Literal["repaired", "replaced", "unrepairable"]
    replacement_serial: Text | None = None


class RestockedIn(_Body):
    location_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class VendorShippedIn(_Body):
    reference: Text


class VendorCreditedIn(_Body):
    amount: Amount
    reference: Text | None = None


@router.get("", response_model=PageOut)
def legs(
    principal: Readers,
    request: Request,
    kind: Literal["repair", "return_to_vendor"] | None = None,
    status: LegStatus | None = None,
    supplier: str | None = None,
    rma_number: str | None = None,
    include_closed: bool = False,
    limit: Limit = None,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Open legs, oldest first, with their age in days (since inspection) and the days in
    their current status; ``status`` or ``include_closed`` show ended legs too."""
    query = sql.SQL(
        "SELECT *, floor(extract(epoch FROM now() - opened_at) / 86400)::int AS age_days,"
        " floor(extract(epoch FROM now() - status_since) / 86400)::int AS days_in_status"
        " FROM rm_legs WHERE (%(k)s::text IS NULL OR kind = %(k)s)"
        " AND (%(st)s::text IS NULL OR status = %(st)s)"
        " AND (%(su)s::text IS NULL OR supplier = %(su)s)"
        " AND (%(rma)s::text IS NULL OR rma_number = %(rma)s)"
        " AND (open OR %(all)s OR %(st)s::text IS NOT NULL)"
        " ORDER BY opened_at, return_id, leg_id LIMIT %(_limit)s OFFSET %(_offset)s"
    )
    page = page_of(request, limit, offset)
    params = {
        "k": kind,
        "st": status,
        "su": supplier,
        "rma": rma_number,
        "all": include_closed,
        "_limit": page.limit + 1,
        "_offset": page.offset,
    }
    return paged(request, page, api_of(request).rows(query, params))


def _move(
    principal: Principal,
    request: Request,
    response: Response,
    ref: str,
    leg_id: str,
    action: LegAction,
    **values: Any,
) -> CommandResult:
    api = api_of(request)
    rma = load_return(api, ref)  # a ref that names no return is 404, as on every RMA route
    command = MoveLeg(
        rma_number=rma.state.rma_number,
        return_id=rma.id,
        action=action,
        leg_id=leg_id,
        **values,
    )
    outcome = run_command(api, principal, request, f"leg_{action.value}", command)
    set_etag(api, response, outcome.aggregate_id)
    return CommandResult.of(outcome)


Route = Callable[..., CommandResult]


def leg_move(step: str) -> Callable[[Route], Route]:
    """The route of one step on a leg: its result and problems (no If-Match: a scanner
    reports what happened to the item, whatever else happened to the RMA meanwhile)."""
    return router.post(
        f"/{{ref}}/{{leg_id}}/{step}",
        response_model=CommandResult,
        responses=problem_responses(400, 404, 409),
        openapi_extra=COMMAND,
    )


@leg_move("repair-sent")
def repair_sent(
    principal: Warehouse,
    ref: Ref,
    leg_id: LegId,
    body: RepairSentIn,
    request: Request,
    response: Response,
) -> CommandResult:
    """The item left for the repair centre, with the centre's reference."""
    return _move(
        principal,
        request,
        response,
        ref,
        leg_id,
        LegAction.SENT_TO_REPAIR,
        repair_center=body.repair_center,
        reference=body.reference,
    )


@leg_move("repair-completed")
def repair_completed(
    principal: Warehouse,
    ref: Ref,
    leg_id: LegId,
    body: RepairCompletedIn,
    request: Request,
    response: Response,
) -> CommandResult:
    """Repaired, replaced by a new unit (its serial), or unrepairable (scrapped: ends)."""
    return _move(
        principal,
        request,
        response,
        ref,
        leg_id,
        LegAction(body.outcome),
        replacement_serial=body.replacement_serial,
    )


@leg_move("restocked")
def restocked(
    principal: Warehouse,
    ref: Ref,
    leg_id: LegId,
    body: RestockedIn,
    request: Request,
    response: Response,
) -> CommandResult:
    """Back in sellable stock at ``location_id`` (repaired, replaced, or sent back by the
    vendor); ends the leg."""
    return _move(
        principal,
        request,
        response,
        ref,
        leg_id,
        LegAction.RESTOCKED,
        location_id=body.location_id,
    )


@leg_move("vendor-shipped")
def vendor_shipped(
    principal: Warehouse,
    ref: Ref,
    leg_id: LegId,
    body: VendorShippedIn,
    request: Request,
    response: Response,
) -> CommandResult:
    """The item left for its supplier under the supplier's return reference."""
    return _move(
        principal,
        request,
        response,
        ref,
        leg_id,
        LegAction.SHIPPED_TO_VENDOR,
        reference=body.reference,
    )


@leg_move("vendor-credited")
def vendor_credited(
    principal: Warehouse,
    ref: Ref,
    leg_id: LegId,
    body: VendorCreditedIn,
    request: Request,
    response: Response,
) -> CommandResult:
    """The supplier's credit for the item (in the RMA's currency); ends the leg."""
    return _move(
        principal,
        request,
        response,
        ref,
        leg_id,
        LegAction.CREDITED,
        amount=Money.of(body.amount.amount, body.amount.currency),
        reference=body.reference,
    )
