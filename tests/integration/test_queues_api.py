"""Finding work without ids over HTTP: the RMA search with every filter, its CSV export, the
named queues with their counts and ages, role and store scoping, and the portal's "my
returns" and "my orders".

A database of its own holds a known set of RMAs made by the real service; its stored events
are projected by the real read-model store (the projector's own code, without Kafka: the
e2e tier drives the same routes through the topics), then read through the API.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.driven.eventstore import create_service
from adapters.driven.kafka.topics import EVENT_TOPIC_BY_KIND
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driven.relay import cloud_event_for
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from domain.application import ReturnsService
from domain.commands import (
    FailRefund,
    InspectItems,
    ReceiveParcel,
    RecordInStoreReturn,
    RequestReturn,
)
from domain.events import InspectedItem, ReceivedItem
from domain.returns import CounterCheck, RequestedLine
from domain.values import Condition, Disposition, ReasonCode, RefundMethod
from projections import default_projections
from projections.core import Event
from tests.integration.builders import ctx, delivered_order, fresh_database, receive_and_inspect

pytestmark = pytest.mark.timeout(300)

KEYS = {
    "k-cs": Principal("agent-ann", Role.CUSTOMER_SERVICE),
    "k-an": Principal("bi", Role.ANALYTICS),
    "k-s1": Principal("tablet-S1", Role.STORE, "S1"),
    "k-s2": Principal("tablet-S2", Role.STORE, "S2"),
    "k-wh1": Principal("wms-WH-1", Role.WAREHOUSE, warehouse_id="WH-1"),
    "k-wh2": Principal("wms-WH-2", Role.WAREHOUSE, warehouse_id="WH-2"),
    "k-wh": Principal("wms-any", Role.WAREHOUSE),
    "k-portal": Principal("portal", Role.PORTAL),
    "k-ops": Principal("grafana", Role.OPS),
}


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


@dataclass
class World:
    received: str  # return ids
    held: str
    pending_refund: str
    failed_refund: str
    blind: str
    in_store: str
    repair: str
    middle: datetime  # after ``received`` was requested, before all the others
    received_order: str
    held_order: str
    serial: str
    received_rma: str


def line(quantity: int = 1, reason: ReasonCode = ReasonCode.DEFECTIVE) -> tuple[RequestedLine]:
    return (RequestedLine(line_no=1, quantity=quantity, reason=reason),)


def requested(service: ReturnsService, order: str) -> tuple[str, str]:
    outcome = service.run(ctx(), RequestReturn(order_number=order, lines=line()))
    return str(outcome.aggregate_id), outcome.rma_number or ""


def build(service: ReturnsService) -> World:
    serial = f"SER-{uuid.uuid4().hex[:8]}"
    received_order = delivered_order(service, quantity=1, serials=(serial,))
    received, received_rma = requested(service, received_order)
    service.run(
        ctx(),
        ReceiveParcel(
            receipt_id=f"REC-{uuid.uuid4().hex[:8]}",
            warehouse_id="WH-1",
            rma_number=received_rma,
            tracking_number=None,
            items=(ReceivedItem(sku="SHOE-RED-42", quantity=1, serial=serial),),
        ),
    )
    middle = datetime.now(UTC)
    held_order = delivered_order(service, unit_price="1500.00")
    held, _ = requested(service, held_order)

    pending_refund, number = requested(service, delivered_order(service))
    receive_and_inspect(service, number)

    failed_refund, number = requested(service, delivered_order(service))
    refund = receive_and_inspect(service, number)
    service.run(ctx(), FailRefund(refund_id=refund.refund_id or "", reason="card expired"))

    blind = service.run(
        ctx(),
        ReceiveParcel(
            receipt_id=f"REC-{uuid.uuid4().hex[:8]}",
            warehouse_id="WH-2",
            rma_number=None,
            tracking_number="TRK-BLIND",
            items=(ReceivedItem(sku="MYSTERY-1", quantity=1),),
        ),
    )

    in_store = service.run(
        ctx(),
        RecordInStoreReturn(
            store_return_id=f"S1-{uuid.uuid4().hex[:8]}",
            store_id="S1",
            staff_id="clerk-1",
            order_number=delivered_order(service),
            lines=line(reason=ReasonCode.CHANGED_MIND),
            checks=(
                CounterCheck(
                    line_no=1, quantity=1, condition=Condition.NEW, disposition=Disposition.RESTOCK
                ),
            ),
            refund_method=RefundMethod.STORE_CREDIT,
        ),
    )

    repair, number = requested(service, delivered_order(service))
    receipt = f"REC-{uuid.uuid4().hex[:8]}"
    service.run(
        ctx(),
        ReceiveParcel(
            receipt_id=receipt,
            warehouse_id="WH-1",
            rma_number=number,
            tracking_number=None,
            items=(ReceivedItem(sku="SHOE-RED-42", quantity=1),),
        ),
    )
    service.run(
        ctx(),
        InspectItems(
            rma_number=number,
            receipt_id=receipt,
            items=(
                InspectedItem(
                    sku="SHOE-RED-42",
                    quantity=1,
                    condition=Condition.DEFECTIVE,
                    disposition=Disposition.REPAIR,
                    location_id="WH-1",
                ),
            ),
        ),
    )
    return World(
        received=received,
        held=held,
        pending_refund=pending_refund,
        failed_refund=failed_refund,
        blind=str(blind.aggregate_id),
        in_store=str(in_store.aggregate_id),
        repair=repair,
        middle=middle,
        received_order=received_order,
        held_order=held_order,
        serial=serial,
        received_rma=received_rma,
    )


def stored_events(database_url: str) -> list[Event]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM oms_events ORDER BY notification_id"
        ).fetchall()
    events = [Event.from_cloud_event(cloud_event_for(row)) for row in rows]
    return [replace(e, topic=EVENT_TOPIC_BY_KIND[e.kind], partition=0) for e in events]


def project(database_url: str) -> None:
    """Every stored event through every projection, as the projectors apply them."""
    events = stored_events(database_url)
    with ReadModelStore(database_url) as store:
        for projection in default_projections():
            store.ensure(projection)
            store.apply(projection, [e for e in events if e.kind in projection.kinds])


@pytest.fixture(scope="module")
def stack(database_url: str) -> Iterator[tuple[TestClient, World, str]]:
    url = fresh_database(database_url, "queues")
    service = create_service(url, pool_size=3)
    try:
        world = build(service)
        project(url)
        api = create_api(service, url, ApiSettings(), KeyRing.with_keys(KEYS))
        with TestClient(api, raise_server_exceptions=False) as client:
            yield client, world, url
    finally:
        service.close()


@pytest.fixture()
def client(stack: tuple[TestClient, World, str]) -> TestClient:
    return stack[0]


@pytest.fixture()
def world(stack: tuple[TestClient, World, str]) -> World:
    return stack[1]


def search(client: TestClient, key: str = "k-cs", **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/returns", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def refs(items: list[dict[str, Any]]) -> set[str]:
    return {i["return_id"] for i in items}


# ---------------------------------------------------------------- search
def test_every_rma_is_found_and_each_filter_narrows_to_the_right_ones(
    client: TestClient, world: World
) -> None:
    w = world
    everything = refs(search(client, limit=200))
    assert everything == {
        w.received,
        w.held,
        w.pending_refund,
        w.failed_refund,
        w.blind,
        w.in_store,
        w.repair,
    }
    assert refs(search(client, status=["pending_review"])) == {w.held}
    assert refs(search(client, status=["pending_review", "blind_unmatched"])) == {w.held, w.blind}
    assert refs(search(client, rma_number=w.received_rma)) == {w.received}
    [held] = search(client, order_number=w.held_order)
    assert held["return_id"] == w.held and held["status"] == "pending_review"
    assert refs(search(client, customer_id=f"cust-{w.received_order}")) == {w.received}
    assert refs(search(client, email=f"{w.received_order.upper()}@EXAMPLE.com")) == {w.received}
    assert refs(search(client, email="nobody@example.com")) == set()
    assert refs(search(client, serial=w.serial)) == {w.received}
    assert refs(search(client, sku="MYSTERY-1")) == set()  # the blind parcel has no lines yet
    assert w.received in refs(search(client, sku="SHOE-RED-42"))
    assert refs(search(client, store_id="S1")) == {w.in_store}
    assert refs(search(client, warehouse_id="WH-2")) == {w.blind}
    assert refs(search(client, created_to=w.middle.isoformat())) == {w.received}
    later = refs(search(client, created_from=w.middle.isoformat()))
    assert later == everything - {w.received}
    assert refs(search(client, updated_from=datetime.now(UTC).isoformat())) == set()


def test_the_search_sorts_and_pages(client: TestClient, world: World) -> None:
    newest_first = search(client, sort="-created_at")
    created = [i["created_at"] for i in newest_first]
    assert created == sorted(created, reverse=True)
    assert search(client, sort="created_at")[0]["return_id"] == world.received
    first = client.get(
        "/v1/returns", params={"limit": 3, "sort": "created_at"}, headers=auth("k-cs")
    )
    body = first.json()
    assert len(body["items"]) == 3 and body["next"]
    second = client.get(body["next"], headers=auth("k-cs")).json()
    assert refs(body["items"]).isdisjoint(refs(second["items"]))
    assert len(body["items"]) + len(second["items"]) == 6  # 7 RMAs, pages of 3: 3 + 3 (+1)
    updated = [i["updated_at"] for i in search(client)]  # default: last changed first
    assert updated == sorted(updated, reverse=True)


def test_the_search_exports_the_same_rows_as_csv(client: TestClient) -> None:
    as_json = search(client, sort="created_at")
    for asked in ({"headers": {"Accept": "text/csv"}}, {"params": {"format": "csv"}}):
        headers = {**auth("k-cs"), **asked.get("headers", {})}
        params = {"sort": "created_at", **asked.get("params", {})}
        response = client.get("/v1/returns", params=params, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["return_id"] for r in rows] == [i["return_id"] for i in as_json]
        assert [r["status"] for r in rows] == [i["status"] for i in as_json]
        assert rows[0]["skus"] == "SHOE-RED-42"
    paged = client.get("/v1/returns", params={"format": "csv", "limit": 2}, headers=auth("k-cs"))
    assert len(list(csv.DictReader(io.StringIO(paged.text)))) == 2
    assert 'rel="next"' in paged.headers["Link"]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"status": "lost"}, "unknown status lost"),
        ({"created_from": "2026-12-02T00:00:00Z", "created_to": "2026-12-01T00:00:00Z"}, "after"),
        ({"updated_from": "yesterday"}, "RFC 3339"),
        ({"email": "not-an-address"}, "e-mail"),
        ({"sku": " "}, "empty"),
        ({"email": "a\x00@example.com"}, "NUL"),
        ({"sort": "price"}, "sort"),
        ({"limit": 0}, "limit"),
    ],
)
def test_an_invalid_filter_is_a_422_with_its_reason(
    client: TestClient, params: dict[str, Any], reason: str
) -> None:
    response = client.get("/v1/returns", params=params, headers=auth("k-cs"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert reason in response.text


def test_each_role_sees_its_own_scope(client: TestClient, world: World) -> None:
    w = world
    everything = refs(search(client, limit=200))
    assert refs(search(client, "k-an", limit=200)) == everything
    assert refs(search(client, "k-wh", limit=200)) == everything  # bound to no warehouse
    assert refs(search(client, "k-s1")) == {w.in_store}
    assert refs(search(client, "k-s2")) == set()
    assert refs(search(client, "k-wh2")) == {w.blind}
    # Held and in-store RMAs go to no warehouse: no warehouse-bound key sees them.
    assert refs(search(client, "k-wh1")) == everything - {w.blind, w.held, w.in_store}
    assert search(client, "k-s1", store_id="S1")  # its own store may be named
    other_store = client.get("/v1/returns", params={"store_id": "S1"}, headers=auth("k-s2"))
    assert other_store.status_code == 403
    other_wh = client.get("/v1/returns", params={"warehouse_id": "WH-1"}, headers=auth("k-wh2"))
    assert other_wh.status_code == 403
    for key in ("k-portal", "k-ops"):
        assert client.get("/v1/returns", headers=auth(key)).status_code == 403
    assert client.get("/v1/returns").status_code == 401


def test_a_replayed_projection_changes_no_search_result(
    stack: tuple[TestClient, World, str],
) -> None:
    client, _, url = stack
    before = search(client, limit=200)
    project(url)  # every event delivered again
    assert search(client, limit=200) == before


# ---------------------------------------------------------------- queues
def queue(client: TestClient, name: str, key: str = "k-cs", **params: Any) -> list[Any]:
    response = client.get(f"/v1/queues/{name}", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


def test_each_queue_holds_its_items_oldest_first(client: TestClient, world: World) -> None:
    w = world
    [held] = queue(client, "held_for_review")
    assert held["return_id"] == w.held and held["review_rules"] == ["amount_threshold"]
    assert "above the review threshold" in held["review_reason"]
    [blind] = queue(client, "blind_unmatched")
    assert blind["return_id"] == w.blind
    # Its suggestions, as its own page shows them (a SKU nobody sold: none).
    alone = client.get(f"/v1/blind-returns/{w.blind}", headers=auth("k-cs")).json()
    assert blind["suggested_matches"] == alone["suggested_matches"]
    [failed] = queue(client, "refunds_failed")
    assert failed["return_id"] == w.failed_refund and failed["failure_reason"] == "card expired"
    assert queue(client, "refunds_pending") == []  # requested just now: not too long yet
    pending = queue(client, "refunds_pending", older_than_hours=0)
    assert refs(pending) == {w.pending_refund, w.repair}  # a defective item is refunded too
    assert pending[0]["refund_status"] == "requested" and pending[0]["age_seconds"] >= 0
    [leg] = queue(client, "repair_legs_open")
    assert leg["return_id"] == w.repair and leg["leg_kind"] == "repair"
    assert queue(client, "vendor_legs_open") == []
    assert queue(client, "not_inspected") == []  # received just now: under the 3 days
    assert refs(queue(client, "not_inspected", older_than_days=0)) == {w.received}
    assert queue(client, "exceptions") == []
    missing = client.get("/v1/queues/nothing", headers=auth("k-cs"))
    assert missing.status_code == 404 and "held_for_review" in missing.text


def test_the_queue_list_gives_each_count_and_its_oldest_age(client: TestClient) -> None:
    response = client.get("/v1/queues", params={"older_than_days": 0}, headers=auth("k-cs"))
    assert response.status_code == 200, response.text
    by_name = {q["name"]: q for q in response.json()["queues"]}
    assert {n: q["count"] for n, q in by_name.items()} == {
        "held_for_review": 1,
        "blind_unmatched": 1,
        "refunds_failed": 1,
        "refunds_pending": 0,
        "repair_legs_open": 1,
        "vendor_legs_open": 0,
        "not_inspected": 1,
        "exceptions": 0,
        "discrepancies": 0,
    }
    held = by_name["held_for_review"]
    assert held["oldest_at"] is not None and held["oldest_age_seconds"] >= 0
    assert by_name["exceptions"]["oldest_at"] is None
    assert all(q["description"] for q in by_name.values())


def test_queues_are_scoped_like_the_search(client: TestClient, world: World) -> None:
    counts = {
        key: {
            q["name"]: q["count"]
            for q in client.get("/v1/queues", headers=auth(key)).json()["queues"]
        }
        for key in ("k-wh2", "k-wh1", "k-s1")
    }
    assert counts["k-wh2"]["blind_unmatched"] == 1 and counts["k-wh2"]["repair_legs_open"] == 0
    assert counts["k-wh1"]["blind_unmatched"] == 0 and counts["k-wh1"]["repair_legs_open"] == 1
    assert set(counts["k-s1"].values()) == {0}
    assert queue(client, "blind_unmatched", "k-wh1") == []
    assert client.get("/v1/queues", headers=auth("k-portal")).status_code == 403
    assert client.get("/v1/queues/held_for_review", headers=auth("k-ops")).status_code == 403


# ---------------------------------------------------------------- the portal
def test_the_portal_lists_the_proven_customers_returns_and_orders(
    client: TestClient, world: World
) -> None:
    email = f"{world.received_order.lower()}@example.com"
    mine = client.get("/v1/my/returns", headers=auth("k-portal", **{"X-Customer-Email": email}))
    assert mine.status_code == 200, mine.text
    assert refs(mine.json()["items"]) == {world.received}
    orders = client.get("/v1/my/orders", headers=auth("k-portal", **{"X-Customer-Email": email}))
    assert orders.status_code == 200, orders.text
    assert [o["order_number"] for o in orders.json()["items"]] == [world.received_order]
    stranger = auth("k-portal", **{"X-Customer-Email": "nobody@example.com"})
    assert client.get("/v1/my/returns", headers=stranger).json()["items"] == []
    assert client.get("/v1/my/orders", headers=stranger).json()["items"] == []
    assert client.get("/v1/my/returns", headers=auth("k-portal")).status_code == 403
    assert client.get("/v1/my/orders", headers=auth("k-cs")).status_code == 403


def test_a_wrong_method_names_every_method_the_path_serves(client: TestClient) -> None:
    # GET and POST /v1/returns live in two routers; the 405's Allow must name both.
    response = client.request("DELETE", "/v1/returns", headers=auth("k-cs"))
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"
