"""Store credit end to end: a return paid as store credit (requested over HTTP, received
and inspected by the WMS on its topic) credits the customer; orders from the commerce
platform spend it on oms.orders.v1, one spending too much is dead-lettered with the reason;
the balance and its moves are read over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from adapters.driven.kafka.topics import ORDERS, STORE_CREDIT_EVENTS, WMS_RECEIPTS, dlq
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from tests.e2e.builders import System, delivered_web_order, eventually, publish, read_topic
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEYS = {"k-cs": Principal("agent-sc", Role.CUSTOMER_SERVICE)}
CS = {"Authorization": "Bearer k-cs"}


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    api = create_api(system.service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def paid_with_credit(order_id: str, customer_id: str, credit: str, card: str) -> bytes:
    total = f"{float(credit) + float(card):.2f}"  # test data only; the system never floats
    payments = [{"payment_id": "pay-sc", "method": "store_credit", "amount": m.amount(credit)}]
    if card != "0.00":
        payments.append({"payment_id": "pay-card", "method": "card", "amount": m.amount(card)})
    return m.cloud_event(
        "order.placed",
        {
            "order_id": order_id,
            "customer_id": customer_id,
            "channel": "web",
            "lines": [
                {"line_no": 1, "sku": "TEE-BLUE-M", "quantity": 1, "unit_price": m.amount(total)}
            ],
            "payments": payments,
            "shipping": m.amount("0.00"),
        },
        source="commerce/web",
        time=datetime.now(UTC) - timedelta(minutes=1),
    )


def balance(client: TestClient, customer_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/customers/{customer_id}/store-credit", headers=CS)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def eur_balance(client: TestClient, customer_id: str) -> str | None:
    found = [b["balance"] for b in balance(client, customer_id)["balances"]]
    return found[0] if found else None


def test_store_credit_from_a_return_is_spent_by_orders_and_refused_past_the_balance(
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
        headers={**CS, "Idempotency-Key": f"sc-{order_id}"},
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
    # 30.00 back as store credit plus the policy's 10 % bonus: the customer chose credit.
    eventually(lambda: eur_balance(client, customer) == "33.00", what="credit issued")

    spending = f"SC-{uuid.uuid4().hex[:8]}"
    placed = paid_with_credit(spending, customer, "20.00", "9.90")
    publish(system.bootstrap, ORDERS, [placed], key=spending.encode())
    eventually(lambda: eur_balance(client, customer) == "13.00", what="credit spent")
    # The same message redelivered, then the order's fulfilment after it on its key: once
    # the fulfilment is in, the duplicate was handled before it and spent nothing.
    publish(
        system.bootstrap,
        ORDERS,
        [placed, m.order_fulfilled(spending, quantity=1)],
        key=spending.encode(),
    )
    eventually(lambda: fulfilled(system, spending), what="the fulfilment")
    assert eur_balance(client, customer) == "13.00"

    greedy = f"SC-{uuid.uuid4().hex[:8]}"
    refused = paid_with_credit(greedy, customer, "500.00", "0.00")
    publish(system.bootstrap, ORDERS, [refused], key=greedy.encode())
    [letter] = eventually(
        lambda: [d for d in read_topic(system.bootstrap, dlq(ORDERS)) if d.value == refused],
        what="the refused order's dead letter",
    )
    headers = dict(letter.headers)
    assert headers["x-dlq-error-code"] == b"insufficient_store_credit"
    assert b"spends 500.00 EUR" in headers["x-dlq-reason"]
    assert b"13.00 EUR" in headers["x-dlq-reason"]

    account = balance(client, customer)
    assert account["balances"] == [{"currency": "EUR", "balance": "13.00"}]
    assert [
        (mv["kind"], mv["reason"], mv["amount"], mv["balance"]) for mv in account["movements"]
    ] == [
        ("credited", "return", "33.00", "33.00"),
        ("spent", "order", "20.00", "13.00"),
    ]
    assert account["movements"][1]["reference"] == spending

    relayed = eventually(
        lambda: [
            e
            for r in read_topic(system.bootstrap, STORE_CREDIT_EVENTS)
            if (e := orjson.loads(r.value))["data"]["customer_id"] == customer
        ],
        what="the store-credit events relayed",
    )
    assert {e["type"] for e in relayed} <= {"store_credit.credited", "store_credit.spent"}


def test_a_customer_never_credited_has_no_balance(client: TestClient) -> None:
    stranger = f"nobody-{uuid.uuid4().hex[:6]}"
    assert balance(client, stranger) == {
        "customer_id": stranger,
        "balances": [],
        "movements": [],
        "version": 0,
    }


def fulfilled(system: System, order_id: str) -> bool:
    try:
        return bool(system.service.order_view(order_id)["lines"][0]["fulfilled"] == 1)
    except Exception:
        return False
