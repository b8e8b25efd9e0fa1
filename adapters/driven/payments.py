"""The payment-provider port and its sandbox.

Refunds leave the OMS as ``rma.refund_requested`` events; a dispatcher hands each to a
``PaymentProvider``. Settlement comes back asynchronously on ``psp.refunds.v1``, as it does
from a real provider's webhooks, so the same inbound path records it. A real provider is
one more implementation of the port.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError

from adapters.contracts import envelope_bytes
from adapters.driven.kafka.topics import PSP_REFUNDS

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, bytes], Awaitable[None]]


@dataclass(frozen=True)
class PaymentShare:
    """The part of a refund that goes back to one payment of the order."""

    payment_id: str
    method: str
    amount: str


@dataclass(frozen=True)
class RefundInstruction:
    refund_id: str
    amount: str
    currency: str
    methods: tuple[str, ...]
    payments: tuple[PaymentShare, ...] = ()
    """Each payment's id and share; empty for refunds allocated before payments had ids,
    which the provider settles as a whole."""

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> RefundInstruction:
        amount = data["amount"]
        allocations = data.get("allocations", [])
        return cls(
            refund_id=data["refund_id"],
            amount=amount["amount"],
            currency=amount["currency"],
            methods=tuple(a["method"] for a in allocations),
            payments=payment_shares(
                (a.get("payment_id"), a["method"], (a.get("amount") or {}).get("amount"))
                for a in allocations
            ),
        )


def payment_shares(
    allocations: Iterable[tuple[str | None, str, str | None]],
) -> tuple[PaymentShare, ...]:
    """The shares per payment, or none if any share lacks a payment id or an amount: the
    provider then settles the refund as a whole, as before payments were named."""
    shares: list[PaymentShare] = []
    for payment_id, method, amount in allocations:
        if payment_id is None or amount is None:
            return ()
        shares.append(PaymentShare(payment_id, method, amount))
    return tuple(shares)


class PaymentProvider(Protocol):
    async def request_refund(self, refund: RefundInstruction) -> None: ...


class SandboxPaymentProvider:
    """Settles card, PayPal and buy-now-pay-later refunds after a delay; fails a few.

    Failures are deterministic per refund id (a hash below ``failure_percent``), plus any
    card refund above ``card_limit``, so tests and the demo can count on them.

    An instruction naming its payments is settled one ``refund.settled`` per payment
    (with ``payment_id``); one without, as a whole. A decline is for the whole refund.

    Like a real provider it deduplicates by refund id: one payout per refund, however
    often it is instructed. A repeated instruction while the first is being settled adds
    nothing; after it, the same settlement message is published again (same CloudEvent id,
    so the inbound side records it once). A settlement that cannot be published is logged
    and kept, and the next instruction (the dispatcher's re-send) publishes it.
    """

    def __init__(
        self,
        publish: Publish,
        *,
        delay_s: float = 0.05,
        failure_percent: int = 5,
        card_limit: Decimal = Decimal("5000"),
    ) -> None:
        self.publish = publish
        self.delay_s = delay_s
        self.failure_percent = failure_percent
        self.card_limit = card_limit
        self.payouts: dict[str, int] = {}
        """Payouts made per refund id: never more than one (tests read it)."""
        self._settlements: dict[str, tuple[bytes, ...]] = {}
        self._settling: set[str] = set()
        self._pending: set[asyncio.Task[None]] = set()

    def fails(self, refund: RefundInstruction) -> str | None:
        digest = hashlib.sha256(refund.refund_id.encode()).digest()
        if digest[0] * 100 // 256 < self.failure_percent:
            return "declined by the issuer (sandbox)"
        if "card" in refund.methods and Decimal(refund.amount) > self.card_limit:
            return f"card refunds above {self.card_limit} need manual review (sandbox)"
        return None

    async def request_refund(self, refund: RefundInstruction) -> None:
        if refund.refund_id in self._settling:
            return  # already being settled: its settlement answers this instruction too
        settled = self._settlements.get(refund.refund_id)
        job = self._settle_later(refund) if settled is None else self._announce(refund, settled)
        self._settling.add(refund.refund_id)
        task = asyncio.get_running_loop().create_task(job)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        task.add_done_callback(lambda _: self._settling.discard(refund.refund_id))
        task.add_done_callback(_log_failure)

    async def _settle_later(self, refund: RefundInstruction) -> None:
        await asyncio.sleep(self.delay_s)
        reason = self.fails(refund)
        messages: list[tuple[str, str, dict[str, Any]]] = []
        data: dict[str, Any]
        if reason is not None:
            data = {"refund_id": refund.refund_id, "reason": reason}
            messages.append(("", "refund.failed", data))
        elif refund.payments:
            # One payout per payment, as a provider pays a card and a PayPal account apart.
            self.payouts[refund.refund_id] = self.payouts.get(refund.refund_id, 0) + 1
            for share in refund.payments:
                data = {
                    "refund_id": refund.refund_id,
                    "payment_id": share.payment_id,
                    "provider_reference": _reference(f"{refund.refund_id}:{share.payment_id}"),
                    "amount": {"amount": share.amount, "currency": refund.currency},
                }
                messages.append((f":{share.payment_id}", "refund.settled", data))
        else:
            self.payouts[refund.refund_id] = self.payouts.get(refund.refund_id, 0) + 1
            data = {
                "refund_id": refund.refund_id,
                "provider_reference": _reference(refund.refund_id),
                "amount": {"amount": refund.amount, "currency": refund.currency},
            }
            messages.append(("", "refund.settled", data))
        # The id derives from the refund (and payment): a repeated instruction republishes
        # the same settlement, which the inbound side deduplicates.
        values = tuple(
            envelope_bytes(
                event_id=f"sandbox:{refund.refund_id}{suffix}",
                source="psp/sandbox",
                event_type=event_type,
                time=datetime.now(UTC).isoformat(),
                subject=refund.refund_id,
                data=data,
            )
            for suffix, event_type, data in messages
        )
        self._settlements[refund.refund_id] = values
        await self._announce(refund, values)

    async def _announce(self, refund: RefundInstruction, values: tuple[bytes, ...]) -> None:
        try:
            for value in values:
                await self.publish(PSP_REFUNDS, refund.refund_id.encode(), value)
        except Exception:
            # Kept in _settlements: the dispatcher re-sends the pending refund, and that
            # publishes this same settlement again.
            log.exception(
                "refund %s: its settlement could not be published; it stays pending until "
                "the dispatcher sends it again",
                refund.refund_id,
            )

    async def drain(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


class RecoveringKafkaPublish:
    """Publishes with a kafka-python producer, and recreates it when a send fails.

    After a broker restart a kafka-python idempotent producer fails for good
    (``InitProducerId``), so retrying with the same producer never succeeds: a failed send
    closes it, and the next attempt makes a new one. Attempts are bounded and logged; the
    last failure is raised to the caller, which owns what happens next.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        attempts: int = 5,
        backoff_s: float = 0.5,
        send_timeout_s: float = 30,
    ) -> None:
        self.bootstrap = bootstrap
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.send_timeout_s = send_timeout_s
        self.producers_made = 0
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        # Threads of its own: sends blocked by a broker outage must not hold up the
        # event loop's default executor (the dispatcher's database calls run there).
        self._threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="psp-publish")

    async def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, self.send, topic, key, value)

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        for attempt in range(1, self.attempts + 1):
            producer = None
            try:
                producer = self._current()
                producer.send(topic, key=key, value=value).get(self.send_timeout_s)
                return
            except KafkaError as error:
                if producer is not None:
                    self._discard(producer)
                if attempt == self.attempts:
                    log.error(
                        "publishing to %s failed %d times, giving up: %r", topic, attempt, error
                    )
                    raise
                log.warning(
                    "publishing to %s failed (attempt %d of %d): %r; retrying with a new producer",
                    topic,
                    attempt,
                    self.attempts,
                    error,
                )
                time.sleep(self.backoff_s * 2 ** (attempt - 1))

    def _current(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    linger_ms=5,
                    acks="all",
                    # Fail a send to an absent broker in seconds, not the default minute,
                    # so the bounded retries end while the re-send still has the refund.
                    max_block_ms=10_000,
                )
                self.producers_made += 1
            return self._producer

    def _discard(self, producer: KafkaProducer) -> None:
        with self._lock:
            replaced = self._producer is not producer  # by another thread, after its failure
            if not replaced:
                self._producer = None
        if replaced:
            return
        try:
            producer.close(timeout=1)
        except Exception:  # a broken producer may fail to close too; it is dropped anyway
            log.debug("closing a failed producer failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=5)


def _reference(key: str) -> str:
    return "SBX-" + hashlib.sha256(key.encode()).hexdigest()[:12].upper()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("sandbox settlement failed", exc_info=task.exception())
