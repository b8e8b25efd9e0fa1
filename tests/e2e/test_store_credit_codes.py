"""Store-credit codes end to end: a return paid as store credit (requested over HTTP,
received and inspected on the WMS topic) issues a code the customer is told of; a till
reads what the code can spend over HTTP; another customer's order on oms.orders.v1 pays
with the code, one spending too much is dead-lettered; the ledger's lines on its topic show
the credit spent."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from adapters.driven.kafka.topics import NOTIFICATIONS, ORDERS, REFUND_LEDGER, WMS_RECEIPTS, dlq
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from tests.e2e.builders import System, delivered_web_order, eventually, publish, read_topic
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEYS = {
    "k-cs": Principal("agent-codes", Role.CUSTOMER_SERVICE),
    "k-till": Principal("till-7", Role.STORE),
    "k-portal": Principal("portal", Role.PORTAL),
}
CS = {"Authorization": "Bearer k-cs"}
TILL = {"Authorization": "Bearer k-till"}


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    api = create_api(system.service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def paid_by_code(order_id: str, customer_id: str, code: str, credit: str) -> bytes:
    return m.cloud_event(
        "order.placed",
        {
            "order_id": order_id,
            "customer_id": customer_id,
            "channel": "web",
            "lines": [
                {"line_no": 1, "sku": "TEE-BLUE-M", "quantity": 1, "unit_price": m.amount(credit)}
            ],
            "payments": [
                {
                    "payment_id": "pay-code",
                    "method": "store_credit",
                    "amount": m.amount(credit),
                    "store_credit_code": code,
                }
            ],
            "shipping": m.amount("0.00"),
        },
        source="commerce/web",
        time=datetime.now(UTC) - timedelta(minutes=1),
    )


def by_code(client: TestClient, code: str) -> dict[str, Any]:
    response = client.get(f"/v1/store-credit/{code}", headers=TILL)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def notified_code(system: System, rma_number: str) -> str | None:
    for record in read_topic(system.bootstrap, NOTIFICATIONS):
        notice = orjson.loads(record.value)
        data = notice["data"]
        if notice["type"] == "notification.store_credit_issued" and str(
            data.get("credit_id", "")
        ).startswith(f"SC-{rma_number}-"):
            return str(data["code"])
    return None


def ledger_lines(system: System, order_id: str) -> list[tuple[str, str, Decimal, Decimal]]:
    lines = []
    for record in read_topic(system.bootstrap, REFUND_LEDGER):
        row = orjson.loads(record.value)
        row = row.get("data", row)
        if row.get("refund_id") == order_id:
            lines.append(
                (row["entry"], row["account"], Decimal(row["debit"]), Decimal(row["credit"]))
            )
    return sorted(lines)


def test_a_credit_code_is_told_read_at_the_till_and_spent_by_another_customers_order(
    system: System, client: TestClient
) -> None:
    order_id = delivered_web_order(system)  # 2 x 30.00 + 4.90 shipping, by card
    customer = f"cust-{order_id}"
    created = client.post(
        "/v1/returns",
        json={
            "order_number": order_id,
            "lines": [{"line_no": 1, "quantity": 1, "reason": "size_too_small"}],
            "refund_method": "store_credit",
        },
        headers={**CS, "Idempotency-Key": f"codes-{order_id}"},
    )
    assert created.status_code == 201, created.text
    rma_number = created.json()["rma_number"]
    receipt = f"REC-{order_id}"
    publish(
        system.bootstrap,
        WMS_RECEIPTS,
        [m.parcel_received(receipt, rma_number), m.items_inspected(receipt, rma_number)],
        key=receipt.encode(),
    )
    # The customer is told the code with the credit; the balance view shows the same one.
    code = eventually(lambda: notified_code(system, rma_number), what="the credit's notice")
    account = client.get(f"/v1/customers/{customer}/store-credit", headers=CS).json()
    assert [mv["code"] for mv in account["movements"]] == [code]

    # 30.00 plus the 10 % bonus; the till learns the balance and nothing about whose it is.
    assert by_code(client, code) == {
        "code": code,
        "balances": [{"currency": "EUR", "balance": "33.00"}],
    }
    assert client.get("/v1/store-credit/SC-AAAAAAAAAAAA", headers=TILL).status_code == 404
    assert (
        client.get(
            f"/v1/store-credit/{code}", headers={"Authorization": "Bearer k-portal"}
        ).status_code
        == 403
    )

    # Someone else's order pays with the code: the code's account pays, redelivery once.
    spending = f"CODE-{uuid.uuid4().hex[:8]}"
    placed = paid_by_code(spending, f"friend-{uuid.uuid4().hex[:6]}", code, "20.00")
    publish(system.bootstrap, ORDERS, [placed, placed], key=spending.encode())
    eventually(
        lambda: by_code(client, code)["balances"] == [{"currency": "EUR", "balance": "13.00"}],
        what="the credit spent by code",
    )

    greedy = f"CODE-{uuid.uuid4().hex[:8]}"
    refused = paid_by_code(greedy, customer, code, "500.00")
    publish(system.bootstrap, ORDERS, [refused], key=greedy.encode())
    [letter] = eventually(
        lambda: [d for d in read_topic(system.bootstrap, dlq(ORDERS)) if d.value == refused],
        what="the refused order's dead letter",
    )
    assert dict(letter.headers)["x-dlq-error-code"] == b"insufficient_store_credit"
    assert by_code(client, code)["balances"] == [{"currency": "EUR", "balance": "13.00"}]

    # The ledger books the spend once: the liability down, the redemption up.
    assert eventually(lambda: ledger_lines(system, spending), what="the ledger's lines") == [
        ("store_credit_spent", "store_credit_liability", Decimal("20.00"), Decimal(0)),
        ("store_credit_spent", "store_credit_redeemed", Decimal(0), Decimal("20.00")),
    ]
