"""Analytics by day: each figure filed under the day it happened, adding up to the all-time
tables of the return reasons."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.core import InMemoryReadModel
from projections.period import PeriodAnalytics
from projections.reasons import ReturnReasons
from tests.unit.period_stories import DAY0, EVENTS, history, on_day, reference


def rows(model: InMemoryReadModel, table: str, **match: Any) -> list[dict[str, Any]]:
    return [row for row in model.rows(table) if all(row.get(k) == v for k, v in match.items())]


def total(model: InMemoryReadModel, table: str, column: str, **match: Any) -> Any:
    return sum(row.get(column, 0) for row in rows(model, table, **match))


def test_each_figure_is_filed_under_the_day_it_happened() -> None:
    model = InMemoryReadModel(PeriodAnalytics())
    model.apply(reference().events)

    sold = rows(model, "rm_daily_sold", sku="SKU-A")
    # The cancelled order's 9 items leave the day it was placed, not the day it was cancelled.
    assert [(r["day"], r["items"]) for r in sold] == [(DAY0, 4)]
    returned = {
        (r["day"], r["reason"], r["sku"], r["items"], r.get("rejected", 0))
        for r in model.rows("rm_daily_returns")
    }
    assert returned == {
        (on_day(2), "defective", "SKU-A", 3, 0),
        (on_day(2), "defective", "SKU-B", 1, 0),
        # The refusal (day 4) counts with the return it refused, on the day it was requested.
        (on_day(3), "changed_mind", "SKU-B", 1, 1),
    }
    costs = {(r["day"], r["sku"]): r for r in rows(model, "rm_daily_return_costs")}
    # 97.00 paid back, spread over the return's lines by value (90.00 and 10.00); the fee
    # of line 1 kept when the refund carrying it settled.
    assert costs[on_day(6), "SKU-A"]["refunded"] == Decimal("87.30")
    assert costs[on_day(6), "SKU-A"]["restocking_fees_kept"] == Decimal("3.00")
    assert costs[on_day(6), "SKU-B"]["refunded"] == Decimal("9.70")
    assert costs[on_day(7), "SKU-A"]["scrapped_value"] == Decimal("30.00")
    assert costs[on_day(9), "SKU-A"]["supplier_credits"] == Decimal("12.50")
    assert {(r["sku"], r["reason"], r["category"], r["channel"]) for r in costs.values()} == {
        ("SKU-A", "defective", "shoes", "web"),
        ("SKU-B", "defective", "socks", "web"),
    }


def test_a_return_counts_once_per_value_of_each_dimension() -> None:
    model = InMemoryReadModel(PeriodAnalytics())
    model.apply(history([0] * EVENTS).events)
    rmas = {(r["dimension"], r["value"]): r["rmas"] for r in model.rows("rm_daily_rmas")}
    # The first return's two lines share a reason: one return for it; the second return
    # is SKU-B's second.
    assert rmas == {
        ("reason", "defective"): 1,
        ("reason", "changed_mind"): 1,
        ("sku", "SKU-A"): 1,
        ("sku", "SKU-B"): 2,
        ("supplier", "Acme"): 1,
        ("supplier", "Bolt"): 2,
        ("category", "shoes"): 1,
        ("category", "socks"): 2,
        ("channel", "web"): 2,
    }


def test_a_replayed_history_changes_nothing_twice() -> None:
    story = reference()
    model = InMemoryReadModel(PeriodAnalytics())
    model.apply(story.events)
    before = {name: model.rows(name) for name in model.tables}
    model.apply(story.events)
    model.apply(story.events[3:6])
    assert {name: model.rows(name) for name in model.tables} == before


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.integers(0, 40), min_size=EVENTS, max_size=EVENTS),
    quantity=st.integers(1, 5),
    cents=st.integers(1, 10**7),
    credit_cents=st.integers(0, 10**6),
)
def test_the_days_add_up_to_the_all_time_figures(
    steps: list[int], quantity: int, cents: int, credit_cents: int
) -> None:
    days = [sum(steps[: i + 1]) for i in range(EVENTS)]
    price, credit = str(Decimal(cents) / 100), str(Decimal(credit_cents) / 100)
    story = history(days, quantity=quantity, price=price, credit=credit)
    daily, all_time = InMemoryReadModel(PeriodAnalytics()), InMemoryReadModel(ReturnReasons())
    daily.apply(story.events)
    all_time.apply(story.events)

    def summed(model: InMemoryReadModel, table: str, keys: tuple[str, ...]) -> dict[Any, Any]:
        sums: dict[Any, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
        for row in model.rows(table):
            for column, value in row.items():
                if column not in (*keys, "day", "reason", "category", "channel"):
                    sums[tuple(row[k] for k in keys)][column] += value
        return {k: dict(v) for k, v in sums.items()}

    costs = ("supplier", "sku", "currency")
    assert summed(daily, "rm_daily_return_costs", costs) == summed(
        all_time, "rm_return_costs", costs
    )
    assert summed(daily, "rm_daily_sold", ("sku", "supplier")) == summed(
        all_time, "rm_items_sold", ("sku", "supplier")
    )
    assert total(daily, "rm_daily_returns", "items") == total(
        all_time, "rm_return_reasons", "items"
    )
    # The cancelled order's sale nets to nothing on the day it was placed.
    sold_days = {r["day"] for r in daily.rows("rm_daily_sold") if r["items"]}
    assert sold_days == {on_day(days[0])}
