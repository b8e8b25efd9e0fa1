"""Repair and return-to-vendor legs driven as the warehouse drives them: messages on
wms.receipts.v1 and HTTP, with the stock, the costs and the open-legs queue read back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from adapters.driven.kafka.topics import ORDERS, WMS_RECEIPTS, dlq
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from domain.application import Ctx
from domain.commands import RequestReturn
from domain.events import Cause
from domain.returns import RequestedLine
from domain.values import ReasonCode
from tests.e2e.builders import System, eventually, publish, read_topic, rma_events
from tests.integration.builders import amount, cloud_event

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
KEYS = {
    "k-wh": Principal("wms-WH-1", Role.WAREHOUSE),
    "k-cs": Principal("agent-ann", Role.CUSTOMER_SERVICE),
    "k-an": Principal("bi", Role.ANALYTICS),
}
NOW = datetime.now(UTC)


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    api = create_api(system.service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def wms(event_type: str, data: dict[str, Any], at: datetime | None = None) -> bytes:
    return cloud_event(event_type, data, source="wms/WH-1", time=at)


def rows(system: System, query: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(system.database_url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def stock(system: System, sku: str, location: str) -> dict[str, Any]:
    found = rows(
        system, "SELECT * FROM rm_stock_levels WHERE sku = %s AND location_id = %s", sku, location
    )
    return found[0] if found else {}


def rma_with_two_legs(system: System, sku: str, supplier: str) -> str:
    """A defective pair returned and inspected in two parcels: the first item (serial
    ``<sku>-1``) for repair 6 days ago, the second for its supplier 3 days ago."""
    order_id = f"WEB-{uuid.uuid4().hex[:8]}"
    line = {
        "line_no": 1,
        "sku": sku,
        "quantity": 2,
        "unit_price": amount("40.00"),
        "serials": [f"{sku}-1", f"{sku}-2"],
        "supplier": supplier,
        "category": "audio",
    }
    publish(
        system.bootstrap,
        ORDERS,
        [
            cloud_event(
                "order.placed",
                {
                    "order_id": order_id,
                    "customer_id": f"cust-{order_id}",
                    "channel": "web",
                    "lines": [line],
                    "payments": [{"payment_id": "p1", "method": "card", "amount": amount("84.90")}],
                    "shipping": amount("4.90"),
                    "placed_at": ago(20).isoformat(),
                },
                source="commerce/web",
            ),
            cloud_event(
                "order.fulfilled",
                {
                    "order_id": order_id,
                    "location_id": "WH-1",
                    "lines": [{"line_no": 1, "quantity": 2}],
                },
                source="wms/WH-1",
            ),
            cloud_event(
                "order.delivered",
                {"order_id": order_id, "delivered_at": ago(18).isoformat()},
                source="carrier/tracking",
            ),
        ],
        key=order_id.encode(),
    )
    eventually(lambda: _delivered(system, order_id), what=f"{order_id} delivered")
    rma = system.service.run(
        Ctx(Cause(actor="tests", source="pytest", correlation_id=order_id), at=ago(8)),
        RequestReturn(
            order_number=order_id,
            lines=(RequestedLine(line_no=1, quantity=2, reason=ReasonCode.DEFECTIVE),),
        ),
    )
    assert rma.rma_number
    number = rma.rma_number
    messages = []
    for n, (disposition, received, inspected) in enumerate(
        (("repair", 7, 6), ("return_to_vendor", 5, 3)), start=1
    ):
        receipt = f"R{n}-{order_id}"
        item = {"sku": sku, "quantity": 1, "serial": f"{sku}-{n}"}
        messages.append(
            wms(
                "parcel.received",
                {
                    "receipt_id": receipt,
                    "warehouse_id": "WH-1",
                    "rma_number": number,
                    "items": [item],
                },
                ago(received),
            )
        )
        messages.append(
            wms(
                "items.inspected",
                {
                    "receipt_id": receipt,
                    "rma_number": number,
                    "warehouse_id": "WH-1",
                    "items": [{**item, "condition": "defective", "disposition": disposition}],
                },
                ago(inspected),
            )
        )
    publish(system.bootstrap, WMS_RECEIPTS, messages, key=number.encode())
    eventually(
        lambda: len(system.service.get_return(rma.aggregate_id).state.legs) == 2,
        what="two legs opened",
    )
    return number


def _delivered(system: System, order_id: str) -> bool:
    try:
        return system.service.order_view(order_id)["delivered_at"] is not None
    except Exception:
        return False


def test_repair_and_vendor_legs_run_to_their_end_through_the_topics_and_http(
    system: System, client: TestClient
) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    sku, supplier, shelf = f"HEADSET-{tag}", f"Sonic-{tag}", f"WH-2-{tag}"
    number = rma_with_two_legs(system, sku, supplier)
    return_id = system.service.get_return_by_rma(number).id

    # The queue: both legs open, oldest first, with their age in days.
    def queue() -> list[dict[str, Any]]:
        answer = client.get(f"/v1/legs?supplier={supplier}", headers=auth("k-wh"))
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    legs = eventually(lambda: len(queue()) == 2 and queue(), what="both legs in the queue")
    assert [(leg["leg_id"], leg["kind"], leg["status"], leg["age_days"]) for leg in legs] == [
        ("L1", "repair", "awaiting_dispatch", 6),
        ("L2", "return_to_vendor", "awaiting_dispatch", 3),
    ]
    assert (legs[0]["rma_number"], legs[0]["serial"], legs[0]["sku"]) == (number, f"{sku}-1", sku)
    assert client.get("/v1/legs?kind=repair", headers=auth("k-cs")).status_code == 200
    eventually(
        lambda: (
            stock(system, sku, "WH-1").get("in_repair") == 1
            and stock(system, sku, "WH-1").get("returned_to_vendor") == 1
        ),
        what="the inspected items in repair and at the vendor",
    )

    # The repair leg over the topic, named by serial as a WMS that knows no leg ids does;
    # the first message comes twice with two ids (a resend): one event.
    leg1 = {"rma_number": number, "serial": f"{sku}-1"}
    sent = {**leg1, "repair_center": "REPAIR-LYON", "reference": "JOB-77"}
    publish(
        system.bootstrap,
        WMS_RECEIPTS,
        [
            wms("repair.sent", sent),
            wms("repair.sent", sent),
            wms("repair.completed", {**leg1, "outcome": "repaired"}),
            wms("leg.restocked", {**leg1, "location_id": shelf}),
        ],
        key=number.encode(),
    )
    eventually(
        lambda: system.service.get_return(return_id).state.legs["L1"].status == "restocked",
        what="the repair leg back in stock",
    )
    # A step the leg already took, with other data: refused to the dead-letter topic.
    refused = wms("repair.sent", {**leg1, "repair_center": "REPAIR-PARIS"})
    publish(system.bootstrap, WMS_RECEIPTS, [refused], key=number.encode())
    dead = eventually(
        lambda: [d for d in read_topic(system.bootstrap, dlq(WMS_RECEIPTS)) if d.value == refused],
        what="the refused step dead-lettered",
    )
    headers = dict(dead[0].headers)
    assert headers["x-dlq-error-code"] == b"invalid_transition"
    assert b"already took the step sent" in headers["x-dlq-reason"]

    # The vendor leg over HTTP, by leg id from the queue.
    base = f"/v1/legs/{number}/L2"
    early = client.post(
        f"{base}/vendor-credited",
        json={"amount": {"amount": "25.00", "currency": "EUR"}},
        headers=auth("k-wh"),
    )
    assert early.status_code == 409 and early.json()["code"] == "invalid_transition"
    assert (
        client.post(
            f"{base}/vendor-shipped", json={"reference": "SONIC-RA-1"}, headers=auth("k-cs")
        ).status_code
        == 403
    )
    shipped = client.post(
        f"{base}/vendor-shipped",
        json={"reference": "SONIC-RA-1"},
        headers=auth("k-wh", **{"Idempotency-Key": f"ship-{tag}"}),
    )
    assert shipped.status_code == 200, shipped.text
    assert (shipped.json()["leg_id"], shipped.json()["rma_number"]) == ("L2", number)
    credit = {"amount": {"amount": "25.00", "currency": "EUR"}, "reference": "CN-9"}
    for _ in range(2):  # the same credit twice changes nothing
        answer = client.post(f"{base}/vendor-credited", json=credit, headers=auth("k-wh"))
        assert answer.status_code == 200, answer.text
    other = {"amount": {"amount": "26.00", "currency": "EUR"}}
    assert (
        client.post(f"{base}/vendor-credited", json=other, headers=auth("k-wh")).status_code == 409
    )
    unknown = client.post(
        f"/v1/legs/{number}/L9/restocked", json={"location_id": shelf}, headers=auth("k-wh")
    )
    assert unknown.status_code == 422, unknown.text

    # Stock: out of repair into the shelf, out of returned_to_vendor at the credit.
    eventually(
        lambda: (
            stock(system, sku, "WH-1").get("in_repair") == 0
            and stock(system, sku, "WH-1").get("returned_to_vendor") == 0
            and stock(system, sku, shelf).get("available") == 1
        ),
        what="stock moved by the legs",
    )
    # Costs: the supplier's credit, and no leg left open.
    costs = eventually(
        lambda: (
            (found := rows(system, "SELECT * FROM rm_return_costs WHERE supplier = %s", supplier))
            and found[0]["supplier_credits"] == Decimal("25.00")
            and found
        ),
        what="the supplier credit in the costs",
    )
    assert (costs[0]["open_repair_legs"], costs[0]["open_vendor_legs"]) == (0, 0)
    assert eventually(lambda: queue() == [] and [True], what="the queue emptied")
    ended = client.get(f"/v1/legs?supplier={supplier}&include_closed=true", headers=auth("k-cs"))
    assert [
        (leg["status"], leg["reference"], leg["restocked_at"], leg["credit_reference"])
        for leg in ended.json()["items"]
    ] == [
        ("restocked", "JOB-77", shelf, None),
        ("credited", "SONIC-RA-1", None, "CN-9"),
    ]
    # The RMA's own page shows its legs to customer service, ended ones included.
    page = client.get(f"/v1/returns/{number}", headers=auth("k-cs")).json()
    assert [(leg["leg_id"], leg["status"], leg["open"]) for leg in page["legs"]] == [
        ("L1", "restocked", False),
        ("L2", "credited", False),
    ]
    types = eventually(
        lambda: (t := rma_events(system, return_id)) and "rma.supplier_credit_received" in t and t,
        what="the leg events on rma.events.v1",
    )
    legs_events = [t for t in types if t.startswith(("rma.repair", "rma.vendor", "rma.supplier"))]
    assert legs_events == [
        "rma.repair_sent",
        "rma.repair_completed",
        "rma.repaired_item_restocked",
        "rma.vendor_return_shipped",
        "rma.supplier_credit_received",
    ]
