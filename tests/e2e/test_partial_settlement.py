"""A provider paying part of a payment's share through psp.refunds.v1: the part is
recorded, the rest stays outstanding (the RMA waits, over HTTP too), a repeat changes
nothing, and the remainder settles it.

A stack of its own (broker, database, integrations worker) and no relay: no refund
instruction reaches the sandbox provider, so only this test's messages settle the refund.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer

from adapters.driven.embedded.tansu import EmbeddedKafka
from adapters.driven.eventstore import create_service
from adapters.driven.kafka.provisioning import provision_topics
from adapters.driven.kafka.topics import PSP_REFUNDS, topic_specs
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from domain.application import ReturnsService
from domain.values import PaymentMethod
from streams.worker import WorkerProcess
from tests.e2e.builders import eventually
from tests.integration import builders as m
from tests.integration.builders import fresh_database

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CS = {"Authorization": "Bearer k-cs"}


@pytest.fixture
def isolated(database_url: str, tmp_path: Path) -> Iterator[tuple[str, str, ReturnsService]]:
    with EmbeddedKafka(tmp_path / "tansu") as broker:
        provision_topics(broker.bootstrap, topic_specs(2))
        url = fresh_database(database_url, "partial")
        service = create_service(url, pool_size=2)
        env = {
            **os.environ,
            "OMS_DATABASE_URL": url,
            "OMS_KAFKA_BOOTSTRAP": broker.bootstrap,
            "OMS_DATA_DIR": str(tmp_path / "data"),
            "OMS_TOPIC_PARTITIONS": "2",
        }
        worker = WorkerProcess(
            "streams.integrations:app_from_env", workdir=tmp_path / "worker", env=env, cwd=ROOT
        ).start()
        try:
            worker.wait_ready(timeout=120)
            yield broker.bootstrap, url, service
        finally:
            worker.terminate()
            service.close()


def settled(refund_id: str, payment_id: str, amount: str, reference: str) -> bytes:
    return m.cloud_event(
        "refund.settled",
        {
            "refund_id": refund_id,
            "payment_id": payment_id,
            "provider_reference": reference,
            "amount": m.amount(amount),
        },
        source="psp/sandbox",
        event_id=f"{reference}-{payment_id}-{amount}",
    )


def send(bootstrap: str, refund_id: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for value in values:  # keyed by refund, as the contract says: applied in order
            producer.send(PSP_REFUNDS, key=refund_id.encode(), value=value)
        producer.flush(30)
    finally:
        producer.close()


def test_a_partial_settlement_leaves_the_rest_outstanding_until_the_provider_pays_it(
    isolated: tuple[str, str, ReturnsService],
) -> None:
    bootstrap, url, service = isolated
    number = m.delivered_order(
        service, payments=((PaymentMethod.CARD, "60.00"), (PaymentMethod.PAYPAL, "45.00"))
    )
    rma = m.authorized_return(service, number)
    assert rma.rma_number is not None
    refund_id = m.receive_and_inspect(service, rma.rma_number).refund_id
    assert refund_id is not None
    shares = {
        a.payment_id: a.amount.amount
        for a in service.get_return_of_refund(refund_id).refund(refund_id).allocations
    }
    card, paypal = shares["pay-1"], shares["pay-2"]
    api = create_api(
        service,
        url,
        ApiSettings(),
        KeyRing.with_keys({"k-cs": Principal("agent-ann", Role.CUSTOMER_SERVICE)}),
    )
    with TestClient(api, raise_server_exceptions=False) as client:

        def refund_view() -> dict[str, Any]:
            view = client.get(f"/v1/returns/{rma.aggregate_id}", headers=CS).json()
            return dict(view, refund=view["refunds"][refund_id])

        # PayPal in full, the card 10.00 of its share, and that card message told twice.
        part = "10.00"
        send(
            bootstrap,
            refund_id,
            [
                settled(refund_id, "pay-2", str(paypal), "PSP-PP-1"),
                settled(refund_id, "pay-1", part, "PSP-CARD-1"),
                settled(refund_id, "pay-1", part, "PSP-CARD-1"),
            ],
        )
        partly = eventually(
            lambda: (v := refund_view())["refund"]["settled_by_payment"].get("pay-1") and v,
            what="the card's partial settlement",
        )
        assert partly["status"] == "refund_pending"
        assert partly["refund"]["status"] != "settled"
        assert partly["refund"]["settled_by_payment"] == {
            "pay-1": {"amount": part, "currency": "EUR"},
            "pay-2": {"amount": str(paypal), "currency": "EUR"},
        }
        assert not partly["refund"]["discrepancies"]

        send(bootstrap, refund_id, [settled(refund_id, "pay-1", str(card - 10), "PSP-CARD-2")])
        done = eventually(
            lambda: (v := refund_view())["status"] == "closed" and v,
            what="the remainder settling the refund",
        )
        assert done["refund"]["status"] == "settled"
        assert done["refund"]["settled_by_payment"]["pay-1"] == {
            "amount": str(card),
            "currency": "EUR",
        }
