"""Review rules and the policy simulation end to end: orders come in on the orders topic,
requests through HTTP; a serial returner's request is held with the rule named (on the
RMA, on Kafka, in the queue); a blind parcel waits in its queue with its suggestions; and
a stricter candidate policy simulated on that history reports what it would change and
writes nothing (event store and read models as they were)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.driven.eventstore import create_service
from adapters.driven.kafka.topics import RMA_EVENTS, WMS_RECEIPTS
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from tests.e2e.builders import System, delivered_web_order, eventually, publish, read_topic
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "policy.example.toml").read_text()
KEYS = {
    "k-cs": Principal("agent-ann", Role.CUSTOMER_SERVICE),
    "k-an": Principal("analyst-al", Role.ANALYTICS),
    "k-portal": Principal("portal-web", Role.PORTAL),
}
CS = {"Authorization": "Bearer k-cs"}


def policy(version: str, serial_returner_returns: int) -> str:
    return EXAMPLE.replace("2026-12-example", version).replace(
        "# serial_returner_returns = 5", f"serial_returner_returns = {serial_returner_returns}"
    )


@pytest.fixture
def client(system: System, tmp_path: Path) -> Iterator[TestClient]:
    path = tmp_path / "policy.toml"
    path.write_text(policy("review-2", 2))
    service = create_service(system.database_url, pool_size=2, policy_file=path)
    api = create_api(service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as served:
        yield served
    service.close()


def request_return(client: TestClient, order: str) -> dict[str, Any]:
    body = {
        "order_number": order,
        "lines": [{"line_no": 1, "quantity": 1, "reason": "size_too_small"}],
    }
    created = client.post("/v1/returns", json=body, headers=CS)
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


def queue(client: TestClient, name: str) -> list[dict[str, Any]]:
    found = client.get(f"/v1/queues/{name}", params={"limit": 200}, headers=CS)
    assert found.status_code == 200, found.text
    items: list[dict[str, Any]] = found.json()["items"]
    return items


def read_models(url: str, customer: str, return_ids: list[str]) -> list[Any]:
    """The read-model rows of these RMAs and their customer (other tests' stragglers, such
    as refunds the sandbox settles late, may move other rows meanwhile)."""
    with psycopg.connect(url) as conn:
        return [
            conn.execute(
                f"SELECT to_jsonb(t)::text FROM {table} t WHERE {key} = ANY(%s) ORDER BY 1",
                [keys],
            ).fetchall()
            for table, key, keys in (
                ("rm_rma_status", "return_id", return_ids),
                ("rm_rma_timeline", "return_id", return_ids),
                ("rm_customers", "customer_id", [customer]),
            )
        ]


def versions(system: System, return_ids: list[str]) -> list[int]:
    return [len(system.service.stored_events(uuid.UUID(r))) for r in return_ids]


def caught_up(client: TestClient) -> bool:
    lag = client.get("/v1/lag", headers={"Authorization": "Bearer k-an"}).json()
    return all(p["events_behind"] == 0 for p in lag["projections"])


def test_a_serial_returner_is_held_and_a_stricter_policy_is_simulated_writing_nothing(
    system: System,
    client: TestClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    customer = f"cust-serial-{uuid.uuid4().hex[:6]}"
    orders = [delivered_web_order(system, customer_id=customer) for _ in range(3)]
    first, second, third = (request_return(client, order) for order in orders)
    assert [r["status"] for r in (first, second, third)] == [
        "authorized",
        "authorized",
        "pending_review",
    ]
    held = client.get(f"/v1/returns/{third['return_id']}", headers=CS).json()
    assert held["review_rules"] == ["serial_returner"]
    assert "opened 2 returns in the 90 days before" in held["review_reason"]

    def relayed_hold() -> dict[str, Any] | None:
        for record in read_topic(system.bootstrap, RMA_EVENTS):
            event = orjson.loads(record.value)
            if (
                event["type"] == "rma.held_for_review"
                and event["data"]["aggregate_id"] == third["return_id"]
            ):
                data: dict[str, Any] = event["data"]
                return data
        return None

    data = eventually(relayed_hold, what="rma.held_for_review relayed")
    assert (data["rules"], data["policy_version"]) == (["serial_returner"], "review-2")

    def in_review_queue() -> dict[str, Any] | None:
        items = queue(client, "held_for_review")
        return next((i for i in items if i["return_id"] == third["return_id"]), None)

    item = eventually(in_review_queue, what="the hold in the held_for_review queue")
    assert item["review_rules"] == ["serial_returner"]

    # A parcel with no RMA: it waits in its queue with where it may belong.
    receipt = f"BL-{uuid.uuid4().hex[:8]}"
    publish(system.bootstrap, WMS_RECEIPTS, [m.parcel_received(receipt, None)], receipt.encode())

    def waiting() -> dict[str, Any] | None:
        items = [i for i in queue(client, "blind_unmatched") if i["return_id"]]
        mine = [i for i in items if client.get(f"/v1/blind-returns/{i['return_id']}",
                headers=CS).json().get("receipt_id") == receipt]  # fmt: skip
        return mine[0] if mine else None

    parcel = eventually(waiting, what="the blind parcel in its queue")
    alone = client.get(f"/v1/blind-returns/{parcel['return_id']}", headers=CS).json()
    assert parcel["suggested_matches"] == alone["suggested_matches"]
    assert parcel["suggested_matches"], "a delivered order of its SKU is suggested"
    assert {s["by"] for s in parcel["suggested_matches"]} == {"sku"}

    # The candidate holds from one earlier return: the second request changes, the
    # first (none before it) and the third (held already) do not.
    eventually(lambda: caught_up(client), what="the projections caught up")
    # Why a person reviews it (a count of the customer's returns) is for staff only.
    path = f"/v1/returns/{third['return_id']}/timeline"
    portal = {
        "Authorization": "Bearer k-portal",
        "X-Customer-Email": f"{orders[2].lower()}@example.com",
    }
    holds = {
        who: [
            e
            for e in client.get(path, headers=h).json()["events"]
            if e["type"] == "rma.held_for_review"
        ]
        for who, h in (("staff", CS), ("customer", portal))
    }
    assert "opened 2 returns" in holds["staff"][0]["summary"]["reason"]
    assert holds["customer"] and "reason" not in (holds["customer"][0]["summary"] or {})
    mine = [r["return_id"] for r in (first, second, third)] + [parcel["return_id"]]
    stored_before = versions(system, mine)
    models_before = read_models(system.database_url, customer, mine)
    candidate = tmp_path / "candidate.toml"
    candidate.write_text(policy("review-1", 1))
    monkeypatch.setenv("OMS_DATABASE_URL", system.database_url)
    from adapters.driving.cli import main

    today = datetime.now(UTC).date().isoformat()
    args = ["policy", "simulate", str(candidate), "--since", today, "--json", "--details"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    changed = {c["return_id"]: c for c in report["request_changes"]}
    assert first["return_id"] not in changed and third["return_id"] not in changed
    assert {k: changed[second["return_id"]][k] for k in ("before", "after", "rules_after")} == {
        "before": "authorized",
        "after": "held_for_review",
        "rules_after": ["serial_returner"],
    }
    assert changed[second["return_id"]]["order_number"] == orders[1]
    holds = report["holds"]
    assert holds["after"]["serial_returner"] >= holds["before"]["serial_returner"] + 1
    # Held, not refused: the refund it would bring stands.
    assert changed[second["return_id"]]["refund_after"] == "30.00"
    assert changed[second["return_id"]]["refund_before"] == "30.00"
    # Nothing written: not one event on these RMAs, not one read-model row changed (the
    # integration test checks the whole event store on a database of its own).
    assert versions(system, mine) == stored_before
    assert read_models(system.database_url, customer, mine) == models_before
    assert models_before[0] and models_before[2]
