"""Instant exchange end to end: an order of a category whose policy has
``instant_exchange`` comes from the commerce platform on oms.orders.v1; the customer asks
an exchange over HTTP and the replacement is ordered at authorization, the returned item
owed; the WMS's parcel on wms.receipts.v1 clears the debt and the return closes as
exchanged, a redelivered receipt changing nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from adapters.driven.eventstore import create_service
from adapters.driven.kafka.topics import NOTIFICATIONS, ORDERS, WMS_RECEIPTS
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from domain.errors import NotFound
from domain.policy import PolicyBook
from tests.e2e.builders import System, eventually, publish, read_topic, rma_events
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CATEGORY = "instant-apparel"
KEYS = {"k-cs": Principal("agent-instant", Role.CUSTOMER_SERVICE)}
CS = {"Authorization": "Bearer k-cs"}


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    # The API's own service with the operators' policy for this category: the request's
    # authorization decides the instant exchange; the workers need no such policy.
    book = PolicyBook(by_category={CATEGORY: {"instant_exchange": True}})
    service = create_service(system.database_url, policy_book=book, pool_size=3)
    api = create_api(service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    try:
        with TestClient(api, raise_server_exceptions=False) as test_client:
            yield test_client
    finally:
        service.close()


def delivered_instant_order(system: System) -> str:
    order_id = f"WEB-{uuid.uuid4().hex[:8]}"
    placed = orjson.loads(m.order_placed(order_id))
    placed["data"]["lines"][0]["category"] = CATEGORY
    publish(
        system.bootstrap,
        ORDERS,
        [orjson.dumps(placed), m.order_fulfilled(order_id), m.order_delivered(order_id)],
        key=order_id.encode(),
    )
    eventually(lambda: delivered(system, order_id), what=f"{order_id} delivered")
    return order_id


def delivered(system: System, order_id: str) -> bool:
    try:
        return system.service.order_view(order_id)["delivered_at"] is not None
    except NotFound:
        return False  # not handled yet


def rma(client: TestClient, return_id: str) -> dict[str, Any]:
    seen = client.get(f"/v1/returns/{return_id}", headers=CS)
    assert seen.status_code == 200, seen.text
    body: dict[str, Any] = seen.json()
    return body


def test_the_replacement_ships_at_authorization_and_the_parcel_clears_what_is_owed(
    system: System, client: TestClient
) -> None:
    order_id = delivered_instant_order(system)  # 2 x TEE-BLUE-M at 30.00
    created = client.post(
        "/v1/returns",
        json={
            "order_number": order_id,
            "lines": [
                {
                    "line_no": 1,
                    "quantity": 1,
                    "reason": "size_too_small",
                    "exchange": {
                        "sku": "TEE-BLUE-L",
                        "name": "Tee",
                        "unit_price": m.amount("30.00"),
                    },
                }
            ],
            "refund_method": "exchange",
        },
        headers={**CS, "Idempotency-Key": f"instant-{order_id}"},
    )
    assert created.status_code == 201, created.text
    return_id, rma_number = created.json()["return_id"], created.json()["rma_number"]

    authorized = rma(client, return_id)
    assert authorized["status"] == "authorized"
    assert authorized["instant_exchange"] is True
    assert authorized["amount_outstanding"] == m.amount("30.00")
    replacement = authorized["replacement_order_number"]
    assert replacement == f"{order_id}-X1"
    lines = client.get(f"/v1/orders/{replacement}", headers=CS).json()["lines"]
    assert [(ln["sku"], ln["quantity"]) for ln in lines] == [("TEE-BLUE-L", 1)]
    notice = eventually(
        lambda: [
            n["data"]
            for n in (orjson.loads(r.value) for r in read_topic(system.bootstrap, NOTIFICATIONS))
            if n["type"] == "notification.exchange_ordered"
            and n["data"]["replacement_order_number"] == replacement
        ],
        what="the customer told the replacement ships",
    )
    assert (notice[0]["instant"], notice[0]["amount_outstanding"]) == (True, m.amount("30.00"))

    receipt = f"REC-{order_id}"
    parcel = [m.parcel_received(receipt, rma_number), m.items_inspected(receipt, rma_number)]
    publish(system.bootstrap, WMS_RECEIPTS, parcel, key=receipt.encode())
    done = eventually(
        lambda: (r := rma(client, return_id))["status"] == "closed" and r,
        what="the exchange closed",
    )
    assert done["closed_outcome"] == "exchanged"
    assert done["amount_outstanding"] == m.amount("0.00")
    assert done["refunds"] == {}

    # The WMS sends the receipt again: nothing is ordered or changed twice.
    publish(system.bootstrap, WMS_RECEIPTS, parcel, key=receipt.encode())
    events = eventually(
        lambda: (t := rma_events(system, uuid.UUID(return_id))) and t[-1] == "rma.closed" and t,
        what="the outbound events",
    )
    assert events.count("rma.exchange_ordered") == 1
    assert rma(client, return_id)["version"] == done["version"]
