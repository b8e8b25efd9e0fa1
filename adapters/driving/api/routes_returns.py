"""RMAs: request, follow, cancel, review, keep-the-item, refund retry, label, return note."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse

from adapters.driven.refunds import RefundDispatches
from adapters.driving.api import documents
from adapters.driving.api.auth import Allow, Principal, Role
from adapters.driving.api.context import (
    COMMAND,
    CUSTOMER_EMAIL,
    PORTAL_READ,
    RMA_COMMAND,
    api_of,
    check_order_owner,
    etag,
    run_command,
    set_etag,
    visible_return,
)
from adapters.driving.api.models import (
    CommandResult,
    KeepItemOffer,
    Label,
    Reason,
    RefundRetry,
    ResolutionChange,
    ReturnRequest,
)
from adapters.driving.api.problems import Problem, problem_responses
from adapters.driving.api.sheets import line_names, note_sheet
from adapters.driving.api.views import return_view
from domain.application import Ctx
from domain.commands import (
    AcceptKeepItem,
    ApproveReturn,
    CancelReturn,
    ChangeResolution,
    Command,
    IssueLabel,
    OfferKeepItem,
    RefuseReturn,
    RequestReturn,
    ResendRefund,
    RetryRefund,
)
from domain.returns import Return, ReturnStatus
from domain.values import ReturnChannel

router = APIRouter(
    prefix="/v1/returns", tags=["returns"], responses=problem_responses(401, 403, 404, 422)
)
# Commands on an existing RMA: a state that forbids them, a stale or missing If-Match.
RMA_ERRORS = problem_responses(400, 409, 412, 428)


Route = Callable[..., CommandResult]


def rma_command(path: str) -> Callable[[Route], Route]:
    """The route of a command on one RMA: its result, problems and headers (If-Match...)."""
    return router.post(
        path, response_model=CommandResult, responses=RMA_ERRORS, openapi_extra=RMA_COMMAND
    )


CS = Role.CUSTOMER_SERVICE
Reader = Annotated[Principal, Depends(Allow(CS, Role.PORTAL, Role.STORE, Role.WAREHOUSE))]
Owner = Annotated[Principal, Depends(Allow(CS, Role.PORTAL))]
Agent = Annotated[Principal, Depends(Allow(CS))]


@router.post(
    "",
    status_code=201,
    response_model=CommandResult,
    responses=problem_responses(400, 409),
    openapi_extra={"parameters": [*COMMAND["parameters"], CUSTOMER_EMAIL]},
)
def request_return(
    principal: Owner, body: ReturnRequest, request: Request, response: Response
) -> CommandResult:
    """Request an RMA. Refused by policy: 422 with the policy's reason as ``code``."""
    api = api_of(request)
    check_order_owner(api, principal, request, body.order_number)
    channel = (
        ReturnChannel.PORTAL if principal.role is Role.PORTAL else (ReturnChannel.CUSTOMER_SERVICE)
    )
    outcome = run_command(
        api,
        principal,
        request,
        "request_return",
        RequestReturn(
            order_number=body.order_number,
            lines=tuple(li.requested() for li in body.lines),
            channel=channel,
            method=body.method,
            refund_method=body.refund_method,
            comment=body.comment,
        ),
    )
    if outcome.status == "rejected":
        raise Problem(
            422,
            outcome.code or "policy_violation",
            outcome.message or f"refused by policy: {outcome.code}",
            return_id=str(outcome.aggregate_id),
        )
    response.headers["Location"] = f"/v1/returns/{outcome.aggregate_id}"
    set_etag(api, response, outcome.aggregate_id)
    return CommandResult.of(outcome)


@router.get("/{ref}", openapi_extra=PORTAL_READ)
def get_return(principal: Reader, ref: str, request: Request, response: Response) -> dict[str, Any]:
    """An RMA by return id or RMA number; ``ETag`` is its version, for ``If-Match``."""
    api = api_of(request)
    rma = visible_return(api, principal, request, ref)
    response.headers["ETag"] = etag(rma.version)
    return return_view(rma, legs=principal.role is not Role.PORTAL)


STAFF_ONLY_REASONS = frozenset({"rma.held_for_review"})


@router.get("/{ref}/timeline", openapi_extra=PORTAL_READ)
def get_timeline(
    principal: Reader, ref: str, request: Request, response: Response
) -> dict[str, Any]:
    """The RMA's events, with the status read model's summaries where it has caught up."""
    api = api_of(request)
    rma = visible_return(api, principal, request, ref)
    summaries = {
        row["version"]: row
        for row in api.rows(
            "SELECT version, status, summary FROM rm_rma_timeline WHERE return_id = %s",
            [str(rma.id)],
        )
    }
    events = api.service.events_of(rma.id)
    for event in events:
        projected = summaries.get(event["version"])
        event["status"] = projected["status"] if projected else None
        event["summary"] = projected["summary"] if projected else None
        if (
            principal.role is Role.PORTAL
            and event["type"] in STAFF_ONLY_REASONS
            and event["summary"]
        ):
            # A hold's reason names the review rule (e.g. how often the customer returns):
            # staff read it on the RMA; the customer is told only that a person reviews it.
            event["summary"] = {k: v for k, v in event["summary"].items() if k != "reason"}
    response.headers["ETag"] = etag(rma.version)
    return {
        "return_id": str(rma.id),
        "rma_number": rma.state.rma_number,
        "version": rma.version,
        "events": events,
    }


