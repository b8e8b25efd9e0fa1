"""Refund dispatch is at least once: the sandbox survives a broker restart, pending refunds
are found in PostgreSQL and sent again under the same id, and operators can ask for it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from adapters.driven.embedded.tansu import EmbeddedKafka
from adapters.driven.eventstore import create_service
from adapters.driven.kafka.provisioning import provision_topics
from adapters.driven.kafka.topics import PSP_REFUNDS, topic_specs
from adapters.driven.payments import RefundInstruction
from adapters.driven.refunds import RefundDispatches
from adapters.driving.cli import main
from domain.application import ReturnsService
from domain.commands import FailRefund, SettleRefund
from streams.integrations import kafka_publisher, refund_dispatcher, resend_due_refunds
from tests.integration.builders import ctx, fresh_database, requested_refund

pytestmark = pytest.mark.timeout(180)


def settlements(bootstrap: str) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
        fetch_max_wait_ms=50,
    )
    try:
        partitions = consumer.partitions_for_topic(PSP_REFUNDS) or set()
        assigned = [TopicPartition(PSP_REFUNDS, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        return [orjson.loads(record.value) for record in consumer]
    finally:
        consumer.close()


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class LoopThread:
    """An event loop in a thread, as the worker has one: the sandbox's tasks run on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    started = EmbeddedKafka(tmp_path / "tansu").start()
    try:
        yield started
    finally:
        started.stop()


@pytest.mark.timeout(240)
def test_the_sandbox_publishes_settlements_again_after_the_broker_restarted(
    broker: EmbeddedKafka,
) -> None:
    provision_topics(broker.bootstrap, topic_specs(1))
    provider = kafka_publisher(broker.bootstrap)
    loop = LoopThread()
    try:
        first = RefundInstruction("RF-BEFORE-1", "10.00", "EUR", ("card",))
        loop.run(provider.request_refund(first))
        loop.run(provider.drain())
        wait_for(lambda: settlements(broker.bootstrap), 30, "the first settlement")

        broker.restart()  # memory storage: it comes back empty, the producer's id is void
        provision_topics(broker.bootstrap, topic_specs(1))
        second = RefundInstruction("RF-AFTER-1", "20.00", "EUR", ("card",))
        loop.run(provider.request_refund(second))
        loop.run(provider.drain())
        found = wait_for(
            lambda: [s for s in settlements(broker.bootstrap) if s["subject"] == "RF-AFTER-1"],
            60,
            "the settlement published after the restart",
        )
        assert found[0]["id"] == "sandbox:RF-AFTER-1"
    finally:
        loop.close()


# ---------------------------------------------------------------- pending refunds in PostgreSQL
@pytest.fixture
def own_service(database_url: str) -> Iterator[tuple[str, ReturnsService]]:
    url = fresh_database(database_url, "refunds")
    service = create_service(url, pool_size=2)
    try:
        yield url, service
    finally:
        service.close()


def backdate(url: str, refund_id: str, seconds: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE oms_refunds SET requested_at = requested_at - make_interval(secs => %s)"
            " WHERE refund_id = %s",
            [seconds, refund_id],
        )


class Instructed:
    """A provider that records what it was told (the dispatcher's side is under test)."""

    def __init__(self) -> None:
        self.refunds: list[RefundInstruction] = []

    async def request_refund(self, refund: RefundInstruction) -> None:
        self.refunds.append(refund)


def test_a_refund_unanswered_for_a_period_is_sent_again_with_the_same_id_once_a_period(
    own_service: tuple[str, ReturnsService],
) -> None:
    url, service = own_service
    refund_id = requested_refund(service)
    dispatches = RefundDispatches(service)
    provider = Instructed()

    assert asyncio.run(resend_due_refunds(provider, dispatches, 60)) == 0  # not due yet
    backdate(url, refund_id, 120)
    assert asyncio.run(resend_due_refunds(provider, dispatches, 60)) == 1
    assert asyncio.run(resend_due_refunds(provider, dispatches, 60)) == 0  # sent just now
    rma = service.get_return_of_refund(refund_id)
    assert [r.refund_id for r in provider.refunds] == [refund_id]
    assert provider.refunds[0].amount == str(rma.state.refunds[refund_id].amount.amount)
    [pending] = dispatches.pending()
    assert (pending.refund_id, pending.attempts, pending.rma_number) == (
        refund_id,
        1,
        rma.state.rma_number,
    )

    service.run(
        ctx(),
        SettleRefund(
            refund_id=refund_id, provider_reference="psp-1", amount=rma.refund(refund_id).amount
        ),
    )
    assert dispatches.pending() == []
    backdate(url, refund_id, 3600)
    assert asyncio.run(resend_due_refunds(provider, dispatches, 60)) == 0


