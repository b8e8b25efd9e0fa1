"""Finding an RMA by search and queue, driven as the outside systems and people drive it: the
order and the parcel arrive on Kafka topics, the RMA is made and found over HTTP, and the
read models the search reads are fed by the running projectors."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.driven.kafka.topics import WMS_RECEIPTS
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from tests.e2e.builders import System, delivered_web_order, eventually, publish
from tests.integration.builders import parcel_received

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
KEYS = {
    "k-cs": Principal("agent-ann", Role.CUSTOMER_SERVICE),
    "k-wh1": Principal("wms-WH-1", Role.WAREHOUSE, warehouse_id="WH-1"),
    "k-wh9": Principal("wms-WH-9", Role.WAREHOUSE, warehouse_id="WH-9"),
    "k-portal": Principal("portal", Role.PORTAL),
}


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    api = create_api(system.service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def found(client: TestClient, key: str = "k-cs", **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/returns", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_parcel_from_the_warehouse_puts_the_rma_in_the_not_inspected_queue_once(
    client: TestClient, system: System
) -> None:
    order = delivered_web_order(system)  # placed, fulfilled and delivered on oms.orders.v1
    created = client.post(
        "/v1/returns",
        json={
            "order_number": order,
            "lines": [{"line_no": 1, "quantity": 1, "reason": "defective"}],
        },
        headers=auth("k-cs"),
    )
    assert created.status_code == 201, created.text
    rma = created.json()["rma_number"]
    eventually(
        lambda: [i["status"] for i in found(client, rma_number=rma)] == ["authorized"],
        what="the RMA in the search",
    )

    receipt = f"REC-{uuid.uuid4().hex[:8]}"
    message = parcel_received(receipt, rma, event_id=f"wms-{receipt}")
    publish(system.bootstrap, WMS_RECEIPTS, [message, message], key=receipt.encode())

    def queued() -> list[dict[str, Any]]:
        response = client.get(
            "/v1/queues/not_inspected", params={"older_than_days": 0}, headers=auth("k-wh1")
        )
        assert response.status_code == 200, response.text
        return [i for i in response.json()["items"] if i["rma_number"] == rma]

    [item] = eventually(queued, what="the received RMA in the not_inspected queue")
    assert item["status"] == "received" and item["age_seconds"] >= 0
    [match] = found(client, status=["received"], order_number=order, warehouse_id="WH-1")
    assert match["rma_number"] == rma and match["skus"] == "TEE-BLUE-M"

    as_csv = client.get(
        "/v1/returns", params={"rma_number": rma}, headers=auth("k-cs", Accept="text/csv")
    )
    [row] = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert (row["rma_number"], row["status"], row["order_number"]) == (rma, "received", order)

    # Another warehouse's key does not see it; the customer finds it under "my returns".
    assert found(client, "k-wh9", rma_number=rma) == []
    email = f"{order.lower()}@example.com"
    mine = client.get("/v1/my/returns", headers=auth("k-portal", **{"X-Customer-Email": email}))
    assert [i["rma_number"] for i in mine.json()["items"]] == [rma]
    # The duplicate parcel message changed nothing: one parcel, one RMA in the queue.
    assert len(queued()) == 1 and found(client, rma_number=rma)[0]["version"] == item["version"]
