"""Store counters end to end: a store-method RMA made on the portal API is received at a
counter through pos.returns.v1 and through the store tablet's HTTP route; the receipt
shows what is settled and what is pending."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.driven.kafka.topics import POS_RETURNS
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from tests.e2e.builders import System, delivered_web_order, eventually, publish
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

KEYS = {
    "k-portal": Principal("portal-web", Role.PORTAL),
    "k-s4": Principal("tablet-S4", Role.STORE, "S4"),
    "k-s5": Principal("tablet-S5", Role.STORE, "S5"),
}
S4 = {"Authorization": "Bearer k-s4"}


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    api = create_api(system.service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def store_rma(client: TestClient, order_id: str, quantity: int = 2) -> str:
    headers = {
        "Authorization": "Bearer k-portal",
        "X-Customer-Email": f"{order_id.lower()}@example.com",
    }
    body = {
        "order_number": order_id,
        "lines": [{"line_no": 1, "quantity": quantity, "reason": "size_too_small"}],
        "method": "store",
    }
    created = client.post("/v1/returns", json=body, headers=headers)
    assert created.status_code == 201, created.text
    number: str = created.json()["rma_number"]
    return number


def section(html: str, name: str) -> str:
    found = re.search(f"<ul class={name}>(.*?)</ul>", html)
    assert found, html
    return found.group(1)


def test_a_store_rma_is_received_at_a_counter_through_pos_returns(
    system: System, client: TestClient
) -> None:
    order_id = delivered_web_order(system)
    rma_number = store_rma(client, order_id)
    message = m.cloud_event(
        "return.recorded",
        {
            "store_return_id": f"SR-{order_id}",
            "store_id": "S4",
            "staff_id": "clerk-4",
            "order_id": order_id,
            "rma_number": rma_number,
            "items": [
                {"line": 1, "quantity": 2, "reason_code": "size_too_small", "condition": "new"}
            ],
        },
        source="pos/S4",
    )
    # Delivered twice, as Kafka may: the refund is asked for once.
    publish(system.bootstrap, POS_RETURNS, [message, message], key=b"S4")

    rma = eventually(
        lambda: answered(system, rma_number),
        what=f"{rma_number} received at the counter and the provider's answer on its refund",
    )
    assert rma.state.receipts == [f"SR-{order_id}"] and len(rma.state.refunds) == 1
    receipt = client.get(
        f"/v1/stores/S4/returns/SR-{order_id}/receipt",
        params={"rma_number": rma_number},
        headers=S4,
    )
    assert receipt.status_code == 200, receipt.text
    assert where_is(receipt.text, rma) == "60.00 EUR to card"


def answered(system: System, rma_number: str) -> Any:
    rma = system.service.get_return_by_rma(rma_number)
    refunds = rma.state.refunds.values()
    return refunds and all(r.status in {"settled", "failed"} for r in refunds) and rma


def where_is(html: str, rma: Any) -> str:
    """The refund's entry as the receipt prints it, checked to be under the right heading:
    settled, or pending when the sandbox declined it (it declines a few, by refund id)."""
    ((refund_id, refund),) = rma.state.refunds.items()
    heading = "settled" if refund.status == "settled" else "pending"
    entry = re.search(f"{refund_id}: (.*?) \\({refund.status}\\)", section(html, heading))
    assert entry, html
    return entry.group(1)


def test_a_store_rma_is_received_through_the_store_tablet(
    system: System, client: TestClient
) -> None:
    order_id = delivered_web_order(system)
    rma_number = store_rma(client, order_id)
    # Another store cannot look into this store's counter, but any store takes the RMA.
    assert (
        client.get(
            f"/v1/stores/S4/rmas/{rma_number}", headers={"Authorization": "Bearer k-s5"}
        ).status_code
        == 403
    )
    scanned = client.get(f"/v1/stores/S4/rmas/{rma_number}", headers=S4)
    assert scanned.status_code == 200, scanned.text
    view: dict[str, Any] = scanned.json()
    assert view["receivable"] is True and view["refusal"] is None
    assert view["still_to_bring"] == [{"line_no": 1, "sku": "TEE-BLUE-M", "quantity": 2}]
    assert view["order"]["order_number"] == order_id and view["rma"]["status"] == "authorized"

    body = {
        "store_return_id": f"SR-H-{order_id}",
        "staff_id": "clerk-4",
        "lines": [{"line_no": 1, "quantity": 1, "condition": "resellable"}],
    }
    headers = {**S4, "Idempotency-Key": f"counter-{order_id}"}
    received = client.post(f"/v1/stores/S4/rmas/{rma_number}/receive", json=body, headers=headers)
    again = client.post(f"/v1/stores/S4/rmas/{rma_number}/receive", json=body, headers=headers)
    assert received.status_code == 200, received.text
    assert again.json() == received.json() and received.json()["refund_id"]
    link = received.headers["Link"]
    assert f"rma_number={rma_number}" in link

    receipt_url = link.split(">")[0].lstrip("<")
    printed = client.get(receipt_url, headers=S4)
    assert printed.status_code == 200, printed.text
    pending = section(printed.text, "pending")
    # One of the two items is still to bring, whatever the provider answered meanwhile.
    assert "line 1 TEE-BLUE-M: 1 to bring" in pending, pending
    rma = eventually(
        lambda: answered(system, rma_number), what=f"the provider's answer on {rma_number}"
    )
    assert where_is(client.get(receipt_url, headers=S4).text, rma) == "30.00 EUR to card"

    rescanned = client.get(f"/v1/stores/S4/rmas/{rma_number}", headers=S4).json()
    assert rescanned["still_to_bring"] == [{"line_no": 1, "sku": "TEE-BLUE-M", "quantity": 1}]


def test_a_carrier_rma_is_refused_at_the_counter_and_the_scan_says_why(
    system: System, client: TestClient
) -> None:
    order_id = delivered_web_order(system)
    headers = {
        "Authorization": "Bearer k-portal",
        "X-Customer-Email": f"{order_id.lower()}@example.com",
    }
    body = {"order_number": order_id, "lines": [{"line_no": 1, "quantity": 1, "reason": "other"}]}
    rma_number = client.post("/v1/returns", json=body, headers=headers).json()["rma_number"]

    scanned = client.get(f"/v1/stores/S4/rmas/{rma_number}", headers=S4).json()
    assert scanned["receivable"] is False
    assert scanned["refusal"]["code"] == "wrong_return_method"
    refused = client.post(
        f"/v1/stores/S4/rmas/{rma_number}/receive",
        json={
            "store_return_id": f"SR-C-{order_id}",
            "staff_id": "clerk-4",
            "lines": [{"line_no": 1, "quantity": 1, "condition": "new"}],
        },
        headers=S4,
    )
    assert refused.status_code == 409 and refused.json()["code"] == "wrong_return_method"
