"""The read models on the real PostgreSQL: a scenario driven through ReturnsService, its
stored events applied as partitions would deliver them (interleaved, batched, redelivered),
compared with figures computed here from the scenario, and with a rebuild from the log."""

from __future__ import annotations

import random
import threading
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaConsumer
from psycopg import sql

from adapters.driven.embedded.tansu import EmbeddedKafka
from adapters.driven.eventstore import database_unavailable
from adapters.driven.kafka.provisioning import provision_topics
from adapters.driven.kafka.topics import EVENT_TOPIC_BY_KIND, topic_specs
from adapters.driven.readmodels.base import ChangedRow, consumer_name
from adapters.driven.readmodels.queries import stock_at, unbalanced_refunds
from adapters.driven.readmodels.rebuild import differences, rebuild, snapshot
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driven.relay import cloud_event_for
from domain.application import ReturnsService
from domain.commands import (
    AdjustStock,
    CancelOrder,
    CancelReturn,
    CompleteRepair,
    CountStock,
    DeliverOrder,
    FailRefund,
    FulfilOrder,
    InspectItems,
    MatchBlindReturn,
    PlaceOrder,
    ReceiveParcel,
    ReceiveSupplierCredit,
    RecordInStoreReturn,
    RequestReturn,
    RestockRepaired,
    RetryRefund,
    SendToRepair,
    SettleRefund,
    ShipToVendor,
)
from domain.events import FulfilledLine, InspectedItem, OrderLine, Payment, ReceivedItem
from domain.returns import CounterCheck, RequestedLine
from domain.values import Channel, Condition, Disposition, PaymentMethod, ReasonCode, RefundMethod
from projections import default_projections
from projections.core import Event, Projection, all_tables
from projections.customers import CustomerHistory
from projections.stock import StockLevels
from tests.integration.builders import ctx
from tests.unit.builders import eur

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PARTITIONS = 4


# ---------------------------------------------------------------- the scenario
@dataclass
class Scenario:
    """What was done, and the figures the read models must show for it."""

    sku: str
    sku2: str
    warehouse: str
    store: str
    supplier: str
    customer: str
    other_customer: str
    returns: list[uuid.UUID] = field(default_factory=list)
    settled: dict[str, Decimal] = field(default_factory=dict)
    failed: dict[str, Decimal] = field(default_factory=dict)
    store_credit: Decimal = Decimal(0)
    blind_fee: Decimal = Decimal(0)
    after_first_count: datetime | None = None
    after_first_return: datetime | None = None


def now() -> datetime:
    return datetime.now(UTC)


def place(
    service: ReturnsService,
    number: str,
    customer: str,
    lines: list[OrderLine],
    payments: list[tuple[PaymentMethod, str]],
    *,
    shipping: str = "0.00",
    channel: Channel = Channel.WEB,
    store_id: str | None = None,
) -> None:
    service.run(
        ctx(),
        PlaceOrder(
            order_number=number,
            customer_id=customer,
            customer_email=None,
            channel=channel,
            lines=lines,
            payments=tuple(
                Payment(payment_id=f"pay-{i}", method=method, amount=eur(amount))
                for i, (method, amount) in enumerate(payments, start=1)
            ),
            shipping=eur(shipping),
            store_id=store_id,
        ),
    )


def inspect(
    service: ReturnsService,
    rma: str,
    receipt: str | None,
    *items: tuple[Disposition, Condition, str],
    sku: str,
) -> Any:
    return service.run(
        ctx(),
        InspectItems(
            rma_number=rma,
            receipt_id=receipt,
            items=tuple(
                InspectedItem(
                    sku=sku,
                    quantity=1,
                    condition=condition,
                    disposition=disposition,
                    location_id=loc,
                )
                for disposition, condition, loc in items
            ),
        ),
    )


