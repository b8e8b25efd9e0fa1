"""Finding work without ids: the RMA search (``GET /v1/returns``, JSON or CSV), the named
queues (``GET /v1/queues``) and the portal's "my returns" and "my orders".

All of it reads the read models (``rm_rma_status``, ``rm_refunds``, ``rm_legs``,
``rm_serial_events``), never the aggregates, so it trails the event store by the lag. The
e-mail filter and the portal's lists resolve the customer's orders through the lookup table
written with the events (``oms_orders``), which is exact at once.

Scoping: a store key sees its store's RMAs only, a warehouse key with a ``warehouse_id`` its
warehouse's (the RMA's destination warehouse); asking for another store or warehouse is 403.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from psycopg import sql

from adapters.driving.api.auth import Allow, Principal, Role
from adapters.driving.api.context import (
    PORTAL_READ,
    Api,
    Limit,
    Moment,
    Offset,
    Page,
    api_of,
    page_of,
    paged,
    proven_customer,
)
from adapters.driving.api.models import PageOut
from adapters.driving.api.problems import Problem, problem_responses
from domain.application import ReturnsService
from domain.errors import NotFound
from domain.returns import ReturnStatus

router = APIRouter(
    prefix="/v1", tags=["queues and search"], responses=problem_responses(401, 403, 422)
)
CS, AN, ST, WH = Role.CUSTOMER_SERVICE, Role.ANALYTICS, Role.STORE, Role.WAREHOUSE
Staff = Annotated[Principal, Depends(Allow(CS, AN, ST, WH))]
Portal = Annotated[Principal, Depends(Allow(Role.PORTAL))]

# How many orders of one e-mail a search or the portal resolves: far above any customer's.
MAX_ORDERS_PER_EMAIL = 1000

# What a search or a queue shows of an RMA: flat values, so JSON and CSV rows are the same.
RMA_COLUMNS_SQL = (
    "s.return_id, s.rma_number, s.status, s.order_number, s.customer_id, s.channel,"
    " s.method, s.refund_method, s.store_id, s.destination_warehouse, s.blind, s.currency,"
    " s.expected_refund, s.refund_due, s.refunded, s.store_credit,"
    " (SELECT string_agg(l->>'sku', ' ' ORDER BY (l->>'line_no')::int)"
    " FROM jsonb_array_elements(s.lines) AS l) AS skus,"
    " s.requested_at AS created_at, s.received_at, s.inspected_at, s.closed_at,"
    " s.updated_at, s.version"
)
RMA_COLUMNS = sql.SQL(RMA_COLUMNS_SQL)
SORTS: dict[str, str] = {
    "updated_at": "s.updated_at ASC NULLS FIRST, s.return_id",
    "-updated_at": "s.updated_at DESC NULLS LAST, s.return_id",
    "created_at": "s.requested_at ASC NULLS FIRST, s.return_id",
    "-created_at": "s.requested_at DESC NULLS LAST, s.return_id",
    "rma_number": "s.rma_number ASC NULLS LAST, s.return_id",
    "-rma_number": "s.rma_number DESC NULLS LAST, s.return_id",
}
Sort = Literal[
    "updated_at", "-updated_at", "created_at", "-created_at", "rma_number", "-rma_number"
]


def invalid(reason: str) -> Problem:
    return Problem(422, "invalid_filter", reason)


@dataclass
class Where:
    """AND-ed SQL conditions with their named parameters."""

    parts: list[sql.Composable]
    params: dict[str, Any]

    def add(self, condition: str, **params: Any) -> None:
        self.parts.append(sql.SQL(condition))
        self.params.update(params)

    def sql(self) -> sql.Composable:
        return sql.SQL(" AND ").join(self.parts) if self.parts else sql.SQL("true")


def scoped(principal: Principal, store_id: str | None, warehouse_id: str | None) -> Where:
    """The principal's scope on ``s`` (rm_rma_status), plus the store and warehouse asked."""
    where = Where([], {})
    if principal.role is Role.STORE:
        if store_id is not None:
            principal.check_store(store_id)
        store_id = principal.store_id
    if principal.role is Role.WAREHOUSE and principal.warehouse_id is not None:
        if warehouse_id is not None and warehouse_id != principal.warehouse_id:
            raise Problem(403, "forbidden", "this key belongs to another warehouse")
        warehouse_id = principal.warehouse_id
    if store_id is not None:
        where.add("s.store_id = %(_store)s", _store=store_id)
    if warehouse_id is not None:
        where.add("s.destination_warehouse = %(_warehouse)s", _warehouse=warehouse_id)
    return where


