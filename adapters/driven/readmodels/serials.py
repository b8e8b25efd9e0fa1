"""A serial's life read from its timeline (projections/serials.py): the entries in time
order, where the item is now, and the sales that should not have happened."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from adapters.driven.readmodels.base import Conn
from adapters.driven.readmodels.writer import jsonable
from projections.serials import FLAGGED_STATES, SALES, WITH_CUSTOMER

ORDER = "ORDER BY at, position, id"

# The state before each sale: the latest earlier entry that set one, in the timeline's order.
_FLAGGED = f"""
SELECT s.serial, s.kind, s.order_number, s.customer_id, s.location_id, s.at, s.event_type,
       s.aggregate_id, b.state AS state_before, b.customer_id AS customer_before,
       b.location_id AS location_before, b.order_number AS order_before,
       b.rma_number AS rma_before
FROM rm_serial_events AS s
CROSS JOIN LATERAL (
    SELECT p.state, p.customer_id, p.location_id, p.order_number, p.rma_number
    FROM rm_serial_events AS p
    WHERE p.serial = s.serial AND p.state IS NOT NULL
      AND (p.at, p.position, p.id) < (s.at, s.position, s.id)
    ORDER BY p.at DESC, p.position DESC, p.id DESC LIMIT 1) AS b
WHERE s.kind = ANY(%(sales)s) AND (%(serial)s::text IS NULL OR s.serial = %(serial)s)
  AND (b.state = ANY(%(flagged)s)
       OR (b.state = '{WITH_CUSTOMER}' AND b.customer_id IS DISTINCT FROM s.customer_id))
ORDER BY s.at, s.position, s.id"""


def flag_reason(row: dict[str, Any]) -> str:
    if row["state_before"] == WITH_CUSTOMER:
        return f"sold while with customer {row['customer_before']} and not returned"
    return f"sold while {row['state_before'].replace('_', ' ')}"


def flagged_sales(
    conn: Conn, serial: str | None = None, limit: int = 1000, offset: int = 0
) -> list[dict[str, Any]]:
    """Sales of a serial we believed was in repair, at a vendor or with another customer."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"{_FLAGGED} LIMIT %(limit)s OFFSET %(offset)s".encode(),
            {
                "sales": list(SALES),
                "flagged": list(FLAGGED_STATES),
                "serial": serial,
                "limit": limit,
                "offset": offset,
            },
        )
        return [{**jsonable(row), "reason": flag_reason(row)} for row in cur.fetchall()]


def serial_life(conn: Conn, serial: str) -> dict[str, Any] | None:
    """The timeline of one serial, its current state and its flagged sales; None: unknown."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT kind, state, customer_id, location_id, order_number, rma_number,"
            " event_type, aggregate_id, at, summary"
            f" FROM rm_serial_events WHERE serial = %s {ORDER}".encode(),
            [serial],
        )
        timeline = [jsonable(row) for row in cur.fetchall()]
    if not timeline:
        return None
    current: dict[str, Any] = {"state": None}
    for entry in timeline:
        if entry["state"] is not None:
            current = {
                "state": entry["state"],
                "customer_id": entry["customer_id"] if entry["state"] == WITH_CUSTOMER else None,
                "location_id": entry["location_id"],
                "since": entry["at"],
            }
    return {
        "current": current,
        "timeline": timeline,
        "flags": flagged_sales(conn, serial),
    }
