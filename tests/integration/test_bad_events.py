"""Stored events the read models cannot take: each fails alone, visibly.

Events are immutable, and some already stored carry values PostgreSQL's read-model tables
refuse (NUL in text, integers beyond bigint) or make a reducer raise. They are stored here
through the domain service (no inbound contract in the way) or, for one no command could
write, straight into the event store; then a projection batch and a rebuild must complete
with only those events skipped and recorded in ``rm_failed_events``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson
import psycopg
import pytest

from adapters.driven.kafka.topics import EVENT_TOPIC_BY_KIND
from adapters.driven.readmodels.base import FailedEvent, failed_events
from adapters.driven.readmodels.positions import projection_lag
from adapters.driven.readmodels.rebuild import rebuild_many
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driven.relay import cloud_event_for
from domain.application import ReturnsService
from domain.commands import AdjustStock, CancelOrder, CountStock, PlaceOrder
from domain.events import OrderLine, Payment
from domain.values import Channel, PaymentMethod
from projections import default_projections
from projections.core import Event
from tests.integration.builders import ctx
from tests.unit.builders import eur

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOO_BIG = 2**63 + 5  # fits orjson's unsigned 64 bits, not PostgreSQL's bigint


class Stored:
    """What the test stored: good events around the bad ones, and which are bad."""

    def __init__(self, service: ReturnsService, database_url: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.sku = f"BAD-{tag}"
        self.customer = f"cust-bad-{tag}"
        number = f"B-{tag}"
        placed = service.run(
            ctx(),
            PlaceOrder(
                order_number=number,
                customer_id=self.customer,
                customer_email=None,
                channel=Channel.WEB,
                lines=(
                    OrderLine(
                        line_no=1,
                        sku=self.sku,
                        name="Shoe",
                        quantity=1,
                        unit_price=eur("20.00"),
                        supplier="Acme",
                        category="shoes",
                    ),
                ),
                payments=(
                    Payment(payment_id="p1", method=PaymentMethod.CARD, amount=eur("20.00")),
                ),
                shipping=eur("0.00"),
            ),
        )
        # The customer's timeline keeps the reason in a jsonb summary: NUL is refused there.
        service.run(ctx(), CancelOrder(order_number=number, reason="changed\x00mind"))
        huge = service.run(
            ctx(),
            CountStock(sku=self.sku, location_id="WH-HUGE", quantity=TOO_BIG, count_id="c1"),
        )
        good = service.run(
            ctx(), CountStock(sku=self.sku, location_id="WH-OK", quantity=7, count_id="c2")
        )
        service.run(
            ctx(),
            AdjustStock(
                sku=self.sku, location_id="WH-OK", delta=-2, reason="broken", adjustment_id="a1"
            ),
        )
        # No command writes a count without its quantity: the stock reducer raises on it.
        self.broken_aggregate = uuid.uuid4()
        with psycopg.connect(database_url, autocommit=True) as conn:
            template = conn.execute(
                "SELECT state FROM oms_events WHERE originator_id = %s"
                " AND topic = 'inventory.counted'",
                [good.aggregate_id],
            ).fetchone()
            assert template is not None
            state = orjson.loads(template[0])
            del state["quantity"]
            conn.execute(
                "INSERT INTO oms_events (originator_id, originator_version, topic, state)"
                " VALUES (%s, 1, 'inventory.counted', %s)",
                [self.broken_aggregate, orjson.dumps({**state, "location_id": "WH-BROKEN"})],
            )
            ids = [placed.aggregate_id, huge.aggregate_id, good.aggregate_id]
            rows = conn.execute(
                "SELECT notification_id, originator_id, originator_version, topic, state"
                " FROM oms_events WHERE originator_id = ANY(%s) ORDER BY notification_id",
                [[*ids, self.broken_aggregate]],
            ).fetchall()
        self.events = [Event.from_cloud_event(cloud_event_for(row)) for row in rows]
        by_type = {(e.aggregate_id, e.type): e.id for e in self.events}
        self.bad = {
            ("customers", by_type[(str(placed.aggregate_id), "order.cancelled")]),
            ("stock", by_type[(str(huge.aggregate_id), "inventory.counted")]),
            ("stock", f"{self.broken_aggregate}:1"),
        }


@pytest.fixture(scope="module")
def stored(service: ReturnsService, database_url: str) -> Stored:
    return Stored(service, database_url)


@pytest.fixture()
def store(database_url: str) -> Iterator[ReadModelStore]:
    with ReadModelStore(database_url, default_projections()) as opened:
        opened.connection.execute("DELETE FROM rm_failed_events")
        yield opened


def one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query.encode(), params).fetchone()
    return row[0] if row else None


def failed_pairs(failures: list[FailedEvent]) -> set[tuple[str, str]]:
    return {(f.projection, f.event_id) for f in failures}


def test_the_lag_report_still_answers_with_events_jsonb_refuses_behind(
    stored: Stored, store: ReadModelStore
) -> None:
    # Before any batch applied them: the NUL-bearing event is among the customers' behind.
    lags = {p.name: projection_lag(store.connection, p) for p in default_projections()}
    assert all(isinstance(lag["events_behind"], int) for lag in lags.values()), lags
    assert lags["customers"]["events_behind"] >= 1, lags
    assert lags["customers"]["seconds_behind"] is not None, lags


def test_a_batch_skips_only_the_events_it_cannot_apply_and_commits_the_rest(
    stored: Stored, store: ReadModelStore
) -> None:
    # As one partition of each topic delivers them, in one batch.
    events = [replace(e, topic=EVENT_TOPIC_BY_KIND[e.kind], partition=0) for e in stored.events]
    offsets = {(t, 0): 1000 + i for i, t in enumerate(sorted({e.topic for e in events}))}

    store.apply_many(default_projections(), events, offsets)

    conn = store.connection
    assert failed_pairs(failed_events(conn)) == stored.bad
    reasons = {f.event_id: f.reason for f in failed_events(conn)}
    assert any("out of range" in r for r in reasons.values()), reasons
    assert any("KeyError" in r for r in reasons.values()), reasons
    # Everything else in the batch committed: counted 7, adjusted by -2.
    assert (
        one(
            conn,
            "SELECT available FROM rm_stock_levels WHERE sku = %s AND location_id = 'WH-OK'",
            stored.sku,
        )
        == 5
    )
    # The order reached the customer's history, and the stock projection the other events.
    assert one(conn, "SELECT orders FROM rm_customers WHERE customer_id = %s", stored.customer)
    assert not one(
        conn,
        "SELECT count(*) FROM rm_stock_levels WHERE sku = %s AND location_id <> 'WH-OK'"
        " AND counted IS NOT NULL",
        stored.sku,
    )
    # Offsets moved on for every projection: the batch is done, not retried for ever.
    for projection in default_projections():
        for (topic, partition), offset in offsets.items():
            if topic in {EVENT_TOPIC_BY_KIND[k] for k in projection.kinds}:
                assert store.offsets(projection)[(topic, partition)] == offset

    # Delivered again: nothing changes, the same events fail again, nothing raises.
    store.apply_many(default_projections(), events, offsets)
    assert failed_pairs(failed_events(conn)) == stored.bad
    assert (
        one(
            conn,
            "SELECT available FROM rm_stock_levels WHERE sku = %s AND location_id = 'WH-OK'",
            stored.sku,
        )
        == 5
    )


def test_a_rebuild_completes_and_reports_the_events_it_skipped(
    stored: Stored, store: ReadModelStore, database_url: str
) -> None:
    done = rebuild_many(default_projections(), database_url, "_badcheck", switch=False)

    assert {name: p.skipped for name, p in done.items()} == {
        "customers": 1,
        "discrepancies": 0,
        "legs": 0,
        "ledger": 0,
        "period_analytics": 0,
        "reasons": 0,
        "rma_status": 0,
        "serials": 0,
        "stock": 2,
    }
    conn = store.connection
    assert stored.bad <= failed_pairs(failed_events(conn))
    assert (
        one(
            conn,
            "SELECT available FROM rm_stock_levels_badcheck"
            " WHERE sku = %s AND location_id = 'WH-OK'",
            stored.sku,
        )
        == 5
    )
    assert one(
        conn, "SELECT orders FROM rm_customers_badcheck WHERE customer_id = %s", stored.customer
    )