def run_scenario(service: ReturnsService) -> Scenario:
    u = uuid.uuid4().hex[:8].upper()
    s = Scenario(
        sku=f"SKU-{u}",
        sku2=f"SKX-{u}",
        warehouse=f"WH-{u}",
        store=f"ST-{u}",
        supplier=f"Sup-{u}",
        customer=f"C-{u}",
        other_customer=f"D-{u}",
    )
    returns_warehouse = service.default_warehouse

    def shoe(line_no: int, quantity: int) -> OrderLine:
        return OrderLine(
            line_no=line_no,
            sku=s.sku,
            quantity=quantity,
            unit_price=eur("40.00"),
            supplier=s.supplier,
            category="shoes",
        )

    def count(quantity: int, count_id: str) -> None:
        service.run(
            ctx(),
            CountStock(sku=s.sku, location_id=s.warehouse, quantity=quantity, count_id=count_id),
        )

    def settle(refund_id: str | None, amount: Any) -> None:
        assert refund_id is not None and amount is not None
        service.run(
            ctx(), SettleRefund(refund_id=refund_id, provider_reference="psp", amount=amount)
        )
        s.settled[refund_id] = amount.amount

    # 1. A count, then order A: 3 shoes and 1 sock from our warehouse.
    count(20, f"count-1-{u}")
    s.after_first_count = now()
    order_a = f"A-{u}"
    sock = OrderLine(line_no=2, sku=s.sku2, quantity=1, unit_price=eur("10.00"))
    place(
        service,
        order_a,
        s.customer,
        [shoe(1, 3), sock],
        [(PaymentMethod.CARD, "100.00"), (PaymentMethod.GIFT_CARD, "35.00")],
        shipping="5.00",
    )
    service.run(
        ctx(),
        FulfilOrder(
            order_number=order_a,
            location_id=s.warehouse,
            lines=(FulfilledLine(line_no=1, quantity=3), FulfilledLine(line_no=2, quantity=1)),
        ),
    )
    service.run(ctx(), DeliverOrder(order_number=order_a))

    # 2. Two defective shoes back: one restocked here, one scrapped at the returns
    # warehouse; the refund fails once and is paid on the retry.
    r1 = service.run(
        ctx(),
        RequestReturn(
            order_number=order_a,
            lines=(RequestedLine(line_no=1, quantity=2, reason=ReasonCode.DEFECTIVE),),
        ),
    )
    assert r1.status == "authorized" and r1.rma_number
    s.returns.append(r1.aggregate_id)
    service.run(
        ctx(),
        ReceiveParcel(
            receipt_id=f"R1-{u}",
            warehouse_id=returns_warehouse,
            rma_number=r1.rma_number,
            tracking_number=None,
            items=(ReceivedItem(sku=s.sku, quantity=2),),
        ),
    )
    first = inspect(
        service,
        r1.rma_number,
        f"R1-{u}",
        (Disposition.RESTOCK, Condition.NEW, s.warehouse),
        (Disposition.SCRAP, Condition.DEFECTIVE, returns_warehouse),
        sku=s.sku,
    )
    assert first.refund_id and first.amount
    service.run(ctx(), FailRefund(refund_id=first.refund_id, reason="card expired"))
    s.failed[first.refund_id] = first.amount.amount
    retried = service.run(ctx(), RetryRefund(return_id=r1.aggregate_id))
    settle(retried.refund_id, retried.amount)
    s.after_first_return = now()

    # 3. The warehouse finds a torn box, then counts 15.
    service.run(
        ctx(),
        AdjustStock(
            sku=s.sku,
            location_id=s.warehouse,
            delta=-1,
            reason="torn box",
            adjustment_id=f"adj-{u}",
        ),
    )
    count(15, f"count-2-{u}")

    # 4. Order B sold at the store counter; one shoe brought back there for store credit.
    order_b = f"B-{u}"
    place(
        service,
        order_b,
        s.customer,
        [shoe(1, 2)],
        [(PaymentMethod.CARD, "80.00")],
        channel=Channel.STORE,
        store_id=s.store,
    )
    in_store = service.run(
        ctx(),
        RecordInStoreReturn(
            store_return_id=f"S1-{u}",
            store_id=s.store,
            staff_id="clerk-1",
            order_number=order_b,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.CHANGED_MIND),),
            checks=(
                CounterCheck(
                    line_no=1, quantity=1, condition=Condition.NEW, disposition=Disposition.RESTOCK
                ),
            ),
            refund_method=RefundMethod.STORE_CREDIT,
        ),
    )
    s.returns.append(in_store.aggregate_id)
    credited = service.get_return(in_store.aggregate_id).state.store_credit
    assert credited is not None
    s.store_credit = credited.amount

    # 5. A parcel with no RMA: matched to order A, repaired and restocked here.
    blind = service.run(
        ctx(),
        ReceiveParcel(
            receipt_id=f"B1-{u}",
            warehouse_id=returns_warehouse,
            rma_number=None,
            tracking_number="TRK",
            items=(ReceivedItem(sku=s.sku, quantity=1),),
        ),
    )
    s.returns.append(blind.aggregate_id)
    matched = service.run(
        ctx(),
        MatchBlindReturn(
            return_id=blind.aggregate_id,
            order_number=order_a,
            matched_by="order",
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.CHANGED_MIND),),
        ),
    )
    assert matched.rma_number
    fee = service.get_return(blind.aggregate_id).state.restocking_fee
    s.blind_fee = fee.amount if fee else Decimal(0)
    repaired = inspect(
        service,
        matched.rma_number,
        f"B1-{u}",
        (Disposition.REPAIR, Condition.DEFECTIVE, returns_warehouse),
        sku=s.sku,
    )
    settle(repaired.refund_id, repaired.amount)
    for leg in (
        SendToRepair(return_id=blind.aggregate_id, leg_id="L1", repair_center="RC-1"),
        CompleteRepair(return_id=blind.aggregate_id, leg_id="L1", outcome="repaired"),
        RestockRepaired(return_id=blind.aggregate_id, leg_id="L1", location_id=s.warehouse),
    ):
        service.run(ctx(), leg)

    # 6. Another customer: order C shipped from here, one return cancelled, one defective
    # shoe sent back to the supplier for a credit; order D cancelled before shipping.
    order_c, order_d = f"C-{u}", f"D-{u}"
    place(service, order_c, s.other_customer, [shoe(1, 2)], [(PaymentMethod.PAYPAL, "80.00")])
    service.run(
        ctx(),
        FulfilOrder(
            order_number=order_c,
            location_id=s.warehouse,
            lines=(FulfilledLine(line_no=1, quantity=2),),
        ),
    )
    service.run(ctx(), DeliverOrder(order_number=order_c))
    r3 = service.run(
        ctx(),
        RequestReturn(
            order_number=order_c,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.CHANGED_MIND),),
        ),
    )
    s.returns.append(r3.aggregate_id)
    service.run(ctx(), CancelReturn(return_id=r3.aggregate_id, reason="kept it"))
    r4 = service.run(
        ctx(),
        RequestReturn(
            order_number=order_c,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.DEFECTIVE),),
        ),
    )
    assert r4.rma_number
    s.returns.append(r4.aggregate_id)
    service.run(
        ctx(),
        ReceiveParcel(
            receipt_id=f"R4-{u}",
            warehouse_id=returns_warehouse,
            rma_number=r4.rma_number,
            tracking_number=None,
            items=(ReceivedItem(sku=s.sku, quantity=1),),
        ),
    )
    vendor = inspect(
        service,
        r4.rma_number,
        f"R4-{u}",
        (Disposition.RETURN_TO_VENDOR, Condition.DEFECTIVE, returns_warehouse),
        sku=s.sku,
    )
    service.run(ctx(), ShipToVendor(return_id=r4.aggregate_id, leg_id="L1", vendor_rma="V-1"))
    service.run(
        ctx(),
        ReceiveSupplierCredit(return_id=r4.aggregate_id, leg_id="L1", amount=eur("12.00")),
    )
    settle(vendor.refund_id, vendor.amount)
    place(service, order_d, s.other_customer, [shoe(1, 5)], [(PaymentMethod.CARD, "200.00")])
    service.run(ctx(), CancelOrder(order_number=order_d, reason="fraud check"))
    return s