def test_two_workers_claiming_at_once_send_a_due_refund_once(
    own_service: tuple[str, ReturnsService],
) -> None:
    url, service = own_service
    refund_ids = [requested_refund(service) for _ in range(5)]
    for refund_id in refund_ids:
        backdate(url, refund_id, 120)
    dispatches = RefundDispatches(service)
    claims: list[list[tuple[str, int]]] = []
    start = threading.Barrier(4)

    def claim() -> None:
        start.wait()
        claims.append(dispatches.claim_due(60))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    claimed = sorted(refund_id for claim_ in claims for refund_id, _ in claim_)
    assert claimed == sorted(refund_ids)


def test_the_dispatcher_skips_refunds_already_answered_and_counts_what_it_sends(
    own_service: tuple[str, ReturnsService],
) -> None:
    _, service = own_service
    answered, waiting = requested_refund(service), requested_refund(service)
    rma = service.get_return_of_refund(answered)
    service.run(ctx(), FailRefund(refund_id=answered, reason="declined"))
    dispatches = RefundDispatches(service)
    provider = Instructed()
    handle = refund_dispatcher(provider, dispatches)

    def record(refund_id: str) -> Any:
        from streams.records import InboundRecord

        data = {
            "refund_id": refund_id,
            "amount": {"amount": "50.00", "currency": "EUR"},
            "allocations": [{"method": "card"}],
        }
        value = orjson.dumps({"type": "rma.refund_requested", "data": data})
        return InboundRecord("rma.events.v1", 0, 0, None, value, (), None)

    dead = asyncio.run(handle([record(answered), record(waiting)]))
    assert dead == []
    assert [r.refund_id for r in provider.refunds] == [waiting]
    assert {p.refund_id: p.attempts for p in dispatches.pending()} == {waiting: 1}
    assert rma.state.rma_number is not None


def test_an_operator_lists_pending_refunds_and_asks_for_a_resend_from_the_cli(
    own_service: tuple[str, ReturnsService],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, service = own_service
    old, new = requested_refund(service), requested_refund(service)
    backdate(url, old, 600)
    monkeypatch.setenv("OMS_DATABASE_URL", url)
    capsys.readouterr()

    assert main(["refunds", "pending", "--older-than", "300"]) == 0
    listed = capsys.readouterr().out
    assert old in listed and new not in listed
    row = next(line.split("\t") for line in listed.splitlines() if line.startswith(old))
    rma = service.get_return_of_refund(old)
    assert row[1] == rma.state.rma_number and row[2] == "50.00 EUR" and row[4] == "0"
    assert int(row[3]) >= 600

    assert main(["refunds", "resend", old, "RF-NO-SUCH-1"]) == 1
    out = capsys.readouterr()
    assert f"{old}: to be sent again" in out.out and "RF-NO-SUCH-1: not pending" in out.err
    provider = Instructed()
    dispatches = RefundDispatches(service)
    # Asked for: sent at the next round although a full period has not passed.
    assert asyncio.run(resend_due_refunds(provider, dispatches, 3600)) == 1
    assert [r.refund_id for r in provider.refunds] == [old]
    assert asyncio.run(resend_due_refunds(provider, dispatches, 3600)) == 0

    assert main(["refunds", "resend", "--all-older-than", "0"]) == 0
    asked = capsys.readouterr().out
    assert f"{old}: to be sent again" in asked and f"{new}: to be sent again" in asked
    assert asyncio.run(resend_due_refunds(provider, dispatches, 3600)) == 2


def test_a_refund_row_from_before_statuses_were_kept_is_checked_on_its_rma_once(
    own_service: tuple[str, ReturnsService],
) -> None:
    url, service = own_service
    refund_id = requested_refund(service)
    rma = service.get_return_of_refund(refund_id)
    service.run(
        ctx(),
        SettleRefund(
            refund_id=refund_id, provider_reference="psp-1", amount=rma.refund(refund_id).amount
        ),
    )
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE oms_refunds SET status = NULL, requested_at = NULL WHERE refund_id = %s",
            [refund_id],
        )
    dispatches = RefundDispatches(service)
    provider = Instructed()
    assert asyncio.run(resend_due_refunds(provider, dispatches, 60)) == 0
    assert provider.refunds == []
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status FROM oms_refunds WHERE refund_id = %s", [refund_id]
        ).fetchone()
    assert row == ("settled",)
    assert dispatches.pending() == []
