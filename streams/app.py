"""The faust app for inbound integrations: raw bytes in, batches to a handler, DLQ for rejects.

No business logic lives here. A handler gets a batch of :class:`~streams.records.InboundRecord`
(bytes exactly as received), does its work (it dedupes by message id: redelivery is normal
under at-least-once), and returns the records it rejects as
:class:`~streams.records.DeadLetter`; the agent publishes those to ``<topic>.dlq`` with the
original key and value (truncated when too big for a producer) and acks the batch. A batch
whose handler keeps raising is split until the failing records are alone; those alone are
dead-lettered. Dead letters that cannot be published after bounded retries fail the worker
loudly (:func:`add_failure_hook`): a batch is never acked without its dead letters on the
broker.

This module holds the app's configuration and the agent that ties the pieces together:
the record types and DLQ format (streams.records), the read-ahead batching
(streams.feed), the retry, split and dead-letter publication policy (streams.batches) and
the faust subclasses for our broker (streams.transport).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import cast

import faust
from faust.streams import Stream
from faust.types import EventT, StreamT

from adapters.driven.kafka.topics import dlq
from adapters.settings import Settings
from streams.batches import (
    DeadLetterPublicationFailed,
    Transient,
    handle,
    no_transient_errors,
    publish_dead_letters,
)
from streams.feed import Feed
from streams.records import BatchHandler, InboundRecord
from streams.transport import FailureHook, ResumeOffsets, TansuApp

_log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    app_id: str,
    handlers: Mapping[str, BatchHandler],
    batch_size: int = 500,
    batch_within_s: float = 0.05,
    handler_attempts: int = 3,
    retry_backoff_s: float = 0.5,
    resume: ResumeOffsets | None = None,
    transient: Transient = no_transient_errors,
) -> faust.App:
    """A faust app (consumer group ``app_id``) with one batching agent per handled topic.

    A handler that raises is retried ``handler_attempts`` times in all, sleeping
    ``retry_backoff_s`` doubled each time; if it still raises, the batch is split in halves
    handled one after the other, recursively, and a record that fails alone goes to the DLQ
    with the exception as the reason (``handler_failed``); consumption carries on. An
    exception ``transient`` says is an outage is retried, with backoff, until it passes:
    nothing is dead-lettered for it. Dead letters are published with up to
    ``settings.dlq_publish_attempts`` attempts; then the failure hooks are told, and the
    batch is never acked. ``resume`` is asked, after every rebalance, where to start reading
    assigned partitions; the rest start at the group's committed offsets (or the earliest,
    for a new group).
    """
    if settings.kafka_bootstrap is None:
        raise ValueError("create_app needs settings.kafka_bootstrap (start the broker first)")
    if batch_size < 1 or batch_within_s <= 0 or handler_attempts < 1:
        raise ValueError("batch_size and handler_attempts must be >= 1, batch_within_s > 0")
    session_s = settings.consumer_session_timeout_ms / 1000
    datadir = settings.data_dir / "faust" / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = TansuApp(
        app_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        resume=resume,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        # Tansu fails aiokafka's InitProducerId: no idempotent or transactional producer,
        # so no exactly_once. Our exactly-once is the handler's PostgreSQL tracking.
        processing_guarantee="at_least_once",
        # A group join on Tansu takes half the session timeout (measured: 3 s at 6 s),
        # so faust's 60 s default would hold every start and rebalance for 30 s.
        broker_session_timeout=session_s,
        broker_heartbeat_interval=session_s / 4,
        # A new group must read what was published before it first started.
        consumer_auto_offset_reset="earliest",
        # Every topic is provisioned by adapters.driven.kafka.topics.topic_specs; the leader topic
        # is only for on_leader tasks, which we do not use.
        topic_allow_declare=False,
        topic_disable_leader=True,
        topic_partitions=settings.topic_partitions,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        store="memory://",
        autodiscover=False,
        datadir=datadir,
    )
    for topic, handler in handlers.items():
        _add_inbound_agent(
            app,
            topic,
            handler,
            batch_size=batch_size,
            within_s=batch_within_s,
            attempts=handler_attempts,
            backoff_s=retry_backoff_s,
            transient=transient,
            publish_attempts=settings.dlq_publish_attempts,
        )
    return app


def add_failure_hook(app: faust.App, hook: FailureHook) -> bool:
    """Have ``hook`` told when the app cannot go on (e.g. its DLQ refuses its dead letters).

    False for an app not made by :func:`create_app` (it never fails this way).
    """
    if not isinstance(app, TansuApp):
        return False
    app.failure_hooks.append(hook)
    return True


# --------------------------------------------------------------------------- agent


def _add_inbound_agent(
    app: faust.App,
    topic: str,
    handler: BatchHandler,
    *,
    batch_size: int,
    within_s: float,
    attempts: int,
    backoff_s: float,
    transient: Transient,
    publish_attempts: int,
) -> None:
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic(dlq(topic), key_serializer="raw", value_serializer="raw")

    # From a batch's first failure until it is acked, a stop or a rebalance does not wait
    # for it (see _Consumer.wait_empty in streams.transport): its retries may last as long
    # as an outage.
    holding = cast(TansuApp, app).holding

    def hold() -> None:
        holding.add(topic)

    async def consume(stream: StreamT[bytes]) -> None:
        # Acks are manual (noack): a batch is acked only once it has been handled and its
        # dead letters are on the broker, so a batch abandoned mid-way (an exception or a
        # cancellation here) is redelivered, never committed unapplied.
        # StreamT (what faust declares agents get) lacks noack; it is a Stream.
        feed = Feed(cast(Stream[bytes], stream).noack(), max_pending=2 * batch_size)
        reader = asyncio.ensure_future(feed.read())
        started: set[tuple[str, int]] = set()
        try:
            while events := await feed.next_batch(batch_size, within_s=within_s, reader=reader):
                records = [_to_record(event) for event in events]
                _log_first_offsets(records, started)
                letters = await handle(
                    handler,
                    records,
                    attempts=attempts,
                    backoff_s=backoff_s,
                    transient=transient,
                    hold=hold,
                )
                if letters:
                    try:
                        await publish_dead_letters(
                            dead_letters,
                            letters,
                            attempts=publish_attempts,
                            backoff_s=backoff_s,
                            hold=hold,
                        )
                    except DeadLetterPublicationFailed as failed:
                        cast(TansuApp, app).fail(str(failed))
                        # Never acked: the hooks stop the worker, and the records come
                        # back to whoever consumes the partition next.
                        await asyncio.Event().wait()
                for event in events:
                    await stream.ack(event)
                holding.discard(topic)
        finally:
            holding.discard(topic)
            reader.cancel()

    app.agent(source, name=f"{app.conf.id}.{topic}")(consume)


def _log_first_offsets(records: Sequence[InboundRecord], started: set[tuple[str, int]]) -> None:
    # Where each partition started after the worker came up: shows whether it resumed
    # where the store left off or re-read records it had applied already.
    for record in records:
        origin = (record.topic, record.partition)
        if origin not in started:
            started.add(origin)
            _log.info("first record from %s:%d at offset %d", *origin, record.offset)


def _to_record(event: EventT[bytes]) -> InboundRecord:
    message = event.message
    timestamp = message.timestamp
    return InboundRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        # A tombstone on an inbound topic is not a valid message; b"" lets the handler
        # dead-letter it like any other undecodable value.
        value=message.value or b"",
        headers=_headers(message.headers),
        timestamp_ms=None if timestamp is None else round(timestamp * 1000),
    )


def _headers(
    raw: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None,
) -> tuple[tuple[str, bytes], ...]:
    # aiokafka hands over a sequence of pairs; faust's types also allow a mapping.
    if raw is None:
        return ()
    return tuple(raw.items()) if isinstance(raw, Mapping) else tuple(raw)
