"""Returns, sales and the cost of returns by UTC day: the read model behind analytics over
a chosen period (``GET /v1/analytics/returns`` and ``/costs``).

It folds the same rules as ``ReturnReasons`` (projections/reasons.py), by inheriting them,
and files each of its increments under a day: so the figures over every day add up to the
all-time tables, and one rule decides what is sold, returned and paid back.

- ``rm_daily_sold``: items sold per day placed x sku x supplier x category x channel; a
  cancellation takes its items off the day the order was placed.
- ``rm_daily_returns``: returned lines and items per day requested x reason x sku x supplier
  x category x channel; a rejection counts on the day its return was requested.
- ``rm_daily_rmas``: returns per day requested x dimension x value (a return with two lines
  of one reason counts once for that reason): distinct RMAs cannot be summed from lines.
- ``rm_daily_return_costs``: money per day it happened (refund settled, store credit issued,
  inspection, supplier credit) x reason x sku x supplier x category x channel x currency.
  Costs are booked by supplier and SKU, so a return's cost goes to its first line of that
  supplier and SKU (lines by number); costs of a blind parcel not yet matched are "unknown".
"""

from __future__ import annotations

from datetime import date
from typing import Any

from projections.core import Change, Event, Increment, State, day_of
from projections.reasons import COSTS, REASONS, SOLD, UNKNOWN, ReturnReasons
from projections.schema import Column, Table, amount, counter, text

_DAY = Column("day", "date", not_null=True)

DAILY_SOLD = Table(
    "rm_daily_sold",
    (
        _DAY,
        text("sku", not_null=True),
        text("supplier", not_null=True),
        text("category", not_null=True),
        text("channel", not_null=True),
        counter("items"),
        counter("order_lines"),
    ),
    key=("day", "sku", "supplier", "category", "channel"),
)

DAILY_RETURNS = Table(
    "rm_daily_returns",
    (
        _DAY,
        text("reason", not_null=True),
        text("sku", not_null=True),
        text("supplier", not_null=True),
        text("category", not_null=True),
        text("channel", not_null=True),
        counter("returns"),
        counter("items"),
        counter("rejected"),
    ),
    key=("day", "reason", "sku", "supplier", "category", "channel"),
)

DAILY_RMAS = Table(
    "rm_daily_rmas",
    (_DAY, text("dimension", not_null=True), text("value", not_null=True), counter("rmas")),
    key=("day", "dimension", "value"),
)

DAILY_COSTS = Table(
    "rm_daily_return_costs",
    (
        _DAY,
        text("reason", not_null=True),
        text("sku", not_null=True),
        text("supplier", not_null=True),
        text("category", not_null=True),
        text("channel", not_null=True),
        text("currency", not_null=True),
        amount("refunded"),
        amount("restocking_fees_kept"),
        counter("scrapped_items"),
        amount("scrapped_value"),
        counter("open_repair_legs"),
        counter("open_vendor_legs"),
        amount("supplier_credits"),
    ),
    key=("day", "reason", "sku", "supplier", "category", "channel", "currency"),
)

DIMENSIONS = ("reason", "sku", "supplier", "category", "channel")
_RETURNED = frozenset({"rma.requested", "rma.blind_return_matched", "rma.in_store_return_recorded"})


class PeriodAnalytics(ReturnReasons):
    name = "period_analytics"

    @property
    def tables(self) -> tuple[Table, ...]:
        return (DAILY_SOLD, DAILY_RETURNS, DAILY_RMAS, DAILY_COSTS)

    def fold(self, state: State, event: Event, out: list[Change]) -> None:
        produced: list[Change] = []
        super().fold(state, event, produced)
        today = day_of(event.time).isoformat()
        if event.type == "order.placed":
            state["placed_day"] = today
        elif event.type in _RETURNED:
            state["returned_day"] = today
            self._rmas(state, today, out)
        for change in produced:
            out.append(self._by_day(state, today, change))

    def _by_day(self, state: State, today: str, change: Change) -> Change:
        if not isinstance(change, Increment):  # the inherited rules only ever increment
            raise TypeError(f"{self.name}: unexpected change {change!r}")
        if change.table == SOLD:
            day = state.get("placed_day", today)
            return Increment(DAILY_SOLD.name, {"day": _date(day), **change.key}, change.deltas)
        if change.table == REASONS:
            day = state.get("returned_day", today)
            return Increment(DAILY_RETURNS.name, {"day": _date(day), **change.key}, change.deltas)
        if change.table == COSTS:
            line = _line_of(state, str(change.key["supplier"]), str(change.key["sku"]))
            key = {
                "day": _date(today),
                **change.key,
                "reason": line.get("reason", UNKNOWN),
                "category": line.get("category", UNKNOWN),
                "channel": state.get("channel", UNKNOWN) if line else UNKNOWN,
            }
            return Increment(DAILY_COSTS.name, key, change.deltas)
        raise TypeError(f"{self.name}: unexpected table {change.table}")

    @staticmethod
    def _rmas(state: State, today: str, out: list[Change]) -> None:
        lines = state.get("lines", {}).values()
        values = {d: {str(line[d]) for line in lines} for d in DIMENSIONS if d != "channel"}
        values["channel"] = {str(state["channel"])}
        for dimension, distinct in values.items():
            for value in sorted(distinct):
                key = {"day": _date(today), "dimension": dimension, "value": value}
                out.append(Increment(DAILY_RMAS.name, key, {"rmas": 1}))


def _date(day: str) -> date:
    return date.fromisoformat(day)


def _line_of(state: State, supplier: str, sku: str) -> dict[str, Any]:
    lines = state.get("lines", {})
    for line_no in sorted(lines, key=int):
        line: dict[str, Any] = lines[line_no]
        if line["supplier"] == supplier and line["sku"] == sku:
            return line
    return {}
