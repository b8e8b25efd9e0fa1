"""The HTTP API end to end: roles and stores, RMAs to refund, counters, blind returns,
ETag / If-Match, idempotency keys, problems, the read side, health and OpenAPI.

Most tests drive the ASGI app in process (fast); one runs it under a real uvicorn server.
Settlements and warehouse receipts are driven through the service, as the inbound workers
would after a message on their topics.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from adapters.driven.eventstore import create_service
from adapters.driven.readmodels.base import FailedEvent, record_failures
from adapters.driven.readmodels.rebuild import rebuild
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from adapters.driving.api.app import secured_routes
from adapters.driving.api.openapi import DOCUMENT, render
from domain.application import ReturnsService
from domain.commands import ReceiveParcel, SettleRefund
from domain.events import ReceivedItem
from projections import default_projections
from tests.integration.builders import ctx, delivered_order, receive_and_inspect, requested_refund
from tests.unit.builders import eur

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

KEYS = {
    "k-cs": Principal("agent-ann", Role.CUSTOMER_SERVICE),
    "k-portal": Principal("portal-web", Role.PORTAL),
    "k-s1": Principal("tablet-S1", Role.STORE, "S1"),
    "k-s2": Principal("tablet-S2", Role.STORE, "S2"),
    "k-wh": Principal("wms-WH-1", Role.WAREHOUSE),
    "k-an": Principal("bi", Role.ANALYTICS),
    "k-ops": Principal("prometheus", Role.OPS),
    "k-admin": Principal("ops", Role.ADMIN),
}
KEY_OF = {p.role: k for k, p in KEYS.items() if k != "k-s2"}


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


@pytest.fixture(scope="module")
def client(service: ReturnsService, database_url: str) -> Iterator[TestClient]:
    api = create_api(service, database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def email_of(service: ReturnsService, order: str) -> str:
    return service.get_order(order).state.customer_email or ""


def portal(service: ReturnsService, order: str) -> dict[str, str]:
    return auth("k-portal", **{"X-Customer-Email": email_of(service, order)})


def request_body(order: str, quantity: int = 1, reason: str = "size_too_small") -> dict[str, Any]:
    return {
        "order_number": order,
        "lines": [{"line_no": 1, "quantity": quantity, "reason": reason}],
    }


# ---------------------------------------------------------------- the journeys
def test_a_portal_rma_goes_from_request_to_refund(
    client: TestClient, service: ReturnsService
) -> None:
    order = delivered_order(service)
    seen = client.get(f"/v1/orders/{order}", headers=portal(service, order))
    assert seen.status_code == 200
    assert seen.json()["lines"][0]["returnable_quantity"] == 2

    created = client.post(
        "/v1/returns",
        json=request_body(order),
        headers=portal(service, order) | {"Idempotency-Key": "portal-1"},
    )
    assert created.status_code == 201, created.text
    rma = created.json()
    assert rma["status"] == "authorized" and rma["rma_number"].startswith("RMA-")
    assert created.headers["Location"] == f"/v1/returns/{rma['return_id']}"

    note = client.get(f"/v1/returns/{rma['rma_number']}/note", headers=portal(service, order))
    assert note.status_code == 200 and "text/html" in note.headers["content-type"]
    assert rma["rma_number"] in note.text and "SHOE-RED-42" in note.text

    refund = receive_and_inspect(service, rma["rma_number"])
    assert refund.refund_id is not None and refund.amount == eur("50.00")
    service.run(
        ctx(),
        SettleRefund(refund_id=refund.refund_id, provider_reference="psp-1", amount=refund.amount),
    )

    status = client.get(f"/v1/returns/{rma['return_id']}", headers=portal(service, order))
    assert status.status_code == 200
    assert status.json()["status"] == "closed"
    assert status.headers["ETag"] == f'"{status.json()["version"]}"'
    timeline = client.get(f"/v1/returns/{rma['rma_number']}/timeline", headers=auth("k-cs")).json()[
        "events"
    ]
    assert timeline[0]["type"] == "rma.requested"
    assert timeline[0]["actor"] == "portal-web"  # the key's principal is the audit actor
    assert timeline[0]["source"] == "api/portal"


def test_the_portal_changes_its_rma_to_store_credit_and_gets_store_credit_after_inspection(
    client: TestClient, service: ReturnsService
) -> None:
    order = delivered_order(service)
    created = client.post("/v1/returns", json=request_body(order), headers=portal(service, order))
    assert created.status_code == 201, created.text
    rma = created.json()
    url = f"/v1/returns/{rma['return_id']}/resolution"
    body = {"refund_method": "store_credit", "reason": "rather shop again"}
    stranger = auth("k-portal", **{"X-Customer-Email": "someone@else.example"})
    # Another customer's RMA is not found, as if it did not exist.
    assert client.post(url, json=body, headers=stranger).status_code == 404
    stale = client.post(url, json=body, headers=portal(service, order) | {"If-Match": '"1"'})
    assert stale.status_code == 412 and stale.headers["ETag"] == created.headers["ETag"]

    headers = portal(service, order) | {
        "If-Match": created.headers["ETag"],
        "Idempotency-Key": f"resolution-{order}",
    }
    changed = client.post(url, json=body, headers=headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["status"] == "authorized"
    assert changed.headers["ETag"] != created.headers["ETag"]
    assert client.post(url, json=body, headers=headers).json() == changed.json()

    credited = receive_and_inspect(service, rma["rma_number"])
    assert credited.refund_id is None and credited.amount == eur("50.00")
    seen = client.get(f"/v1/returns/{rma['return_id']}", headers=portal(service, order)).json()
    assert seen["refund_method"] == "store_credit" and seen["refunds"] == {}
    # The item's 50.00 plus the policy's 10 % bonus for choosing store credit.
    assert seen["store_credit"] == {"amount": "55.00", "currency": "EUR"}
    assert seen["status"] == "closed"
    events = client.get(f"/v1/returns/{rma['return_id']}/timeline", headers=auth("k-cs")).json()
    changes = [e for e in events["events"] if e["type"] == "rma.resolution_changed"]
    assert [c["actor"] for c in changes] == ["portal-web"]

    locked = client.post(
        url, json={"refund_method": "exchange"}, headers=auth("k-cs")
    )  # paid already: too late to ask for an exchange
    assert locked.status_code == 409 and locked.json()["code"] == "resolution_locked"


def test_the_portal_sees_only_orders_it_proves_it_owns(
    client: TestClient, service: ReturnsService
) -> None:
    order = delivered_order(service)
    wrong = auth("k-portal", **{"X-Customer-Email": "someone@else.example"})
    assert client.get(f"/v1/orders/{order}", headers=wrong).status_code == 403
    assert client.get(f"/v1/orders/{order}", headers=auth("k-portal")).status_code == 403
    assert client.get("/v1/orders/NOPE-1", headers=wrong).status_code == 403  # no probing
    refused = client.post("/v1/returns", json=request_body(order), headers=wrong)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    created = client.post("/v1/returns", json=request_body(order), headers=auth("k-cs"))
    assert (
        client.get(f"/v1/returns/{created.json()['return_id']}", headers=wrong).status_code == 404
    )


def test_a_policy_refusal_is_a_422_problem_with_the_policys_code(
    service: ReturnsService, database_url: str
) -> None:
    order = delivered_order(service)
    later = create_service(database_url, pool_size=2)
    later.clock = lambda: datetime.now(UTC) + timedelta(days=90)  # the window has closed
    try:
        with TestClient(create_api(later, database_url, keys=KeyRing.with_keys(KEYS))) as client:
            refused = client.post(
                "/v1/returns",
                json=request_body(order, reason="changed_mind"),
                headers=auth("k-cs", **{"Idempotency-Key": "late"}),
            )
            again = client.post(
                "/v1/returns",
                json=request_body(order, reason="changed_mind"),
                headers=auth("k-cs", **{"Idempotency-Key": "late"}),
            )
    finally:
        later.close()
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert refused.headers["content-type"] == "application/problem+json"
    assert problem["code"] == "outside_return_window"
    assert problem["status"] == 422 and problem["type"].endswith("outside_return_window")
    assert uuid.UUID(problem["return_id"])
    assert again.json() == problem


def test_an_in_store_return_is_recorded_and_receipted_by_its_own_store_only(
    client: TestClient, service: ReturnsService
) -> None:
    order = delivered_order(service)
    found = client.get("/v1/order-search", params={"order_number": order}, headers=auth("k-s1"))
    assert found.status_code == 200 and found.json()["items"][0]["order_number"] == order
    body = {
        "store_return_id": "SR-1-" + order,
        "staff_id": "clerk-7",
        "order_number": order,
        "lines": [
            {
                "line_no": 1,
                "quantity": 1,
                "reason": "size_too_large",
                "condition": "new",
                "disposition": "restock",
            }
        ],
    }
    assert client.post("/v1/stores/S1/returns", json=body, headers=auth("k-s2")).status_code == 403
    recorded = client.post("/v1/stores/S1/returns", json=body, headers=auth("k-s1"))
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["refund_id"] and recorded.json()["amount"]["amount"] == "50.00"
    return_id = recorded.json()["return_id"]

    receipt = f"/v1/stores/S1/returns/SR-1-{order}/receipt"
    assert client.get(receipt, headers=auth("k-s2")).status_code == 403
    printed = client.get(receipt, headers=auth("k-s1"))
    assert printed.status_code == 200 and "clerk" not in printed.text.lower()
    assert recorded.json()["rma_number"] in printed.text
    assert client.get(f"/v1/returns/{return_id}", headers=auth("k-s2")).status_code == 403
    mine = client.get(f"/v1/returns/{return_id}", headers=auth("k-s1"))
    assert mine.status_code == 200 and mine.json()["store_id"] == "S1"


def test_a_blind_return_is_listed_and_matched_by_customer_service(
    client: TestClient, service: ReturnsService
) -> None:
    order = delivered_order(service)
    blind = service.run(
        ctx(),
        ReceiveParcel(
            receipt_id=f"BL-{uuid.uuid4().hex[:8]}",
            warehouse_id="WH-1",
            rma_number=None,
            tracking_number="TRK-1",
            items=(ReceivedItem(sku="SHOE-RED-42", quantity=1),),
        ),
    )
    assert blind.status == "blind_unmatched"
    ids: list[str] = []
    url: str | None = "/v1/blind-returns?limit=2"
    while url:  # walk every page through the next links
        page = client.get(url, headers=auth("k-wh")).json()
        assert len(page["items"]) <= 2
        ids += [item["return_id"] for item in page["items"]]
        url = page["next"]
    assert str(blind.aggregate_id) in ids

    current = client.get(f"/v1/returns/{blind.aggregate_id}", headers=auth("k-cs"))
    match = {"order_number": order, "lines": [{"line_no": 1, "quantity": 1, "reason": "other"}]}
    assert (
        client.post(
            f"/v1/blind-returns/{blind.aggregate_id}/match", json=match, headers=auth("k-wh")
        ).status_code
        == 403
    )
    matched = client.post(
        f"/v1/blind-returns/{blind.aggregate_id}/match",
        json=match,
        headers=auth("k-cs", **{"If-Match": current.headers["ETag"]}),
    )
    assert matched.status_code == 200, matched.text
    assert matched.json()["rma_number"]
    assert matched.headers["ETag"] != current.headers["ETag"]
    events = client.get(f"/v1/returns/{blind.aggregate_id}/timeline", headers=auth("k-cs")).json()[
        "events"
    ]
    assert events[-1]["actor"] == "agent-ann"


def test_a_return_held_for_review_is_approved_by_customer_service(
    client: TestClient, service: ReturnsService
) -> None:
    order = delivered_order(service, unit_price="600.00")
    held = client.post("/v1/returns", json=request_body(order, quantity=2), headers=auth("k-cs"))
    assert held.status_code == 201 and held.json()["status"] == "pending_review"
    url = f"/v1/returns/{held.json()['return_id']}"
    assert client.post(url + "/approve", headers=portal(service, order)).status_code == 403
    approved = client.post(
        url + "/approve", headers=auth("k-cs", **{"If-Match": held.headers["ETag"]})
    )
    assert approved.status_code == 200 and approved.json()["status"] == "authorized"


# ---------------------------------------------------------------- access for every route
def fill(path: str) -> str:
    return (
        path.replace("{return_id}", str(uuid.uuid4()))
        .replace("{ref}", "RMA-0000-0000")
        .replace("{store_id}", "S1")
        .replace("{", "")
        .replace("}", "")
    )


ROUTES = secured_routes()


@pytest.mark.parametrize(
    ("method", "path", "roles"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES]
)
def test_every_route_answers_401_without_a_key_and_403_to_other_roles(
    client: TestClient, method: str, path: str, roles: frozenset[Role]
) -> None:
    url = fill(path)
    for headers in ({}, auth("not-a-key"), {"X-API-Key": "nope"}):
        answer = client.request(method, url, headers=headers, json={})
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.json()["code"] == "unauthenticated"
    for role in set(Role) - roles:
        answer = client.request(method, url, headers=auth(KEY_OF[role]), json={})
        assert answer.status_code == 403, (role, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"


def test_the_access_table_covers_every_api_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    served = {(m.upper(), p) for p, item in paths.items() for m in item}
    open_routes = {("GET", "/health"), ("GET", "/ready")}
    assert served == {(m, p) for m, p, _ in ROUTES} | open_routes
    for _, path in open_routes:
        assert client.get(path).status_code == 200


# ---------------------------------------------------------------- concurrency, idempotency
def test_a_stale_if_match_is_refused_with_412(client: TestClient, service: ReturnsService) -> None:
    order = delivered_order(service)
    created = client.post("/v1/returns", json=request_body(order), headers=auth("k-cs"))
    url = f"/v1/returns/{created.json()['return_id']}"
    etag = client.get(url, headers=auth("k-cs")).headers["ETag"]
    stale = client.post(
        url + "/cancel", json={"reason": "x"}, headers=auth("k-cs", **{"If-Match": '"999"'})
    )
    assert stale.status_code == 412 and stale.json()["code"] == "version_mismatch"
    assert stale.headers["ETag"] == etag
    done = client.post(
        url + "/cancel",
        json={"reason": "customer called"},
        headers=auth("k-cs", **{"If-Match": etag}),
    )
    assert done.status_code == 200 and done.json()["status"] == "cancelled"
    again = client.post(
        url + "/cancel", json={"reason": "twice"}, headers=auth("k-cs", **{"If-Match": etag})
    )
    assert again.status_code == 412
    without = client.post(url + "/cancel", json={"reason": "twice"}, headers=auth("k-cs"))
    assert without.status_code == 409 and without.json()["code"] == "invalid_transition"


def test_if_match_can_be_required(service: ReturnsService, database_url: str) -> None:
    api = create_api(
        service, database_url, ApiSettings(require_if_match=True), KeyRing.with_keys(KEYS)
    )
    with TestClient(api) as strict:
        order = delivered_order(service)
        created = strict.post("/v1/returns", json=request_body(order), headers=auth("k-cs"))
        answer = strict.post(
            f"/v1/returns/{created.json()['return_id']}/cancel",
            json={"reason": "x"},
            headers=auth("k-cs"),
        )
        assert answer.status_code == 428


def test_a_repeated_idempotency_key_returns_the_first_response_and_changes_nothing(
    client: TestClient, service: ReturnsService
) -> None:
    order = delivered_order(service)
    headers = auth("k-cs", **{"Idempotency-Key": f"same-{order}"})
    first = client.post("/v1/returns", json=request_body(order), headers=headers)
    second = client.post("/v1/returns", json=request_body(order), headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert len(service.order_view(order)["returns"]) == 1
    # Keys are scoped by principal: another key's same header is another command.
    other = client.post(
        "/v1/returns",
        json=request_body(order),
        headers=auth("k-admin", **{"Idempotency-Key": f"same-{order}"}),
    )
    assert other.status_code == 201 and other.json()["return_id"] != first.json()["return_id"]

    url = f"/v1/returns/{first.json()['return_id']}/cancel"
    cancel_headers = auth("k-cs", **{"Idempotency-Key": "c1", "If-Match": first.headers["ETag"]})
    cancelled = client.post(url, json={"reason": "x"}, headers=cancel_headers)
    # The retry carries the now-stale If-Match; it still gets the first answer.
    retried = client.post(url, json={"reason": "x"}, headers=cancel_headers)
    assert cancelled.status_code == retried.status_code == 200
    assert cancelled.json() == retried.json()


# ---------------------------------------------------------------- problems, read side, ops
def test_invalid_requests_are_422_problems(client: TestClient) -> None:
    answer = client.post("/v1/returns", json={"order_number": 5, "lines": []}, headers=auth("k-cs"))
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["code"] == "invalid_request" and body["errors"]
    assert client.get("/v1/blind-returns?limit=0", headers=auth("k-cs")).status_code == 422
    missing = client.get("/v1/returns/RMA-0000-0000", headers=auth("k-cs"))
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_a_ref_that_is_neither_a_return_id_nor_an_rma_number_is_not_found(
    client: TestClient,
) -> None:
    answer = client.get("/v1/returns/0", headers=auth("k-cs"))
    assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    command = client.post("/v1/returns/0/cancel", json={"reason": "x"}, headers=auth("k-cs"))
    assert command.status_code == 404


def test_a_page_above_the_maximum_is_capped_and_below_one_refused(client: TestClient) -> None:
    capped = client.get("/v1/blind-returns?limit=100000", headers=auth("k-cs"))
    assert capped.status_code == 200 and capped.json()["limit"] == ApiSettings().max_page_size
    for query in ("limit=0", "limit=1000000001", "offset=-1", "offset=1000000001"):
        refused = client.get(f"/v1/blind-returns?{query}", headers=auth("k-cs"))
        assert refused.status_code == 422 and refused.json()["code"] == "invalid_page", query
    for query in ("limit=1.0", "offset=1e3"):
        refused = client.get(f"/v1/blind-returns?{query}", headers=auth("k-cs"))
        assert refused.status_code == 422 and refused.json()["code"] == "invalid_request", query


def test_moments_and_days_are_rfc_3339_only(client: TestClient) -> None:
    an = auth("k-an")
    for at in ("0.5", "1700000000", "2026-01-01T00:00:00", "2026-01-01"):
        refused = client.get("/v1/stock/SKU/WH-1", params={"at": at}, headers=an)
        assert refused.status_code == 422 and refused.json()["code"] == "invalid_request", at
    at = client.get("/v1/stock/SKU/WH-1", params={"at": "2026-01-01T00:00:00+01:00"}, headers=an)
    assert at.status_code == 200 and at.json()["available"] == 0
    assert client.get("/v1/ledger/balances?since=0", headers=an).status_code == 422
    assert client.get("/v1/ledger/balances?since=2026-01-01", headers=an).status_code == 200


def test_a_nul_character_finds_nothing_and_is_refused_in_free_text(
    client: TestClient, service: ReturnsService
) -> None:
    an, cs = auth("k-an"), auth("k-cs")
    assert client.get("/v1/stock", params={"sku": "A\x00"}, headers=an).json()["items"] == []
    moment = {"at": "2026-01-01T00:00:00Z"}
    levels = client.get("/v1/stock/A%00/WH-1", params=moment, headers=an)
    assert levels.status_code == 200 and levels.json()["available"] == 0
    assert client.get("/v1/customers/C%00", headers=an).status_code == 404
    assert client.get("/v1/serials/SN%00", headers=cs).status_code == 404
    found = client.get("/v1/order-search", params={"email": "\x00"}, headers=cs)
    assert found.status_code == 200 and found.json()["items"] == []
    order = delivered_order(service)
    created = client.post("/v1/returns", json=request_body(order), headers=cs)
    cancel = f"/v1/returns/{created.json()['return_id']}/cancel"
    refused = client.post(cancel, json={"reason": "bad\u0000byte"}, headers=cs)
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_request"
    assert client.post(cancel, json={"reason": "no NUL"}, headers=cs).status_code == 200


def test_a_body_that_cannot_be_read_is_a_400_problem(client: TestClient) -> None:
    answer = client.post(
        "/v1/returns",
        content=b"\xff\xfe{",
        headers=auth("k-cs", **{"Content-Type": "application/json"}),
    )
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "bad_request"


def test_every_problem_status_an_operation_answers_is_documented_as_problem_json(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    assert "Problem" in document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert set(response["content"]) == {"application/problem+json"}, (
                        method,
                        path,
                        status,
                    )


def test_the_read_side_serves_the_rebuilt_read_models(
    client: TestClient, service: ReturnsService, database_url: str
) -> None:
    order = delivered_order(service, serials=("SN-" + uuid.uuid4().hex[:8], "SN-2"))
    created = client.post("/v1/returns", json=request_body(order), headers=auth("k-cs"))
    receive_and_inspect(service, created.json()["rma_number"])
    for projection in default_projections():
        rebuild(projection, database_url)
    customer = service.get_order(order).state.customer_id
    an = auth("k-an")

    history = client.get(f"/v1/customers/{customer}?limit=1", headers=an)
    assert history.status_code == 200, history.text
    assert history.json()["orders"] == 1 and history.json()["timeline"]["next"]
    levels = client.get("/v1/stock?sku=SHOE-RED-42&limit=1", headers=an).json()
    assert levels["items"][0]["sku"] == "SHOE-RED-42"
    at = client.get(
        "/v1/stock/SHOE-RED-42/WH-1", params={"at": "2000-01-01T00:00:00Z"}, headers=an
    ).json()
    assert at["available"] == 0
    assert client.get("/v1/ledger/balances", headers=an).json()["items"]
    reasons = client.get("/v1/analytics/return-reasons?by=supplier", headers=an).json()
    assert any(r["supplier"] == "Acme" for r in reasons["items"])
    assert client.get("/v1/analytics/return-rates", headers=an).status_code == 200
    refunds = client.get(f"/v1/refunds?return_id={created.json()['return_id']}", headers=an)
    assert refunds.json()["items"][0]["status"] == "requested"
    lag = client.get("/v1/lag", headers=an).json()
    assert {p["projection"] for p in lag["projections"]} == {
        "stock",
        "customers",
        "ledger",
        "reasons",
        "rma_status",
        "serials",
        "legs",
        "period_analytics",
        "discrepancies",
    }
    assert all(p["events_behind"] is not None for p in lag["projections"])
    serial = client.get(
        f"/v1/serials/{service.get_order(order).state.lines[1].serials[0]}",
        headers=auth("k-s1"),
    )
    assert serial.status_code == 200 and serial.json()["sales"][0]["under_warranty"]


def test_health_readiness_and_metrics(client: TestClient, service: ReturnsService) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    client.get("/v1/lag")  # a 401, counted by route template
    # One command of its own, so the latency histogram has a sample whatever ran before.
    order = delivered_order(service)
    created = client.post("/v1/returns", json=request_body(order), headers=portal(service, order))
    assert created.status_code == 201, created.text
    text = client.get("/metrics", headers=auth("k-ops")).text
    assert 'oms_api_requests_total{method="GET",route="/v1/lag",status="401"}' in text
    assert 'oms_api_command_seconds_bucket{command="request_return",' in text
    assert "oms_projection_lag_events" in text


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.removeprefix(name + " "))
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_count_skipped_events_and_unanswered_refunds(
    client: TestClient, service: ReturnsService, database_url: str
) -> None:
    def scrape() -> str:
        return client.get("/metrics", headers=auth("k-ops")).text

    name = 'oms_projection_failed_events{projection="stock"}'
    before = metric(scrape(), name) if name + " " in scrape() else 0.0
    with ReadModelStore(database_url, default_projections()) as store:
        record_failures(
            store.connection,
            [FailedEvent("stock", f"{uuid.uuid4()}:1", str(uuid.uuid4()), 1, 1, "x", "test")],
        )
    assert metric(scrape(), name) == before + 1

    pending = metric(scrape(), "oms_refunds_pending")
    refund = requested_refund(service)  # the sandbox is not running here: it stays pending
    after = scrape()
    assert metric(after, "oms_refunds_pending") == pending + 1, refund
    assert metric(after, "oms_refunds_pending_oldest_seconds") >= 0


def test_metrics_need_an_ops_or_admin_key_unless_the_deployment_makes_them_public(
    client: TestClient, service: ReturnsService, database_url: str
) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth("k-cs")).status_code == 403
    for key in ("k-ops", "k-admin"):
        answer = client.get("/metrics", headers=auth(key))
        assert answer.status_code == 200 and "oms_api_requests_total" in answer.text
    public = create_api(
        service, database_url, ApiSettings(metrics_public=True), KeyRing.with_keys(KEYS)
    )
    with TestClient(public) as open_client:
        assert open_client.get("/metrics").status_code == 200


def test_the_checked_in_openapi_document_is_current(client: TestClient) -> None:
    """Regenerate with ``python -m adapters.driving.api.openapi`` when this fails."""
    assert DOCUMENT.read_text() == render()
    served = client.get("/openapi.json").json()
    assert set(served["paths"]) == set(__import__("json").loads(render())["paths"])


def test_the_api_serves_over_a_real_uvicorn_server(
    service: ReturnsService, database_url: str
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = create_api(service, database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        order = delivered_order(service)
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/ready").status_code == 200
            answer = http.post(
                "/v1/returns",
                json=request_body(order),
                headers=auth("k-cs", **{"Idempotency-Key": "uv-1"}),
            )
            assert answer.status_code == 201, answer.text
            assert http.get("/v1/lag").status_code == 401
    finally:
        server.should_exit = True
        thread.join(10)
