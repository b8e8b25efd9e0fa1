"""Serials on the read side: where each item is now, and sales of items we believed were in
repair, at a vendor or with another customer (projections/serials.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Request

from adapters.driven.readmodels.serials import flagged_sales, serial_life
from adapters.driving.api.auth import Allow, Principal, Role
from adapters.driving.api.context import Api, Limit, Offset, api_of, page_of, paged
from adapters.driving.api.models import PageOut
from adapters.driving.api.problems import problem_responses

router = APIRouter(prefix="/v1", tags=["orders"], responses=problem_responses(401, 403, 422))
# As the serial lookup (routes_orders.py), which shows one serial's life too.
# projections.serials.STATES, spelled out for OpenAPI (a test keeps them equal).
SerialState = Literal[
    "with_customer",
    "received",
    "in_stock",
    "quarantined",
    "in_repair",
    "at_vendor",
    "scrapped",
    "replaced",
]
SerialReaders = Annotated[
    Principal, Depends(Allow(Role.CUSTOMER_SERVICE, Role.STORE, Role.WAREHOUSE))
]


@router.get("/serials", response_model=PageOut)
def serials(
    principal: SerialReaders,
    request: Request,
    flagged: bool = False,
    state: SerialState | None = None,
    limit: Limit = None,
    offset: Offset = 0,
) -> dict[str, Any]:
    """``flagged=true``: sales of a serial that was in repair, at a vendor or with another
    customer and not returned, oldest first, each with its reason. Otherwise every serial
    with where it is now, or only those in ``state``."""
    page = page_of(request, limit, offset)
    api = api_of(request)
    with api.read() as conn:
        try:
            if flagged:
                rows = flagged_sales(conn, limit=page.limit + 1, offset=page.offset)
            else:
                rows = current_states(conn, state, page.limit + 1, page.offset)
        except psycopg.errors.UndefinedTable:
            rows = []
    return paged(request, page, rows)


def current_states(conn: Any, state: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    return [
        dict(zip(("serial", "state", "customer_id", "location_id", "since"), row, strict=True))
        | {"since": row[4].isoformat()}
        for row in conn.execute(
            "SELECT * FROM (SELECT DISTINCT ON (serial) serial, state,"
            " CASE WHEN state = 'with_customer' THEN customer_id END, location_id, at"
            " FROM rm_serial_events WHERE state IS NOT NULL"
            " ORDER BY serial, at DESC, position DESC, id DESC) AS s"
            " WHERE %(state)s::text IS NULL OR state = %(state)s"
            " ORDER BY serial LIMIT %(limit)s OFFSET %(offset)s",
            {"state": state, "limit": limit, "offset": offset},
        ).fetchall()
    ]


def life_of(api: Api, serial: str) -> dict[str, Any]:
    """The read model's part of a serial lookup: its current state, timeline and flags."""
    if "\x00" in serial:
        return {}  # no stored serial holds a NUL (PostgreSQL text)
    with api.read() as conn:
        try:
            return serial_life(conn, serial) or {}
        except psycopg.errors.UndefinedTable:
            return {}
