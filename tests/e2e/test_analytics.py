"""Analytics over a period, driven as the outside systems and people drive it: the orders
arrive on oms.orders.v1 (one of them twice, one cancelled), the return is made over HTTP,
the parcel and its inspection come from the warehouse topic, and the figures are read over
HTTP from the read models the running projectors feed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.driven.kafka.topics import ORDERS, WMS_RECEIPTS
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from tests.e2e.builders import System, eventually, publish
from tests.integration.builders import amount, cloud_event, order_delivered, order_fulfilled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]
KEYS = {
    "k-cs": Principal("agent-ann", Role.CUSTOMER_SERVICE),
    "k-an": Principal("bi", Role.ANALYTICS),
}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    api = create_api(system.service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def placed(order_id: str, sku: str, supplier: str, quantity: int) -> bytes:
    """An order of ``quantity`` units of its own SKU and supplier at 30.00, three days ago:
    other tests' orders on the shared stack fall in other groups."""
    return cloud_event(
        "order.placed",
        {
            "order_id": order_id,
            "customer_id": f"cust-{order_id}",
            "channel": "web",
            "customer_email": f"{order_id.lower()}@example.com",
            "lines": [
                {
                    "line_no": 1,
                    "sku": sku,
                    "quantity": quantity,
                    "unit_price": amount("30.00"),
                    "supplier": supplier,
                    "category": "analytics-e2e",
                }
            ],
            "payments": [
                {"payment_id": "pay-1", "method": "card", "amount": amount(f"{30 * quantity}.00")}
            ],
            "shipping": amount("0.00"),
        },
        source="commerce/web",
        event_id=f"placed-{order_id}",
        time=datetime.now(UTC) - timedelta(days=3),
    )


def group(client: TestClient, path: str, by: str, key: str, **period: str) -> dict[str, Any]:
    response = client.get(path, params={**period, "group_by": by}, headers=auth("k-an"))
    assert response.status_code == 200, response.text
    found = [g for g in response.json()["groups"] if g["key"] == key]
    return found[0] if found else {}


def test_a_period_with_returns_from_orders_on_the_orders_topic(
    client: TestClient, system: System
) -> None:
    run = uuid.uuid4().hex[:8]
    sku, supplier = f"AN-{run}", f"Supplier-{run}"
    kept, cancelled = f"AN-{run}-1", f"AN-{run}-2"
    sale = placed(kept, sku, supplier, 5)
    publish(
        system.bootstrap,
        ORDERS,
        # The same order.placed twice (one message id): the sale counts once.
        [sale, sale, order_fulfilled(kept, 5), order_delivered(kept, days_ago=2)],
        key=kept.encode(),
    )
    publish(
        system.bootstrap,
        ORDERS,
        [
            placed(cancelled, sku, supplier, 3),
            cloud_event(
                "order.cancelled", {"order_id": cancelled, "reason": "fraud"}, source="commerce/web"
            ),
        ],
        key=cancelled.encode(),
    )
    now = datetime.now(UTC)
    period = {"from": (now - timedelta(days=4)).date().isoformat(), "to": now.date().isoformat()}

    def delivered() -> bool:
        try:
            return system.service.order_view(kept)["delivered_at"] is not None
        except Exception:
            return False

    eventually(delivered, what=f"{kept} delivered")
    created = client.post(
        "/v1/returns",
        json={
            "order_number": kept,
            "lines": [{"line_no": 1, "quantity": 2, "reason": "size_too_small"}],
            "refund_method": "store_credit",
        },
        headers=auth("k-cs"),
    )
    assert created.status_code == 201, created.text
    rma = created.json()["rma_number"]
    receipt = f"REC-AN-{run}"
    item = {"sku": sku, "quantity": 1}
    publish(
        system.bootstrap,
        WMS_RECEIPTS,
        [
            cloud_event(
                "parcel.received",
                {
                    "receipt_id": receipt,
                    "warehouse_id": "WH-1",
                    "rma_number": rma,
                    "tracking_number": "TRK-AN",
                    "items": [{"sku": sku, "quantity": 2}],
                },
                source="wms/WH-1",
            ),
            cloud_event(
                "items.inspected",
                {
                    "receipt_id": receipt,
                    "rma_number": rma,
                    "warehouse_id": "WH-1",
                    "items": [
                        {**item, "condition": "new", "disposition": "restock"},
                        {**item, "condition": "damaged", "disposition": "scrap"},
                    ],
                },
                source="wms/WH-1",
            ),
        ],
        key=receipt.encode(),
    )

    costs = eventually(
        lambda: (
            (g := group(client, "/v1/analytics/costs", "supplier", supplier, **period))
            and g["scrapped_units"] == 1
            and g["refunded"] != "0.00"
            and g
        ),
        what="the return's costs in the analytics",
    )
    # Store credit with the default 10 % bonus: 33.00 for the unit found new, 16.50 for the
    # damaged one (half back: a size is the customer's fault); that one scrapped at 30.00.
    assert costs == {
        "key": supplier,
        "currency": "EUR",
        "refunded": "49.50",
        "fees_kept": "0.00",
        "scrapped_units": 1,
        "scrapped_value": "30.00",
        "supplier_credits": "0.00",
        "net_cost": "79.50",
    }
    returns = group(client, "/v1/analytics/returns", "sku", sku, **period)
    # 2 of the 5 units sold (the cancelled order sold nothing, the duplicate counted once).
    assert returns == {
        "key": sku,
        "rmas": 1,
        "lines": 1,
        "units": 2,
        "rejected_lines": 0,
        "sold_units": 5,
        "return_rate": "0.4000",
    }
    # The days before the sale and the return hold none of it.
    before = {
        "from": (now - timedelta(days=40)).date().isoformat(),
        "to": (now - timedelta(days=5)).date().isoformat(),
    }
    assert group(client, "/v1/analytics/returns", "sku", sku, **before) == {}
    assert group(client, "/v1/analytics/costs", "supplier", supplier, **before) == {}


@pytest.mark.parametrize(
    "period",
    [
        {"from": "2026-12-02", "to": "2026-12-01"},
        {"from": "2025-01-01", "to": "2026-01-02"},
        {"from": "2026-13-01", "to": "2026-12-01"},
        {"from": "yesterday", "to": "2026-12-01"},
    ],
)
def test_a_bad_period_is_422_over_http(client: TestClient, period: dict[str, str]) -> None:
    for path in ("/v1/analytics/returns", "/v1/analytics/costs"):
        response = client.get(path, params=period, headers=auth("k-an"))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