def order_numbers_of_email(api: Api, email: str) -> list[str]:
    ids = api.service.lookups.orders_of_email(email.strip(), MAX_ORDERS_PER_EMAIL)
    return [n for n in (api.service.order_number_of(i) for i in ids) if n]


def wants_csv(request: Request, format: str | None) -> bool:
    if format is not None:
        return format == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def csv_response(request: Request, page: Page, body: dict[str, Any]) -> Response:
    """The page's rows as CSV (a header line, then one line per row); the next page's link
    in ``Link``, since CSV has no room for it."""
    out = io.StringIO()
    items: list[dict[str, Any]] = body["items"]
    columns = list(items[0]) if items else []
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(items)
    headers = {"Content-Disposition": 'attachment; filename="returns.csv"'}
    if body["next"]:
        headers["Link"] = f'<{body["next"]}>; rel="next"'
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PageOut"}},
            "text/csv": {"schema": {"type": "string"}},
        },
        "description": "A page of RMAs (JSON), or the same rows as CSV with `Accept: text/csv`"
        " or `format=csv` (the next page in the `Link` header).",
    }
}


# ---------------------------------------------------------------- search
@router.get("/returns", response_model=PageOut, responses=CSV_RESPONSE)
def search_returns(
    principal: Staff,
    request: Request,
    status: Annotated[list[str] | None, Query(description="One or more statuses")] = None,
    created_from: Moment | None = None,
    created_to: Moment | None = None,
    updated_from: Moment | None = None,
    updated_to: Moment | None = None,
    customer_id: str | None = None,
    email: str | None = None,
    order_number: str | None = None,
    sku: str | None = None,
    serial: str | None = None,
    store_id: str | None = None,
    warehouse_id: str | None = None,
    rma_number: str | None = None,
    sort: Sort = "-updated_at",
    format: Literal["json", "csv"] | None = None,
    limit: Limit = None,
    offset: Offset = 0,
) -> Any:
    """RMAs matching every filter given (periods are inclusive: ``created_from`` ≤ created ≤
    ``created_to``), sorted and paginated; CSV with ``Accept: text/csv`` or ``format=csv``.
    Store keys see their store's RMAs, warehouse keys bound to a warehouse that warehouse's;
    the portal has ``/v1/my/returns``."""
    api = api_of(request)
    page = page_of(request, limit, offset)
    texts = (customer_id, email, order_number, sku, serial, store_id, warehouse_id, rma_number)
    if any("\x00" in t for t in (*texts, *(status or ())) if t is not None):
        raise invalid("a filter may not contain NUL")  # PostgreSQL text cannot hold one
    where = scoped(principal, store_id, warehouse_id)
    if status:
        known = {s.value for s in ReturnStatus}
        wrong = sorted({s for s in status if s not in known})
        if wrong:
            raise invalid(f"unknown status {', '.join(wrong)}; known: {', '.join(sorted(known))}")
        where.add("s.status = ANY(%(status)s)", status=list(dict.fromkeys(status)))
    for name, since, until, column in (
        ("created", created_from, created_to, "s.requested_at"),
        ("updated", updated_from, updated_to, "s.updated_at"),
    ):
        if since is not None and until is not None and since > until:
            raise invalid(f"{name}_from is after {name}_to")
        if since is not None:
            where.add(f"{column} >= %({name}_from)s", **{f"{name}_from": since})
        if until is not None:
            where.add(f"{column} <= %({name}_to)s", **{f"{name}_to": until})
    for value, condition in (
        (customer_id, "s.customer_id = %(customer_id)s"),
        (order_number, "s.order_number = %(order_number)s"),
        (rma_number, "s.rma_number = %(rma_number)s"),
        (sku, "s.lines @> jsonb_build_array(jsonb_build_object('sku', %(sku)s::text))"),
        (
            serial,
            "(s.return_id IN (SELECT aggregate_id FROM rm_serial_events WHERE serial ="
            " %(serial)s) OR s.rma_number IN (SELECT rma_number FROM rm_serial_events"
            " WHERE serial = %(serial)s AND rma_number IS NOT NULL))",
        ),
    ):
        if value is not None:
            if not value.strip():
                raise invalid("a filter may not be empty")
            where.parts.append(sql.SQL(condition))
    where.params.update(
        customer_id=customer_id,
        order_number=order_number,
        rma_number=rma_number,
        sku=sku,
        serial=serial,
    )
    if email is not None:
        if "@" not in email:
            raise invalid("email must be an e-mail address")
        where.add("s.order_number = ANY(%(orders)s)", orders=order_numbers_of_email(api, email))
    query = sql.SQL(
        "SELECT {columns} FROM rm_rma_status AS s WHERE {where} ORDER BY {sort}"
        " LIMIT %(_limit)s OFFSET %(_offset)s"
    ).format(columns=RMA_COLUMNS, where=where.sql(), sort=sql.SQL(SORTS[sort]))
    params = {**where.params, "_limit": page.limit + 1, "_offset": page.offset}
    body = paged(request, page, api.rows(query, params))
    if wants_csv(request, format):
        return csv_response(request, page, body)
    return body


