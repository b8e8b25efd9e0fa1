"""Reconciliation with the payment providers: the day's figures per provider, a provider's
settlement file imported, and the discrepancies recorded (adapters/driven/reconciliation.py).

A provider is the payment method a refund goes back through (card, paypal, bnpl, gift_card,
store_credit). Reading is for customer service, analytics and admin; importing a file
records discrepancies, so it is for customer service and admin only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from psycopg import sql

from adapters.driven.reconciliation import (
    SettlementFileError,
    cause_for,
    daily_reconciliation,
    import_settlements,
    parse_settlement_file,
)
from adapters.driving.api.auth import Allow, Principal, Role
from adapters.driving.api.context import Api, Day, Limit, Offset, api_of, page_of, paged
from adapters.driving.api.models import PageOut
from adapters.driving.api.problems import Problem, problem_responses
from domain.returns.reconciliation import DISCREPANCY_KINDS
from domain.values import PaymentMethod

router = APIRouter(
    prefix="/v1", tags=["reconciliation"], responses=problem_responses(401, 403, 422)
)
Readers = Annotated[
    Principal, Depends(Allow(Role.CUSTOMER_SERVICE, Role.ANALYTICS))
]  # admin: always
Importers = Annotated[Principal, Depends(Allow(Role.CUSTOMER_SERVICE))]

# A discrepancy's provider may join several methods (``card+paypal``) when it names no
# payment of a split refund.
ProviderFilter = Annotated[
    str | None,
    Query(
        pattern=r"^[a-z_]+(\+[a-z_]+)*$",
        max_length=100,
        description="A provider: the payment method refunds go back through (card, paypal,"
        " bnpl, gift_card, store_credit)",
    ),
]
MAX_FILE_BYTES = 16 * 1024 * 1024


def _rows(api: Api) -> Any:
    return lambda query, params: api.rows(query, params)


@router.get("/reconciliation")
def reconciliation(
    principal: Readers,
    request: Request,
    day: Annotated[Day, Query(description="The UTC day, YYYY-MM-DD")],
    provider: ProviderFilter = None,
) -> dict[str, Any]:
    """Per provider and currency, from the refund ledger: refunds requested, settled and
    failed that day, what is outstanding at its end, and the discrepancies recorded that
    day (counts; amounts as decimal strings: what providers claimed and what was expected).
    Trails the event store by the projections' lag."""
    return daily_reconciliation(_rows(api_of(request)), day, provider)


@router.post(
    "/reconciliation/settlements",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "provider_reference,refund_id,payment_id,amount,currency,"
                    "settled_at,status\r\nPSP-1,RF-RMA-7K2Q-M4XD-1,PAY-1,59.90,EUR,"
                    "2026-12-04T10:00:00Z,settled\r\n",
                }
            },
        }
    },
)
def import_settlement_file(
    principal: Importers,
    request: Request,
    provider: Annotated[PaymentMethod, Query(description="Whose settlement file this is")],
    day: Annotated[
        list[Day] | None,
        Query(description="The days the file covers (default: the days of its settled_at)"),
    ] = None,
) -> dict[str, Any]:
    """Match a provider's settlement file (CSV, header ``provider_reference,refund_id,
    payment_id,amount,currency,settled_at,status``; ``payment_id`` and ``status`` optional,
    status ``settled`` or ``failed``) line by line against the refunds: each line is
    ``matched``, ``pending`` (we still wait for its settlement), ``unknown_refund`` or a
    discrepancy (``amount_mismatch``, ``currency_mismatch``, ``unknown_payment``,
    ``status_mismatch``), and refunds the ledger settled through the provider on the file's
    days that it lacks are ``missing_in_file``. Discrepancies are recorded on the RMA once:
    importing the same file again records nothing. A malformed file is 422
    ``invalid_settlement_file`` with its ``line``."""
    body: bytes = getattr(request.state, "raw_body", b"") or b""
    if len(body) > MAX_FILE_BYTES:
        raise Problem(
            422, "invalid_settlement_file", f"a settlement file is at most {MAX_FILE_BYTES} B"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Problem(
            422, "invalid_settlement_file", f"not UTF-8: {error.reason}", line=None
        ) from None
    try:
        lines = parse_settlement_file(text)
    except SettlementFileError as error:
        raise Problem(422, "invalid_settlement_file", str(error), line=error.line) from None
    api = api_of(request)
    cause = cause_for(principal.name, f"api/{principal.role}/settlement-file/{provider.value}")
    report = import_settlements(api.service, _rows(api), provider.value, lines, cause, day)
    return report.as_dict()


@router.get("/refunds/discrepancies", response_model=PageOut)
def discrepancies(
    principal: Readers,
    request: Request,
    provider: ProviderFilter = None,
    kind: Annotated[
        str | None, Query(description=f"One of {', '.join(DISCREPANCY_KINDS)}, unspecified")
    ] = None,
    day: Annotated[Day | None, Query(description="Recorded on this UTC day")] = None,
    refund_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = None,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Discrepancies recorded between the refunds and what the providers said, oldest
    first: the claimed ``amount`` against the ``expected`` one, with the RMA."""
    api = api_of(request)
    page = page_of(request, limit, offset)
    query = sql.SQL(
        "SELECT id, refund_id, return_id, rma_number, payment_id, provider, kind, reason,"
        " provider_reference, amount, currency, expected, expected_currency, at"
        " FROM rm_refund_discrepancies"
        " WHERE (%(p)s::text IS NULL OR provider = %(p)s)"
        " AND (%(k)s::text IS NULL OR kind = %(k)s)"
        " AND (%(d)s::date IS NULL OR day = %(d)s)"
        " AND (%(r)s::text IS NULL OR refund_id = %(r)s)"
        " ORDER BY at, id LIMIT %(_limit)s OFFSET %(_offset)s"
    )
    params = {
        "p": provider,
        "k": kind,
        "d": day,
        "r": refund_id,
        "_limit": page.limit + 1,
        "_offset": page.offset,
    }
    return paged(request, page, api.rows(query, params))
