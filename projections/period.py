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
from projections.schema import (
    ITEMS_SOLD,
    RETURN_COSTS,
    RETURN_REASONS,
    Column,
    Table,
    counter,
    text,
)

_DAY = Column("day", "date", not_null=True)


def _by_day(table: Table, name: str) -> Table:
    """``table``'s columns with a UTC day in front of its key: the all-time table per day."""
    return Table(name, (_DAY, *table.columns), key=("day", *table.key))


DAILY_SOLD = _by_day(ITEMS_SOLD, "rm_daily_sold")
DAILY_RETURNS = _by_day(RETURN_REASONS, "rm_daily_returns")

DAILY_RMAS = Table(
    "rm_daily_rmas",
    (_DAY, text("dimension", not_null=True), text("value", not_null=True), counter("rmas")),
    key=("day", "dimension", "value"),
)

# The all-time costs are kept per supplier and SKU; per day they are also split by the
# other dimensions an analyst groups by.
_COST_KEY = ("reason", "sku", "supplier", "category", "channel", "currency")
DAILY_COSTS = Table(
    "rm_daily_return_costs",
    (
        _DAY,
        *(text(name, not_null=True) for name in _COST_KEY),
        *(column for column in RETURN_COSTS.columns if column.name not in RETURN_COSTS.key),
    ),
    key=("day", *_COST_KEY),
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