# ---------------------------------------------------------------- named queues
@dataclass(frozen=True)
class Queue:
    """One named queue: rows joined to the RMA's row ``s``, their ``since`` (what the age is
    measured from) and what an item shows beyond the RMA's columns."""

    name: str
    description: str
    source: str
    condition: str
    since: str
    extra: str = ""
    params: Callable[[Request, dict[str, int | None]], dict[str, Any]] = lambda r, q: {}


def _pending_hours(request: Request, given: dict[str, int | None]) -> dict[str, Any]:
    hours = given.get("older_than_hours")
    return {"hours": api_of(request).settings.refund_pending_hours if hours is None else hours}


def _not_inspected_days(request: Request, given: dict[str, int | None]) -> dict[str, Any]:
    days = given.get("older_than_days")
    return {"days": api_of(request).settings.not_inspected_days if days is None else days}


RMAS = "rm_rma_status AS s"
REFUNDS = "rm_refunds AS r JOIN rm_rma_status AS s ON s.return_id = r.return_id"
LEGS = "rm_legs AS l JOIN rm_rma_status AS s ON s.return_id = l.return_id"
DISCREPANCIES = "rm_refund_discrepancies AS d JOIN rm_rma_status AS s ON s.return_id = d.return_id"
DISCREPANCY_COLUMNS = (
    ", d.id AS discrepancy_id, d.refund_id, d.payment_id, d.provider, d.kind AS"
    " discrepancy_kind, d.reason AS discrepancy_reason, d.provider_reference, d.amount AS"
    " claimed_amount, d.currency AS claimed_currency, d.expected AS expected_amount,"
    " d.expected_currency"
)
REFUND_COLUMNS = (
    ", r.refund_id, r.kind AS refund_kind, r.status AS refund_status, r.requested AS"
    " refund_requested, r.outstanding AS refund_outstanding, r.failure_reason,"
    " r.requested_at AS refund_requested_at, r.failed_at AS refund_failed_at"
)
LEG_COLUMNS = (
    ", l.leg_id, l.kind AS leg_kind, l.status AS leg_status, l.sku AS leg_sku,"
    " l.serial AS leg_serial, l.supplier, l.partner, l.reference, l.status_since"
)

