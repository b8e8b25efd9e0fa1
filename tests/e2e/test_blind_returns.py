"""Blind parcels end to end: the warehouse publishes on wms.receipts.v1 as it would, customer
service acts over HTTP; every journey runs to its end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.driven.kafka.topics import ORDERS, WMS_RECEIPTS
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from domain.returns import blind_return_id_for
from tests.e2e.builders import System, eventually, publish, rma_events
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEYS = {"k-cs": Principal("agent-bea", Role.CUSTOMER_SERVICE)}
CS = {"Authorization": "Bearer k-cs"}
SKU = "TEE-BLUE-M"  # what the wire builders sell


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    api = create_api(system.service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def delivered(system: System, serials: list[str] | None = None) -> str:
    order_id = f"WEB-{uuid.uuid4().hex[:8]}"
    publish(
        system.bootstrap,
        ORDERS,
        [
            m.order_placed(order_id, serials=serials),
            m.order_fulfilled(order_id, serials=serials),
            m.order_delivered(order_id),
        ],
        key=order_id.encode(),
    )
    eventually(lambda: _delivered(system, order_id), what=f"{order_id} delivered", timeout=200)
    return order_id


def _delivered(system: System, order_id: str) -> bool:
    try:
        return system.service.order_view(order_id)["delivered_at"] is not None
    except Exception:
        return False


def parcel(receipt: str, *, serial: str | None = None, rma_number: str | None = None) -> bytes:
    return m.cloud_event(
        "parcel.received",
        {
            "receipt_id": receipt,
            "warehouse_id": "WH-1",
            "rma_number": rma_number,
            "tracking_number": "TRK-B",
            "items": [{"sku": SKU, "quantity": 1, "serial": serial}],
        },
        source="wms/WH-1",
    )


def inspected_by_receipt(receipt: str, event_id: str) -> bytes:
    return m.cloud_event(
        "items.inspected",
        {
            "receipt_id": receipt,
            "warehouse_id": "WH-1",
            "items": [{"sku": SKU, "quantity": 1, "condition": "new", "disposition": "restock"}],
        },
        source="wms/WH-1",
        event_id=event_id,
    )


def view(client: TestClient, return_id: uuid.UUID) -> dict[str, Any]:
    answer = client.get(f"/v1/blind-returns/{return_id}", headers=CS)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    body["etag"] = answer.headers["ETag"]
    return body


def test_a_parcel_with_a_sold_serial_is_matched_with_no_person(
    system: System, client: TestClient
) -> None:
    serial = f"SN-{uuid.uuid4().hex[:8]}"
    order_id = delivered(system, serials=[serial, f"{serial}-2"])
    receipt = f"BLS-{uuid.uuid4().hex[:8]}"
    publish(system.bootstrap, WMS_RECEIPTS, [parcel(receipt, serial=serial)], key=receipt.encode())
    return_id = blind_return_id_for(receipt)
    types = eventually(
        lambda: (t := rma_events(system, return_id)) and "rma.blind_return_matched" in t and t,
        what="the blind parcel matched and relayed",
        timeout=200,
    )
    assert types[:2] == ["rma.blind_return_detected", "rma.blind_return_matched"]
    shown = view(client, return_id)
    assert (shown["matched_by"], shown["order_number"], shown["status"]) == (
        "serial",
        order_id,
        "received",
    )
    assert shown["suggested_matches"] == []  # nothing to suggest once matched


def test_inspected_before_its_match_then_matched_over_http_it_is_refunded_once(
    system: System, client: TestClient
) -> None:
    order_id = delivered(system)
    receipt = f"BLI-{uuid.uuid4().hex[:8]}"
    publish(system.bootstrap, WMS_RECEIPTS, [parcel(receipt)], key=receipt.encode())
    return_id = blind_return_id_for(receipt)
    eventually(
        lambda: _status(system, return_id) == "blind_unmatched",
        what="the blind return",
        timeout=200,
    )
    message = inspected_by_receipt(receipt, event_id=f"insp-{receipt}")
    publish(system.bootstrap, WMS_RECEIPTS, [message, message], key=receipt.encode())
    eventually(
        lambda: system.service.get_return(return_id).state.inspected_items,
        what="the inspection recorded on the unmatched parcel",
        timeout=200,
    )
    waiting = view(client, return_id)
    assert waiting["status"] == "blind_unmatched"
    assert [i["disposition"] for i in waiting["inspected_items"]] == ["restock"]
    assert (order_id, "sku") in [(s["order_number"], s["by"]) for s in waiting["suggested_matches"]]
    suggestion = next(s for s in waiting["suggested_matches"] if s["order_number"] == order_id)
    matched = client.post(
        f"/v1/blind-returns/{return_id}/match",
        json={
            "order_number": order_id,
            "matched_by": "customer",
            "lines": [{"line_no": suggestion["line_no"], "quantity": 1, "reason": "changed_mind"}],
        },
        headers={**CS, "If-Match": waiting["etag"], "Idempotency-Key": f"m-{receipt}"},
    )
    assert matched.status_code == 200, matched.text
    body = matched.json()
    assert (body["status"], body["amount"]) == (
        "refund_pending",
        {"amount": "27.00", "currency": "EUR"},  # 30.00 less the 10% blind-return fee
    )
    types = eventually(
        lambda: (t := rma_events(system, return_id)) and "rma.refund_requested" in t and t,
        what="the refund relayed",
        timeout=200,
    )
    assert types.count("rma.items_inspected") == 1  # the redelivered message changed nothing
    assert types.count("rma.refund_requested") == 1
    assert "rma.blind_inspection_assessed" in types


def test_a_duplicate_report_is_linked_over_http_with_no_refund(
    system: System, client: TestClient
) -> None:
    order_id = delivered(system)
    rma = m.authorized_return(system.service, order_id)
    assert rma.rma_number is not None
    own = f"REC-{uuid.uuid4().hex[:8]}"
    publish(
        system.bootstrap,
        WMS_RECEIPTS,
        [m.parcel_received(own, rma.rma_number), m.items_inspected(own, rma.rma_number)],
        key=own.encode(),
    )
    receipt = f"BLD-{uuid.uuid4().hex[:8]}"
    publish(system.bootstrap, WMS_RECEIPTS, [parcel(receipt)], key=receipt.encode())
    return_id = blind_return_id_for(receipt)
    eventually(
        lambda: (
            _status(system, return_id) == "blind_unmatched"
            and system.service.get_return(rma.aggregate_id).state.inspected_items
        ),
        what="both reports recorded",
        timeout=200,
    )
    waiting = view(client, return_id)
    linked = client.post(
        f"/v1/blind-returns/{return_id}/link",
        json={"linked": rma.rma_number, "reason": "the RMA's own parcel, scanned twice"},
        headers={**CS, "If-Match": waiting["etag"], "Idempotency-Key": f"l-{receipt}"},
    )
    assert linked.status_code == 200, linked.text
    assert linked.json()["status"] == "closed"
    shown = view(client, return_id)
    assert (shown["closed_outcome"], shown["linked_return_id"]) == ("linked", str(rma.aggregate_id))
    assert shown["refunds"] == {}
    types = eventually(
        lambda: (t := rma_events(system, return_id)) and "rma.blind_return_linked" in t and t,
        what="the link relayed",
        timeout=200,
    )
    assert "rma.refund_requested" not in types


def _status(system: System, return_id: uuid.UUID) -> str | None:
    try:
        return system.service.get_return(return_id).state.status.value
    except Exception:
        return None
