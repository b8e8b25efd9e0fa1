"""Analytics over a period of UTC days, from the daily read models (projections/period.py).

Each query is a range scan of a table whose key starts with the day, summed in PostgreSQL;
the figures leave as the API states them: counts as integers, money as decimal strings at
its currency's scale, rates as decimal strings with 4 places.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from psycopg import sql

from domain.currencies import MINOR_UNITS

GroupBy = Literal["reason", "sku", "supplier", "category", "channel"]
Rows = Callable[[sql.Composable, dict[str, Any]], list[dict[str, Any]]]
"""Runs a query and returns its rows (empty when a table is not created yet)."""

RATE = Decimal("0.0001")
MAX_DAYS = 366


class BadPeriod(ValueError):
    """A period that cannot be asked for: its start after its end, or too long."""


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise BadPeriod(f"from {self.start} is after to {self.end}")
        if self.days > MAX_DAYS:
            raise BadPeriod(f"a period spans at most {MAX_DAYS} days, this one {self.days}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def params(self) -> dict[str, Any]:
        return {"from": self.start, "to": self.end}


def rate(part: int, whole: int) -> str | None:
    """``part / whole`` to 4 places (half to even); none when nothing was sold."""
    if whole <= 0:
        return None
    return str((Decimal(part) / Decimal(whole)).quantize(RATE, rounding=ROUND_HALF_EVEN))


def money(value: Any, currency: str) -> str:
    amount = Decimal(value or 0)
    exponent = MINOR_UNITS.get(currency)
    if exponent is not None:
        amount = amount.quantize(Decimal(1).scaleb(-exponent))
    return str(amount)


# ---------------------------------------------------------------- returns
_IN_PERIOD = sql.SQL("day BETWEEN %(from)s AND %(to)s")


def returns(rows: Rows, period: Period, group_by: GroupBy | None) -> dict[str, Any]:
    """Returns requested in the period (RMAs, lines, units, refused lines) and units sold
    in it, in total and per value of ``group_by`` that had a return."""
    params = period.params()
    totals = rows(
        sql.SQL(
            "SELECT (SELECT coalesce(sum(rmas), 0) FROM rm_daily_rmas WHERE {p}"
            "   AND dimension = 'channel') AS rmas,"
            " (SELECT coalesce(sum(returns), 0) FROM rm_daily_returns WHERE {p}) AS lines,"
            " (SELECT coalesce(sum(items), 0) FROM rm_daily_returns WHERE {p}) AS units,"
            " (SELECT coalesce(sum(rejected), 0) FROM rm_daily_returns WHERE {p}) AS rejected,"
            " (SELECT coalesce(sum(items), 0) FROM rm_daily_sold WHERE {p}) AS sold"
        ).format(p=_IN_PERIOD),
        params,
    )
    total = _returns_row(totals[0] if totals else {})
    groups: list[dict[str, Any]] = []
    if group_by is not None:
        by = sql.Identifier(group_by)
        # Sales have no reason: each reason's rate is over every unit sold in the period.
        sold = (
            sql.SQL("(SELECT NULL::text AS key, NULL::numeric AS sold WHERE false)")
            if group_by == "reason"
            else sql.SQL(
                "(SELECT {by} AS key, sum(items) AS sold FROM rm_daily_sold WHERE {p}"
                " GROUP BY {by})"
            ).format(by=by, p=_IN_PERIOD)
        )
        found = rows(
            sql.SQL(
                "WITH r AS (SELECT {by} AS key, sum(returns) AS lines, sum(items) AS units,"
                "   sum(rejected) AS rejected FROM rm_daily_returns WHERE {p} GROUP BY {by}),"
                " m AS (SELECT value AS key, sum(rmas) AS rmas FROM rm_daily_rmas"
                "   WHERE {p} AND dimension = %(dimension)s GROUP BY value),"
                " s AS {sold}"
                " SELECT r.key, m.rmas, r.lines, r.units, r.rejected, s.sold"
                " FROM r LEFT JOIN m USING (key) LEFT JOIN s USING (key)"
                " ORDER BY r.units DESC, r.key"
            ).format(by=by, p=_IN_PERIOD, sold=sold),
            {**params, "dimension": group_by},
        )
        for row in found:
            if group_by == "reason":
                row = {**row, "sold": total["sold_units"]}
            groups.append({"key": row["key"], **_returns_row(row)})
    return {
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
        "group_by": group_by,
        "totals": total,
        "groups": groups,
    }


def _returns_row(row: Mapping[str, Any]) -> dict[str, Any]:
    units, sold = int(row.get("units") or 0), int(row.get("sold") or 0)
    return {
        "rmas": int(row.get("rmas") or 0),
        "lines": int(row.get("lines") or 0),
        "units": units,
        "rejected_lines": int(row.get("rejected") or 0),
        "sold_units": sold,
        "return_rate": rate(units, sold),
    }


# ---------------------------------------------------------------- costs
def costs(rows: Rows, period: Period, group_by: GroupBy | None) -> dict[str, Any]:
    """What returns cost in the period, per currency (and per value of ``group_by``)."""
    params = period.params()
    sums = sql.SQL(
        "sum(refunded) AS refunded, sum(restocking_fees_kept) AS fees_kept,"
        " sum(scrapped_items) AS scrapped_units, sum(scrapped_value) AS scrapped_value,"
        " sum(supplier_credits) AS supplier_credits"
    )
    totals = rows(
        sql.SQL(
            "SELECT currency, {sums} FROM rm_daily_return_costs WHERE {p}"
            " GROUP BY currency ORDER BY currency"
        ).format(sums=sums, p=_IN_PERIOD),
        params,
    )
    groups: list[dict[str, Any]] = []
    if group_by is not None:
        by = sql.Identifier(group_by)
        found = rows(
            sql.SQL(
                "SELECT {by} AS key, currency, {sums} FROM rm_daily_return_costs WHERE {p}"
                " GROUP BY {by}, currency ORDER BY currency, {by}"
            ).format(by=by, sums=sums, p=_IN_PERIOD),
            params,
        )
        groups = [{"key": row["key"], **_costs_row(row)} for row in found]
        groups.sort(key=lambda g: (g["currency"], -Decimal(g["net_cost"]), g["key"]))
    return {
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
        "group_by": group_by,
        "totals": [_costs_row(row) for row in totals],
        "groups": groups,
    }


def _costs_row(row: Mapping[str, Any]) -> dict[str, Any]:
    currency = str(row["currency"])
    refunded = Decimal(row.get("refunded") or 0)
    scrapped = Decimal(row.get("scrapped_value") or 0)
    credits = Decimal(row.get("supplier_credits") or 0)
    return {
        "currency": currency,
        "refunded": money(refunded, currency),
        "fees_kept": money(row.get("fees_kept"), currency),
        "scrapped_units": int(row.get("scrapped_units") or 0),
        "scrapped_value": money(scrapped, currency),
        "supplier_credits": money(credits, currency),
        # Refunds are paid net of the fees kept: counting the fees again would be twice.
        "net_cost": money(refunded + scrapped - credits, currency),
    }