QUEUES: dict[str, Queue] = {
    q.name: q
    for q in (
        Queue(
            "held_for_review",
            "RMAs the policy held for a person to approve or refuse (pending_review), by the"
            " time they were requested, each with the review_rules that held it and the"
            " review_reason.",
            RMAS,
            "s.status = 'pending_review'",
            "s.requested_at",
        ),
        Queue(
            "blind_unmatched",
            "Parcels that came with no known RMA and are not matched to an order yet, by"
            " arrival, each with its suggested_matches (as on /v1/blind-returns/{id}).",
            RMAS,
            "s.status = 'blind_unmatched'",
            "s.received_at",
        ),
        Queue(
            "refunds_failed",
            "Refunds the payment provider refused while their RMA still stands at"
            " refund_failed (a retried or re-routed refund leaves the queue), by failure time.",
            REFUNDS,
            "r.status = 'failed' AND s.status = 'refund_failed'",
            "r.failed_at",
            REFUND_COLUMNS,
        ),
        Queue(
            "refunds_pending",
            "Refunds requested at least `older_than_hours` ago (default: the deployment's"
            " OMS API setting refund_pending_hours, 48) and not yet settled or failed.",
            REFUNDS,
            "r.status = 'requested' AND r.requested_at <= now() - make_interval(hours =>"
            " %(hours)s)",
            "r.requested_at",
            REFUND_COLUMNS,
            _pending_hours,
        ),
        Queue(
            "repair_legs_open",
            "Items on an open repair leg (awaiting dispatch, at the repair centre, repaired"
            " and not restocked), by the time the leg opened.",
            LEGS,
            "l.open AND l.kind = 'repair'",
            "l.opened_at",
            LEG_COLUMNS,
        ),
        Queue(
            "vendor_legs_open",
            "Items on an open return-to-vendor leg (awaiting dispatch, at the vendor, awaiting"
            " credit), by the time the leg opened.",
            LEGS,
            "l.open AND l.kind = 'return_to_vendor'",
            "l.opened_at",
            LEG_COLUMNS,
        ),
        Queue(
            "not_inspected",
            "RMAs received at least `older_than_days` days ago (default: the deployment's"
            " not_inspected_days, 3) and still not inspected, by arrival.",
            RMAS,
            "s.status = 'received' AND s.inspected_at IS NULL AND s.received_at <= now() -"
            " make_interval(days => %(days)s)",
            "s.received_at",
            params=_not_inspected_days,
        ),
        Queue(
            "exceptions",
            "RMAs in the exception state (a settlement that cannot go on without a person),"
            " by their last change.",
            RMAS,
            "s.status = 'exception'",
            "s.updated_at",
        ),
        Queue(
            "discrepancies",
            "Settlements or settlement-file lines that disagreed with the refund instruction"
            " (another amount or currency, an unknown payment, a reversal), for finance to"
            " reconcile, by the time they were recorded (also /v1/refunds/discrepancies).",
            DISCREPANCIES,
            "true",
            "d.at",
            DISCREPANCY_COLUMNS,
        ),
    )
}
OlderThanHours = Annotated[
    int | None, Query(ge=0, le=24 * 365, description="refunds_pending only: hours")
]
OlderThanDays = Annotated[int | None, Query(ge=0, le=365, description="not_inspected only: days")]


def _queue_sql(queue: Queue, where: Where, select: str) -> sql.Composable:
    return sql.SQL("SELECT {select} FROM {source} WHERE ({condition}) AND {scope}").format(
        select=sql.SQL(select),
        source=sql.SQL(queue.source),
        condition=sql.SQL(queue.condition),
        scope=where.sql(),
    )


@router.get("/queues")
def queues(
    principal: Staff,
    request: Request,
    older_than_hours: OlderThanHours = None,
    older_than_days: OlderThanDays = None,
) -> dict[str, Any]:
    """Every named queue with its count and the age of its oldest item (``oldest_at`` and
    ``oldest_age_seconds``; null when empty), in the principal's scope."""
    api = api_of(request)
    given = {"older_than_hours": older_than_hours, "older_than_days": older_than_days}
    out = []
    for queue in QUEUES.values():
        where = scoped(principal, None, None)
        select = (
            f"count(*) AS count, min({queue.since}) AS oldest_at,"
            f" floor(extract(epoch FROM now() - min({queue.since})))::bigint"
            " AS oldest_age_seconds"
        )
        params = {**where.params, **queue.params(request, given)}
        rows = api.rows(_queue_sql(queue, where, select), params)
        found = rows[0] if rows else {"count": 0, "oldest_at": None, "oldest_age_seconds": None}
        out.append({"name": queue.name, "description": queue.description, **found})
    return {"queues": out}


