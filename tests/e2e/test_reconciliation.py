"""Reconciliation end to end: a conflicting settlement and a reversal published on
psp.refunds.v1 show in the discrepancy queue and in the day's reconciliation over HTTP, and
a provider's settlement file imported twice through HTTP records its disagreement once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.driven.kafka.topics import PSP_REFUNDS
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from tests.e2e.builders import System, eventually, publish
from tests.e2e.payments import refunded_return, settlements_of
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(500)]

KEYS = {
    "k-cs": Principal("agent-recon", Role.CUSTOMER_SERVICE),
    "k-an": Principal("analyst-recon", Role.ANALYTICS),
}
CS = {"Authorization": "Bearer k-cs"}
AN = {"Authorization": "Bearer k-an"}


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    api = create_api(system.service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def card_figures(client: TestClient, day: str) -> dict[str, Any]:
    answer = client.get(f"/v1/reconciliation?day={day}&provider=card", headers=AN)
    assert answer.status_code == 200, answer.text
    found = [p for p in answer.json()["providers"] if p["currency"] == "EUR"]
    zero = {"count": 0, "claimed": "0.00", "expected": "0.00"}
    return found[0]["discrepancies"] if found else zero


def discrepancies_of(client: TestClient, refund_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/refunds/discrepancies?refund_id={refund_id}", headers=CS)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_a_conflicting_settlement_and_a_reversal_show_in_the_queue_and_the_days_figures(
    system: System, client: TestClient
) -> None:
    return_id, refund_id = refunded_return(system)
    today = datetime.now(UTC).date().isoformat()
    before = card_figures(client, today)
    messages = settlements_of(system, refund_id)
    card = next(s for s in messages if s["data"]["payment_id"] == "pay-card")
    paypal = next(s for s in messages if s["data"]["payment_id"] == "pay-paypal")
    conflicting = m.cloud_event(
        "refund.settled",
        {**card["data"], "provider_reference": "PSP-LATE-9", "amount": m.amount("100.00")},
        source="psp/sandbox",
    )
    reversal = m.cloud_event(
        "refund.failed",
        {"refund_id": refund_id, "payment_id": "pay-paypal", "reason": "chargeback"},
        source="psp/sandbox",
    )
    # Repeated: each is recorded once.
    publish(
        system.bootstrap,
        PSP_REFUNDS,
        [conflicting, reversal, conflicting, reversal],
        key=refund_id.encode(),
    )
    rows = eventually(
        lambda: len(d := discrepancies_of(client, refund_id)) == 2 and d,
        what="both discrepancies projected",
    )
    by_kind = {r["kind"]: r for r in rows}
    assert set(by_kind) == {"amount_mismatch", "reversal"}
    mismatch = by_kind["amount_mismatch"]
    assert (mismatch["provider"], mismatch["payment_id"]) == ("card", "pay-card")
    assert (mismatch["amount"], mismatch["expected"]) == (
        "100.00",
        card["data"]["amount"]["amount"],
    )
    assert (by_kind["reversal"]["provider"], by_kind["reversal"]["expected"]) == (
        "paypal",
        paypal["data"]["amount"]["amount"],
    )
    assert system.service.get_return(return_id).state.status.value == "closed"

    queues = {q["name"]: q for q in client.get("/v1/queues", headers=CS).json()["queues"]}
    assert queues["discrepancies"]["count"] >= 2
    assert queues["discrepancies"]["oldest_age_seconds"] is not None
    queued = client.get("/v1/queues/discrepancies?limit=200", headers=CS).json()["items"]
    mine = [q for q in queued if q["refund_id"] == refund_id]
    assert {q["discrepancy_kind"] for q in mine} == {"amount_mismatch", "reversal"}
    assert all(q["rma_number"] and q["age_seconds"] is not None for q in mine)

    after = card_figures(client, today)
    assert after["count"] == before["count"] + 1
    assert Decimal(after["claimed"]) - Decimal(before["claimed"]) == Decimal("100.00")


def test_a_settlement_file_imported_twice_records_its_disagreement_once(
    system: System, client: TestClient
) -> None:
    return_id, refund_id = refunded_return(system)
    messages = settlements_of(system, refund_id)
    card = next(s for s in messages if s["data"]["payment_id"] == "pay-card")["data"]
    now = datetime.now(UTC).isoformat()
    unknown = f"RF-NONE-{uuid.uuid4().hex[:6]}"
    csv = (
        "provider_reference,refund_id,payment_id,amount,currency,settled_at,status\r\n"
        f"{card['provider_reference']},{refund_id},pay-card,{card['amount']['amount']},EUR,"
        f"{now},settled\r\n"
        f"PSP-FILE-2,{refund_id},pay-card,1.23,EUR,{now},settled\r\n"
        f"PSP-FILE-3,{unknown},,9.99,EUR,{now},settled\r\n"
    )
    url = "/v1/reconciliation/settlements?provider=card"
    as_csv = {**CS, "Content-Type": "text/csv"}
    first = client.post(url, content=csv.encode(), headers=as_csv)
    assert first.status_code == 200, first.text
    report = first.json()
    assert [line["verdict"] for line in report["lines"]] == [
        "matched",
        "amount_mismatch",
        "unknown_refund",
    ]
    assert report["discrepancies_recorded"] == 1
    assert refund_id not in {m["refund_id"] for m in report["missing_in_file"]}
    version = system.service.get_return(return_id).version

    again = client.post(url, content=csv.encode(), headers=as_csv)
    assert again.status_code == 200, again.text
    assert again.json()["discrepancies_recorded"] == 0
    assert again.json()["counts"] == report["counts"]
    assert system.service.get_return(return_id).version == version, "nothing recorded twice"
    [row] = eventually(
        lambda: discrepancies_of(client, refund_id), what="the file's discrepancy projected"
    )
    assert (row["kind"], row["amount"], row["provider_reference"]) == (
        "amount_mismatch",
        "1.23",
        "PSP-FILE-2",
    )

    analytics = client.post(url, content=csv.encode(), headers={**AN, "Content-Type": "text/csv"})
    assert analytics.status_code == 403
    broken = csv.replace("1.23,EUR", "1.2.3,EUR")
    refused = client.post(url, content=broken.encode(), headers=as_csv)
    assert refused.status_code == 422, refused.text
    assert (refused.json()["code"], refused.json()["line"]) == ("invalid_settlement_file", 3)
    assert "amount" in refused.json()["detail"]
