"""Analytics: returns, return rates and the cost of returns over a chosen period, as tables
and bar charts drawn on the server as inline SVG (no script, nothing to build), from the
same queries as ``/v1/analytics/returns`` and ``/v1/analytics/costs``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, cast, get_args

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse

from adapters.driven.readmodels import analytics
from adapters.driven.readmodels.analytics import BadPeriod, GroupBy, Period
from adapters.driving.api.auth import Role
from adapters.driving.api.context import api_of
from adapters.driving.console.sessions import Staff
from adapters.driving.console.web import StaffOnly, add_navigation, render

router = APIRouter(prefix="/console", include_in_schema=False)

Readers = Annotated[Staff, Depends(StaffOnly(Role.ANALYTICS, Role.CUSTOMER_SERVICE))]
for _role in (Role.ANALYTICS, Role.CUSTOMER_SERVICE):
    add_navigation(_role, "/console/analytics", "Analytics")

GROUPS: tuple[tuple[str, str], ...] = tuple(
    (name, name.capitalize() if name != "sku" else "SKU") for name in get_args(GroupBy)
)
DEFAULT_DAYS = 30
CHART_ROWS = 12
BAR_WIDTH = 360  # px of the longest bar


@dataclass(frozen=True, slots=True)
class Bar:
    """One row of a bar chart: its label, the value written beside it, the bar's length."""

    label: str
    text: str
    width: int
    y: int


def bars(rows: list[tuple[str, Decimal, str]]) -> list[Bar]:
    """The first ``CHART_ROWS`` rows as bars scaled to the largest value (negative values,
    a net gain, draw no bar)."""
    shown = rows[:CHART_ROWS]
    largest = max((value for _, value, _ in shown), default=Decimal(0))
    result = []
    for index, (label, value, text) in enumerate(shown):
        width = int(BAR_WIDTH * value / largest) if largest > 0 and value > 0 else 0
        result.append(Bar(label, text, max(width, 1 if value > 0 else 0), index * 26))
    return result


def percent(rate: str | None) -> str:
    return "no sales" if rate is None else f"{Decimal(rate) * 100:.1f} %"


def _day(value: str | None, name: str, errors: dict[str, str]) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        errors[name] = "a date such as 2026-11-21"
        return None


@router.get("/analytics", response_class=HTMLResponse)
def analytics_page(
    request: Request,
    staff: Readers,
    start: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    group_by: str | None = None,
) -> Response:
    today = datetime.now(UTC).date()
    raw = {
        "from": start or "",
        "to": to or "",
        "group_by": group_by or "reason",
    }
    errors: dict[str, str] = {}
    first = _day(raw["from"], "from", errors) or today - timedelta(days=DEFAULT_DAYS - 1)
    last = _day(raw["to"], "to", errors) or today
    by = cast(GroupBy, raw["group_by"]) if raw["group_by"] in dict(GROUPS) else None
    if by is None:
        errors["group_by"] = "choose one of the listed dimensions"
    values = {"from": first.isoformat(), "to": last.isoformat(), "group_by": by or "reason"}
    context: dict[str, Any] = {"groups": GROUPS, "by_label": dict(GROUPS).get(by or "", "")}
    if not errors:
        try:
            period = Period(first, last)
        except BadPeriod as error:
            errors["to"] = str(error)
        else:
            context.update(_figures(request, period, by))
    if errors:
        values.update({k: v for k, v in raw.items() if k in errors})
    return render(
        request,
        staff,
        "analytics.html",
        status_code=422 if errors else 200,
        errors=errors,
        values=values,
        percent=percent,
        **context,
    )


def _figures(request: Request, period: Period, by: GroupBy | None) -> dict[str, Any]:
    rows = api_of(request).rows
    returns = analytics.returns(rows, period, by)
    costs = analytics.costs(rows, period, by)
    return_bars = bars(
        [
            (g["key"], Decimal(g["units"]), f"{g['units']} · {percent(g['return_rate'])}")
            for g in returns["groups"]
        ]
    )
    cost_charts = [
        (
            total["currency"],
            bars(
                [
                    (g["key"], Decimal(g["net_cost"]), f"{g['net_cost']} {g['currency']}")
                    for g in costs["groups"]
                    if g["currency"] == total["currency"]
                ]
            ),
        )
        for total in costs["totals"]
    ]
    return {
        "period": period,
        "returns": returns,
        "costs": costs,
        "return_bars": return_bars,
        "cost_charts": cost_charts,
        "bar_width": BAR_WIDTH,
    }
