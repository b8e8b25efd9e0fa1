"""Customer service retries a refund stuck with the payment provider through the API: the
same refund id is sent again, no new money; a failed refund is still paid again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from adapters.driven.payments import RefundInstruction
from adapters.driven.refunds import RefundDispatches
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from domain.application import ReturnsService
from domain.commands import FailRefund
from domain.values import ReasonCode
from streams.integrations import resend_due_refunds
from tests.integration import builders as m
from tests.integration.builders import ctx, delivered_order, receive_and_inspect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

KEYS = {"k-cs": Principal("agent-bo", Role.CUSTOMER_SERVICE)}
CS = {"Authorization": "Bearer k-cs"}


@pytest.fixture(scope="module")
def client(service: ReturnsService, database_url: str) -> Iterator[TestClient]:
    api = create_api(service, database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


class Instructed:
    def __init__(self) -> None:
        self.refunds: list[RefundInstruction] = []

    async def request_refund(self, refund: RefundInstruction) -> None:
        self.refunds.append(refund)


def pending_refund(service: ReturnsService) -> tuple[str, str]:
    number = delivered_order(service)
    rma = m.authorized_return(service, number, reason=ReasonCode.DEFECTIVE)
    assert rma.rma_number is not None
    refund = receive_and_inspect(service, rma.rma_number)
    assert refund.refund_id is not None
    return str(rma.aggregate_id), refund.refund_id


def test_a_pending_refund_is_sent_again_under_the_same_id_with_no_new_money(
    client: TestClient, service: ReturnsService
) -> None:
    return_id, refund_id = pending_refund(service)
    before = client.get(f"/v1/returns/{return_id}", headers=CS)
    assert before.json()["status"] == "refund_pending"

    retried = client.post(f"/v1/returns/{return_id}/refund-retry", json={}, headers=CS)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "refund_pending"
    assert retried.json()["refund_id"] == refund_id
    after = client.get(f"/v1/returns/{return_id}", headers=CS)
    assert after.headers["ETag"] == before.headers["ETag"]  # nothing recorded on the RMA
    assert list(after.json()["refunds"]) == [refund_id]

    dispatches = RefundDispatches(service)
    [mine] = [p for p in dispatches.pending() if p.refund_id == refund_id]
    assert mine.resend_requested_at is not None
    provider = Instructed()
    # The worker's next round sends it, though a full period has not passed.
    asyncio.run(resend_due_refunds(provider, dispatches, 3600))
    sent = [r for r in provider.refunds if r.refund_id == refund_id]
    assert len(sent) == 1 and sent[0].amount == retried.json()["amount"]["amount"] == "55.00"

    credit = client.post(
        f"/v1/returns/{return_id}/refund-retry", json={"as_store_credit": True}, headers=CS
    )
    assert credit.status_code == 409, credit.text


def test_a_failed_refund_is_still_paid_again_under_a_new_id(
    client: TestClient, service: ReturnsService
) -> None:
    return_id, refund_id = pending_refund(service)
    service.run(ctx(), FailRefund(refund_id=refund_id, reason="declined"))
    retried = client.post(f"/v1/returns/{return_id}/refund-retry", json={}, headers=CS)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "refund_pending"
    assert retried.json()["refund_id"] not in (None, refund_id)
