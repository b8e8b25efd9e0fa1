"""Queries over the read models: stock at a moment, return rates, unbalanced refunds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from adapters.driven.readmodels.base import Conn
from adapters.driven.readmodels.writer import jsonable
from projections.schema import BUCKETS, Bucket

ATP = "available_to_promise"


# ---------------------------------------------------------------- queries
def stock_at(conn: Conn, sku: str, location_id: str, at: datetime) -> dict[str, int]:
    """Every bucket of a SKU at a location as it stood at ``at``, in one query.

    Same rule as the live level (projections/stock.py), as known now: the latest count taken
    by ``at``, plus every available movement that happened after it and by ``at``, in
    (time, event-store position) order; other buckets are sums. A count reported late
    answers for the moments after it was taken, later movements included.
    """
    rows = conn.execute(
        """
        WITH m AS (
            SELECT bucket, delta, counted, kind, position, at FROM rm_stock_movements
            WHERE sku = %(sku)s AND location_id = %(location)s AND at <= %(at)s),
        c AS (SELECT counted, at, position FROM m WHERE kind = 'count'
              ORDER BY at DESC, position DESC LIMIT 1)
        SELECT m.bucket,
               coalesce(sum(m.delta) FILTER (WHERE m.kind <> 'count' AND (m.bucket <> 'available'
                   OR NOT EXISTS (SELECT 1 FROM c)
                   OR (m.at, m.position) > (SELECT at, position FROM c))), 0) AS moved,
               (SELECT counted FROM c) AS counted
        FROM m GROUP BY m.bucket""",
        {"sku": sku, "location": location_id, "at": at},
    ).fetchall()
    levels = empty_stock_levels()
    for bucket, moved, counted in rows:
        levels[bucket] = int(moved) + (int(counted) if bucket == "available" and counted else 0)
    levels[ATP] = levels[Bucket.AVAILABLE] - levels[Bucket.RESERVED]
    return levels


def empty_stock_levels() -> dict[str, int]:
    """Every stock bucket at zero: what a SKU and location never seen hold (and the live
    row's derived ``available_to_promise``, so both views have the same fields)."""
    return dict.fromkeys((*BUCKETS, ATP), 0)


def return_rates(conn: Conn) -> list[dict[str, Any]]:
    """Items sold and returned per sku, supplier, category and sales channel."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT s.sku, s.supplier, s.category, s.channel, s.items AS items_sold,
                   coalesce(r.items, 0)::bigint AS items_returned,
                   CASE WHEN s.items > 0 THEN round(coalesce(r.items, 0)::numeric / s.items, 4)
                   END AS return_rate
            FROM rm_items_sold s LEFT JOIN (
                SELECT sku, supplier, category, channel, sum(items) AS items
                FROM rm_return_reasons GROUP BY sku, supplier, category, channel) r
              USING (sku, supplier, category, channel)
            ORDER BY s.sku, s.supplier, s.category, s.channel"""
        )
        return [jsonable(row) for row in cur.fetchall()]


def unbalanced_refunds(conn: Conn) -> list[dict[str, Any]]:
    """Refunds whose ledger lines do not balance (the invariant says: none)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT refund_id, currency, sum(debit) AS debit, sum(credit) AS credit"
            " FROM rm_ledger_lines GROUP BY refund_id, currency HAVING sum(debit) <> sum(credit)"
        )
        return [jsonable(row) for row in cur.fetchall()]
