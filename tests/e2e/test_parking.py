"""Messages that come before their order, end to end: an in-store return published on
pos.returns.v1 before its order.placed waits parked (listed by ``rma parked list``, counted
on /metrics), and applies exactly once when the order arrives."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from adapters.driven.kafka.topics import ORDERS, POS_RETURNS
from adapters.driven.parking import ParkedMessages
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from adapters.driving.cli import main
from domain.errors import NotFound
from domain.returns import store_return_id_for
from tests.e2e.builders import System, eventually, publish
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

OPS = {"Authorization": "Bearer k-ops"}


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    keys = KeyRing.with_keys({"k-ops": Principal("prometheus", Role.OPS)})
    api = create_api(system.service, system.database_url, ApiSettings(), keys)
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.removeprefix(name + " "))
    raise AssertionError(f"{name} not in /metrics")


def test_an_in_store_return_before_its_order_waits_parked_then_applies_once(
    system: System,
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OMS_DATABASE_URL", system.database_url)
    order_id = f"LATE-{uuid.uuid4().hex[:8]}"
    counter = m.store_return(order_id, f"SR-{order_id}")
    parking = ParkedMessages(system.service)

    publish(system.bootstrap, POS_RETURNS, [counter], key=b"STORE-3")

    def parked_here() -> list[str]:
        return [p.reason for p in parking.listing(10_000) if order_id in p.reason]

    (reason,) = eventually(parked_here, what=f"the return of {order_id} parked")
    assert reason == f"order {order_id} is unknown"
    assert main(["parked", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["count"] >= 1 and listed["oldest"]
    assert any(p["reason"] == reason for p in listed["messages"])
    scraped = client.get("/metrics", headers=OPS).text
    assert metric(scraped, "oms_parked_messages") >= 1
    assert metric(scraped, "oms_parked_oldest_seconds") >= 0

    publish(
        system.bootstrap,
        ORDERS,
        [m.order_placed(order_id), m.order_fulfilled(order_id), m.order_delivered(order_id)],
        key=order_id.encode(),
    )

    return_id = store_return_id_for("STORE-3", f"SR-{order_id}")

    def applied() -> bool:
        try:
            system.service.get_return(return_id)
        except NotFound:
            return False
        return not parked_here()

    eventually(applied, what=f"the parked return of {order_id} applied")

    def answered() -> bool:
        refunds = system.service.get_return(return_id).state.refunds.values()
        return bool(refunds) and all(r.status in {"settled", "failed"} for r in refunds)

    # The sandbox answers its refund by itself: wait for that before comparing versions.
    eventually(answered, what=f"the provider's answer on the return of {order_id}")
    rma = system.service.get_return(return_id)
    assert len(rma.state.refunds) == 1
    version = rma.version

    # The POS sends it again (a retry on its side): the same return, nothing twice.
    publish(system.bootstrap, POS_RETURNS, [counter], key=b"STORE-3")
    sentinel = f"SENTINEL-{uuid.uuid4().hex[:8]}"
    publish(system.bootstrap, POS_RETURNS, [m.store_return(sentinel, "SR-S")], key=b"STORE-3")
    eventually(
        lambda: any(sentinel in p.reason for p in parking.listing(10_000)),
        what="a later message on the same key handled",
    )
    assert system.service.get_return(return_id).version == version
    assert not parked_here()
