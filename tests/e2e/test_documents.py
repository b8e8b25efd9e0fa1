"""Documents people print, end to end: an order comes in on its Kafka topic, the portal
asks for an RMA over HTTP, and its return note comes back as a PDF (read back with pypdf)
or HTML; a counter return's receipt as a PDF too; a note stays the customer's own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from adapters.driven.kafka.topics import ORDERS
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from tests.e2e.builders import System, _delivered, eventually, publish
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

KEYS = {
    "k-portal": Principal("portal-web", Role.PORTAL),
    "k-s6": Principal("tablet-S6", Role.STORE, "S6"),
}
ADDRESS = "Returns Centre WH-1, 1 Dock Road, 10115 Berlin, Germany"


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    settings = ApiSettings(warehouse_addresses={"WH-1": ADDRESS})
    api = create_api(system.service, system.database_url, settings, KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def named_order(system: System, order_id: str) -> None:
    """Placed (with the item's name, as the shop sends it), fulfilled and delivered."""
    placed = json.loads(m.order_placed(order_id, days_ago=20))
    placed["data"]["lines"][0]["name"] = "Blue tee, size M"
    publish(
        system.bootstrap,
        ORDERS,
        [
            json.dumps(placed).encode(),
            m.order_fulfilled(order_id),
            m.order_delivered(order_id, days_ago=18),
        ],
        key=order_id.encode(),
    )
    eventually(lambda: _delivered(system, order_id), what=f"{order_id} delivered")


def portal(order_id: str) -> dict[str, str]:
    return {
        "Authorization": "Bearer k-portal",
        "X-Customer-Email": f"{order_id.lower()}@example.com",
    }


def request_rma(client: TestClient, order_id: str, method: str = "carrier_drop_off") -> Any:
    body = {
        "order_number": order_id,
        "lines": [{"line_no": 1, "quantity": 1, "reason": "changed_mind"}],
        "method": method,
    }
    created = client.post("/v1/returns", json=body, headers=portal(order_id))
    assert created.status_code == 201, created.text
    return created.json()


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(BytesIO(content)).pages)


def test_a_portal_customer_prints_the_return_note_as_pdf_and_html(
    system: System, client: TestClient
) -> None:
    order_id = f"WEB-DOC-{uuid.uuid4().hex[:8]}"
    named_order(system, order_id)
    rma = request_rma(client, order_id)
    number = rma["rma_number"]
    url = f"/v1/returns/{number}/note"

    asked = client.get(url, headers=portal(order_id) | {"Accept": "application/pdf"})
    assert asked.status_code == 200, asked.text
    assert asked.headers["content-type"] == "application/pdf"
    assert asked.content.startswith(b"%PDF")
    text = pdf_text(asked.content)
    assert number in text and "Blue tee, size M" in text
    # Delivered 18 days ago (more than 14): a change of mind pays the 10% fee.
    assert "30.00 EUR" in text and "Restocking fee: 3.00 EUR" in text and "27.00 EUR" in text
    assert "1 Dock Road" in text and "10115 Berlin" in text
    assert "Return window: 30 days" in text and "What happens next" in text
    # The same note asked for again is the same document, byte for byte.
    by_query = client.get(url, params={"format": "pdf"}, headers=portal(order_id))
    assert by_query.content == asked.content

    html = client.get(url, headers=portal(order_id) | {"Accept": "text/html,*/*"})
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert f'data-value="{number}"><svg' in html.text and "Blue tee, size M" in html.text

    # Another customer's note is not found, in either format.
    stranger = {"Authorization": "Bearer k-portal", "X-Customer-Email": "who@example.com"}
    assert client.get(url, params={"format": "pdf"}, headers=stranger).status_code == 404

    cancelled = client.post(
        f"/v1/returns/{number}/cancel", json={"reason": "kept it"}, headers=portal(order_id)
    )
    assert cancelled.status_code == 200, cancelled.text
    voided = pdf_text(client.get(url, params={"format": "pdf"}, headers=portal(order_id)).content)
    assert "CANCELLED" in voided and "Do not send this parcel" in voided
    assert "class=void>CANCELLED" in client.get(url, headers=portal(order_id)).text


def test_a_store_rma_received_at_the_counter_has_a_pdf_receipt(
    system: System, client: TestClient
) -> None:
    order_id = f"WEB-DOCS-{uuid.uuid4().hex[:8]}"
    named_order(system, order_id)
    number = request_rma(client, order_id, method="store")["rma_number"]
    tablet = {"Authorization": "Bearer k-s6"}
    body = {
        "store_return_id": f"SR-{order_id}",
        "staff_id": "clerk-6",
        "lines": [{"line_no": 1, "quantity": 1, "condition": "new"}],
    }
    received = client.post(f"/v1/stores/S6/rmas/{number}/receive", json=body, headers=tablet)
    assert received.status_code in (200, 201), received.text
    receipt_url = received.headers["Link"].split(">")[0].lstrip("<")
    printed = client.get(receipt_url, headers=tablet | {"Accept": "application/pdf"})
    assert printed.status_code == 200 and printed.headers["content-type"] == "application/pdf"
    text = pdf_text(printed.content)
    assert "Return receipt" in text and number in text and "Blue tee, size M" in text
    assert "Store: S6" in text and f"Receipt: SR-{order_id}" in text
    assert "clerk" not in text.lower()
