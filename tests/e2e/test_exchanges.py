"""Uneven exchanges end to end: the customer asks over HTTP for another SKU, the WMS
receives and inspects the parcel on wms.receipts.v1, a replacement order ships the named
SKU and the difference is refunded (cheaper) or recorded as owed (dearer)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.driven.kafka.topics import NOTIFICATIONS, ORDERS, WMS_RECEIPTS
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from tests.e2e.builders import (
    System,
    delivered_web_order,
    eventually,
    publish,
    read_topic,
    rma_events,
)
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEYS = {"k-cs": Principal("agent-x", Role.CUSTOMER_SERVICE)}
CS = {"Authorization": "Bearer k-cs"}


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    api = create_api(system.service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def exchange_requested(client: TestClient, order_id: str, sku: str, price: str) -> dict[str, Any]:
    created = client.post(
        "/v1/returns",
        json={
            "order_number": order_id,
            "lines": [
                {
                    "line_no": 1,
                    "quantity": 1,
                    "reason": "size_too_small",
                    "exchange": {"sku": sku, "name": "Tee", "unit_price": m.amount(price)},
                }
            ],
            "refund_method": "exchange",
        },
        headers={**CS, "Idempotency-Key": f"x-{order_id}"},
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def parcel_inspected(system: System, order_id: str, rma_number: str) -> None:
    receipt = f"REC-{order_id}"
    publish(
        system.bootstrap,
        WMS_RECEIPTS,
        [m.parcel_received(receipt, rma_number), m.items_inspected(receipt, rma_number)],
        key=receipt.encode(),
    )


def rma(client: TestClient, return_id: str) -> dict[str, Any]:
    seen = client.get(f"/v1/returns/{return_id}", headers=CS)
    assert seen.status_code == 200, seen.text
    body: dict[str, Any] = seen.json()
    return body


def replacement_skus(client: TestClient, order_number: str) -> list[tuple[str, int]]:
    seen = client.get(f"/v1/orders/{order_number}", headers=CS)
    assert seen.status_code == 200, seen.text
    return [(line["sku"], line["quantity"]) for line in seen.json()["lines"]]


def test_a_cheaper_replacement_ships_the_named_sku_and_refunds_the_difference(
    system: System, client: TestClient
) -> None:
    order_id = delivered_web_order(system)  # 2 x TEE-BLUE-M at 30.00
    created = exchange_requested(client, order_id, "TEE-GREY-L", "22.50")
    asked = rma(client, created["return_id"])["lines"][0]["exchange"]
    assert asked == {"sku": "TEE-GREY-L", "name": "Tee", "unit_price": m.amount("22.50")}
    parcel_inspected(system, order_id, created["rma_number"])

    # The sandbox provider settles (or, for a few refund ids, declines) the difference.
    done = eventually(
        lambda: (
            (r := rma(client, created["return_id"]))["status"] in {"closed", "refund_failed"} and r
        ),
        what="the difference refunded",
    )
    assert done["exchange_refund_difference"] == m.amount("7.50")
    assert done["exchange_amount_due"] is None
    [refund] = done["refunds"].values()
    assert refund["amount"] == m.amount("7.50")
    if done["status"] == "closed":
        assert done["closed_outcome"] == "exchanged"
    assert replacement_skus(client, f"{order_id}-X1") == [("TEE-GREY-L", 1)]

    # The WMS sends the same receipt again: nothing is ordered or refunded twice.
    parcel_inspected(system, order_id, created["rma_number"])
    events = eventually(
        lambda: (
            (t := rma_events(system, uuid.UUID(created["return_id"])))
            and t[-1] == done_event(done)
            and t
        ),
        what="the outbound events",
    )
    assert events.count("rma.exchange_ordered") == 1
    assert events.count("rma.refund_requested") == 1
    assert rma(client, created["return_id"])["version"] == done["version"]


def done_event(done: dict[str, Any]) -> str:
    return "rma.closed" if done["status"] == "closed" else "rma.refund_failed"


def test_a_dearer_replacement_records_what_the_customer_owes(
    system: System, client: TestClient
) -> None:
    order_id = delivered_web_order(system)
    created = exchange_requested(client, order_id, "TEE-GOLD-M", "34.00")
    parcel_inspected(system, order_id, created["rma_number"])

    done = eventually(
        lambda: (r := rma(client, created["return_id"]))["status"] == "closed" and r,
        what="the exchange",
    )
    assert done["closed_outcome"] == "exchanged"
    assert done["exchange_amount_due"] == m.amount("4.00")
    assert done["exchange_refund_difference"] is None
    assert done["refunds"] == {}
    assert replacement_skus(client, f"{order_id}-X1") == [("TEE-GOLD-M", 1)]
    notice = eventually(
        lambda: [
            n
            for n in (orjson.loads(r.value) for r in read_topic(system.bootstrap, NOTIFICATIONS))
            if n["type"] == "notification.exchange_ordered"
            and n["data"]["replacement_order_number"] == f"{order_id}-X1"
        ],
        what="the customer told what they owe",
    )
    assert notice[0]["data"]["amount_due"] == m.amount("4.00")

    # The replacement is an order like any other: the WMS fulfils it on oms.orders.v1 from
    # the location it ships from, and the named SKU leaves the available stock there.
    replacement = f"{order_id}-X1"
    publish(
        system.bootstrap,
        ORDERS,
        [m.order_fulfilled(replacement, quantity=1)],
        key=replacement.encode(),
    )
    moved = eventually(
        lambda: stock_moved(system, "TEE-GOLD-M", "WH-1", "fulfilment"),
        what="the replacement's stock movement",
    )
    assert moved == -1


def stock_moved(system: System, sku: str, location: str, kind: str) -> int:
    with psycopg.connect(system.database_url) as conn:
        found = conn.execute(
            "SELECT sum(delta) FROM rm_stock_movements"
            " WHERE sku = %s AND location_id = %s AND kind = %s AND bucket = 'available'",
            (sku, location, kind),
        ).fetchone()
    return int(str(found[0])) if found and found[0] is not None else 0
