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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from adapters.contracts import envelope_bytes
from adapters.topics import PSP_REFUNDS

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, bytes], Awaitable[None]]


@dataclass(frozen=True)
class RefundInstruction:
    refund_id: str
    amount: str
    currency: str
    methods: tuple[str, ...]

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> RefundInstruction:
        amount = data["amount"]
        return cls(
            refund_id=data["refund_id"],
            amount=amount["amount"],
            currency=amount["currency"],
            methods=tuple(a["method"] for a in data.get("allocations", [])),
        )


class PaymentProvider(Protocol):
    async def request_refund(self, refund: RefundInstruction) -> None: ...


class SandboxPaymentProvider:
    """Settles card, PayPal and buy-now-pay-later refunds after a delay; fails a few.

    Failures are deterministic per refund id (a hash below ``failure_percent``), plus any
    card refund above ``card_limit``, so tests and the demo can count on them.
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
        self._pending: set[asyncio.Task[None]] = set()

    def fails(self, refund: RefundInstruction) -> str | None:
        digest = hashlib.sha256(refund.refund_id.encode()).digest()
        if digest[0] * 100 // 256 < self.failure_percent:
            return "declined by the issuer (sandbox)"
        if "card" in refund.methods and Decimal(refund.amount) > self.card_limit:
            return f"card refunds above {self.card_limit} need manual review (sandbox)"
        return None

    async def request_refund(self, refund: RefundInstruction) -> None:
        task = asyncio.get_running_loop().create_task(self._settle_later(refund))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle_later(self, refund: RefundInstruction) -> None:
        await asyncio.sleep(self.delay_s)
        reason = self.fails(refund)
        if reason is None:
            event_type, data = (
                "refund.settled",
                {
                    "refund_id": refund.refund_id,
                    "provider_reference": "SBX-"
                    + hashlib.sha256(refund.refund_id.encode()).hexdigest()[:12].upper(),
                    "amount": {"amount": refund.amount, "currency": refund.currency},
                },
            )
        else:
            event_type, data = "refund.failed", {"refund_id": refund.refund_id, "reason": reason}
        # The id derives from the refund: a redelivered request republishes the same
        # settlement, which the inbound side deduplicates.
        value = envelope_bytes(
            event_id=f"sandbox:{refund.refund_id}",
            source="psp/sandbox",
            event_type=event_type,
            time=datetime.now(UTC).isoformat(),
            subject=refund.refund_id,
            data=data,
        )
        await self.publish(PSP_REFUNDS, refund.refund_id.encode(), value)

    async def drain(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