@router.get("/queues/{name}", response_model=PageOut, responses=problem_responses(404))
def queue_items(
    principal: Staff,
    request: Request,
    name: Annotated[str, Path(description="A queue's name, as listed by /v1/queues")],
    older_than_hours: OlderThanHours = None,
    older_than_days: OlderThanDays = None,
    limit: Limit = None,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The queue's items, oldest first, each with ``since`` and ``age_seconds``."""
    queue = QUEUES.get(name)
    if queue is None:
        raise NotFound(f"no queue {name!r}; queues: {', '.join(QUEUES)}")
    api = api_of(request)
    page = page_of(request, limit, offset)
    where = scoped(principal, None, None)
    select = (
        f"{RMA_COLUMNS_SQL}{queue.extra}, {queue.since} AS since,"
        f" floor(extract(epoch FROM now() - {queue.since}))::bigint AS age_seconds"
    )
    query = sql.Composed(
        [
            _queue_sql(queue, where, select),
            sql.SQL(
                f" ORDER BY {queue.since} ASC NULLS LAST, s.return_id"
                " LIMIT %(_limit)s OFFSET %(_offset)s"
            ),
        ]
    )
    given = {"older_than_hours": older_than_hours, "older_than_days": older_than_days}
    params = {
        **where.params,
        **queue.params(request, given),
        "_limit": page.limit + 1,
        "_offset": page.offset,
    }
    items = api.rows(query, params)
    if queue.name == "blind_unmatched":
        _add_suggested_matches(api.service, items[: page.limit])
    if queue.name == "held_for_review":
        _add_review_holds(api.service, items[: page.limit])
    return paged(request, page, items)


def _add_suggested_matches(service: ReturnsService, items: list[dict[str, Any]]) -> None:
    """Each waiting parcel's ``suggested_matches``, as /v1/blind-returns/{id} shows them,
    read for the whole page at once (a parcel matched since the read model saw it: none)."""
    ids = [UUID(str(item["return_id"])) for item in items]
    found = service.blind_suggestions_of_page(ids)
    for item, return_id in zip(items, ids, strict=True):
        item["suggested_matches"] = found.get(return_id, [])


def _add_review_holds(service: ReturnsService, items: list[dict[str, Any]]) -> None:
    """Which review rules held each RMA and why, from the event store in one read per page
    (holds recorded before rules were named: an empty list, the reason in words)."""
    holds = service.review_holds_of_page([UUID(str(item["return_id"])) for item in items])
    for item in items:
        hold = holds.get(UUID(str(item["return_id"])), {})
        item["review_rules"] = hold.get("review_rules", [])
        item["review_reason"] = hold.get("review_reason")


# ---------------------------------------------------------------- the portal's lists
def _customer(request: Request) -> str:
    email = proven_customer(request)
    if not email:
        raise Problem(403, "not_owner", "give the customer's e-mail in X-Customer-Email")
    return email


@router.get("/my/returns", response_model=PageOut, openapi_extra=PORTAL_READ)
def my_returns(
    principal: Portal, request: Request, limit: Limit = None, offset: Offset = 0
) -> dict[str, Any]:
    """The RMAs of the orders of the customer the portal proved (``X-Customer-Email``),
    newest first."""
    api = api_of(request)
    page = page_of(request, limit, offset)
    numbers = order_numbers_of_email(api, _customer(request))
    query = sql.SQL(
        "SELECT {columns} FROM rm_rma_status AS s WHERE s.order_number = ANY(%(orders)s)"
        " ORDER BY s.requested_at DESC NULLS LAST, s.return_id"
        " LIMIT %(_limit)s OFFSET %(_offset)s"
    ).format(columns=RMA_COLUMNS)
    params = {"orders": numbers, "_limit": page.limit + 1, "_offset": page.offset}
    return paged(request, page, api.rows(query, params))


@router.get("/my/orders", response_model=PageOut, openapi_extra=PORTAL_READ)
def my_orders(
    principal: Portal, request: Request, limit: Limit = None, offset: Offset = 0
) -> dict[str, Any]:
    """The orders of the customer the portal proved (``X-Customer-Email``), each with its
    lines' returnable quantities, as ``GET /v1/orders/{order_number}`` shows them."""
    api = api_of(request)
    page = page_of(request, limit, offset)
    email = _customer(request)
    wanted = page.offset + page.limit + 1
    ids = api.service.lookups.orders_of_email(email, min(wanted, MAX_ORDERS_PER_EMAIL))
    views = []
    for order_id in ids[page.offset : page.offset + page.limit + 1]:
        number = api.service.order_number_of(order_id)
        if number is None:
            continue
        try:
            views.append(api.service.order_view(number))
        except NotFound:
            continue
    return paged(request, page, views)
