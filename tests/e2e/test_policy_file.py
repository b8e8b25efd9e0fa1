"""The operators' policy file end to end: edited while the API serves, the next decision
made through HTTP follows it and records its version; a broken edit changes nothing; a
service never starts on a bad file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import orjson
import pytest
from fastapi.testclient import TestClient

from adapters.driven.eventstore import create_service
from adapters.driven.kafka.topics import RMA_EVENTS
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from domain.application import ReturnsService
from domain.events import ReturnAuthorized, ReturnRejected
from domain.policy_file import PolicyFileError
from tests.e2e.builders import System, delivered_web_order, eventually, read_topic
from tests.integration.builders import delivered_order

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"k-cs": Principal("agent-ann", Role.CUSTOMER_SERVICE)}
CS = {"Authorization": "Bearer k-cs"}


def request_body(order: str) -> dict[str, object]:
    return {
        "order_number": order,
        "lines": [{"line_no": 1, "quantity": 1, "reason": "changed_mind"}],
    }


def decision_versions(service: ReturnsService, return_id: str) -> list[str | None]:
    decided = [
        e
        for e in service.stored_events(UUID(return_id))
        if isinstance(e, ReturnAuthorized | ReturnRejected)
    ]
    assert len(decided) == 1
    return [d.policy_version for d in decided[0].decisions]


@pytest.fixture
def policy_path(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text((ROOT / "policy.example.toml").read_text())
    return path


@pytest.fixture
def served(database_url: str, policy_path: Path) -> Iterator[tuple[ReturnsService, TestClient]]:
    service = create_service(database_url, pool_size=2, policy_file=policy_path)
    api = create_api(service, database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as client:
        yield service, client
    service.close()


def test_an_edited_policy_file_decides_the_next_request_and_is_recorded(
    served: tuple[ReturnsService, TestClient], policy_path: Path
) -> None:
    service, client = served
    shown = client.get("/v1/policy", headers=CS)
    assert shown.status_code == 200, shown.text
    assert shown.json()["version"] == "2026-12-example"
    assert shown.json()["default"]["window_days"] == 30

    first = client.post("/v1/returns", json=request_body(delivered_order(service)), headers=CS)
    assert first.status_code == 201, first.text
    assert decision_versions(service, first.json()["return_id"]) == ["2026-12-example"]

    # The operator closes returns of shoes, without a restart.
    policy_path.write_text(
        policy_path.read_text().replace("2026-12-example", "2026-12-b")
        + "\n[category.shoes]\nreturnable = false\n"
    )
    assert client.get("/v1/policy", headers=CS).json()["version"] == "2026-12-b"
    refused = client.post("/v1/returns", json=request_body(delivered_order(service)), headers=CS)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "non_returnable_item"
    assert refused.json()["detail"] == (
        "line 1 cannot be returned unless defective or the wrong item"
    )
    assert decision_versions(service, refused.json()["return_id"]) == ["2026-12-b"]

    # A broken edit is logged and ignored: the last good policy stays in force.
    policy_path.write_text('version = "2026-12-c"\n[default]\nwindow_days = "soon"\n')
    assert client.get("/v1/policy", headers=CS).json()["version"] == "2026-12-b"
    again = client.post("/v1/returns", json=request_body(delivered_order(service)), headers=CS)
    assert again.status_code == 422
    assert decision_versions(service, again.json()["return_id"]) == ["2026-12-b"]


def test_a_service_does_not_start_on_a_bad_policy_file(database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "policy.toml"
    bad.write_text("[default]\nwindow_dayz = 30\n")
    with pytest.raises(PolicyFileError, match=r"default\.window_dayz: unknown policy setting"):
        create_service(database_url, pool_size=2, policy_file=bad)
    with pytest.raises(PolicyFileError, match=r"\(file\)"):
        create_service(database_url, pool_size=2, policy_file=tmp_path / "missing.toml")


def test_a_late_request_is_told_the_day_returns_closed(
    served: tuple[ReturnsService, TestClient],
) -> None:
    service, client = served
    order = delivered_order(service)
    delivered_at = service.get_order(order).state.delivered_at
    assert delivered_at is not None
    service.clock = lambda: delivered_at + timedelta(days=45)  # the customer waited
    late = client.post("/v1/returns", json=request_body(order), headers=CS)
    assert late.status_code == 422, late.text
    assert late.json()["code"] == "outside_return_window"
    closed_on = (delivered_at + timedelta(days=30)).date().isoformat()
    assert late.json()["detail"] == f"line 1: returns close 30 days after delivery: on {closed_on}"


@pytest.mark.timeout(300)
def test_the_version_travels_with_the_decision_to_kafka(system: System, tmp_path: Path) -> None:
    """The order comes in on the orders topic, the request through HTTP; the relayed
    rma.authorized carries the policy version on each line's decision."""
    path = tmp_path / "policy.toml"
    path.write_text(
        (ROOT / "policy.example.toml").read_text().replace("2026-12-example", "kafka-1")
    )
    order = delivered_web_order(system)
    service = create_service(system.database_url, pool_size=2, policy_file=path)
    try:
        api = create_api(service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
        with TestClient(api, raise_server_exceptions=False) as client:
            created = client.post("/v1/returns", json=request_body(order), headers=CS)
        assert created.status_code == 201, created.text
    finally:
        service.close()
    return_id = created.json()["return_id"]

    def relayed_decision() -> dict[str, Any] | None:
        for record in read_topic(system.bootstrap, RMA_EVENTS):
            event = orjson.loads(record.value)
            if event["type"] == "rma.authorized" and event["data"]["aggregate_id"] == return_id:
                return cast(dict[str, Any], event["data"])
        return None

    data = eventually(relayed_decision, what="rma.authorized relayed")
    assert [d["policy_version"] for d in data["decisions"]] == ["kafka-1"]
