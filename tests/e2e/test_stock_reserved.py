"""Stock reserved for an exchange's replacement, end to end: the exchange asked over HTTP,
the parcel received and inspected on wms.receipts.v1, the replacement held at the return's
destination warehouse (stock API and oms.stock-levels.v1), then fulfilled on oms.orders.v1:
the reservation is released and the shipped unit leaves ``available``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from adapters.driven.kafka.topics import ORDERS, STOCK_LEVELS, WMS_RECEIPTS
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from tests.e2e.builders import System, delivered_web_order, eventually, publish, read_topic
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEYS = {"k-cs": Principal("agent-x", Role.CUSTOMER_SERVICE)}
CS = {"Authorization": "Bearer k-cs"}
FIGURES = ("available", "reserved", "available_to_promise")


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    api = create_api(system.service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def exchange_requested(client: TestClient, order_id: str, sku: str) -> dict[str, Any]:
    created = client.post(
        "/v1/returns",
        json={
            "order_number": order_id,
            "lines": [
                {
                    "line_no": 1,
                    "quantity": 1,
                    "reason": "size_too_small",
                    "exchange": {"sku": sku, "name": "Tee", "unit_price": m.amount("30.00")},
                }
            ],
            "refund_method": "exchange",
        },
        headers={**CS, "Idempotency-Key": f"reserve-{order_id}"},
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def destination(client: TestClient, return_id: str) -> str:
    seen = client.get(f"/v1/returns/{return_id}", headers=CS)
    assert seen.status_code == 200, seen.text
    warehouse: str = seen.json()["destination_warehouse"]
    return warehouse


def parcel_inspected(system: System, rma_number: str) -> None:
    receipt = f"REC-{rma_number}"
    publish(
        system.bootstrap,
        WMS_RECEIPTS,
        [m.parcel_received(receipt, rma_number), m.items_inspected(receipt, rma_number)],
        key=receipt.encode(),
    )


def stock(client: TestClient, sku: str, location: str) -> tuple[int, ...] | None:
    seen = client.get(f"/v1/stock/{sku}/{location}", headers=CS)
    if seen.status_code == 404:
        return None
    assert seen.status_code == 200, seen.text
    body: dict[str, Any] = seen.json()
    return tuple(body[figure] for figure in FIGURES)


def published(system: System, sku: str, location: str) -> tuple[int, ...] | None:
    """The latest row of the compacted stock topic for this SKU and location."""
    rows = [
        row
        for record in read_topic(system.bootstrap, STOCK_LEVELS)
        if record.key == f"{sku}@{location}".encode()
        for row in [orjson.loads(record.value)]
    ]
    if not rows:
        return None
    return tuple(rows[-1][figure] for figure in FIGURES)


def test_the_replacement_is_reserved_at_the_warehouse_until_the_wms_ships_it(
    system: System, client: TestClient
) -> None:
    order_id = delivered_web_order(system)
    sku = f"TEE-{order_id[-8:].upper()}-L"
    created = exchange_requested(client, order_id, sku)
    warehouse = destination(client, created["return_id"])
    parcel_inspected(system, created["rma_number"])

    reserved = (0, 1, -1)  # nothing counted here yet: one promised, minus one to promise
    eventually(lambda: stock(client, sku, warehouse) == reserved, what="the reservation")
    eventually(lambda: published(system, sku, warehouse) == reserved, what="its topic row")

    replacement = f"{order_id}-X1"
    fulfilment = m.order_fulfilled(replacement, quantity=1)  # ships from WH-1
    publish(system.bootstrap, ORDERS, [fulfilment], key=replacement.encode())
    shipped = {"WH-1": (-1, 0, -1)}
    shipped.setdefault(warehouse, (0, 0, 0))  # released where it was held
    eventually(
        lambda: all(stock(client, sku, at) == want for at, want in shipped.items()),
        what="the reservation released by the fulfilment",
    )
    # The WMS sends the fulfilment again, then the delivery (same key, so after it): once
    # the delivery is recorded, the repeat was handled and released or shipped nothing.
    delivered = m.order_delivered(replacement, days_ago=0)
    publish(system.bootstrap, ORDERS, [fulfilment, delivered], key=replacement.encode())
    eventually(
        lambda: system.service.order_view(replacement)["delivered_at"] is not None,
        what="the replacement delivered",
    )
    eventually(
        lambda: all(published(system, sku, at) == want for at, want in shipped.items()),
        what="the released rows on the topic",
    )
    assert all(stock(client, sku, at) == want for at, want in shipped.items())