# ---------------------------------------------------------------- delivery as Kafka would
@dataclass
class Delivery:
    events: list[Event]
    offsets: dict[tuple[str, int], int]


def stored_events(database_url: str) -> list[Event]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM oms_events ORDER BY notification_id"
        ).fetchall()
    return [Event.from_cloud_event(cloud_event_for(row)) for row in rows]


def as_partitions(events: list[Event], projection: Projection, seed: int) -> list[Delivery]:
    """Each aggregate on one partition of its topic, in order; partitions interleaved at
    random; cut into batches of random sizes, each with its next offsets."""
    queues: dict[tuple[str, int], list[Event]] = {}
    for event in events:
        if event.kind not in projection.kinds:
            continue
        topic = EVENT_TOPIC_BY_KIND[event.kind]
        partition = zlib.crc32(event.aggregate_id.encode()) % PARTITIONS
        queue = queues.setdefault((topic, partition), [])
        queue.append(replace(event, topic=topic, partition=partition))
    rng = random.Random(seed)
    consumed = dict.fromkeys(queues, 0)
    stream: list[tuple[tuple[str, int], int, Event]] = []
    live = sorted(queues)
    while live:
        origin = rng.choice(live)
        offset = consumed[origin]
        stream.append((origin, offset, queues[origin][offset]))
        consumed[origin] += 1
        if consumed[origin] == len(queues[origin]):
            live.remove(origin)
    deliveries = []
    start = 0
    while start < len(stream):
        size = rng.choice([1, 7, 50, 300])
        chunk = stream[start : start + size]
        offsets: dict[tuple[str, int], int] = {}
        for origin, offset, _ in chunk:
            offsets[origin] = offset + 1
        deliveries.append(Delivery([e for _, _, e in chunk], offsets))
        start += size
    return deliveries


