"""A count means "at counted_at there were N": whatever it is reported after, and whatever
order the partitions deliver it and the movements in."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.core import InMemoryReadModel, key_of
from projections.stock import StockLevels
from tests.unit.builders import T0, assert_folds_like_reduce
from tests.unit.stock_stories import (
    REPORTED,
    Adjust,
    Count,
    Move,
    Op,
    arrivals,
    at,
    expected_available,
    ops_strategy,
    stock_story,
)

SKU, WH = "SKU-1", "WH-1"


def level(model: InMemoryReadModel) -> dict[str, Any]:
    return model.tables["rm_stock_levels"][key_of({"sku": SKU, "location_id": WH})]


def applied(ops: list[Op], *, seed: int = 0, batch: int = 1) -> InMemoryReadModel:
    model = InMemoryReadModel(StockLevels())
    for delivery in arrivals(stock_story(ops, SKU, WH), seed, batch):
        model.apply(delivery)
    return model


def test_a_count_reported_hours_late_keeps_the_restock_made_after_it_was_taken() -> None:
    # 07:00 count of 10 (minute 0), a restock of 3 at minute 60, the count reported at 19:00.
    model = applied([Move(60, 3), Count(0, 10)])
    row = level(model)
    assert (row["counted"], row["available"]) == (10, 13)
    assert row["counted_at"] == at(0)
    count = next(m for m in model.rows("rm_stock_movements") if m["kind"] == "count")
    assert count["at"] == at(0)  # when taken, not when reported


def test_a_movement_that_happened_before_the_count_is_in_it_even_if_it_arrives_after() -> None:
    ops: list[Op] = [Count(30, 10), Move(10, -2), Move(40, -1)]
    for seed in range(10):
        assert level(applied(ops, seed=seed))["available"] == 9


def test_a_count_taken_before_the_latest_one_but_reported_after_it_changes_no_level() -> None:
    model = applied([Count(30, 10), Move(40, 2), Count(5, 99)])
    row = level(model)
    assert (row["counted"], row["counted_at"], row["available"]) == (10, at(30), 12)
    counts = [m["counted"] for m in model.rows("rm_stock_movements") if m["kind"] == "count"]
    assert sorted(counts) == [10, 99]  # both kept as movements


def test_a_movement_at_the_very_moment_of_a_count_follows_the_event_stores_order() -> None:
    # Same minute: the restock recorded first is in the count; the sale recorded after is not.
    assert level(applied([Move(5, 4), Count(5, 10), Move(5, -1)]))["available"] == 9


def test_a_count_without_counted_at_was_taken_at_its_event_time() -> None:
    events = stock_story([Move(60, 3), Count(0, 10)], SKU, WH)
    restock, count = events
    legacy = {k: v for k, v in count.data.items() if k != "counted_at"}
    legacy_count = dataclasses.replace(count, data=legacy)
    model = InMemoryReadModel(StockLevels())
    model.apply([legacy_count, restock])
    # Its event time is REPORTED, after the restock: the restock is in it.
    assert restock.time == T0 + timedelta(minutes=60) < REPORTED < count.time
    assert level(model)["available"] == 10


@settings(max_examples=200, deadline=None)
@given(ops_strategy, st.integers(0, 10_000), st.integers(1, 4))
def test_the_order_of_arrival_never_changes_the_level(ops: list[Op], seed: int, batch: int) -> None:
    model = applied(ops, seed=seed, batch=batch)
    assert level(model)["available"] == expected_available(ops)
    in_order = applied(ops, seed=seed + 1, batch=len(ops))
    assert model.tables["rm_stock_levels"] == in_order.tables["rm_stock_levels"]


@settings(max_examples=50, deadline=None)
@given(ops_strategy, st.integers(0, 10_000))
def test_a_redelivery_changes_nothing(ops: list[Op], seed: int) -> None:
    events = stock_story(ops, SKU, WH)
    model = InMemoryReadModel(StockLevels())
    for delivery in arrivals(events, seed, 2):
        model.apply(delivery)
    before = {name: {k: dict(v) for k, v in rows.items()} for name, rows in model.tables.items()}
    for delivery in arrivals(events, seed + 1, 3):
        model.apply(delivery)
    assert model.tables == before


@settings(max_examples=30, deadline=None)
@given(ops_strategy, st.integers(0, 10_000))
def test_folding_stock_stories_equals_reducing_them(ops: list[Op], seed: int) -> None:
    events = [e for delivery in arrivals(stock_story(ops, SKU, WH), seed, 1) for e in delivery]
    assert_folds_like_reduce(StockLevels(), events)


def test_adjustments_are_movements_like_any_other() -> None:
    assert level(applied([Adjust(1, 5), Count(2, 3), Adjust(3, -1)]))["available"] == 2
