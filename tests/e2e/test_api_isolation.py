"""What one client can learn of or do to another's data: idempotency keys scoped by
principal, proven customer and route, and portal refs that are not theirs answering exactly
like refs that do not exist."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from adapters.driving.api.app import secured_routes
from adapters.driving.api.serving import served
from domain.application import ReturnsService
from tests.integration.builders import delivered_order

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

KEYS = {
    "k-cs": Principal("agent-ann", Role.CUSTOMER_SERVICE),
    "k-portal": Principal("portal-web", Role.PORTAL),
}


@pytest.fixture(scope="module")
def client(service: ReturnsService, database_url: str) -> Iterator[TestClient]:
    api = create_api(service, database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def portal(service: ReturnsService, order: str, **headers: str) -> dict[str, str]:
    email = service.get_order(order).state.customer_email or ""
    return {"Authorization": "Bearer k-portal", "X-Customer-Email": email, **headers}


def cs(**headers: str) -> dict[str, str]:
    return {"Authorization": "Bearer k-cs", **headers}


def request_body(order: str, quantity: int = 1) -> dict[str, Any]:
    return {
        "order_number": order,
        "lines": [{"line_no": 1, "quantity": quantity, "reason": "size_too_small"}],
    }


# ---------------------------------------------------------------- idempotency keys
def test_two_portal_customers_reusing_one_idempotency_key_each_get_their_own_rma(
    client: TestClient, service: ReturnsService
) -> None:
    alice, bob = delivered_order(service), delivered_order(service)
    key = {"Idempotency-Key": f"checkout-{uuid.uuid4().hex[:8]}"}
    hers = client.post(
        "/v1/returns", json=request_body(alice), headers=portal(service, alice, **key)
    )
    his = client.post("/v1/returns", json=request_body(bob), headers=portal(service, bob, **key))
    assert hers.status_code == his.status_code == 201, (hers.text, his.text)
    assert his.json()["return_id"] != hers.json()["return_id"]
    assert service.get_return(uuid.UUID(his.json()["return_id"])).state.order_number == bob
    assert len(service.order_view(bob)["returns"]) == 1


def test_an_idempotency_key_reused_with_another_body_is_a_422_and_changes_nothing(
    client: TestClient, service: ReturnsService
) -> None:
    order = delivered_order(service)
    headers = cs(**{"Idempotency-Key": f"k-{order}"})
    first = client.post("/v1/returns", json=request_body(order), headers=headers)
    assert first.status_code == 201, first.text
    # Same body, keys reordered and spaced differently: the same request, the first result.
    same = client.post(
        "/v1/returns",
        content=(
            '{"lines": [{"reason": "size_too_small", "quantity": 1, "line_no": 1}],'
            f' "order_number": "{order}"}}'
        ),
        headers=headers | {"Content-Type": "application/json"},
    )
    assert same.status_code == 201 and same.json() == first.json()
    other = client.post("/v1/returns", json=request_body(order, quantity=2), headers=headers)
    assert other.status_code == 422, other.text
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["code"] == "idempotency_key_reused"
    assert len(service.order_view(order)["returns"]) == 1

    # On an RMA command too, and the key is per route: the same key on another route or
    # another RMA is another command.
    rma = first.json()["return_id"]
    reason = cs(**{"Idempotency-Key": "once"})
    assert client.post(f"/v1/returns/{rma}/cancel", json={"reason": "a"}, headers=reason).is_success
    reused = client.post(f"/v1/returns/{rma}/cancel", json={"reason": "b"}, headers=reason)
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    again = client.post(f"/v1/returns/{rma}/cancel", json={"reason": "a"}, headers=reason)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    elsewhere = delivered_order(service)
    moved = client.post("/v1/returns", json=request_body(elsewhere), headers=cs())
    other_rma = moved.json()["return_id"]
    there = client.post(f"/v1/returns/{other_rma}/cancel", json={"reason": "a"}, headers=reason)
    assert there.status_code == 200 and there.json()["return_id"] == other_rma


def test_the_reused_key_problem_is_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            names = {p["name"] for p in operation.get("parameters", [])}
            if "Idempotency-Key" in names:
                assert "422" in operation["responses"], (method, path)
                assert "idempotency_key_reused" in operation["responses"]["422"]["description"]


# ---------------------------------------------------------------- refs the portal may not see
def fill(path: str, ref: str) -> str:
    return path.replace("{ref}", ref)


PORTAL_RMA_ROUTES = [
    (method, path)
    for method, path, roles in secured_routes()
    if Role.PORTAL in roles and "{ref}" in path
]
BODIES: dict[str, dict[str, Any]] = {
    "cancel": {"reason": "x"},
    "resolution": {"refund_method": "store_credit", "reason": "x"},
    "label": {"carrier": "dhl"},
}


def test_the_portal_routes_with_an_rma_ref_are_all_covered() -> None:
    assert ("POST", "/v1/returns/{ref}/label") in PORTAL_RMA_ROUTES
    assert ("GET", "/v1/returns/{ref}") in PORTAL_RMA_ROUTES
    assert len(PORTAL_RMA_ROUTES) >= 6


@pytest.mark.parametrize(
    ("method", "path"), PORTAL_RMA_ROUTES, ids=[f"{m} {p}" for m, p in PORTAL_RMA_ROUTES]
)
def test_another_customers_rma_answers_exactly_like_one_that_does_not_exist(
    client: TestClient, service: ReturnsService, method: str, path: str
) -> None:
    owner, held_order = delivered_order(service), delivered_order(service, unit_price="600.00")
    stranger = delivered_order(service)
    authorized = client.post("/v1/returns", json=request_body(owner), headers=cs()).json()
    # Held for review: no RMA number yet, so a state check (409 on the label, the note)
    # would answer first if ownership came after it.
    held = client.post("/v1/returns", json=request_body(held_order, 2), headers=cs()).json()
    assert authorized["rma_number"] and held["status"] == "pending_review"
    theirs = [authorized["return_id"], authorized["rma_number"], held["return_id"]]
    missing = [str(uuid.uuid4()), "RMA-9999-9999"]
    body = BODIES.get(path.rsplit("/", 1)[-1], {})
    headers = portal(service, stranger)

    def answer(ref: str) -> tuple[int, dict[str, Any]]:
        response = client.request(method, fill(path, ref), json=body, headers=headers)
        problem = response.json()
        # The detail may quote the ref it was given; nothing else may differ.
        problem["detail"] = problem["detail"].replace(ref, "<ref>")
        return response.status_code, problem

    expected = answer(missing[0])
    assert expected[0] == 404 and expected[1]["code"] == "not_found"
    for ref in [*theirs, *missing[1:]]:
        assert answer(ref) == expected, ref


def test_the_label_of_someone_elses_rma_held_for_review_is_not_found_not_a_conflict(
    client: TestClient, service: ReturnsService
) -> None:
    owner = delivered_order(service, unit_price="600.00")
    stranger = delivered_order(service)
    held = client.post("/v1/returns", json=request_body(owner, 2), headers=cs()).json()
    assert held["status"] == "pending_review" and held["rma_number"] is None
    label = client.post(
        f"/v1/returns/{held['return_id']}/label",
        json={"carrier": "dhl"},
        headers=portal(service, stranger),
    )
    assert label.status_code == 404, label.text


def test_two_different_requests_racing_on_one_key_run_one_and_refuse_the_other(
    service: ReturnsService, database_url: str
) -> None:
    """The check holds inside the service too: when both pass the API's first look at the
    key, the loser's commit conflicts on it and its rerun compares fingerprints."""
    api = create_api(service, database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    order = delivered_order(service)
    headers = cs(**{"Idempotency-Key": f"race-{order}"})
    barrier = threading.Barrier(2)

    def send(quantity: int) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30) as http:
            http.get("/health")
            barrier.wait(timeout=10)
            return http.post("/v1/returns", json=request_body(order, quantity), headers=headers)

    with served(api) as url, ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(send, (1, 2)))
    assert sorted(a.status_code for a in answers) == [201, 422], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 422)
    assert refused.json()["code"] == "idempotency_key_reused"
    assert len(service.order_view(order)["returns"]) == 1