def drop(conn: psycopg.Connection[Any], projection: Projection, suffix: str = "") -> None:
    for table in all_tables(projection):
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table.physical(suffix)))
        )
    conn.execute("DELETE FROM rm_offsets WHERE projection = %s", [projection.name])
    conn.execute(
        "DELETE FROM oms_consumer_positions WHERE consumer = %s", [consumer_name(projection)]
    )


@pytest.fixture(scope="module")
def scenario(service: ReturnsService) -> Scenario:
    return run_scenario(service)


@pytest.fixture()
def store(database_url: str) -> Iterator[ReadModelStore]:
    with ReadModelStore(database_url) as opened:
        opened.connection.autocommit = True
        for projection in default_projections():
            opened.ensure(projection)
            drop(opened.connection, projection)
        fresh = ReadModelStore(database_url)
        yield fresh
        fresh.close()


def rows(store: ReadModelStore, query: str, *params: Any) -> list[dict[str, Any]]:
    with store.connection.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(query.encode(), params)
        return list(cur.fetchall())


def one(store: ReadModelStore, query: str, *params: Any) -> dict[str, Any]:
    (found,) = rows(store, query, *params)
    return found


# ---------------------------------------------------------------- the tests
def test_read_models_show_the_scenario_however_it_is_delivered(
    scenario: Scenario, store: ReadModelStore, database_url: str, service: ReturnsService
) -> None:
    s = scenario
    events = stored_events(database_url)
    for projection in default_projections():
        deliveries = as_partitions(events, projection, seed=len(events))
        for delivery in deliveries:
            store.apply(projection, delivery.events, delivery.offsets)
        before = snapshot(store.connection, projection)
        # A redelivery of everything (a consumer restarted from old offsets) changes nothing.
        for delivery in deliveries[: len(deliveries) // 2]:
            assert store.apply(projection, delivery.events, delivery.offsets) == []
        assert differences(before, snapshot(store.connection, projection)) == []

    # Stock: the first count, every movement since, and a second count that wins.
    level = one(
        store,
        "SELECT * FROM rm_stock_levels WHERE sku = %s AND location_id = %s",
        s.sku,
        s.warehouse,
    )
    # 15 counted after the adjustment; then +1 repaired and restocked, -2 shipped for order C.
    assert (level["counted"], level["available"]) == (15, 15 + 1 - 2)
    returns_wh = one(
        store, "SELECT * FROM rm_stock_levels WHERE sku = %s AND location_id = 'WH-1'", s.sku
    )
    assert {
        b: returns_wh[b]
        for b in ("scrapped", "in_repair", "returned_to_vendor", "expected_returns", "available")
    } == {
        "scrapped": 1,
        "in_repair": 0,
        "returned_to_vendor": 0,  # credited by the supplier: theirs now
        "expected_returns": 0,
        "available": 0,
    }
    at_store = one(
        store, "SELECT * FROM rm_stock_levels WHERE sku = %s AND location_id = %s", s.sku, s.store
    )
    assert at_store["available"] == -2 + 1
    sock = one(store, "SELECT * FROM rm_stock_levels WHERE sku = %s", s.sku2)
    assert sock["available"] == -1
    assert s.after_first_count and s.after_first_return
    conn = store.connection
    assert stock_at(conn, s.sku, s.warehouse, s.after_first_count)["available"] == 20
    assert stock_at(conn, s.sku, s.warehouse, s.after_first_return)["available"] == 20 - 3 + 1
    assert stock_at(conn, s.sku, s.warehouse, now())["available"] == level["available"]

    # Customers.
    first = one(store, "SELECT * FROM rm_customers WHERE customer_id = %s", s.customer)
    assert (first["orders"], first["items_bought"], first["returns"]) == (2, 4 + 2, 3)
    assert (first["blind_returns"], first["in_store_returns"], first["items_returned"]) == (
        1,
        1,
        2 + 1 + 1,
    )
    assert first["serial_returner"] is True  # 3 returns, 4 of 6 items back
    money = one(store, "SELECT * FROM rm_customer_money WHERE customer_id = %s", s.customer)
    paid_first = sum(v for k, v in s.settled.items() if k in refunds_of(store, s.returns[:3]))
    assert money["spent"] == Decimal("135.00") + Decimal("80.00")
    assert money["refunded"] == paid_first
    assert money["store_credit_balance"] == s.store_credit
    other = one(store, "SELECT * FROM rm_customers WHERE customer_id = %s", s.other_customer)
    assert (other["orders"], other["cancelled_orders"], other["items_bought"]) == (2, 1, 2)
    assert (other["returns"], other["items_returned"], other["serial_returner"]) == (2, 1, False)
    timeline = rows(
        store, "SELECT event_type FROM rm_customer_timeline WHERE customer_id = %s", s.customer
    )
    assert sum(r["event_type"] == "order.placed" for r in timeline) == 2

    # Ledger: balanced, and reconciled refund by refund.
    assert unbalanced_refunds(conn) == []
    for refund_id, amount in s.settled.items():
        refund = one(store, "SELECT * FROM rm_refunds WHERE refund_id = %s", refund_id)
        assert (refund["status"], refund["settled"], refund["outstanding"]) == (
            "settled",
            amount,
            Decimal(0),
        )
    for refund_id, amount in s.failed.items():
        refund = one(store, "SELECT * FROM rm_refunds WHERE refund_id = %s", refund_id)
        assert (refund["status"], refund["failed"]) == ("failed", amount)
    ours = refunds_of(store, s.returns)
    paid = one(
        store,
        "SELECT coalesce(sum(credit), 0) AS credit FROM rm_ledger_lines"
        " WHERE account LIKE 'cash:%%' AND refund_id = ANY(%s)",
        list(ours),
    )
    assert paid["credit"] == sum(s.settled.values())

    # Reasons and costs.
    sold = one(
        store,
        "SELECT * FROM rm_items_sold WHERE sku = %s AND channel = 'web'",
        s.sku,
    )
    assert (sold["items"], sold["order_lines"]) == (3 + 2, 2)  # order D was cancelled
    reasons = {
        (r["reason"], r["channel"]): (r["returns"], r["items"])
        for r in rows(store, "SELECT * FROM rm_return_reasons WHERE sku = %s", s.sku)
    }
    assert reasons == {
        ("defective", "web"): (2, 3),
        ("changed_mind", "web"): (2, 2),
        ("changed_mind", "store"): (1, 1),
    }
    costs = one(
        store, "SELECT * FROM rm_return_costs WHERE supplier = %s AND sku = %s", s.supplier, s.sku
    )
    assert (costs["scrapped_items"], costs["scrapped_value"]) == (1, Decimal("40.00"))
    assert (costs["open_repair_legs"], costs["open_vendor_legs"]) == (0, 0)
    assert costs["supplier_credits"] == Decimal("12.00")
    assert costs["refunded"] == sum(s.settled.values()) + s.store_credit
    assert costs["restocking_fees_kept"] == s.blind_fee

    # RMA status: what the aggregate itself says.
    for return_id in s.returns:
        state = service.get_return(return_id).state
        aggregate = (state.status.value, state.rma_number)
        row = one(store, "SELECT * FROM rm_rma_status WHERE return_id = %s", str(return_id))
        assert (row["status"], row["rma_number"]) == aggregate, return_id
        history = rows(
            store, "SELECT version FROM rm_rma_timeline WHERE return_id = %s", str(return_id)
        )
        assert sorted(r["version"] for r in history) == list(range(1, row["version"] + 1))


def refunds_of(store: ReadModelStore, returns: list[uuid.UUID]) -> set[str]:
    found = rows(
        store,
        "SELECT refund_id FROM rm_refunds WHERE return_id = ANY(%s)",
        [str(r) for r in returns],
    )
    return {r["refund_id"] for r in found}


def test_offsets_and_the_lowest_partition_position_commit_with_the_rows(
    scenario: Scenario, store: ReadModelStore, database_url: str
) -> None:
    projection = StockLevels()
    deliveries = as_partitions(stored_events(database_url), projection, seed=7)
    store.register_partitions(
        projection,
        [(EVENT_TOPIC_BY_KIND[k], p) for k in projection.kinds for p in range(PARTITIONS)],
    )
    last_position: dict[tuple[str, int], int] = {}
    next_offset: dict[tuple[str, int], int] = {}
    for delivery in deliveries:
        store.apply(projection, delivery.events, delivery.offsets)
        for event in delivery.events:
            assert event.topic is not None and event.partition is not None
            last_position[(event.topic, event.partition)] = event.position
        next_offset.update(delivery.offsets)
    assert store.offsets(projection) == {
        **{(EVENT_TOPIC_BY_KIND[k], p): 0 for k in projection.kinds for p in range(PARTITIONS)},
        **next_offset,
    }
    recorded = one(
        store,
        "SELECT notification_id FROM oms_consumer_positions WHERE consumer = %s",
        consumer_name(projection),
    )
    everyone = [last_position.get(origin, 0) for origin in store.offsets(projection)]
    assert recorded["notification_id"] == min(everyone)


def test_a_store_whose_connection_the_server_dropped_reconnects_on_the_retry(
    scenario: Scenario, store: ReadModelStore, database_url: str
) -> None:
    projection = StockLevels()
    events = stored_events(database_url)
    # A cut into at least three batches: one before the outage, one meeting it, one after.
    first, *rest = next(
        cut for seed in range(100) if len(cut := as_partitions(events, projection, seed)) >= 3
    )
    store.apply(projection, first.events, first.offsets)
    backend = store.connection.info.backend_pid
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend])

    # The batch that meets the outage fails as an outage (its worker waits and retries,
    # dead-letters nothing); the retry reconnects and applies it, once.
    with pytest.raises(psycopg.OperationalError) as lost:
        store.apply(projection, rest[0].events, rest[0].offsets)
    assert database_unavailable(lost.value)
    for delivery in rest:
        store.apply(projection, delivery.events, delivery.offsets)
    assert store.connection.info.backend_pid != backend
    assert store.offsets(projection)[next(iter(rest[-1].offsets))] == next(
        iter(rest[-1].offsets.values())
    )


