"""Stock counts on the real read-model store: a count means "at counted_at there were N",
in the live level, in a rebuild and in ``stock_at``, whatever the order of arrival."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from adapters.driven.readmodels.queries import stock_at
from adapters.driven.readmodels.rebuild import rebuild
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driven.relay import cloud_event_for
from domain.application import Ctx, ReturnsService
from domain.commands import AdjustStock, CountStock
from domain.events import Cause
from domain.inventory import inventory_id_for
from projections.core import Event
from projections.stock import StockLevels
from tests.unit.stock_stories import (
    Op,
    arrivals,
    at,
    expected_available,
    ops_strategy,
    stock_story,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def store(database_url: str) -> Iterator[ReadModelStore]:
    with ReadModelStore(database_url) as opened:
        opened.connection.autocommit = True
        yield opened


def level(store: ReadModelStore, sku: str, location: str, suffix: str = "") -> dict[str, Any]:
    with store.connection.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT * FROM rm_stock_levels{suffix} WHERE sku = %s AND location_id = %s".encode(),
            (sku, location),
        )
        found = cur.fetchone()
        assert found is not None
        return found


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops_strategy, st.integers(0, 10_000), st.integers(1, 4))
def test_any_order_of_arrival_gives_the_level_and_stock_at_of_the_definition(
    store: ReadModelStore, ops: list[Op], seed: int, batch: int
) -> None:
    sku, location = f"SKU-{uuid.uuid4().hex[:10]}", "WH-1"
    events = stock_story(ops, sku, location)
    stock = StockLevels()
    for delivery in arrivals(events, seed, batch):
        store.apply(stock, delivery)
    row = level(store, sku, location)
    assert row["available"] == expected_available(ops)
    conn = store.connection
    for minute in (-1, *range(0, 21, 3), 20):
        moment = at(minute)
        assert stock_at(conn, sku, location, moment)["available"] == expected_available(
            ops, until=moment
        ), minute
    assert stock_at(conn, sku, location, at(10_000)) == {
        bucket: row[bucket] for bucket in stock_at(conn, sku, location, at(10_000))
    }
    # Everything delivered again, in another order: nothing changes.
    for delivery in arrivals(events, seed + 1, 3):
        assert store.apply(stock, delivery) == []
    assert level(store, sku, location) == row


@pytest.mark.parametrize("told_by", ["event-time", "counted_at"])
def test_a_count_taken_three_hours_ago_keeps_a_later_restock_live_and_in_a_rebuild(
    service: ReturnsService, store: ReadModelStore, database_url: str, told_by: str
) -> None:
    sku, location = f"SKU-{uuid.uuid4().hex[:10]}", "WH-LATE"
    now = datetime.now(UTC)

    def ctx(moment: datetime) -> Ctx:
        return Ctx(Cause(actor="wms", source="pytest", correlation_id=sku), at=moment)

    service.run(
        ctx(now - timedelta(hours=1)),
        AdjustStock(sku=sku, location_id=location, delta=3, reason="restock", adjustment_id="A1"),
    )
    # Taken three hours ago, before the restock, and stored after it: the message's time
    # says when (the envelope's ``time``), or its ``counted_at`` does.
    taken = now - timedelta(hours=3)
    count = CountStock(sku=sku, location_id=location, quantity=10, count_id="C1")
    if told_by == "event-time":
        service.run(ctx(taken), count)
    else:
        service.run(ctx(now), dataclasses.replace(count, counted_at=taken))
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM oms_events WHERE originator_id = %s ORDER BY notification_id",
            [inventory_id_for(sku, location)],
        ).fetchall()
    events = [Event.from_cloud_event(cloud_event_for(row)) for row in rows]
    assert [e.type for e in events] == ["inventory.adjusted", "inventory.counted"]
    stock = StockLevels()
    store.apply(stock, events)
    live = level(store, sku, location)
    assert (live["counted"], live["available"]) == (10, 13)
    conn_ = store.connection
    assert stock_at(conn_, sku, location, now - timedelta(hours=4))["available"] == 0
    assert stock_at(conn_, sku, location, now - timedelta(hours=2))["available"] == 10
    assert stock_at(conn_, sku, location, now)["available"] == 13

    rebuild(stock, database_url, switch=False)
    rebuilt = level(store, sku, location, "_rebuild")
    assert {k: rebuilt[k] for k in ("available", "counted", "counted_at")} == {
        k: live[k] for k in ("available", "counted", "counted_at")
    }
