"""The integrations worker: outside systems' topics in, refunds out to the payment provider.

Agents stay thin: decode, batch, hand the blocking application service to a thread (the
event loop keeps heartbeating and fetching meanwhile), dead-letter what was refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import faust
import orjson

from adapters.driven.eventstore import create_service, database_unavailable
from adapters.driven.kafka.topics import INBOUND_TOPICS, RMA_EVENTS
from adapters.driven.payments import (
    PaymentProvider,
    RecoveringKafkaPublish,
    RefundInstruction,
    SandboxPaymentProvider,
)
from adapters.driven.refunds import RefundDispatches
from adapters.driven.sweeps import run_round
from adapters.settings import Settings
from domain.application import ReturnsService
from streams.app import create_app
from streams.inbound import process_batch
from streams.records import BatchHandler, DeadLetter, InboundRecord

log = logging.getLogger(__name__)

APP_ID = "oms-integrations"


def inbound_handler(
    service: ReturnsService, topic: str, executor: ThreadPoolExecutor
) -> BatchHandler:
    async def handle(records: Sequence[InboundRecord]) -> Sequence[DeadLetter]:
        values = [record.value for record in records]
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(executor, process_batch, service, topic, values)
        return [
            DeadLetter(record, rejection.reason, rejection.code)
            for record, rejection in zip(records, results, strict=True)
            if rejection is not None
        ]

    return handle


def refund_dispatcher(
    provider: PaymentProvider, dispatches: RefundDispatches | None = None
) -> BatchHandler:
    """Hands every requested refund to the payment provider; settlement comes back inbound.

    With ``dispatches``, a refund already answered is not sent again (the relay republishes
    old events after a broker came back empty) and each send is counted, so the re-send
    timer waits a full period after it.
    """

    async def handle(records: Sequence[InboundRecord]) -> Sequence[DeadLetter]:
        dead = []
        refunds: list[RefundInstruction] = []
        for record in records:
            try:
                event = orjson.loads(record.value)
                if event.get("type") != "rma.refund_requested":
                    continue
                refunds.append(RefundInstruction.from_event(event["data"]))
            except (orjson.JSONDecodeError, KeyError, TypeError) as broken:
                dead.append(
                    DeadLetter(record, f"unreadable refund request: {broken!r}", "invalid_event")
                )
        if refunds and dispatches is not None:
            ids = [refund.refund_id for refund in refunds]
            loop = asyncio.get_running_loop()
            still_open = await loop.run_in_executor(None, dispatches.still_open, ids)
            refunds = [refund for refund in refunds if refund.refund_id in still_open]
            await loop.run_in_executor(
                None, dispatches.record_dispatched, [r.refund_id for r in refunds]
            )
        for refund in refunds:
            await provider.request_refund(refund)
        return dead

    return handle


async def resend_due_refunds(
    provider: PaymentProvider, dispatches: RefundDispatches, resend_after_s: float
) -> int:
    """One round of the re-send timer: refunds unanswered for a period go out again.

    Read from PostgreSQL, not Kafka (which may have lost the request); claimed there, so
    two workers do not both send one refund, and each refund goes at most once a period.
    """
    loop = asyncio.get_running_loop()
    claimed = await loop.run_in_executor(None, dispatches.claim_due, resend_after_s)
    sent = 0
    for refund_id, attempts in claimed:
        instruction = await loop.run_in_executor(None, dispatches.instruction, refund_id)
        if instruction is None:
            continue  # answered meanwhile
        log.warning(
            "refund %s has no answer from the payment provider: sending it again (attempt %d)",
            refund_id,
            attempts,
        )
        await provider.request_refund(instruction)
        sent += 1
    return sent


def resend_interval(resend_after_s: float) -> float:
    # Often enough that an operator's re-send goes out within seconds, and a due refund
    # within a quarter period of its due time.
    return min(5.0, max(0.2, resend_after_s / 4))


def kafka_publisher(bootstrap: str, *, delay_s: float = 0.05) -> SandboxPaymentProvider:
    """The sandbox provider, publishing its settlements to psp.refunds.v1."""
    return SandboxPaymentProvider(RecoveringKafkaPublish(bootstrap), delay_s=delay_s)


def create_integrations_app(
    settings: Settings,
    service: ReturnsService,
    provider: PaymentProvider,
) -> faust.App:
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="commands")
    dispatches = RefundDispatches(service)
    handlers: dict[str, BatchHandler] = {
        topic: inbound_handler(service, topic, executor) for topic in INBOUND_TOPICS
    }
    handlers[RMA_EVENTS] = refund_dispatcher(provider, dispatches)
    app = create_app(settings, app_id=APP_ID, handlers=handlers, transient=database_unavailable)
    resend_after_s = settings.refund_resend_after_s

    async def resend_refunds() -> None:
        try:
            await resend_due_refunds(provider, dispatches, resend_after_s)
        except Exception:
            # The database may be away for a moment: the next round tries again.
            log.exception("re-sending unanswered refunds failed; retrying next round")

    # Every worker runs the timer (no leader election on Tansu); the claim in PostgreSQL
    # keeps them from sending one refund twice.
    app.timer(resend_interval(resend_after_s))(resend_refunds)

    # A thread of their own: a long sweep must not hold up the inbound topics' commands.
    sweeper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeps")

    async def sweep_deadlines() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(sweeper, run_round, service)
        except Exception:
            log.exception("sweeping deadlines failed; retrying next round")

    # Every worker runs this timer too; the sweeps' advisory locks and no-op commands make
    # each RMA expire (or its offer lapse) once.
    app.timer(settings.sweep_interval_s)(sweep_deadlines)

    return app


def app_from_env() -> faust.App:
    """Factory for ``python -m streams.worker --app streams.integrations:app_from_env``."""
    settings = Settings.from_env()
    if settings.database_url is None or settings.kafka_bootstrap is None:
        raise SystemExit("the integrations worker needs OMS_DATABASE_URL and OMS_KAFKA_BOOTSTRAP")
    service = create_service(settings.database_url, pool_size=4)
    provider = kafka_publisher(
        settings.kafka_bootstrap, delay_s=settings.sandbox_settlement_delay_s
    )
    return create_integrations_app(settings, service, provider)
