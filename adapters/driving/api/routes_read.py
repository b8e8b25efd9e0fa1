"""The read side for people and analytics: stock, customers, refund ledger, return reasons,
lag. Served from the projections' tables, so it trails the event store by the lag."""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Request
from psycopg import sql

from adapters.driven.readmodels.positions import projection_lag
from adapters.driven.readmodels.queries import empty_stock_levels, return_rates, stock_at
from adapters.driven.relay import lag as relay_lag
from adapters.driving.api.auth import Allow, Principal, Role
from adapters.driving.api.context import Api, Day, Limit, Moment, Offset, api_of, page_of, paged
from adapters.driving.api.models import PageOut
from adapters.driving.api.problems import problem_responses
from domain.errors import NotFound
from projections import default_projections

router = APIRouter(prefix="/v1", tags=["read side"], responses=problem_responses(401, 403, 422))
CS, AN, WH = Role.CUSTOMER_SERVICE, Role.ANALYTICS, Role.WAREHOUSE
Stock = Annotated[Principal, Depends(Allow(CS, AN, WH))]
People = Annotated[Principal, Depends(Allow(CS, AN))]
Analysts = Annotated[Principal, Depends(Allow(AN))]


def _list(
    request: Request, query: sql.Composable, params: dict[str, Any], limit: int | None, offset: int
) -> dict[str, Any]:
    page = page_of(request, limit, offset)
    paging = sql.SQL(" LIMIT %(_limit)s OFFSET %(_offset)s")
    rows = api_of(request).rows(
        sql.Composed([query, paging]), {**params, "_limit": page.limit + 1, "_offset": page.offset}
    )
    return paged(request, page, rows)


