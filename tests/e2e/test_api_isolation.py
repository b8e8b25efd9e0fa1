"""What one client can learn of another's data: portal refs that are not theirs answer
exactly like refs that do not exist."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.api import ApiSettings, KeyRing, Principal, Role, create_api
from adapters.api.app import secured_routes
from domain.application import ReturnsService
from tests.integration.helpers import delivered_order

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
