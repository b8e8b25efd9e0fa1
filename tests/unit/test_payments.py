"""The sandbox payment provider deduplicates by refund id and drops no settlement."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from adapters.driven.kafka.topics import PSP_REFUNDS
from adapters.driven.payments import RefundInstruction, SandboxPaymentProvider


def instruction(refund_id: str = "RF-RMA-TEST-1", amount: str = "50.00") -> RefundInstruction:
    return RefundInstruction(refund_id=refund_id, amount=amount, currency="EUR", methods=("card",))


class Recorded:
    """A publish function that records, or fails the first ``failures`` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("broker away")
        self.sent.append((topic, key, value))


def settled_refund() -> RefundInstruction:
    sandbox = SandboxPaymentProvider(Recorded(), failure_percent=0)
    refund = instruction()
    assert sandbox.fails(refund) is None
    return refund


def test_a_second_instruction_for_a_settled_refund_republishes_the_same_settlement() -> None:
    published = Recorded()
    sandbox = SandboxPaymentProvider(published, delay_s=0, failure_percent=0)
    refund = settled_refund()

    async def twice() -> None:
        await sandbox.request_refund(refund)
        await sandbox.drain()
        await sandbox.request_refund(refund)
        await sandbox.drain()

    asyncio.run(twice())
    assert sandbox.payouts == {refund.refund_id: 1}
    assert len(published.sent) == 2 and published.sent[0] == published.sent[1]
    topic, key, value = published.sent[0]
    message = orjson.loads(value)
    assert (topic, key) == (PSP_REFUNDS, refund.refund_id.encode())
    assert message["type"] == "refund.settled" and message["id"] == f"sandbox:{refund.refund_id}"


def test_instructions_repeated_while_one_is_being_settled_pay_out_once() -> None:
    published = Recorded()
    sandbox = SandboxPaymentProvider(published, delay_s=0.05, failure_percent=0)
    refund = settled_refund()

    async def at_once() -> None:
        for _ in range(5):
            await sandbox.request_refund(refund)
        await sandbox.drain()

    asyncio.run(at_once())
    assert sandbox.payouts == {refund.refund_id: 1}
    assert len(published.sent) == 1


def test_a_settlement_that_cannot_be_published_is_logged_and_published_on_the_next_instruction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    published = Recorded(failures=1)
    sandbox = SandboxPaymentProvider(published, delay_s=0, failure_percent=0)
    refund = settled_refund()

    async def fail_then_resend() -> None:
        await sandbox.request_refund(refund)
        await sandbox.drain()
        assert published.sent == []
        await sandbox.request_refund(refund)
        await sandbox.drain()

    with caplog.at_level(logging.ERROR, logger="adapters.driven.payments"):
        asyncio.run(fail_then_resend())
    assert any(
        refund.refund_id in r.getMessage() and r.exc_info is not None for r in caplog.records
    ), "the failed publish was not logged"
    assert sandbox.payouts == {refund.refund_id: 1}
    assert len(published.sent) == 1
    assert orjson.loads(published.sent[0][2])["type"] == "refund.settled"


def test_a_declined_refund_is_declined_again_with_the_same_message() -> None:
    published = Recorded()
    sandbox = SandboxPaymentProvider(published, delay_s=0, failure_percent=100)
    refund = instruction("RF-RMA-DECLINED-1")

    async def twice() -> None:
        for _ in range(2):
            await sandbox.request_refund(refund)
            await sandbox.drain()

    asyncio.run(twice())
    assert sandbox.payouts == {}
    assert len(published.sent) == 2 and published.sent[0] == published.sent[1]
    assert orjson.loads(published.sent[0][2])["type"] == "refund.failed"


def test_a_split_refund_is_settled_payment_by_payment() -> None:
    published = Recorded()
    sandbox = SandboxPaymentProvider(published, delay_s=0, failure_percent=0)
    refund = RefundInstruction.from_event(
        {
            "refund_id": "RF-RMA-SPLIT-1",
            "amount": {"amount": "40.00", "currency": "EUR"},
            "allocations": [
                {
                    "payment_id": "PAY-CARD",
                    "method": "card",
                    "amount": {"amount": "25.00", "currency": "EUR"},
                },
                {
                    "payment_id": "PAY-PAYPAL",
                    "method": "paypal",
                    "amount": {"amount": "15.00", "currency": "EUR"},
                },
            ],
        }
    )
    assert refund.methods == ("card", "paypal")
    assert sandbox.fails(refund) is None

    async def twice() -> None:
        for _ in range(2):
            await sandbox.request_refund(refund)
            await sandbox.drain()

    asyncio.run(twice())
    messages = [orjson.loads(value) for _, _, value in published.sent]
    assert sandbox.payouts == {refund.refund_id: 1}
    assert [
        (m["id"], m["data"]["payment_id"], m["data"]["amount"]["amount"]) for m in messages
    ] == [
        ("sandbox:RF-RMA-SPLIT-1:PAY-CARD", "PAY-CARD", "25.00"),
        ("sandbox:RF-RMA-SPLIT-1:PAY-PAYPAL", "PAY-PAYPAL", "15.00"),
    ] * 2
    assert messages[0]["data"]["provider_reference"] != messages[1]["data"]["provider_reference"]
