"""The integrations worker: outside systems' topics in, refunds out to the payment provider.

Agents stay thin: decode, batch, hand the blocking application service to a thread (the
event loop keeps heartbeating and fetching meanwhile), dead-letter what was refused.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import faust
import orjson

from adapters.driven.eventstore import create_service, database_unavailable
from adapters.driven.kafka.topics import INBOUND_TOPICS, ORDERS, RMA_EVENTS, dlq
from adapters.driven.parking import ParkedMessages
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
from streams.batches import publish_dead_letters
from streams.inbound import process_batch
from streams.parking import PARKED_TOPICS, Expired, retry_round, split
from streams.records import BatchHandler, DeadLetter, InboundRecord

log = logging.getLogger(__name__)

APP_ID = "oms-integrations"


def inbound_handler(
    service: ReturnsService,
    topic: str,
    executor: ThreadPoolExecutor,
    parking: ParkedMessages | None = None,
    settings: Settings | None = None,
) -> BatchHandler:
    """With ``parking``, messages refused because their order or RMA is not known yet are
    parked (committed before the batch is acked) instead of dead-lettered."""
    park_for_s = settings.park_for_s if parking is not None and settings is not None else 0.0
    retry_s = settings.park_retry_s if settings is not None else 5.0

    async def handle(records: Sequence[InboundRecord]) -> Sequence[DeadLetter]:
        values = [record.value for record in records]
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(executor, process_batch, service, topic, values)
        to_park, letters = split(records, results, park_for_s)
        if parking is not None and to_park:
            await loop.run_in_executor(executor, parking.park, to_park, retry_s)
        if parking is not None and topic == ORDERS and any(r is None for r in results):
            # New orders: what waited for them may apply now, at the next timer tick.
            await loop.run_in_executor(executor, parking.wake)
        return letters

    return handle


async def retry_parked(
    service: ReturnsService,
    parking: ParkedMessages,
    settings: Settings,
    publish: Callable[[str, Sequence[DeadLetter]], Awaitable[None]],
) -> int:
    """One round of the parking timer; returns how many messages went to a DLQ."""
    loop = asyncio.get_running_loop()
    expired = await loop.run_in_executor(
        None,
        functools.partial(
            retry_round,
            service,
            parking,
            park_for_s=settings.park_for_s,
            retry_s=settings.park_retry_s,
        ),
    )
    by_topic: dict[str, list[Expired]] = {}
    for item in expired:
        by_topic.setdefault(item.letter.record.topic, []).append(item)
    for topic, items in by_topic.items():
        ids = [item.message_id for item in items]
        try:
            await publish(topic, [item.letter for item in items])
        except Exception:
            await loop.run_in_executor(None, parking.unclaim, ids)
            raise
        # Released only once its dead letter is on the broker: nothing is lost.
        await loop.run_in_executor(None, parking.release, ids)
    return len(expired)


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
    parking = ParkedMessages(service)
    handlers: dict[str, BatchHandler] = {
        topic: inbound_handler(service, topic, executor, parking, settings)
        for topic in INBOUND_TOPICS
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

    dead_letter_topics = {
        topic: app.topic(dlq(topic), key_serializer="raw", value_serializer="raw")
        for topic in PARKED_TOPICS
    }

    async def publish(topic: str, letters: Sequence[DeadLetter]) -> None:
        await publish_dead_letters(
            dead_letter_topics[topic],
            letters,
            attempts=settings.dlq_publish_attempts,
            backoff_s=0.5,
            hold=lambda: None,
        )

    async def retry_parked_messages() -> None:
        try:
            await retry_parked(service, parking, settings, publish)
        except Exception:
            # The database or the broker may be away for a moment: the rows stay parked
            # (claimed for one retry period) and the next round tries again.
            log.exception("retrying parked messages failed; retrying next round")

    # Every worker runs it; the claim in PostgreSQL keeps two from retrying one message.
    # A tick of at most 1 s: a message woken by new orders is due at once.
    app.timer(min(1.0, settings.park_retry_s))(retry_parked_messages)

    return app


def app_from_env() -> faust.App:
    """Factory for ``python -m streams.worker --app streams.integrations:app_from_env``."""
    settings = Settings.from_env()
    if settings.database_url is None or settings.kafka_bootstrap is None:
        raise SystemExit("the integrations worker needs OMS_DATABASE_URL and OMS_KAFKA_BOOTSTRAP")
    service = create_service(settings.database_url, pool_size=4, policy_file=settings.policy_file)
    provider = kafka_publisher(
        settings.kafka_bootstrap, delay_s=settings.sandbox_settlement_delay_s
    )
    return create_integrations_app(settings, service, provider)
