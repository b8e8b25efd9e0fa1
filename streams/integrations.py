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
from kafka import KafkaProducer

from adapters.eventstore import create_service, database_unavailable
from adapters.payments import PaymentProvider, RefundInstruction, SandboxPaymentProvider
from adapters.settings import Settings
from domain.application import ReturnsService
from streams.app import BatchHandler, DeadLetter, InboundRecord, create_app
from streams.inbound import process_batch
from streams.topics import INBOUND_TOPICS, RMA_EVENTS

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


def refund_dispatcher(provider: PaymentProvider) -> BatchHandler:
    """Hands every requested refund to the payment provider; settlement comes back inbound."""

    async def handle(records: Sequence[InboundRecord]) -> Sequence[DeadLetter]:
        dead = []
        for record in records:
            try:
                event = orjson.loads(record.value)
                if event.get("type") != "rma.refund_requested":
                    continue
                await provider.request_refund(RefundInstruction.from_event(event["data"]))
            except (orjson.JSONDecodeError, KeyError, TypeError) as broken:
                dead.append(
                    DeadLetter(record, f"unreadable refund request: {broken!r}", "invalid_event")
                )
        return dead

    return handle


def kafka_publisher(bootstrap: str) -> SandboxPaymentProvider:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        future = producer.send(topic, key=key, value=value)
        await asyncio.get_running_loop().run_in_executor(None, future.get, 30)

    return SandboxPaymentProvider(publish)


def create_integrations_app(
    settings: Settings, service: ReturnsService, provider: PaymentProvider
) -> faust.App:
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="commands")
    handlers: dict[str, BatchHandler] = {
        topic: inbound_handler(service, topic, executor) for topic in INBOUND_TOPICS
    }
    handlers[RMA_EVENTS] = refund_dispatcher(provider)
    return create_app(settings, app_id=APP_ID, handlers=handlers, transient=database_unavailable)


def app_from_env() -> faust.App:
    """Factory for ``python -m streams.worker --app streams.integrations:app_from_env``."""
    settings = Settings.from_env()
    if settings.database_url is None or settings.kafka_bootstrap is None:
        raise SystemExit("the integrations worker needs OMS_DATABASE_URL and OMS_KAFKA_BOOTSTRAP")
    service = create_service(settings.database_url, pool_size=4)
    return create_integrations_app(settings, service, kafka_publisher(settings.kafka_bootstrap))