@router.get(
    "/{ref}/note",
    response_class=HTMLResponse,
    responses={**problem_responses(409), **documents.DOCUMENT_RESPONSES},
    openapi_extra=PORTAL_READ,
)
def return_note(
    principal: Owner,
    ref: str,
    request: Request,
    format: Annotated[documents.DocumentFormat | None, Query()] = None,
) -> Response:
    """The printable return note to put in the parcel: HTML, or PDF (``?format=pdf`` or
    ``Accept: application/pdf``), with the RMA number as a QR code."""
    api = api_of(request)
    rma = visible_return(api, principal, request, ref)
    if rma.state.rma_number is None:
        raise Problem(409, "not_authorized", "the RMA has no number yet")
    sheet = note_sheet(
        rma,
        line_names(api.service, rma),
        api.settings.warehouse_addresses,
        rma.expires_at(api.service.policy_book),
    )
    return documents.printed(sheet, request, format)


def _rma_command(
    principal: Principal,
    ref: str,
    request: Request,
    response: Response,
    name: str,
    build: Callable[[Return], Command],
    then: Callable[[Ctx, Command], None] | None = None,
) -> CommandResult:
    api = api_of(request)
    rma = visible_return(api, principal, request, ref)
    outcome = run_command(api, principal, request, name, build(rma), rma=rma, then=then)
    set_etag(api, response, outcome.aggregate_id)
    return CommandResult.of(outcome)


@rma_command("/{ref}/cancel")
def cancel(
    principal: Owner, ref: str, body: Reason, request: Request, response: Response
) -> CommandResult:
    return _rma_command(
        principal,
        ref,
        request,
        response,
        "cancel_return",
        lambda rma: CancelReturn(rma.id, body.reason),
    )


@rma_command("/{ref}/approve")
def approve(principal: Agent, ref: str, request: Request, response: Response) -> CommandResult:
    """Authorize an RMA held for review."""
    return _rma_command(
        principal,
        ref,
        request,
        response,
        "approve_return",
        lambda rma: ApproveReturn(rma.id),
    )


@rma_command("/{ref}/refuse")
def refuse(
    principal: Agent, ref: str, body: Reason, request: Request, response: Response
) -> CommandResult:
    """Refuse an RMA held for review."""
    return _rma_command(
        principal,
        ref,
        request,
        response,
        "refuse_return",
        lambda rma: RefuseReturn(rma.id, body.reason),
    )


@rma_command("/{ref}/keep-item/offer")
def offer_keep_item(
    principal: Agent, ref: str, body: KeepItemOffer, request: Request, response: Response
) -> CommandResult:
    return _rma_command(
        principal,
        ref,
        request,
        response,
        "offer_keep_item",
        lambda rma: OfferKeepItem(rma.id, body.valid_days),
    )


@rma_command("/{ref}/keep-item/accept")
def accept_keep_item(
    principal: Owner, ref: str, request: Request, response: Response
) -> CommandResult:
    return _rma_command(
        principal,
        ref,
        request,
        response,
        "accept_keep_item",
        lambda rma: AcceptKeepItem(rma.id),
    )


@rma_command("/{ref}/refund-retry")
def retry_refund(
    principal: Agent, ref: str, body: RefundRetry, request: Request, response: Response
) -> CommandResult:
    """After a failed refund: pay again, or as store credit. While a refund still waits for
    the payment provider (``refund_pending``): send it again under the same refund id (the
    provider deduplicates, so no new money moves); the integrations worker sends it within
    seconds. Store credit is refused (409) until the pending refund failed."""

    service = api_of(request).service

    def build(rma: Return) -> Command:
        if rma.state.status is ReturnStatus.REFUND_PENDING:
            return ResendRefund(rma.id, body.as_store_credit)
        return RetryRefund(rma.id, body.as_store_credit)

    def then(ctx: Ctx, command: Command) -> None:
        if isinstance(command, ResendRefund):
            RefundDispatches(service).request_resend_of_return(
                command.return_id, by=ctx.cause.actor
            )

    return _rma_command(principal, ref, request, response, "retry_refund", build, then)


@rma_command("/{ref}/resolution")
def change_resolution(
    principal: Owner, ref: str, body: ResolutionChange, request: Request, response: Response
) -> CommandResult:
    """Settle the customer another way (refund to the original payment, store credit or an
    exchange) until the first payment or exchange; after that, or on an ended RMA, 409
    ``resolution_locked``."""
    return _rma_command(
        principal,
        ref,
        request,
        response,
        "change_resolution",
        lambda rma: ChangeResolution(rma.id, body.refund_method, body.reason),
    )


@rma_command("/{ref}/label")
def issue_label(
    principal: Owner, ref: str, body: Label, request: Request, response: Response
) -> CommandResult:
    """Issue (or reissue) the carrier label of an authorized RMA."""
    rma = visible_return(api_of(request), principal, request, ref)
    number = rma.state.rma_number
    if number is None:
        raise Problem(409, "not_authorized", "the RMA has no number yet")
    return _rma_command(
        principal,
        ref,
        request,
        response,
        "issue_label",
        lambda rma: IssueLabel(number, body.carrier),
    )