def test_two_workers_racing_on_the_same_batches_count_everything_once(
    scenario: Scenario, store: ReadModelStore, database_url: str
) -> None:
    events = stored_events(database_url)
    projections: list[Projection] = [StockLevels(), CustomerHistory()]
    expected = {}
    for projection in projections:
        for delivery in as_partitions(events, projection, seed=3):
            store.apply(projection, delivery.events)
        expected[projection.name] = snapshot(store.connection, projection)
        drop(store.connection, projection)
    store.close()

    # During a rebalance two workers may both hold a partition for a while.
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            with ReadModelStore(database_url) as mine:
                for projection in projections:
                    for delivery in as_partitions(events, projection, seed=seed):
                        mine.apply(projection, delivery.events)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in (3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with ReadModelStore(database_url) as check:
        for projection in projections:
            got = snapshot(check.connection, projection)
            assert differences(expected[projection.name], got) == []


def rebuild_in_background(
    projection: Projection, database_url: str, progress: list[Any], failures: list[BaseException]
) -> None:
    try:
        rebuild(projection, database_url, "_rebuild", progress.append, batch_size=500)
    except BaseException as error:
        failures.append(error)


def test_a_rebuild_under_live_traffic_equals_the_live_tables(
    scenario: Scenario, store: ReadModelStore, database_url: str
) -> None:
    events = stored_events(database_url)
    for projection in default_projections():
        deliveries = as_partitions(events, projection, seed=11)
        half = len(deliveries) // 2
        for delivery in deliveries[:half]:
            store.apply(projection, delivery.events, delivery.offsets)
        progress: list[Any] = []
        failures: list[BaseException] = []
        rebuilding = threading.Thread(
            target=rebuild_in_background, args=(projection, database_url, progress, failures)
        )
        rebuilding.start()
        for delivery in deliveries[half:]:
            store.apply(projection, delivery.events, delivery.offsets)
        rebuilding.join()
        assert failures == []
        assert progress and progress[-1].phase == "switched"
        live = snapshot(store.connection, projection)
        rebuild(projection, database_url, "_check", switch=False)
        replayed = snapshot(store.connection, projection, "_check")
        assert differences(live, replayed) == [], projection.name
        drop(store.connection, projection, "_check")
        # The swapped-in tables keep taking batches (redeliveries change nothing).
        assert store.apply(projection, deliveries[-1].events, deliveries[-1].offsets) == []


def test_a_batch_whose_rows_cannot_be_published_commits_nothing_and_applies_later(
    scenario: Scenario, store: ReadModelStore, database_url: str
) -> None:
    """Rows go to their topics before the commit: once committed, a redelivered batch
    changes nothing and would publish nothing, so a failed publication must undo it."""
    projections = default_projections()
    events = stored_events(database_url)
    offsets = {("any-topic", 0): len(events)}

    def broker_down(changed: list[ChangedRow]) -> None:
        assert changed  # the rows exist, the transaction is still open
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError):
        store.apply_many(projections, events, offsets, before_commit=broker_down)
    assert rows(store, "SELECT * FROM rm_offsets") == []
    assert rows(store, "SELECT * FROM rm_stock_levels") == []

    published: list[ChangedRow] = []
    store.apply_many(projections, events, offsets, before_commit=published.extend)
    assert published and rows(store, "SELECT * FROM rm_stock_levels")
    again: list[ChangedRow] = []
    store.apply_many(projections, events, offsets, before_commit=again.extend)
    assert again == []  # the redelivery changes nothing, so publishes nothing