@router.get("/stock", response_model=PageOut)
def stock_levels(
    principal: Stock,
    request: Request,
    sku: str | None = None,
    location_id: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Current stock per SKU and location, with returns expected and in quarantine, units
    reserved for exchange replacements and what is available to promise."""
    query = sql.SQL(
        "SELECT * FROM rm_stock_levels WHERE (%(sku)s::text IS NULL OR sku = %(sku)s)"
        " AND (%(loc)s::text IS NULL OR location_id = %(loc)s) ORDER BY sku, location_id"
    )
    return _list(request, query, {"sku": sku, "loc": location_id}, limit, offset)


@router.get("/stock/{sku}/{location_id}", responses=problem_responses(404))
def stock_of(
    principal: Stock, sku: str, location_id: str, request: Request, at: Moment | None = None
) -> dict[str, Any]:
    """One SKU at one location: now, or as it stood at ``at`` (RFC 3339)."""
    api = api_of(request)
    if at is None:
        rows = api.rows(
            "SELECT * FROM rm_stock_levels WHERE sku = %s AND location_id = %s", [sku, location_id]
        )
        if not rows:
            raise NotFound(f"no stock known for {sku} at {location_id}")
        return rows[0]
    if "\x00" in sku + location_id:
        levels = empty_stock_levels()  # no stored SKU or location holds a NUL (PostgreSQL text)
    else:
        with api.read() as conn:
            try:
                levels = stock_at(conn, sku, location_id, at)
            except psycopg.errors.UndefinedTable:
                levels = empty_stock_levels()
    return {"sku": sku, "location_id": location_id, "at": at.isoformat(), **levels}


@router.get("/customers/{customer_id}", responses=problem_responses(404))
def customer_history(
    principal: People, customer_id: str, request: Request, limit: Limit = None, offset: Offset = 0
) -> dict[str, Any]:
    """Counts, money and flags of a customer, with a page of their timeline."""
    api = api_of(request)
    summary = api.rows("SELECT * FROM rm_customers WHERE customer_id = %s", [customer_id])
    if not summary:
        raise NotFound(f"customer {customer_id} is unknown to the read model")
    money = api.rows(
        "SELECT * FROM rm_customer_money WHERE customer_id = %s ORDER BY currency", [customer_id]
    )
    timeline = _list(
        request,
        sql.SQL(
            "SELECT aggregate_id, event_type, at, summary FROM rm_customer_timeline"
            " WHERE customer_id = %(c)s ORDER BY at, position"
        ),
        {"c": customer_id},
        limit,
        offset,
    )
    return {**summary[0], "money": money, "timeline": timeline}


@router.get("/ledger/balances", response_model=PageOut)
def ledger_balances(
    principal: Analysts,
    request: Request,
    account: str | None = None,
    since: Day | None = None,
    until: Day | None = None,
    by_day: bool = False,
    limit: Limit = None,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Refund-ledger balances per account and currency (per day with ``by_day``)."""
    day = sql.SQL(", day") if by_day else sql.SQL("")
    query = sql.SQL(
        "SELECT account, currency{day}, sum(debit) AS debit, sum(credit) AS credit,"
        " sum(balance) AS balance FROM rm_ledger_balances"
        " WHERE (%(a)s::text IS NULL OR account = %(a)s)"
        " AND (%(s)s::date IS NULL OR day >= %(s)s) AND (%(u)s::date IS NULL OR day <= %(u)s)"
        " GROUP BY account, currency{day} ORDER BY account, currency{day}"
    ).format(day=day)
    return _list(request, query, {"a": account, "s": since, "u": until}, limit, offset)


@router.get("/refunds", response_model=PageOut)
def refunds(
    principal: People,
    request: Request,
    return_id: str | None = None,
    status: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Refunds and store credit with what is settled, failed and outstanding."""
    query = sql.SQL(
        "SELECT * FROM rm_refunds WHERE (%(r)s::text IS NULL OR return_id = %(r)s)"
        " AND (%(st)s::text IS NULL OR status = %(st)s) ORDER BY requested_at, refund_id"
    )
    return _list(request, query, {"r": return_id, "st": status}, limit, offset)


@router.get("/analytics/return-reasons", response_model=PageOut)
def return_reasons(
    principal: People,
    request: Request,
    by: Literal["reason", "sku", "supplier", "category", "channel"] = "reason",
    reason: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Returns, items and refusals counted by reason, SKU, supplier, category or channel."""
    query = sql.SQL(
        "SELECT {by}, sum(returns) AS returns, sum(items) AS items, sum(rejected) AS rejected"
        " FROM rm_return_reasons WHERE (%(r)s::text IS NULL OR reason = %(r)s)"
        " GROUP BY {by} ORDER BY sum(items) DESC, {by}"
    ).format(by=sql.Identifier(by))
    return _list(request, query, {"r": reason}, limit, offset)


@router.get("/analytics/return-rates", response_model=PageOut)
def rates(
    principal: People, request: Request, limit: Limit = None, offset: Offset = 0
) -> dict[str, Any]:
    """Items sold and returned, and the return rate, per SKU, supplier, category, channel."""
    page = page_of(request, limit, offset)
    with api_of(request).read() as conn:
        try:
            rows = return_rates(conn)
        except psycopg.errors.UndefinedTable:
            rows = []
    return paged(request, page, rows[page.offset : page.offset + page.limit + 1])


@router.get("/lag")
def lag(principal: Analysts, request: Request) -> dict[str, Any]:
    """How far the relay and each projection trail the event store (in events)."""
    return lag_report(api_of(request))


def lag_report(api: Api) -> dict[str, Any]:
    report: dict[str, Any] = {"relay": None, "projections": []}
    with suppress(psycopg.Error):  # the relay may never have run against this database
        report["relay"] = relay_lag(api.read_url, api.settings.relay_name)
    with api.read() as conn:
        for projection in default_projections():
            try:
                report["projections"].append(projection_lag(conn, projection))
            except psycopg.Error:
                report["projections"].append({"projection": projection.name, "events_behind": None})
    return report
