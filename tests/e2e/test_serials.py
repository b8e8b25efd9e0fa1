"""Serials and stock in real time, through the topics and HTTP on the embedded stack: a
serial's life read in one query, a sale of a serial in repair flagged, a late stock count
that keeps a later restock, and a store sale's repeated fulfilment accepted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient

from adapters.driven.kafka.deadletters.reading import list_dead_letters
from adapters.driven.kafka.topics import ORDERS, WMS_RECEIPTS
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from adapters.driving.api.routes_serials import SerialState
from domain.commands import CompleteRepair, RestockRepaired, SendToRepair
from projections.serials import STATES
from tests.e2e.builders import System, eventually, publish
from tests.integration import builders as m
from tests.integration.builders import ctx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEYS = {
    "k-cs": Principal("agent-ann", Role.CUSTOMER_SERVICE),
    "k-wh": Principal("wms-WH-1", Role.WAREHOUSE),
}
CS = {"Authorization": "Bearer k-cs"}
WH = {"Authorization": "Bearer k-wh"}


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    api = create_api(system.service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def store_sale(order_id: str, serial: str, customer: str, store: str = "ST-1") -> bytes:
    return m.cloud_event(
        "order.placed",
        {
            "order_id": order_id,
            "customer_id": customer,
            "channel": "store",
            "store_id": store,
            "lines": [
                {
                    "line_no": 1,
                    "sku": "TEE-BLUE-M",
                    "quantity": 1,
                    "unit_price": m.amount("30.00"),
                    "serials": [serial],
                }
            ],
            "payments": [{"payment_id": "pay-1", "method": "card", "amount": m.amount("30.00")}],
            "shipping": m.amount("0.00"),
        },
        source=f"pos/{store}",
    )


def fulfilled(order_id: str, serial: str, location: str) -> bytes:
    return m.cloud_event(
        "order.fulfilled",
        {
            "order_id": order_id,
            "location_id": location,
            "lines": [{"line_no": 1, "quantity": 1, "serials": [serial]}],
        },
        source=f"wms/{location}",
    )


def life(client: TestClient, serial: str, kinds: int) -> dict[str, Any] | None:
    answer = client.get(f"/v1/serials/{serial}", headers=CS)
    if answer.status_code != 200:
        return None
    body: dict[str, Any] = answer.json()
    return body if len(body.get("timeline", ())) >= kinds else None


def test_a_serials_life_sale_return_repair_restock_resale_reads_in_one_query_and_a_sale_in_repair_is_flagged(  # noqa: E501
    system: System, client: TestClient
) -> None:
    serial = f"SN-{uuid.uuid4().hex[:10]}"
    first = f"WEB-{uuid.uuid4().hex[:8]}"
    publish(
        system.bootstrap,
        ORDERS,
        [
            m.order_placed(first, quantity=1, serials=[serial]),
            m.order_fulfilled(first, quantity=1, serials=[serial]),
            m.order_delivered(first),
        ],
        key=first.encode(),
    )
    eventually(
        lambda: system.service.order_view(first)["delivered_at"] if _known(system, first) else None,
        what="the first sale",
    )
    created = client.post(
        "/v1/returns",
        json={
            "order_number": first,
            "lines": [{"line_no": 1, "quantity": 1, "reason": "defective", "serial": serial}],
        },
        headers=CS | {"Idempotency-Key": f"rma-{serial}"},
    )
    assert created.status_code == 201, created.text
    rma = created.json()
    receipt = f"REC-{serial}"
    publish(
        system.bootstrap,
        WMS_RECEIPTS,
        [
            m.cloud_event(
                "parcel.received",
                {
                    "receipt_id": receipt,
                    "warehouse_id": "WH-1",
                    "rma_number": rma["rma_number"],
                    "items": [{"sku": "TEE-BLUE-M", "quantity": 1, "serial": serial}],
                },
                source="wms/WH-1",
            ),
            m.cloud_event(
                "items.inspected",
                {
                    "receipt_id": receipt,
                    "rma_number": rma["rma_number"],
                    "warehouse_id": "WH-1",
                    "items": [
                        {
                            "sku": "TEE-BLUE-M",
                            "quantity": 1,
                            "serial": serial,
                            "condition": "defective",
                            "disposition": "repair",
                        }
                    ],
                },
                source="wms/WH-1",
            ),
        ],
        key=receipt.encode(),
    )
    return_id = uuid.UUID(rma["return_id"])
    eventually(
        lambda: "L1" in system.service.get_return(return_id).state.legs, what="the repair leg"
    )
    # The repair leg moves by commands here: its messages and routes are another part.
    system.service.run(ctx(), SendToRepair(return_id, "L1", "FixIt"))
    # Sold at a store counter while we believe it is at the repair centre: flagged.
    mistaken = f"POS-{uuid.uuid4().hex[:8]}"
    publish(system.bootstrap, ORDERS, [store_sale(mistaken, serial, "cust-walk-in")])
    eventually(lambda: _known(system, mistaken), what="the store sale")
    system.service.run(ctx(), CompleteRepair(return_id, "L1", "repaired"))
    system.service.run(ctx(), RestockRepaired(return_id, "L1", "WH-B"))
    resale = f"WEB-{uuid.uuid4().hex[:8]}"
    publish(
        system.bootstrap,
        ORDERS,
        [
            m.order_placed(resale, quantity=1, serials=[serial], days_ago=0),
            fulfilled(resale, serial, "WH-B"),
        ],
        key=resale.encode(),
    )
    body = eventually(lambda: life(client, serial, 12), what="the serial's whole life")
    assert [(e["kind"], e["state"]) for e in body["timeline"]] == [
        ("sold", "with_customer"),
        ("shipped", "with_customer"),
        ("return_requested", None),
        ("rma_authorized", None),
        ("received", "received"),
        ("inspected", "in_repair"),
        ("repair_sent", "in_repair"),
        ("sold", "with_customer"),
        ("repair_completed", None),
        ("restocked", "in_stock"),
        ("sold", "with_customer"),
        ("shipped", "with_customer"),
    ]
    assert body["sales"][0]["order_number"] == first
    assert body["current"]["state"] == "with_customer"
    assert body["current"]["customer_id"] == f"cust-{resale}"
    assert [(f["order_number"], f["state_before"]) for f in body["flags"]] == [
        (mistaken, "in_repair")
    ]
    flagged = client.get("/v1/serials?flagged=true&limit=200", headers=WH).json()["items"]
    assert [f["order_number"] for f in flagged if f["serial"] == serial] == [mistaken]
    in_stock = client.get("/v1/serials?state=with_customer&limit=200", headers=CS).json()
    assert all(item["state"] == "with_customer" for item in in_stock["items"])
    assert client.get("/v1/serials?state=lost", headers=CS).status_code == 422


def _known(system: System, order_id: str) -> bool:
    try:
        system.service.order_view(order_id)
        return True
    except Exception:
        return False


def test_the_api_names_every_state_a_serial_can_be_in() -> None:
    assert get_args(SerialState) == STATES


def level(client: TestClient, sku: str) -> dict[str, Any] | None:
    answer = client.get(f"/v1/stock/{sku}/WH-1", headers=WH)
    return answer.json() if answer.status_code == 200 else None


@pytest.mark.parametrize("told_by", ["envelope-time", "counted_at"])
def test_a_stock_count_reported_three_hours_late_keeps_the_restock_made_since(
    system: System, client: TestClient, told_by: str
) -> None:
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    restock = m.cloud_event(
        "stock.adjusted",
        {"sku": sku, "location_id": "WH-1", "delta": 3, "reason": "restock"},
        source="wms/WH-1",
        time=now - timedelta(hours=1),
    )
    publish(system.bootstrap, WMS_RECEIPTS, [restock], key=sku.encode())
    eventually(lambda: (row := level(client, sku)) and row["available"] == 3, what="restock")
    taken = now - timedelta(hours=3)
    data: dict[str, Any] = {"sku": sku, "location_id": "WH-1", "quantity": 10}
    if told_by == "counted_at":
        data["counted_at"] = taken.isoformat()
    count = m.cloud_event(
        "stock.counted", data, source="wms/WH-1", time=now if told_by == "counted_at" else taken
    )
    publish(system.bootstrap, WMS_RECEIPTS, [count, count], key=sku.encode())
    row = eventually(lambda: (r := level(client, sku)) and r["counted"] == 10 and r, what="count")
    assert row["available"] == 13
    at = {"at": (now - timedelta(hours=2)).isoformat()}
    assert client.get(f"/v1/stock/{sku}/WH-1", params=at, headers=WH).json()["available"] == 10
    assert client.get(f"/v1/stock/{sku}/WH-1", headers=WH).json()["available"] == 13


def test_a_store_sales_repeated_fulfilment_is_accepted_and_a_contradicting_one_dead_lettered(
    system: System,
) -> None:
    serial = f"SN-{uuid.uuid4().hex[:10]}"
    sale = f"POS-{uuid.uuid4().hex[:8]}"
    repeat = fulfilled(sale, serial, "ST-1")
    elsewhere = fulfilled(sale, serial, "WH-9")
    delivered = m.cloud_event("order.delivered", {"order_id": sale}, source="pos/ST-1")
    publish(
        system.bootstrap,
        ORDERS,
        [store_sale(sale, serial, "cust-1"), repeat, delivered, elsewhere],
        key=sale.encode(),
    )
    letter = eventually(
        lambda: next(
            (
                d
                for d in list_dead_letters(system.bootstrap, ORDERS, limit=10_000)
                if sale in d["value"]
            ),
            None,
        ),
        what="the contradicting fulfilment's dead letter",
    )
    assert letter["code"] == "contradicts_sale"
    assert "WH-9" in letter["value"] and "not fulfilled from WH-9" in letter["reason"]
    # Only it: the repeat and the delivery were applied (as nothing) before it, in order.
    letters = [
        d for d in list_dead_letters(system.bootstrap, ORDERS, limit=10_000) if sale in d["value"]
    ]
    assert len(letters) == 1
    view = system.service.order_view(sale)
    assert view["lines"][0]["fulfilled"] == 1
    order_id = system.service.get_order(sale).id
    assert [e.type_name for e in system.service.stored_events(order_id)] == ["order.placed"]
