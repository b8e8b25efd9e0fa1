"""Yen and dinars end to end: orders through oms.orders.v1, returns through HTTP, refunds
exact to the yen and the fils in the read models and the API; an amount finer than its
currency is dead-lettered from Kafka and answered 422 over HTTP, never rounded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.driven.kafka.topics import ORDERS, WMS_RECEIPTS, dlq
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from domain.errors import NotFound
from tests.e2e.builders import System, eventually, publish, read_topic
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEYS = {
    "k-portal": Principal("portal-web", Role.PORTAL),
    "k-cs": Principal("agent-yen", Role.CUSTOMER_SERVICE),
    "k-wh": Principal("wms-WH-1", Role.WAREHOUSE),
}
CS = {"Authorization": "Bearer k-cs"}


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    api = create_api(system.service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def money(value: str, currency: str) -> dict[str, str]:
    return {"amount": value, "currency": currency}


def order_placed(
    order_id: str, currency: str, price: str, shipping: str, payments: list[tuple[str, str]]
) -> bytes:
    return m.cloud_event(
        "order.placed",
        {
            "order_id": order_id,
            "customer_id": f"cust-{order_id}",
            "channel": "web",
            "customer_email": f"{order_id.lower()}@example.com",
            "lines": [
                {
                    "line_no": 1,
                    "sku": "TEE-BLUE-M",
                    "quantity": 2,
                    "unit_price": money(price, currency),
                    "supplier": "Threads",
                    "category": "apparel",
                }
            ],
            "payments": [
                {"payment_id": pid, "method": method, "amount": money(value, currency)}
                for pid, method, value in ((f"pay-{i}", *p) for i, p in enumerate(payments))
            ],
            "shipping": money(shipping, currency),
        },
        source="commerce/web",
        time=datetime.now(UTC) - timedelta(days=10),
    )


def delivered(system: System, placed: bytes, order_id: str) -> None:
    messages = [placed, m.order_fulfilled(order_id), m.order_delivered(order_id, days_ago=5)]
    # Sent twice: a redelivered message changes nothing.
    publish(system.bootstrap, ORDERS, messages + messages, key=order_id.encode())

    def done() -> bool:
        try:
            return system.service.order_view(order_id)["delivered_at"] is not None
        except Exception:
            return False

    eventually(done, what=f"{order_id} delivered")


def returned(client: TestClient, system: System, order_id: str, reason: str) -> dict[str, Any]:
    """One unit asked back through the portal, received and inspected through the WMS."""
    headers = {
        "Authorization": "Bearer k-portal",
        "X-Customer-Email": f"{order_id.lower()}@example.com",
    }
    body = {"order_number": order_id, "lines": [{"line_no": 1, "quantity": 1, "reason": reason}]}
    created = client.post("/v1/returns", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "authorized", created.text
    seen = client.get(f"/v1/returns/{created.json()['return_id']}", headers=CS)
    rma: dict[str, Any] = seen.json()
    receipt = f"RCPT-{uuid.uuid4().hex[:8]}"
    inspected = m.items_inspected(receipt, rma["rma_number"])
    publish(
        system.bootstrap,
        WMS_RECEIPTS,
        [m.parcel_received(receipt, rma["rma_number"]), inspected, inspected],
        key=receipt.encode(),
    )
    return rma


def refunds_of(client: TestClient, return_id: str) -> list[dict[str, Any]]:
    listed = client.get("/v1/refunds", params={"return_id": return_id}, headers=CS)
    assert listed.status_code == 200, listed.text
    items: list[dict[str, Any]] = listed.json()["items"]
    return items


def allocations(client: TestClient, return_id: str) -> dict[str, dict[str, str]]:
    def requested() -> dict[str, Any] | None:
        seen: dict[str, Any] = client.get(f"/v1/returns/{return_id}", headers=CS).json()
        return seen if seen.get("refunds") else None

    view = eventually(requested, what="the refund requested")
    [refund] = view["refunds"].values()
    assert refund["amount"]["amount"] == view["expected_refund"]["amount"]
    return {a["payment_id"]: a["amount"] for a in refund["allocations"]}


def test_a_yen_order_is_refunded_to_the_yen_over_two_payments(
    system: System, client: TestClient
) -> None:
    order_id = f"JP-{uuid.uuid4().hex[:8]}"
    placed = order_placed(order_id, "JPY", "29800", "500", [("card", "40000"), ("paypal", "20100")])
    delivered(system, placed, order_id)
    rma = returned(client, system, order_id, "size_too_small")
    # 29,800 JPY (about 180 EUR) is far below the yen review threshold: authorized at once.
    assert rma["expected_refund"] == money("29800", "JPY")
    # Split 40000:20100 in whole yen, by largest remainder: 19833.61 -> 19834, 9966.39 -> 9966.
    assert allocations(client, rma["return_id"]) == {
        "pay-0": money("19834", "JPY"),
        "pay-1": money("9966", "JPY"),
    }
    rows = eventually(lambda: refunds_of(client, rma["return_id"]), what="the refund row")
    assert len(rows) == 1  # the inspection sent twice asked once
    assert (rows[0]["currency"], Decimal(str(rows[0]["requested"]))) == ("JPY", Decimal(29800))


def test_a_dinar_order_keeps_its_fils_from_the_event_store_to_the_read_models(
    system: System, client: TestClient
) -> None:
    order_id = f"KW-{uuid.uuid4().hex[:8]}"
    delivered(
        system, order_placed(order_id, "KWD", "12.345", "1.250", [("card", "25.940")]), order_id
    )
    rma = returned(client, system, order_id, "defective")
    # A defect refunds the shipping too: 12.345 + 1.250, not 13.59 or 13.60.
    assert rma["expected_refund"] == money("13.595", "KWD")
    assert allocations(client, rma["return_id"]) == {"pay-0": money("13.595", "KWD")}
    rows = eventually(lambda: refunds_of(client, rma["return_id"]), what="the refund row")
    assert Decimal(str(rows[0]["requested"])) == Decimal("13.595")


def test_an_amount_finer_than_its_currency_is_dead_lettered_and_answered_422(
    system: System, client: TestClient
) -> None:
    order_id = f"EU-{uuid.uuid4().hex[:8]}"
    placed = order_placed(order_id, "EUR", "12.345", "0.00", [("card", "24.69")])
    publish(system.bootstrap, ORDERS, [placed], key=order_id.encode())

    def letter() -> dict[str, bytes] | None:
        for record in read_topic(system.bootstrap, dlq(ORDERS)):
            if record.key == order_id.encode():
                return dict(record.headers)
        return None

    headers = eventually(letter, what="the dead letter")
    assert headers["x-dlq-error-code"] == b"invalid_data"
    assert b"12.345 EUR has more decimals than EUR allows (2)" in headers["x-dlq-reason"]
    with pytest.raises(NotFound):
        system.service.order_view(order_id)

    refused = client.post(
        "/v1/legs/RMA-7K2Q-M4XD/LEG-1/vendor-credited",
        json={"amount": money("4.0005", "KWD")},
        headers={"Authorization": "Bearer k-wh"},
    )
    assert refused.status_code == 422, refused.text
    assert "4.0005 KWD has more decimals than KWD allows (3)" in refused.text
