"""Read models fed by the projections worker from the relayed topics."""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg
import pytest
from kafka import KafkaProducer

from adapters.driven.kafka.topics import ORDERS, WMS_RECEIPTS
from adapters.driven.readmodels.positions import projection_lag
from adapters.driven.readmodels.queries import unbalanced_refunds
from adapters.driven.readmodels.rebuild import differences, rebuild, snapshot
from adapters.driven.readmodels.store import ReadModelStore
from projections import default_projections
from tests.e2e.builders import System, delivered_web_order, eventually, publish
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def caught_up(system: System) -> bool:
    store = ReadModelStore(system.database_url)
    try:
        return all(
            projection_lag(store.connection, p)["events_behind"] == 0 for p in default_projections()
        )
    finally:
        store.close()


def row(system: System, query: str, *params: object) -> tuple[object, ...] | None:
    with psycopg.connect(system.database_url) as conn:
        return conn.execute(query, params).fetchone()  # type: ignore[arg-type]


def projected_customers(system: System, pattern: str) -> int:
    found = row(system, "SELECT count(*) FROM rm_customers WHERE customer_id LIKE %s", pattern)
    return int(str(found[0])) if found else 0


def test_a_returned_and_restocked_item_moves_stock_and_the_ledger_balances(
    system: System,
) -> None:
    order_id = delivered_web_order(system)
    rma = m.authorized_return(system.service, order_id)
    assert rma.rma_number
    receipt = f"REC-P-{order_id}"
    publish(
        system.bootstrap,
        WMS_RECEIPTS,
        [
            m.parcel_received(receipt, rma.rma_number),
            m.items_inspected(receipt, rma.rma_number),
        ],
        # Keyed by receipt as the contract says: unkeyed, the two could land on different
        # partitions and the inspection be handled before its parcel was received.
        key=receipt.encode(),
    )
    eventually(
        lambda: (
            system.service.get_return(rma.aggregate_id).state.status.value
            in {"closed", "refund_failed"}
        ),
        what="the sandbox settlement",
    )
    eventually(lambda: caught_up(system), timeout=90, what="projections to catch up")
    status = row(
        system,
        "SELECT status, rma_number FROM rm_rma_status WHERE return_id = %s",
        str(rma.aggregate_id),
    )
    final = system.service.get_return(rma.aggregate_id).state.status.value
    assert status == (final, rma.rma_number)
    customer = row(
        system,
        "SELECT orders, returns FROM rm_customers WHERE customer_id = %s",
        f"cust-{order_id}",
    )
    assert customer == (1, 1)
    restocked = row(
        system,
        "SELECT bucket, sum(delta) FROM rm_stock_movements WHERE kind = 'inspection'"
        " AND event_id LIKE %s GROUP BY bucket",
        f"{rma.aggregate_id}:%",
    )
    assert restocked is not None and (restocked[0], int(str(restocked[1]))) == ("available", 1)
    assert unbalanced_refunds(ReadModelStore(system.database_url).connection) == []
    requested = row(
        system, "SELECT requested FROM rm_refunds WHERE return_id = %s", str(rma.aggregate_id)
    )
    assert requested is not None and Decimal(str(requested[0])) == Decimal("30.00")


def test_a_killed_projections_worker_restarted_loses_and_doubles_nothing(
    system: System,
) -> None:
    run = uuid.uuid4().hex[:6]
    orders = [f"KILL-{run}-{i}" for i in range(300)]
    producer = KafkaProducer(bootstrap_servers=system.bootstrap, acks="all", linger_ms=5)
    for order_id in orders:
        # Keyed by order, as the commerce platform must: one partition keeps them in order.
        for value in (m.order_placed(order_id, quantity=1), m.order_fulfilled(order_id, 1)):
            producer.send(ORDERS, key=order_id.encode(), value=value)
    producer.flush(30)
    producer.close()
    # Killed mid-stream: once the first of these rows is projected, batches are being applied.
    eventually(
        lambda: projected_customers(system, f"cust-KILL-{run}-%") > 0,
        what="the first projected rows",
    )
    system.projections.kill()
    system.projections.start().wait_ready(timeout=90)

    def fulfilled() -> int:
        found = row(
            system,
            "SELECT count(*) FROM oms_events e JOIN oms_orders o ON o.order_id = e.originator_id"
            " WHERE e.topic = 'order.lines_fulfilled' AND o.order_number LIKE %s",
            f"KILL-{run}-%",
        )
        return int(str(found[0])) if found else 0

    eventually(lambda: fulfilled() == 300, timeout=120, what="300 orders fulfilled")
    eventually(lambda: caught_up(system), timeout=120, what="projections to catch up")
    bought = row(
        system,
        "SELECT coalesce(sum(items_bought), 0) FROM rm_customers WHERE customer_id LIKE %s",
        f"cust-KILL-{run}-%",
    )
    assert bought is not None and int(str(bought[0])) == 300


def test_a_rebuild_from_the_event_store_equals_the_live_read_models(system: System) -> None:
    eventually(lambda: caught_up(system), timeout=120, what="projections to catch up")
    for projection in default_projections():
        live = ReadModelStore(system.database_url)
        try:
            rebuilt_progress = rebuild(projection, system.database_url, switch=False)
            assert rebuilt_progress.events > 0
            before = snapshot(live.connection, projection)
            after = snapshot(live.connection, projection, "_rebuild")
            assert differences(before, after) == [], projection.name
        finally:
            live.close()


def test_two_workers_share_the_partitions_and_one_killed_leaves_the_totals_right(
    system: System, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from streams.worker import WorkerProcess

    second = WorkerProcess(
        "streams.projectors:app_from_env",
        workdir=tmp_path_factory.mktemp("projections-2"),
        env=system.projections.env,
        cwd=system.projections.cwd,
    ).start()
    try:
        assigned = second.wait_ready(timeout=90)
        assert assigned, "the second worker must own some partitions"
        run = uuid.uuid4().hex[:6]
        producer = KafkaProducer(bootstrap_servers=system.bootstrap, acks="all", linger_ms=5)
        for index in range(400):
            order_id = f"TWO-{run}-{index}"
            producer.send(ORDERS, key=order_id.encode(), value=m.order_placed(order_id, quantity=1))
        producer.flush(30)
        producer.close()
        eventually(
            lambda: projected_customers(system, f"cust-TWO-{run}-%") > 0,
            what="the first projected rows",
        )
        second.kill()  # mid-stream; the survivor takes its partitions over
        eventually(
            lambda: (
                (
                    row(
                        system,
                        "SELECT count(*) FROM oms_orders WHERE order_number LIKE %s",
                        f"TWO-{run}-%",
                    )
                    or (0,)
                )[0]
                == 400
            ),
            timeout=120,
            what="400 orders",
        )
        eventually(lambda: caught_up(system), timeout=150, what="projections to catch up")
        bought = row(
            system,
            "SELECT coalesce(sum(items_bought), 0), count(*) FROM rm_customers"
            " WHERE customer_id LIKE %s",
            f"cust-TWO-{run}-%",
        )
        assert bought is not None and (int(str(bought[0])), int(str(bought[1]))) == (400, 400)
    finally:
        if second.is_running():
            second.terminate()
