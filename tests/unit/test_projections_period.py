"""Analytics by day: each figure filed under the day it happened, adding up to the all-time
tables of the return reasons."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import (
    InspectedItem,
    ItemsInspected,
    OrderCancelled,
    OrderPlaced,
    RefundRequested,
    RefundSettled,
    ReturnRejected,
    SupplierCreditReceived,
    VendorReturnShipped,
)
from projections.core import InMemoryReadModel
from projections.period import PeriodAnalytics
from projections.reasons import ReturnReasons
from tests.unit.builders import T0, Story, decision, eur, return_line, return_requested, uid, wire
from tests.unit.builders import story_line as line
from tests.unit.builders import story_payment as payment

DAY0 = T0.date()


def at(days: int) -> datetime:
    return T0 + timedelta(days=days)


def on_day(n: int) -> date:
    return DAY0 + timedelta(days=n)


def rows(model: InMemoryReadModel, table: str, **match: Any) -> list[dict[str, Any]]:
    return [row for row in model.rows(table) if all(row.get(k) == v for k, v in match.items())]


def total(model: InMemoryReadModel, table: str, column: str, **match: Any) -> Any:
    return sum(row.get(column, 0) for row in rows(model, table, **match))


def history(
    days: list[int], *, quantity: int = 3, price: str = "30.00", credit: str = "12.50"
) -> Story:
    """A sale, a cancelled sale, a two-line return partly refused, a refund, a scrapped
    item and a vendor leg credited: each event on ``days[i]`` (non-decreasing)."""
    story, order, cancelled, rma = Story(), uid("o"), uid("o-x"), uid("r")
    moments = iter(at(d) + timedelta(minutes=i) for i, d in enumerate(days))
    story.add(
        OrderPlaced,
        order,
        at=next(moments),
        order_number="WEB-1",
        customer_id="C-1",
        channel="web",
        currency="EUR",
        lines=(
            line(1, "SKU-A", quantity + 1, price, "Acme", "shoes"),
            line(2, "SKU-B", 2, "10.00", "Bolt", "socks"),
        ),
        payments=(payment("500.00"),),
        shipping=eur("0.00"),
    )
    story.add(
        OrderPlaced,
        cancelled,
        at=next(moments),
        order_number="WEB-2",
        customer_id="C-2",
        channel="web",
        currency="EUR",
        lines=(line(1, "SKU-A", 9, price, "Acme", "shoes"),),
        payments=(payment("270.00"),),
        shipping=eur("0.00"),
    )
    story.add(OrderCancelled, cancelled, at=next(moments), reason="fraud")
    return_requested(
        story,
        rma,
        order,
        (
            return_line(1, "SKU-A", quantity, "defective", price, "Acme", "shoes"),
            return_line(2, "SKU-B", 1, "defective", "10.00", "Bolt", "socks"),
        ),
        at=next(moments),
    )
    story.add(
        ReturnRejected,
        rma,
        at=next(moments),
        code="outside_return_window",
        reason="late",
        decisions=(decision(1), decision(2, accepted=False)),
    )
    refund = Decimal(price) * quantity
    story.add(
        RefundRequested,
        rma,
        at=next(moments),
        refund_id="RF-1",
        amount=eur(str(refund)),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        allocations=({"payment_id": "P", "method": "card", "amount": wire(str(refund))},),
    )
    story.add(
        RefundSettled,
        rma,
        at=next(moments),
        refund_id="RF-1",
        provider_reference="p",
        amount=eur(str(refund)),
    )
    story.add(
        ItemsInspected,
        rma,
        at=next(moments),
        receipt_id=None,
        items=tuple(
            InspectedItem.model_validate(
                {
                    "sku": "SKU-A",
                    "quantity": q,
                    "condition": "defective",
                    "disposition": disposition,
                    "line_no": 1,
                    "location_id": "WH-1",
                }
            )
            for disposition, q in (("scrap", 1), ("return_to_vendor", 1))
        ),
        refund_due=eur("0.00"),
    )
    story.add(
        VendorReturnShipped, rma, at=next(moments), leg_id="L2", supplier="Acme", vendor_rma="V"
    )
    story.add(SupplierCreditReceived, rma, at=next(moments), leg_id="L2", amount=eur(credit))
    return story


EVENTS = 10


def test_each_figure_is_filed_under_the_day_it_happened() -> None:
    # Sales on day 0, the cancellation on day 1, the return on day 2 and refused on day 5,
    # the refund settled on day 6, the inspection on day 7, the credit on day 9.
    story = history([0, 0, 1, 2, 5, 6, 6, 7, 8, 9])
    model = InMemoryReadModel(PeriodAnalytics())
    model.apply(story.events)

    sold = rows(model, "rm_daily_sold", sku="SKU-A")
    # The cancelled order's 9 items leave the day it was placed, not the day it was cancelled.
    assert [(r["day"], r["items"]) for r in sold] == [(DAY0, 4)]
    returned = rows(model, "rm_daily_returns", reason="defective")
    assert {(r["day"], r["sku"], r["items"], r.get("rejected", 0)) for r in returned} == {
        (on_day(2), "SKU-A", 3, 0),
        # The refusal counts with the return it refused, on the day it was requested.
        (on_day(2), "SKU-B", 1, 1),
    }
    costs = {(r["day"], r["sku"]): r for r in rows(model, "rm_daily_return_costs")}
    # 90.00 paid back, spread over the return's lines by value (90.00 and 10.00).
    assert costs[on_day(6), "SKU-A"]["refunded"] == Decimal("81.00")
    assert costs[on_day(6), "SKU-B"]["refunded"] == Decimal("9.00")
    assert costs[on_day(7), "SKU-A"]["scrapped_value"] == Decimal("30.00")
    assert costs[on_day(9), "SKU-A"]["supplier_credits"] == Decimal("12.50")
    assert {(r["sku"], r["reason"], r["category"], r["channel"]) for r in costs.values()} == {
        ("SKU-A", "defective", "shoes", "web"),
        ("SKU-B", "defective", "socks", "web"),
    }


def test_a_return_counts_once_per_value_of_each_dimension() -> None:
    story = history([0] * EVENTS)
    model = InMemoryReadModel(PeriodAnalytics())
    model.apply(story.events)
    rmas = {(r["dimension"], r["value"]): r["rmas"] for r in model.rows("rm_daily_rmas")}
    # Two lines of one reason: one return for that reason, one per SKU, supplier, category.
    assert rmas == {
        ("reason", "defective"): 1,
        ("sku", "SKU-A"): 1,
        ("sku", "SKU-B"): 1,
        ("supplier", "Acme"): 1,
        ("supplier", "Bolt"): 1,
        ("category", "shoes"): 1,
        ("category", "socks"): 1,
        ("channel", "web"): 1,
    }


def test_a_replayed_history_changes_nothing_twice() -> None:
    story = history([0, 0, 1, 2, 5, 6, 6, 7, 8, 9])
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
    assert sold_days == {DAY0 + timedelta(days=days[0])}