def test_the_projector_publishes_rows_through_kafka_and_remakes_its_producer_after_a_failure(
    scenario: Scenario, store: ReadModelStore, database_url: str, tmp_path: Path
) -> None:
    """The projections worker's publisher: a failed publication rolls the batch back and the
    retry goes through a new producer (a broken idempotent one would stay broken)."""
    # A broker of its own: publishing would auto-create the row topics on the session's
    # broker with the broker's default partition count, before the e2e tier provisions them.
    broker = EmbeddedKafka(tmp_path / "tansu").start()
    try:
        # Provisioned as the relay does: our producers never auto-create a topic.
        provision_topics(broker.bootstrap, topic_specs(PARTITIONS))
        publish_and_remake(store, database_url, broker.bootstrap)
    finally:
        broker.stop()


def publish_and_remake(store: ReadModelStore, database_url: str, kafka_bootstrap: str) -> None:
    from adapters.driven.kafka.publishers import ConfluentPublisher, PublishError, Record
    from streams.projectors import Projector

    class Unacknowledged(ConfluentPublisher):
        def publish(self, records: Sequence[Record]) -> None:
            raise PublishError("1 records not acknowledged within 30 s")

    made: list[ConfluentPublisher] = []

    def new_publisher() -> ConfluentPublisher:
        made.append(
            Unacknowledged(kafka_bootstrap) if not made else ConfluentPublisher(kafka_bootstrap)
        )
        return made[-1]

    projections = default_projections()
    projector = Projector(store, projections, new_publisher)
    events = stored_events(database_url)
    offsets = {("any-topic", 0): len(events)}
    with pytest.raises(PublishError):
        projector.apply(projections, events, offsets)
    assert rows(store, "SELECT * FROM rm_offsets") == []
    assert len(made) == 2

    published: list[ChangedRow] = []
    original = projector.publish

    def recording(changed: Sequence[ChangedRow]) -> None:
        published.extend(changed)
        original(changed)

    projector.publish = recording  # type: ignore[method-assign]
    projector.apply(projections, events, offsets)
    assert published and rows(store, "SELECT * FROM rm_offsets")
    expected = {(row.topic, row.key.encode()) for row in published}
    consumer = KafkaConsumer(
        *sorted({topic for topic, _ in expected}),
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=20_000,  # ends the iteration if a row never arrives
    )
    seen: set[tuple[str, bytes]] = set()
    try:
        for message in consumer:
            seen.add((message.topic, message.key))
            if expected <= seen:
                break
    finally:
        consumer.close()
    assert expected <= seen
