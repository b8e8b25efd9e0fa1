"""A card plus PayPal refund through psp.refunds.v1: the sandbox settles each payment in
its own message, repeats change nothing, and a settlement that disagrees with the refund
instruction is recorded as a discrepancy and shown on the RMA."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from adapters.driven.kafka.topics import PSP_REFUNDS
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from tests.e2e.builders import System, eventually, publish, rma_events
from tests.e2e.payments import refunded_return, settlements_of
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

KEYS = {"k-cs": Principal("agent-psp", Role.CUSTOMER_SERVICE)}
CS = {"Authorization": "Bearer k-cs"}


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[TestClient]:
    api = create_api(system.service, system.database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_card_and_paypal_refund_is_settled_per_payment_and_a_conflict_is_recorded(
    system: System, client: TestClient
) -> None:
    return_id, refund_id = refunded_return(system)
    types = eventually(
        lambda: (t := rma_events(system, return_id)) and t[-1] == "rma.closed" and t,
        what="the outbound events",
    )
    assert types[-5:] == [
        "rma.refund_requested",
        "rma.refund_payment_settled",
        "rma.refund_payment_settled",
        "rma.refund_settled",
        "rma.closed",
    ]
    messages = settlements_of(system, refund_id)
    assert sorted(s["data"]["payment_id"] for s in messages) == ["pay-card", "pay-paypal"]

    view = client.get(f"/v1/returns/{return_id}", headers=CS)
    assert view.status_code == 200, view.text
    refund = view.json()["refunds"][refund_id]
    allocated = {a["payment_id"]: a["amount"] for a in refund["allocations"]}
    assert refund["status"] == "settled"
    assert refund["settled_by_payment"] == allocated
    assert set(allocated) == {"pay-card", "pay-paypal"}
    version = view.json()["version"]

    # The provider repeats both settlements, then claims 100.00 more for the card.
    card = next(s for s in messages if s["data"]["payment_id"] == "pay-card")
    conflicting = m.cloud_event(
        "refund.settled",
        {**card["data"], "provider_reference": "PSP-LATE-1", "amount": m.amount("100.00")},
        source="psp/sandbox",
    )
    again = [orjson.dumps(s) for s in messages]
    publish(system.bootstrap, PSP_REFUNDS, [*again, conflicting], key=refund_id.encode())
    later = eventually(
        lambda: (
            (v := client.get(f"/v1/returns/{return_id}", headers=CS).json())["refunds"][refund_id][
                "discrepancies"
            ]
            and v
        ),
        what="the discrepancy on the RMA",
    )
    # One key, one partition: the repeats were applied before it, and changed nothing.
    assert later["version"] == version + 1
    [discrepancy] = later["refunds"][refund_id]["discrepancies"]
    assert discrepancy["payment_id"] == "pay-card"
    assert discrepancy["amount"] == {"amount": "100.00", "currency": "EUR"}
    assert "after the refund settled" in discrepancy["reason"]
    assert later["refunds"][refund_id]["settled_by_payment"] == allocated
    assert later["status"] == "closed"
    eventually(
        lambda: rma_events(system, return_id)[-1] == "rma.refund_discrepancy",
        what="the discrepancy relayed",
    )
