"""Expiry with nobody asking: RMAs authorized through HTTP on a clock 40 days back expire,
and a keep-the-item offer that ran out lapses, while two more integrations workers sweep
every second; each RMA changes once; the customer hears of it on rma.notifications.v1."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from adapters.driven.eventstore import create_service
from adapters.driven.kafka.topics import NOTIFICATIONS, ORDERS
from adapters.driven.sweeps import run_round
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from streams.worker import WorkerProcess
from tests.e2e.builders import System, eventually, publish, read_topic, rma_events
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"k-cs": Principal("agent-exp", Role.CUSTOMER_SERVICE)}
CS = {"Authorization": "Bearer k-cs"}


@pytest.fixture
def sweepers(system: System, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Two integrations workers beside the session's, sweeping every second."""
    workers = []
    try:
        for name in ("sweeper-a", "sweeper-b"):
            workdir = tmp_path / name
            workdir.mkdir()
            env = {
                **os.environ,
                "OMS_DATABASE_URL": system.database_url,
                "OMS_KAFKA_BOOTSTRAP": system.bootstrap,
                "OMS_DATA_DIR": str(workdir),
                "OMS_TOPIC_PARTITIONS": "2",
                "OMS_SWEEP_INTERVAL_S": "1",
            }
            workers.append(
                WorkerProcess(
                    "streams.integrations:app_from_env", workdir=workdir, env=env, cwd=ROOT
                ).start()
            )
        for worker in workers:
            worker.wait_ready(timeout=120)
        yield workers
    finally:
        for worker in workers:
            worker.terminate()


def api_days_back(system: System, days: int) -> Iterator[TestClient]:
    """The HTTP API on a service whose clock runs ``days`` behind: what it authorizes was
    authorized then."""
    service = create_service(system.database_url, pool_size=2)
    service.clock = lambda: datetime.now(UTC) - timedelta(days=days)
    try:
        api = create_api(service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
        with TestClient(api, raise_server_exceptions=False) as client:
            yield client
    finally:
        service.close()


@pytest.fixture
def forty_days_ago(system: System) -> Iterator[TestClient]:
    yield from api_days_back(system, 40)


@pytest.fixture
def ten_days_ago(system: System) -> Iterator[TestClient]:
    yield from api_days_back(system, 10)


def old_order(system: System, price: str = "30.00", delivered_days_ago: int = 45) -> str:
    """Placed 60 days ago and delivered 45 (by default) days ago, through the orders topic."""
    order_id = f"OLD-{uuid.uuid4().hex[:8]}"
    publish(
        system.bootstrap,
        ORDERS,
        [
            m.order_placed(order_id, quantity=1, price=price, days_ago=60),
            m.order_fulfilled(order_id, quantity=1),
            m.order_delivered(order_id, days_ago=delivered_days_ago),
        ],
        key=order_id.encode(),
    )
    eventually(
        lambda: _delivered(system, order_id),
        what=f"{order_id} delivered",
    )
    return order_id


def _delivered(system: System, order_id: str) -> bool:
    try:
        return system.service.order_view(order_id)["delivered_at"] is not None
    except Exception:
        return False


def request(client: TestClient, order: str) -> dict[str, Any]:
    created = client.post(
        "/v1/returns",
        json={
            "order_number": order,
            "lines": [{"line_no": 1, "quantity": 1, "reason": "size_too_small"}],
        },
        headers=CS,
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    assert body["status"] == "authorized"
    return body


def notifications_for(system: System, return_id: str) -> list[str]:
    records = [orjson.loads(r.value) for r in read_topic(system.bootstrap, NOTIFICATIONS)]
    return sorted({r["type"] for r in records if r["subject"] == return_id})


def test_rmas_never_shipped_expire_and_lapsed_offers_lapse_once_with_two_workers_sweeping(
    system: System,
    forty_days_ago: TestClient,
    ten_days_ago: TestClient,
    sweepers: list[WorkerProcess],
) -> None:
    orders = [old_order(system) for _ in range(3)]
    idle = [request(forty_days_ago, order) for order in orders]
    cheap = old_order(system, price="10.00", delivered_days_ago=15)
    kept = request(ten_days_ago, cheap)
    offer = ten_days_ago.post(
        f"/v1/returns/{kept['return_id']}/keep-item/offer", json={"valid_days": 7}, headers=CS
    )
    assert offer.status_code == 200, offer.text

    for rma in idle:
        eventually(
            lambda rma=rma: (
                system.service.get_return(uuid.UUID(rma["return_id"])).state.status.value
                == "expired"
            ),
            what=f"{rma['rma_number']} expired by the workers",
        )
    eventually(
        lambda: (
            system.service.get_return(uuid.UUID(kept["return_id"])).state.status.value
            == "authorized"
        ),
        what="the keep-item offer lapsed by the workers",
    )
    # The workers did it (the session's one sweeps too, once a minute), with their progress
    # in the log.
    logs = "".join(
        worker.log_path.read_text(errors="replace") for worker in [*sweepers, system.worker]
    )
    assert "sweep expire_returns: batch" in logs
    assert "sweep lapse_keep_item_offers: batch" in logs
    # Whatever the two sweepers did, a third round finds nothing left to change.
    assert run_round(system.service).changed["expire_returns"] == []
    for rma, order in zip(idle, orders, strict=True):
        types = [e.type_name for e in system.service.stored_events(uuid.UUID(rma["return_id"]))]
        assert types.count("rma.expired") == 1
        assert system.service.order_view(order)["lines"][0]["returnable_quantity"] == 1
    lapsed_types = [e.type_name for e in system.service.stored_events(uuid.UUID(kept["return_id"]))]
    assert lapsed_types.count("rma.keep_item_lapsed") == 1
    assert "rma.expired" not in lapsed_types  # its 30 days to ship start at the lapse

    accepted = ten_days_ago.post(f"/v1/returns/{kept['return_id']}/keep-item/accept", headers=CS)
    assert accepted.status_code == 409, accepted.text
    assert accepted.json()["code"] == "keep_item_offer_lapsed"

    # Relayed once, and the customer told, for each.
    for rma in idle:
        relayed = eventually(
            lambda rma=rma: (
                (t := rma_events(system, uuid.UUID(rma["return_id"]))) and "rma.expired" in t and t
            ),
            what="rma.expired relayed",
        )
        assert relayed.count("rma.expired") == 1
        eventually(
            lambda rma=rma: (
                "notification.return_expired" in notifications_for(system, rma["return_id"])
            ),
            what="the expiry notification",
        )
    eventually(
        lambda: (
            "notification.keep_item_offer_lapsed" in notifications_for(system, kept["return_id"])
        ),
        what="the lapse notification",
    )
